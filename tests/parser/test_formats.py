"""Adapter output in every format a real ELM327 produces, and the non-data lines around it."""

from __future__ import annotations

from types import ModuleType

import pytest

from gateway.errors import ParseError
from gateway.obd.types import ObdMessage, Reading

RPM = Reading(0, 1, 0x0C, "engine_rpm", 1726.0, "rpm")
VIN = "1D4GP00R55B123456"


def names(readings: list[Reading]) -> list[tuple[int, str, object]]:
    return [(r.ecu, r.name, r.value) for r in readings]


# --- headers off -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "block",
    [
        b"41 0C 1A F8\r\r",
        b"410C1AF8\r\r",
        b"410c1af8\r",  # lower case from some clones
        b"41 0C 1A F8 \r\n\r\n",  # ATL1: CR LF, trailing space
        b"010C\r41 0C 1A F8\r\r",  # echo on
        b"010C\rSEARCHING...\r41 0C 1A F8\r\r",
        b"BUS INIT: ...OK\r41 0C 1A F8\r\r",
        b"\x0041 0C\x00 1A F8\r\x00\r",  # stray NULs
        b">010C\r41 0C 1A F8\r\r",  # a prompt left in front of the echo
        b"ATH0\rOK\r41 0C 1A F8\r",  # a command echo and its OK
        b"41 0C 1A F8\rSTOPPED\r",
        b"\xfe\xff garbage\r41 0C 1A F8\r",  # line noise is not data
    ],
)
def test_single_frame_headers_off(build: ModuleType, block: bytes) -> None:
    assert build.decode(block) == [RPM]


@pytest.mark.parametrize(
    "block",
    [
        b"NO DATA\r\r",
        b"SEARCHING...\rNO DATA\r",
        b"CAN ERROR\r",
        b"BUS INIT: ...ERROR\r",
        b"UNABLE TO CONNECT\r",
        b"BUFFER FULL\r",
        b"STOPPED\r",
        b"?\r",
        b"",
        b"\r\r\r",
        b">",
        b"0100\r",  # only the echo
        b"41 0D 32 <DATA ERROR\r",  # the adapter rejected the line's checksum
        b"7E8 03 41 0D 32 <RX ERROR\r",
    ],
)
def test_non_data_gives_nothing(build: ModuleType, block: bytes) -> None:
    assert build.decode(block, False, 6) == []
    assert build.decode(block, True, 6) == []
    assert build.parse(block, True, 6) == []


def test_multi_pid_headers_off_multi_frame(build: ModuleType) -> None:
    # six PIDs: 41 0C 1A F8 0D 32 05 7B 04 80 0F 46 11 FF = 14 bytes
    block = b"00E\r0: 41 0C 1A F8 0D 32\r1: 05 7B 04 80 0F 46 11\r2: FF 00 00 00 00 00 00\r\r"
    assert [(r.name, r.value) for r in build.decode(block)] == [
        ("engine_rpm", 1726.0),
        ("speed", 50.0),
        ("engine_coolant_temperature", 83.0),
        ("engine_load", pytest.approx(12800 / 255)),
        ("intake_air_temperature", 30.0),
        ("throttle_position", 100.0),
    ]


def test_vin_headers_off(build: ModuleType) -> None:
    block = b"014\r0: 49 02 01 31 44 34\r1: 47 50 30 30 52 35 35\r2: 42 31 32 33 34 35 36\r\r"
    assert build.decode(block) == [Reading(0, 9, 2, "vin", VIN, "")]
    nospace = b"014\r0:490201314434\r1:47503030523535\r2:42313233343536\r"
    assert build.decode(nospace) == [Reading(0, 9, 2, "vin", VIN, "")]


