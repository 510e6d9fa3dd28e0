"""Pure-Python twin of the native parser: ELM327 output and raw CAN frames → OBD messages → values.

The native build (``gateway._native``, compiled from ``native/parser.pyx``) has the same API and gives
equal results for every input; the differential tests check this. Use the selected build through
``from gateway.obd import parser``.

API
---
``decode(block, headers=False, protocol=6) -> list[Reading]``
    One request's adapter output (the bytes before the ``>`` prompt) → decoded values, grouped per
    ECU (ascending ECU address, arrival order within one ECU).
``decode_many(blocks, headers=False, protocol=6) -> list[list[Reading]]``
    ``decode`` for each block; a block that cannot be read raises ``ParseError`` for the batch.
``decode_can(frames) -> list[Reading]``
    Raw CAN frames ``(arbitration_id, data)`` or python-can ``Message``s, ISO-TP reassembled per id.
    Only OBD response ids are read (11-bit 0x7E8–0x7EF, 29-bit 0x18DAF100–0x18DAF1FF); others are
    ignored, as are flow-control frames.
``parse(block, headers=False, protocol=6) -> list[ObdMessage]``
    The level below decoding: complete messages (ECU, service, PID, payload).
``Reading``, ``ObdMessage`` (from :mod:`gateway.obd.types`), ``ParseError`` (from :mod:`gateway.errors`).

Example::

    >>> decode(b"7E8 04 41 0C 1A F8 00 00 00\r7E9 03 41 0D 32 00 00 00 00\r\r", headers=True)
    [Reading(ecu=2024, service=1, pid=12, name='engine_rpm', value=1726.0, unit='rpm'),
     Reading(ecu=2025, service=1, pid=13, name='speed', value=50.0, unit='km/h')]

``protocol`` is the ELM327 protocol number (``ATDPN``): 1–5 are the legacy buses (1 J1850 PWM,
2 J1850 VPW, 3 ISO 9141-2, 4/5 ISO 14230 KWP), anything else (0, 6–C) is read as CAN. With headers on,
CAN ids are 11-bit when the line has an odd number of hex digits and 29-bit otherwise.

Input lines
-----------
Lines end at CR or LF; NUL bytes and a leading ``>`` are removed; spaces are optional. A line made of
hex digits (``N:`` prefixed in the headers-off multi-frame form, or the 3-digit byte count line) is
data. Everything else is not data and is skipped: ``SEARCHING...``, ``BUS INIT: ...OK``/``ERROR``,
``OK``, ``?``, ``NO DATA``, ``STOPPED``, ``CAN ERROR``, ``BUS ERROR``, ``BUFFER FULL``,
``UNABLE TO CONNECT``, ``ELM327 v1.5``, ``AT`` commands echoed, and noise. A data line followed by
``<DATA ERROR``/``<RX ERROR`` on the same line was rejected by the adapter and is dropped. The first
line is dropped as the echo of the request when it is hex whose first byte is a request mode
(01–0A): responses start with 0x41 or more, or with a header. So ``NO DATA`` and every error line
give ``[]``: telling *why* there is no data is the adapter session's job, not the parser's.

``ParseError`` is raised for data that cannot be read: a bad hex line, a message that is not a
response, a PID whose bytes are cut short, an ISO-TP sequence gap or a multi-frame message left
incomplete at the end of the block, a wrong byte count, a legacy checksum that does not match.

Decoding
--------
* Service 01/02: every PID of the answer (multi-PID answers give several), per :mod:`gateway.obd.pids`;
  a PID the catalogue lacks gives one reading ``pid_XX`` with the remaining bytes as hex and ends the
  message. Service 02 PID 02 is the freeze-frame DTC (``"P0301"``).
* Service 03/07/0A: one reading per ECU (``dtcs``/``pending_dtcs``/``permanent_dtcs``) whose value is
  a tuple of codes (``("P0301", "U0100")``); CAN answers start with a count byte, legacy answers
  carry three codes per line padded with ``0000``.
* Service 04: ``dtcs_cleared`` = True. Service 09: VIN (str), calibration ids (tuple of str), CVNs
  (tuple of hex str), ECU name (str), message counts (int), in-use performance counters.
* Negative response ``7F ss nn``: one reading ``negative_response`` (service ``ss``, value NRC).
* Any other service: one reading ``raw`` with the payload as hex.
"""

