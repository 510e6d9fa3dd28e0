"""Property tests: the two builds agree on every input, and neither raises anything but ParseError.

Inputs are valid adapter output rendered from random answers in every format, the same output
mutated (bytes flipped, dropped, inserted, lines shuffled or cut), and arbitrary bytes.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import ParseError
from gateway.obd import pids, pyparser

try:
    NATIVE: ModuleType | None = importlib.import_module("gateway._native")
except ImportError:
    NATIVE = None

pytestmark = pytest.mark.skipif(NATIVE is None, reason="gateway._native is not installed: nothing to compare")

# PARSER_EXAMPLES=20000 for a long local run; CI keeps the default
SETTINGS = settings(
    max_examples=int(os.environ.get("PARSER_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PID_LIST = sorted(pids.PIDS)


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, str]:
    """("ok", repr of the result) or ("error", ""); repr tells 1 from 1.0 from True, and floats exactly."""
    try:
        return "ok", repr(fn(*args))
    except ParseError:
        return "error", ""


def agree(name: str, *args: Any) -> tuple[str, str]:
    assert NATIVE is not None
    ours = outcome(getattr(pyparser, name), *args)
    theirs = outcome(getattr(NATIVE, name), *args)
    assert ours == theirs, args
    return ours


# --- rendering random answers as an ELM327 would ----------------------------------------------------
def _hex(data: bytes, spaces: bool) -> str:
    return data.hex(" ").upper() if spaces else data.hex().upper()


def _can_frames(payload: bytes) -> list[bytes]:
    if len(payload) <= 7:
        return [bytes([len(payload)]) + payload]
    frames = [bytes([0x10 | (len(payload) >> 8), len(payload) & 0xFF]) + payload[:6]]
    rest, seq = payload[6:], 1
    while rest:
        frames.append(bytes([0x20 | seq]) + rest[:7])
        rest, seq = rest[7:], (seq + 1) & 0xF
    return frames


def render(messages: list[tuple[int, bytes]], headers: bool, protocol: int, spaces: bool, pad: bool) -> bytes:
    lines: list[str] = []
    for ecu, payload in messages:
        if protocol in (1, 2, 3):
            frame = bytes([0x48, 0x6B, ecu & 0xFF]) + payload
            check = sum(frame) & 0xFF if protocol == 3 else pyparser._crc_j1850(frame)
            lines.append(_hex(frame + bytes([check]), spaces) if headers else _hex(payload, spaces))
        elif protocol in (4, 5):
            frame = bytes([0x80 | len(payload), 0xF1, ecu & 0xFF]) + payload
            lines.append(_hex(frame + bytes([sum(frame) & 0xFF]), spaces) if headers else _hex(payload, spaces))
        elif headers:
            head = f"{ecu:08X}" if protocol in (7, 9) else f"{ecu:03X}"
            for f in _can_frames(payload):
                body = f.ljust(8, b"\x00") if pad else f
                lines.append(head + (" " if spaces else "") + _hex(body, spaces))
        elif len(payload) <= 7:
            lines.append(_hex(payload, spaces))
        else:
            lines.append(f"{len(payload):03X}")
            chunks = [payload[:6]] + [payload[i : i + 7] for i in range(6, len(payload), 7)]
            lines += [f"{k & 0xF:X}:{' ' if spaces else ''}{_hex(c, spaces)}" for k, c in enumerate(chunks)]
    return ("\r".join(lines) + "\r\r").encode()


@st.composite
def answer(draw: st.DrawFn, can: bool) -> bytes:
    kind = draw(st.sampled_from(["pids", "pids", "pids", "dtc", "vin", "freeze", "neg", "raw"]))
    if kind == "pids":
        chosen = draw(st.lists(st.sampled_from(PID_LIST), min_size=1, max_size=6 if can else 1))
        body = b"".join(
            bytes([p]) + draw(st.binary(min_size=pids.PIDS[p].size, max_size=pids.PIDS[p].size)) for p in chosen
        )
        return b"\x41" + body
    if kind == "dtc":
        n = draw(st.integers(0, 6 if can else 3))
        codes = draw(st.binary(min_size=2 * n, max_size=2 * n))
        service = draw(st.sampled_from([0x43, 0x47, 0x4A]))
        return bytes([service, n]) + codes if can else bytes([service]) + codes.ljust(6, b"\x00")
    if kind == "vin":
        vin = draw(st.text("ABCDEFGHJKLMNPRSTUVWXYZ0123456789", min_size=17, max_size=17)).encode()
        return b"\x49\x02\x01" + vin if can else b"\x49\x02\x01" + vin[:4]
    if kind == "freeze":
        p = draw(st.sampled_from(PID_LIST))
        return bytes([0x42, p, 0]) + draw(st.binary(min_size=pids.PIDS[p].size, max_size=pids.PIDS[p].size))
    if kind == "neg":
        return bytes([0x7F, draw(st.integers(1, 10)), draw(st.integers(0, 255))])
    # services without a decoder of their own (05, 06, 08 carry a PID, so at least one byte)
    service = draw(st.sampled_from([0x45, 0x46, 0x48, 0x50, 0x62, 0x7E]))
    return bytes([service]) + draw(st.binary(min_size=1, max_size=12))


@st.composite
def adapter_output(draw: st.DrawFn) -> tuple[bytes, bool, int]:
    protocol = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9]))
    can = protocol >= 6
    headers = draw(st.booleans())
    n = draw(st.integers(1, 3)) if (headers or not can) else 1
    ecus = [0x7E8, 0x7E9, 0x7EA] if protocol in (6, 8) else [0x18DAF110, 0x18DAF118, 0x18DAF11A]
    if not can:
        ecus = [0x10, 0x11, 0x1A]
    messages = [(ecus[k % 3], draw(answer(can))) for k in range(n)]
    text = render(messages, headers, protocol, draw(st.booleans()), draw(st.booleans()))
    prefix = draw(st.sampled_from([b"", b"0100\r", b"SEARCHING...\r", b"BUS INIT: ...OK\r", b">"]))
    return prefix + text, headers, protocol


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bool, int]:
    text, headers, protocol = draw(adapter_output())
    data = bytearray(text)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "drop", "insert", "cut", "dupline", "swaplines", "noise"]))
        if op in ("flip", "drop") and data:
            i = draw(st.integers(0, len(data) - 1))
            if op == "flip":
                data[i] = draw(st.sampled_from(list(b"0123456789ABCDEF :\r\n>\x00<?Z")))
            else:
                del data[i]
        elif op == "insert":
            data.insert(draw(st.integers(0, len(data))), draw(st.integers(0, 255)))
        elif op == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif op in ("dupline", "swaplines"):
            lines = bytes(data).split(b"\r")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "dupline":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\r".join(lines))
        else:
            noise = draw(st.sampled_from([b"NO DATA", b"CAN ERROR", b"STOPPED", b"?", b"BUFFER FULL", b"0:", b"7E8"]))
            data[draw(st.integers(0, len(data))) : 0] = b"\r" + noise + b"\r"
    return bytes(data), headers, protocol


@SETTINGS
@given(adapter_output())
def test_valid_output_decodes_the_same(case: tuple[bytes, bool, int]) -> None:
    block, headers, protocol = case
    result = agree("decode", block, headers, protocol)
    assert result[0] == "ok", block  # a rendering of valid answers is always readable
    agree("parse", block, headers, protocol)


@SETTINGS
@given(mutated())
def test_mutated_output_agrees(case: tuple[bytes, bool, int]) -> None:
    block, headers, protocol = case
    agree("decode", block, headers, protocol)
    agree("parse", block, headers, protocol)


@SETTINGS
@given(st.binary(max_size=300), st.booleans(), st.integers(0, 12))
def test_arbitrary_bytes_agree(block: bytes, headers: bool, protocol: int) -> None:
    agree("decode", block, headers, protocol)


@SETTINGS
@given(st.text("0123456789ABCDEFabcdef :\r\n>\x00<", max_size=200), st.booleans(), st.integers(0, 12))
def test_hex_like_text_agrees(text: str, headers: bool, protocol: int) -> None:
    block = text.encode()
    agree("decode", block, headers, protocol)
    agree("parse", block, headers, protocol)


@SETTINGS
@given(st.lists(st.binary(max_size=60), max_size=5), st.booleans(), st.integers(0, 12))
def test_decode_many_agrees(blocks: list[bytes], headers: bool, protocol: int) -> None:
    agree("decode_many", blocks, headers, protocol)


@st.composite
def can_frames(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    ids = st.sampled_from([0x7DF, 0x7E0, 0x7E8, 0x7E9, 0x18DAF110, 0x18DB33F1])
    frames = []
    for _ in range(draw(st.integers(0, 6))):
        pci = draw(st.sampled_from([0x01, 0x02, 0x03, 0x05, 0x07, 0x10, 0x21, 0x22, 0x30, 0x00, 0x45]))
        frames.append((draw(ids), bytes([pci]) + draw(st.binary(max_size=8))))
    return frames


@SETTINGS
@given(can_frames())
def test_can_frames_agree(frames: list[tuple[int, bytes]]) -> None:
    agree("decode_can", frames)


def _multi_frame_off(payload: bytes) -> bytes:
    lines = [f"{len(payload):03X}"]
    chunks = [payload[:6]] + [payload[i : i + 7] for i in range(6, len(payload), 7)]
    lines += [f"{k & 0xF:X}: {c.hex(' ').upper()}" for k, c in enumerate(chunks)]
    return ("\r".join(lines) + "\r").encode()


def test_long_items_agree() -> None:
    # the native build's on-stack buffers give way to the heap for long items: check those paths
    raw = bytes(range(200))
    readings = agree("decode", _multi_frame_off(b"\x41\xa3" + raw), False, 6)
    assert readings[0] == "ok" and raw.hex().upper() in readings[1]
    name = b"ECU " + b"x" * 290 + b"  "
    result = agree("decode", _multi_frame_off(b"\x49\x0a\x01" + name), False, 6)
    assert result[0] == "ok" and ("ECU " + "x" * 290) in result[1]
    # 70 legacy service 09 messages, out of order: the sort of their sequence bytes leaves the stack
    lines = [f"49 04 {k:02X} 41 42 43 {k:02X}" for k in range(70, 0, -1)]
    agree("decode", "\r".join(lines).encode(), False, 3)
    agree("decode", "\r".join(lines).encode(), True, 6)  # CAN: the order stays, count bytes dropped


def test_many_pending_messages_agree() -> None:
    # 200 ECUs with a multi-frame answer each, first frames first: more pending messages than the
    # native build's inline arrays hold
    ids = [0x18DAF100 + k for k in range(200)]
    frames = [(i, bytes.fromhex("100A490201414243")) for i in ids]
    frames += [(i, bytes.fromhex("2144454647000000")) for i in ids]
    result = agree("decode_can", frames)
    assert result[0] == "ok" and result[1].count("'vin'") == 200
    block = "\r".join(f"{i:08X} 10 0A 49 02 01 41 42 43" for i in ids) + "\r"
    block += "\r".join(f"{i:08X} 21 44 45 46 47 00 00 00" for i in ids) + "\r"
    result = agree("decode", block.encode(), True, 7)
    assert result[0] == "ok" and result[1].count("'ABCDEFG'") == 200