@pytest.mark.parametrize(
    "block",
    [
        b"014\r0: 49 02 01 31 44 34\r2: 47 50 30 30 52 35 35\r",  # a frame missing
        b"014\r0: 49 02 01 31 44 34\r1: 47 50 30 30 52 35 35\r",  # cut short
        b"1: 47 50 30 30 52 35 35\r",  # no byte count line
        b"014\r0: 49 02 01\r014\r",  # a new message before the last was complete
        b"000\r",
        b"41 0C 1A F\r",  # odd number of digits
        b"41 0C 1A\r",  # RPM needs two bytes
        b"41\r",  # a response without its PID
        b"00 0C 1A F8\r41 0D 32\r",  # not a response (and not the first line, so not an echo)
        b"7F 01\r",  # negative response too short
    ],
)
def test_unreadable_data_raises(build: ModuleType, block: bytes) -> None:
    with pytest.raises(ParseError):
        build.decode(block)


# --- headers on, CAN -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "block",
    [
        b"7E8 04 41 0C 1A F8 00 00 00\r\r",
        b"7E804410C1AF8000000\r\r",
        b"7E8 04 41 0C 1A F8\r",  # without padding
        b"7E8 04 41 0C 1A F8 55 55 55\r",  # other padding
    ],
)
def test_can_11bit_headers_on(build: ModuleType, block: bytes) -> None:
    assert build.decode(block, True, 6) == [RPM._replace(ecu=0x7E8)]


@pytest.mark.parametrize("block", [b"18 DA F1 10 04 41 0C 1A F8 00 00 00\r", b"18DAF11004410C1AF8000000\r"])
def test_can_29bit_headers_on(build: ModuleType, block: bytes) -> None:
    assert build.decode(block, True, 7) == [RPM._replace(ecu=0x18DAF110)]


def test_several_ecus_answer_one_request(build: ModuleType) -> None:
    block = b"7E9 06 41 00 98 18 80 11\r7E8 06 41 00 BE 1F A8 13\r\r"
    readings = build.decode(block, True, 6)
    # grouped per ECU, ascending
    assert [r.ecu for r in readings] == [0x7E8, 0x7E9]
    assert readings[1].value == (1, 4, 5, 12, 13, 17, 28, 32)


def test_interleaved_multi_frame_from_two_ecus(build: ModuleType) -> None:
    block = (
        b"7E8 10 14 49 02 01 31 44 34\r"
        b"7E9 10 14 49 02 01 57 56 57\r"
        b"7E8 21 47 50 30 30 52 35 35\r"
        b"7E9 21 5A 5A 5A 31 4A 5A 33\r"
        b"7E9 22 57 37 34 30 30 30 30\r"
        b"7E8 22 42 31 32 33 34 35 36\r\r"
    )
    assert names(build.decode(block, True, 6)) == [
        (0x7E8, "vin", VIN),
        (0x7E9, "vin", "WVWZZZ1JZ3W740000"),
    ]
    msgs = build.parse(block, True, 6)
    assert msgs[0] == ObdMessage(0x7E8, 9, 2, b"\x01" + VIN.encode())


@pytest.mark.parametrize(
    "block",
    [
        b"7E8 10 14 49 02 01 31 44 34\r7E8 22 47 50 30 30 52 35 35\r",  # sequence gap
        b"7E8 10 14 49 02 01 31 44 34\r7E8 21 47 50 30 30 52 35 35\r",  # incomplete
        b"7E8 21 47 50 30 30 52 35 35\r",  # consecutive frame without a first frame
        b"7E8 10 14 49 02 01 31 44 34\r7E8 03 41 0D 32\r",  # single frame in the middle
        b"7E8 10 05 49 02 01 31 44 34\r",  # a first frame for less than 7 bytes
        b"7E8 07 41 0D 32\r",  # single frame longer than its data
        b"7E8 00\r",
        b"7E8\r",
        b"7E8 45 41 0D 32\r",  # unknown ISO-TP frame type
        b"7E8 04 41 0C 1A F\r",
        b"0: 41 0C 1A F8\r",
    ],
)
def test_bad_can_frames_raise(build: ModuleType, block: bytes) -> None:
    with pytest.raises(ParseError):
        build.decode(block, True, 6)


