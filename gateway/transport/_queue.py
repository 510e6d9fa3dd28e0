"""A bounded chunk queue shared by transports whose bytes arrive through callbacks (fd readers, BLE).

The queue holds what arrived but was not yet read. A reader that stops consuming (the poller asleep
between parked checks, a stuck task) must not let it grow, so it holds at most ``limit`` bytes, in
one of two ways chosen by the transport:

* **backpressure** (``pause``/``resume`` given; serial): at ``limit`` the transport stops reading its
  file descriptor; the kernel's tty buffer then holds the bytes, and on a real UART without flow
  control the kernel drops them once that buffer is full (a pseudo-terminal blocks its writer). We
  never lose a byte ourselves, and reading resumes when the queue is down to half.
* **drop oldest** (no ``pause``; BLE): notifications cannot be paused, so the oldest chunks go. The
  oldest bytes are the stalest ones (a resync discards them anyway) and the newest are those nearest
  to the next prompt. The hole is not hidden: the next :meth:`ChunkQueue.get` raises
  :class:`~gateway.errors.OversizedAnswer`, so an answer with bytes missing is never read as whole.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from gateway.errors import OversizedAnswer, TransportError

#: Bytes a queue holds at most (plus one chunk in backpressure mode). 64 KiB is more than two
#: ISO-TP-sized answers in the widest ELM327 format (see gateway.transport.base), so a legitimate
#: answer never waits on it, and little enough to be irrelevant on a Raspberry Pi.
QUEUE_LIMIT_BYTES = 64 * 1024
#: Bytes one :meth:`ChunkQueue.get` returns at most (chunks joined).
GET_LIMIT_BYTES = 16 * 1024


class ChunkQueue:
    """Received chunks, or the error that ended the stream; bounded (see the module docstring)."""

    def __init__(
        self,
        limit: int = QUEUE_LIMIT_BYTES,
        *,
        pause: Callable[[], None] | None = None,
        resume: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self._pause = pause
        self._resume = resume
        self._paused = False
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._ready = asyncio.Event()
        self._failed: TransportError | None = None
        self._lost = 0  # bytes dropped since the last get/discard (drop-oldest mode)
        #: bytes dropped in total because the queue was full (drop-oldest mode only)
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        """Hand over bytes received (called from the event loop)."""
        if not data:
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size >= self.limit:
            if self._pause is not None:
                if not self._paused:
                    self._paused = True
                    self._pause()
            else:
                while self._size > self.limit and len(self._chunks) > 1:
                    self._drop_oldest()
                if self._size > self.limit:  # one chunk alone larger than the queue: keep its tail
                    only = self._chunks.pop()
                    self._lost += len(only) - self.limit
                    self.dropped += len(only) - self.limit
                    self._chunks.append(only[-self.limit :])
                    self._size = self.limit
        self._ready.set()

    def _drop_oldest(self) -> None:
        old = self._chunks.popleft()
        self._size -= len(old)
        self._lost += len(old)
        self.dropped += len(old)

    def fail(self, exc: TransportError) -> None:
        """End the stream: once the queued bytes are read, every later read raises ``exc``."""
        if self._failed is None:
            self._failed = exc
            self._ready.set()

    @property
    def failed(self) -> TransportError | None:
        """The error that ended the stream, if any."""
        return self._failed

    @property
    def queued(self) -> int:
        """Bytes held now."""
        return self._size

    @property
    def paused(self) -> bool:
        """Whether the transport was asked to stop reading (backpressure)."""
        return self._paused

    def _maybe_resume(self) -> None:
        if self._paused and self._size <= self.limit // 2:
            self._paused = False
            if self._resume is not None:
                self._resume()

    def discard(self) -> int:
        """Drop the queued chunks (not an error that ended the stream); returns the bytes dropped."""
        return len(self.take_all())

    def take_all(self) -> bytes:
        """Remove and return everything queued (at most ``limit`` plus one chunk)."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        self._lost = 0  # the hole, if any, was in what the caller is dropping
        self._maybe_resume()
        return data

    async def get(self) -> bytes:
        """The next bytes (queued chunks joined, up to GET_LIMIT_BYTES).

        Raises :class:`OversizedAnswer` once after bytes were dropped (the rest is served after
        it), and the stream's error once the queue ran dry after the stream ended.
        """
        while not self._chunks and self._failed is None:
            self._ready.clear()
            await self._ready.wait()
        return self._take()

    def get_nowait(self) -> bytes:
        """What :meth:`get` would return now, or ``b""`` when nothing is queued (same errors)."""
        if not self._chunks and self._failed is None:
            return b""
        return self._take()

    def _take(self) -> bytes:
        if self._lost:
            lost, self._lost = self._lost, 0
            raise OversizedAnswer(f"{lost} bytes dropped: the receive queue was full ({self.limit} bytes)")
        if not self._chunks:
            assert self._failed is not None
            raise self._failed
        parts = [self._chunks.popleft()]
        n = len(parts[0])
        while self._chunks and n + len(self._chunks[0]) <= GET_LIMIT_BYTES:
            nxt = self._chunks.popleft()
            parts.append(nxt)
            n += len(nxt)
        self._size -= n
        self._maybe_resume()
        return parts[0] if len(parts) == 1 else b"".join(parts)