from __future__ import annotations

import math
from binascii import a2b_hex as _a2b
from collections.abc import Callable, Sequence
from typing import Any

from gateway.errors import ParseError
from gateway.obd import pids as _pids
from gateway.obd.types import ObdMessage, Reading, Value

__all__ = ["ObdMessage", "ParseError", "Reading", "decode", "decode_can", "decode_many", "eval_formula", "parse"]

_HEX = b"0123456789ABCDEFabcdef"
_new = tuple.__new__  # Reading(...) without the generated __new__'s Python frame
_SPACE_NUL = b" \x00\t"
_PID_SERVICES = frozenset((0x01, 0x02, 0x05, 0x06, 0x08, 0x09))


# --- the catalogue, flattened for speed: pid -> (size, fields) -----------------------------------
def _flatten() -> list[tuple[int, tuple[Any, ...]] | None]:
    table: list[tuple[int, tuple[Any, ...]] | None] = [None] * 256
    for pid, spec in _pids.PIDS.items():
        fields = tuple(
            (
                f.kind,
                f.start,
                f.length,
                f.mul,
                f.div,
                f.add,
                f.signed,
                f.shift,
                f.mask,
                f.avail,
                f.invalid if f.invalid >= 0 else None,
                f.name,
                f.unit,
                dict(f.enum),
                pid & 0xE0,
                f.gate_byte,
                f.gate_bit,
                f.gate_value,
            )
            for f in spec.fields
        )
        table[pid] = (spec.size, fields)
    return table


_TABLE = _flatten()


def _check_protocol(protocol: object) -> bool:
    """True for CAN, False for the legacy buses; ParseError for a protocol that does not exist."""
    if type(protocol) is not int or not 0 <= protocol <= 12:
        raise ParseError(f"protocol must be an ELM327 protocol number 0-12, not {protocol!r}")
    return not 1 <= protocol <= 5


def _as_bytes(block: object) -> bytes:
    if isinstance(block, bytes):
        return block
    if isinstance(block, bytearray | memoryview):
        return bytes(block)
    raise ParseError(f"adapter output must be bytes, not {type(block).__name__}")


# --- lines → raw messages -----------------------------------------------------------------------
def _data_lines(block: bytes) -> list[bytes]:
    """The block's data lines (spaces removed), the echo and non-data lines dropped."""
    out: list[bytes] = []
    first = True
    text = block.translate(None, _SPACE_NUL)
    if b"\n" in text:
        text = text.replace(b"\n", b"\r")
    for raw in text.split(b"\r"):
        if not raw:
            continue
        line = raw.lstrip(b">") if raw[0] == 0x3E else raw  # ">": the prompt
        if not line:
            continue
        if b"<" in line:  # "41 0D 32 <DATA ERROR": the adapter itself rejected this line
            first = False
            continue
        if line.translate(None, _HEX):
            # not all hex: a numbered multi-frame line "N:hex", or not data (status text, noise)
            first = False
            if len(line) > 2 and line[1] == 0x3A and line[0] in _HEX and not line[2:].translate(None, _HEX):
                out.append(line)
            continue
        if first and len(line) % 2 == 0 and len(line) <= 16 and 0x01 <= int(line[:2], 16) <= 0x0A:
            first = False  # the echo of the request
            continue
        first = False
        out.append(line)
    return out


def _unhex(text: bytes) -> bytes:
    if len(text) % 2:
        raise ParseError(f"odd number of hex digits in {text.decode('ascii')!r}")
    return _a2b(text)


