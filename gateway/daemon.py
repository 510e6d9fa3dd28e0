"""The composition root: builds every component from the configuration, runs them, shuts them down.

Only this module wires things together (see DESIGN.md). The flow::

    Poller ──publish──► Bus ──► detection loop ──► Bus (events, trips)
                         ├────► store loop ──► Store ──► Forwarder per uplink ──► MQTT / HTTPS
                         ├────► console printer (``run --sim``)
                         └────► diagnostic server (subscribe)

Parked (``[power]``): the poller starts in the parked plan when the detection state says the ignition is
off; a low battery, or ``power.shutdown_after_parked_h`` parked, runs ``power.shutdown_command`` once,
after the store has committed what is queued (:meth:`Daemon.power_loop`).

Shutdown (SIGTERM, SIGINT): stop polling, hand the last items to the store, flush it, close the
uplinks, exit 0 — within 5 s. SIGHUP reloads the configuration file; an invalid file is refused
and the running configuration kept.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gateway import __version__, config, secrets
from gateway.bus import Bus, Subscription
from gateway.common import vocabulary
from gateway.common.aio import wait_for
from gateway.errors import ConfigError, GatewayError, TransportError
from gateway.model import Event, LinkState, Position, Sample, Samples, TripRecord, now_ms
from gateway.obd.custom import resolve
from gateway.poller import parked as parked_policy

if TYPE_CHECKING:
    from gateway.link.base import Session

log = logging.getLogger("gateway.daemon")

SHUTDOWN_DEADLINE_S = 4.0
#: the shutdown command gets this long before it is reported as hanging (it is not killed: it may be powering off)
SHUTDOWN_COMMAND_WAIT_S = 60.0
#: Output groups watched for their commit at most (the rest stay unconfirmed: re-published at the next start).
MAX_DURABLE_WAITS = 256
#: the retained state shows a position only while it is this fresh (a stale one would mislead a map)
STATE_FIX_MAX_AGE_MS = 60_000


def session_factory(
    adapter: config.AdapterConfig,
    polling: config.PollingConfig,
    state_dir: Path | None,
    *,
    transport_factory: Callable[[], Any] | None = None,
) -> Callable[[], Session]:
    """How the poller gets a new adapter session per connection: the only place sessions are built.

    ``can:`` ports get the raw CAN session, every other port an ELM327 session that remembers its
    protocol in ``adapter.state_file`` (default ``STATE_DIR/elm327-state.json``). ``transport_factory``
    replaces the transport (a test's fake BLE client); modules of unused transports are never imported.
    """
    spec = adapter.port_spec
    state_path = Path(adapter.state_file) if adapter.state_file else None
    if state_path is None and state_dir is not None:
        state_path = state_dir / "elm327-state.json"

    def new_transport() -> Any:
        if transport_factory is not None:
            return transport_factory()
        from gateway import transport

        return transport.create(spec, adapter.baud)

    def make() -> Session:
        if spec.kind == "can":
            from gateway.link.can import CanSession

            return CanSession(new_transport(), timeout_s=adapter.timeout_s)
        from gateway.elm327.session import Elm327Session

        return Elm327Session(
            new_transport(),
            protocol=adapter.protocol,
            timeout_s=adapter.timeout_s,
            state_path=state_path,
            baud=adapter.baud,
            fast_baud=adapter.fast_baud,
            multi_pid=polling.multi_pid,
        )

    return make


def setup_logging(cfg: config.LogConfig, stream: TextIO = sys.stderr) -> None:
    """Log lines to stderr (journald adds the timestamp under systemd)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.level.upper())
    secrets.install_log_redaction()


