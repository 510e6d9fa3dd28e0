"""The poller against firmware_sim over a pseudo-terminal, for every fault the simulator injects.

Each test holds the simulated car at a known speed, switches a fault on, and checks that the
session recovers (values keep coming) and that every value it publishes is right: the held speed
exactly, RPM and coolant temperature as the simulator's vehicle state says.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim import Simulator
from tests.link.helpers import Collected, make_poller, run_until

HELD_KMH = 57.0
VIN = "JHMCM56557C404453"  # the default drive's car (firmware_sim.drive)


def truth(sim: Simulator) -> dict[str, float]:
    state: dict[str, float] = sim.command({"state": True})["state"]
    return state


def assert_values_right(got: Collected, sim: Simulator) -> None:
    state = truth(sim)
    speeds = got.named("speed")
    assert speeds, "no speed values"
    assert {s.value for s in speeds} == {HELD_KMH}
    rpm = [s.value for s in got.named("engine_rpm")]
    assert rpm and all(isinstance(v, float) for v in rpm)
    # held speed: the engine turns at a steady rate; every reading within 3 % of the truth
    assert all(abs(v - state["engine_rpm"]) <= 0.03 * state["engine_rpm"] + 1 for v in rpm), (rpm[:5], state)
    coolant = [s.value for s in got.named("engine_coolant_temperature")]
    # the engine warms up while the test runs: the latest reading matches the truth now
    assert coolant and abs(coolant[-1] - state["engine_coolant_temperature"]) <= 2.0, (coolant[-3:], state)
    assert all(s.ecu == 0x7E8 for s in got.samples if s.pid is not None)


@pytest.fixture
def held(sim: Simulator) -> Simulator:
    sim.command({"hold_speed": HELD_KMH})
    return sim


async def test_clean_link_polls_right_values(held: Simulator, sim_pty: str, tmp_path: Path) -> None:
    poller, got = make_poller(sim_pty, tmp_path)
    assert await run_until(poller, lambda: len(got.named("speed")) >= 4, 20)
    assert_values_right(got, held)
    volts = got.named("battery_voltage")  # read every 5 s while driving too (from the first moment)
    assert volts and abs(volts[0].value - (truth(held)["battery_voltage"] - 0.1)) < 0.3
    assert got.links[-1].adapter_connected and got.links[-1].ecu_responding
    assert "CAN" in got.links[-1].protocol
    assert poller.status()["vin"] == VIN
    # the protocol is remembered for the next start
    assert '"protocol": "6"' in (tmp_path / "elm327-state.json").read_text()


# fault, rate, the error counter (poller or session) that shows the fault was met and handled
FAULTS = [
    ("noise", 0.2, "noise"),
    ("drop_bytes", 0.01, None),
    ("truncate", 0.1, "timeout"),
    ("stopped", 0.3, "stopped"),
    ("can_error", 0.2, "bus_error"),
    ("buffer_full", 0.2, "bus_error"),
    ("reset", 0.05, None),
    ("searching", 0.2, None),
    ("unable_to_connect", 0.3, "bus_error"),
    ("latency", 0.3, None),
    ("no_data", 0.2, None),
]


@pytest.fixture
def held_any(request: pytest.FixtureRequest, held: Simulator, sim_pty: str,
             tmp_path: Path) -> Iterator[tuple[Simulator, str]]:
    """The ``held`` fast simulator and its pty, or for ``latency`` (a delay, which ``fast`` drops) a
    real-time one: in a fast simulator that fault could never strike."""
    if request.node.callspec.params.get("fault") != "latency":
        yield held, sim_pty
        return
    # remembered protocol: the search starts at 6 instead of trying 1-5 for seconds of real time
    (tmp_path / "elm327-state.json").write_text('{"protocol": "6"}')
    slow = Simulator(seed=1, fast=False)
    slow.advance(3.0)
    slow.command({"hold_speed": HELD_KMH})
    try:
        with slow.serve_pty() as path:
            yield slow, path
    finally:
        slow.stop()


@pytest.mark.parametrize(("fault", "rate", "counter"), FAULTS, ids=[f for f, _, _ in FAULTS])
async def test_recovers_from_fault_and_values_stay_right(
    held_any: tuple[Simulator, str], tmp_path: Path, fault: str, rate: float, counter: str | None
) -> None:
    held, sim_pty = held_any
    poller, got = make_poller(sim_pty, tmp_path, fast=True)
    held.faults.reset_hits()
    marks: list[int] = []  # sample counts when the fault went on, and off
    errors: dict[str, int] = {}

    def script() -> bool:
        n = len(got.samples)
        if not marks and len(got.named("speed")) >= 3:
            held.faults.set(fault, True, rate=rate)  # strikes while the poller runs
            marks.append(n)
        elif len(marks) == 1 and n >= marks[0] + 60:
            held.faults.clear()
            marks.append(n)
        elif len(marks) == 2 and n >= marks[1] + 30:
            # the counts once the poller recovered: a strike just before the clear (a truncated answer
            # still waiting out its time-out) is counted only when the poller has handled it
            errors.update(poller.status()["errors"])
            return True
        return False

    assert await run_until(poller, script, 40), f"stuck under {fault} after {marks}"
    assert held.faults.hits(fault) > 0, f"{fault} never struck: {held.faults.hit_counts()}"
    assert set(held.faults.hit_counts()) == {fault}  # and nothing else did
    if counter is not None:
        assert errors.get(counter, 0) > 0, errors
    assert_values_right(got, held)


async def test_no_data_everywhere_marks_ecu_silent_then_recovers(held: Simulator, sim_pty: str) -> None:
    """The ECU stops answering while the poller runs (engine off), then answers again."""
    poller, got = make_poller(sim_pty, fast=True)
    phase: list[int] = []

    def script() -> bool:
        if not phase and len(got.named("speed")) >= 3:
            held.faults.reset_hits()
            held.faults.set("no_data", True)
            phase.append(0)
        elif len(phase) == 1 and got.links and not got.links[-1].ecu_responding:
            assert got.links[-1].adapter_connected
            held.faults.clear()
            phase.append(len(got.samples))
        elif len(phase) == 2:
            return len(got.samples) > phase[1] + 10 and got.links[-1].ecu_responding
        return False

    assert await run_until(poller, script, 30), phase
    assert held.faults.hits("no_data") > 0
    assert poller.reconnects == 0
    assert_values_right(got, held)


async def test_adapter_gone_and_back(held: Simulator, sim_pty: str) -> None:
    """The pty closes while the poller runs (USB unplugged); it comes back at the same path."""
    poller, got = make_poller(sim_pty, fast=True)
    phase: list[str] = []

    def script() -> bool:
        if not phase and len(got.named("speed")) >= 3:
            held.close_port()
            phase.append("closed")
        elif phase == ["closed"] and any(not ls.adapter_connected for ls in got.links):
            phase.append(str(len(got.samples)))
            held.reopen_port()
        elif len(phase) == 2:
            return len(got.samples) > int(phase[1]) + 20
        return False

    assert await run_until(poller, script, 30), phase
    assert poller.reconnects >= 1
    assert got.links[-1].adapter_connected and got.links[-1].ecu_responding
    assert_values_right(got, held)
