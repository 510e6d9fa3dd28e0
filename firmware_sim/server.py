"""Serving the ELM327 firmware on a pseudo-terminal or a TCP socket, in real time.

Each server runs one background thread that reads command lines, asks :class:`~firmware_sim.elm327.Elm327`
for the reply and plays it out at the times the timing model gives (none with ``fast``). Any input
that reaches a genuine chip before the prompt of an OBD request interrupts it (``STOPPED``): bytes
queued behind the request's CR (a second request written in the same write arrives ~0.26 ms after the
CR at 38400 baud, long before any answer) as well as bytes arriving while the answer is played. The
byte that interrupted is swallowed and the rest is kept as the start of the next command. A chip
made with ``pipelining=True`` (the Automatic adapter / STN-style line buffering) instead keeps
queued lines and answers them in order, after the prompt; only ATMA stops on input there.

The pseudo-terminal is published under a stable symlink (``<tmpdir>/obd-sim-XXXX/elm327``): after
:meth:`PtyServer.close_port` the symlink is gone (the adapter vanished, opening fails), and after
:meth:`PtyServer.reopen_port` it points to a fresh pty, with the chip freshly powered up.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import shutil
import socket
import sys
import tempfile
import termios
import threading
import time
import traceback
import tty
from collections.abc import Callable
from types import TracebackType

from firmware_sim.elm327 import Chunk, Elm327, Reply
from firmware_sim.timing import serial_time

BAUD_TOLERANCE = 0.03  # a UART copes with a few percent of rate error (ATBRD 45 = 57971 vs a host's 57600)
BUFFER_BYTES = 256  # the chip's output buffer during ATMA; overflow prints BUFFER FULL
MAX_LINE = 256


class _Interrupted(Exception):
    """Input arrived while the chip was answering."""


class _Gone(Exception):
    """The link closed (pty closed by close_port, TCP peer disconnected, server stopping)."""


class _Session:
    """Plays one ELM327 over one byte link (a pty master fd or a connected socket)."""

    def __init__(self, elm: Elm327, read_fd: int, *, read: Callable[[], bytes | None], write: Callable[[bytes], None],
                 wake_fd: int, stopping: Callable[[], bool], host_baud: Callable[[], int | None] | None = None) -> None:
        self.elm = elm
        self.host_baud = host_baud
        self._garbage = random.Random(0x5EED)
        self.fd = read_fd
        self._read = read
        self._write = write
        self.wake_fd = wake_fd
        self.stopping = stopping
        self.buf = bytearray()

    def _wait_input(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` for input; True when some arrived (it is appended to ``buf``)."""
        if self.stopping():
            raise _Gone
        try:
            r, _, _ = select.select([self.fd, self.wake_fd], [], [], timeout)
        except OSError as exc:  # EBADF: a closed link ends the session rather than the serving thread
            raise _Gone from exc
        if self.wake_fd in r:
            raise _Gone
        if self.fd in r:
            data = self._read()
            if data is None:
                return False
            if not data:
                raise _Gone
            if not self._baud_matches():
                # Wrong baud rate: the chip sees framing errors, the host sees garbage back.
                self._write(self._noise(max(1, len(data) // 2)))
                return False
            self.buf += data
            return True
        return False

    def _baud_matches(self) -> bool:
        if self.host_baud is None:
            return True
        host = self.host_baud()
        return host is None or abs(host - self.elm.baud) <= BAUD_TOLERANCE * self.elm.baud

    def _noise(self, n: int) -> bytes:
        # never a '>' (hosts look for the prompt) and never CR
        return bytes(self._garbage.choice(b"\x80\x9f\xe0\xf8\xfe\x00\x1c\x06\xc3\x7f") for _ in range(n))

    def _sleep_until(self, deadline: float, *, interruptible: bool) -> None:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            before = len(self.buf)
            if self._wait_input(left) and interruptible and len(self.buf) > before:
                raise _Interrupted

    def send(self, data: bytes) -> None:
        """Write to the host (garbled when strict baud checking finds the rates differ)."""
        if data:
            self._write(data if self._baud_matches() else self._noise(len(data)))

    def run(self) -> None:
        """Serve until the link goes away."""
        with contextlib.suppress(_Gone):
            while True:
                while b"\r" not in self.buf:
                    if len(self.buf) > MAX_LINE:
                        self.buf.clear()
                    self._wait_input(None)
                idx = self.buf.index(b"\r")
                line = bytes(self.buf[:idx]).replace(b"\n", b"")
                del self.buf[:idx + 1]
                echo = self.elm.settings.echo
                try:
                    reply = self.elm.execute(line)
                except Exception:  # a simulator bug must not kill the adapter silently: report, answer "?"
                    traceback.print_exc(file=sys.stderr)
                    reply = Reply(chunks=[Chunk(0.0, self.elm.line("?") + self.elm.tail)])
                if reply.interruptible and not self.elm.pipelining:
                    self._wait_input(0)  # bytes already on the line behind the CR count too
                    if self.buf:
                        self._stopped_at_once(line if echo else None)
                        continue
                self.play(reply, time.monotonic())

    def _stopped_at_once(self, echoed: bytes | None) -> None:
        """A request interrupted by bytes queued behind its CR: the echo (sent as the line came in),
        then ``STOPPED`` before anything was asked on the bus."""
        elm = self.elm
        del self.buf[:1]
        out = (elm.line(echoed) if echoed is not None else b"") + elm.line("STOPPED") + elm.tail
        if not elm.fast:
            time.sleep(serial_time(len(out), elm.baud))
        self.send(out)

    def play(self, reply: Reply, t0: float) -> None:
        """Write the reply's chunks at their times; handle interruption, ATMA and ATBRD."""
        elm = self.elm
        interruptible = reply.interruptible and not elm.pipelining
        try:
            for chunk in reply.chunks:
                self._sleep_until(t0 + chunk.at, interruptible=interruptible)
                self.send(chunk.data)
        except _Interrupted:
            del self.buf[:1]
            self.send(elm.line("STOPPED") + elm.tail)
            return
        if reply.monitor is not None:
            self._monitor(reply)
        elif reply.brd_baud is not None:
            self._brd(reply.brd_baud)
        elif reply.after_baud is not None:
            elm.baud = reply.after_baud  # STSBR: the reply left at the old rate; from now on the new one

    def _monitor(self, reply: Reply) -> None:
        elm = self.elm
        assert reply.monitor is not None
        backlog = 0.0
        try:
            for delay, line in reply.monitor.frames():
                self._sleep_until(time.monotonic() + delay, interruptible=True)
                if not line:
                    continue
                if not elm.fast:
                    backlog = max(0.0, backlog + len(line) - delay * elm.baud / 10)
                    if backlog > BUFFER_BYTES:
                        self.send(elm.line("BUFFER FULL") + elm.tail)
                        return
                self.send(line)
        except _Interrupted:
            del self.buf[:1]
            self.send(elm.line("STOPPED") + elm.tail)

    def _brd(self, new_baud: int) -> None:
        """The ATBRD handshake: ID string at the new rate, then wait for the host's CR."""
        elm = self.elm
        window = elm.settings.brt * 0.005
        old = elm.baud
        self.buf.clear()
        time.sleep(window)
        elm.baud = new_baud
        ident = elm.line(elm.version)
        time.sleep(0 if elm.fast else serial_time(len(ident), new_baud))
        self.send(ident)
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            if b"\r" in self.buf:
                break
            self._wait_input(max(0.0, deadline - time.monotonic()))
        if b"\r" in self.buf:
            del self.buf[:self.buf.index(b"\r") + 1]
            self.send(elm.line("OK") + elm.tail)
        else:
            elm.baud = old
            self.send(elm.tail)


_TERMIOS_SPEEDS = {getattr(termios, f"B{b}"): b for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400,
                                                          460800, 500000, 576000, 921600, 1000000, 2000000)
                   if hasattr(termios, f"B{b}")}
"""termios speed constant → baud rate: with ``strict_baud`` the host's pty speed must match the chip's."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 0.5)
            continue
        view = view[n:]


class PtyServer:
    """An ELM327 on a pseudo-terminal, served by a background thread.

    ``path`` is a stable symlink to the current pty slave; ``device`` is the slave itself.
    Use as a context manager (``with sim.serve_pty() as path``) or call :meth:`stop`.
    """

    def __init__(self, elm_factory: Callable[[], Elm327], *, link_name: str = "elm327",
                 strict_baud: bool = False) -> None:
        self._factory = elm_factory
        self.strict_baud = strict_baud
        self.elm = elm_factory()
        self._dir = tempfile.mkdtemp(prefix="obd-sim-")
        self.path = os.path.join(self._dir, link_name)
        self.device = ""
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._open_event = threading.Event()
        # A pty generation, bumped by close_port: a session ends when its generation is gone. (Comparing fd
        # numbers is not enough: a reopened pty may get the closed one's numbers.)
        self._gen = 0
        # Clear while the thread serves a session: close_port closes the fds only after it let go of them,
        # so the thread never selects on a closed (or reused) descriptor.
        self._idle = threading.Event()
        self._idle.set()
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name=f"sim-pty-{self.device}", daemon=True)
        self._thread.start()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        # Raw mode on our side, so the line discipline never echoes or translates what the host sends.
        tty.setraw(slave, termios.TCSANOW)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.device = os.ttyname(slave)
        tmp = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self.device, tmp)
        os.replace(tmp, self.path)
        self._open_event.set()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.set_blocking(self._wake_r, False)
            while os.read(self._wake_r, 64):
                pass

    def _run(self) -> None:
        while not self._stopping:
            self._open_event.wait()
            if self._stopping:
                return
            with self._lock:
                master, gen = self._master, self._gen
                if master is None:
                    self._open_event.clear()
                    continue
                self._idle.clear()
            try:
                self._serve(master, gen)
            finally:
                self._idle.set()

    def _serve(self, master: int, gen: int) -> None:
        """One session on one pty, until it is closed or the server stops."""
        self._drain_wake()

        def read(fd: int = master) -> bytes | None:
            try:
                return os.read(fd, 4096)
            except BlockingIOError:
                return None
            except OSError:
                return b""

        def write(data: bytes, fd: int = master) -> None:
            try:
                _write_all(fd, data)
            except OSError as exc:
                raise _Gone from exc

        def stopping(g: int = gen) -> bool:
            return self._stopping or self._gen != g

        def host_baud(fd: int = master) -> int | None:
            try:
                return _TERMIOS_SPEEDS.get(termios.tcgetattr(fd)[5])
            except termios.error:
                return None

        _Session(self.elm, master, read=read, write=write, wake_fd=self._wake_r, stopping=stopping,
                 host_baud=host_baud if self.strict_baud else None).run()

    # ------------------------------------------------------------------ public API
    def close_port(self) -> None:
        """The adapter vanishes: the pty is closed (the host sees EOF/EIO) and ``path`` disappears."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self._lock:
            self._open_event.clear()
            master, slave = self._master, self._slave
            self._master = self._slave = None
            self._gen += 1
        self._wake()
        # the session notices within one select (the wake pipe) or one reply chunk; bounded all the same
        self._idle.wait(timeout=5)
        for fd in (master, slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def reopen_port(self) -> None:
        """The adapter comes back: a new pty behind the same ``path``, chip freshly powered up."""
        with self._lock:
            if self._master is not None:
                return
            self.elm = self._factory()
            self._open_pty()

    def stop(self) -> None:
        """Stop serving and remove the pty and its symlink."""
        self._stopping = True
        self._open_event.set()
        self._wake()
        self._thread.join(timeout=5)
        self.close_port()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class TcpServer:
    """An ELM327 behind a TCP socket, like a Wi-Fi adapter (loopback only unless ``host`` says otherwise).

    One client at a time; the chip keeps its settings across connections, as a real adapter does.
    """

    def __init__(self, elm_factory: Callable[[], Elm327], *, port: int = 35000, host: str = "127.0.0.1") -> None:
        self.elm = elm_factory()
        self._sock = socket.create_server((host, port), reuse_port=False)
        self.host = host
        self.port = self._sock.getsockname()[1]
        self.address = f"tcp:{host}:{self.port}"
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name=f"sim-tcp-{self.port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            r, _, _ = select.select([self._sock.fileno(), self._wake_r], [], [], None)
            if self._wake_r in r or self._stopping:
                return
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn

            def read(c: socket.socket = conn) -> bytes | None:
                try:
                    return c.recv(4096)
                except OSError:
                    return b""

            def write(data: bytes, c: socket.socket = conn) -> None:
                try:
                    c.sendall(data)
                except OSError as exc:
                    raise _Gone from exc

            _Session(self.elm, conn.fileno(), read=read, write=write, wake_fd=self._wake_r,
                     stopping=lambda: self._stopping).run()
            with contextlib.suppress(OSError):
                conn.close()
            self._conn = None

    def stop(self) -> None:
        """Stop serving and close the listening socket and any client."""
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._sock.close()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> str:
        return self.address

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
