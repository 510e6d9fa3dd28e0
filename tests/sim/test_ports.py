"""Serving on real ports: pty (STOPPED, vanishing adapter, ATMA, ATBRD) and TCP."""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Iterator

import pytest
import serial

from firmware_sim import Simulator
from firmware_sim.timing import TimingModel
from tests.sim.helpers import Terminal


@pytest.fixture
def real_time_sim() -> Iterator[Simulator]:
    s = Simulator(seed=1, fast=False, timing=TimingModel(jitter=0.0))
    s.advance(3)
    yield s
    s.stop()


def test_input_while_answering_prints_stopped(real_time_sim: Simulator) -> None:
    with real_time_sim.serve_pty() as path:
        t = Terminal(path)
        try:
            t.cmd("ATE0")
            t.cmd("ATSP6")
            t.port.write(b"0100\r")
            time.sleep(0.005)  # the chip is still listening for answers (ECU latency 15 ms + wait 40 ms)
            t.port.write(b"X")
            assert t.port.read_until(b">") .endswith(b"STOPPED\r\r>")
            assert t.cmd("ATI") == b"ELM327 v1.5\r\r>"  # the interrupting byte was swallowed
        finally:
            t.close()


def _read_prompts(t: Terminal, n: int) -> bytes:
    out = b""
    for _ in range(n):
        out += t.port.read_until(b">")
    return out


# Deliberately writes two requests at once: the genuine chip's STOPPED turns the second into "10D1"
# (service 0x10), which is what this test checks; the read-only audit would (rightly) flag it.
@pytest.mark.sim_audit_allow(0x10)
@pytest.mark.parametrize("fast", [True, False])
def test_requests_written_together_stop_a_genuine_chip(fast: bool) -> None:
    # The second request's first byte reaches the chip ~0.26 ms after the first CR: the chip is still
    # processing, so it prints STOPPED (datasheet), swallows that byte and runs the rest ("10D1").
    sim = Simulator(seed=1, fast=fast, timing=TimingModel(jitter=0.0))
    sim.advance(3)
    try:
        with sim.serve_pty() as path:
            t = Terminal(path)
            try:
                t.cmd("ATE0")
                t.cmd("ATSP6")
                t.cmd("0100")
                t.port.write(b"010C1\r010D1\r")
                out = _read_prompts(t, 2)
                first, second = out.split(b">")[:2]
                assert first == b"STOPPED\r\r"
                assert b"41 0D" not in second and b"41 0C" not in out  # neither request was answered
                assert t.cmd("010D1").startswith(b"41 0D ")  # one at a time it answers
            finally:
                t.close()
    finally:
        sim.stop()


@pytest.mark.parametrize("fast", [True, False])
def test_pipelining_variant_answers_lines_in_order(fast: bool) -> None:
    sim = Simulator(seed=1, fast=fast, timing=TimingModel(jitter=0.0), pipelining=True)
    sim.advance(3)
    try:
        with sim.serve_pty() as path:
            t = Terminal(path)
            try:
                t.cmd("ATE0")
                t.cmd("ATSP6")
                t.cmd("0100")
                t.port.write(b"010C1\r010D1\r010C1\r")
                answers = _read_prompts(t, 3).split(b">")[:3]
                assert [a[:5] for a in answers] == [b"41 0C", b"41 0D", b"41 0C"]
                assert b"STOPPED" not in b"".join(answers)
            finally:
                t.close()
    finally:
        sim.stop()


def test_adapter_vanishes_and_comes_back_at_the_same_path(sim: Simulator) -> None:
    server = sim.serve_pty()
    path = server.path
    t = Terminal(path, timeout=1)
    t.cmd("ATE0")
    first_device = server.device
    sim.close_port()
    assert not os.path.exists(path)  # the symlink dangles: opening fails like an unplugged USB adapter
    with pytest.raises(serial.SerialException):
        serial.Serial(path, 38400)
    with pytest.raises(serial.SerialException):
        t.port.write(b"ATI\r")
        t.port.read(1)
        t.port.read(1)
    t.close()
    sim.reopen_port()
    assert os.path.islink(path) and os.path.exists(path)
    assert os.readlink(path) == server.device
    t2 = Terminal(path)
    try:
        assert t2.cmd("ATI") == b"ATI\rELM327 v1.5\r\r>"  # freshly powered: echo back on
        assert first_device  # (the pty behind it may or may not be a new number)
    finally:
        t2.close()
        server.stop()


def test_monitor_all_streams_until_a_byte_arrives(sim: Simulator, sim_pty: str) -> None:
    t = Terminal(sim_pty)
    try:
        t.cmd("ATE0")
        t.cmd("ATH1")
        t.cmd("ATSP6")
        t.port.write(b"ATMA\r")
        time.sleep(0.4)
        t.port.write(b"\r")
        out = t.port.read_until(b">")
        lines = out.decode().split("\r")
        assert any(ln.startswith("130 ") for ln in lines)
        assert any(ln.startswith("1A0 ") for ln in lines)
        assert out.endswith(b"STOPPED\r\r>")
        assert t.cmd("ATI") == b"ELM327 v1.5\r\r>"
    finally:
        t.close()


def test_monitor_overflows_at_a_slow_baud_rate() -> None:
    sim = Simulator(seed=1, fast=False, baud=9600)
    sim.advance(3)
    try:
        with sim.serve_pty() as path:
            t = Terminal(path, timeout=5)
            t.cmd("ATE0")
            t.cmd("ATH1")
            t.port.write(b"ATMA\r")
            out = t.port.read_until(b">")
            assert out.endswith(b"BUFFER FULL\r\r>")
            t.close()
    finally:
        sim.stop()


