"""ELM327 command builders and the answer classifier (sans-I/O): plain bytes in, values out."""

import pytest

from gateway.elm327 import commands as cmd
from gateway.elm327.responses import (
    Kind,
    classify,
    parse_protocol_number,
    parse_version,
    parse_voltage,
    raise_for,
)
from gateway.errors import AdapterReset, BusError, NoDataError, Stopped, UnsupportedCommand


def test_builders() -> None:
    assert cmd.reset() == b"ATZ\r"
    assert cmd.echo(False) == b"ATE0\r"
    assert cmd.set_protocol("auto") == b"ATSP0\r"
    assert cmd.set_protocol("6", auto_fallback=True) == b"ATSPA6\r"
    assert cmd.mode01([0x0C]) == b"010C\r"
    assert cmd.mode01([0x0C, 0x0D, 0x05], count=1) == b"010C0D051\r"
    assert cmd.set_header(0x7E0) == b"ATSH7E0\r"
    assert cmd.set_header(0x18DA10F1, extended=True) == b"ATSHDA10F1\r"
    assert cmd.set_timeout(100) == b"ATST18\r"  # 100 / 4.096 = 24.4 → 0x18
    assert cmd.baud_rate_divisor(115200) == b"ATBRD23\r"  # 4 MHz / 35 = 114286
    assert cmd.read_dtcs(0x0A) == b"0A\r"


@pytest.mark.parametrize("bad", [[], list(range(7))])
def test_mode01_rejects_wrong_pid_counts(bad: list[int]) -> None:
    with pytest.raises(ValueError):
        cmd.mode01(bad)


def test_bad_protocol_and_baud() -> None:
    with pytest.raises(ValueError):
        cmd.set_protocol("D")
    with pytest.raises(ValueError):
        cmd.baud_rate_divisor(9600)


def test_classify_data_strips_echo_and_searching() -> None:
    a = classify(b"010C\rSEARCHING...\r41 0C 1A F8\r\r", b"010C\r")
    assert a.kind is Kind.DATA
    assert a.echo
    assert a.data == b"41 0C 1A F8"


def test_classify_multiframe_lines_are_data() -> None:
    a = classify(b"00F\r0:410C1AF80D32\r1:05640411\r\r", b"010C0D0504111\r")
    assert a.kind is Kind.DATA
    assert a.data == b"00F\r0:410C1AF80D32\r1:05640411"


@pytest.mark.parametrize(
    ("block", "kind", "exc"),
    [
        (b"NO DATA\r", Kind.NO_DATA, NoDataError),
        (b"CAN ERROR\r", Kind.BUS_ERROR, BusError),
        (b"BUFFER FULL\r", Kind.BUS_ERROR, BusError),
        (b"UNABLE TO CONNECT\r", Kind.BUS_ERROR, BusError),
        (b"SEARCHING...\rUNABLE TO CONNECT\r", Kind.BUS_ERROR, BusError),
        (b"ERR94\r", Kind.BUS_ERROR, BusError),
        (b"?\r", Kind.UNKNOWN_COMMAND, UnsupportedCommand),
        (b"41 0C 1A\rSTOPPED\r", Kind.STOPPED, Stopped),
        (b"\r\rELM327 v1.5\r", Kind.RESET, AdapterReset),
    ],
)
def test_classify_errors(block: bytes, kind: Kind, exc: type[Exception]) -> None:
    a = classify(block, b"010C\r")
    assert a.kind is kind
    with pytest.raises(exc):
        raise_for(a)


def test_banner_is_not_a_reset_after_atz_or_ati() -> None:
    assert classify(b"\r\rELM327 v1.5\r", b"ATZ\r").kind is Kind.TEXT
    assert classify(b"ELM327 v2.1\r", b"ATI\r").text == "ELM327 v2.1"


def test_classify_at_answers() -> None:
    assert classify(b"ATE0\rOK\r", b"ATE0\r").kind is Kind.OK
    assert classify(b"12.4V\r", b"ATRV\r").kind is Kind.TEXT
    assert classify(b"\x00\x00OK\r", b"ATL0\r").kind is Kind.OK


def test_noise_is_reported_apart_from_data() -> None:
    a = classify(b"#%&\r410C1AF8\r", b"010C\r")
    assert a.kind is Kind.DATA
    assert a.data == b"410C1AF8"
    assert a.noise == ("#%&",)


def test_parsers_of_text_answers() -> None:
    assert parse_version("ELM327 v1.5") == "1.5"
    assert parse_version("OBDLink MX+ r3.2") == ""
    assert parse_voltage("12.4V") == 12.4
    assert parse_voltage("junk") is None
    assert parse_protocol_number("A6") == ("6", True)
    assert parse_protocol_number("7") == ("7", False)
    assert parse_protocol_number("X") is None
    assert classify(b"", b"010C\r").kind is Kind.EMPTY
