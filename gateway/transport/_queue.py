"""A chunk queue shared by transports whose bytes arrive through callbacks (fd readers, BLE)."""

from __future__ import annotations

import asyncio

from gateway.errors import TransportError


class ChunkQueue:
    """Received chunks, or the error that ended the stream; a waiting reader never loses data."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | TransportError] = asyncio.Queue()
        self._failed: TransportError | None = None

    def feed(self, data: bytes) -> None:
        """Hand over bytes received (called from the event loop)."""
        if data:
            self._queue.put_nowait(data)

    def fail(self, exc: TransportError) -> None:
        """End the stream: every later read raises ``exc``."""
        if self._failed is None:
            self._failed = exc
            self._queue.put_nowait(exc)

    @property
    def failed(self) -> TransportError | None:
        """The error that ended the stream, if any."""
        return self._failed

    def discard(self) -> int:
        """Drop the queued chunks (not an error that ended the stream); returns the bytes dropped."""
        n = 0
        kept: list[bytes | TransportError] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, TransportError):
                kept.append(item)
            else:
                n += len(item)
        for item in kept:
            self._queue.put_nowait(item)
        return n

    async def get(self) -> bytes:
        """The next chunk (everything queued, joined); raises the stream's error once it ended."""
        item = await self._queue.get()
        if isinstance(item, TransportError):
            self._queue.put_nowait(item)  # keep failing for later readers
            raise item
        parts = [item]
        while not self._queue.empty():
            nxt = self._queue.get_nowait()
            if isinstance(nxt, TransportError):
                self._queue.put_nowait(nxt)
                break
            parts.append(nxt)
        return b"".join(parts)