def test_flow_control_frames_are_ignored(build: ModuleType) -> None:
    assert build.decode(b"7E8 30 00 00\r7E8 04 41 0C 1A F8\r", True, 6) == [RPM._replace(ecu=0x7E8)]


# --- headers on, legacy buses -----------------------------------------------------------------------
def test_iso9141_checksum(build: ModuleType) -> None:
    # 48+6B+10+41+00+BE+3E+B8+11 = 0x2C9 → C9
    readings = build.decode(b"48 6B 10 41 00 BE 3E B8 11 C9\r", True, 3)
    assert readings == [
        Reading(0x10, 1, 0, "pids_supported_01_20", (1, 3, 4, 5, 6, 7, 11, 12, 13, 14, 15, 17, 19, 20, 21, 28, 32), "")
    ]
    with pytest.raises(ParseError):
        build.decode(b"48 6B 10 41 00 BE 3E B8 11 C8\r", True, 3)


def test_kwp_length_in_format_byte(build: ModuleType) -> None:
    # 83 F1 11 41 0D 32: 0x83+0xF1+0x11+0x41+0x0D+0x32 = 0x205 → 05
    assert build.decode(b"83 F1 11 41 0D 32 05\r", True, 4) == [Reading(0x11, 1, 0x0D, "speed", 50.0, "km/h")]
    # length byte after the header when the format byte's length is 0: 80 F1 11 03 41 0D 32, sum 0x205
    assert build.decode(b"80F11103410D3205\r", True, 5) == [Reading(0x11, 1, 0x0D, "speed", 50.0, "km/h")]
    with pytest.raises(ParseError):
        build.decode(b"84 F1 11 41 0D 32 05\r", True, 4)  # announces 4 data bytes, has 3


def _crc8_j1850(data: bytes) -> int:
    """SAE J1850 CRC, written out independently of the parser (polynomial x^8+x^4+x^3+x^2+1)."""
    crc = 0xFF
    for byte in data:
        for bit in range(7, -1, -1):
            top = ((crc >> 7) ^ (byte >> bit)) & 1
            crc = (crc << 1) & 0xFF
            if top:
                crc ^= 0x1D
    return ~crc & 0xFF


def test_the_test_crc_matches_published_j1850_frames() -> None:
    # the classic mode 01 PID 00 requests on VPW and PWM
    assert _crc8_j1850(bytes.fromhex("686AF10100")) == 0x17
    assert _crc8_j1850(bytes.fromhex("616AF10100")) == 0x0A


@pytest.mark.parametrize("protocol", [1, 2])
def test_j1850_crc(build: ModuleType, protocol: int) -> None:
    frame = bytes.fromhex("486B10410D32")
    line = (frame + bytes([_crc8_j1850(frame)])).hex(" ").upper().encode()
    assert build.decode(line + b"\r", True, protocol) == [Reading(0x10, 1, 0x0D, "speed", 50.0, "km/h")]
    bad = (frame + bytes([_crc8_j1850(frame) ^ 1])).hex().encode()
    with pytest.raises(ParseError):
        build.decode(bad, True, protocol)


def test_legacy_headers_off_three_dtcs_per_line(build: ModuleType) -> None:
    block = b"43 01 33 C1 00 00 00\r43 00 00 00 00 00 00\r"
    assert build.decode(block, False, 3) == [Reading(0, 3, None, "dtcs", ("P0133", "U0100"), "")]


def test_legacy_vin_in_sequenced_messages(build: ModuleType) -> None:
    # ISO 9141 VIN: five messages 49 02 NN + 4 bytes, the first padded; may arrive out of order
    lines = [
        "49 02 01 00 00 00 31",
        "49 02 02 44 34 47 50",
        "49 02 04 35 42 31 32",
        "49 02 03 30 30 52 35",
        "49 02 05 33 34 35 36",
    ]
    assert build.decode("\r".join(lines).encode(), False, 3) == [Reading(0, 9, 2, "vin", VIN, "")]


