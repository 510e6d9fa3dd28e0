"""The async byte-stream interface every adapter transport implements.

A transport moves bytes to and from an adapter and knows nothing about what they mean. Concrete
transports implement four primitives (``_open``, ``_close``, ``_write``, ``_read_chunk``); the base
class adds buffering and :meth:`Transport.read_until`, which the ELM327 session uses to read up to the
``>`` prompt. Every failure surfaces as :class:`~gateway.errors.TransportError` (a closed or unplugged
device) or :class:`~gateway.errors.TransportTimeout`.
"""

from __future__ import annotations

import abc
import asyncio
import time
from types import TracebackType

from gateway.errors import TransportError, TransportTimeout
from gateway.obd.guard import ElmWriteGuard


class Transport(abc.ABC):
    """One connection to an adapter: an async context manager, reusable after :meth:`close`."""

    #: a short description for logs and ``status()`` (``serial:/dev/ttyUSB0@38400``)
    description: str = ""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._is_open = False
        #: every write passes it: read-only toward the car, one line per prompt (see gateway.obd.guard)
        self.guard = ElmWriteGuard()

    # -- primitives a transport implements -------------------------------------------------------
    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def _read_chunk(self) -> bytes:
        """At least one byte; raises TransportError when the stream ended."""

    # -- public API -------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` has not been called since."""
        return self._is_open

    async def open(self) -> None:
        """Connect to the adapter."""
        if self._is_open:
            return
        self._buffer.clear()
        self.guard.reset()
        await self._open()
        self._is_open = True

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        if not self._is_open:
            return
        self._is_open = False
        await self._close()

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the adapter, if the write guard lets it (DisallowedRequest otherwise)."""
        if not self._is_open:
            raise TransportError(f"{self.description or 'transport'}: not open")
        self.guard.check(data)  # the lowest write point of every byte transport: nothing gets past it
        await self._write(data)

    async def read(self, wait_s: float | None = None) -> bytes:
        """Whatever is buffered, or the next chunk that arrives (at least one byte)."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        return await self._chunk(wait_s)

    async def read_until(self, separator: bytes, wait_s: float) -> bytes:
        """Bytes up to and including ``separator``; the rest stays buffered.

        Raises :class:`TransportTimeout` when ``separator`` did not arrive within ``wait_s``
        seconds; what was read so far stays buffered (see :meth:`take_buffer`).
        """
        deadline = time.monotonic() + wait_s
        start = 0
        while True:
            idx = self._buffer.find(separator, start)
            if idx >= 0:
                end = idx + len(separator)
                data = bytes(self._buffer[:end])
                del self._buffer[:end]
                return data
            start = max(0, len(self._buffer) - len(separator) + 1)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportTimeout(f"{self.description or 'transport'}: no {separator!r} within {wait_s:.2f} s")
            self._buffer += await self._chunk(remaining)

    def peek(self) -> bytes:
        """What is buffered (read but not yet consumed), without consuming it."""
        return bytes(self._buffer)

    def discard_pending(self) -> int:
        """Drop what was received but not consumed (stale bytes before a new command); returns the count."""
        n = len(self._buffer)
        self.guard.saw_input(bytes(self._buffer))  # a prompt among stale bytes still means the chip waits
        self._buffer.clear()
        return n + self._discard_queued()

    def _discard_queued(self) -> int:
        """Transports with a receive queue drop its content here."""
        return 0

    def take_buffer(self) -> bytes:
        """Remove and return whatever is buffered."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def drain_input(self, quiet_s: float = 0.05, max_s: float = 1.0) -> bytes:
        """Read and discard until the line has been quiet for ``quiet_s`` (stale bytes after a fault)."""
        got = bytearray(self.take_buffer())
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            try:
                got += await self._chunk(min(quiet_s, max(0.0, deadline - time.monotonic())))
            except TransportTimeout:
                break
        return bytes(got)

    async def set_baud(self, baud: int) -> None:
        """Change the local baud rate (serial only); other transports raise TransportError."""
        raise TransportError(f"{self.description or 'transport'}: has no baud rate")

    @property
    def baud(self) -> int | None:
        """The local baud rate, or None where the notion does not apply."""
        return None

    async def _chunk(self, wait_s: float | None) -> bytes:
        if not self._is_open:
            raise TransportError(f"{self.description or 'transport'}: not open")
        if wait_s is None:
            chunk = await self._read_chunk()
            self.guard.saw_input(chunk)
            return chunk
        try:
            async with asyncio.timeout(wait_s):
                chunk = await self._read_chunk()
            self.guard.saw_input(chunk)
            return chunk
        except TimeoutError:
            what = self.description or "transport"
            raise TransportTimeout(f"{what}: nothing received within {wait_s:.2f} s") from None

    async def __aenter__(self) -> Transport:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
