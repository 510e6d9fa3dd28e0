"""The poller: one adapter session + the scheduler policy + the cache, publishing what it reads.

::

    poller = Poller(adapter_cfg, polling_cfg, publish=bus.publish, state_dir=Path, allow_clear_dtc=False)
    await poller.run()        # forever: connect, initialise, poll; reconnects with backoff

``run`` never returns on adapter trouble: a vanished adapter (closed pseudo-terminal, unplugged
USB, dropped BLE link) is reconnected with jittered exponential backoff up to
``adapter.reconnect_max_s``; a bus error makes the session detect the protocol again; an adapter that
reset itself is initialised again. :class:`~gateway.model.LinkState` is published on every change
and at least every 5 s, samples as they are read.

Plans: ``driving`` polls the configured PIDs at their rates; ``parked`` reads only the battery
voltage (ATRV) and checks whether the ECU wakes, every ``polling.parked_interval_s``, putting the
adapter in its low-power mode between checks where it has one; below
``polling.parked_min_battery_v`` even the wake check stops (the battery is spared) until the
voltage recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from gateway import transport as transports
from gateway.cache import Cache
from gateway.config import AdapterConfig, PollingConfig
from gateway.errors import (
    AdapterError,
    AdapterReset,
    BusError,
    ForbiddenRequest,
    GatewayError,
    NoDataError,
    ParseError,
    ProtocolNotFound,
    Stopped,
    TransportError,
    TransportTimeout,
    UnsupportedCommand,
)
from gateway.model import LinkState, Sample
from gateway.scheduler import Batch, SchedulerPolicy

log = logging.getLogger("gateway.poller")

LINK_STATE_EVERY_S = 5.0
PIPELINE_DEPTH = 4  # requests written at once where the adapter keeps up
TUNE_EVERY = 256  # batches between adaptive-timing updates
BATTERY_EVERY_S = 5.0  # ATRV while driving
SILENT_AFTER_S = 2.0  # no answer from any ECU for this long: the ECU is not responding
SILENT_RETRY_S = 1.0
ENGINE_ECU = 0x7E8

# PIDs the catalogue reads on demand only (no reference rate) get this rate when configured for polling.
DEFAULT_RATE_HZ = 1.0
# Higher priority when the link is short: what the detectors need (speed for hard brakes, RPM).
_DEFAULT_PRIORITIES: dict[int, int] = {0x0D: 2, 0x0C: 1}


def _catalogue() -> Any:
    return importlib.import_module("gateway.obd.pids")


def default_rate(pid: int) -> float:
    """The default refresh rate of mode 01 ``pid``: the catalogue's (the reference refresh-rate table).

    PIDs the reference reads on demand only (no rate), and PIDs the catalogue does not know, get
    :data:`DEFAULT_RATE_HZ` when configured."""
    try:
        rate = _catalogue().PIDS[pid].rate_hz
    except KeyError:  # a PID the catalogue does not know
        return DEFAULT_RATE_HZ
    return float(rate) if rate is not None and rate > 0 else DEFAULT_RATE_HZ


def pid_name(pid: int) -> str:
    """The catalogue's name of ``pid`` (its first field's name); '' for a PID the catalogue does not know."""
    try:
        entry = _catalogue().PIDS[pid]
    except KeyError:
        return ""
    return str(entry.fields[0].name) if entry.fields else ""


class Session(Protocol):
    """What the poller needs of an adapter session (ELM327 or raw CAN).

    Implemented by :class:`gateway.elm327.session.Elm327Session` and
    :class:`gateway.transport.can.CanSession`. One exchange at a time; errors are the
    :mod:`gateway.errors` tree (``NoDataError``, ``BusError``, ``AdapterError``, ``ParseError``,
    ``TransportError``/``TransportTimeout``).
    """

    #: what was learned about the adapter and car (``protocol``, ``supported``, ``multi_pid``, ...)
    info: Any
    #: OBD requests sent so far (for requests/s)
    requests: int
    #: error kind → count, as met by the session itself
    errors: dict[str, int]

    async def initialize(self) -> Any:
        """Reset and set the adapter up, detect the protocol, discover PIDs; returns ``info``."""
        ...

    async def detect_protocol(self) -> str:
        """Select (or search for) the bus protocol again; returns its number. Raises ``BusError``
        subclasses when no ECU answers (ignition off, wrong bus)."""
        ...

    @property
    def latency_ms(self) -> float:
        """The median measured request round trip in ms (0 before any)."""
        ...

    async def read_pids(self, ecu: int, pids: Sequence[int]) -> list[Any]:
        """Mode 01 ``pids`` from ``ecu`` in the fastest form that works; readings of the PIDs that
        answered. Raises ``NoDataError`` when none did."""
        ...

    async def pipeline_pids(self, ecu: int, batches: Sequence[Sequence[int]]) -> list[list[Any] | GatewayError]:
        """Several mode 01 batches written back to back where the adapter takes that (else one by
        one); one result per batch, its readings or its error."""
        ...

    async def query(self, service: int, data: Sequence[int] = (), ecu: int | None = None) -> list[Any]:
        """Any OBD request, functional unless ``ecu`` is given; readings from every ECU that answered."""
        ...

    async def read_voltage(self) -> float:
        """Battery voltage at the OBD port (ATRV); ``UnsupportedCommand`` where there is none."""
        ...

    async def read_vin(self) -> str:
        """The VIN (mode 09 PID 02), never cached."""
        ...

    async def read_dtcs(self) -> dict[str, Any]:
        """``stored``, ``pending`` and ``permanent`` DTC lists and ``mil`` (lit when any ECU lights it)."""
        ...

    async def clear_dtcs(self) -> None:
        """Service 04: clear DTCs and the MIL (the caller checks that clearing is allowed)."""
        ...

    async def low_power(self) -> bool:
        """Put the adapter to sleep where it can (ATLP); whether it did."""
        ...

    async def resync(self) -> None:
        """Get back to a clean prompt after garbage or a time-out."""
        ...


@dataclass
class _OnDemand:
    pid: int
    ecu: int | None
    future: asyncio.Future[list[Sample]]


def _now_ms() -> int:
    return int(time.time() * 1000)


class Poller:
    """Session + scheduler + cache; see the module docstring."""

    def __init__(
        self,
        adapter_cfg: AdapterConfig,
        polling_cfg: PollingConfig,
        *,
        publish: Callable[[Any], Awaitable[None]],
        state_dir: Path | None = None,
        allow_clear_dtc: bool = False,
        as_fast_as_possible: bool = False,
        session_factory: Callable[[Any], Session] | None = None,
        transport_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.adapter_cfg = adapter_cfg
        self.polling_cfg = polling_cfg
        self.publish = publish
        self.state_dir = state_dir
        self.allow_clear_dtc = allow_clear_dtc
        self.as_fast_as_possible = as_fast_as_possible
        self._session_factory = session_factory
        self._transport_factory = transport_factory
        self.cache = Cache()
        self.policy = SchedulerPolicy(idle_unrequested_s=polling_cfg.idle_unrequested_s)
        self.plan: Literal["driving", "parked"] = "driving"
        self.session: Session | None = None
        self.transport: Any = None
        self.vin = ""
        self.connected = False
        self.ecu_responding = False
        self._link_published: tuple[bool, bool, str] | None = None
        self._link_published_at = -math.inf
        self._last_answer = -math.inf
        self._wake = asyncio.Event()
        self._on_demand: asyncio.Queue[_OnDemand] = asyncio.Queue()
        self._exclusive: asyncio.Queue[tuple[Callable[[Session], Awaitable[Any]], asyncio.Future[Any]]] = (
            asyncio.Queue()
        )
        self._low_battery = False
        self._sleeping = False
        self._next_parked = 0.0
        self.started = time.monotonic()
        self.values = 0
        self.reconnects = 0
        self.errors: dict[str, int] = {}
        self.battery_v: float | None = None
        self.last_error = ""
        self.pipeline_depth = PIPELINE_DEPTH
        self._batches = 0
        self._battery_at = -math.inf
        self._battery_ok = True  # False once the session cannot read it (raw CAN)
        self._stopped_pipelined = 0

    # -- public API -------------------------------------------------------------------------------
    def set_plan(self, plan: Literal["driving", "parked"]) -> None:
        """Switch between full polling (``driving``) and the battery-sparing ``parked`` plan."""
        if plan not in ("driving", "parked"):
            raise ValueError(f"unknown plan {plan!r}")
        if plan != self.plan:
            log.info("polling plan: %s", plan)
        self.plan = plan
        self._next_parked = 0.0
        self._wake.set()

    async def query(self, pid: int) -> list[Sample]:
        """Read mode 01 ``pid`` now (jumps the queue); the PID is then polled while asked for."""
        self._require_link()
        fut: asyncio.Future[list[Sample]] = asyncio.get_running_loop().create_future()
        await self._on_demand.put(_OnDemand(pid, None, fut))
        self._wake.set()
        return await fut

    async def read_dtcs(self) -> dict[str, Any]:
        """Stored, pending and permanent DTCs and the MIL, read now."""
        result: dict[str, Any] = await self._run_exclusive(lambda s: s.read_dtcs())
        return result

    async def clear_dtcs(self) -> None:
        """Clear DTCs (service 04) — only when constructed with ``allow_clear_dtc=True``."""
        if not self.allow_clear_dtc:
            raise ForbiddenRequest("clearing DTCs is disabled (diag.allow_clear_dtc = false)")

        async def clear(session: Session) -> None:
            await session.clear_dtcs()
            # Inside the exclusive section, so it is published only after a successful clear and before
            # any later poll can report the lamp off: detection marks that mil:off user_cleared, and the
            # store records the marker so a replay of the drive says the same.
            await self.publish(Sample(_now_ms(), "dtcs_cleared", True))

        await self._run_exclusive(clear)

    def reconfigure(self, polling_cfg: PollingConfig, *, allow_clear_dtc: bool) -> None:
        """Apply a reloaded ``[polling]`` section and the clear-DTC switch (SIGHUP) without reconnecting."""
        self.polling_cfg = polling_cfg
        self.allow_clear_dtc = allow_clear_dtc
        self.policy.idle_unrequested_s = polling_cfg.idle_unrequested_s
        if self.session is not None and self.ecu_responding:
            self._build_plan()
        self._wake.set()

    async def read_vin(self) -> str:
        """The VIN, read now (mode 09 is never cached)."""
        vin: str = await self._run_exclusive(lambda s: s.read_vin())
        self.vin = vin
        return vin

    def status(self) -> dict[str, Any]:
        """adapter, protocol, elm_version, vin, connected (and more)."""
        info = self.session.info if self.session is not None else None
        out: dict[str, Any] = {
            "adapter": self.adapter_cfg.port,
            "connected": self.connected,
            "ecu_responding": self.ecu_responding,
            "protocol": getattr(info, "protocol_name", "") or getattr(info, "protocol", "") if info else "",
            "elm_version": getattr(info, "version", "") if info else "",
            "vin": self.vin,
            "plan": self.plan,
            "battery_v": self.battery_v,
            "reconnects": self.reconnects,
            "values": self.values,
            "requests": self.session.requests if self.session is not None else 0,
            "errors": dict(self.errors) | (dict(self.session.errors) if self.session is not None else {}),
        }
        if info is not None and hasattr(info, "as_dict"):
            out["adapter_info"] = info.as_dict()
        return out

    def pid_stats(self) -> list[dict[str, Any]]:
        """pid, name, supported, polled, target_hz, achieved_hz per PID (and ecu, priority, counts)."""
        return self.policy.stats(time.monotonic())

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: connect, initialise, poll; reconnect with backoff when the adapter goes away."""
        backoff = 0.5
        while True:
            try:
                await self._connect()
                backoff = 0.5
                await self._poll_forever()
            except asyncio.CancelledError:
                await self._disconnect()
                raise
            except (TransportError, AdapterError, ParseError) as exc:
                self._count(type(exc).__name__)
                self.last_error = str(exc)
                log.warning("%s: %s", "adapter link lost" if self.connected else "adapter not reachable", exc)
            await self._disconnect()
            self.connected = False
            await self._publish_link(force=True)
            delay = backoff * (0.5 + random.random())  # jitter: several gateways must not retry in step
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.adapter_cfg.reconnect_max_s)
            self.reconnects += 1

    def _make_session(self, transport: Any) -> Session:
        if self._session_factory is not None:
            return self._session_factory(transport)
        if transports.parse_port(self.adapter_cfg.port).kind == "can":
            can_module = importlib.import_module("gateway.transport.can")
            session: Session = can_module.CanSession(transport, timeout_s=self.adapter_cfg.timeout_s)
            return session
        from gateway.elm327.session import Elm327Session

        state_path = None
        if self.adapter_cfg.state_file:
            state_path = Path(self.adapter_cfg.state_file)
        elif self.state_dir is not None:
            state_path = self.state_dir / "elm327-state.json"
        return Elm327Session(
            transport,
            protocol=self.adapter_cfg.protocol,
            timeout_s=self.adapter_cfg.timeout_s,
            state_path=state_path,
            baud=self.adapter_cfg.baud,
            fast_baud=self.adapter_cfg.fast_baud,
            multi_pid=self.polling_cfg.multi_pid,
        )

    async def _connect(self) -> None:
        if self._transport_factory is not None:
            self.transport = self._transport_factory()
        else:
            self.transport = transports.create(self.adapter_cfg.port, self.adapter_cfg.baud)
        await self.transport.open()
        self.connected = True
        self.session = self._make_session(self.transport)
        await self._initialize()

    async def _initialize(self) -> None:
        assert self.session is not None
        first = True
        while True:
            try:
                if first:
                    await self.session.initialize()
                else:
                    # the adapter is set up already: only look for the car again
                    resume = getattr(self.session, "resume", self.session.initialize)
                    await resume()
                break
            except ProtocolNotFound as exc:
                # the adapter is fine, the car is asleep: keep the link, try again later
                first = False
                self.ecu_responding = False
                await self._publish_link()
                log.info("%s", exc)
                await self._parked_step_without_ecu()
            except AdapterReset:
                first = True
        self.ecu_responding = True
        self._last_answer = time.monotonic()
        self._build_plan()
        await self._publish_link(force=True)
        with contextlib.suppress(GatewayError):
            self.vin = await self.session.read_vin()

    async def _parked_step_without_ecu(self) -> None:
        assert self.session is not None
        with contextlib.suppress(AdapterError, ParseError):
            await self._read_battery()
        await self._sleep_or_wake(self.polling_cfg.parked_interval_s if self.plan == "parked" else SILENT_RETRY_S)

    def _build_plan(self) -> None:
        assert self.session is not None
        info = self.session.info
        supported: dict[int, set[int]] = getattr(info, "supported", {}) or {}
        multi: dict[int, bool] = getattr(info, "multi_pid", {}) or {}
        for ecu, ok in multi.items():
            self.policy.set_multi_pid(ecu, ok)
        wanted = [int(p, 16) for p in self.polling_cfg.pids]
        # keep interest-only PIDs (asked on demand) in the plan too
        extra = {e.pid for e in self.policy.entries.values() if not e.always}
        self.policy.entries.clear()
        for pid in [*wanted, *sorted(extra - set(wanted))]:
            self._plan_pid(pid, always=pid in wanted, supported=supported)

    def _plan_pid(self, pid: int, *, always: bool, supported: dict[int, set[int]]) -> int:
        ecus = sorted(e for e, pids in supported.items() if pid in pids)
        ecu = ENGINE_ECU if ENGINE_ECU in ecus or not ecus else ecus[0]
        rate = math.inf if self.as_fast_as_possible else self.polling_cfg.rates.get(f"{pid:02X}", default_rate(pid))
        priority = self.polling_cfg.priorities.get(f"{pid:02X}", _DEFAULT_PRIORITIES.get(pid, 0))
        self.policy.set_pid(
            pid, ecu, rate, priority=priority, always=always, name=pid_name(pid), supported=bool(ecus) or not supported
        )
        return ecu

    async def _disconnect(self) -> None:
        t, self.transport = self.transport, None
        if t is not None:
            with contextlib.suppress(Exception):
                await t.close()

    async def _poll_forever(self) -> None:
        while True:
            await self._serve_exclusive()
            if not self._on_demand.empty():
                await self._serve_on_demand(self._on_demand.get_nowait())
                continue
            if self.plan == "parked":
                await self._parked_step()
                continue
            now = time.monotonic()
            if self._battery_ok and now - self._battery_at >= BATTERY_EVERY_S:
                # detectors use the charging voltage as an engine-running hint: read it while driving too
                self._battery_at = now
                await self._read_battery()
                continue
            batch = self.policy.next_batch(now)
            if batch is None:
                await self._publish_link()
                await self._sleep_or_wake(min(self.policy.next_due_in(now), 0.5))
                continue
            batches = self._lookahead(batch, now)
            if len(batches) > 1:
                await self._poll_pipelined(batches)
            else:
                await self._poll_batch(batch)

    def _lookahead(self, first: Batch, now: float) -> list[Batch]:
        """More batches of the same ECU that will be due while the first is answered (pipelining).

        Only where the session's probe showed the adapter takes several requests written at once.
        """
        session = self.session
        info = getattr(session, "info", None)
        if session is None or not getattr(info, "pipelining", False) or self.pipeline_depth < 2:
            return [first]
        per_exchange = max(0.001, session.latency_ms / 1000)
        batches = [first]
        self.policy.mark_sent(first, now)
        while len(batches) < self.pipeline_depth:
            at = now + per_exchange * len(batches)
            nxt = self.policy.next_batch(at)
            if nxt is None or nxt.ecu != first.ecu:
                break
            self.policy.mark_sent(nxt, at)
            batches.append(nxt)
        return batches

    async def _poll_pipelined(self, batches: list[Batch]) -> None:
        assert self.session is not None
        try:
            results = await self.session.pipeline_pids(batches[0].ecu, [b.pids for b in batches])
        except TransportTimeout:
            self._count("timeout")
            for b in batches:
                self.policy.record_failure(b, time.monotonic())
            await self._resync()
            return
        done = time.monotonic()
        if all(isinstance(r, NoDataError) for r in results) and done - self._last_answer > SILENT_AFTER_S:
            # nothing answers at all: the ECU sleeps (ignition off), not a PID problem
            for b in batches:
                self.policy.record_failure(b, done)
            await self._set_ecu_responding(False)
            await self._sleep_or_wake(SILENT_RETRY_S)
            return
        samples: list[Sample] = []
        trouble: GatewayError | None = None
        for batch, result in zip(batches, results, strict=True):
            if isinstance(result, NoDataError):
                self.policy.record(batch, done, ())
            elif isinstance(result, GatewayError):
                self.policy.record_failure(batch, done)
                trouble = trouble or result
            else:
                got = self._samples(result)
                self.policy.record(batch, done, {s.pid for s in got if s.pid is not None})
                samples += got
        if samples:
            self._last_answer = done
            await self._set_ecu_responding(True)
            await self._emit(samples)
        if isinstance(trouble, Stopped):
            # the adapter cannot take requests back to back after all: stop pipelining
            self._count("stopped")
            self._stopped_pipelined += 1
            if self._stopped_pipelined >= 3:
                log.warning("adapter interrupted pipelined requests; pipelining off")
                self.session.info.pipelining = False
        if isinstance(trouble, AdapterReset):
            await self._recover_adapter(trouble, batches[0])
        elif isinstance(trouble, BusError):
            self._count("bus_error")
            await self._recover_bus(trouble)
        elif isinstance(trouble, ParseError):
            self._count("parse_error")
            await self._resync()
        elif trouble is not None and not isinstance(trouble, Stopped):
            self._count(type(trouble).__name__)
            await self._resync()
        elif trouble is not None:
            await self._resync()

    async def _sleep_or_wake(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _poll_batch(self, batch: Batch) -> None:
        assert self.session is not None
        now = time.monotonic()
        try:
            readings = await self.session.read_pids(batch.ecu, batch.pids)
        except NoDataError:
            if now - self._last_answer > SILENT_AFTER_S:
                # nothing answers at all: the ECU sleeps (ignition off), not a PID problem
                self.policy.record_failure(batch, time.monotonic())
                await self._set_ecu_responding(False)
                await self._sleep_or_wake(SILENT_RETRY_S)
            else:
                self.policy.record(batch, time.monotonic(), ())
            return
        except BusError as exc:
            self._count("bus_error")
            self.policy.record_failure(batch, time.monotonic())
            await self._recover_bus(exc)
            return
        except ParseError as exc:
            self._count("parse_error")
            log.debug("unreadable answer: %s", exc)
            self.policy.record_failure(batch, time.monotonic())
            await self._resync()
            return
        except AdapterError as exc:
            await self._recover_adapter(exc, batch)
            return
        except TransportTimeout:
            self._count("timeout")
            self.policy.record_failure(batch, time.monotonic())
            await self._resync()
            return
        done = time.monotonic()
        samples = self._samples(readings)
        self.policy.record(batch, done, {s.pid for s in samples if s.pid is not None})
        self._last_answer = done
        await self._set_ecu_responding(True)
        await self._emit(samples)
        self._batches += 1
        if self._batches % TUNE_EVERY == 0:
            await self._tune()

    async def _tune(self) -> None:
        """Adaptive timing: ATST from the measured latency (ELM327 sessions only)."""
        tune = getattr(self.session, "tune_timeout", None)
        if tune is None:
            return
        try:
            st = await tune()
        except (AdapterError, ParseError, TransportTimeout) as exc:
            log.debug("ATST not changed: %s", exc)
            return
        if st is not None:
            log.info("ATST set to %.0f ms from measured latency", st)

    async def _recover_adapter(self, exc: AdapterError, batch: Batch) -> None:
        self.policy.record_failure(batch, time.monotonic())
        if isinstance(exc, AdapterReset):
            self._count("adapter_reset")
            log.warning("the adapter reset itself; initialising again")
            await self._initialize()
        elif isinstance(exc, Stopped):
            self._count("stopped")
            await self._resync()
        else:
            self._count(type(exc).__name__)
            await self._resync()

    async def _resync(self) -> None:
        assert self.session is not None
        try:
            await self.session.resync()
        except TransportTimeout:
            # the adapter does not come back to its prompt: start over on this link
            await self._initialize()

    async def _recover_bus(self, exc: BusError) -> None:
        assert self.session is not None
        log.info("bus error (%s): detecting the protocol again", exc)
        await self._resync()
        try:
            await self.session.detect_protocol()
        except ProtocolNotFound:
            await self._set_ecu_responding(False)
            await self._sleep_or_wake(SILENT_RETRY_S)
        except (BusError, ParseError):
            await self._sleep_or_wake(SILENT_RETRY_S)

    def _samples(self, readings: Sequence[Any], ts_ms: int | None = None) -> list[Sample]:
        ts = _now_ms() if ts_ms is None else ts_ms
        out = []
        for r in readings:
            if getattr(r, "service", 1) != 0x01 or r.pid is None:
                continue
            out.append(Sample(ts, r.name, r.value, r.unit, r.pid, r.ecu))
        return out

    async def _emit(self, samples: Sequence[Sample]) -> None:
        self.cache.put_many(samples)
        self.values += len(samples)
        for s in samples:
            await self.publish(s)

    async def _serve_on_demand(self, req: _OnDemand) -> None:
        assert self.session is not None
        now = time.monotonic()
        if not any(e.pid == req.pid for e in self.policy.entries.values()):
            self._plan_pid(req.pid, always=False, supported=getattr(self.session.info, "supported", {}) or {})
        self.policy.note_interest(req.pid, now)
        ecu = req.ecu or next((e.ecu for e in self.policy.entries.values() if e.pid == req.pid), ENGINE_ECU)
        try:
            readings = await self.session.read_pids(ecu, [req.pid])
        except NoDataError:
            if not req.future.done():
                req.future.set_result([])
            return
        except GatewayError as exc:
            if not req.future.done():
                req.future.set_exception(exc)
            if isinstance(exc, TransportError):
                raise
            with contextlib.suppress(TransportTimeout):
                await self.session.resync()
            return
        samples = self._samples(readings)
        batch = Batch(ecu, (req.pid,))
        self.policy.record(batch, time.monotonic(), {s.pid for s in samples if s.pid is not None})
        await self._emit(samples)
        if not req.future.done():
            req.future.set_result(samples)

    def _require_link(self) -> None:
        # callers (CLI, diagnostic socket) must get an answer now, not when the adapter returns
        if self.session is None or not self.connected:
            raise TransportError(f"the adapter ({self.adapter_cfg.port}) is not connected")

    async def _run_exclusive(self, fn: Callable[[Session], Awaitable[Any]]) -> Any:
        self._require_link()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._exclusive.put((fn, fut))
        self._wake.set()
        return await fut

    async def _serve_exclusive(self) -> None:
        while not self._exclusive.empty():
            fn, fut = self._exclusive.get_nowait()
            if self.session is None:
                fut.set_exception(TransportError("the adapter is not connected"))
                continue
            try:
                fut.set_result(await fn(self.session))
            except GatewayError as exc:
                if not fut.done():
                    fut.set_exception(exc)
                if isinstance(exc, TransportError):
                    raise

    # -- parked plan ------------------------------------------------------------------------------
    async def _read_battery(self) -> float | None:
        assert self.session is not None
        try:
            volts = await self.session.read_voltage()
        except UnsupportedCommand:
            self._battery_ok = False  # raw CAN, or a clone without ATRV: stop asking
            return None
        except (AdapterError, ParseError, TransportTimeout) as exc:
            log.debug("no battery voltage: %s", exc)
            return None
        self.battery_v = volts
        await self._emit_battery(volts)
        return volts

    async def _emit_battery(self, volts: float) -> None:
        sample = Sample(_now_ms(), "battery_voltage", volts, "V", None, 0)
        self.cache.put(sample)
        await self.publish(sample)

    async def _parked_step(self) -> None:
        assert self.session is not None
        now = time.monotonic()
        if now < self._next_parked:
            await self._publish_link()
            await self._sleep_or_wake(self._next_parked - now)
            return
        self._next_parked = now + self.polling_cfg.parked_interval_s
        if self._sleeping:
            await self.session.resync()  # any byte wakes a sleeping chip; resync gets the prompt back
            self._sleeping = False
        volts = await self._read_battery()
        low = volts is not None and volts < self.polling_cfg.parked_min_battery_v
        if low != self._low_battery:
            log.warning("battery %s: %s", f"{volts:.1f} V" if volts else "?", "polling paused" if low else "recovered")
        self._low_battery = low
        if not low:
            await self._wake_check()
        with contextlib.suppress(AdapterError, TransportTimeout):
            self._sleeping = await self.session.low_power()

    async def _wake_check(self) -> None:
        """One cheap request: does the ECU answer (the engine is on again)?"""
        assert self.session is not None
        pid = 0x0C
        try:
            readings = await self.session.read_pids(ENGINE_ECU, [pid])
        except (NoDataError, BusError):
            await self._set_ecu_responding(False)
            return
        except (ParseError, TransportTimeout):
            await self.session.resync()
            return
        self._last_answer = time.monotonic()
        await self._set_ecu_responding(True)
        await self._emit(self._samples(readings))

    # -- link state -------------------------------------------------------------------------------
    async def _set_ecu_responding(self, responding: bool) -> None:
        if not responding and self.ecu_responding:
            self.policy.forgive()  # the streaks that led here were the ECU's silence
        if responding != self.ecu_responding:
            self.ecu_responding = responding
            log.info("ECU %s", "responding" if responding else "silent")
        await self._publish_link()

    async def _publish_link(self, force: bool = False) -> None:
        info = self.session.info if self.session is not None else None
        protocol = (getattr(info, "protocol_name", "") or getattr(info, "protocol", "")) if info else ""
        state = (self.connected, self.ecu_responding and self.connected, protocol)
        now = time.monotonic()
        if force or state != self._link_published or now - self._link_published_at >= LINK_STATE_EVERY_S:
            self._link_published = state
            self._link_published_at = now
            await self.publish(LinkState(_now_ms(), state[0], state[1], state[2]))

    def _count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1