def _messages_headers_off(lines: list[bytes]) -> list[tuple[int, bytes]]:
    msgs: list[tuple[int, bytes]] = []
    expected = 0  # byte count of the multi-frame message being assembled (0: none)
    buf = bytearray()
    seq = 0
    for line in lines:
        if len(line) > 1 and line[1:2] == b":":
            if not expected:
                raise ParseError("numbered frame line without the byte count line before it")
            index = int(line[0:1], 16)
            if index != seq:
                raise ParseError(f"multi-frame line {index:X}: expected {seq:X}")
            buf += _unhex(line[2:])
            seq = (seq + 1) & 0xF
            if len(buf) >= expected:
                msgs.append((0, bytes(buf[:expected])))
                expected = 0
        elif len(line) == 3:
            if expected:
                raise ParseError("new multi-frame message before the previous one was complete")
            expected = int(line, 16)
            if not expected:
                raise ParseError("multi-frame byte count of 0")
            buf = bytearray()
            seq = 0
        else:
            msgs.append((0, _unhex(line)))
    if expected:
        raise ParseError(f"multi-frame message incomplete: {len(buf)} of {expected} bytes")
    return msgs


class _IsoTp:
    """ISO-TP reassembly of single, first and consecutive frames, per arbitration id."""

    __slots__ = ("msgs", "pending")

    def __init__(self) -> None:
        self.msgs: list[tuple[int, bytes]] = []
        self.pending: dict[int, list[Any]] = {}  # id -> [expected length, bytearray, next sequence]

    def feed(self, ecu: int, data: bytes) -> None:
        if not data:
            raise ParseError(f"CAN frame from {ecu:X} without data")
        kind = data[0] >> 4
        if kind == 0:
            self._single(ecu, data)
        elif kind == 1:
            self._first(ecu, data)
        elif kind == 2:
            self._consecutive(ecu, data)
        elif kind != 3:  # 3 is flow control: the tester's side of the exchange
            raise ParseError(f"CAN frame from {ecu:X} with unknown ISO-TP type {kind:X}")

    def _single(self, ecu: int, data: bytes) -> None:
        n = data[0] & 0xF
        if n == 0:  # CAN FD escape: the length is in the next byte
            if len(data) < 2:
                raise ParseError("single frame without length")
            n = data[1]
            payload = data[2 : 2 + n]
        else:
            payload = data[1 : 1 + n]
        if n == 0 or len(payload) < n:
            raise ParseError(f"single frame from {ecu:X} announces {n} bytes, has {len(payload)}")
        if ecu in self.pending:
            raise ParseError(f"single frame from {ecu:X} in the middle of a multi-frame message")
        self.msgs.append((ecu, payload))

    def _first(self, ecu: int, data: bytes) -> None:
        if len(data) < 2:
            raise ParseError("first frame without length")
        n = ((data[0] & 0xF) << 8) | data[1]
        if n < 7:
            raise ParseError(f"first frame from {ecu:X} announces only {n} bytes")
        if ecu in self.pending:
            raise ParseError(f"first frame from {ecu:X} before the previous message was complete")
        self.pending[ecu] = [n, bytearray(data[2:]), 1]

    def _consecutive(self, ecu: int, data: bytes) -> None:
        state = self.pending.get(ecu)
        if state is None:
            raise ParseError(f"consecutive frame from {ecu:X} without a first frame")
        if data[0] & 0xF != state[2]:
            raise ParseError(f"consecutive frame {data[0] & 0xF:X} from {ecu:X}: expected {state[2]:X}")
        buf = state[1]
        buf += data[1:]
        state[2] = (state[2] + 1) & 0xF
        if len(buf) >= state[0]:
            self.msgs.append((ecu, bytes(buf[: state[0]])))
            del self.pending[ecu]

    def finish(self) -> list[tuple[int, bytes]]:
        if self.pending:
            ecu = min(self.pending)
            raise ParseError(f"multi-frame message from {ecu:X} incomplete at the end of the block")
        return self.msgs


def _crc_j1850(data: bytes) -> int:
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1D) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0xFF


