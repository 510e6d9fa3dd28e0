"""Manufacturer-specific reads over the ELM327 personality (real simulator over a pty): long ISO-TP answers
with CAN auto-formatting, headers on and off; ECU switching with few AT commands; negative responses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from firmware_sim import Simulator, ev
from firmware_sim.ecu import default_ecus
from gateway.elm327.session import Elm327Session
from gateway.errors import BusError, NegativeResponse
from gateway.transport.serial import SerialTransport


def ev_sim(**kw: object) -> tuple[Simulator, ev.BatteryEcu, ev.BatteryEcu]:
    bms, lbc = ev.kona_bms(), ev.leaf_lbc()
    bms.table[(0x22, 0x0199)] = ev.long_answer(252)  # a 255-byte answer: 62 01 99 + 252
    bms.pending.add((0x22, 0x0105))
    sim = Simulator("short", fast=True, ecus=[*default_ecus(), bms, lbc], **kw)  # type: ignore[arg-type]
    sim.advance(5)  # ignition on, engine running
    return sim, bms, lbc


@pytest.fixture
async def elm() -> AsyncIterator[tuple[Simulator, Elm327Session]]:
    sim, _, _ = ev_sim()
    server = sim.serve_pty()
    transport = SerialTransport(server.path, 38400)
    await transport.open()
    session = Elm327Session(transport, protocol="6", timeout_s=2.0)
    try:
        await session.initialize()
        yield sim, session
    finally:
        await session.close()
        sim.stop()


@pytest.mark.parametrize("headers", [False, True])
async def test_long_answers_62_and_255_bytes(elm: tuple[Simulator, Elm327Session], headers: bool) -> None:
    sim, session = elm
    await session.set_headers(headers)
    raw = await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x01]))
    assert len(raw) == 62 and raw[:3] == b"\x62\x01\x01"
    raw = await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x99]))
    assert len(raw) == 255
    assert raw[3:] == bytes(i & 0xFF for i in range(252))
    # the chip really printed the multi-frame form asked for
    answer = next(e.answer for e in reversed(sim.log) if e.command == "220199")
    lines = [line.strip() for line in answer.replace(" ", "").split("\r")]
    assert any(line.startswith("7EC10FF") for line in lines) is headers  # first frame with its header
    assert ("0FF" in lines) is (not headers)  # CAF with headers off: the byte count line, then 0: 1: …


async def test_switching_ecus_costs_few_at_commands(elm: tuple[Simulator, Elm327Session]) -> None:
    sim, session = elm
    mark = len(sim.log)
    await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x01]))
    await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x01]))  # same ECU: no AT command
    cmds = [e.command for e in list(sim.log)[mark:] if e.command.startswith("AT")]
    assert cmds == ["ATSH7E4", "ATCRA7EC"]
    mark = len(sim.log)
    raw = await session.read_raw(0x79B, 0x7BB, False, bytes([0x21, 0x01]))  # Leaf: 7BB − 8 ≠ 79B
    assert len(raw) == 43 and raw[:2] == b"\x61\x01"
    cmds = [e.command for e in list(sim.log)[mark:] if e.command.startswith("AT")]
    assert cmds == ["ATSH79B", "ATCRA7BB", "ATFCSH79B", "ATFCSD300000", "ATFCSM1"]
    mark = len(sim.log)
    await session.read_pids(0x7E8, [0x0D])  # back to mode 01: filter and flow control back to the chip's
    cmds = [e.command for e in list(sim.log)[mark:] if e.command.startswith("AT")]
    assert cmds == ["ATSH7E0", "ATCRA", "ATFCSM0"]


async def test_negative_responses(elm: tuple[Simulator, Elm327Session]) -> None:
    sim, session = elm
    with pytest.raises(NegativeResponse) as info:
        await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x02, 0x02]))
    assert (info.value.service, info.value.nrc) == (0x22, 0x31)
    # response pending (7F 22 78) then the data, in one answer: the data is taken
    raw = await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x05]))
    assert len(raw) == 45 and raw[:3] == b"\x62\x01\x05"
    assert any("7F2278" in e.answer.replace(" ", "") for e in sim.log)


async def test_buffer_full_asks_for_a_separation_time(elm: tuple[Simulator, Elm327Session]) -> None:
    sim, session = elm
    await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x01]))
    sim.faults.set("buffer_full", True)  # every OBD request overflows the chip's buffer
    mark = len(sim.log)
    with pytest.raises(BusError, match="raise the serial rate"):
        await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x01]))
    assert sim.faults.hits("buffer_full") == 3 and session.buffer_full == 3
    cmds = [e.command for e in list(sim.log)[mark:]]
    assert cmds == [
        "220101",  # BUFFER FULL
        "ATFCSH7E4", "ATFCSD30000A", "ATFCSM1", "220101",  # 10 ms between consecutive frames: BUFFER FULL
        "ATFCSH7E4", "ATFCSD30001E", "220101",  # 30 ms: BUFFER FULL again, give up with the fix named
    ]
    sim.faults.clear()
    raw = await session.read_raw(0x7E4, 0x7EC, False, bytes([0x22, 0x01, 0x01]))  # the slower form stays
    assert len(raw) == 62
