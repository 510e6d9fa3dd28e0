"""Manufacturer-specific reads over raw CAN (python-can virtual bus and SLCAN over a pty): our flow control
(block size, STmin), answers up to 4095 bytes, a lost consecutive frame, negative responses."""

from __future__ import annotations

import uuid

import pytest

from firmware_sim import Simulator
from gateway.errors import NegativeResponse, ParseError
from gateway.link.can import CanSession
from gateway.link.isotp import IsoTpReceiver
from gateway.transport.can import CanTransport
from tests.custom.test_elm_reads import ev_sim


def test_receiver_block_size_and_gap() -> None:
    rx = IsoTpReceiver(block_size=2, stmin_ms=5)
    assert rx.feed(bytes([0x10, 30, *range(6)])) == bytes([0x30, 2, 5, 0, 0, 0, 0, 0])
    assert rx.feed(bytes([0x21, *range(7)])) is None
    assert rx.feed(bytes([0x22, *range(7)])) == bytes([0x30, 2, 5, 0, 0, 0, 0, 0])  # block done: next FC
    assert rx.feed(bytes([0x24, *range(7)])) is None  # 0x23 was lost
    assert rx.lost and rx.message is None and rx.flow_controls == 2
    rx = IsoTpReceiver()
    rx.feed(bytes([0x03, 0x7F, 0x22, 0x78, 0, 0, 0, 0]))
    assert rx.pending and not rx.done


@pytest.fixture(params=["virtual", "slcan"])
async def can_session(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    sim, _, _ = ev_sim()
    if request.param == "virtual":
        channel = f"obd-{uuid.uuid4().hex[:8]}"
        sim.serve_can(channel, interface="virtual")
        transport = CanTransport("virtual", channel)
    else:
        transport = CanTransport("slcan", sim.serve_slcan().path)
    await transport.open()
    session = CanSession(transport, block_size=8, stmin_ms=0)
    try:
        await session.initialize()
        yield sim, session
    finally:
        await transport.close()
        sim.stop()


async def test_long_answers_with_flow_control(can_session: tuple[Simulator, CanSession]) -> None:
    _, session = can_session
    raw = await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x01]))
    assert len(raw) == 62 and raw[:3] == b"\x62\x01\x01"
    raw = await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x99]))
    assert len(raw) == 255 and raw[3:] == bytes(i & 0xFF for i in range(252))
    raw = await session.read_raw(0x79B, 0x7BB, False, bytes([0x21, 0x02]))  # Leaf cell voltages: 198 bytes
    assert len(raw) == 198 and raw[:2] == b"\x61\x02"


async def test_lost_consecutive_frame_is_counted_never_a_value(can_session: tuple[Simulator, CanSession]) -> None:
    sim, session = can_session
    sim.faults.set("lost_frame", True, rate=0.2)
    lost = 0
    for _ in range(10):
        try:
            raw = await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x99]))
        except ParseError:
            lost += 1
            continue
        assert raw[3:] == bytes(i & 0xFF for i in range(252))  # whatever comes through is whole
    assert sim.faults.hits("lost_frame") > 0
    assert lost > 0 and session.lost_frames == lost == session.errors["isotp_lost_frame"]


async def test_negative_and_pending(can_session: tuple[Simulator, CanSession]) -> None:
    _, session = can_session
    with pytest.raises(NegativeResponse) as info:
        await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x77, 0x77]))
    assert info.value.nrc == 0x31
    raw = await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x05]))  # 7F 22 78 first
    assert raw[:3] == b"\x62\x01\x05" and session.errors["response_pending"] == 1