def _messages_legacy(lines: list[bytes], protocol: int) -> list[tuple[int, bytes]]:
    msgs: list[tuple[int, bytes]] = []
    for line in lines:
        data = _unhex(line)
        if protocol >= 4:  # ISO 14230: format byte (length in its low 6 bits), target, source[, length]
            if len(data) < 4:
                raise ParseError(f"KWP line too short: {line.decode('ascii')}")
            n = data[0] & 0x3F
            start = 3
            if n == 0:
                n = data[3]
                start = 4
            if len(data) != start + n + 1:
                raise ParseError(f"KWP line announces {n} data bytes: {line.decode('ascii')}")
            check = sum(data[:-1]) & 0xFF
        else:  # J1850 and ISO 9141-2: three header bytes, data, checksum
            if len(data) < 5:
                raise ParseError(f"line too short for a header and a checksum: {line.decode('ascii')}")
            start = 3
            n = len(data) - 4
            check = sum(data[:-1]) & 0xFF if protocol == 3 else _crc_j1850(data[:-1])
        if check != data[-1]:
            raise ParseError(f"checksum {data[-1]:02X} should be {check:02X}: {line.decode('ascii')}")
        msgs.append((data[2], data[start : start + n]))
    return msgs


def _raw_messages(block: object, headers: object, protocol: object) -> tuple[list[tuple[int, bytes]], bool]:
    is_can = _check_protocol(protocol)
    lines = _data_lines(_as_bytes(block))
    if not lines:
        return [], is_can
    if not headers:
        msgs = _messages_headers_off(lines)
    elif is_can:
        tp = _IsoTp()
        msgs = tp.msgs
        pending = tp.pending
        for line in lines:
            if b":" in line:
                raise ParseError("numbered frame line while headers are on")
            width = 3 if len(line) % 2 else 8
            if len(line) < width + 2:
                raise ParseError(f"CAN line too short: {line.decode('ascii')}")
            ecu = int(line[:width], 16)
            data = _a2b(line[width:])
            pci = data[0]
            # the common case inline: a single frame while nothing is pending for this ECU
            if 0 < pci < 0x10 and len(data) > pci and ecu not in pending:
                msgs.append((ecu, data[1 : 1 + pci]))
            else:
                tp.feed(ecu, data)
        tp.finish()
    else:
        if any(b":" in line for line in lines):
            raise ParseError("numbered frame line while headers are on")
        msgs = _messages_legacy(lines, protocol)  # type: ignore[arg-type]
    if len(msgs) > 1:
        msgs.sort(key=_first)
    return msgs, is_can


def _first(item: tuple[int, bytes]) -> int:
    return item[0]


def _message(ecu: int, data: bytes) -> ObdMessage:
    if not data:
        raise ParseError("empty message")
    s = data[0]
    if s == 0x7F:
        return ObdMessage(ecu, 0x7F, None, data[1:])
    if not 0x40 <= s < 0x7F:
        raise ParseError(f"not a response: service byte {s:02X}")
    service = s - 0x40
    if service in _PID_SERVICES:
        if len(data) < 2:
            raise ParseError(f"service {service:02X} response without a PID")
        return ObdMessage(ecu, service, data[1], data[2:])
    return ObdMessage(ecu, service, None, data[1:])


# --- decoding ----------------------------------------------------------------------------------
_DTC_TEXT: dict[int, str] = {}  # each code's text made once: a car repeats its few codes (≤ 65536)


def _dtc(a: int, b: int) -> str:
    key = (a << 8) | b
    text = _DTC_TEXT.get(key)
    if text is None:
        text = _DTC_TEXT[key] = "PCBU"[a >> 6] + "%X%03X" % ((a >> 4) & 3, ((a & 0xF) << 8) | b)  # noqa: UP031
    return text


_NOT_PRINTABLE = bytes(range(0x20)) + bytes(range(0x7F, 0x100))


def _text(data: bytes) -> str:
    return data.translate(None, _NOT_PRINTABLE).decode("ascii").strip()


