"""Poller behaviour against firmware_sim: on-demand queries, plans, DTCs, protocol memory, TCP, ATBRD."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_sim import Simulator
from gateway.config import PowerConfig
from gateway.elm327.session import Elm327Session
from gateway.errors import ForbiddenRequest
from gateway.transport.serial import SerialTransport
from tests.link.helpers import make_poller, run_until


async def test_query_jumps_the_queue_and_keeps_pid_polled(sim: Simulator, sim_pty: str) -> None:
    poller, got = make_poller(sim_pty, pids=["0D"])
    task = asyncio.create_task(poller.run())
    try:
        for _ in range(200):
            if got.named("speed"):
                break
            await asyncio.sleep(0.02)
        assert got.named("speed"), "no speed sample within 4 s"
        samples = await asyncio.wait_for(poller.query(0x0F), 5)  # intake air temperature, not in the plan
        assert [s.name for s in samples] == ["intake_air_temperature"]
        state = sim.command({"state": True})["state"]
        assert abs(samples[0].value - state["intake_air_temperature"]) <= 1.5
        assert poller.cache.get("intake_air_temperature") is not None
        row = next(r for r in poller.pid_stats() if r["pid"] == "0F")
        assert row["polled"] is True and row["supported"] is True
        assert math.isclose(row["target_hz"], 1.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_pid_stats_and_cache(sim: Simulator, sim_pty: str) -> None:
    poller, got = make_poller(sim_pty, pids=["0C", "0D", "A7"])  # A7: not supported by the car
    assert await run_until(poller, lambda: len(got.named("engine_rpm")) >= 6, 20)
    rows = {r["pid"]: r for r in poller.pid_stats()}
    assert rows["0C"]["target_hz"] == 5.0 and rows["0D"]["target_hz"] == 1.0
    assert rows["A7"]["supported"] is False and rows["A7"]["polled"] is False
    assert rows["0C"]["achieved_hz"] > 0
    cached = poller.cache.get("engine_rpm", 0x7E8)
    assert cached is not None and cached.age_s < 5


async def test_dtcs_read_and_clear_is_guarded(sim: Simulator, sim_pty: str) -> None:
    sim.command({"set_dtcs": ["P0301", "P0420"], "mil": True})
    poller, got = make_poller(sim_pty)
    task = asyncio.create_task(poller.run())
    try:
        for _ in range(300):
            if got.samples:
                break
            await asyncio.sleep(0.02)
        assert got.samples, "no sample within 6 s"
        dtcs = await asyncio.wait_for(poller.read_dtcs(), 10)
        assert dtcs["stored"] == ["P0301", "P0420"] and dtcs["mil"] is True
        with pytest.raises(ForbiddenRequest):
            await poller.clear_dtcs()
        assert sim.command({"state": True})["state"]["dtcs"] == ["P0301", "P0420"]
        assert await asyncio.wait_for(poller.read_vin(), 5) == "JHMCM56557C404453"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_clear_dtcs_when_allowed(sim: Simulator, sim_pty: str) -> None:
    sim.command({"set_dtcs": ["P0301"], "mil": True})
    poller, got = make_poller(sim_pty)
    poller.allow_clear_dtc = True
    task = asyncio.create_task(poller.run())
    try:
        for _ in range(300):
            if got.samples:
                break
            await asyncio.sleep(0.02)
        assert got.samples, "no sample within 6 s"
        await asyncio.wait_for(poller.clear_dtcs(), 10)
        assert sim.command({"state": True})["state"]["dtcs"] == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_parked_plan_reads_only_the_battery_and_stops_below_threshold(sim: Simulator, sim_pty: str) -> None:
    poller, got = make_poller(sim_pty, power=PowerConfig(voltage_interval_s=0.2, low_battery_confirm_s=0.5))
    task = asyncio.create_task(poller.run())

    async def until(cond: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not cond():
            assert not task.done(), task
            await asyncio.sleep(0.02)
        return cond()

    try:
        assert await until(lambda: len(got.named("engine_rpm")) >= 2, 20)
        poller.set_plan("parked")
        await asyncio.sleep(0.1)  # the batch in flight finishes
        n_rpm = len(got.named("engine_rpm"))
        n_v = len(got.named("battery_voltage"))
        assert await until(lambda: len(got.named("battery_voltage")) >= n_v + 3, 10)
        volts = got.named("battery_voltage")[-1]
        assert volts.unit == "V" and volts.pid is None
        assert abs(volts.value - (sim.command({"state": True})["state"]["battery_voltage"] - 0.1)) < 0.3
        # parked with the engine still running (the ECU answers): one check per reading, nothing more
        assert 1 <= len(got.named("engine_rpm")) - n_rpm <= len(got.named("battery_voltage")) - n_v + 1
        sim.command({"ignition": False})
        assert await until(lambda: not poller.ecu_responding, 10)
        await asyncio.sleep(0.1)
        requests = poller.bus_requests
        n_v = len(got.named("battery_voltage"))
        assert await until(lambda: len(got.named("battery_voltage")) >= n_v + 3, 10)
        assert poller.bus_requests == requests  # the ECU fell silent: nothing on the bus any more
        # a weak battery: the low_battery marker once, in the cache too (the MQTT state topic)
        sim.command({"battery_rest_v": 11.9})
        assert await until(lambda: bool(got.named("low_battery")), 10)
        assert [s.value for s in got.named("low_battery")] == [True]
        cached = poller.cache.get("low_battery")
        assert cached is not None and cached.sample.value is True
        sim.command({"battery_rest_v": 12.6})
        assert await until(lambda: len(got.named("low_battery")) == 2, 10)
        assert [s.value for s in got.named("low_battery")] == [True, False]
        assert poller.bus_requests == requests
        # driving again: the plan comes back at once
        sim.command({"ignition": True})
        poller.set_plan("driving")
        n_rpm = len(got.named("engine_rpm"))
        assert await until(lambda: len(got.named("engine_rpm")) >= n_rpm + 5, 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_ignition_off_marks_ecu_silent(sim: Simulator, sim_pty: str) -> None:
    poller, got = make_poller(sim_pty, fast=True)
    assert await run_until(poller, lambda: len(got.samples) >= 10, 20)
    sim.command({"ignition": False})
    assert await run_until(poller, lambda: bool(got.links) and not got.links[-1].ecu_responding, 20)
    assert got.links[-1].adapter_connected


async def test_protocol_remembered_across_restarts(sim: Simulator, sim_pty: str, tmp_path: Path) -> None:
    state = tmp_path / "elm327-state.json"
    for expect_first in ("ATSP0", "ATSPA6"):
        t = SerialTransport(sim_pty)
        await t.open()
        sent: list[bytes] = []
        write = t.write

        async def spy(data: bytes, write=write, sent=sent) -> None:  # type: ignore[no-untyped-def]
            sent.append(data)
            await write(data)

        t.write = spy  # type: ignore[method-assign]
        try:
            await Elm327Session(t, state_path=state).initialize()
        finally:
            await t.close()
        assert next(s for s in sent if s.startswith(b"ATSP")).strip() == expect_first.encode()
        assert json.loads(state.read_text())["protocol"] == "6"


async def test_tcp_transport(sim: Simulator) -> None:
    server = sim.serve_tcp(port=0)
    poller, got = make_poller(server.address, fast=True)
    assert await run_until(poller, lambda: len(got.named("speed")) >= 5 and poller.status()["connected"], 20)
    assert not poller.status()["connected"]  # stopping the poller closed the port


async def test_atbrd_switch_and_back_after_reset() -> None:
    sim = Simulator(seed=3, fast=False)
    sim.advance(3.0)
    try:
        with sim.serve_pty() as path:
            t = SerialTransport(path, 38400)
            await t.open()
            try:
                s = Elm327Session(t, fast_baud=115200, state_path=None, protocol="6")
                info = await s.initialize()
                assert info.baud == 115200 and t.baud == 115200
                assert (await s.read_pids(0x7E8, [0x0D]))[0].name == "speed"
                # after a reset the chip is at 38400 again; the session follows
                await s.initialize()
                assert t.baud == 115200  # switched again after the reset
            finally:
                await t.close()
    finally:
        sim.stop()


def test_poll_command_json(sim_cli) -> None:  # type: ignore[no-untyped-def]
    _, port = sim_cli("--fast")
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "poll", "--port", port, "--duration", "1.5", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["protocol"].startswith("ISO 15765-4 CAN")
    assert set(report["per_pid"]) == {"0C", "0D", "05", "04", "10", "11"}
    assert report["values_per_s"] > 0 and report["requests_per_s"] > 0
    assert report["values_per_s"] == pytest.approx(sum(report["per_pid"].values()), rel=0.05)
    assert isinstance(report["last"]["0C"], float)


def test_poll_command_bad_port_is_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "poll", "--port", "tcp:127.0.0.1:notaport", "--duration", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 2
    assert "adapter.port" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("protocol", ["2", "4", "7", "8"])
async def test_other_protocols(protocol: str) -> None:
    """Legacy buses (no multi-PID, legacy headers) and 29-bit / 250 kbit CAN, detected automatically."""
    sim = Simulator(seed=4, fast=True, protocol=protocol)
    sim.advance(3.0)
    try:
        with sim.serve_pty() as path:
            sim.command({"hold_speed": 88.0})
            poller, got = make_poller(path, fast=True, pids=["0C", "0D"])
            assert await run_until(poller, lambda: len(got.named("speed")) >= 5, 20)
            assert {s.value for s in got.named("speed")} == {88.0}
            info = poller.session.info  # type: ignore[union-attr]
            assert info.protocol == protocol
            assert any(f.pids > 1 for f in info.forms.values()) == (protocol in "78")
    finally:
        sim.stop()


async def test_start_with_ignition_off_then_on(sim: Simulator, sim_pty: str) -> None:
    sim.command({"ignition": False})
    poller, got = make_poller(sim_pty, fast=True)
    assert await run_until(poller, lambda: len(got.named("battery_voltage")) >= 2, 20)
    assert got.links and got.links[-1].adapter_connected and not got.links[-1].ecu_responding
    assert not got.named("engine_rpm")
    sim.command({"ignition": True})
    sim.advance(3.0)  # crank and start
    assert await run_until(poller, lambda: len(got.named("engine_rpm")) >= 5, 20)
    assert got.links[-1].ecu_responding
    assert poller.reconnects == 0  # the adapter link was kept all along

