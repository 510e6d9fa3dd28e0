"""TCP transport (Wi-Fi adapters; 192.168.0.10:35000 is the usual address).

Bytes kept: asyncio's StreamReader pauses reading the socket once it holds more than twice its
``limit`` (:data:`STREAM_LIMIT_BYTES`, so 128 KiB) unread, and TCP's window then stops the sender:
backpressure, nothing dropped, rather than a queue that grows while nobody reads. Each read takes at
most :data:`READ_CHUNK_BYTES`, and answers are capped by
:meth:`~gateway.transport.base.Transport.read_until`. A settle (see :mod:`gateway.transport.base`)
pauses reading the socket unless the StreamReader already paused it. A burst of the link pump (see
:mod:`gateway.transport.base`) pauses it the same way and reads and writes the socket from the worker
thread, only when asyncio holds no unread and no unsent bytes of it.
"""

from __future__ import annotations

import asyncio

from gateway.errors import TransportError
from gateway.transport.base import Transport

DEFAULT_HOST = "192.168.0.10"
DEFAULT_PORT = 35000
#: StreamReader's limit: reading the socket pauses above twice this many unread bytes
STREAM_LIMIT_BYTES = 64 * 1024
#: bytes taken from the StreamReader per read
READ_CHUNK_BYTES = 4096


class TcpTransport(Transport):
    """A TCP connection to an adapter."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, connect_timeout_s: float = 5.0) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._settle_paused = False  # a settle paused the socket (the StreamReader may pause it too)
        self._failed: TransportError | None = None  # a burst saw the connection end
        self.description = f"tcp:{host}:{port}"

    async def _open(self) -> None:
        self._failed = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, limit=STREAM_LIMIT_BYTES
                )
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"{self.description}: cannot connect: {exc or 'timed out'}") from exc

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # the peer is already gone

    async def _write(self, data: bytes) -> None:
        if self._failed is not None:
            raise self._failed
        if self._writer is None:
            raise TransportError(f"{self.description}: not open")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise TransportError(f"{self.description}: write failed: {exc}") from exc

    def _socket_transport(self) -> asyncio.ReadTransport | None:
        transport = self._writer.transport if self._writer is not None else None
        if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
            return transport
        return None

    def _pause_input(self) -> None:
        # only a socket being read: one paused by the StreamReader's backpressure stays as it is
        transport = self._socket_transport()
        if transport is not None and transport.is_reading():
            transport.pause_reading()
            self._settle_paused = True

    def _resume_input(self) -> None:
        # what arrived meanwhile is read on the loop's next turn, without blocking
        transport = self._socket_transport()
        if self._settle_paused and transport is not None:
            transport.resume_reading()
        self._settle_paused = False

    def _burst_fd(self) -> int | None:
        transport = self._socket_transport()
        reader, writer = self._reader, self._writer
        if transport is None or reader is None or writer is None or self._failed is not None:
            return None
        # StreamReader has no public count of what it holds; a burst must not overtake those bytes
        unread = len(getattr(reader, "_buffer", b"x"))
        if not transport.is_reading() or writer.transport.get_write_buffer_size() or unread or reader.at_eof():
            return None
        sock = transport.get_extra_info("socket")
        return int(sock.fileno()) if sock is not None else None

    def _burst_failed(self, why: str) -> None:
        self._failed = TransportError(why)

    async def _read_chunk(self) -> bytes:
        if self._failed is not None:
            raise self._failed
        if self._reader is None:
            raise TransportError(f"{self.description}: not open")
        try:
            data = await self._reader.read(READ_CHUNK_BYTES)
        except OSError as exc:
            raise TransportError(f"{self.description}: read failed: {exc}") from exc
        if not data:
            raise TransportError(f"{self.description}: connection closed by the adapter")
        return data