# The parser's innermost loop, kept whole on purpose: it mirrors native/parser.pyx's _pid_values line for
# line (the differential tests compare the two), and a helper call per decoded field would cost the pure
# twin on every value. Hence the one exception to the branch limit.
def _pid_values(out: list[Reading], ecu: int, service: int, data: bytes) -> None:  # noqa: PLR0912
    """Service 01/02 data: ``PID [frame] bytes PID [frame] bytes ...`` (``data`` starts at a PID)."""
    n = len(data)
    i = 0
    freeze = service == 2
    while i < n:
        pid = data[i]
        i += 1
        if freeze:
            if i >= n:
                raise ParseError(f"freeze frame PID {pid:02X} without a frame number")
            i += 1
        spec = _TABLE[pid]
        if spec is None:
            out.append(Reading(ecu, service, pid, "pid_%02X" % pid, data[i:].hex().upper(), ""))  # noqa: UP031
            return
        size, fields = spec
        if i + size > n:
            raise ParseError(f"PID {pid:02X} needs {size} bytes, {n - i} left")
        for (
            kind, start, length, mul, div, add, signed, shift, mask, avail, invalid, name, unit, enum, base,
            gate_byte, gate_bit, gate_value,
        ) in fields:  # fmt: skip
            if avail >= 0 and not (data[i] >> avail) & 1:
                continue
            if gate_byte >= 0 and (data[i + gate_byte] >> gate_bit) & 1 != gate_value:
                continue
            p = i + start
            value: Value
            if kind == 0:
                raw = data[p]
                if length > 1:
                    for k in range(1, length):
                        raw = (raw << 8) | data[p + k]
                    if signed and raw >> (8 * length - 1):
                        raw -= 1 << (8 * length)
                if raw == invalid:
                    continue
                value = raw * mul / div + add
            elif kind == 1:
                value = bool((data[p] >> shift) & 1)
            elif kind == 2:
                value = (data[p] >> shift) & mask
            elif kind == 3:
                value = enum.get(data[p]) or "unknown_0x%02X" % data[p]  # noqa: UP031
            elif kind == 4:
                bits = int.from_bytes(data[p : p + 4], "big")
                value = tuple(base + k + 1 for k in range(32) if (bits >> (31 - k)) & 1)
            elif kind == 5:
                value = _dtc(data[p], data[p + 1])
            else:
                value = data[p : p + length].hex().upper()
            out.append(_new(Reading, (ecu, service, pid, name, value, unit)))
        i += size


def _dtc_codes(payload: bytes, is_can: bool) -> list[str]:
    if is_can:
        count = payload[0] if payload else 0
        if len(payload) < 1 + 2 * count:
            raise ParseError(f"DTC answer announces {count} codes, has {(len(payload) - 1) // 2}")
        return [_dtc(payload[1 + 2 * k], payload[2 + 2 * k]) for k in range(count)]
    if len(payload) % 2:
        raise ParseError("DTC answer with an odd number of bytes")
    return [_dtc(payload[k], payload[k + 1]) for k in range(0, len(payload), 2) if payload[k] or payload[k + 1]]


def _support(pid: int, data: bytes) -> Value:
    if len(data) < 4:
        raise ParseError("mode 09 PID 00 needs 4 bytes")
    bits = int.from_bytes(data[:4], "big")
    return tuple(k + 1 for k in range(32) if (bits >> (31 - k)) & 1)


def _count(pid: int, data: bytes) -> Value:
    if not data:
        raise ParseError(f"mode 09 PID {pid:02X} without data")
    return data[0]


#: how each kind of mode 09 item is decoded (the catalogue's MODE09 names the kind per PID)
_MODE09_DECODERS: dict[str, Callable[[int, bytes], Value]] = {
    "support": _support,
    "count": _count,
    "text": lambda _pid, data: _text(data),
    "texts16": lambda _pid, data: tuple(_text(data[k : k + 16]) for k in range(0, len(data), 16)),
    "hex4": lambda _pid, data: tuple(data[k : k + 4].hex().upper() for k in range(0, len(data) - 3, 4)),
    "counters": lambda _pid, data: tuple((data[k] << 8) | data[k + 1] for k in range(0, len(data) - 1, 2)),
}


def _mode09(ecu: int, pid: int, chunks: list[bytes], is_can: bool) -> Reading:
    name, how = _pids.MODE09.get(pid, ("", "raw"))
    if how in ("support", "count", "raw"):
        data = b"".join(chunks)
    elif is_can:  # one message: a count byte, then the items
        data = b"".join(c[1:] for c in chunks)
    else:  # legacy: one message per 4 bytes, each led by its sequence number
        data = b"".join(c[1:] for c in sorted(chunks, key=_seq))
    decode = _MODE09_DECODERS.get(how)
    if decode is None:
        return Reading(ecu, 9, pid, "pid_%02X" % pid, data.hex().upper(), "")  # noqa: UP031
    return Reading(ecu, 9, pid, name, decode(pid, data), "")


