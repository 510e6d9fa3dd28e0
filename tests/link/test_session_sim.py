"""Session and poller behaviours checked in the simulator's own command log (real simulator, pty):
protocol re-detection after bus errors, ATST from measured latency, mode 09 items, on-demand queries
jumping the polling queue."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from firmware_sim import Simulator
from firmware_sim.elm327 import LogEntry
from gateway.elm327.session import Elm327Session
from gateway.transport.serial import SerialTransport
from tests.link.helpers import make_poller, run_until, sim_session


def _after(sim: Simulator, mark: int) -> list[LogEntry]:
    return list(sim.log)[mark:]


async def test_bus_errors_trigger_protocol_redetection(sim: Simulator, sim_pty: str, tmp_path: Path) -> None:
    poller, got = make_poller(sim_pty, tmp_path, fast=True)
    marks: list[int] = []

    def script() -> bool:
        if not marks and len(got.named("speed")) >= 3:
            marks.append(len(sim.log))
            sim.faults.set("can_error", True)  # every OBD request: CAN ERROR
        elif len(marks) == 1 and any(e.command.startswith("ATSP") for e in _after(sim, marks[0])):
            sim.faults.clear()  # the bus is back
            marks.append(len(got.samples))
        elif len(marks) == 2:
            return len(got.samples) >= marks[1] + 12
        return False

    assert await run_until(poller, script, 30), marks
    assert sim.faults.hits("can_error") > 0
    log = _after(sim, marks[0])
    first_error = next(i for i, e in enumerate(log) if "CAN ERROR" in e.answer)
    redetect = next(i for i, e in enumerate(log) if e.command.startswith("ATSP"))
    assert first_error < redetect  # the bus error came first, then the protocol was selected again
    # ... and the chip told to search again with 0100 (the bus still failing then: CAN ERROR)
    assert log[redetect + 1].command == "0100"
    assert log[redetect].command == "ATSPA6"  # starting from the protocol remembered in the state file
    assert poller.reconnects == 0  # re-detection, not a reconnect


async def test_atst_is_set_from_measured_latency() -> None:
    async with sim_session(seed=1, jitter=0.0) as (sim, server, _transport, session):
        for _ in range(45):  # most of the 64-entry latency window: polling round trips
            await session.read_pids(0x7E8, [0x0C, 0x0D, 0x05, 0x04, 0x10, 0x11])
        latency_ms = session.latency_ms
        mark = len(sim.log)
        st = await session.tune_timeout()
        # 6 PIDs at 38400 baud take ~34 ms: four times that, inside the 50-200 ms bounds
        assert 25 < latency_ms < 45, latency_ms
        assert st is not None and abs(st - 4 * latency_ms) < 0.01
        units = round(st / 4.096)
        assert [e.command for e in _after(sim, mark)] == [f"ATST{units:02X}"]
        assert server.elm.settings.st == units  # the chip took it


async def test_mode09_calibration_cvn_and_ecu_name(sim: Simulator, sim_pty: str) -> None:
    transport = SerialTransport(sim_pty, 38400)
    await transport.open()
    try:
        session = Elm327Session(transport, timeout_s=2.0)
        await session.initialize()
        by_pid: dict[int, dict[int, object]] = {}
        for pid in (0x04, 0x06, 0x0A):
            for r in await session.query(0x09, [pid]):
                by_pid.setdefault(r.pid, {})[r.ecu] = r.value
    finally:
        await transport.close()
    engine, gearbox = sim.ecus
    assert by_pid[0x04] == {0x7E8: (engine.calibration_id,), 0x7E9: (gearbox.calibration_id,)}
    assert by_pid[0x06] == {0x7E8: (engine.cvn.hex().upper(),), 0x7E9: (gearbox.cvn.hex().upper(),)}
    assert by_pid[0x0A] == {0x7E8: engine.ecu_name, 0x7E9: gearbox.ecu_name}
    assert by_pid[0x0A][0x7E9] == "TCM-TransmissionCtl"


async def test_on_demand_query_jumps_the_polling_queue(sim: Simulator, sim_pty: str) -> None:
    poller, got = make_poller(sim_pty, fast=True)
    task = asyncio.create_task(poller.run())
    try:
        for _ in range(500):
            if len(got.named("speed")) >= 3:
                break
            await asyncio.sleep(0.01)
        for _ in range(3):  # a few times, at whatever point of the polling cycle the query lands
            mark = len(sim.log)
            samples = await asyncio.wait_for(poller.query(0x0F), 5)
            assert [s.name for s in samples] == ["intake_air_temperature"]
            log = _after(sim, mark)
            on_demand = next(i for i, e in enumerate(log) if e.command.startswith("010F") and len(e.command) <= 5)
            scheduled = [e for e in log[:on_demand] if e.command.startswith("01")]
            # at most the batch already on its way when the query came; never the next scheduled one
            assert len(scheduled) <= 1, [e.command for e in log[: on_demand + 1]]
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