# --- the other services ------------------------------------------------------------------------------
def test_dtcs_can_with_count_byte(build: ModuleType) -> None:
    assert build.decode(b"43 02 01 33 C1 00\r") == [Reading(0, 3, None, "dtcs", ("P0133", "U0100"), "")]
    assert build.decode(b"47 00\r") == [Reading(0, 7, None, "pending_dtcs", (), "")]
    assert build.decode(b"4A 01 D2 34\r") == [Reading(0, 10, None, "permanent_dtcs", ("U1234",), "")]
    with pytest.raises(ParseError):
        build.decode(b"43 03 01 33 C1 00\r")  # announces three codes, carries two


def test_dtcs_multi_frame_headers_on(build: ModuleType) -> None:
    block = b"7E8 10 0C 43 05 01 33 C1 00\r7E8 21 41 23 80 45 D2 34 00\r"
    assert build.decode(block, True, 6) == [
        Reading(0x7E8, 3, None, "dtcs", ("P0133", "U0100", "C0123", "B0045", "U1234"), "")
    ]


def test_freeze_frame(build: ModuleType) -> None:
    assert build.decode(b"42 02 00 01 33\r") == [Reading(0, 2, 2, "freeze_frame_dtc", "P0133", "")]
    assert build.decode(b"42 0D 00 32 0C 00 1A F8\r") == [
        Reading(0, 2, 0x0D, "speed", 50.0, "km/h"),
        Reading(0, 2, 0x0C, "engine_rpm", 1726.0, "rpm"),
    ]


def test_mode09_items(build: ModuleType) -> None:
    cal = b"49 04 01 " + b"JMB*36761500".hex(" ").encode() + b" 00 00 00 00\r"
    assert build.decode(cal) == [Reading(0, 9, 4, "calibration_ids", ("JMB*36761500",), "")]
    assert build.decode(b"49 06 02 17 91 BC 82 16 E0 62 BE\r") == [
        Reading(0, 9, 6, "cvns", ("1791BC82", "16E062BE"), "")
    ]
    name = b"ECM-EngineControl".ljust(20, b"\x00")
    block = b"017\r0: 49 0A 01 " + name[:3].hex(" ").encode() + b"\r"
    rest = name[3:]
    block += b"".join(f"{k + 1:X}: ".encode() + rest[7 * k : 7 * k + 7].hex(" ").encode() + b"\r" for k in range(3))
    assert build.decode(block) == [Reading(0, 9, 10, "ecu_name", "ECM-EngineControl", "")]
    assert build.decode(b"49 01 05\r") == [Reading(0, 9, 1, "vin_message_count", 5, "")]
    assert build.decode(b"49 00 55 40 00 00\r") == [Reading(0, 9, 0, "mode09_supported", (2, 4, 6, 8, 10), "")]


def test_negative_and_other_responses(build: ModuleType) -> None:
    assert build.decode(b"7F 01 12\r") == [Reading(0, 1, None, "negative_response", 0x12, "")]
    assert build.decode(b"44\r") == [Reading(0, 4, None, "dtcs_cleared", True, "")]
    assert build.decode(b"46 01 00 01 02\r") == [Reading(0, 6, 1, "raw", "000102", "")]
    assert build.decode(b"41 A3 01 02\r") == [Reading(0, 1, 0xA3, "pid_A3", "0102", "")]


def test_parse_gives_messages(build: ModuleType) -> None:
    assert build.parse(b"41 0C 1A F8 0D 32\r") == [ObdMessage(0, 1, 0x0C, b"\x1a\xf8\x0d\x32")]
    assert build.parse(b"43 01 01 33\r") == [ObdMessage(0, 3, None, b"\x01\x01\x33")]
    assert build.parse(b"7F 01 12\r") == [ObdMessage(0, 0x7F, None, b"\x01\x12")]


