"""Serial transport (USB adapters, Bluetooth classic through ``/dev/rfcommN``) with pyserial.

pyserial opens and configures the port; the event loop watches its file descriptor
(``loop.add_reader``), so no thread blocks and a vanished device (EIO, EOF on a closed
pseudo-terminal, a USB unplug) surfaces at once as :class:`~gateway.errors.TransportError`.

Bytes kept: the receive queue stops reading the descriptor at 64 KiB unread (backpressure, see
:mod:`gateway.transport._queue`): the kernel's tty buffer holds the rest, or drops it on a UART
without flow control, so a device that streams while nobody reads never grows our memory. Answers are
capped by :meth:`~gateway.transport.base.Transport.read_until`.
"""

from __future__ import annotations

import asyncio
import errno
import os

import serial

from gateway.errors import TransportError
from gateway.transport._queue import ChunkQueue
from gateway.transport.base import Transport


class SerialTransport(Transport):
    """A serial device at a baud rate (8N1, no flow control)."""

    def __init__(self, device: str, baud: int = 38400) -> None:
        super().__init__()
        self.device = device
        self._baud = baud
        self._ser: serial.Serial | None = None
        self._rx = ChunkQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.description = f"serial:{device}@{baud}"

    @property
    def baud(self) -> int | None:
        return self._baud

    async def _open(self) -> None:
        self._rx = ChunkQueue(pause=self._stop_reading, resume=self._resume_reading)
        self._loop = asyncio.get_running_loop()
        try:
            ser = serial.Serial(self.device, self._baud, timeout=0, write_timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"{self.device}: cannot open: {exc}") from exc
        self._ser = ser
        os.set_blocking(ser.fileno(), False)
        self._loop.add_reader(ser.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        ser = self._ser
        if ser is None:
            return
        try:
            data = os.read(ser.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._stop_reading()
            self._rx.fail(TransportError(f"{self.device}: read failed: {exc.strerror or exc}"))
            return
        if not data:
            self._stop_reading()
            self._rx.fail(TransportError(f"{self.device}: device closed"))
            return
        self._rx.feed(data)

    def _resume_reading(self) -> None:
        if self._ser is not None and self._loop is not None and self._rx.failed is None:
            self._loop.add_reader(self._ser.fileno(), self._on_readable)

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
