"""The link pump (gateway.transport.pump, native/pump.pyx): both builds, over a real pseudo-terminal.

A scripted peer on the pty's master side plays the chip: it reads request lines and answers each with the
bytes the test gives (or misbehaves). Both builds must return the same results and keep the same rules:
one line per prompt, stop at the first answer that is not plain data, at a time-out, an over-long answer or
stray bytes; never write the next line in any of those cases.
"""

from __future__ import annotations

import os
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator

import pytest

from gateway.transport import pump

BUILDS: list[pump.PumpFunction] = [pump.pump_python]
try:
    import gateway._pump as native

    BUILDS.append(native.pump)
except ImportError:  # a pure install (OBD_GATEWAY_PURE=1 pip install .): the twin alone
    pass

REQUEST = b"010C0D1\r"
DATA = b"41 0C 1A F8 0D 32 \r\r>"


class Peer:
    """The chip's side of a pty: answers the n-th line with ``script[n]`` (bytes, or a callable)."""

    def __init__(self, script: list[bytes | Callable[[int], None]]) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        attrs = termios.tcgetattr(self.slave)
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 0, 0  # as pyserial leaves a port (timeout=0)
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        os.set_blocking(self.slave, False)
        self.script = script
        self.lines: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = b""
        while not self._stop:
            try:
                data = os.read(self.master, 1024)
            except OSError:
                return
            buf += data
            while b"\r" in buf:
                line, buf = buf.split(b"\r", 1)
                self.lines.append(line + b"\r")
                n = len(self.lines) - 1
                answer = self.script[n] if n < len(self.script) else DATA
                if callable(answer):
                    answer(self.master)
                else:
                    os.write(self.master, answer)

    def close(self) -> None:
        self._stop = True
        for fd in (self.slave, self.master):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture(params=BUILDS, ids=lambda f: "python" if f is pump.pump_python else "native")
def build(request: pytest.FixtureRequest) -> pump.PumpFunction:
    fn: pump.PumpFunction = request.param
    return fn


@pytest.fixture
def peer_factory() -> Iterator[Callable[[list[bytes | Callable[[int], None]]], Peer]]:
    peers: list[Peer] = []

    def make(script: list[bytes | Callable[[int], None]]) -> Peer:
        peers.append(Peer(script))
        return peers[-1]

    yield make
    for p in peers:
        p.close()


def burst(fn: pump.PumpFunction, peer: Peer, n: int, *, wait_s: float = 0.5, max_bytes: int = 4096,
          halt: bytearray | None = None, settle: float = 0.0) -> pump.Burst:
    return pump.run(fn, peer.slave, [REQUEST] * n, settles=[settle] * n, wait_s=wait_s, max_bytes=max_bytes,
                    halt=halt if halt is not None else bytearray(1))


def test_a_clean_burst_answers_every_line_in_order(build: pump.PumpFunction, peer_factory) -> None:
    answers = [b"41 0C 1A F%d \r\r>" % i for i in range(5)]
    peer = peer_factory(list(answers))
    got = burst(build, peer, 5)
    assert got.status == pump.DONE
    assert got.answers == answers
    assert got.sent == 5 and len(got.written) == 5 and len(got.done) == 5
    assert all(w <= d for w, d in zip(got.written, got.done, strict=True))
    assert all(d <= w for d, w in zip(got.done, got.written[1:], strict=False))  # next line only after the prompt
    assert peer.lines == [REQUEST] * 5
    assert got.reads >= 5 and got.partial == b""


@pytest.mark.parametrize(
    "bad", [b"NO DATA\r\r>", b"STOPPED\r\r>", b"?\r\r>", b"CAN ERROR\r\r>", b"\r\rELM327 v1.5\r\r>", b"\r>"]
)
def test_an_answer_that_is_not_plain_data_ends_the_burst_after_it(
    build: pump.PumpFunction, peer_factory, bad: bytes
) -> None:
    peer = peer_factory([DATA, bad, DATA, DATA])
    got = burst(build, peer, 4)
    assert got.status == pump.UNCLEAN
    assert got.answers == [DATA, bad]
    assert got.sent == 2
    time.sleep(0.05)
    assert len(peer.lines) == 2  # nothing written after it: the session decides what comes next


