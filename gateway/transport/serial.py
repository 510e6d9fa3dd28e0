"""Serial transport (USB adapters, Bluetooth classic through ``/dev/rfcommN``) with pyserial.

pyserial opens and configures the port; the event loop watches its file descriptor
(``loop.add_reader``), so no thread blocks and a vanished device (EIO, EOF on a closed
pseudo-terminal, a USB unplug) surfaces at once as :class:`~gateway.errors.TransportError`.

Bytes kept: the receive queue stops reading the descriptor at 64 KiB unread (backpressure, see
:mod:`gateway.transport._queue`): the kernel's tty buffer holds the rest, or drops it on a UART
without flow control, so a device that streams while nobody reads never grows our memory. Answers are
capped by :meth:`~gateway.transport.base.Transport.read_until`.

A settle (see :mod:`gateway.transport.base`) removes the descriptor from the event loop; the kernel
holds what arrives meanwhile, and the end of the settle reads it all at once (until the queue's
backpressure limit), then watches the descriptor again unless backpressure keeps it paused. A burst of
the link pump (see :mod:`gateway.transport.base`) does the same around the whole burst, in the worker thread.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select

import serial

from gateway.errors import TransportError
from gateway.transport._queue import ChunkQueue
from gateway.transport.base import Transport

#: bytes taken from the descriptor per read
READ_BYTES = 4096


class SerialTransport(Transport):
    """A serial device at a baud rate (8N1, no flow control)."""

    def __init__(self, device: str, baud: int = 38400) -> None:
        super().__init__()
        self.device = device
        self._baud = baud
        self._ser: serial.Serial | None = None
        self._rx = ChunkQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settling = False  # a settle stopped the reader (backpressure is the queue's own flag)
        self.description = f"serial:{device}@{baud}"

    @property
    def baud(self) -> int | None:
        return self._baud

    async def _open(self) -> None:
        self._rx = ChunkQueue(pause=self._stop_reading, resume=self._resume_reading)
        self._settling = False
        self._loop = asyncio.get_running_loop()
        try:
            ser = serial.Serial(self.device, self._baud, timeout=0, write_timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"{self.device}: cannot open: {exc}") from exc
        self._ser = ser
        os.set_blocking(ser.fileno(), False)
        self._loop.add_reader(ser.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        self._read_once()

    def _read_once(self) -> int:
        """One read of the descriptor into the queue; the bytes read (0: none, or the stream ended)."""
        ser = self._ser
        if ser is None:
            return 0
        try:
            data = os.read(ser.fileno(), READ_BYTES)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._stop_reading()
            self._rx.fail(TransportError(f"{self.device}: read failed: {exc.strerror or exc}"))
            return 0
        if not data:
            self._stop_reading()
            self._rx.fail(TransportError(f"{self.device}: device closed"))
            return 0
        self._rx.feed(data)
        return len(data)

    def _resume_reading(self) -> None:
        # the queue's backpressure ended; a settle in progress resumes the reader itself when it ends
        if self._ser is not None and self._loop is not None and self._rx.failed is None and not self._settling:
            self._loop.add_reader(self._ser.fileno(), self._on_readable)

    def _pause_input(self) -> None:
        self._settling = True
        self._stop_reading()

    def _resume_input(self) -> None:
        self._settling = False
        # what arrived during the settle, backpressure permitting; a raw tty (VMIN=0) reads as EOF when
        # empty, so read only while the descriptor polls readable, as the loop's reader would
        while not self._rx.paused and self._rx.failed is None and self._readable() and self._read_once():
            pass
        if not self._rx.paused:
            self._resume_reading()

    def _readable(self) -> bool:
        ser = self._ser
        if ser is None:
            return False
        # poll, not select: select fails for descriptors at or above FD_SETSIZE (1024)
        poller = select.poll()
        poller.register(ser.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def _read_ready(self) -> bytes:
        return self._rx.get_nowait()

    def _burst_fd(self) -> int | None:
        ser = self._ser
        if ser is None or self._rx.failed is not None or self._rx.paused:
            return None
        return int(ser.fileno())

    def _burst_failed(self, why: str) -> None:
        self._stop_reading()
        self._rx.fail(TransportError(why))

    def _stop_reading(self) -> None:
        if self._ser is not None and self._loop is not None:
            try:
                self._loop.remove_reader(self._ser.fileno())
            except (ValueError, OSError):
                pass

    async def _close(self) -> None:
        self._stop_reading()
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass  # the device is already gone; closing is best effort

    async def _write(self, data: bytes) -> None:
        ser = self._ser
        if ser is None or self._rx.failed is not None:
            raise self._rx.failed or TransportError(f"{self.device}: not open")
        view = memoryview(data)
        while view:
            try:
                n = os.write(ser.fileno(), view)
            except BlockingIOError:
                await self._writable(ser.fileno())
                continue
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.ENXIO, errno.EBADF, errno.ENODEV):
                    self._rx.fail(TransportError(f"{self.device}: write failed: {exc.strerror}"))
                raise TransportError(f"{self.device}: write failed: {exc.strerror or exc}") from exc
            view = view[n:]

    async def _writable(self, fd: int) -> None:
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        self._loop.add_writer(fd, ready)
        try:
            await fut
        finally:
            self._loop.remove_writer(fd)

    async def _read_chunk(self) -> bytes:
        return await self._rx.get()

    def _take_queued(self) -> bytes:
        return self._rx.take_all()

    @property
    def queued_bytes(self) -> int:
        return self._rx.queued

    async def set_baud(self, baud: int) -> None:
        """Switch the local side to ``baud`` (the ATBRD handshake decides when)."""
        if self._ser is None:
            raise TransportError(f"{self.device}: not open")
        try:
            self._ser.baudrate = baud
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"{self.device}: cannot set {baud} baud: {exc}") from exc
        self._baud = baud
        self.description = f"serial:{self.device}@{baud}"
