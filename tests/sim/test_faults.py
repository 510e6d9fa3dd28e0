"""Every switchable fault, seen by a host on the pty or by the chip (sans-I/O)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import serial

from firmware_sim import FAULTS, Simulator
from tests.sim.helpers import Terminal, chip, lines, say


@pytest.fixture
def term(sim_pty: str) -> Iterator[Terminal]:
    t = Terminal(sim_pty, timeout=1)
    t.cmd("ATE0")
    t.cmd("ATSP6")
    yield t
    t.close()


@pytest.mark.parametrize(("fault", "expected"), [
    ("no_data", ["NO DATA"]),
    ("can_error", ["CAN ERROR"]),
    ("buffer_full", ["BUFFER FULL"]),
    ("stopped", ["STOPPED"]),
    ("unable_to_connect", ["UNABLE TO CONNECT"]),
])
def test_error_faults(sim: Simulator, term: Terminal, fault: str, expected: list[str]) -> None:
    sim.faults.set(fault, True)
    assert lines(term.cmd("010C")) == expected
    assert term.cmd("ATI") == b"ELM327 v1.5\r\r>"  # AT commands are unaffected
    sim.faults.set(fault, False)
    assert lines(term.cmd("010C"))[0].startswith("41 0C ")


def test_searching_fault_searches_again(sim: Simulator) -> None:
    elm = chip(sim)
    say(elm, "0100")
    assert lines(say(elm, "010D"))[0] == "41 0D 00"
    sim.faults.searching = True
    assert lines(say(elm, "010D"))[0] == "SEARCHING..."
    sim.faults.unable_to_connect = True
    assert lines(say(elm, "010D")) == ["SEARCHING...", "UNABLE TO CONNECT"]
    sim.faults.clear()
    assert lines(say(elm, "010D"))[0] == "SEARCHING..."  # the protocol was lost; found again
    assert lines(say(elm, "010D"))[0] == "41 0D 00"


def test_noise_inserts_garbage(sim: Simulator, term: Terminal) -> None:
    clean = term.cmd("0100")
    sim.faults.set("noise", True)
    noisy = term.cmd("0100")
    assert noisy != clean and len(noisy) > len(clean)


def test_drop_bytes_loses_output(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6")
    clean = say(elm, "0902")
    sim.faults.set("drop_bytes", True, rate=0.3)
    lossy = say(elm, "0902")
    assert len(lossy) < len(clean)


def test_truncate_never_prints_the_prompt(sim: Simulator, term: Terminal) -> None:
    sim.faults.set("truncate", True)
    out = term.cmd("0902")  # times out after 1 s without a prompt
    assert not out.endswith(b">")
    sim.faults.set("truncate", False)
    term.port.reset_input_buffer()
    assert term.cmd("ATI").endswith(b"ELM327 v1.5\r\r>")


def test_spontaneous_reset_restores_defaults(sim: Simulator, term: Terminal) -> None:
    sim.faults.set("reset", True)
    assert term.cmd("010C") == b"\r\rELM327 v1.5\r\r>"
    sim.faults.set("reset", False)
    assert term.cmd("ATI") == b"ATI\rELM327 v1.5\r\r>"  # echo is back on, as after any reset


def test_erratic_latency(sim: Simulator) -> None:
    timed = Simulator(seed=3, fast=False, clock="manual")
    timed.advance(3)
    try:
        elm = chip(timed, "ATSP6")
        base = [elm.execute(b"010C1").ended_at for _ in range(5)]
        timed.faults.set("latency", True)
        timed.faults.extra_latency = 0.15
        slow = [elm.execute(b"010C1").ended_at for _ in range(20)]
        assert max(slow) > max(base) + 0.02
        assert max(slow) <= max(base) + 0.15 + 0.005
    finally:
        timed.stop()


def test_rate_makes_faults_intermittent(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6")
    sim.faults.set("no_data", True, rate=0.5)
    results = [lines(say(elm, "010C"))[0] for _ in range(40)]
    assert 5 < results.count("NO DATA") < 35


def test_hit_counters_count_strikes_only(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6")
    say(elm, "0100")
    assert sim.faults.hit_counts() == {}
    sim.faults.set("no_data", True, rate=0.5)
    results = [lines(say(elm, "010C"))[0] for _ in range(40)]
    assert sim.faults.hits("no_data") == results.count("NO DATA") > 0
    sim.faults.clear()  # switching off keeps the record of what happened
    say(elm, "010C")
    assert sim.faults.hit_counts() == {"no_data": results.count("NO DATA")}
    clean = say(elm, "0902")
    sim.faults.set("drop_bytes", True, rate=0.2)
    lossy = say(elm, "0902")
    assert sim.faults.hits("drop_bytes") == len(clean) - len(lossy) > 0  # one hit per dropped byte
    assert sim.command({"state": True})["fault_hits"]["drop_bytes"] == len(clean) - len(lossy)
    sim.faults.reset_hits()
    assert sim.faults.hit_counts() == {} and sim.faults.hits("noise") == 0
    with pytest.raises(KeyError, match="unknown fault"):
        sim.faults.hits("gremlins")


def test_fault_names_and_errors(sim: Simulator) -> None:
    assert set(FAULTS) >= {"no_data", "unable_to_connect", "can_error", "buffer_full", "stopped", "noise",
                           "drop_bytes", "truncate", "reset", "latency", "searching"}
    with pytest.raises(KeyError, match="unknown fault"):
        sim.faults.set("gremlins", True)
    with pytest.raises(ValueError, match="rate"):
        sim.faults.set("noise", True, rate=2)
    sim.faults.noise = True
    assert sim.faults.active() == {"noise": 1.0}


def test_vanishing_adapter_is_visible_to_pyserial(sim: Simulator) -> None:
    server = sim.serve_pty()
    port = serial.Serial(server.path, 38400, timeout=1)
    sim.close_port()
    with pytest.raises(serial.SerialException):
        port.write(b"ATI\r")
        port.read(10)
    port.close()
    sim.reopen_port()
    port = serial.Serial(server.path, 38400, timeout=1)
    port.write(b"ATI\r")
    assert port.read_until(b">") == b"ATI\rELM327 v1.5\r\r>"
    port.close()
