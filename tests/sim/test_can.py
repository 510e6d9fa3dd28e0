"""Raw CAN: the ECUs over ISO-TP on a python-can virtual bus and behind an SLCAN pty."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import can
import isotp
import pytest

from firmware_sim import Simulator

_channels = itertools.count()


@pytest.fixture
def vbus(sim: Simulator) -> Iterator[can.BusABC]:
    channel = f"sim-test-{next(_channels)}"
    sim.serve_can(channel)
    bus = can.Bus(interface="virtual", channel=channel)
    yield bus
    bus.shutdown()


def recv_all(bus: can.BusABC, window: float = 0.3) -> list[can.Message]:
    out = []
    end = time.monotonic() + window
    while (left := end - time.monotonic()) > 0:
        m = bus.recv(left)
        if m is not None:
            out.append(m)
    return out


def test_functional_request_answered_by_both_ecus(vbus: can.BusABC) -> None:
    vbus.send(can.Message(arbitration_id=0x7DF, data=b"\x02\x01\x00" + b"\x00" * 5, is_extended_id=False))
    msgs = recv_all(vbus)
    assert sorted(m.arbitration_id for m in msgs) == [0x7E8, 0x7E9]
    assert all(m.data[:3] == b"\x06\x41\x00" and len(m.data) == 8 for m in msgs)


def test_multi_frame_answer_honours_flow_control(sim: Simulator, vbus: can.BusABC) -> None:
    # can-isotp as the tester: block size 1 and STmin 5 ms, so the ECU must wait for every flow control.
    addr = isotp.Address(isotp.AddressingMode.Normal_11bits, txid=0x7E0, rxid=0x7E8)
    stack = isotp.CanStack(vbus, address=addr, params={"blocksize": 1, "stmin": 5, "blocking_send": False})
    stack.start()
    try:
        stack.send(b"\x09\x02")
        payload = stack.recv(block=True, timeout=3)
    finally:
        stack.stop()
    assert bytes(payload or b"") == b"\x49\x02\x01" + sim.vehicle.state.vin.encode()


def test_no_flow_control_no_consecutive_frames(vbus: can.BusABC) -> None:
    vbus.send(can.Message(arbitration_id=0x7E0, data=b"\x02\x09\x02" + b"\x00" * 5, is_extended_id=False))
    msgs = recv_all(vbus, 0.5)
    assert [m.data[0] >> 4 for m in msgs] == [1]  # the first frame, then silence (N_Bs time-out)


def test_29bit_addressing() -> None:
    sim = Simulator(seed=1, fast=True, protocol="7")
    sim.advance(3)
    try:
        sim.serve_can("sim-29")
        bus = can.Bus(interface="virtual", channel="sim-29")
        try:
            bus.send(can.Message(arbitration_id=0x18DB33F1, data=b"\x02\x01\x0D" + b"\x00" * 5, is_extended_id=True))
            msgs = recv_all(bus)
            assert sorted(m.arbitration_id for m in msgs) == [0x18DAF110, 0x18DAF118]
            bus.send(can.Message(arbitration_id=0x7DF, data=b"\x02\x01\x0D" + b"\x00" * 5, is_extended_id=False))
            assert recv_all(bus) == []  # 11-bit requests find nobody on a 29-bit car
        finally:
            bus.shutdown()
    finally:
        sim.stop()


def test_slcan_over_a_pty(sim: Simulator) -> None:
    server = sim.serve_slcan()
    bus = can.Bus(interface="slcan", channel=server.path, bitrate=500000, sleep_after_open=0)
    try:
        bus.send(can.Message(arbitration_id=0x7DF, data=b"\x02\x01\x0D" + b"\x00" * 5, is_extended_id=False))
        msgs = recv_all(bus, 0.5)
        assert sorted(m.arbitration_id for m in msgs) == [0x7E8, 0x7E9]
        addr = isotp.Address(isotp.AddressingMode.Normal_11bits, txid=0x7E0, rxid=0x7E8)
        stack = isotp.CanStack(bus, address=addr, params={"blocking_send": False})
        stack.start()
        try:
            stack.send(b"\x09\x02")
            assert bytes(stack.recv(block=True, timeout=3) or b"") == b"\x49\x02\x01" + sim.vehicle.state.vin.encode()
        finally:
            stack.stop()
    finally:
        bus.shutdown()


def test_slcan_wrong_bitrate_hears_nothing(sim: Simulator) -> None:
    server = sim.serve_slcan()
    bus = can.Bus(interface="slcan", channel=server.path, bitrate=250000, sleep_after_open=0)
    try:
        bus.send(can.Message(arbitration_id=0x7DF, data=b"\x02\x01\x0D" + b"\x00" * 5, is_extended_id=False))
        assert recv_all(bus, 0.3) == []
    finally:
        bus.shutdown()


def test_flow_control_wait_then_block_size(vbus: can.BusABC) -> None:
    vbus.send(can.Message(arbitration_id=0x7E0, data=b"\x02\x09\x02" + b"\x00" * 5, is_extended_id=False))
    first = vbus.recv(1)
    assert first is not None and first.data[:2] == b"\x10\x14"
    fc = can.Message(arbitration_id=0x7E0, data=b"\x31\x00\x00" + b"\x00" * 5, is_extended_id=False)  # wait
    vbus.send(fc)
    assert recv_all(vbus, 0.2) == []
    vbus.send(can.Message(arbitration_id=0x7E0, data=b"\x30\x01\x00" + b"\x00" * 5, is_extended_id=False))  # BS 1
    got = recv_all(vbus, 0.2)
    assert [m.data[0] for m in got] == [0x21]  # one frame, then the ECU waits for the next flow control
    vbus.send(can.Message(arbitration_id=0x7E0, data=b"\x30\x00\x00" + b"\x00" * 5, is_extended_id=False))
    assert [m.data[0] for m in recv_all(vbus, 0.2)] == [0x22]