def _seq(chunk: bytes) -> int:
    return chunk[0] if chunk else 0


def _run(msgs: list[tuple[int, bytes]], k: int, ecu: int, prefix: bytes) -> int:
    """The index after the run of messages from ``ecu`` that start like ``prefix`` (legacy protocols spread
    one answer over several messages)."""
    n = len(msgs)
    while k < n and msgs[k][0] == ecu and msgs[k][1][: len(prefix)] == prefix:
        k += 1
    return k


def _one_message(out: list[Reading], ecu: int, s: int, data: bytes) -> None:
    """Decode a response that is one message (everything but DTC lists and mode 09)."""
    if s in (0x41, 0x42):
        if len(data) < 2:
            raise ParseError(f"service {s - 0x40:02X} response without a PID")
        _pid_values(out, ecu, s - 0x40, data[1:])
    elif s == 0x44:
        out.append(Reading(ecu, 4, None, "dtcs_cleared", True, ""))
    elif s == 0x7F:
        if len(data) < 3:
            raise ParseError("negative response shorter than 3 bytes")
        out.append(Reading(ecu, data[1], None, "negative_response", data[2], ""))
    elif 0x40 <= s < 0x7F:
        m = _message(ecu, data)
        out.append(Reading(ecu, m.service, m.pid, "raw", m.payload.hex().upper(), ""))
    else:
        raise ParseError(f"not a response: service byte {s:02X}")


def _decode_messages(msgs: list[tuple[int, bytes]], is_can: bool) -> list[Reading]:
    out: list[Reading] = []
    k = 0
    n = len(msgs)
    while k < n:
        ecu, data = msgs[k]
        k += 1
        if not data:
            raise ParseError("empty message")
        s = data[0]
        if s in (0x43, 0x47, 0x4A):
            end = _run(msgs, k, ecu, data[:1])
            codes = _dtc_codes(data[1:], is_can)
            for _, more in msgs[k:end]:
                codes += _dtc_codes(more[1:], is_can)
            k = end
            out.append(Reading(ecu, s - 0x40, None, _pids.DTC_SERVICES[s - 0x40], tuple(codes), ""))
        elif s == 0x49:
            if len(data) < 2:
                raise ParseError("service 09 response without a PID")
            end = _run(msgs, k, ecu, data[:2])
            chunks = [data[2:]] + [more[2:] for _, more in msgs[k:end]]
            k = end
            out.append(_mode09(ecu, data[1], chunks, is_can))
        else:
            _one_message(out, ecu, s, data)
    return out


# --- public API ------------------------------------------------------------------------------------
def parse(block: bytes, headers: bool = False, protocol: int = 6) -> list[ObdMessage]:
    """One request's adapter output → its complete OBD messages, grouped per ECU."""
    msgs, _ = _raw_messages(block, headers, protocol)
    return [_message(ecu, data) for ecu, data in msgs]


def decode(block: bytes, headers: bool = False, protocol: int = 6) -> list[Reading]:
    """One request's adapter output → decoded values (``[]`` for NO DATA and other non-data lines)."""
    msgs, is_can = _raw_messages(block, headers, protocol)
    return _decode_messages(msgs, is_can)


def decode_many(blocks: Sequence[bytes], headers: bool = False, protocol: int = 6) -> list[list[Reading]]:
    """``decode`` applied to each block."""
    _check_protocol(protocol)
    try:
        it = iter(blocks)
    except TypeError as exc:
        raise ParseError(f"blocks must be a sequence of bytes, not {type(blocks).__name__}") from exc
    return [decode(block, headers, protocol) for block in it]


