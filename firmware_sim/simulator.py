"""The :class:`Simulator`: vehicle + ECUs + ELM327 firmware, served on ports, usable from a test thread."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any

from firmware_sim import audit
from firmware_sim.adapters import Personality, personality
from firmware_sim.drive import Drive, load_drive
from firmware_sim.ecu import Ecu, default_ecus
from firmware_sim.elm327 import CarBus, Elm327, LogEntry
from firmware_sim.faults import Faults
from firmware_sim.server import PtyServer, TcpServer
from firmware_sim.timing import TimingModel
from firmware_sim.vehicle import Truth, Vehicle

TICK_S = 0.05
LOG_LINES = 20000


class Simulator:
    """A simulated car with an ELM327 adapter plugged in.

    ``drive``: None (the built-in ``default``), a built-in name (``"short"``) or a TOML path.
    ``fast``: no serial/ECU/search delays (the car still moves with the clock). ``clock``: ``"wall"``
    (simulated time runs at ``time_scale`` × real time once :meth:`start` or a ``serve_*`` is called)
    or ``"manual"`` (time only moves with :meth:`advance`). ``protocol``: the car's OBD bus (1–9).
    ``strict_baud``: the host's pty speed (termios) must match the chip's baud rate, or both sides see
    garbage — as on a real serial line (off by default: pyserial opens at 9600 unless told otherwise).
    ``pipelining``: False (default) is a genuine ELM327: input queued behind an OBD request or arriving
    while it is answered interrupts it with ``STOPPED``. True models a line-buffering adapter (the
    Automatic adapter of the reference's streaming section, STN-style chips): lines written back to
    back are answered one after the other, in order.
    ``adapter``: the adapter model (:mod:`firmware_sim.adapters`), a name (``"clone-3pid"``) or a
    :class:`~firmware_sim.adapters.Personality`; default ``genuine``. ``baud`` and ``elm_version`` default to
    the personality's.
    """

    def __init__(self, drive: str | Path | Drive | None = None, seed: int = 1, fast: bool = False, *,
                 time_scale: float = 1.0, protocol: str = "6", truth_path: str | Path | None = None,
                 baud: int | None = None, clock: str = "wall", start_ms: int | None = None,
                 linefeeds_default: bool = False, timing: TimingModel | None = None,
                 ecus: list[Ecu] | None = None, strict_baud: bool = False, elm_version: str | None = None,
                 pipelining: bool = False, adapter: str | Personality = "genuine", hybrid: bool = False) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        if clock not in {"wall", "manual"}:
            raise ValueError(f"clock must be 'wall' or 'manual', got {clock!r}")
        adapter_p = personality(adapter) if isinstance(adapter, str) else adapter
        if pipelining:
            adapter_p = dataclasses.replace(adapter_p, pipelining=True)
        #: the adapter model every chip of this simulator follows
        self.adapter: Personality = adapter_p
        self.drive = drive if isinstance(drive, Drive) else load_drive(drive)
        self.seed = seed
        self.fast = fast
        self.time_scale = time_scale
        self.clock = clock
        self.truth = Truth(truth_path)
        start = int(time.time() * 1000) if start_ms is None else start_ms
        self.vehicle = Vehicle(self.drive, seed=seed, start_ms=start, truth=self.truth)
        if hybrid:  # the 12 V system does not rise when the engine starts (and no crank dip)
            self.vehicle.state.alternator = False
            self.vehicle.set_ignition(self.vehicle.state.ignition)  # re-derive the voltage
        self.ecus = ecus if ecus is not None else default_ecus()
        self.faults = Faults(random.Random(seed + 7919))
        self.timing = timing or TimingModel(baud=baud or adapter_p.baud)
        self.bus = CarBus(self.vehicle, self.ecus, protocol, sync=self.sync)
        self.linefeeds_default = linefeeds_default
        self.strict_baud = strict_baud
        self.elm_version = elm_version or adapter_p.version
        self.pipelining = adapter_p.pipelining
        #: every command line any of this simulator's chips executed, in order (see LogEntry)
        self.log: deque[LogEntry] = deque(maxlen=LOG_LINES)
        #: requests outside the read set this simulator's car saw (also in the process-wide firmware_sim.audit)
        self.nonread: deque[audit.AuditRecord] = deque(maxlen=audit.MAX_RECORDS)
        self._start_ms = float(start)
        self._t0: float | None = None
        self._offset_s = 0.0
        self._elm_seq = 0
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._servers: list[Any] = []
        self._lock = threading.Lock()
        #: the simulated GPS receiver (firmware_sim.gps.GpsPty) when one is served: the ``gps`` command steers it
        self.gps: Any = None

    # ------------------------------------------------------------------ clock
    def now_ms(self) -> float:
        """Simulated time, ms since the epoch."""
        with self._lock:
            wall = 0.0 if self._t0 is None or self.clock == "manual" else time.monotonic() - self._t0
            return self._start_ms + (wall * self.time_scale + self._offset_s) * 1000.0

    def sync(self) -> None:
        """Bring the vehicle up to the simulated clock (called before every answer)."""
        self.vehicle.advance_to(self.now_ms())

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by ``seconds`` at once (the car drives through them)."""
        with self._lock:
            self._offset_s += seconds
        self.sync()

    def start(self) -> Simulator:
        """Start the clock (wall mode): a ticker thread keeps the vehicle and truth log current."""
        with self._lock:
            if self._t0 is None:
                self._t0 = time.monotonic()
            if self.clock == "wall" and self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, name="sim-clock", daemon=True)
                self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self.sync()

    # ------------------------------------------------------------------ ports
    def new_elm(self) -> Elm327:
        """A fresh ELM327 chip wired to this car (each served port has its own chip)."""
        self._elm_seq += 1
        return Elm327(self.bus, timing=self.timing, faults=self.faults, fast=self.fast,
                      seed=self.seed * 1000 + self._elm_seq, linefeeds_default=self.linefeeds_default,
                      version=self.elm_version, pipelining=self.pipelining, log=self.log,
                      personality=self.adapter, on_nonread=self.nonread.append)

    def serve_pty(self) -> PtyServer:
        """Serve the adapter on a pseudo-terminal; ``with sim.serve_pty() as path`` (a stable symlink)."""
        self.start()
        server = PtyServer(self.new_elm, strict_baud=self.strict_baud)
        self._servers.append(server)
        return server

    def serve_tcp(self, port: int = 0, host: str = "127.0.0.1") -> TcpServer:
        """Serve the adapter on TCP (``port=0``: any free port; see ``.port`` / ``.address``)."""
        self.start()
        server = TcpServer(self.new_elm, port=port, host=host)
        self._servers.append(server)
        return server

    def serve_can(self, channel: str, *, interface: str = "virtual") -> Any:
        """Answer OBD over ISO-TP on a python-can bus (``can.Bus(interface=..., channel=...)``)."""
        from firmware_sim.canbus import CanResponder

        self.start()
        responder = CanResponder.on_python_can(self, channel=channel, interface=interface)
        self._servers.append(responder)
        return responder

    def serve_slcan(self) -> Any:
        """Answer OBD over ISO-TP behind an SLCAN (Lawicel) adapter on a pseudo-terminal."""
        from firmware_sim.canbus import SlcanServer

        self.start()
        server = SlcanServer(self)
        self._servers.append(server)
        return server

    def _ptys(self) -> list[PtyServer]:
        return [s for s in self._servers if isinstance(s, PtyServer)]

    def close_port(self) -> None:
        """The adapter vanishes: every served pty is closed (its path disappears until reopen_port)."""
        for s in self._ptys():
            s.close_port()

    def reopen_port(self) -> None:
        """The adapter comes back at the same path, freshly powered up."""
        for s in self._ptys():
            s.reopen_port()

    # ------------------------------------------------------------------ control (also used by the control socket)
    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Apply one control command (the JSON-line protocol of ``--control``); returns the answer."""
        if not isinstance(cmd, dict) or not cmd:
            raise ValueError("a command is a non-empty JSON object")
        out: dict[str, Any] = {"ok": True}
        known = {"fault", "on", "rate", "ignition", "set_dtcs", "mil", "pending", "clear_dtcs", "clear_faults",
                 "hold_speed", "release", "advance", "close_port", "reopen_port", "state", "truth", "log",
                 "battery_rest_v", "parasitic_ma", "alternator", "gps"}
        unknown = set(cmd) - known
        if unknown:
            raise ValueError(f"unknown command key(s): {sorted(unknown)}")
        if "fault" in cmd:
            self.faults.set(str(cmd["fault"]), bool(cmd.get("on", True)), rate=float(cmd.get("rate", 1.0)))
        if cmd.get("clear_faults"):
            self.faults.clear()
        if any(k in cmd for k in ("battery_rest_v", "parasitic_ma", "alternator")):
            self.sync()
            with self.vehicle.lock:
                st = self.vehicle.state
                if "battery_rest_v" in cmd:
                    st.battery_rest_v = float(cmd["battery_rest_v"])
                if "parasitic_ma" in cmd:
                    st.parasitic_ma = max(0.0, float(cmd["parasitic_ma"]))
                if "alternator" in cmd:
                    st.alternator = bool(cmd["alternator"])
                self.vehicle.set_ignition(st.ignition)  # re-derive the voltage now
        if "ignition" in cmd:
            self.sync()
            self.vehicle.set_ignition(bool(cmd["ignition"]))
        if "set_dtcs" in cmd:
            from firmware_sim.j1979 import valid_dtc

            codes = cmd["set_dtcs"]
            if not isinstance(codes, list) or not all(isinstance(c, str) and valid_dtc(c) for c in codes):
                raise ValueError("set_dtcs must be a list of DTCs like \"P0301\"")
            mil = cmd.get("mil")
            self.vehicle.set_dtcs(codes, mil=None if mil is None else bool(mil), pending=cmd.get("pending"))
        if cmd.get("clear_dtcs"):
            self.vehicle.clear_dtcs()
        if "hold_speed" in cmd:
            self.vehicle.hold(float(cmd["hold_speed"]))
        if cmd.get("release"):
            self.vehicle.release()
        if "advance" in cmd:
            self.advance(float(cmd["advance"]))
        if "gps" in cmd:
            if self.gps is None:
                raise ValueError("gps: this simulator serves no GPS (start it with --gps-pty)")
            self.gps.command(str(cmd["gps"]))
        if cmd.get("close_port"):
            self.close_port()
        if cmd.get("reopen_port"):
            self.reopen_port()
        if cmd.get("state"):
            self.sync()
            with self.vehicle.lock:
                out["state"] = self.vehicle.sample()
            out["bus_wakeups"] = len(self.bus.wakeups)
            out["battery_rest_v"] = round(self.vehicle.state.battery_rest_v, 3)
            out["faults"] = self.faults.active()
            out["fault_hits"] = self.faults.hit_counts()
        if cmd.get("truth"):
            out["truth"] = list(self.truth.records)
        if cmd.get("log"):
            out["log"] = [[e.command, e.answer] for e in list(self.log)]
        return out

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Stop every server, the clock, and close the truth log."""
        for s in reversed(self._servers):
            s.stop()
        self._servers.clear()
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        self.truth.close()

    close = stop

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
