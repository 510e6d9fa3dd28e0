"""The composition root: builds every component from the configuration, runs them, shuts them down.

Only this module wires things together (see DESIGN.md). The flow::

    Poller ──publish──► Bus ──► detection loop ──► Bus (events, trips)
                         ├────► store loop ──► Store ──► Forwarder per uplink ──► MQTT / HTTPS
                         ├────► console printer (``run --sim``)
                         └────► diagnostic server (subscribe)

Shutdown (SIGTERM, SIGINT): stop polling, hand the last items to the store, flush it, close the
uplinks, exit 0 — within 5 s. SIGHUP reloads the configuration file; an invalid file is refused
and the running configuration kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from gateway import __version__, config
from gateway.bus import Bus, Subscription
from gateway.errors import ConfigError, GatewayError, TransportError
from gateway.model import Event, LinkState, Sample, TripRecord

log = logging.getLogger("gateway.daemon")

SHUTDOWN_DEADLINE_S = 4.0


def setup_logging(cfg: config.LogConfig, stream: TextIO = sys.stderr) -> None:
    """Log lines to stderr (journald adds the timestamp under systemd)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.level.upper())


class SimProcess:
    """``obd-gateway-sim`` as a child process: the simulated adapter and vehicle for ``run --sim``."""

    def __init__(self, drive: str | None, extra: str) -> None:
        self.drive = drive
        self.extra = extra
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        """Start the simulator and return the port (pseudo-terminal path) it prints first."""
        exe = shutil.which("obd-gateway-sim") or shutil.which("obd-gateway-sim", path=str(Path(sys.executable).parent))
        argv = [exe] if exe else [sys.executable, "-m", "firmware_sim.cli"]
        if self.drive:
            argv += ["--drive", self.drive]
        argv += shlex.split(self.extra)
        self.proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 15)
        except TimeoutError:
            await self.stop()
            raise TransportError("the simulator did not print its port within 15 s") from None
        port = line.decode(errors="replace").strip()
        if not port:
            await self.stop()
            raise TransportError(f"the simulator exited without a port (exit code {self.proc.returncode})")
        return port

    async def stop(self) -> None:
        """Terminate the simulator (SIGTERM, then SIGKILL after 3 s)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 3)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class ConsolePrinter:
    """Live values and events on the terminal for ``run --sim`` (a technician's first look)."""

    NAMES = (
        ("engine_rpm", "rpm", "{:.0f}"),
        ("speed", "km/h", "{:.0f}"),
        ("engine_coolant_temperature", "°C", "{:.0f}"),
        ("engine_load", "% load", "{:.0f}"),
        ("fuel_level", "% fuel", "{:.1f}"),
        ("battery_voltage", "V", "{:.1f}"),
    )

    def __init__(self, sub: Subscription, out: TextIO = sys.stdout, interval_s: float = 1.0) -> None:
        self.sub = sub
        self.out = out
        self.interval_s = interval_s
        self.latest: dict[str, Any] = {}

    async def run(self) -> None:
        """Print a line of the latest values every interval and each event as it happens."""
        next_line = time.monotonic() + self.interval_s
        while True:
            timeout = max(0.0, next_line - time.monotonic())
            try:
                item = await asyncio.wait_for(self.sub.get(), timeout)
            except TimeoutError:
                item = None
            if isinstance(item, Sample):
                self.latest[item.name] = item.value
            elif isinstance(item, Event):
                self._print(f"EVENT {item.automatic_type} {_short(item.payload)}")
            elif isinstance(item, TripRecord):
                trip = item.to_dict()
                distance, duration = trip.get("distance", 0), trip.get("duration", 0) / 1000
                self._print(f"TRIP {item.id} distance={distance:.0f} m duration={duration:.0f} s")
            if time.monotonic() >= next_line:
                next_line = time.monotonic() + self.interval_s
                if self.latest:
                    self._print(self._values_line())

    def _values_line(self) -> str:
        parts = []
        for name, unit, fmt in self.NAMES:
            value = self.latest.get(name)
            if isinstance(value, (int, float)):
                parts.append(f"{fmt.format(value)} {unit}")
        return "values: " + "  ".join(parts)

    def _print(self, line: str) -> None:
        print(time.strftime("%H:%M:%S ") + line, file=self.out, flush=True)


def _short(payload: dict[str, Any]) -> str:
    keep = {k: v for k, v in payload.items() if not isinstance(v, (dict, list)) or k == "dtcs"}
    return " ".join(f"{k}={v}" for k, v in keep.items())


class Daemon:
    """Every component of one running gateway, built from a :class:`config.Config`."""

    def __init__(
        self,
        cfg: config.Config,
        *,
        config_path: str | None = None,
        console: bool = False,
        port_override: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.console = console
        self.port_override = port_override
        self.bus = Bus()
        self.started_ms = int(time.time() * 1000)
        self.stopping = asyncio.Event()
        self.poller: Any = None
        self.engine: Any = None
        self.store: Any = None
        self.forwarders: dict[str, Any] = {}
        self.uplinks: dict[str, Any] = {}
        self.supervisor: Any = None
        self.notifier: Any = None

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

        self.state_dir().mkdir(parents=True, exist_ok=True)
        self.poller = Poller(
            self._adapter_cfg(),
            self.cfg.polling,
            publish=self.bus.publish,
            state_dir=self.state_dir(),
            allow_clear_dtc=self.cfg.diag.allow_clear_dtc,
        )
        self.engine = DetectionEngine(
            self.cfg.detection,
            device_id=self.cfg.device.id,
            car_id=self.cfg.device.car_id,
            state_path=self.state_dir() / "trip-state.json",
        )
        enabled = [name for name in ("mqtt", "https") if getattr(self.cfg, name).enabled]
        self.store = Store(self.cfg.store, uplinks=enabled)
        for name in enabled:
            self.uplinks[name] = self._make_uplink(name)

    def _make_uplink(self, name: str) -> Any:
        if name == "mqtt":
            from gateway.uplink.mqtt import MqttUplink

            return MqttUplink(self.cfg.mqtt, device_id=self.cfg.device.id, state=self.vehicle_state)
        from gateway.uplink.https import HttpsUplink

        return HttpsUplink(self.cfg.https, device_id=self.cfg.device.id, car_id=self.cfg.device.car_id)

    def vehicle_state(self) -> dict[str, Any]:
        """Latest values from the cache, for the retained MQTT state topic."""
        if self.poller is None:
            return {}
        values = {s.name: s.value for s in self.poller.cache.latest()}
        return values | {"recordUpdatedAt": int(time.time() * 1000)}

    # -- loops ----------------------------------------------------------------------------------
    async def detection_loop(self, sub: Subscription) -> None:
        """Feed samples to the detection engine, publish what it finds, switch the polling plan."""
        was_on = self.engine.ignition_on
        while True:
            try:
                item = await asyncio.wait_for(sub.get(), 1.0)
                outputs = self.engine.feed(item)
            except TimeoutError:
                outputs = self.engine.tick(int(time.time() * 1000))
            for out in outputs:
                await self.bus.publish(out)
            if self.engine.ignition_on != was_on:
                was_on = self.engine.ignition_on
                self.poller.set_plan("driving" if was_on else "parked")

    async def store_loop(self, sub: Subscription) -> None:
        """Hand everything the bus carries to the store, in the groups it arrives in."""
        while True:
            items = [await sub.get(), *sub.get_nowait_all()]
            await self.store.append(items)

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        self.build()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

        store_sub = self.bus.subscribe("store", maxsize=20_000, lossless=True)
        detect_sub = self.bus.subscribe("detection", maxsize=5_000, lossless=True, kinds=(Sample, LinkState))
        await self.store.open()
        tasks: dict[str, Callable[[], Awaitable[None]]] = {
            "store": lambda: self.store_loop(store_sub),
            "poller": self.poller.run,
            "detection": lambda: self.detection_loop(detect_sub),
        }
        for name, uplink in self.uplinks.items():
            from gateway.uplink.forwarder import Forwarder

            fwd = Forwarder(self.store, uplink, name)
            self.forwarders[name] = fwd
            tasks[f"uplink:{name}"] = fwd.run
        if self.console:
            printer = ConsolePrinter(self.bus.subscribe("console", maxsize=1000))
            tasks["console"] = printer.run
        runner = asyncio.gather(*(self._keep_running(name, fn) for name, fn in tasks.items()))
        log.info("obd-gateway %s running (device %s)", __version__, self.cfg.device.id)
        await self.stopping.wait()
        log.info("stopping")
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await self._drain(store_sub)
        return 0

    async def _keep_running(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        backoff = 0.5
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("component %s failed; restarting in %.1f s", name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _drain(self, store_sub: Subscription) -> None:
        """Store what is still queued, flush, close — bounded by the shutdown deadline."""
        async def finish() -> None:
            rest = store_sub.get_nowait_all()
            if rest:
                await self.store.append(rest)
            await self.store.flush()
            await self.store.close()

        try:
            await asyncio.wait_for(finish(), SHUTDOWN_DEADLINE_S)
        except TimeoutError:
            log.error("store flush did not finish within %.0f s", SHUTDOWN_DEADLINE_S)

    def reload(self) -> None:
        """SIGHUP: re-read the configuration; refuse an invalid one and keep running."""
        if not self.config_path:
            log.warning("SIGHUP: no configuration file to reload")
            return
        try:
            new = config.load(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: new configuration refused, keeping the running one: %s", exc)
            return
        self.cfg = new
        log.info("SIGHUP: configuration reloaded from %s", self.config_path)


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
        sim_proc = SimProcess(drive, sim_args) if sim else None
        try:
            port = await sim_proc.start() if sim_proc else None
            if port:
                print(f"simulator: adapter on {port}", flush=True)
            daemon = Daemon(cfg, config_path=config_path, console=sim or cfg.log.console, port_override=port)
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