def test_brd_handshake_accepted_and_refused(real_time_sim: Simulator) -> None:
    server = real_time_sim.serve_pty()
    t = Terminal(server.path)
    try:
        t.cmd("ATE0")
        t.port.write(b"ATBRD23\r")
        assert t.port.read_until(b"\r") == b"OK\r"
        assert t.port.read_until(b"\r") == b"ELM327 v1.5\r"
        t.port.write(b"\r")
        assert t.port.read_until(b">") == b"OK\r\r>"
        assert server.elm.baud == 114286
        t.port.write(b"ATBRD45\r")
        assert t.port.read_until(b"\r") == b"OK\r"
        assert t.port.read_until(b"\r") == b"ELM327 v1.5\r"
        assert t.port.read_until(b">") == b"\r>"  # no CR from the host: back to the old rate
        assert server.elm.baud == 114286
    finally:
        t.close()
        server.stop()


def test_tcp_adapter(sim: Simulator) -> None:
    server = sim.serve_tcp(port=0)
    try:
        assert server.address == f"tcp:127.0.0.1:{server.port}"
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as c:
            c.sendall(b"ATE0\r")
            buf = b""
            while not buf.endswith(b">"):
                buf += c.recv(100)
            assert buf == b"ATE0\rOK\r\r>"
            c.sendall(b"ATSP6\r010D\r")  # pipelined: the second line waits until the first is answered
            buf = b""
            while buf.count(b">") < 2:
                buf += c.recv(100)
            assert buf == b"OK\r\r>41 0D 00 \r41 0D 00 \r\r>"
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as c:  # settings survive reconnects
            c.sendall(b"ATI\r")
            buf = b""
            while not buf.endswith(b">"):
                buf += c.recv(100)
            assert buf == b"ELM327 v1.5\r\r>"
    finally:
        server.stop()


def test_monitor_searches_first_when_no_protocol(sim: Simulator) -> None:
    from tests.sim.helpers import chip

    elm = chip(sim)
    reply = elm.execute(b"ATMA")
    assert reply.monitor is not None and reply.data() == b"SEARCHING...\r"
    sim.vehicle.set_ignition(False)
    off = chip(sim).execute(b"ATMA")
    assert off.monitor is None and off.data() == b"SEARCHING...\rUNABLE TO CONNECT\r\r>"


def test_warm_start_keeps_the_brd_baud_rate(sim: Simulator) -> None:
    from tests.sim.helpers import chip

    elm = chip(sim)
    elm.baud = 115200  # as after an accepted ATBRD
    elm.execute(b"ATWS")
    assert elm.baud == 115200
    elm.execute(b"ATZ")
    assert elm.baud == 38400


def test_strict_baud_garbles_a_mismatched_host_and_follows_brd() -> None:
    sim = Simulator(seed=1, fast=True, strict_baud=True)
    sim.advance(3)
    try:
        with sim.serve_pty() as path:
            port = serial.Serial(path, 9600, timeout=0.3)
            port.write(b"ATI\r")
            junk = port.read(100)
            assert junk and b"ELM327" not in junk and b">" not in junk
            port.baudrate = 38400
            port.reset_input_buffer()
            port.write(b"ATE0\r")
            assert port.read_until(b">") == b"ATE0\rOK\r\r>"
            port.write(b"ATBRD45\r")  # 57971 baud: a host at 57600 is within tolerance
            assert port.read_until(b"\r") == b"OK\r"
            port.baudrate = 57600
            assert port.read_until(b"\r") == b"ELM327 v1.5\r"
            port.write(b"\r")
            assert port.read_until(b">") == b"OK\r\r>"
            port.write(b"ATI\r")
            assert port.read_until(b">") == b"ELM327 v1.5\r\r>"
            port.close()
    finally:
        sim.stop()


# python-OBD (a third-party client, not the gateway) probes mode 06 ("0600") when it connects with
# fast=False: a read service in SAE J1979, but outside the gateway's allowed set; allowed here only.
@pytest.mark.sim_audit_allow(0x06)
def test_python_obd_finds_the_baud_rate_itself() -> None:
    import obd

    sim = Simulator(seed=1, fast=True, strict_baud=True, baud=115200)
    sim.advance(3)
    try:
        with sim.serve_pty() as path:  # not under /dev/pts: python-OBD probes 38400, 9600, 230400, 115200
            c = obd.OBD(path, fast=False, timeout=0.5)
            try:
                assert c.status() == obd.OBDStatus.CAR_CONNECTED
                assert c.interface._ELM327__port.baudrate == 115200
            finally:
                c.close()
    finally:
        sim.stop()


def test_monitor_on_a_29bit_car_shows_29bit_identifiers() -> None:
    from tests.sim.helpers import chip

    sim = Simulator(seed=1, fast=True, clock="manual", protocol="7")
    sim.advance(3)
    elm = chip(sim, "ATSP7", "ATH1")
    reply = elm.execute(b"ATMA")
    assert reply.monitor is not None
    lines = [line for _, line in itertools.islice(reply.monitor.frames(), 6) if line]
    assert lines and all(line.startswith((b"18 FE F1 00 ", b"0C F0 04 00 ", b"18 FE EE 00 ")) for line in lines)