# --- raw CAN frames ----------------------------------------------------------------------------------
def test_decode_can(build: ModuleType) -> None:
    frames = [
        (0x7DF, bytes.fromhex("02010D5555555555")),  # our own request: not an answer
        (0x7E8, bytes.fromhex("03410D3200000000")),
        (0x7E9, bytes.fromhex("1014490201314434")),
        (0x7E0, bytes.fromhex("3000000000000000")),  # flow control from the tester
        (0x7E9, bytearray.fromhex("2147503030523535")),
        (0x7E9, memoryview(bytes.fromhex("2242313233343536"))),
        (0x18DAF110, bytes.fromhex("03410D3300000000")),
    ]
    assert names(build.decode_can(frames)) == [
        (0x7E8, "speed", 50.0),
        (0x7E9, "vin", VIN),
        (0x18DAF110, "speed", 51.0),
    ]


def test_decode_can_python_can_messages(build: ModuleType) -> None:
    import can

    frames = [
        can.Message(arbitration_id=0x7E8, data=bytes.fromhex("1014490201314434"), is_extended_id=False),
        can.Message(arbitration_id=0x7E8, data=bytes.fromhex("2147503030523535"), is_extended_id=False),
        can.Message(arbitration_id=0x7E8, data=bytes.fromhex("2242313233343536"), is_extended_id=False),
        can.Message(arbitration_id=0x18DAF110, data=bytes.fromhex("03410D3300000000")),
    ]
    assert names(build.decode_can(frames)) == [(0x7E8, "vin", VIN), (0x18DAF110, "speed", 51.0)]


@pytest.mark.parametrize(
    "frames",
    [
        [(0x7E8, bytes.fromhex("1014490201314434"))],
        [(0x7E8, bytes.fromhex("1014490201314434")), (0x7E8, bytes.fromhex("2347503030523535"))],
        [(0x7E8, b"")],
        [(0x7E8, "03410D32")],
        [("7E8", b"\x03\x41\x0d\x32")],
        [(0x7E8,)],
        [5],
        5,
    ],
)
def test_decode_can_rejects(build: ModuleType, frames: object) -> None:
    with pytest.raises(ParseError):
        build.decode_can(frames)


# --- API edges ----------------------------------------------------------------------------------------
def test_decode_many(build: ModuleType) -> None:
    assert build.decode_many([b"41 0C 1A F8\r", b"NO DATA\r", bytearray(b"41 0D 32\r")]) == [
        [RPM],
        [],
        [Reading(0, 1, 0x0D, "speed", 50.0, "km/h")],
    ]
    assert build.decode_many([]) == []
    with pytest.raises(ParseError):
        build.decode_many([b"41 0C 1A F8\r", b"41 0C\r"])


class _Bytes(bytes):
    pass


def test_bytes_like_inputs(build: ModuleType) -> None:
    for block in (_Bytes(b"41 0C 1A F8\r"), bytearray(b"41 0C 1A F8\r"), memoryview(b"41 0C 1A F8\r")):
        assert build.decode(block) == [RPM]


@pytest.mark.parametrize("bad", ["41 0C 1A F8", None, 5, ["41"]])
def test_non_bytes_input_raises(build: ModuleType, bad: object) -> None:
    with pytest.raises(ParseError):
        build.decode(bad)
    with pytest.raises(ParseError):
        build.decode_many([bad])


@pytest.mark.parametrize("protocol", [-1, 13, "6", 6.0, None, True])
def test_bad_protocol_raises(build: ModuleType, protocol: object) -> None:
    with pytest.raises(ParseError):
        build.decode(b"41 0D 32\r", False, protocol)
    with pytest.raises(ParseError):
        build.decode_many([], False, protocol)


def test_large_blocks(build: ModuleType) -> None:
    # many lines (the native build leaves its on-stack work area for these)
    block = b"".join(b"7E8 03 41 0D %02X\r" % k for k in range(200))
    readings = build.decode(block, True, 6)
    assert [r.value for r in readings] == [float(k) for k in range(200)]


def test_selected_build_is_one_of_the_two() -> None:
    from gateway.obd import PARSER_BUILD, parser

    assert PARSER_BUILD in ("native", "python")
    assert parser.decode(b"41 0C 1A F8\r") == [RPM]