def decode_can(frames: Sequence[Any]) -> list[Reading]:
    """Raw CAN frames ``(arbitration_id, data)`` (or python-can ``Message``s) → decoded values, with
    ISO-TP reassembly."""
    tp = _IsoTp()
    try:
        item: Any
        for item in frames:
            if type(item) is tuple or not hasattr(item, "arbitration_id"):
                arb_id, data = item
            else:  # a python-can Message
                arb_id, data = item.arbitration_id, item.data
            if type(arb_id) is not int:
                raise ParseError(f"arbitration id must be an int, not {type(arb_id).__name__}")
            if 0x7E8 <= arb_id <= 0x7EF or 0x18DAF100 <= arb_id <= 0x18DAF1FF:
                tp.feed(arb_id, _as_bytes(data))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ParseError):
            raise
        raise ParseError(f"frames must be (arbitration_id, data) pairs: {exc}") from exc
    msgs = tp.finish()
    msgs.sort(key=_first)
    return _decode_messages(msgs, True)


# --- user formulas (gateway.obd.formula compiles them; both builds evaluate the same program) --------
_NAN = float("nan")
_INT_LIMIT = 9007199254740992.0  # 2**53: beyond it a double no longer holds every integer


def _as_int(v: float) -> int | None:
    if math.isnan(v) or not -_INT_LIMIT < v < _INT_LIMIT:
        return None
    return int(v)


# An interpreter's dispatch loop, kept whole on purpose: it mirrors native/parser.pyx's eval_formula step for
# step (the differential tests compare them) and a helper call per opcode would cost every custom value.
def eval_formula(ops: tuple[int, ...], args: tuple[float, ...], data: bytes) -> float:  # noqa: PLR0912, PLR0915
    """Evaluate a compiled formula (postfix ``ops``/``args``) over the answer's data bytes.

    A byte the answer lacks raises ``ParseError``; a division by zero or a bitwise operation on a value
    that is not an integer below 2**53 gives NaN. Every step is one IEEE double operation, as in the
    native build."""
    if type(ops) is not tuple or type(args) is not tuple or len(ops) != len(args) or len(ops) > 1024:
        raise ParseError("a formula program is two tuples of equal length")
    raw = _as_bytes(data)
    n = len(raw)
    st: list[float] = []
    for op, a in zip(ops, args, strict=True):
        if op in (0, 1):
            if len(st) >= 32:
                raise ParseError("formula stack overflow")
            if op == 0:
                st.append(float(a))
                continue
            if not 0 <= a < n:
                raise ParseError(f"the formula reads byte {a:g} of a {n}-byte answer")
            st.append(float(raw[int(a)]))
        elif op in (2, 7, 12, 15):
            if not st:
                raise ParseError("formula stack underflow")
            v = st[-1]
            if op == 7:
                st[-1] = -v
            elif op == 15:
                st[-1] = abs(v)
            else:
                k = _as_int(v)
                if op == 2:
                    st[-1] = float((k >> int(a)) & 1) if k is not None and 0 <= a <= 52 else _NAN
                elif k is not None and 1 <= a <= 52:
                    bits = int(a)
                    k &= (1 << bits) - 1
                    st[-1] = float(k - (1 << bits) if k >> (bits - 1) else k)
                else:
                    st[-1] = _NAN
        else:
            if len(st) < 2:
                raise ParseError("formula stack underflow")
            y = st.pop()
            x = st[-1]
            if op == 3:
                r = x + y
            elif op == 4:
                r = x - y
            elif op == 5:
                r = x * y
            elif op == 6:
                r = x / y if y != 0.0 else _NAN
            elif op == 13:
                r = y if y < x else x
            elif op == 14:
                r = y if y > x else x
            elif op in (8, 9, 10, 11):
                p, q = _as_int(x), _as_int(y)
                if p is None or q is None or (op >= 10 and not 0 <= q < 53):
                    r = _NAN
                elif op == 8:
                    r = float(p & q)
                elif op == 9:
                    r = float(p | q)
                elif op == 10:
                    r = float(p << q) if abs(p << q) < _INT_LIMIT else _NAN
                else:
                    r = float(p >> q)
            else:
                raise ParseError(f"unknown formula opcode {op!r}")
            st[-1] = r
    if len(st) != 1:
        raise ParseError("a formula must leave one value")
    return st[0]
