"""The pipelining probe against both chip variants of firmware_sim (over a pty)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim import Simulator
from gateway.elm327.session import Elm327Session
from gateway.transport.serial import SerialTransport
from tests.link.helpers import make_poller, run_until


@pytest.mark.parametrize(("pipelining", "fast"), [(False, True), (False, False), (True, True)])
async def test_probe_keeps_pipelining_only_where_the_chip_buffers_lines(
    pipelining: bool, fast: bool, tmp_path: Path
) -> None:
    state = tmp_path / "elm327-state.json"
    state.write_text('{"protocol": "6"}')  # no seconds-long search from protocol 1 in real time
    sim = Simulator(seed=1, fast=fast, pipelining=pipelining)
    sim.advance(3)
    try:
        with sim.serve_pty() as path:
            transport = SerialTransport(path, 38400)
            await transport.open()
            try:
                session = Elm327Session(transport, timeout_s=2.0, state_path=state)
                info = await session.initialize()
                assert info.count_suffix is True
                assert info.pipelining is pipelining
                readings = await session.read_pids(0x7E8, [0x0C, 0x0D])
                assert {r.pid for r in readings} == {0x0C, 0x0D}
            finally:
                await transport.close()
    finally:
        sim.stop()


@pytest.mark.parametrize("pipelining", [False, True])
async def test_polling_never_gets_stopped(pipelining: bool) -> None:
    sim = Simulator(seed=1, fast=True, pipelining=pipelining)
    sim.advance(3)
    try:
        with sim.serve_pty() as path:
            poller, got = make_poller(path, pids=["0C", "0D", "05", "04", "10", "11", "0F", "0B"], fast=True)
            assert await run_until(poller, lambda: len(got.named("engine_rpm")) >= 30, 20)
            assert poller.session is not None
            assert "stopped" not in poller.errors and "stopped" not in poller.session.errors
            assert poller.session.info.pipelining is pipelining  # kept on the variant, never on a genuine chip
            assert all(s.value is not None for s in got.named("vehicle_speed"))
    finally:
        sim.stop()
