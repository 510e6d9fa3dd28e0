"""Switchable faults of the simulated adapter and bus.

Every fault is off by default and is switched with ``faults.set(name, on, rate=…)`` (or the control
socket's ``{"fault": name, "on": true, "rate": 0.5}``). ``rate`` is the probability, per reply (or per
byte for ``drop_bytes``), that the fault strikes; 1.0 means always. Draws come from the simulator's
seeded RNG, so a faulty run is reproducible.

Every strike is counted: ``faults.hits("noise")`` is how many times that fault actually struck (for
``drop_bytes``, how many bytes were dropped), ``faults.hit_counts()`` all of them. Tests assert the count is
above zero, so a fault test cannot pass without its fault having fired. The counts survive
:meth:`Faults.clear` (switching off does not undo what happened); :meth:`Faults.reset_hits` zeroes them.
The control socket's ``{"state": true}`` answer carries them as ``fault_hits``.

Names:
    no_data            every OBD request answers ``NO DATA``
    unable_to_connect  the protocol search fails: ``SEARCHING...`` / ``UNABLE TO CONNECT``
    searching          the chip forgets the protocol and searches again before answering (``SEARCHING...``)
    can_error          OBD requests answer ``CAN ERROR``
    buffer_full        OBD requests and ATMA answer ``BUFFER FULL``
    stopped            the chip stops as if interrupted: ``STOPPED``
    noise              random printable garbage (never ">") is inserted into the output (line noise)
    drop_bytes         bytes of the output are lost (rate per byte)
    truncate           a reply is cut short: no prompt follows
    reset              a spontaneous reset: the ``ELM327 v1.5`` banner appears instead of the answer and
                       all settings return to their defaults (echo on, headers off…)
    latency            erratic latency: up to ``extra_latency`` seconds (default 0.5) added to the ECU answer
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass

FAULTS = ("no_data", "unable_to_connect", "searching", "can_error", "buffer_full", "stopped", "noise",
          "drop_bytes", "truncate", "reset", "latency", "lost_frame")


@dataclass
class _Fault:
    on: bool = False
    rate: float = 1.0


class Faults:
    """The fault switchboard, shared by every port of one simulator (thread-safe)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random(0)
        self._lock = threading.Lock()
        self._faults = {name: _Fault() for name in FAULTS}
        self._hits: Counter[str] = Counter()
        self.extra_latency = 0.5

    def set(self, name: str, on: bool = True, *, rate: float = 1.0) -> None:
        """Switch fault ``name`` on or off; ``rate`` in (0, 1] is how often it strikes."""
        if name not in self._faults:
            raise KeyError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        with self._lock:
            self._faults[name] = _Fault(bool(on), float(rate))

    def clear(self) -> None:
        """Switch every fault off."""
        with self._lock:
            for name in self._faults:
                self._faults[name] = _Fault()

    def is_on(self, name: str) -> bool:
        """Whether ``name`` is switched on (regardless of its rate)."""
        with self._lock:
            return self._faults[name].on

    def strikes(self, name: str) -> bool:
        """Draw whether ``name`` strikes now (False when off); a strike is counted in :meth:`hits`."""
        with self._lock:
            f = self._faults[name]
            if not f.on:
                return False
            struck = f.rate >= 1.0 or self._rng.random() < f.rate
            if struck:
                self._hits[name] += 1
            return struck

    def record_hit(self, name: str, n: int = 1) -> None:
        """Count ``n`` strikes of ``name`` drawn elsewhere (``drop_bytes`` draws per byte)."""
        if name not in self._faults:
            raise KeyError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        if n > 0:
            with self._lock:
                self._hits[name] += n

    def hits(self, name: str) -> int:
        """How many times ``name`` struck (bytes dropped, for ``drop_bytes``)."""
        if name not in self._faults:
            raise KeyError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            return self._hits[name]

    def hit_counts(self) -> dict[str, int]:
        """Every fault that struck, with its count."""
        with self._lock:
            return {n: c for n, c in self._hits.items() if c}

    def reset_hits(self) -> None:
        """Zero every strike count."""
        with self._lock:
            self._hits.clear()

    def rate(self, name: str) -> float:
        """The configured rate of ``name`` (0 when off)."""
        with self._lock:
            f = self._faults[name]
            return f.rate if f.on else 0.0

    def uniform(self, a: float, b: float) -> float:
        """A seeded uniform draw (for noise and erratic latency)."""
        with self._lock:
            return self._rng.uniform(a, b)

    def randint(self, a: int, b: int) -> int:
        """A seeded integer draw."""
        with self._lock:
            return self._rng.randint(a, b)

    def active(self) -> dict[str, float]:
        """The faults switched on, with their rates."""
        with self._lock:
            return {n: f.rate for n, f in self._faults.items() if f.on}

    def __getattr__(self, name: str) -> bool:
        # `sim.faults.no_data` reads a switch; assignment goes through set() (see __setattr__).
        faults = self.__dict__.get("_faults")
        if faults is not None and name in faults:
            return bool(faults[name].on)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: object) -> None:
        if name in FAULTS:
            self.set(name, bool(value))
        else:
            object.__setattr__(self, name, value)
