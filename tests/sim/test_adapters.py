"""The adapter zoo (firmware_sim.adapters): each personality's traits on the exact lines, the ceilings,
and the read-only audit (in-process and from an obd-gateway-sim subprocess)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim import Simulator, audit
from firmware_sim.adapters import PERSONALITIES, ceiling, personality
from firmware_sim.elm327 import Elm327
from tests.fixtures.sim import SimCli
from tests.sim.helpers import Terminal

SIX = "010D0C04050F11"  # six PIDs, the request of issue #12 failure 2 (+ "1" for the count digit)


@pytest.fixture
def zoo() -> Iterator[dict[str, Simulator]]:
    sims = {name: Simulator(seed=1, fast=True, clock="manual", adapter=name) for name in PERSONALITIES}
    for s in sims.values():
        s.advance(3)
    yield sims
    for s in sims.values():
        s.stop()


def _chip(sim: Simulator, *commands: str) -> Elm327:
    elm = sim.new_elm()
    for c in ("ATE0", "ATSP6", *commands):
        elm.execute(c.encode())
    return elm


def _say(elm: Elm327, line: str) -> bytes:
    return elm.execute(line.encode()).data()


def test_genuine_is_the_default_and_unchanged(zoo: dict[str, Simulator]) -> None:
    assert Simulator(fast=True).adapter is PERSONALITIES["genuine"]
    elm = _chip(zoo["genuine"])
    assert _say(elm, "ATI") == b"ELM327 v1.5\r\r>"
    out = _say(elm, SIX + "1")
    assert out.startswith(b"00E\r0: 41 0D ") and out.endswith(b"\r\r>")  # six PIDs, one ECU, count honoured
    assert _say(elm, "010C1").startswith(b"41 0C ")
    assert _say(elm, "ATBRD45") == b"OK\r"  # the handshake follows on a port


def test_clone_3pid_accepts_exactly_the_forms_of_issue_12(zoo: dict[str, Simulator]) -> None:
    elm = _chip(zoo["clone-3pid"], "ATS0")
    assert b"0:410C" in _say(elm, "010C0D05")  # 3 PIDs without the count digit (multi-frame answer)
    assert _say(elm, "010C1").startswith(b"410C")  # 1 PID with it
    for line in ("010C0D1", SIX, SIX + "1", "010C0D0504"):  # count with 2+ PIDs, 6 PIDs, 4 PIDs
        assert _say(elm, line) == b"?\r\r>", line


def test_clone_v15_one_pid_count_ignored_missing_at_and_sticky_echo(zoo: dict[str, Simulator]) -> None:
    elm = zoo["clone-v15"].new_elm()
    assert _say(elm, "ATE0") == b"ATE0\rOK\r\r>"
    assert _say(elm, "ATS0") == b"ATS0\rOK\r\r>"  # ATE0 said OK, the echo stays on
    for cmd in ("ATSPA6", "ATBRD45", "ATLP", "ATAT1"):
        assert _say(elm, cmd) == cmd.encode() + b"\r?\r\r>"
    assert _say(elm, "010C0D") == b"010C0D\r?\r\r>"  # no multi-PID
    _say(elm, "0100")
    count = elm.execute(b"010C1")  # accepted but ignored: the chip waits as without it
    assert count.data().startswith(b"010C1\r410C")
    plain = Simulator(seed=1, fast=False, clock="manual", adapter="clone-v15")
    plain.advance(3)
    try:
        slow = _chip(plain, "0100")
        genuine = Simulator(seed=1, fast=False, clock="manual")
        genuine.advance(3)
        ref = _chip(genuine, "0100")
        # genuine: the count digit ends the exchange at the answer; the clone still waits the adaptive time
        assert slow.execute(b"010C1").ended_at > ref.execute(b"010C1").ended_at + 0.02
        genuine.stop()
    finally:
        plain.stop()


def test_clone_v21_crlf_no_blank_line_lowercase_and_count_rejected(zoo: dict[str, Simulator]) -> None:
    elm = zoo["clone-v21"].new_elm()
    assert _say(elm, "ATZ") == b"ATZ\rELM327 v2.1\r\n>"  # ELMduino #241
    assert _say(elm, "ATE0") == b"ATE0\rOK\r\n>"
    _say(elm, "ATS0")
    out = _say(elm, "010C0D")
    assert out.startswith(b"SEARCHING...\r\n410c") and out.endswith(b"\r\n>")
    assert b"\r\n\r\n" not in out
    assert any(ch in out for ch in b"abcdef") and not any(ch in out.split(b"\r\n", 1)[1] for ch in b"ABCDEF")
    assert _say(elm, "010C1") == b"?\r\n>"  # ELMduino #254
    assert _say(elm, "010C0D0504") == b"?\r\n>"  # 3 PIDs at most


def test_stn_identifies_itself_and_switches_baud_with_stsbr(zoo: dict[str, Simulator]) -> None:
    sim = zoo["stn"]
    assert sim.timing.baud == 115200  # OBDLink SX power-up rate
    elm = _chip(sim)
    assert _say(elm, "STI") == b"STN1130 v4.0.1\r\r>"
    assert _say(elm, "STDI") == b"OBDLink SX r4.2\r\r>"
    assert _say(elm, "STXYZ") == b"?\r\r>"
    reply = elm.execute(b"STSBR 500000")
    assert reply.data() == b"OK\r\r>" and reply.after_baud == 500000
    assert elm.execute(b"STSBR 1200").data() == b"?\r\r>"  # out of range
    assert _say(zoo["genuine"].new_elm(), "STI") == b"STI\r?\r\r>"  # a genuine ELM327 has no ST commands


def test_stsbr_switches_the_served_uart() -> None:
    sim = Simulator(seed=1, fast=True, adapter="stn")
    sim.advance(3)
    try:
        server = sim.serve_pty()
        t = Terminal(server.path)
        try:
            assert t.cmd("STSBR 230400").endswith(b"OK\r\r>")
            assert t.cmd("ATI").endswith(b"ELM327 v1.3a\r\r>")
            assert server.elm.baud == 230400
        finally:
            t.close()
    finally:
        sim.stop()


def test_bridge_latency_is_added_per_exchange() -> None:
    wifi = Simulator(seed=1, fast=False, clock="manual", adapter="wifi-clone")
    plain = Simulator(seed=1, fast=False, clock="manual", adapter="clone-v15")
    try:
        a, b = wifi.new_elm(), plain.new_elm()
        assert a.execute(b"ATI").ended_at == pytest.approx(b.execute(b"ATI").ended_at + 0.020)
    finally:
        wifi.stop()
        plain.stop()


def test_ceilings_follow_each_personalitys_constraints() -> None:
    pids = [0x0C, 0x0D, 0x05, 0x04, 0x10, 0x11]
    got = {name: ceiling(p, pids) for name, p in PERSONALITIES.items()}
    assert (got["genuine"].pids_per_request, got["genuine"].count_digit) == (6, True)
    assert got["genuine"].values_per_s == pytest.approx(179.2, abs=0.5)  # docs: ≈179 PIDs/s at 38400
    assert got["clone-v15"].pids_per_request == 1 and not got["clone-v15"].count_digit
    assert got["clone-v21"].pids_per_request <= 3 and not got["clone-v21"].count_digit
    assert got["clone-3pid"].pids_per_request in {1, 3}
    assert got["stn"].values_per_s > got["genuine"].values_per_s  # 115200 baud
    assert got["wifi-clone"].values_per_s < got["clone-v15"].values_per_s  # same chip, + bridge latency
    assert got["ble-clone"].values_per_s < got["clone-v21"].values_per_s


def test_unknown_adapter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown adapter 'nope'; known: genuine"):
        personality("nope")


# --------------------------------------------------------------------------- read-only audit

@pytest.mark.sim_audit_allow(0x10)
def test_audit_records_a_non_read_service_in_process(sim: Simulator) -> None:
    elm = sim.new_elm()
    elm.execute(b"ATE0")
    elm.execute(b"10 03")  # DiagnosticSessionControl: never from the gateway
    elm.execute(b"010C")
    assert [(r.line, r.service, r.via) for r in sim.nonread] == [("1003", 0x10, "elm327")]
    assert [(r.line, r.service) for r in audit.records()] == [("1003", 0x10)]
    assert [r.line for r in audit.violations(audit.records())] == ["1003"]


def test_audit_keeps_mode_04_for_its_own_tests(sim: Simulator) -> None:
    elm = sim.new_elm()
    elm.execute(b"04")
    assert [r.service for r in sim.nonread] == [0x04]
    assert audit.violations(audit.records()) == []  # only the clear tests judge a 04


def test_audit_service_parsing() -> None:
    assert audit.service_of_line("1011") == 0x10  # STOPPED ate the "0" of "01011"
    assert audit.service_of_line("10C0D1") == 0x10
    assert audit.service_of_line("010C1") == 0x01
    assert audit.service_of_line("0201", caf=False) == 0x01  # ATCAF0: PCI first
    assert audit.service_of_line("ATZ") is None


@pytest.mark.sim_audit_allow(0x10, 0x27)
def test_audit_from_a_subprocess_simulator_lands_in_the_audit_dir(sim_cli: SimCli, sim_audit: Path) -> None:
    _, path = sim_cli("--fast")
    t = Terminal(path)
    try:
        t.cmd("ATE0")
        t.cmd("1003")
        t.cmd("2701")  # SecurityAccess
    finally:
        t.close()
    deadline = time.monotonic() + 5
    while not (recs := audit.read_dir(sim_audit)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(r.line, r.service) for r in recs] == [("1003", 0x10), ("2701", 0x27)]
    assert all(r.pid != __import__("os").getpid() for r in recs)
