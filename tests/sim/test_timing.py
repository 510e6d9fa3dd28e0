"""The timing model's arithmetic, and that the chip schedules its replies exactly by it (no wall clock)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_sim import Simulator
from firmware_sim.timing import TimingModel, brd_baud, serial_time, single_pid_round_trip


def test_serial_time_is_ten_bits_per_byte() -> None:
    assert serial_time(384, 38400) == pytest.approx(0.1)
    assert serial_time(1, 9600) == pytest.approx(1 / 960)
    with pytest.raises(ValueError):
        serial_time(1, 0)


def test_brd_divisor() -> None:
    assert brd_baud(0x45) == 57971
    assert brd_baud(0x23) == 114286
    with pytest.raises(ValueError):
        brd_baud(0x02)


def test_wait_after_last_answer() -> None:
    m = TimingModel()
    assert m.st_timeout == pytest.approx(0.2048)
    assert m.wait_after_last() == pytest.approx(0.015 * 2 + 0.010)  # AT1
    assert m.with_(adaptive=2).wait_after_last() == pytest.approx(0.015 * 1.25 + 0.004)
    assert m.with_(adaptive=0).wait_after_last() == pytest.approx(0.2048)
    assert m.with_(st=0x05).wait_after_last() == pytest.approx(5 * 0.004096)  # never longer than ST


def test_exchange_duration_terms() -> None:
    m = TimingModel()
    t_in, t_out, t_p = serial_time(5, 38400), serial_time(13, 38400), serial_time(2, 38400)
    assert m.exchange_duration(5, 13) == pytest.approx(t_in + 0.015 + 0.040 + t_p)
    assert m.exchange_duration(5, 13, count_satisfied=True) == pytest.approx(t_in + 0.015 + t_out + t_p)
    assert m.exchange_duration(5, 10, answers=0) == pytest.approx(t_in + 0.2048 + serial_time(10, 38400) + t_p)
    slow = TimingModel(baud=9600)
    assert slow.exchange_duration(5, 13, count_satisfied=True) > m.exchange_duration(5, 13, count_satisfied=True)
    assert single_pid_round_trip() == pytest.approx(t_in + 0.055 + t_p)


@pytest.fixture
def timed_sim() -> Iterator[Simulator]:
    s = Simulator(seed=1, fast=False, clock="manual", timing=TimingModel(jitter=0.0))
    s.advance(3)
    yield s
    s.stop()


@pytest.mark.parametrize(("setup", "command", "count"), [
    (("ATE0",), "010C", False),
    (("ATE0",), "010C1", True),
    (("ATE0", "ATAT0"), "010C", False),
    (("ATE0", "ATAT2", "ATH1"), "010C", False),
    (("ATE0", "ATL1", "ATS0"), "010C1", True),
])
def test_chip_schedule_equals_model(timed_sim: Simulator, setup: tuple[str, ...], command: str, count: bool) -> None:
    elm = timed_sim.new_elm()
    for c in (*setup, "ATSP6"):
        elm.execute(c.encode())
    reply = elm.execute(command.encode())
    out = reply.data()
    eol = 2 if b"\r\n" in out else 1
    body = len(out) - eol - 1
    expected = elm.timing.exchange_duration(len(command) + 1, body, prompt_bytes=eol + 1, count_satisfied=count)
    assert reply.ended_at == pytest.approx(expected, abs=1e-9)


def test_no_data_waits_full_st(timed_sim: Simulator) -> None:
    elm = timed_sim.new_elm()
    for c in ("ATE0", "ATSP6"):
        elm.execute(c.encode())
    reply = elm.execute(b"01FE")
    assert reply.data() == b"NO DATA\r\r>"
    assert reply.ended_at == pytest.approx(elm.timing.exchange_duration(5, 8, answers=0), abs=1e-9)


def test_search_takes_the_protocol_attempts(timed_sim: Simulator) -> None:
    elm = timed_sim.new_elm()
    elm.execute(b"ATE0")
    reply = elm.execute(b"0100")
    assert reply.data().startswith(b"SEARCHING...\r")
    assert reply.ended_at > 0.3 + 0.3 + 2.5 + 2.5 + 0.4  # J1850 ×2, two slow inits and KWP fast before CAN
    elm.execute(b"ATZ")
    again = elm.execute(b"0100")  # memory: the last good protocol is tried first after a reset
    assert again.ended_at < 0.5


def test_baud_rate_scales_serial_time(timed_sim: Simulator) -> None:
    slow_sim = Simulator(seed=1, clock="manual", timing=TimingModel(baud=9600, jitter=0.0))
    slow_sim.advance(3)
    fast_link, slow_link = timed_sim.new_elm(), slow_sim.new_elm()
    for elm in (fast_link, slow_link):
        elm.execute(b"ATE0")
        elm.execute(b"ATSP6")
    a, b = fast_link.execute(b"09021"), slow_link.execute(b"09021")
    assert a.data() == b.data()
    # The multi-frame VIN is UART-bound at 9600 baud: the whole difference is serial time, both ways.
    nbytes = len(a.data()) + 6
    assert b.ended_at - a.ended_at == pytest.approx(serial_time(nbytes, 9600) - serial_time(nbytes, 38400), rel=0.1)
    slow_sim.stop()


@pytest.mark.parametrize("setup", [(), ("ATS0",), ("ATH1",), ("ATH1", "ATS0"), ("ATH1", "ATD1"), ("ATL1",)])
@pytest.mark.parametrize("command", ["010C", "0902", "010C0D", "010C0D05101104"])
def test_answer_bytes_matches_the_chip(sim: Simulator, setup: tuple[str, ...], command: str) -> None:
    from firmware_sim.timing import answer_bytes

    elm = sim.new_elm()
    for c in ("ATE0", "ATSP6", "ATSH7E0", *setup):
        elm.execute(c.encode())
    out = elm.execute(command.encode()).data()
    eol = 2 if "ATL1" in setup else 1
    body = len(out) - eol - 1
    ecu = sim.ecus[0]
    message = ecu.handle(sim.vehicle, bytes.fromhex(command))[0]
    assert answer_bytes(len(message), headers="ATH1" in setup, spaces="ATS0" not in setup,
                        linefeeds="ATL1" in setup, dlc="ATD1" in setup) == body


def test_max_pid_rate() -> None:
    from firmware_sim.timing import max_pid_rate

    best = max_pid_rate()
    assert 6 / best == pytest.approx(TimingModel().exchange_duration(
        16, 4 + 15 + 17 + 17, prompt_bytes=2, count_satisfied=True))  # "010C…1\r"; 19-byte answer: 3 frames
    assert max_pid_rate(pids_per_request=1) < best
    assert max_pid_rate(count_digit=False) < best
