"""Bounded input (issue 12, item 4 and failure 5): bytes kept per answer, bounded queues, flat memory.

A hostile or broken adapter (a Wi-Fi adapter is often an open access point) streams data without CR
or ``>``; before the caps, ``poll`` and the daemon grew to 2.8 GB RSS, one 10 MB answer to 600 MB.
Real peers throughout: an asyncio TCP server on loopback, a pseudo-terminal with a writer thread,
``obd-gateway poll`` as a subprocess. Memory is checked with tracemalloc's peak (deterministic:
Python's own allocations) and with VmRSS from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import sys
import termios
import threading
import time
import tracemalloc
import tty
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from firmware_sim import Simulator
from firmware_sim.ecu import isotp_frames
from gateway.errors import OversizedAnswer, TransportTimeout
from gateway.transport._queue import QUEUE_LIMIT_BYTES, ChunkQueue
from gateway.transport.base import DEFAULT_MAX_ANSWER_BYTES, ISOTP_MAX_ANSWER_BYTES
from gateway.transport.serial import SerialTransport
from gateway.transport.tcp import TcpTransport

MB = 1024 * 1024
#: ELM327-looking hex without CR or '>': what a broken adapter might stream (60,000 bytes)
JUNK = b"41 0C 1A F8 " * 5000

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def vmrss() -> int:
    """This process's resident set size in bytes (Linux /proc)."""
    return rss_of(os.getpid())


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on a free loopback port running ``handler`` per connection; yields the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, OSError):
            pass  # the client went away mid-stream
        finally:
            writer.close()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        # the client closed first, so every handler sees EOF or a reset and ends; cancelling one would
        # make asyncio's stream callback log the CancelledError
        _, pending = await asyncio.wait(tasks, timeout=5) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        await server.wait_closed()


