"""Clone quirks over a real pseudo-terminal: a chip that hangs on ATZ, ignores ATE0, lacks ATS0.

The "clone" is the simulator's ELM327 firmware with three quirks layered on top (a thin wrapper:
firmware_sim has no clone mode): ATZ is never answered, echo stays on whatever ATE0 says, and
ATS0 / ATAT1 / STI answer ``?``.
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import threading
import tty
from collections.abc import Iterator

import pytest

from firmware_sim import Simulator
from gateway.elm327.session import Elm327Session
from gateway.errors import TransportError
from gateway.transport.serial import SerialTransport
from tests.link.helpers import make_poller


@pytest.fixture
def clone_pty(sim: Simulator) -> Iterator[str]:
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    path = os.ttyname(slave)
    elm = sim.new_elm()
    stop = threading.Event()

    def serve() -> None:
        buf = b""
        while not stop.is_set():
            r, _, _ = select.select([master], [], [], 0.05)
            if not r:
                continue
            try:
                buf += os.read(master, 1024)
            except OSError:
                return
            while b"\r" in buf:
                line, buf = buf.split(b"\r", 1)
                cmd = line.strip().upper()
                if cmd == b"ATZ":
                    continue  # hangs: no answer, no prompt
                echo = line + b"\r"  # echo whatever ATE0 said
                if cmd in (b"ATS0", b"ATAT1", b"STI"):
                    os.write(master, echo + b"?\r\r>")
                    continue
                reply = elm.execute(line)
                out = b"".join(c.data for c in reply.chunks)
                if not out.startswith(line):
                    out = echo + out
                os.write(master, out)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(2)
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


async def test_clone_is_initialised_and_polled(sim: Simulator, clone_pty: str) -> None:
    sim.command({"hold_speed": 71.0})
    t = SerialTransport(clone_pty)
    await t.open()
    try:
        session = Elm327Session(t, timeout_s=2.0)
        info = await session.initialize()
        assert info.version == "1.5"  # from the ATWS banner after ATZ timed out
        assert info.echo is True  # ATE0 did not take
        assert info.spaces is True  # ATS0 answered '?'
        assert info.stn == ""
        readings = await session.read_pids(0x7E8, [0x0D, 0x0C])
        assert {r.name: r.value for r in readings}["speed"] == 71.0
        assert session.errors.get("timeout", 0) >= 1  # the ATZ that never came back
    finally:
        await t.close()


def test_registry_parses_ports() -> None:
    from gateway.config import parse_port

    assert parse_port("/dev/ttyUSB0").kind == "serial"
    assert parse_port("tcp:192.168.0.10:35000").port == 35000
    assert parse_port("tcp:localhost").port == 35000
    with pytest.raises(ValueError, match=r"adapter\.port"):
        parse_port("tcp:host:99999")


async def test_on_demand_calls_fail_at_once_without_adapter() -> None:
    poller, _ = make_poller("/nonexistent/tty")
    with pytest.raises(TransportError, match="not connected"):
        await poller.query(0x0C)
    with pytest.raises(TransportError):
        await poller.read_dtcs()
