"""Raw CAN against the simulator's ECUs: python-can's virtual bus in-process, and SLCAN over a pty."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from firmware_sim import Simulator
from gateway.config import parse_port
from gateway.link.can import CanSession
from gateway.link.isotp import FC_CTS, IsoTpCollector, single_frame
from gateway.obd.protocols import request_id
from gateway.transport.can import CanTransport
from tests.link.helpers import make_poller, run_until


def test_collector_flow_control_and_completion() -> None:
    c = IsoTpCollector()
    assert c.feed(0x7E8, bytes([0x03, 0x41, 0x0D, 0x32, 0, 0, 0, 0])) is None
    assert c.complete == [0x7E8]
    # a 20-byte answer: first frame (6 bytes) asks for flow control, two consecutive frames finish it
    assert c.feed(0x7E9, bytes([0x10, 20, 0x49, 0x02, 1, 0x41, 0x42, 0x43])) == FC_CTS
    assert c.in_progress
    c.feed(0x7E9, bytes([0x21, *b"DEFGHIJ"]))
    assert c.in_progress
    c.feed(0x7E9, bytes([0x22, *b"KLMNOPQ"]))
    assert not c.in_progress and c.complete == [0x7E8, 0x7E9]


def test_ids_and_frames() -> None:
    assert request_id(0x7E8, False) == 0x7E0
    assert request_id(0x18DAF110, True) == 0x18DA10F1
    assert single_frame(b"\x01\x0c") == bytes([2, 1, 0x0C, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        single_frame(bytes(8))
    spec = parse_port("can:slcan:/dev/ttyACM0")
    assert (spec.kind, spec.target, spec.channel) == ("can", "slcan", "/dev/ttyACM0")
    assert parse_port("can:").channel == "can0"


async def _session_checks(session: CanSession, sim: Simulator) -> None:
    info = await session.initialize()
    assert info.protocol == "6"
    assert 0x0C in info.supported[0x7E8] and 0x0D in info.supported[0x7E9]
    assert info.forms[0x7E8].pids == 6
    sim.command({"hold_speed": 42.0})
    state = sim.command({"state": True})["state"]
    readings = await session.read_pids(0x7E8, [0x0C, 0x0D, 0x05, 0x04, 0x10, 0x11])  # multi-frame answer
    by_name = {r.name: r.value for r in readings}
    assert by_name["speed"] == 42.0
    assert abs(by_name["engine_rpm"] - state["engine_rpm"]) <= 0.03 * state["engine_rpm"]
    assert {r.ecu for r in readings} == {0x7E8}
    assert await session.read_vin() == "JHMCM56557C404453"  # 20 bytes: first frame + flow control


async def test_virtual_bus(sim: Simulator) -> None:
    channel = f"obd-{uuid.uuid4().hex[:8]}"
    sim.serve_can(channel, interface="virtual")
    transport = CanTransport("virtual", channel)
    await transport.open()
    try:
        await _session_checks(CanSession(transport), sim)
    finally:
        await transport.close()


async def test_slcan_over_pty(sim: Simulator) -> None:
    server = sim.serve_slcan()
    transport = CanTransport("slcan", server.path)
    await transport.open()
    try:
        await _session_checks(CanSession(transport), sim)
    finally:
        await transport.close()


async def test_poller_on_raw_can(sim: Simulator, tmp_path: Path) -> None:
    channel = f"obd-{uuid.uuid4().hex[:8]}"
    sim.serve_can(channel, interface="virtual")
    sim.command({"hold_speed": 33.0})
    poller, got = make_poller(f"can:virtual:{channel}", tmp_path, fast=True)
    assert await run_until(poller, lambda: len(got.named("speed")) >= 10, 20)
    assert {s.value for s in got.named("speed")} == {33.0}
    assert poller.status()["protocol"].startswith("ISO 15765-4 CAN (11 bit")


async def test_29_bit(tmp_path: Path) -> None:
    sim = Simulator(seed=2, fast=True, protocol="7")
    sim.advance(3.0)
    try:
        channel = f"obd-{uuid.uuid4().hex[:8]}"
        sim.serve_can(channel, interface="virtual")
        transport = CanTransport("virtual", channel)
        await transport.open()
        try:
            session = CanSession(transport)
            info = await session.initialize()
            assert info.protocol == "7" and session.extended
            assert 0x18DAF110 in info.supported
            readings = await session.read_pids(0x18DAF110, [0x0C, 0x0D])
            assert {r.name for r in readings} == {"engine_rpm", "speed"}
        finally:
            await transport.close()
    finally:
        sim.stop()
