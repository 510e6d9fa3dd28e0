"""The async byte-stream interface every adapter transport implements.

A transport moves bytes to and from an adapter and knows nothing about what they mean. Concrete
transports implement four primitives (``_open``, ``_close``, ``_write``, ``_read_chunk``); the base
class adds buffering and :meth:`Transport.read_until`, which the ELM327 session uses to read up to the
``>`` prompt. Every failure surfaces as :class:`~gateway.errors.TransportError` (a closed or unplugged
device), :class:`~gateway.errors.TransportTimeout`, or :class:`~gateway.errors.OversizedAnswer` (an
answer past the bytes kept per answer).

Bytes kept per answer
---------------------
A broken or hostile adapter (Wi-Fi adapters are often open access points) can stream without ever
sending CR or ``>``. :meth:`Transport.read_until` therefore keeps at most ``max_bytes`` per answer
(separator included), :data:`DEFAULT_MAX_ANSWER_BYTES` unless the caller asks for more. Past the cap
it raises :class:`OversizedAnswer` at once (it does not wait for a separator that may never come),
drops what it held, and *skips*: later reads discard bytes up to the end of that answer (its
separator), so the tail of an oversized answer is never read as the answer to the next command. The
skip ends at the separator, when the line goes quiet for :data:`QUIET_S` (in
:meth:`Transport.drain_input`, or at the end of a ``read_until`` wait) or when
:meth:`Transport.discard_pending` drops the separator. Memory held is the cap plus one received chunk
(at most 16 KiB), whatever streams.

Bursts
------
:meth:`Transport.exchange_burst` hands a burst of OBD request lines to the link pump
(:mod:`gateway.transport.pump`) in the transport's worker thread, where transports with a file descriptor
offer one (serial); the event loop is not woken until the burst is over. Every line of a burst passes the
write guard (:meth:`~gateway.obd.guard.ElmWriteGuard.check_burst`) before the first one is written, and
the pump writes each line only at the ``>`` prompt. While a burst runs, nothing else reads or writes the
transport: :meth:`Transport.write`, :meth:`Transport.read_until` and :meth:`Transport.close` wait for it.

Settling
--------
Each chunk that arrives while :meth:`Transport.read_until` waits is one wake-up of the process, and
on a small board a wake-up costs more CPU than the Python work an answer needs (100-180 µs measured
on a 2-core VM). An ELM327 prints an answer line by line, so a 6-PID answer came in five chunks. A
caller that knows the answer cannot be complete before ``settle_s`` passes it: the transport stops
watching its input for that long (bytes wait in the kernel, or in the receive queue), then takes
everything that arrived in one go; then reading goes on chunk by chunk as without a settle. A
settle never outlasts ``wait_s``; the cap, the skipping, time-outs, the write guard and a closed
device behave as without it, and a wrong guess costs a wake-up or the settle's length in
latency, never an answer.

The figures (ELM327 datasheet, "CAN Message Formats" and "Multiline Responses"; ISO 15765-2):

* the longest ISO-TP message is 4095 data bytes: a first frame with 6 of them, then 585 consecutive
  frames with 7 (the last holds 1), 586 CAN frames;
* the widest text the chip prints for it is one line per frame with the 29-bit header (``18 DA F1 10
  ``, 12 characters), the DLC (``8 ``, ATD1), all 8 data bytes as ``XX `` (24; CAF off, or headers on
  where the chip shows whole frames) and CR LF (ATL1): 40 characters × 586 = 23,440 bytes, plus the
  echo, ``SEARCHING...`` and the prompt (< 100). Headers off with CAF on (``0: 49 02 …``, a 3-digit
  length line first, the last line padded) is 15,238 bytes; 11-bit headers with CAF on, 17,580.
  :data:`ISOTP_MAX_ANSWER_BYTES` (24 KiB) admits the widest form; a session passes it as
  ``max_bytes`` for services that can return long messages (03/07/0A DTC lists, 09, 21/22 reads).
* a mode 01 answer is at most 1 + 6 × 5 = 31 bytes (6 PIDs of at most 4 data bytes): 5 frames, 200
  characters in the widest form per ECU, 1,600 for 8 ECUs answering a functional request.
  :data:`DEFAULT_MAX_ANSWER_BYTES` (4 KiB) admits that more than twice over, and every AT answer.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from gateway.errors import OversizedAnswer, TransportError, TransportTimeout
from gateway.obd.guard import ElmWriteGuard
from gateway.transport import pump

#: Bytes kept per answer unless the caller asks for more: mode 01 and AT answers (module docstring).
DEFAULT_MAX_ANSWER_BYTES = 4 * 1024
#: Bytes that admit a 4095-byte ISO-TP message in the widest ELM327 text form (module docstring).
ISOTP_MAX_ANSWER_BYTES = 24 * 1024
#: Silence after which the rest of an oversized answer is taken as over (drain_input's default too)
QUIET_S = 0.05


class Transport(abc.ABC):
    """One connection to an adapter: an async context manager, reusable after :meth:`close`."""

    #: a short description for logs and ``status()`` (``serial:/dev/ttyUSB0@38400``)
    description: str = ""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._is_open = False
        #: every write passes it: read-only toward the car, one line per prompt (see gateway.obd.guard)
        self.guard = ElmWriteGuard()
        #: the cap :meth:`read_until` applies when the caller gives no ``max_bytes``
        self.max_answer_bytes = DEFAULT_MAX_ANSWER_BYTES
        # the separator ending the oversized answer whose rest is being skipped, if any
        self._skip_until: bytes | None = None
        #: answers refused for their size, and bytes discarded by the caps (for status and tests)
        self.oversized = 0
        self.bytes_discarded = 0
        #: batches of received bytes taken in (each one a wake-up while a reader waits; for tests/bench)
        self.chunks_read = 0
        #: whether the last read_until's answer was whole when its first settle ended (then its
        #: duration only bounds the answer time from above; see gateway.elm327.lines.AnswerTimes)
        self.settle_was_late = False
        #: the burst in the worker thread, while one runs; its halt flag (see gateway.transport.pump)
        self._burst: asyncio.Future[pump.Burst] | None = None
        self._halt = bytearray(1)
        self._pump_thread: ThreadPoolExecutor | None = None
        self._burst_cap = 0
        #: bursts run, and the pump build they ran with (``status`` and the benchmarks show them)
        self.bursts = 0
        self.pump_build = pump.PUMP_BUILD

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

    def _pause_input(self) -> None:
        """Stop watching the input during a settle (where the transport can; nothing is lost)."""
        return

    def _resume_input(self) -> None:
        """Watch the input again after a settle, taking in what arrived meanwhile where it can."""
        return

    def _read_ready(self) -> bytes:
        """Bytes received and not yet read, without waiting (``b""`` if none or not knowable).

        Raises like :meth:`_read_chunk` when the stream ended and nothing is left."""
        return b""

    def _burst_fd(self) -> int | None:
        """The descriptor the link pump may read and write now, or None (no bursts on this transport)."""
        return None

    def _burst_failed(self, why: str) -> None:
        """The pump saw the stream end or fail: fail the transport as a read would have."""
        return

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
        self._skip_until = None
        await self._open()
        self._is_open = True

    async def close(self) -> None:
        """Disconnect (idempotent). A burst in progress is halted and waited for first."""
        if not self._is_open:
            return
        self._halt[0] = 1
        await self._burst_over()
        self._is_open = False
        await self._close()
        if self._pump_thread is not None:
            self._pump_thread.shutdown(wait=False)
            self._pump_thread = None

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the adapter, if the write guard lets it (DisallowedRequest otherwise)."""
        await self._burst_over()
        if not self._is_open:
            raise TransportError(f"{self.description or 'transport'}: not open")
        self.guard.check(data)  # the lowest write point of every byte transport: nothing gets past it
        await self._write(data)

    async def read(self, wait_s: float | None = None) -> bytes:
        """Whatever is buffered, or the next chunk that arrives (at least one byte, at most 16 KiB).

        Raw bytes, uncapped by answers: an oversized answer being skipped is not skipped here. Raises
        :class:`OversizedAnswer` when a full receive queue dropped bytes before this chunk."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        return await self._chunk(wait_s)

    async def read_until(
        self,
        separator: bytes,
        wait_s: float,
        *,
        max_bytes: int | None = None,
        settle_s: float = 0.0,
    ) -> bytes:
        """Bytes up to and including ``separator``, at most ``max_bytes`` of them; the rest stays buffered.

        ``max_bytes`` defaults to :attr:`max_answer_bytes` (:data:`DEFAULT_MAX_ANSWER_BYTES`); pass
        :data:`ISOTP_MAX_ANSWER_BYTES` where a long ISO-TP answer is legitimate.

        ``settle_s``: the answer cannot be complete before then, so the input is not watched until
        then and what arrived is taken in one go (see the module docstring); it only saves wake-ups,
        the result is the same without it. :attr:`settle_was_late` tells whether it was whole by then.

        Raises :class:`OversizedAnswer` as soon as the answer passes ``max_bytes`` (what was held is
        dropped and the rest of that answer is skipped by later reads, see the module docstring), and
        also when the wait ends while the rest of an earlier oversized answer is still streaming in.
        Raises :class:`TransportTimeout` when ``separator`` did not arrive within ``wait_s``
        seconds; what was read so far stays buffered (see :meth:`take_buffer`).
        """
        limit = self.max_answer_bytes if max_bytes is None else max_bytes
        if limit < len(separator):
            raise ValueError(f"max_bytes={limit} is shorter than the separator")
        await self._burst_over()
        deadline = time.monotonic() + wait_s
        if self._skip_until is not None:
            await self._skip_oversized(deadline, wait_s)
        start = 0
        settling = settle_s > 0
        from_settle = False  # whether the bytes read last came from the settle's read
        self.settle_was_late = False
        while True:
            idx = self._buffer.find(separator, start)
            if idx >= 0:
                end = idx + len(separator)
                if end > limit:
                    # the answer ended, but too long: drop it whole, keep what follows it
                    del self._buffer[:end]
                    self._refused(end)
                    raise OversizedAnswer(f"{self._what()}: an answer of {end} bytes, more than the {limit} kept")
                data = bytes(self._buffer[:end])
                del self._buffer[:end]
                self.settle_was_late = from_settle
                return data
            if len(self._buffer) >= limit:
                # no separator within the cap: the answer is longer than the cap whatever follows
                self._overflow(separator)
                raise OversizedAnswer(
                    f"{self._what()}: more than {limit} bytes without {separator!r} (a broken adapter?); discarded"
                )
            start = max(0, len(self._buffer) - len(separator) + 1)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportTimeout(f"{self._what()}: no {separator!r} within {wait_s:.2f} s")
            try:
                from_settle, settling = settling, False
                if from_settle:
                    chunk = await self._settle(min(settle_s, remaining))
                else:
                    chunk = await self._chunk(remaining)
            except OversizedAnswer:
                self._overflow(separator)  # bytes were lost before this answer's end: never read it as whole
                raise
            self._buffer += chunk

    def _what(self) -> str:
        return self.description or "transport"

    # -- bursts (see the module docstring) ----------------------------------------------------------
    def halt_burst(self) -> None:
        """Ask a running burst to stop before its next request (it finishes the one in progress)."""
        self._halt[0] = 1

    async def exchange_burst(
        self, lines: Sequence[bytes], settles: Sequence[float], wait_s: float, max_bytes: int
    ) -> pump.Burst | None:
        """Run ``lines`` through the link pump; None when this transport cannot now (nothing was written).

        The write guard checks every line first (DisallowedRequest before any byte leaves). After the
        burst the bytes it left unread (the rest of an answer that timed out, stray bytes after a prompt)
        are buffered as :meth:`read_until` would have left them, and an oversized answer is being skipped
        as it would be there. A cancelled caller does not stop the burst: the transport finishes it (and
        its bookkeeping) before any other read, write or close."""
        fd = self._burst_fd()
        if fd is None or not self._is_open or not lines or self._buffer or self._skip_until is not None:
            return None
        if self.queued_bytes:
            return None  # bytes nobody asked for are waiting: the ordinary path counts and drops them
        self.guard.check_burst(lines)
        self._pause_input()
        self._halt[0] = 0
        self._burst_cap = max_bytes
        if self._pump_thread is None:
            self._pump_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="link-pump")
        loop = asyncio.get_running_loop()
        job = functools.partial(
            pump.run, pump.pump, fd, lines, settles=settles, wait_s=wait_s, max_bytes=max_bytes, halt=self._halt
        )
        future = loop.run_in_executor(self._pump_thread, job)
        self._burst = future
        future.add_done_callback(self._burst_finished)  # runs first, cancelled caller or not
        return await asyncio.shield(future)

    def _burst_finished(self, future: asyncio.Future[pump.Burst]) -> None:
        self._burst = None
        self.bursts += 1
        if future.cancelled() or future.exception() is not None:
            self.guard.burst_written(1, 0)  # unknown: as if a line went out unanswered (AT lines only now)
            self._resume_input()
            return
        burst = future.result()
        self.chunks_read += burst.reads
        self.guard.burst_written(burst.sent, len(burst.answers))
        if burst.partial:
            self.guard.saw_input(burst.partial)
            self._buffer += burst.partial
        if burst.status == pump.OVERSIZED:
            self._refused(self._burst_cap)
            self._skip_until = b">"  # the rest of that answer is skipped by later reads
        if burst.status in (pump.CLOSED, pump.FAILED):
            why = "device closed" if burst.status == pump.CLOSED else f"read failed: errno {burst.err}"
            self._burst_failed(f"{self._what()}: {why}")
        self._resume_input()

    async def _burst_over(self) -> None:
        """Wait for a burst still running in the worker thread (a cancelled caller left it)."""
        burst = self._burst
        if burst is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(burst)

    def _refused(self, n: int) -> None:
        self.oversized += 1
        self.bytes_discarded += n

    def _overflow(self, separator: bytes) -> None:
        self._refused(len(self._buffer))
        self._buffer.clear()
        self._skip_until = separator

    async def _skip_oversized(self, deadline: float, wait_s: float) -> None:
        """Discard the rest of an oversized answer, up to and including its separator.

        When the wait ends first, the skipping ends too if the line has been quiet for
        :data:`QUIET_S` (that answer stopped without its separator); it raises OversizedAnswer if
        bytes of it were skipped during this wait, else TransportTimeout.
        """
        sep = self._skip_until
        assert sep is not None
        skipped = 0
        last_rx = time.monotonic()
        while True:
            idx = self._buffer.find(sep)
            if idx >= 0:
                end = idx + len(sep)
                del self._buffer[:end]
                self.bytes_discarded += end
                self._skip_until = None
                return
            # keep a possible start of a multi-byte separator, drop the rest
            drop = max(0, len(self._buffer) - (len(sep) - 1))
            skipped += drop
            self.bytes_discarded += drop
            del self._buffer[:drop]
            remaining = deadline - time.monotonic()
            if remaining > 0:
                try:
                    self._buffer += await self._chunk(remaining)
                    last_rx = time.monotonic()
                    continue
                except OversizedAnswer:
                    continue  # a hole in bytes we drop anyway
                except TransportTimeout:
                    pass
            quiet = time.monotonic() - last_rx >= QUIET_S
            if quiet:
                self._skip_until = None
            if skipped:
                state = "then quiet" if quiet else "still streaming"
                raise OversizedAnswer(
                    f"{self._what()}: the rest of an oversized answer, {skipped} more bytes without {sep!r} "
                    f"in {wait_s:.2f} s, {state}; discarded"
                )
            raise TransportTimeout(f"{self._what()}: no {sep!r} within {wait_s:.2f} s")

    def peek(self) -> bytes:
        """What is buffered (read but not yet consumed), without consuming it."""
        return bytes(self._buffer)

    def discard_pending(self) -> int:
        """Drop what was received but not consumed (stale bytes before a new command); returns the count.

        Ends the skipping of an oversized answer when its separator is among the bytes dropped."""
        queued = self._take_queued()
        n = len(self._buffer) + len(queued)
        self.guard.saw_input(bytes(self._buffer) + queued)  # a prompt among stale bytes: the chip waits
        if self._skip_until is not None:
            self.bytes_discarded += n
            if self._skip_until in bytes(self._buffer) + queued:  # both bounded: cap + queue
                self._skip_until = None
        self._buffer.clear()
        return n

    def _take_queued(self) -> bytes:
        """Transports with a receive queue remove and return its content here (bounded by the queue)."""
        return b""

    @property
    def queued_bytes(self) -> int:
        """Bytes received into the transport's queue and not yet read (0 where there is none)."""
        return 0

    def take_buffer(self) -> bytes:
        """Remove and return whatever is buffered."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def drain_input(self, quiet_s: float = 0.05, max_s: float = 1.0) -> bytes:
        """Read and discard until the line has been quiet for ``quiet_s`` (stale bytes after a fault).

        Returns the first :attr:`max_answer_bytes` bytes drained (for logs); the rest is counted in
        :attr:`bytes_discarded`, never kept. A quiet line, or the separator of an oversized answer
        being skipped, ends that skipping.
        """
        sep = self._skip_until
        got = bytearray(self.take_buffer())
        tail = b""
        cap = self.max_answer_bytes
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            try:
                chunk = await self._chunk(min(quiet_s, max(0.0, deadline - time.monotonic())))
            except TransportTimeout:
                self._skip_until = None
                break
            except OversizedAnswer:
                continue  # bytes dropped by a full queue: we drop them too
            if sep is not None:
                if sep in tail + chunk:
                    self._skip_until = sep = None
                else:
                    tail = (tail + chunk)[-(len(sep) - 1) :] if len(sep) > 1 else b""
            room = cap - len(got)
            if room > 0:
                got += chunk[:room]
        return bytes(got[:cap])

    async def set_baud(self, baud: int) -> None:
        """Change the local baud rate (serial only); other transports raise TransportError."""
        raise TransportError(f"{self.description or 'transport'}: has no baud rate")

    @property
    def baud(self) -> int | None:
        """The local baud rate, or None where the notion does not apply."""
        return None

    async def _settle(self, pause_s: float) -> bytes:
        """Sleep ``pause_s`` without watching the input, then take what arrived (maybe nothing)."""
        self._pause_input()
        try:
            await asyncio.sleep(pause_s)
        finally:
            self._resume_input()
        if not self._is_open:
            raise TransportError(f"{self.description or 'transport'}: not open")
        chunk = self._read_ready()
        if chunk:
            self.chunks_read += 1
            self.guard.saw_input(chunk)
        return chunk

    async def _chunk(self, wait_s: float | None) -> bytes:
        if not self._is_open:
            raise TransportError(f"{self.description or 'transport'}: not open")
        if wait_s is None:
            chunk = await self._read_chunk()
            self.chunks_read += 1
            self.guard.saw_input(chunk)
            return chunk
        try:
            async with asyncio.timeout(wait_s):
                chunk = await self._read_chunk()
            self.chunks_read += 1
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