def test_no_line_is_written_before_the_prompt(build: pump.PumpFunction, peer_factory) -> None:
    def late(master: int) -> None:
        os.write(master, b"41 0C 1A F8 \r")  # the prompt never comes within the wait

    peer = peer_factory([DATA, late])
    got = burst(build, peer, 4, wait_s=0.15)
    assert got.status == pump.TIMEOUT
    assert got.answers == [DATA]
    assert got.sent == 2 and len(got.written) == 2
    assert got.partial == b"41 0C 1A F8 \r"
    time.sleep(0.1)
    assert len(peer.lines) == 2


def test_an_answer_past_the_cap_ends_the_burst_and_keeps_nothing(build: pump.PumpFunction, peer_factory) -> None:
    peer = peer_factory([DATA, b"41 0C 00 00\r" * 100])
    got = burst(build, peer, 3, max_bytes=256)
    assert got.status == pump.OVERSIZED
    assert got.answers == [DATA] and got.sent == 2 and got.partial == b""


def test_bytes_after_a_prompt_end_the_burst_and_are_handed_back(build: pump.PumpFunction, peer_factory) -> None:
    peer = peer_factory([DATA + b"41 0D"])
    got = burst(build, peer, 3)
    assert got.status == pump.STRAY
    assert got.answers == [DATA] and got.partial == b"41 0D" and got.sent == 1


def test_the_halt_flag_stops_before_the_next_line(build: pump.PumpFunction, peer_factory) -> None:
    halt = bytearray(1)

    def halt_then_answer(master: int) -> None:
        halt[0] = 1
        os.write(master, DATA)

    peer = peer_factory([DATA, halt_then_answer, DATA])
    got = burst(build, peer, 3, halt=halt)
    assert got.status == pump.HALTED
    assert got.answers == [DATA, DATA] and got.sent == 2


def test_a_vanished_device_ends_the_burst(build: pump.PumpFunction, peer_factory) -> None:
    def hang_up(master: int) -> None:
        os.write(master, b"41 0C")
        os.close(master)

    peer = peer_factory([DATA, hang_up])
    got = burst(build, peer, 3)
    assert got.status in (pump.CLOSED, pump.FAILED)
    assert got.answers == [DATA] and got.sent == 2


def test_the_settle_takes_a_whole_answer_in_one_read(build: pump.PumpFunction, peer_factory) -> None:
    def in_pieces(master: int) -> None:
        for piece in (b"00F\r", b"0:410D000C0370\r", b"1:0400053A100050\r", b"2:11000000000000\r\r>"):
            os.write(master, piece)
            time.sleep(0.002)

    peer = peer_factory([in_pieces] * 3)
    got = burst(build, peer, 3, settle=0.05)
    assert got.status == pump.DONE
    assert got.late == [True, True, True]
    assert got.reads == 3


def test_both_builds_agree(peer_factory) -> None:
    if len(BUILDS) < 2:
        pytest.skip("the native pump is not built")
    script: list[bytes | Callable[[int], None]] = [DATA, b"41 0C 00 00 \r\r>", b"NO DATA\r\r>"]
    results = []
    for fn in BUILDS:
        peer = peer_factory(list(script))
        got = burst(fn, peer, 3)
        results.append((got.status, got.answers, got.sent, got.partial, len(peer.lines)))
    assert results[0] == results[1]


def test_bad_arguments_are_refused(build: pump.PumpFunction, peer_factory) -> None:
    peer = peer_factory([])
    with pytest.raises(ValueError, match="lines per burst"):
        burst(build, peer, pump.MAX_LINES + 1)
    with pytest.raises(ValueError, match="settle"):
        build(peer.slave, [REQUEST], [], 0.1, 4096, bytearray(1))
    assert peer.lines == []