class SimProcess:
    """``obd-gateway-sim`` as a child process: the simulated adapter and vehicle for ``run --sim``."""

    def __init__(self, drive: str | None, extra: str, *, gps: bool = False) -> None:
        self.drive = drive
        self.extra = extra
        self.gps = gps
        self.gps_port: str | None = None
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        """Start the simulator and return the port (pseudo-terminal path) it prints first."""
        exe = shutil.which("obd-gateway-sim") or shutil.which("obd-gateway-sim", path=str(Path(sys.executable).parent))
        argv = [exe] if exe else [sys.executable, "-m", "firmware_sim.cli"]
        if self.drive:
            argv += ["--drive", self.drive]
        if self.gps:
            argv += ["--gps-pty"]  # a second pty serving the car's position as NMEA (firmware_sim/gps.py)
        argv += shlex.split(self.extra)
        self.proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        try:
            line = await wait_for(self.proc.stdout.readline(), 15)
        except TimeoutError:
            await self.stop()
            raise TransportError("the simulator did not print its port within 15 s") from None
        port = line.decode(errors="replace").strip()
        if not port:
            await self.stop()
            raise TransportError(f"the simulator exited without a port (exit code {self.proc.returncode})")
        if self.gps:
            try:
                gps_line = await wait_for(self.proc.stdout.readline(), 15)
            except TimeoutError:
                gps_line = b""
            text = gps_line.decode(errors="replace").strip()
            self.gps_port = text.removeprefix("gps:") if text.startswith("gps:") else None
        return port

    async def stop(self) -> None:
        """Terminate the simulator (SIGTERM, then SIGKILL after 3 s)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await wait_for(self.proc.wait(), 3)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class ConsolePrinter:
    """Live values and events on the terminal for ``run --sim`` (a technician's first look).

    Values older than ``stale_s`` are not printed as live: with the ignition off the line says how old
    the last value is, once, instead of repeating old figures. Events and trips are human lines.
    """

    NAMES = (
        ("engine_rpm", "rpm", "{:.0f}"),
        ("speed", "km/h", "{:.0f}"),
        ("engine_coolant_temperature", "°C", "{:.0f}"),
        ("engine_load", "% load", "{:.0f}"),
        ("fuel_level", "% fuel", "{:.1f}"),
        ("battery_voltage", "V", "{:.1f}"),
    )

    def __init__(
        self, sub: Subscription, out: TextIO = sys.stdout, interval_s: float = 1.0, stale_s: float = 5.0
    ) -> None:
        self.sub = sub
        self.out = out
        self.interval_s = interval_s
        self.stale_s = stale_s
        self.latest: dict[str, tuple[Any, float]] = {}  # name → (value, time.monotonic() it arrived)
        self._said_stale = False

    async def run(self) -> None:
        """Print a line of the latest values every interval and each event as it happens."""
        next_line = time.monotonic() + self.interval_s
        while True:
            items = self.sub.get_nowait_all()
            if not items:
                # a timer, not a task per item (as the detection loop)
                try:
                    async with asyncio.timeout(max(0.0, next_line - time.monotonic())):
                        items = [await self.sub.get()]
                except TimeoutError:
                    items = [None]
            for item in items:
                self.take(item)
            if time.monotonic() >= next_line:
                next_line = time.monotonic() + self.interval_s
                line = self.values_line(time.monotonic())
                if line:
                    self._print(line)

    def take(self, item: Any) -> None:
        """One bus item: remember a value (or a poll round's values), print an event or a finished trip."""
        if isinstance(item, Sample):
            self.latest[item.name] = (item.value, time.monotonic())
        elif isinstance(item, Samples):
            at = time.monotonic()
            for s in item:
                self.latest[s.name] = (s.value, at)
        elif isinstance(item, Position):
            self.latest["position"] = (f"{item.lat:.5f},{item.lon:.5f}", time.monotonic())
        elif isinstance(item, Event):
            self._print(describe_event(item))
        elif isinstance(item, TripRecord):
            self._print(describe_trip(item))

    def values_line(self, now: float) -> str | None:
        """The fresh values; a one-off note when there are none (ignition off); None: print nothing."""
        parts = []
        newest = None
        for name, unit, fmt in self.NAMES:
            value, at = self.latest.get(name, (None, None))
            if at is not None:
                newest = at if newest is None else max(newest, at)
            if isinstance(value, (int, float)) and at is not None and now - at <= self.stale_s:
                parts.append(f"{fmt.format(value)} {unit}")
        position, at = self.latest.get("position", (None, None))
        if position is not None and at is not None and now - at <= self.stale_s:
            parts.append(f"at {position}")
        if parts:
            self._said_stale = False
            return "values: " + "  ".join(parts)
        if newest is None or self._said_stale:
            return None
        self._said_stale = True
        return f"values: none fresh (the last arrived {now - newest:.0f} s ago: ignition off or car not answering)"

    def _print(self, line: str) -> None:
        print(time.strftime("%H:%M:%S ") + line, file=self.out, flush=True)


def _num(value: Any, fmt: str = "{:.0f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def describe_event(ev: Event) -> str:
    """An event as a line a person reads (``check-engine light ON: P0301, P0420``), not a Python repr."""
    p = ev.payload
    if ev.type in ("HARD_BRAKE", "HARD_ACCELERATION"):
        what = "hard brake" if ev.type == "HARD_BRAKE" else "hard acceleration"
        return (f"EVENT {what}: {_num(p.get('speed_from_kph'))} -> {_num(p.get('speed_to_kph'))} km/h, "
                f"{_num(p.get('g_force'), '{:.2f}')} g")
    if ev.type == "SPEEDING":
        return (f"EVENT speeding: up to {_num(p.get('speed_mph'))} mph over the {_num(p.get('threshold_mph'))} mph "
                f"threshold for {_num(p.get('duration_s'))} s")
    if ev.type in ("MIL_ON", "MIL_OFF"):
        codes = [d.get("code", "?") if isinstance(d, dict) else str(d) for d in p.get("dtcs") or []]
        state = "ON" if ev.type == "MIL_ON" else "off"
        extra = " (codes cleared by the technician)" if p.get("user_cleared") else ""
        return f"EVENT check-engine light {state}: {', '.join(codes) or 'no codes'}{extra}"
    label = ev.automatic_type.split(":")[-1].replace("_", " ")
    scalars = [f"{k.replace('_', ' ')} {v}" for k, v in p.items()
               if isinstance(v, (int, float, str)) and not isinstance(v, bool) and k not in ("trip", "id")]
    return f"EVENT {ev.automatic_type.split(':')[0]} {label}" + (f": {', '.join(scalars[:4])}" if scalars else "")


def describe_trip(trip: TripRecord) -> str:
    """The ``trip:finished`` summary line: distance, duration, events, idling, fuel."""
    s = trip.to_dict()
    minutes = (s.get("duration") or 0) / 60000
    km = (s.get("distance") or 0) / 1000
    parts = [f"{km:.2f} km in {minutes:.0f} min"]
    parts.append(f"{s.get('hard_brakes', 0)} hard brake(s), {s.get('hard_accels', 0)} hard acceleration(s)")
    if isinstance(s.get("max_speed_kph"), (int, float)):
        parts.append(f"top speed {s['max_speed_kph']:.0f} km/h")
    if isinstance(s.get("idling_time_s"), (int, float)):
        parts.append(f"idle {s['idling_time_s']:.0f} s")
    if isinstance(s.get("fuel_volume_l"), (int, float)):
        parts.append(f"fuel {s['fuel_volume_l']:.2f} L")
    return f"TRIP finished {trip.id}: " + ", ".join(parts)


class Daemon:
    """Every component of one running gateway, built from a :class:`config.Config`."""

    def __init__(
        self,
        cfg: config.Config,
        *,
        config_path: str | None = None,
        console: bool = False,
        port_override: str | None = None,
        gps_override: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.console = console
        self.port_override = port_override
        self.gps_override = gps_override
        self.location: Any = None
        self.bus = Bus()
        self.started_ms = now_ms()
        self.poller: Any = None
        self.engine: Any = None
        self.store: Any = None
        self.forwarders: dict[str, Any] = {}
        self.uplinks: dict[str, Any] = {}
        self.supervisor: Any = None
        self.notifier: Any = None
        self.diag: Any = None
        self.recent_trips: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self._last_dtc_read = 0.0
        self._store_sub: Subscription | None = None
        self._detect_sub: Subscription | None = None
        self._parked_since_ms: int | None = None
        self.shutdown_ran: str | None = None  # why power.shutdown_command ran (it runs once per start)
        # engine outputs published, with the store's future for their commit
        self._durable_waits: collections.deque[tuple[asyncio.Future[None], list[str]]] = collections.deque()

    # -- construction -------------------------------------------------------------------------
    def state_dir(self) -> Path:
        """Where the daemon keeps its state (trip state, protocol memory, tokens)."""
        return Path(self.cfg.device.state_dir)

    def _adapter_cfg(self) -> config.AdapterConfig:
        if self.port_override is None:
            return self.cfg.adapter
        return config.replace(self.cfg, "adapter", port=self.port_override).adapter

    def build(self) -> None:
        """Create the components (nothing runs yet)."""
        from gateway.detection import DetectionEngine
        from gateway.poller import Poller
        from gateway.store import Store

        secrets.check_config_secrets(self.cfg)  # a world-readable password file stops the start here
        for warning in secrets.config_warnings(self.cfg):
            log.warning("%s", warning)
        try:
            self.state_dir().mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a regular file in the way, a read-only parent: one line, exit 2
            raise ConfigError(
                f"device.state_dir: cannot use {self.state_dir()} as a directory: {exc.strerror or exc}"
            ) from None
        adapter = self._adapter_cfg()
        self.poller = Poller(
            adapter,
            self.cfg.polling,
            sessions=session_factory(adapter, self.cfg.polling, self.state_dir()),
            publish=self.bus.publish,
            allow_clear_dtc=self.cfg.diag.allow_clear_dtc,
            custom=resolve(self.cfg.vehicle.profile, self.cfg.pids.custom),
            auto_profile=self.cfg.vehicle.auto_profile and not self.cfg.vehicle.profile,
            power_cfg=self.cfg.power,
            charging_voltage_v=self.cfg.detection.charging_voltage_v,
        )
        self.poller.profile = self.cfg.vehicle.profile
        self.engine = DetectionEngine(
            self.cfg.detection,
            device_id=self.cfg.device.id,
            car_id=self.cfg.device.car_id,
            state_path=self.state_dir() / "trip-state.json",
            location=self.cfg.location,
        )
        if not self.engine.ignition_on_at(now_ms()):
            # a restart in a parked car: quiet from the first byte (no protocol search while the engine is off)
            self.poller.set_plan("parked")
            self._note_plan("parked")
        from gateway import location

        loc_cfg = self.cfg.location
        if self.gps_override is not None and loc_cfg.source_spec[0] == "nmea":
            loc_cfg = config.replace(self.cfg, "location", source=f"nmea:{self.gps_override}").location
        # beside the poller, feeding the same bus (docs/location.md)
        self.location = location.create(loc_cfg, self.bus.publish)
        enabled = [name for name in ("mqtt", "https") if getattr(self.cfg, name).enabled]
        self.store = Store(self.cfg.store, uplinks=enabled)
        for name in enabled:
            self.uplinks[name] = self._make_uplink(name)

    def _make_uplink(self, name: str) -> Any:
        if name == "mqtt":
            from gateway.uplink.mqtt import MqttUplink

            return MqttUplink(
                self.cfg.mqtt,
                device_id=self.cfg.device.id,
                state=self.vehicle_state,
                commands=self.remote_command,
                device_info=self.device_info,
                discovery_state_path=self.state_dir() / "ha-discovery.json",
            )
        from gateway.uplink.https import HttpsUplink

        return HttpsUplink(self.cfg.https, device_id=self.cfg.device.id, car_id=self.cfg.device.car_id)

    async def remote_command(self, req: dict[str, Any]) -> dict[str, Any]:
        """A command from the MQTT uplink, answered by the diagnostic server's handlers (one vocabulary)."""
        if self.diag is None:
            return {"ok": False, "cmd": req.get("cmd"), "error": {"code": "unavailable", "message": "starting"}}
        return dict(await self.diag.answer(req, remote_unsafe_ok=self.cfg.mqtt.remote_allow_unsafe))

    def device_info(self) -> dict[str, Any]:
        """For Home Assistant's device block: the VIN (serial number) once read, the software version."""
        vin = getattr(self.poller, "vin", "") if self.poller is not None else ""
        return {"vin": vin or None, "sw_version": __version__}

    def vehicle_state(self) -> dict[str, Any]:
        """Latest values from the cache, for the retained MQTT state topic."""
        if self.poller is None:
            return {}
        values: dict[str, Any] = {s.name: s.value for s in self.poller.cache.latest()}
        fix = self.engine.last_fix if self.engine is not None else None
        if fix is not None and now_ms() - fix.ts_ms <= STATE_FIX_MAX_AGE_MS:
            values["location"] = {"lat": fix.lat, "lon": fix.lon, "accuracy_m": fix.accuracy()}
        if self.engine is not None:
            values["ignition"] = self.engine.ignition_on
            values["moving"] = bool(self.engine.motion.moving) if self.engine.ignition_on else False
            fuel = self.engine.current_trip_fuel_l
            if fuel is not None:
                values["fuel_used_l"] = round(fuel, 3)
        vin = getattr(self.poller, "vin", "")
        if vin:
            values["vin"] = vin
        if self.cfg.location.source.strip().lower() != "none":
            values["location_source"] = True  # announce the device_tracker before the first fix
        return values | {"recordUpdatedAt": now_ms()}

    # -- loops ----------------------------------------------------------------------------------
    async def detection_loop(self, sub: Subscription) -> None:
        """Feed samples to the detection engine, publish what it finds, switch the polling plan.

        Outputs stay in the engine's state until the store has committed them (docs/uplinks.md,
        "What a crash can cost"): those a crash left unconfirmed are published again first, same ids.
        """
        await self._publish_outputs(self.engine.unconfirmed(), again=True)
        while True:
            # everything queued in one call; a wait (a timer, no task) only when nothing is queued
            items = sub.get_nowait_all()
            if not items:
                try:
                    async with asyncio.timeout(1.0):
                        items = [await sub.get(), *sub.get_nowait_all()]
                except TimeoutError:
                    pass
            outputs = self.engine.feed_many(items) if items else self.engine.tick(now_ms())
            await self._publish_outputs(outputs)
            self._confirm_durable()
            want = "driving" if self.engine.ignition_on else "parked"
            if self.poller.plan != want:
                self.poller.set_plan(want)
                self._note_plan(want)
            if self.engine.dtc_read_wanted and self.poller.connected:
                await self._feed_dtcs()

    async def _publish_outputs(self, outputs: list[Event | TripRecord], *, again: bool = False) -> None:
        """Publish engine outputs, watching for the store's commit of them (never waits for it)."""
        if not outputs:
            return
        ids = [out.id for out in outputs]
        # registered before publishing: the store cannot commit them before the watch exists
        self._durable_waits.append((self.store.when_committed(ids), ids))
        while len(self._durable_waits) > MAX_DURABLE_WAITS:  # unconfirmed ones are sent again at the next start
            self._durable_waits.popleft()[0].cancel()
        known = {t.get("id") for t in self.recent_trips} if again else set()
        for out in outputs:
            if isinstance(out, TripRecord) and out.id not in known:
                self.recent_trips.appendleft(out.to_dict())
            await self.bus.publish(out)

    def _confirm_durable(self) -> None:
        """Tell the engine which outputs the store has committed, so its state may forget them."""
        if not any(fut.done() for fut, _ in self._durable_waits):
            return
        done: list[str] = []
        pending: collections.deque[tuple[asyncio.Future[None], list[str]]] = collections.deque()
        for fut, ids in self._durable_waits:
            if not fut.done():
                pending.append((fut, ids))
            elif not fut.cancelled():
                done.extend(ids)
        self._durable_waits = pending
        if done:
            self.engine.confirm_durable(done)

    def _note_plan(self, plan: str) -> None:
        if plan == "driving":
            self._parked_since_ms = None
            return
        # parked since the engine last ran (kept in the detection state, so a restart does not reset it)
        last = self.engine.ignition.last_running_ms
        self._parked_since_ms = int(last) if last is not None else now_ms()

    async def power_loop(self) -> None:
        """Run ``power.shutdown_command`` once when the battery is low or the car has been parked long enough.

        What is queued for the store is committed first (the ``LOW_BATTERY`` event included), so a box
        that powers off loses nothing."""
        while self.shutdown_ran is None:
            await asyncio.sleep(1.0)
            power = self.cfg.power
            parked = self.poller.plan == "parked" and self._parked_since_ms is not None
            why = parked_policy.shutdown_due(
                low_battery=parked and self.poller.parked.low_battery,
                parked_for_s=(now_ms() - self._parked_since_ms) / 1000 if parked and self._parked_since_ms else None,
                command=power.shutdown_command,
                after_parked_h=power.shutdown_after_parked_h,
            )
            if why is None:
                continue
            self.shutdown_ran = why
            await self._flush_for_shutdown()
            log.warning("%s: running the shutdown command: %s", why, power.shutdown_command)
            try:
                proc = await asyncio.create_subprocess_exec(*shlex.split(power.shutdown_command))
                code = await wait_for(proc.wait(), SHUTDOWN_COMMAND_WAIT_S)
            except (OSError, ValueError) as exc:
                log.error("the shutdown command could not run: %s", exc)
                continue
            except TimeoutError:
                log.error("the shutdown command did not finish within %.0f s", SHUTDOWN_COMMAND_WAIT_S)
                continue
            (log.info if code == 0 else log.error)("the shutdown command exited with %s", code)

    async def _flush_for_shutdown(self) -> None:
        """Let detection and the store take what is queued (bounded), then commit the store."""
        subs = [s for s in (self._detect_sub, self._store_sub) if s is not None]
        for _ in range(100):  # bounded: at most about 5 s
            if not any(not s.queue.empty() for s in subs):
                break
            await asyncio.sleep(0.05)  # two queues drained by other tasks: nothing to wait on
        await asyncio.sleep(0.1)  # the store loop appends what it took last
        try:
            await self.store.flush()
        except Exception as exc:  # the command still runs: the battery matters more than the queue
            log.error("store flush before the shutdown command failed: %s", exc)

    async def _feed_dtcs(self) -> None:
        """The MIL came on: read the codes so the ``mil:on`` event can carry them."""
        now = time.monotonic()
        if now - self._last_dtc_read < 5.0:
            return
        self._last_dtc_read = now
        try:
            dtcs = await wait_for(self.poller.read_dtcs(), 10)
        except (GatewayError, TimeoutError) as exc:
            log.warning("reading DTCs for mil:on failed: %s", exc)
            return
        # On the bus, not straight into the engine: the store records it, so a replay sees the codes too.
        await self.bus.publish(Sample(now_ms(), "dtcs", tuple(dtcs.get("stored", ()))))

    async def store_loop(self, sub: Subscription) -> None:
        """Hand everything the bus carries to the store, in the groups it arrives in."""
        while True:
            items = [await sub.get(), *sub.get_nowait_all()]
            await self.store.append(items)

    async def status_loop(self) -> None:
        """STATUS= lines for systemd whenever the state changes (checked every 2 s)."""
        last = ""
        while True:
            line = self.status_line()
            if line != last:
                self.notifier.status(line)
                last = line
            await asyncio.sleep(2.0)

    def status_line(self) -> str:
        """One line: adapter state, ignition, queue depth, component health."""
        poll = self.poller.status()
        adapter = "adapter connected" if poll.get("connected") else "adapter retrying"
        ignition = "ignition on" if self.engine.ignition_on else "ignition off"
        parked = poll.get("parked")
        if isinstance(parked, dict):
            volts = parked.get("last_voltage_v")
            ignition += f", parked ({parked.get('bus_requests', 0)} bus requests" + (
                f", {volts:.1f} V)" if isinstance(volts, (int, float)) else ")"
            )
        depth: dict[str, dict[str, int]] = self.store.stats()["queue"] if self.store else {}
        queues = ", ".join(f"{k} queue {v['records']} records ({v['samples']} samples)" for k, v in depth.items())
        parts = [adapter, poll.get("protocol") or "", ignition, queues, self.supervisor.summary()]
        return "; ".join(p for p in parts if p)

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or a fatal store failure); returns the exit code."""
        from gateway.diag import DiagServer
        from gateway.sdnotify import Notifier
        from gateway.supervisor import Supervisor

        self.build()
        self.notifier = Notifier.from_env()
        sup = self.supervisor = Supervisor()
        sup.install_signal_handlers(reload=self.reload)

        # batches: a poll round is one queue item (its samples travel together); the bounds count items,
        # so with rounds of up to 6 samples they hold about as many samples as before rounds (20,000 and 5,000)
        store_sub = self._store_sub = self.bus.subscribe("store", maxsize=4_000, lossless=True, batches=True)
        detect_sub = self._detect_sub = self.bus.subscribe(
            "detection", maxsize=1_000, lossless=True, kinds=(Sample, LinkState, Position), batches=True
        )
        self.diag = DiagServer(
            DaemonStatus(self),
            socket_path=self.cfg.diag.socket,
            group=self.cfg.diag.group,
            tcp_port=self.cfg.diag.tcp_port,
            allow_clear_dtc=self.cfg.diag.allow_clear_dtc,
            max_clients=self.cfg.diag.max_clients,
            max_tcp_clients=self.cfg.diag.max_tcp_clients,
            idle_timeout_s=self.cfg.diag.idle_timeout_s,
        )
        # The socket first: a second daemon on the same box stops here, before touching the store.
        await self.diag.start()
        try:
            await self.store.open()
        except BaseException:
            await self.diag.close()
            raise
        self._add_components(sup, store_sub, detect_sub)
        sup.start()
        # The store is open and the adapter session is up or retrying: ready.
        self.notifier.ready(status="started; adapter connecting")
        from gateway.obd import PARSER_BUILD

        log.info("obd-gateway %s running (device %s, parser %s)", __version__, self.cfg.device.id, PARSER_BUILD)
        reason = await sup.wait()
        self.notifier.stopping(status=f"stopping: {reason}")
        hung = await sup.stop(deadline_s=2.5)
        if hung:
            log.error("components did not stop in time: %s", ", ".join(hung))
        try:
            self.engine.save_state()  # the open trip's totals up to this moment survive the restart
        except OSError as exc:
            log.error("could not save the trip state: %s", exc)
        await self._drain(store_sub)
        # what the final flush committed is confirmed: the next start does not send it again
        self._confirm_durable()
        await self.diag.close()
        for uplink in self.uplinks.values():
            with contextlib.suppress(Exception):
                await wait_for(uplink.close(), 0.5)
        self.notifier.close()
        return int(sup.exit_code)

    def _add_components(self, sup: Any, store_sub: Subscription, detect_sub: Subscription) -> None:
        """Every long-running loop, supervised; the store is the one whose failure stops the daemon."""
        from gateway.uplink.forwarder import Forwarder

        sup.add("store", lambda: self.store_loop(store_sub), critical=True)
        sup.add("poller", self.poller.run)
        if self.location is not None:
            sup.add("location", self.location.run)
        sup.add("detection", lambda: self.detection_loop(detect_sub))
        for name, uplink in self.uplinks.items():
            fwd = Forwarder(self.store, uplink, name)
            self.forwarders[name] = fwd
            sup.add(f"uplink:{name}", fwd.run)
        sup.add("diag", self._diag_forever)
        sup.add("watchdog", self.notifier.watchdog_loop)
        sup.add("status", self.status_loop)
        sup.add("power", self.power_loop)
        if self.console:
            printer = ConsolePrinter(self.bus.subscribe("console", maxsize=1000, batches=True))
            sup.add("console", printer.run)

    async def _diag_forever(self) -> None:
        """The diagnostic server was started before READY; this component only keeps it open."""
        await asyncio.Event().wait()

    async def _drain(self, store_sub: Subscription) -> None:
        """Store what is still queued, flush, close — bounded by the shutdown deadline."""

        async def finish() -> None:
            rest = store_sub.get_nowait_all()
            if rest:
                await self.store.append(rest)
            await self.store.flush()
            await self.store.close()

        try:
            await wait_for(finish(), SHUTDOWN_DEADLINE_S - 2.5)
        except TimeoutError:
            log.error("store flush did not finish in time")

    def reload(self) -> None:
        """SIGHUP: re-read the configuration; refuse an invalid one and keep running.

        Applied at once: ``[log]``, ``[polling]`` (the plan is rebuilt without reconnecting) and
        ``diag.allow_clear_dtc``. Every other changed key is named in a warning: it takes effect at the
        next start (ports, paths, uplinks, detection thresholds of an open trip).
        """
        from gateway.supervisor import ConfigReloader

        self.notifier.reloading()
        try:
            ConfigReloader(self.config_path, self.cfg, load=_load_checked, apply=self.apply_config)()
        finally:
            self.notifier.ready(status=self.status_line())

    def apply_config(self, new: config.Config) -> None:
        """Put what can change at run time into force; say which changed keys need a restart."""
        old = self.cfg
        applied: list[str] = []
        later: list[str] = []
        for section in dataclasses.fields(config.Config):
            before, after = getattr(old, section.name), getattr(new, section.name)
            for f in dataclasses.fields(before):
                if getattr(before, f.name) == getattr(after, f.name):
                    continue
                key = f"{section.name}.{f.name}"
                live = section.name in ("log", "polling", "power") or key == "diag.allow_clear_dtc"
                (applied if live else later).append(key)
        logging.getLogger().setLevel(new.log.level.upper())
        self.poller.reconfigure(new.polling, allow_clear_dtc=new.diag.allow_clear_dtc, power_cfg=new.power)
        if self.diag is not None:
            self.diag.allow_clear_dtc = new.diag.allow_clear_dtc
        diag = dataclasses.replace(old.diag, allow_clear_dtc=new.diag.allow_clear_dtc)
        self.cfg = dataclasses.replace(old, log=new.log, polling=new.polling, power=new.power, diag=diag)
        log.info("SIGHUP: configuration reloaded; applied: %s", ", ".join(applied) or "nothing changed")
        if later:
            log.warning("SIGHUP: these changes take effect after a restart: %s", ", ".join(later))


def _load_checked(path: str | Path) -> config.Config:
    cfg = config.load(path)
    secrets.check_config_secrets(cfg)
    return cfg


class DaemonStatus:
    """The read-only view the diagnostic server gets of the daemon (``gateway.diag.StatusSource``)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def status(self) -> dict[str, Any]:
        """Adapter, protocol, VIN, ignition, current trip, uplink queues, components, parser build."""
        from gateway.obd import PARSER_BUILD

        d = self.d
        store = d.store.stats() if d.store is not None else {}
        return {
            "version": __version__,
            "device": d.cfg.device.id,
            "uptime_s": round(time.time() - d.started_ms / 1000, 1),
            "parser": PARSER_BUILD,
            "adapter": d.poller.status(),
            "ignition": d.engine.ignition_on,
            "shutdown_command_ran": d.shutdown_ran,
            "current_trip": d.engine.current_trip_id,
            "store": store,
            "uplinks": {
                name: u.status() if hasattr(u, "status") else {"connected": bool(getattr(u, "connected", False))}
                for name, u in d.uplinks.items()
            },
            "components": d.supervisor.status() if d.supervisor else {},
            "bus_dropped": {s.name: s.dropped for s in d.bus.stats() if s.dropped},
            "location": d.location.status() if d.location is not None else None,
        }

    def values(self) -> list[dict[str, Any]]:
        """The cache."""
        return list(self.d.poller.cache.snapshot())

    def pids(self) -> list[dict[str, Any]]:
        """Per PID: supported, polled, target and achieved rates."""
        return list(self.d.poller.pid_stats())

    def trips(self, limit: int) -> list[dict[str, Any]]:
        """Recent finished trips, newest first."""
        return list(self.d.recent_trips)[:limit]

    async def dtc(self) -> dict[str, Any]:
        """Read trouble codes now."""
        return dict(await self.d.poller.read_dtcs())

    async def clear_dtc(self) -> dict[str, Any]:
        """Clear trouble codes (the server checked the config switch and the confirmation)."""
        await self.d.poller.clear_dtcs()  # publishes the dtcs_cleared marker once the car accepted it
        return {"cleared": True}

    async def query(self, pid: str) -> list[dict[str, Any]]:
        """One PID on demand."""
        samples = await self.d.poller.query(int(pid, 16))
        return [vocabulary.sample(s) for s in samples]

    def subscribe(self, name: str, maxsize: int, kinds: tuple[type, ...]) -> Subscription:
        """A dropping (never blocking) feed of bus items."""
        return self.d.bus.subscribe(name, maxsize=maxsize, kinds=kinds)

    def restart(self, component: str) -> dict[str, Any]:
        """Restart one supervised component (not counted as a failure; the store is refused)."""
        self.d.supervisor.restart(component)
        return {"restarting": component}


def main(
    cfg: config.Config,
    *,
    config_path: str | None = None,
    sim: bool = False,
    drive: str | None = None,
    sim_args: str = "",
) -> int:
    """``obd-gateway run``: run the daemon (with the simulator when ``sim``) until stopped."""
    setup_logging(cfg.log)

    async def amain() -> int:
        # `nmea:sim` in [location]: the simulator also serves the car's position as NMEA on a second pty
        sim_gps = cfg.location.source.strip().lower() == "nmea:sim"
        sim_proc = SimProcess(drive, sim_args, gps=sim_gps) if sim else None
        try:
            port = await sim_proc.start() if sim_proc else None
            if port:
                print(f"simulator: adapter on {port}", flush=True)
            gps_port = sim_proc.gps_port if sim_proc else None
            if gps_port:
                print(f"simulator: GPS (NMEA) on {gps_port}", flush=True)
            daemon = Daemon(
                cfg,
                config_path=config_path,
                console=sim or cfg.log.console,
                port_override=port,
                gps_override=gps_port,
            )
            return await daemon.run()
        finally:
            if sim_proc:
                await sim_proc.stop()

    try:
        return asyncio.run(amain())
    except GatewayError:
        raise
    except KeyboardInterrupt:
        return 130

