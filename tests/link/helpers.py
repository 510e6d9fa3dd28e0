"""Helpers for the link tests: run a Poller against a port and collect what it publishes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim import Simulator
from firmware_sim.server import PtyServer
from firmware_sim.timing import TimingModel
from gateway.config import AdapterConfig, PollingConfig, PowerConfig
from gateway.daemon import session_factory
from gateway.elm327.session import Elm327Session
from gateway.model import LinkState, Sample, Samples
from gateway.poller import Poller
from gateway.transport.serial import SerialTransport


@dataclass
class Collected:
    """Everything a poller published, in order."""

    samples: list[Sample] = field(default_factory=list)
    links: list[LinkState] = field(default_factory=list)

    async def publish(self, item: Any) -> None:
        if isinstance(item, Samples):  # one poll round
            self.samples.extend(item)
        elif isinstance(item, Sample):
            self.samples.append(item)
        elif isinstance(item, LinkState):
            self.links.append(item)

    def named(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]


def make_poller(
    port: str, state_dir: Path | None = None, *, pids: list[str] | None = None, fast: bool = False, **adapter: Any
) -> tuple[Poller, Collected]:
    got = Collected()
    power = adapter.pop("power", None) or PowerConfig(voltage_interval_s=0.2)
    time_scale = adapter.pop("time_scale", 1.0)
    cfg = AdapterConfig(port=port, timeout_s=adapter.pop("timeout_s", 2.0), reconnect_max_s=1.0, **adapter)
    polling = PollingConfig(pids=pids or ["0C", "0D", "05", "04", "10", "11"])
    sessions = session_factory(cfg, polling, state_dir)
    poller = Poller(
        cfg, polling, sessions=sessions, publish=got.publish, as_fast_as_possible=fast, power_cfg=power,
        time_scale=time_scale,
    )
    return poller, got


async def run_until(poller: Poller, cond: Callable[[], bool], timeout: float) -> bool:
    """Run ``poller`` until ``cond()`` holds (True) or ``timeout`` passes (False); then stop it."""
    task = asyncio.create_task(poller.run())
    deadline = time.monotonic() + timeout
    ok = False
    try:
        while time.monotonic() < deadline:
            if task.done():
                task.result()
            if cond():
                ok = True
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return ok


@contextlib.asynccontextmanager
async def sim_session(
    seed: int = 1, *, jitter: float = 0.002, protocol: str = "6"
) -> AsyncIterator[tuple[Simulator, PtyServer, SerialTransport, Elm327Session]]:
    """The simulator served on a pty (real time), its server, a SerialTransport on it and an initialised session."""
    sim = Simulator(seed=seed, fast=False, timing=TimingModel(jitter=jitter))
    sim.advance(3)
    try:
        server = sim.serve_pty()
        transport = SerialTransport(server.path, 38400)
        await transport.open()
        try:
            session = Elm327Session(transport, protocol=protocol, timeout_s=2.0)
            await session.initialize()
            yield sim, server, transport, session
        finally:
            await transport.close()
    finally:
        sim.stop()
