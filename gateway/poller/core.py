"""The poller: one adapter session + the scheduler policy + the cache, publishing what it reads.

::

    poller = Poller(adapter_cfg, polling_cfg, sessions=factory, publish=bus.publish, allow_clear_dtc=False)
    await poller.run()        # forever: connect, initialise, poll; reconnects with backoff

``sessions`` builds a new :class:`~gateway.link.base.Session` per connection (the composition root's
``gateway.daemon.session_factory``). ``run`` never returns on adapter trouble: a vanished adapter (closed
pseudo-terminal, unplugged USB, dropped BLE link) is reconnected with the one jittered exponential backoff
(:mod:`gateway.common.backoff`) up to ``adapter.reconnect_max_s``; every other failure goes through one
recovery path (:meth:`Poller._recover`): a bus error makes the session detect the protocol again, an
adapter that reset itself is initialised again, garbage or a lost prompt gets a resync. Whatever ends a
connection — including a bug — closes the session's transport first. :class:`~gateway.model.LinkState` is
published on every change and at least every 5 s, the samples of each poll round (or of each burst's rounds, in
order) as one :class:`~gateway.model.Samples`.

Plans: ``driving`` polls the configured PIDs at their rates; ``parked`` reads only the adapter's voltage
(ATRV, nothing on the car's bus) and sends one request only when the voltage shows the engine started, or
on the optional wake-check timer (:mod:`gateway.poller.parked`). A start in a parked car with a remembered
protocol does not search for the car until then. Requests a caller waits for (query, DTCs,
clear) are served between polls and dropped when their caller gave up (:mod:`gateway.poller.requests`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from gateway.cache import Cache
from gateway.common.aio import wait_for
from gateway.common.backoff import Backoff
from gateway.config import AdapterConfig, PollingConfig, PowerConfig
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
from gateway.link.base import DtcReport, Polled, Session
from gateway.model import LinkState, Sample, Samples, now_ms
from gateway.obd import pids as catalogue
from gateway.obd.custom import VIRTUAL_BASE, CustomPid, profile_for_vin, shipped_profiles
from gateway.obd.protocols import ENGINE_ECU
from gateway.obd.types import Reading
from gateway.poller.custom import CustomPids
from gateway.poller.parked import ADAPTER_SLEEP_MIN_S, ParkedPlan, Sign
from gateway.poller.requests import Request, RequestQueue
from gateway.scheduler import Batch, SchedulerPolicy
from gateway.transport.pump import PUMP_BUILD

log = logging.getLogger("gateway.poller")

LINK_STATE_EVERY_S = 5.0
TUNE_EVERY = 256  # batches between adaptive-timing updates
# A burst of the link pump (issue 19) plans this long ahead: the event loop wakes ~5 times a second at
# the link's full rate instead of once per request; a caller's request halts a burst at the next prompt.
BURST_S = 0.5
MAX_BURST = 32
BATTERY_EVERY_S = 5.0  # ATRV while driving
SILENT_AFTER_S = 2.0  # no answer from any ECU for this long: the ECU is not responding
SILENT_RETRY_S = 1.0

# PIDs the catalogue reads on demand only (no reference rate) get this rate when configured for polling.
DEFAULT_RATE_HZ = 1.0
# Higher priority when the link is short: what the detectors need (speed for hard brakes, RPM).
_DEFAULT_PRIORITIES: dict[int, int] = {0x0D: 2, 0x0C: 1}

SessionFactory = Callable[[], Session]


def default_rate(pid: int) -> float:
    """The default refresh rate of mode 01 ``pid``: the catalogue's (the reference refresh-rate table).

    PIDs the reference reads on demand only (no rate), and PIDs the catalogue does not know, get
    :data:`DEFAULT_RATE_HZ` when configured."""
    try:
        rate = catalogue.PIDS[pid].rate_hz
    except KeyError:  # a PID the catalogue does not know
        return DEFAULT_RATE_HZ
    return float(rate) if rate is not None and rate > 0 else DEFAULT_RATE_HZ


def pid_name(pid: int) -> str:
    """The catalogue's name of ``pid`` (its first field's name); '' for a PID the catalogue does not know."""
    try:
        entry = catalogue.PIDS[pid]
    except KeyError:
        return ""
    return str(entry.fields[0].name) if entry.fields else ""


class Poller:
    """Session + scheduler + cache; see the module docstring."""

    def __init__(
        self,
        adapter_cfg: AdapterConfig,
        polling_cfg: PollingConfig,
        *,
        sessions: SessionFactory,
        publish: Callable[[Any], Awaitable[None]],
        allow_clear_dtc: bool = False,
        as_fast_as_possible: bool = False,
        custom: Sequence[CustomPid] = (),
        auto_profile: bool = False,
        power_cfg: PowerConfig | None = None,
        charging_voltage_v: float = 13.2,
        time_scale: float = 1.0,
    ) -> None:
        self.adapter_cfg = adapter_cfg
        self.polling_cfg = polling_cfg
        self.power_cfg = power_cfg if power_cfg is not None else PowerConfig()
        self.charging_voltage_v = charging_voltage_v
        # Simulation only (tests, bench): the poller's clock runs this many times faster than the wall
        # clock, to match a simulator started with the same time scale (an 8 h park in 30 s).
        self.time_scale = time_scale
        self._t0 = time.monotonic()
        self.publish = publish
        self.allow_clear_dtc = allow_clear_dtc
        self.as_fast_as_possible = as_fast_as_possible
        self._sessions = sessions
        self.cache = Cache()
        self.policy = SchedulerPolicy(idle_unrequested_s=polling_cfg.idle_unrequested_s)
        self.plan: Literal["driving", "parked"] = "driving"
        self.parked = ParkedPlan()
        self.requests = RequestQueue()
        self.session: Session | None = None
        self.vin = ""
        self.connected = False
        self.ecu_responding = False
        self._link_published: tuple[bool, bool, str] | None = None
        self._link_published_at = -math.inf
        self._last_answer = -math.inf
        self._wake = asyncio.Event()
        self.started = time.monotonic()
        self.values = 0
        self.reconnects = 0
        self.errors: dict[str, int] = {}
        self.battery_v: float | None = None
        self.last_error = ""
        self._batches = 0
        self._battery_at = -math.inf
        self._battery_ok = True  # False once the session cannot read it (raw CAN)
        self.custom = CustomPids.of(custom)
        #: pick a profile by the car's VIN when none was configured (and no custom PID either)
        self.auto_profile = auto_profile and not custom
        self.profile = ""
        self._bus_closed = 0  # bus requests of the sessions already closed
        self._parked_at = -math.inf  # time.monotonic() of the last switch to the parked plan
        #: bursts of the link pump run, and the requests they carried (status)
        self.bursts = 0
        self.burst_requests = 0

    def _now(self) -> float:
        """The poller's clock (monotonic seconds; scaled by ``time_scale`` under a fast simulator)."""
        return self._clock(time.monotonic())

    def _clock(self, monotonic: float) -> float:
        """A ``time.monotonic()`` reading on the poller's clock."""
        return self._t0 + (monotonic - self._t0) * self.time_scale if self.time_scale != 1.0 else monotonic

    # -- public API -------------------------------------------------------------------------------
    def set_plan(self, plan: Literal["driving", "parked"]) -> None:
        """Switch between full polling (``driving``) and the battery-sparing ``parked`` plan."""
        if plan not in ("driving", "parked"):
            raise ValueError(f"unknown plan {plan!r}")
        if plan == self.plan:
            return
        log.info("polling plan: %s", plan)
        self.plan = plan
        if plan == "parked":
            self._enter_parked()
        else:
            self.parked.leave()
        self._wake.set()
        if self.session is not None:
            self.session.interrupt()  # a burst in progress stops at the next prompt

    def _enter_parked(self) -> None:
        power = self.power_cfg
        timed = power.wake_check or not self._battery_ok  # no voltage to watch: the timer is all there is
        self._parked_at = time.monotonic()
        self.parked.enter(
            self._now(), wake_interval_s=power.wake_check_interval_s if timed else None, bus_requests=self.bus_requests
        )

    @property
    def bus_requests(self) -> int:
        """Requests sent onto the car's bus by this poller so far (every connection)."""
        current = self.session.bus_requests if self.session is not None and self.connected else 0
        return self._bus_closed + current

    async def query(self, pid: int) -> list[Sample]:
        """Read mode 01 ``pid`` now (ahead of polling); the PID is then polled while asked for."""

        async def run(session: Session, req: Request) -> list[Sample]:
            return await self._read_on_demand(session, pid)

        result: list[Sample] = await self._submit(f"query {pid:02X}", run)
        return result

    async def read_dtcs(self) -> DtcReport:
        """Stored, pending and permanent DTCs and the MIL, read now. NoDataError when no ECU answers."""

        async def run(session: Session, req: Request) -> DtcReport:
            return await session.read_dtcs()

        result: DtcReport = await self._submit("read DTCs", run)
        return result

    async def clear_dtcs(self) -> None:
        """Clear DTCs (service 04) — only when constructed with ``allow_clear_dtc=True``, and only while
        the caller still waits (an abandoned clear never reaches the car)."""
        if not self.allow_clear_dtc:
            raise ForbiddenRequest("clearing DTCs is disabled (diag.allow_clear_dtc = false)")

        async def run(session: Session, req: Request) -> None:
            await session.clear_dtcs(req.wanted)
            # Published only after a successful clear and before any later poll can report the lamp off:
            # detection marks that mil:off user_cleared, and the store records the marker for replays.
            await self.publish(Sample(now_ms(), "dtcs_cleared", True))

        await self._submit("clear DTCs", run)

    async def read_vin(self) -> str:
        """The VIN, read now (mode 09 is never cached)."""

        async def run(session: Session, req: Request) -> str:
            return await session.read_vin()

        vin: str = await self._submit("read VIN", run)
        self.vin = vin
        return vin

    def reconfigure(
        self, polling_cfg: PollingConfig, *, allow_clear_dtc: bool, power_cfg: PowerConfig | None = None
    ) -> None:
        """Apply reloaded ``[polling]`` and ``[power]`` sections and the clear-DTC switch (SIGHUP) without
        reconnecting."""
        if power_cfg is not None and power_cfg != self.power_cfg:
            self.power_cfg = power_cfg
            if self.plan == "parked":
                self._enter_parked()  # the new intervals count from now
        self.polling_cfg = polling_cfg
        self.allow_clear_dtc = allow_clear_dtc
        self.policy.idle_unrequested_s = polling_cfg.idle_unrequested_s
        if self.session is not None and self.ecu_responding:
            self._build_plan()
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """adapter, protocol, elm_version, vin, connected (and more)."""
        session = self.session
        info = session.info if session is not None else None
        return {
            "adapter": self.adapter_cfg.port,
            "connected": self.connected,
            "ecu_responding": self.ecu_responding,
            "protocol": (info.protocol_name or info.protocol) if info else "",
            "elm_version": info.version if info else "",
            "vin": self.vin,
            "plan": self.plan,
            "battery_v": self.battery_v,
            "parked": self._parked_status(),
            "bus_requests": self.bus_requests,
            "reconnects": self.reconnects,
            "values": self.values,
            "requests": session.requests if session is not None else 0,
            "bursts": {"build": PUMP_BUILD, "bursts": self.bursts, "requests": self.burst_requests},
            "abandoned_requests": self.requests.abandoned,
            "errors": dict(self.errors) | (dict(session.errors) if session is not None else {}),
            "adapter_info": info.as_dict() if info is not None else {},
            "profile": self.profile,
            "custom": self.custom.status(),
        }

    def _parked_status(self) -> dict[str, Any] | None:
        p = self.parked
        if self.plan != "parked" or p.since is None:
            return None
        return {
            "since_s": round((self._now() - p.since) / self.time_scale, 1),
            "bus_requests": self.bus_requests - p.requests_at_entry,
            "wake_checks": p.wake_checks,
            "last_voltage_v": p.last_volts,
            "low_battery": p.low_battery,
            "adapter_sleeping": p.sleeping,
            "waiting_for_engine": not self.ecu_responding,
        }

    def pid_stats(self) -> list[dict[str, Any]]:
        """pid, name, supported, polled, target_hz, achieved_hz per PID (and ecu, priority, counts)."""
        return self.policy.stats(self._now())

    # -- the connection loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: connect, initialise, poll; reconnect with backoff when the adapter goes away."""
        backoff = Backoff(0.5, max(0.5, self.adapter_cfg.reconnect_max_s))
        while True:
            session = self._sessions()
            try:
                await session.open()
                self.session = session
                self.connected = True
                await self._initialize()
                backoff.reset()
                await self._poll_forever()
            except (TransportError, AdapterError, ParseError) as exc:
                self._count(type(exc).__name__)
                self.last_error = str(exc)
                log.warning("%s: %s", "adapter link lost" if self.connected else "adapter not reachable", exc)
            finally:
                # whatever ended this connection (even a bug): release the port and answer the waiting callers
                self._bus_closed += session.bus_requests
                self.connected = False
                await session.close()
                self.connected = False
                self.requests.fail_all(TransportError(f"the adapter ({self.adapter_cfg.port}) is not connected"))
            await self._publish_link(force=True)
            await asyncio.sleep(backoff.next())
            self.reconnects += 1

    async def _initialize(self) -> None:
        session = self._session()
        first = True
        while True:
            try:
                if first:
                    await session.prepare()  # no request on the car's bus yet
                    first = False
                    if await self._car_parked(session):
                        await self._wait_for_engine()
                await session.resume()
                break
            except ProtocolNotFound as exc:
                # the adapter is fine, the car is asleep: keep the link, try again when the engine may run
                self.ecu_responding = False
                await self._publish_link()
                (log.debug if self.plan == "parked" else log.info)("%s", exc)
                await self._wait_for_engine()
            except AdapterReset:
                first = True
        self.ecu_responding = True
        self._last_answer = self._now()
        self._build_plan()
        await self._publish_link(force=True)
        with contextlib.suppress(GatewayError):
            self.vin = await session.read_vin()
        if self.auto_profile and self.vin and not self.profile:
            found = profile_for_vin(self.vin, shipped_profiles().values())
            if found is not None:
                log.info("VIN %s…: polling profile %s", self.vin[:5], found.name)
                self.profile = found.name
                self.custom = CustomPids.of(found.pids)
                self._build_plan()

    def _session(self) -> Session:
        if self.session is None:
            raise TransportError(f"the adapter ({self.adapter_cfg.port}) is not connected")
        return self.session

    def _build_plan(self) -> None:
        info = self._session().info
        for ecu in info.forms:
            self.policy.set_max_pids(ecu, info.max_pids(ecu))
        wanted = [int(p, 16) for p in self.polling_cfg.pids]
        # keep interest-only PIDs (asked on demand) in the plan too
        extra = {e.pid for e in self.policy.entries.values() if not e.always and e.pid < VIRTUAL_BASE}
        self.policy.entries.clear()
        for pid in [*wanted, *sorted(extra - set(wanted))]:
            self._plan_pid(pid, always=pid in wanted)
        self.custom.plan(self.policy, fast=self.as_fast_as_possible)

    def _plan_pid(self, pid: int, *, always: bool) -> int:
        supported = self._session().info.supported
        ecus = sorted(e for e, pids in supported.items() if pid in pids)
        ecu = ENGINE_ECU if ENGINE_ECU in ecus or not ecus else ecus[0]
        rate = math.inf if self.as_fast_as_possible else self.polling_cfg.rates.get(f"{pid:02X}", default_rate(pid))
        priority = self.polling_cfg.priorities.get(f"{pid:02X}", _DEFAULT_PRIORITIES.get(pid, 0))
        self.policy.set_pid(
            pid, ecu, rate, priority=priority, always=always, name=pid_name(pid), supported=bool(ecus) or not supported
        )
        return ecu

    async def _poll_forever(self) -> None:
        while True:
            if await self._serve_requests():
                continue
            if self.plan == "parked":
                sign = await self._parked_step()
                if sign is not None:
                    await self._wake_check(sign)
                continue
            now = self._now()
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
            if not await self._poll_burst(batch, now):
                await self._poll_batch(batch)

    async def _sleep_or_wake(self, seconds: float) -> None:
        """Wait ``seconds`` of the poller's clock, or less when something wakes the loop."""
        if seconds <= 0:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await wait_for(self._wake.wait(), seconds / self.time_scale)

    async def _poll_batch(self, batch: Batch) -> None:
        custom = tuple(p for p in batch.pids if p >= VIRTUAL_BASE)
        if custom:
            await self._poll_custom(Batch(batch.ecu, custom))
            batch = Batch(batch.ecu, tuple(p for p in batch.pids if p < VIRTUAL_BASE))
            if not batch.pids:
                return
        await self._poll_mode01(batch)

    async def _poll_custom(self, batch: Batch) -> None:
        """User-defined PIDs (services 01/21/22 to their own ECU ids, :mod:`gateway.poller.custom`)."""
        sent = self._now()
        try:
            samples, answered = await self.custom.read(self._session(), batch.pids, now_ms())
        except (AdapterError, ParseError, TransportTimeout) as exc:
            self.policy.record_failure(batch, self._now())
            await self._recover(exc)
            return
        finally:
            for vpid in self.custom.unsupported():
                entry = self.policy.entries.get((self.custom.pids[vpid].response, vpid))
                if entry is not None:
                    entry.supported = False
        done = self._now()
        self.policy.record(batch, done, answered, sent=sent)
        if samples:
            self._last_answer = done
        await self._emit(samples)

    async def _poll_mode01(self, batch: Batch) -> None:
        session = self._session()
        sent = self._now()
        try:
            readings = await session.read_pids(batch.ecu, batch.pids)
        except NoDataError:
            if self._now() - self._last_answer > SILENT_AFTER_S:
                # nothing answers at all: the ECU sleeps (ignition off), not a PID problem
                self.policy.record_failure(batch, self._now())
                await self._set_ecu_responding(False)
                await self._sleep_or_wake(SILENT_RETRY_S)
            else:
                self.policy.record(batch, self._now(), ())
            return
        except (AdapterError, ParseError, TransportTimeout) as exc:
            self.policy.record_failure(batch, self._now())
            await self._recover(exc)
            return
        finally:
            # the session may have demoted (or promoted) this ECU's request form
            self.policy.set_max_pids(batch.ecu, session.info.max_pids(batch.ecu))
        done = self._now()
        samples = self._samples(readings)
        self.policy.record(batch, done, {s.pid for s in samples if s.pid is not None}, sent=sent)
        self._last_answer = done
        await self._set_ecu_responding(True)
        await self._emit(samples)
        self._batches += 1
        if self._batches % TUNE_EVERY == 0:
            await self._tune()

    async def _poll_burst(self, first: Batch, now: float) -> bool:
        """``first`` and the requests planned back to back after it, as one burst of the link pump; False
        when no burst ran (nothing sent: the caller sends ``first`` the ordinary way). Each answer is
        handled as :meth:`_poll_mode01` handles its own, in order; the loop is woken once per burst."""
        session = self._session()
        plan = self._plan_burst(session, first, now)
        if len(plan) < 2:
            return False
        started = time.monotonic()
        polled = await session.read_pids_burst(first.ecu, [b.pids for b in plan])
        if polled is None:
            return False
        self._count_burst(polled, started)
        self.policy.set_max_pids(first.ecu, session.info.max_pids(first.ecu))
        mono, wall = time.monotonic(), now_ms()
        rounds: list[list[Sample]] = []
        failure: AdapterError | ParseError | TransportTimeout | None = None
        fatal: GatewayError | None = None
        silent = False
        for batch, got in zip(plan, polled, strict=False):
            done = self._clock(got.done)
            error = got.error
            if error is None:
                samples = self._samples(got.readings, wall - int((mono - got.done) * 1000))
                answered = {s.pid for s in samples if s.pid is not None}
                self.policy.record(batch, done, answered, sent=self._clock(got.sent))
                self._last_answer = done
                rounds.append(samples)
            elif isinstance(error, NoDataError):
                silent = done - self._last_answer > SILENT_AFTER_S
                if silent:
                    self.policy.record_failure(batch, done)
                else:
                    self.policy.record(batch, done, ())
            elif isinstance(error, (AdapterError, ParseError, TransportTimeout)):
                self.policy.record_failure(batch, done)
                failure = error
            else:
                fatal = error  # the link itself failed: the connection loop decides (as from _poll_mode01)
        await self._emit_rounds(rounds)  # the answers read before a failure are values like any other
        if fatal is not None:
            raise fatal
        if failure is not None:
            await self._recover(failure)
        elif silent:
            await self._set_ecu_responding(False)
            await self._sleep_or_wake(SILENT_RETRY_S)
        return True

    def _count_burst(self, polled: Sequence[Polled], started: float) -> None:
        self.bursts += 1
        self.burst_requests += len(polled)
        if self.plan == "parked" and self._parked_at > started:
            # the guard counts a burst's requests when it ends: those written before the car was parked
            # are not "since parking"
            self.parked.requests_at_entry += sum(1 for got in polled if got.sent < self._parked_at)

    def _plan_burst(self, session: Session, first: Batch, now: float) -> list[Batch]:
        """The requests after ``first`` that go back to back to the same ECU in its request form."""
        round_trip = session.latency_ms / 1000
        if round_trip <= 0:
            return []  # nothing measured yet: the first requests go one by one
        limit = session.info.max_pids(first.ecu)
        plan: list[Batch] = []
        # only at the link's full rate, every PID due at every round trip: below it, requests go one by one so
        # that each sample reaches the bus when it is read (a burst holds its rounds back up to BURST_S, which
        # would reorder them against other sources on the bus, the GPS's positions)
        steady = self.policy.steady_plan(now, round_trip * self.time_scale, min(MAX_BURST, int(BURST_S / round_trip)))
        for batch in steady or ():
            if batch.ecu != first.ecu or len(batch.pids) > limit or any(p >= VIRTUAL_BASE for p in batch.pids):
                break
            plan.append(batch)
        return plan if plan and plan[0] == first else []

    async def _emit_rounds(self, rounds: Sequence[Sequence[Sample]]) -> None:
        """A burst's answered rounds, in order, published as one :class:`Samples` (one bus item per burst)."""
        if not rounds:
            return
        await self._set_ecu_responding(True)
        await self._emit([s for samples in rounds for s in samples])
        tune = (self._batches + len(rounds)) // TUNE_EVERY > self._batches // TUNE_EVERY
        self._batches += len(rounds)
        if tune:
            await self._tune()

    async def _recover(self, exc: AdapterError | ParseError | TransportTimeout) -> None:
        """The one recovery path for a failed request (NO DATA is not a failure and never comes here)."""
        if isinstance(exc, AdapterReset):
            self._count("adapter_reset")
            log.warning("the adapter reset itself; initialising again")
            await self._initialize()
            return
        if isinstance(exc, BusError):
            self._count("bus_error")
            log.info("bus error (%s): detecting the protocol again", exc)
            await self._resync()
            try:
                await self._session().detect_protocol()
            except ProtocolNotFound:
                await self._set_ecu_responding(False)
                await self._sleep_or_wake(SILENT_RETRY_S)
            except (BusError, ParseError):
                await self._sleep_or_wake(SILENT_RETRY_S)
            return
        kinds: dict[type[Exception], str] = {ParseError: "parse_error", TransportTimeout: "timeout", Stopped: "stopped"}
        kind = kinds.get(type(exc), type(exc).__name__)
        self._count(kind)
        log.debug("request failed (%s): resync", exc)
        await self._resync()

    async def _resync(self) -> None:
        try:
            await self._session().resync()
        except TransportTimeout:
            # the adapter does not come back to its prompt: start over on this link
            await self._initialize()

    async def _tune(self) -> None:
        """Adaptive timing: ATST from the measured latency (ELM327 sessions; a no-op elsewhere)."""
        try:
            st = await self._session().tune_timeout()
        except (AdapterError, ParseError, TransportTimeout) as exc:
            log.debug("ATST not changed: %s", exc)
            return
        if st is not None:
            log.info("ATST set to %.0f ms from measured latency", st)

    def _samples(self, readings: Sequence[Reading], ts_ms: int | None = None) -> list[Sample]:
        ts = now_ms() if ts_ms is None else ts_ms
        kept = (r for r in readings if r.service == 0x01 and r.pid is not None)
        return [Sample(ts, r.name, r.value, r.unit, r.pid, r.ecu) for r in kept]

    async def _emit(self, samples: Sequence[Sample]) -> None:
        """One round's samples: cached, counted and published as one :class:`Samples` item."""
        if not samples:
            return
        self.cache.put_many(samples)
        self.values += len(samples)
        await self.publish(Samples(samples))

    # -- requests a caller waits for ----------------------------------------------------------------
    async def _submit(self, label: str, run: Callable[[Session, Request], Awaitable[Any]]) -> Any:
        # callers (CLI, diagnostic socket) must get an answer now, not when the adapter or the car returns
        if self.session is None or not self.connected:
            raise TransportError(f"the adapter ({self.adapter_cfg.port}) is not connected")
        if not self.ecu_responding:
            raise NoDataError("the car's ECU is not answering (is the ignition on?)")
        fut = self.requests.submit(label, run)
        self._wake.set()
        self.session.interrupt()  # a burst in progress stops at the next prompt
        return await fut  # a caller that gives up cancels fut: the request is then dropped unsent

    async def _serve_requests(self) -> bool:
        """Serve every waiting request; whether there was one."""
        served = False
        # on-demand work takes a bounded share of the link while configured PIDs are due (gateway.scheduler)
        while self.policy.on_demand_allowed(time.monotonic(), explicit=True) and (req := self.requests.next()):
            served = True
            self.policy.note_request(on_demand=True)
            session = self._session()
            try:
                result = await req.run(session, req)
            except (AdapterError, ParseError, TransportTimeout) as exc:
                RequestQueue.resolve(req, exc=exc)
                if not isinstance(exc, NoDataError):
                    await self._recover(exc)
                continue
            except GatewayError as exc:
                RequestQueue.resolve(req, exc=exc)
                raise  # the link itself failed (or the write guard caught a bug): the connection loop decides
            RequestQueue.resolve(req, result)
        return served

    async def _read_on_demand(self, session: Session, pid: int) -> list[Sample]:
        now = self._now()
        if not any(e.pid == pid for e in self.policy.entries.values()):
            self._plan_pid(pid, always=False)
        self.policy.note_interest(pid, now)
        ecu = next((e.ecu for e in self.policy.entries.values() if e.pid == pid), ENGINE_ECU)
        try:
            readings = await session.read_pids(ecu, [pid])
        except NoDataError:
            return []
        samples = self._samples(readings)
        self.policy.record(Batch(ecu, (pid,)), self._now(), {s.pid for s in samples if s.pid is not None})
        await self._emit(samples)
        return samples

    # -- parked plan ------------------------------------------------------------------------------
    async def _read_battery(self) -> float | None:
        try:
            volts = await self._session().read_voltage()
        except UnsupportedCommand:
            self._battery_ok = False  # raw CAN, or a clone without ATRV: stop asking
            return None
        except (AdapterError, ParseError, TransportTimeout) as exc:
            log.debug("no battery voltage: %s", exc)
            return None
        self.battery_v = volts
        sample = Sample(now_ms(), "battery_voltage", volts, "V", None, 0)
        self.cache.put(sample)
        await self.publish(sample)
        return volts

    async def _car_parked(self, session: Session) -> bool:
        """At start-up: a remembered protocol and a voltage below charging mean a parked car: no search."""
        if not session.remembered_protocol or self.plan != "parked":
            return False
        volts = await self._read_battery()
        return volts is not None and volts < self.charging_voltage_v

    async def _wait_for_engine(self) -> None:
        """No ECU answers: wait quietly until the car may answer (returns to try the bus again).

        Parked: voltage readings only, until a sign of a start (:mod:`gateway.poller.parked`). Otherwise
        (the ignition is not known to be off) the battery is read and the bus tried again after a second."""
        while True:
            await self._serve_requests()
            if self.plan != "parked":
                with contextlib.suppress(AdapterError, ParseError):
                    await self._read_battery()
                await self._sleep_or_wake(SILENT_RETRY_S)
                return
            if not self.parked.announced:
                self.parked.announced = True
                volts = f"{self.battery_v:.1f} V" if self.battery_v is not None else "voltage unknown"
                log.info("parked, waiting for the engine (battery %s)", volts)
            sign = await self._parked_step()
            if sign is not None:
                log.info("looking for the car (%s)", sign.replace("_", " "))
                if sign != "wake_check":
                    self.parked.announced = False
                return

    async def _parked_step(self) -> Sign | None:
        """One step of the quiet plan: wait for the next reading, read ATRV; a sign to try the bus, or None."""
        session = self._session()
        power = self.power_cfg
        now = self._now()
        if self.parked.wake_check_due(now, power.wake_check_interval_s):
            await self._wake_chip(session)
            return "wake_check"
        if not self.parked.reading_due(now, power.voltage_interval_s):
            await self._publish_link()
            await self._sleep_or_wake(self.parked.wait_s(now))
            return None
        await self._wake_chip(session)
        volts = await self._read_battery()
        if volts is None:
            if not self._battery_ok and self.parked.next_wake_at == math.inf:
                self._enter_parked()  # no voltage on this link: fall back to the timed wake check
            return None
        sign, changed = self.parked.observe(
            now,
            volts,
            charging_v=self.charging_voltage_v,
            low_v=power.low_battery_v,
            hysteresis_v=power.low_battery_hysteresis_v,
            low_confirm_s=power.low_battery_confirm_s,
        )
        if changed:
            low = self.parked.low_battery
            if low:
                log.warning("battery low (%.1f V < %.1f V): every request stopped", volts, power.low_battery_v)
            else:
                log.warning("battery recovered (%.1f V)", volts)
            marker = Sample(now_ms(), "low_battery", low, "", None, 0)
            self.cache.put(marker)
            await self.publish(marker)
        if sign is None and self.ecu_responding and not self.parked.low_battery:
            return "ecu_awake"  # the bus is awake anyway: the check wakes nothing and finds a running engine
        if sign is None and power.adapter_sleep and power.voltage_interval_s >= ADAPTER_SLEEP_MIN_S:
            with contextlib.suppress(AdapterError, TransportTimeout):
                self.parked.sleeping = await session.low_power()
        return sign

    async def _wake_chip(self, session: Session) -> None:
        if self.parked.sleeping:
            await session.resync()  # any byte wakes a sleeping chip; resync gets the prompt back
            self.parked.sleeping = False

    async def _wake_check(self, why: Sign) -> None:
        """One cheap request: does the ECU answer (the engine is on again)?"""
        log.info("wake check (%s)", why.replace("_", " "))
        try:
            readings = await self._session().read_pids(ENGINE_ECU, [0x0C])
        except (NoDataError, BusError):
            await self._set_ecu_responding(False)
            return
        except (AdapterError, ParseError, TransportTimeout) as exc:
            await self._recover(exc)
            return
        self._last_answer = self._now()
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
        protocol = (info.protocol_name or info.protocol) if info else ""
        state = (self.connected, self.ecu_responding and self.connected, protocol)
        now = self._now()
        if force or state != self._link_published or now - self._link_published_at >= LINK_STATE_EVERY_S:
            self._link_published = state
            self._link_published_at = now
            await self.publish(LinkState(now_ms(), state[0], state[1], state[2]))

    def _count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1
