"""The ELM327 interpreter, byte for byte (sans-I/O on the chip, plus the pty where it matters)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim import Simulator, j1979
from firmware_sim.ecu import ENGINE_PIDS
from tests.sim.helpers import Terminal, chip, lines, say

VIN = "JHMCM56557C404453"


def test_reset_banner_and_echo_exactly_like_a_real_chip(sim_pty: str) -> None:
    t = Terminal(sim_pty)
    try:
        assert t.cmd("ATZ") == b"ATZ\r\r\rELM327 v1.5\r\r>"
        assert t.cmd("ATE0") == b"ATE0\rOK\r\r>"
        assert t.cmd("ATI") == b"ELM327 v1.5\r\r>"
        assert t.cmd("AT@1") == b"OBDII to RS232 Interpreter\r\r>"
        assert t.cmd("ATL1") == b"OK\r\n\r\n>"
        assert t.cmd("ATL0") == b"OK\r\r>"
        assert t.cmd("HELLO") == b"?\r\r>"
        assert t.cmd("ATZ") == b"\r\rELM327 v1.5\r\r>"  # echo was off while ATZ was received
        assert t.cmd("ATI") == b"ATI\rELM327 v1.5\r\r>"  # and is back on after the reset
    finally:
        t.close()


def test_search_then_protocol_description(sim: Simulator) -> None:
    elm = chip(sim, "ATSP0")
    assert say(elm, "ATDP") == b"AUTO\r\r>"
    out = lines(say(elm, "0100"))
    assert out[0] == "SEARCHING..."
    assert out[1].startswith("41 00 ")
    assert say(elm, "ATDPN") == b"A6\r\r>"
    assert say(elm, "ATDP") == b"AUTO, ISO 15765-4 (CAN 11/500)\r\r>"
    assert "SEARCHING..." not in lines(say(elm, "0100"))  # only the first request searches


def test_fixed_protocol_does_not_search(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6")
    assert lines(say(elm, "010D")) == ["41 0D 00", "41 0D 00"]
    assert say(elm, "ATDPN") == b"6\r\r>"


def test_spaces_headers_dlc_formatting(sim: Simulator) -> None:
    sim.vehicle.hold(87.0)
    elm = chip(sim, "ATSP6")
    assert say(elm, "010D") == b"41 0D 57 \r41 0D 57 \r\r>"
    say(elm, "ATH1")
    assert say(elm, "010D") == b"7E8 03 41 0D 57 \r7E9 03 41 0D 57 \r\r>"
    say(elm, "ATS0")
    assert say(elm, "010D") == b"7E803410D57\r7E903410D57\r\r>"
    say(elm, "ATD1")
    assert say(elm, "010D") == b"7E8803410D57\r7E9803410D57\r\r>"


def test_multi_frame_both_forms(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6")
    vin_hex = " ".join(f"{b:02X}" for b in VIN.encode())
    out = lines(say(elm, "0902"))
    assert out[0] == "014"
    assert out[1] == "0: 49 02 01 " + vin_hex[:3 * 3 - 1]
    assert out[2].startswith("1: ") and out[3].startswith("2: ")
    data = bytes.fromhex("".join(ln[3:] for ln in out[1:]))[:0x14]
    assert data == b"\x49\x02\x01" + VIN.encode()
    say(elm, "ATH1")
    raw = lines(say(elm, "0902"))
    assert raw[0].startswith("7E8 10 14 49 02 01 ")
    assert [r[:6] for r in raw[1:]] == ["7E8 21", "7E8 22"]


def test_multi_pid_and_response_count(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6", "ATH1")
    out = lines(say(elm, "010C0D05"))
    assert out[0].startswith("7E8 10 08 41 0C ")  # engine: 8 bytes, so multi-frame
    assert out[2] == "7E9 03 41 0D 00"  # the transmission knows only the speed
    assert len(lines(say(elm, "010D1"))) == 1  # the count digit stops after the first answer
    assert len(lines(say(elm, "010D2"))) == 2


def test_supported_pid_masks_match_what_answers(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6", "ATSH7E0")
    answered: set[int] = set()
    block = 0
    while True:
        mask = bytes.fromhex(lines(say(elm, f"01{block:02X}"))[0].replace(" ", ""))[2:]
        bits = int.from_bytes(mask, "big")
        for i in range(1, 0x21):
            if bits >> (32 - i) & 1:
                answered.add(block + i)
        if not bits & 1:
            break
        block += 0x20
    data_pids = {p for p in answered if p not in j1979.SUPPORT_PIDS}
    assert data_pids == set(ENGINE_PIDS)
    for pid in sorted(data_pids):
        out = lines(say(elm, f"01{pid:02X}"))
        assert out != ["NO DATA"], f"PID {pid:02X} advertised but silent"
    assert lines(say(elm, "01FE")) == ["NO DATA"]


def test_values_encode_the_vehicle_state(sim: Simulator) -> None:
    sim.vehicle.hold(100.0)
    elm = chip(sim, "ATSP6", "ATS0", "ATSH7E0")
    st = sim.vehicle.state

    def data(pid: str) -> bytes:
        return bytes.fromhex(lines(say(elm, "01" + pid))[0])[2:]

    a, b = data("0C")
    assert abs((a * 256 + b) / 4 - st.rpm) <= 0.25
    assert data("0D")[0] == 100
    assert data("05")[0] - 40 == round(st.coolant_c)
    m = data("10")
    assert abs((m[0] * 256 + m[1]) / 100 - st.maf_gs) <= 0.01
    assert abs(data("2F")[0] * 100 / 255 - st.fuel_level_pct) <= 0.2
    v = data("42")
    assert abs((v[0] * 256 + v[1]) / 1000 - st.battery_v) <= 0.001


def test_dtcs_mil_freeze_frame_and_clear(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6", "ATSH7E0")
    assert lines(say(elm, "03")) == ["43 00"]
    sim.vehicle.set_dtcs(["P0301", "C0123"], pending=["P0171"])
    assert lines(say(elm, "03")) == ["43 02 03 01 41 23"]
    sim.vehicle.set_dtcs(["P0301", "C0123", "U0100"])
    assert lines(say(elm, "03")) == ["008", "0: 43 03 03 01 41 23", "1: C1 00 00 00 00 00 00"]  # 8 bytes: ISO-TP
    assert lines(say(elm, "07")) == ["47 01 01 71"]
    assert lines(say(elm, "0101"))[0].startswith("41 01 83 ")  # MIL on, 3 codes
    assert lines(say(elm, "020200")) == ["42 02 00 03 01"]
    assert lines(say(elm, "010D"))[0] == lines(say(elm, "020D00"))[0].replace("42 0D 00", "41 0D")
    assert lines(say(elm, "04")) == ["44"]
    assert lines(say(elm, "03")) == ["43 00"]
    assert lines(say(elm, "0101"))[0].startswith("41 01 00 ")
    assert lines(say(elm, "020200")) == ["42 02 00 00 00"]
    assert lines(say(elm, "0A"))[1] == "0: 4A 03 03 01 41 23"  # permanent codes survive mode 04
    assert [e["event"] for e in sim.truth.events() if e["event"].startswith("mil")] == ["mil_on", "mil_off"]


def test_physical_addressing_and_negative_response(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6", "ATH1", "ATSH7E1")
    assert lines(say(elm, "0100"))[0].startswith("7E9 06 41 00 ")
    assert lines(say(elm, "010C")) == ["NO DATA"]
    say(elm, "ATSH7E0")
    assert lines(say(elm, "22F190")) == ["7E8 03 7F 22 11"]
    say(elm, "ATSH7DF")
    assert lines(say(elm, "22F190")) == ["NO DATA"]  # functional: negative answers suppressed


def test_cra_filters_receivers(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6", "ATH1", "ATCRA7E9")
    assert lines(say(elm, "010D")) == ["7E9 03 41 0D 00"]
    say(elm, "ATCRA")
    assert len(lines(say(elm, "010D"))) == 2


def test_caf0_shows_raw_frames(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6", "ATCAF0", "ATSH7E0")
    assert lines(say(elm, "02010D")) == ["03 41 0D 00 00 00 00 00"]


def test_29bit_can(sim_factory: None = None) -> None:
    sim = Simulator(seed=1, fast=True, protocol="7")
    try:
        sim.advance(3)
        elm = chip(sim, "ATSP0", "ATH1")
        out = lines(say(elm, "010D"))
        assert out[1:] == ["18 DA F1 10 03 41 0D 00", "18 DA F1 18 03 41 0D 00"]
        assert say(elm, "ATDPN") == b"A7\r\r>"
    finally:
        sim.stop()


@pytest.mark.parametrize(("protocol", "header", "check"), [
    ("1", "41 6B 10", "crc"), ("2", "48 6B 10", "crc"), ("3", "48 6B 10", "sum"), ("4", "84 F1 10", "sum"),
    ("5", "84 F1 10", "sum"),
])
def test_legacy_protocols_headers(protocol: str, header: str, check: str) -> None:
    from firmware_sim.ecu import crc8_j1850

    sim = Simulator(seed=1, fast=True, protocol=protocol)
    try:
        sim.advance(3)
        elm = chip(sim, f"ATSP{protocol}", "ATH1")
        out = lines(say(elm, "010C"))
        if protocol in "34":
            assert out[0] == "BUS INIT: ...OK"
            out = out[1:]
        elif protocol == "5":
            out = out[1:]
        frame = bytes.fromhex(out[0].replace(" ", ""))
        assert out[0].startswith(header + " 41 0C ")
        expected = crc8_j1850(frame[:-1]) if check == "crc" else sum(frame[:-1]) & 0xFF
        assert frame[-1] == expected
        say(elm, "ATH0")
        vin = lines(say(elm, "0902"))
        assert len(vin) == 5 and vin[0] == "49 02 01 00 00 00 4A"
        assert lines(say(elm, "010C0D")) == ["NO DATA"]  # multi-PID requests are CAN-only
        sim.vehicle.set_dtcs(["P0301", "P0420", "P0171", "B1234"])
        # The transmission answers too, with no codes, between the engine's two messages.
        assert sorted(lines(say(elm, "03"))) == ["43 00 00 00 00 00 00", "43 03 01 04 20 01 71", "43 92 34 00 00 00 00"]
    finally:
        sim.stop()


def test_wrong_protocol_errors(sim: Simulator) -> None:
    assert lines(say(chip(sim, "ATSP8"), "0100")) == ["CAN ERROR"]  # 250 kbit/s on a 500 kbit/s bus
    assert lines(say(chip(sim, "ATSP3"), "0100")) == ["BUS INIT: ...ERROR"]
    assert lines(say(chip(sim, "ATSP1"), "0100")) == ["NO DATA"]


def test_ignition_off(sim: Simulator) -> None:
    sim.vehicle.set_ignition(False)
    assert lines(say(chip(sim), "0100")) == ["SEARCHING...", "UNABLE TO CONNECT"]
    assert lines(say(chip(sim, "ATSP6"), "0100")) == ["NO DATA"]
    assert say(chip(sim), "ATRV") == b"12.3V\r\r>"
    sim.vehicle.set_ignition(True)
    sim.advance(2)
    assert say(chip(sim), "ATRV").startswith(b"14.")


def test_settings_commands_answer_ok_and_bare_cr_repeats(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6")
    for c in ("ATAT0", "ATAT2", "ATST19", "ATCAF1", "ATCFC1", "ATM0", "ATPC", "ATSH7DF", "at sp 6", "ATCSM1",
              "ATAL", "ATFCSH7E0", "ATFCSD300000", "ATFCSM1", "ATBRT19", "ATKW0", "ATIB10", "ATSW00"):
        assert say(elm, c) == b"OK\r\r>", c
    assert say(elm, "ATXYZ") == b"?\r\r>"
    say(elm, "ATE0")
    first = say(elm, "010D")
    assert say(elm, "") == first  # a bare CR repeats the last OBD command
    assert say(elm, "0") == b"?\r\r>" or say(elm, "0").endswith(b">")


def test_at_d_restores_power_up_defaults(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6", "ATH1", "ATS0", "ATTP7")
    assert say(elm, "ATD") == b"\rOK\r\r>"  # a blank line first, as real chips print it
    assert say(elm, "ATI") == b"ATI\rELM327 v1.5\r\r>"  # echo on again
    assert say(elm, "ATDPN") == b"ATDPN\r6\r\r>"  # the protocol stored by ATSP, not the ATTP one


# A fuzz test of the simulator itself: random hex lines are random services by design.
@pytest.mark.sim_audit_allow(*range(256))
@settings(max_examples=300, deadline=None)
@given(line=st.binary(max_size=40) | st.text(alphabet="0123456789ABCDEFatATSPHLEZ @", max_size=20).map(str.encode))
def test_any_input_gets_a_well_formed_reply(line: bytes) -> None:
    sim = _FUZZ_SIM
    elm = sim.new_elm()
    elm.execute(b"ATE0")
    reply = elm.execute(line.replace(b"\r", b""))
    if reply.monitor is None and reply.brd_baud is None:
        assert reply.data().endswith(b">")
    assert all(c.at >= 0 for c in reply.chunks)


_FUZZ_SIM = Simulator(seed=1, fast=True, clock="manual")
_FUZZ_SIM.advance(3)


def test_chip_version_string_is_configurable() -> None:
    sim = Simulator(seed=1, fast=True, clock="manual", elm_version="ELM327 v2.1")
    elm = sim.new_elm()
    assert say(elm, "ATZ") == b"ATZ\r\r\rELM327 v2.1\r\r>"
    assert say(elm, "ATI") == b"ATI\rELM327 v2.1\r\r>"


def test_cfc0_leaves_the_ecu_waiting_after_its_first_frame(sim: Simulator) -> None:
    elm = chip(sim, "ATSP6", "ATSH7E0", "ATCFC0")
    assert lines(say(elm, "0902")) == ["014", "0: 49 02 01 4A 48 4D"]
    say(elm, "ATH1")
    assert lines(say(elm, "0902")) == ["7E8 10 14 49 02 01 4A 48 4D"]
    say(elm, "ATCFC1")
    assert len(lines(say(elm, "0902"))) == 3



def test_auto_forms_atspa_and_attpa() -> None:
    timed = Simulator(seed=1, fast=False)  # sans-I/O: each reply carries its timing
    timed.advance(3)
    try:
        # ATSPA6: automatic, but the search tries 6 first: found at once, ATDPN says A6
        elm = timed.new_elm()
        say(elm, "ATE0")
        assert lines(say(elm, "ATSPA6")) == ["OK"]
        reply = elm.execute(b"0100")
        out = lines(reply.data())
        assert out[0] == "SEARCHING..." and out[1].startswith("41 00 ")
        assert reply.ended_at < 0.4  # one protocol tried (0.12 s), not the whole 1..6 search
        assert lines(say(elm, "ATDPN")) == ["A6"]
        assert lines(say(elm, "ATDP")) == ["AUTO, ISO 15765-4 (CAN 11/500)"]
        # ATSP0 on a fresh chip searches from protocol 1: seconds (slow inits on 3 and 4)
        fresh = timed.new_elm()
        for c in ("ATE0", "ATM0", "ATSP0"):
            say(fresh, c)
        assert fresh.execute(b"0100").ended_at > 5.0
        # ATSPA7 on a CAN 11/500 car: 7 first, then the others; still finds 6, as automatic
        elm7 = timed.new_elm()
        for c in ("ATE0", "ATSPA7"):
            say(elm7, c)
        assert lines(say(elm7, "0100"))[1].startswith("41 00 ")
        assert lines(say(elm7, "ATDPN")) == ["A6"]
        # SP stores the setting (it survives ATZ), TP only tries it
        say(elm7, "ATZ")
        say(elm7, "ATE0")
        assert lines(say(elm7, "ATDPN")) == ["A7"]
        tp = timed.new_elm()
        for c in ("ATE0", "ATTPA8", "ATZ", "ATE0"):
            say(tp, c)
        assert lines(say(tp, "ATDPN")) != ["A8"]
        assert lines(say(timed.new_elm(), "ATSPAD")) == ["ATSPAD", "?"]  # there is no protocol D
    finally:
        timed.stop()