async def _lines(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    buf = b""
    while True:
        data = await reader.read(1024)
        if not data:
            return
        buf += data
        while b"\r" in buf:
            line, buf = buf.split(b"\r", 1)
            yield line


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Streams JUNK from the connection on; the first command line ends the stream with a prompt
    (the junk and its prompt are one answer block), every later line is answered OK."""
    stop = asyncio.Event()

    async def listen() -> None:
        async for _line in _lines(reader):
            if not stop.is_set():
                stop.set()
                continue
            writer.write(b"OK\r\r>")
        stop.set()

    listener = asyncio.create_task(listen())
    try:
        while not stop.is_set():
            writer.write(JUNK)
            await writer.drain()  # TCP backpressure: blocks while the client does not read
        writer.write(b"\r\r>")
        await writer.drain()
        await listener
    finally:
        listener.cancel()


def big_answer(size: int) -> Handler:
    """The first command gets ``size`` bytes of junk, then a prompt; every later one OK."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        async for _line in _lines(reader):
            if first:
                first = False
                sent = 0
                while sent < size:  # in pieces, so the server holds no 10 MB buffer of its own
                    piece = JUNK[: min(len(JUNK), size - sent)]
                    writer.write(piece)
                    sent += len(piece)
                    await writer.drain()
                writer.write(b"\r\r>")
            else:
                writer.write(b"OK\r\r>")
            await writer.drain()

    return handler


def scripted(answers: list[bytes]) -> Handler:
    """Answers the n-th command line with ``answers[n]``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        i = 0
        async for _line in _lines(reader):
            writer.write(answers[i])
            i += 1
            await writer.drain()

    return handler


# -- TCP ------------------------------------------------------------------------------------------


async def test_endless_stream_over_tcp_is_refused_and_memory_stays_flat() -> None:
    async with serve(endless) as port:
        t = TcpTransport("127.0.0.1", port)
        await t.open()
        try:
            rss0 = vmrss()
            tracemalloc.start()
            try:
                with pytest.raises(OversizedAnswer, match=f"more than {DEFAULT_MAX_ANSWER_BYTES} bytes without"):
                    await t.read_until(b">", 5.0)
                states: list[str] = []
                while t.bytes_discarded < 200 * MB:
                    # the rest of that answer is skipped, never kept; the wait ends with the stream still on
                    with pytest.raises(OversizedAnswer) as err:
                        await t.read_until(b">", 0.5)
                    states.append(str(err.value))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            grown = vmrss() - rss0
            print(f"tcp endless: {t.bytes_discarded / MB:.0f} MB through, tracemalloc peak {peak / 1024:.0f} KiB, "
                  f"VmRSS grew {grown / MB:.1f} MB")
            streaming = [m for m in states if m.endswith("still streaming; discarded")]
            # a loaded machine can stall this peer (the same event loop) for QUIET_S: the skipping ends
            # ("then quiet") and the stream that goes on is a new oversized answer, refused the same way
            fresh = [m for m in states if f"more than {DEFAULT_MAX_ANSWER_BYTES} bytes without" in m]
            quiet = [m for m in states if m.endswith("then quiet; discarded")]
            assert len(streaming) + len(fresh) + len(quiet) == len(states), states[:3]
            assert len(streaming) > len(states) / 2, states[:3]
            assert t.oversized == 1 + len(fresh)
            assert peak < 1 * MB, peak  # the cap, one chunk, and the peer's own send buffer
            assert grown < 20 * MB, grown
            # the adapter stops; after a drain the line is usable and the next answer is read whole
            await t.write(b"ATI\r")
            await t.drain_input(0.2, 10.0)
            await t.write(b"ATE0\r")
            assert await t.read_until(b">", 2.0) == b"OK\r\r>"
        finally:
            await t.close()


@pytest.mark.parametrize("recovery", ["skip", "drain"])
async def test_ten_megabyte_answer_over_tcp_then_the_next_answer_is_read(recovery: str) -> None:
    size = 10 * MB
    async with serve(big_answer(size)) as port:
        t = TcpTransport("127.0.0.1", port)
        await t.open()
        try:
            rss0 = vmrss()
            tracemalloc.start()
            try:
                await t.write(b"ATI\r")  # any line: the scripted server answers 10 MB
                with pytest.raises(OversizedAnswer):
                    await t.read_until(b">", 5.0)
                if recovery == "drain":  # what the session's resync does first
                    await t.drain_input(0.2, 10.0)
                    assert t.bytes_discarded < size  # drained, not counted as refused bytes
                await t.write(b"ATE0\r")
                # "skip": the rest of the 10 MB (up to its prompt) is discarded by this very read
                assert await t.read_until(b">", 10.0) == b"OK\r\r>"
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            grown = vmrss() - rss0
            print(f"tcp 10 MB ({recovery}): tracemalloc peak {peak / 1024:.0f} KiB, VmRSS grew {grown / MB:.1f} MB")
            assert t.oversized == 1
            if recovery == "skip":
                assert size <= t.bytes_discarded <= size + 3
            assert peak < 1 * MB, peak
            assert grown < 20 * MB, grown
        finally:
            await t.close()


async def test_cap_boundary_and_what_follows_an_oversized_answer() -> None:
    n = 100
    answers = [b"A" * (n - 1) + b">", b"B" * n + b">", b"OK\r\r>", b"C" * 10 + b"\r" + b"D" * 10 + b">"]
    async with serve(scripted(answers)) as port:
        t = TcpTransport("127.0.0.1", port)
        await t.open()
        try:
            await t.write(b"ATI\r")
            assert await t.read_until(b">", 2.0, max_bytes=n) == answers[0]  # exactly the cap: kept
            await t.write(b"ATRV\r")
            with pytest.raises(OversizedAnswer):
                await t.read_until(b">", 2.0, max_bytes=n)  # one byte over: refused
            await t.write(b"ATDP\r")
            assert await t.read_until(b">", 2.0, max_bytes=n) == b"OK\r\r>"
            # a short line read with a small cap, the rest stays for the next read
            await t.write(b"ATDPN\r")
            assert await t.read_until(b"\r", 2.0, max_bytes=11) == b"C" * 10 + b"\r"
            assert await t.read_until(b">", 2.0) == b"D" * 10 + b">"
            with pytest.raises(ValueError, match="shorter than the separator"):
                await t.read_until(b"\r\r>", 1.0, max_bytes=2)
        finally:
            await t.close()


async def test_quiet_line_ends_the_skip() -> None:
    """An oversized answer that stops without its prompt: the next answer is not eaten by the skip."""
    answers = [JUNK[:6000], b"", b"OK\r\r>"]  # no '>' after the junk: the adapter just went quiet
    async with serve(scripted(answers)) as port:
        t = TcpTransport("127.0.0.1", port)
        await t.open()
        try:
            await t.write(b"ATI\r")
            with pytest.raises(OversizedAnswer):
                await t.read_until(b">", 2.0)
            with pytest.raises(OversizedAnswer, match=r"1904 more bytes .* then quiet"):
                await t.read_until(b">", 0.3)  # the rest skipped, then nothing: the skip ends
            await t.write(b"ATE0\r")
            with pytest.raises(TransportTimeout):  # the scripted adapter answers nothing to this one
                await t.read_until(b">", 0.3)
            await t.write(b"ATE0\r")
            assert await t.read_until(b">", 2.0) == b"OK\r\r>"
        finally:
            await t.close()


# -- the figures behind the caps ------------------------------------------------------------------


def _elm_text(sim: Simulator, message: bytes, *, headers: bool, caf: bool, ident: int, dlc: bool) -> bytes:
    """``message`` as the simulator's ELM327 prints it (spaces and linefeeds on), without the prompt."""
    elm = sim.new_elm()
    s = elm.settings
    s.spaces, s.linefeeds, s.headers, s.dlc, s.caf = True, True, headers, dlc, caf
    frames = isotp_frames(message)
    if caf and not headers:
        out = [elm.line(f"{len(message):03X}"), elm.line(f"0: {elm.hexs(frames[0][2:])}")]
        out += [elm.line(f"{i & 0xF:X}: {elm.hexs(fr[1:])}") for i, fr in enumerate(frames[1:], start=1)]
        return b"".join(out)
    return b"".join(elm.line(elm.format_can_frame(ident, fr, False)) for fr in frames)


def test_caps_admit_the_longest_legitimate_answers(sim: Simulator) -> None:
    isotp = bytes(range(256)) * 15 + bytes(255)  # 4095 bytes: the ISO-TP maximum
    assert len(isotp) == 4095
    sizes = {
        (headers, caf, ident, dlc): len(_elm_text(sim, isotp, headers=headers, caf=caf, ident=ident, dlc=dlc))
        for headers in (False, True) for caf in (False, True) for ident in (0x7E8, 0x18DAF110) for dlc in (False, True)
    }
    widest = max(sizes.values())
    assert widest == sizes[(True, True, 0x18DAF110, True)] == 23_440  # the figure in base.py's docstring
    assert sizes[(False, True, 0x7E8, False)] == 15_238
    assert sizes[(True, True, 0x7E8, False)] == 17_580
    slack = len(b"0902\r\n") + len(b"SEARCHING...\r\n") + len(b"\r\n>")  # echo, search notice, prompt
    assert widest + slack <= ISOTP_MAX_ANSWER_BYTES
    assert sizes[(False, True, 0x7E8, False)] > DEFAULT_MAX_ANSWER_BYTES  # the default is not enough for it
    # mode 01: six PIDs of four data bytes each from eight ECUs, widest form
    mode01 = bytes([0x41]) + bytes([0x0C, 1, 2, 3, 4]) * 6
    per_ecu = len(_elm_text(sim, mode01, headers=True, caf=False, ident=0x18DAF110, dlc=True))
    assert 8 * per_ecu + slack <= DEFAULT_MAX_ANSWER_BYTES // 2, per_ecu


async def test_an_isotp_sized_answer_is_read_whole_only_when_asked_for(sim: Simulator) -> None:
    isotp = bytes(range(256)) * 15 + bytes(255)
    text = _elm_text(sim, isotp, headers=True, caf=True, ident=0x18DAF110, dlc=True) + b"\r\n>"
    async with serve(scripted([text, text, b"OK\r\r>"])) as port:
        t = TcpTransport("127.0.0.1", port)
        await t.open()
        try:
            await t.write(b"ATI\r")
            assert await t.read_until(b">", 5.0, max_bytes=ISOTP_MAX_ANSWER_BYTES) == text
            await t.write(b"ATI\r")
            with pytest.raises(OversizedAnswer):
                await t.read_until(b">", 5.0)  # the default cap is for mode 01
            await t.write(b"ATE0\r")
            assert await t.read_until(b">", 5.0) == b"OK\r\r>"
        finally:
            await t.close()


# -- serial over a pseudo-terminal ----------------------------------------------------------------


class PtyStreamer:
    """A 'broken adapter' on the master side of a pty: streams JUNK until the first command line,
    ends that block with a prompt, then answers OK. Counts the bytes the kernel accepted."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave, termios.TCSANOW)
        tty.setraw(self.master, termios.TCSANOW)
        self.path = os.ttyname(self.slave)
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        streaming = True
        buf = b""
        view = memoryview(JUNK)
        pos = 0
        while not self._stop.is_set():
            want_w = [self.master] if streaming else []
            r, w, _ = select.select([self.master], want_w, [], 0.05)
            try:
                if r:
                    buf += os.read(self.master, 1024)
                    while b"\r" in buf:
                        _line, buf = buf.split(b"\r", 1)
                        if streaming:
                            streaming = False
                            os.write(self.master, b"\r\r>")
                        else:
                            os.write(self.master, b"OK\r\r>")
                if w and streaming:
                    n = os.write(self.master, view[pos : pos + 4096])
                    self.written += n
                    pos = (pos + n) % (len(JUNK) - 4096)
            except OSError:
                return

    def __enter__(self) -> PtyStreamer:
        os.set_blocking(self.master, False)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def streamer() -> Iterator[PtyStreamer]:
    with PtyStreamer() as s:
        yield s


async def test_endless_stream_over_a_pty_is_refused_and_memory_stays_flat(streamer: PtyStreamer) -> None:
    t = SerialTransport(streamer.path)
    await t.open()
    try:
        # nobody reads: the queue stops reading the fd at its limit, and the writer is held back
        await asyncio.sleep(0.5)
        held = streamer.written
        await asyncio.sleep(0.5)
        assert streamer.written == held, "the kernel kept taking bytes: reading was not paused"
        assert QUEUE_LIMIT_BYTES <= t.queued_bytes <= QUEUE_LIMIT_BYTES + 4096
        rss0 = vmrss()
        tracemalloc.start()
        try:
            with pytest.raises(OversizedAnswer, match="without b'>'"):
                await t.read_until(b">", 5.0)
            while t.bytes_discarded < 64 * MB:
                with pytest.raises(OversizedAnswer, match="still streaming"):
                    await t.read_until(b">", 0.5)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        grown = vmrss() - rss0
        print(f"pty endless: {t.bytes_discarded / MB:.0f} MB through, tracemalloc peak {peak / 1024:.0f} KiB, "
              f"VmRSS grew {grown / MB:.1f} MB")
        assert peak < 1 * MB, peak
        assert grown < 20 * MB, grown
        await t.write(b"ATI\r")
        await t.drain_input(0.2, 10.0)
        await t.write(b"ATE0\r")
        assert await t.read_until(b">", 2.0) == b"OK\r\r>"
    finally:
        await t.close()


# -- the receive queue on its own (BLE's drop-oldest mode: no radio here) --------------------------


async def test_queue_without_backpressure_drops_oldest_and_says_so() -> None:
    q = ChunkQueue(limit=1000)
    for i in range(100):
        q.feed(bytes([i]) * 100)
    assert q.queued == 1000 and q.dropped == 9000
    with pytest.raises(OversizedAnswer, match="9000 bytes dropped"):
        await q.get()
    assert await q.get() == b"".join(bytes([i]) * 100 for i in range(90, 100))  # the newest kept
    q.feed(b"x" * 5000)  # one chunk larger than the queue: its tail
    with pytest.raises(OversizedAnswer):
        await q.get()
    assert await q.get() == b"x" * 1000
    q.feed(b"y" * 2000)
    assert q.discard() == 1000
    q.feed(b"z")
    assert await q.get() == b"z"  # the hole was in what discard dropped: no error now


async def test_queue_with_backpressure_pauses_and_resumes() -> None:
    calls: list[str] = []
    q = ChunkQueue(limit=1000, pause=lambda: calls.append("pause"), resume=lambda: calls.append("resume"))
    for _ in range(12):
        q.feed(b"a" * 100)
    assert calls == ["pause"] and q.queued == 1200 and q.dropped == 0
    assert await q.get() == b"a" * 1200
    assert calls == ["pause", "resume"]


# -- obd-gateway poll against the endless streamer ------------------------------------------------


async def test_poll_against_an_endless_streamer_stays_small_and_says_one_line() -> None:
    async with serve(endless) as port:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "poll", "--port", f"tcp:127.0.0.1:{port}", "--duration", "5",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        peak = 0
        comm = asyncio.ensure_future(proc.communicate())
        deadline = time.monotonic() + 60
        while not comm.done() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                peak = max(peak, rss_of(proc.pid))
            await asyncio.sleep(0.05)
        if not comm.done():
            proc.kill()
        stdout, stderr = await comm
    err = stderr.decode()
    print(f"poll against the endless streamer: exit {proc.returncode}, peak VmRSS {peak / MB:.1f} MB, stderr {err!r}")
    assert 0 < peak < 100 * MB, peak
    assert proc.returncode == 1, (stdout, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# -- the poller over the capped transport: one oversized answer mid-polling ------------------------


def _elm_behind_tcp(sim: Simulator, junk_for: int, size: int) -> Handler:
    """The simulator's ELM327 behind a TCP server; the ``junk_for``-th mode 01 request is answered with
    ``size`` bytes of junk and no prompt. Lines that arrive together (pipelined) get STOPPED for the
    first and lose the rest, as a genuine ELM327 treats input while it answers (ELM327 datasheet,
    "Interrupting the OBD Operations"): this keeps the session from pipelining over this server."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        elm = sim.new_elm()
        n = 0
        buf = b""
        while data := await reader.read(1024):
            buf += data
            if buf.count(b"\r") > 1:
                buf = b""
                writer.write(b"STOPPED\r\r>")
                continue
            if b"\r" not in buf:
                continue
            line, buf = buf.split(b"\r", 1)
            if line.strip().startswith(b"01") and line.strip() not in (b"0100", b"0120", b"0140"):
                n += 1
                if n == junk_for:
                    for i in range(0, size, len(JUNK)):
                        writer.write(JUNK[: min(len(JUNK), size - i)])
                        await writer.drain()
                    continue
            writer.write(elm.execute(line).data())
            await writer.drain()

    return handler


async def test_poller_resyncs_after_an_oversized_answer_and_counts_it(sim: Simulator) -> None:
    from tests.link.helpers import make_poller, run_until

    sim.command({"hold_speed": 57.0})
    async with serve(_elm_behind_tcp(sim, junk_for=20, size=200_000)) as port:
        poller, got = make_poller(f"tcp:127.0.0.1:{port}", fast=True)
        ok = await run_until(poller, lambda: poller.errors.get("OversizedAnswer", 0) > 0
                             and len(got.named("speed")) > 100, 20)
        errors = poller.status()["errors"]
    assert ok, errors
    assert errors.get("OversizedAnswer") == 1, errors
    assert poller.reconnects == 0  # resynced on the same link
    assert got.named("speed")[-1].value == pytest.approx(57.0, abs=1.0)
