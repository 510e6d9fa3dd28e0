"""The latest value of every PID per ECU, read without touching the adapter.

Detectors, the diagnostic socket and the uplinks read here; only the poller writes. Values are
:class:`~gateway.model.Sample`; the age is computed at read time from the sample's timestamp.
Mode 09 answers (VIN, calibration IDs) are never put here: they are requested on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.common import vocabulary
from gateway.model import Sample, now_ms


@dataclass(frozen=True, slots=True)
class CachedValue:
    """A cached sample and its age in seconds at the moment it was read."""

    sample: Sample
    age_s: float

    @property
    def value(self) -> object:
        """The sample's value."""
        return self.sample.value


class Cache:
    """Latest :class:`Sample` per (ecu, name)."""

    def __init__(self, clock_ms: Callable[[], int] = now_ms) -> None:
        self._clock_ms = clock_ms
        self._by_key: dict[tuple[int, str], Sample] = {}

    def put(self, sample: Sample) -> None:
        """Remember ``sample`` unless a newer one for the same key is already there."""
        key = (sample.ecu, sample.name)
        old = self._by_key.get(key)
        if old is None or sample.ts_ms >= old.ts_ms:
            self._by_key[key] = sample

    def put_many(self, samples: Iterable[Sample]) -> None:
        """:meth:`put` each sample."""
        for s in samples:
            self.put(s)

    def get(self, name: str, ecu: int | None = None) -> CachedValue | None:
        """The latest value of ``name`` (from ``ecu``, or the newest from any ECU)."""
        if ecu is not None:
            sample = self._by_key.get((ecu, name))
        else:
            candidates = [s for (_, n), s in self._by_key.items() if n == name]
            sample = max(candidates, key=lambda s: s.ts_ms) if candidates else None
        if sample is None:
            return None
        return CachedValue(sample, max(0.0, (self._clock_ms() - sample.ts_ms) / 1000))

    def by_pid(self, pid: int, ecu: int | None = None) -> list[CachedValue]:
        """Every cached value that came from mode 01 ``pid`` (multi-value PIDs give several)."""
        now = self._clock_ms()
        return [
            CachedValue(s, max(0.0, (now - s.ts_ms) / 1000))
            for (e, _), s in sorted(self._by_key.items())
            if s.pid == pid and (ecu is None or e == ecu)
        ]

    def latest(self) -> list[Sample]:
        """Every cached sample (one per ECU and name)."""
        return list(self._by_key.values())

    def snapshot(self) -> list[dict[str, object]]:
        """JSON-friendly rows: name, value, unit, pid, ecu, ts_ms, age_s."""
        now = self._clock_ms()
        return [
            {
                **vocabulary.sample_row(s.name, s.value, s.unit, s.pid, s.ecu),
                "ts_ms": s.ts_ms,
                "age_s": round(max(0.0, (now - s.ts_ms) / 1000), 3),
            }
            for (_, _), s in sorted(self._by_key.items())
        ]

    def clear(self) -> None:
        """Forget everything (a new ignition cycle)."""
        self._by_key.clear()

    def __len__(self) -> int:
        return len(self._by_key)
