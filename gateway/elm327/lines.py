"""The ELM327 line protocol: one command line out, everything up to the ``>`` prompt back, classified.

One exchange at a time (a lock); a protocol search in progress (``SEARCHING...``) extends the wait to the
adapter time-out; bytes left over from an earlier answer are discarded before a new command, never read
as its answer. The write guard in the transport refuses any line not allowed toward the car, and any OBD
request before the prompt (see :mod:`gateway.obd.guard`).

Each chunk an answer arrives in wakes the process, and a wake-up costs more CPU than the answer's
Python work. A request line sent before (a poll round repeats the same few) is answered in about the
time it took recently, so :class:`AnswerTimes` predicts a settle for it (the transport does not watch
its input until then, see :mod:`gateway.transport.base`) and its answer's length (for a second settle
over the missing bytes). A wrong guess costs a wake-up or a little latency, never an answer.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import NamedTuple

from gateway.elm327 import commands as cmd
from gateway.elm327.responses import Answer, Kind, classify, raise_for
from gateway.errors import GatewayError, OversizedAnswer, TransportError, TransportTimeout, UnsupportedCommand
from gateway.obd.guard import request_service
from gateway.transport import pump
from gateway.transport.base import DEFAULT_MAX_ANSWER_BYTES, ISOTP_MAX_ANSWER_BYTES, Transport

log = logging.getLogger("gateway.elm327")

# AT commands whose answer is a text rather than OK
TEXT_COMMANDS = frozenset({b"ATI", b"ATRV", b"ATDPN", b"ATDP", b"STI", b"STDI", b"AT@1", b"ATZ", b"ATWS", b"ATLP"})
#: services whose answer can be a long multi-frame ISO-TP message (DTC lists, vehicle info, 21/22 reads)
LONG_ANSWER_SERVICES = frozenset({0x03, 0x07, 0x09, 0x0A, 0x21, 0x22})


#: command lines whose answer times are remembered (least recently used forgotten first)
TIMED_LINES = 32
#: write→prompt durations remembered per line (they bound the settle from above)
TIMES_PER_LINE = 4
#: the first settle of a line ends this much before its first answer time
SETTLE_MARGIN_S = 0.001
#: the share of settles meant to end after the answer is whole (then it waited for us); the rest
#: end while it arrives and cost a second wake-up. Chosen by measurement (docs/link.md).
LATE_SHARE = 0.3
#: how far one exchange moves a line's settle (late: earlier by STEP×(1−share); early: later by STEP×share)
SETTLE_STEP_S = 0.0005


class AnswerTimes:
    """Recent answer times of request lines, and the settle each one gets; bounded.

    A settle that ended after the answer was whole says only that the answer was not slower (we
    were asleep when it arrived), one that ended before says it was slower. So the settle is steered
    by that outcome alone, toward the point where :data:`LATE_SHARE` of them end late (a quantile of
    the answer time learnt without seeing it): ECU latency jitter (±2 ms in the simulator) makes any
    later point cost throughput, any earlier one wake-ups.
    """

    def __init__(self, lines: int = TIMED_LINES, per_line: int = TIMES_PER_LINE) -> None:
        self.lines = lines
        self.per_line = per_line
        # line -> (recent durations, settle)
        self._times: OrderedDict[bytes, tuple[deque[float], float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._times)

    def predict(self, line: bytes) -> float:
        """The settle (s) for ``line``: 0.0 for a line not seen recently."""
        known = self._times.get(line)
        if known is None:
            return 0.0
        self._times.move_to_end(line)
        return known[1]

    def record(self, line: bytes, duration_s: float, *, late: bool | None = None) -> None:
        """Remember that ``line`` was answered ``duration_s`` after it was written.

        ``late``: whether the settle ended after the answer was whole (None: there was no settle)."""
        known = self._times.get(line)
        if known is None:
            if len(self._times) >= self.lines:
                self._times.popitem(last=False)
            settle = max(0.0, duration_s - SETTLE_MARGIN_S)
            self._times[line] = (deque((duration_s,), maxlen=self.per_line), settle)
            return
        durations, settle = known
        durations.append(duration_s)
        if late is not None:
            settle += -SETTLE_STEP_S * (1 - LATE_SHARE) if late else SETTLE_STEP_S * LATE_SHARE
        self._times[line] = (durations, min(max(0.0, settle), max(durations)))


def timed(line: bytes) -> bool:
    """Whether ``line``'s answer time is predicted: OBD requests, not AT/ST commands (rare, and varied)."""
    return line[:2].upper() not in (b"AT", b"ST")


def answer_cap(line: bytes) -> int:
    """Bytes kept of the answer to ``line``: 4 KiB for AT commands and mode 01, enough for a 4095-byte
    ISO-TP message in the widest ELM327 text form for the services that can answer that long."""
    parsed = request_service(line.strip().decode("ascii", errors="replace").upper())
    if parsed is not None and parsed[0] in LONG_ANSWER_SERVICES:
        return ISOTP_MAX_ANSWER_BYTES
    return DEFAULT_MAX_ANSWER_BYTES


class Exchanged(NamedTuple):
    """One line of a burst: its classified answer, or the error that ended the burst on it."""

    answer: Answer | None
    error: GatewayError | None
    written: float
    done: float


class ElmLine:
    """Command lines over one transport, with error counts and measured latency."""

    def __init__(self, transport: Transport, *, timeout_s: float, errors: dict[str, int]) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.errors = errors
        self.latency: deque[float] = deque(maxlen=64)
        #: recent answer times of request lines, for the settle (see the module docstring)
        self.answer_times = AnswerTimes()
        #: whether any byte ever came back (an ELM327 echoes ATZ at once: silence means nothing is there)
        self.heard = False
        self.lock = asyncio.Lock()

    def count(self, what: str) -> None:
        """Count one error of kind ``what``."""
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def latency_ms(self) -> float:
        """The median measured round trip, ms (0 before any)."""
        return statistics.median(self.latency) * 1000 if self.latency else 0.0

    async def exchange(self, line: bytes, wait_s: float | None = None) -> Answer:
        """Send one command line, read to the prompt, classify (no error raised for error kinds)."""
        async with self.lock:
            return await self.exchange_locked(line, wait_s)

    async def exchange_locked(self, line: bytes, wait_s: float | None = None) -> Answer:
        """:meth:`exchange` for a caller that holds :attr:`lock` (a multi-step handshake)."""
        t0 = time.monotonic()
        if self.transport.discard_pending():
            # bytes left from an earlier answer (a stray '>' in line noise): never read them as ours
            self.count("stale_bytes")
        await self.transport.write(line)
        written = time.monotonic()
        settle_s = self.answer_times.predict(line) if timed(line) else 0.0
        block = await self.read_prompt(
            self.timeout_s if wait_s is None else wait_s, answer_cap(line), settle_s=settle_s
        )
        self.heard = True
        end = time.monotonic()
        self.latency.append(end - t0)
        if timed(line):
            late = self.transport.settle_was_late if settle_s > 0 else None
            self.answer_times.record(line, end - written, late=late)
        answer = classify(block[:-1], line)
        if answer.kind is Kind.RESET:
            self.count("reset")
        return answer

    async def read_prompt(
        self, wait_s: float, max_bytes: int = DEFAULT_MAX_ANSWER_BYTES, *, settle_s: float = 0.0
    ) -> bytes:
        """Read to the prompt; a protocol search in progress extends the wait to the adapter time-out.

        ``settle_s`` is passed to :meth:`Transport.read_until` (it saves wake-ups only).
        An answer longer than the transport keeps (a broken or hostile adapter streaming without a
        prompt) is counted, drained, and raised as OversizedAnswer."""
        try:
            return await self.transport.read_until(
                cmd.PROMPT, wait_s, max_bytes=max_bytes, settle_s=settle_s
            )
        except OversizedAnswer:
            self.heard = True
            self.count("oversized")
            await self.transport.drain_input(0.05, 0.5)
            raise
        except TransportTimeout as exc:
            return await self._after_timeout(wait_s, max_bytes, exc)

    async def _after_timeout(self, wait_s: float, max_bytes: int, exc: TransportTimeout) -> bytes:
        """No prompt within ``wait_s``: a search in progress gets the adapter time-out; else re-raise."""
        pending = self.transport.peek().upper()
        self.heard = self.heard or bool(pending)
        if wait_s < self.timeout_s and (b"SEARCHING" in pending or b"BUS INIT" in pending):
            try:
                return await self.transport.read_until(cmd.PROMPT, self.timeout_s, max_bytes=max_bytes)
            except TransportTimeout:
                pass
        self.count("timeout")
        raise exc

    async def burst(self, lines: Sequence[bytes], wait_s: float) -> list[Exchanged] | None:
        """Request lines through the transport's link pump (see :mod:`gateway.transport.pump`).

        One :class:`Exchanged` per line written, in order: its classified answer, or the exception the
        ordinary :meth:`exchange` would have raised for it (a time-out, an oversized answer, a closed
        device; always the last one). None when the transport cannot run a burst now (nothing written).
        The answer times, the latency and the error counts are kept as :meth:`exchange` keeps them."""
        async with self.lock:
            if self.transport.discard_pending():
                self.count("stale_bytes")
            settles = [self.answer_times.predict(line) if timed(line) else 0.0 for line in lines]
            cap = max(answer_cap(line) for line in lines)
            burst = await self.transport.exchange_burst(lines, settles, wait_s, cap)
            if burst is None:
                return None
            out: list[Exchanged] = []
            for i, block in enumerate(burst.answers):
                written, end = burst.written[i], burst.done[i]
                self.heard = True
                self.latency.append(end - written)
                if timed(lines[i]):
                    self.answer_times.record(lines[i], end - written, late=burst.late[i] if settles[i] > 0 else None)
                answer = classify(block[:-1], lines[i])
                if answer.kind is Kind.RESET:
                    self.count("reset")
                out.append(Exchanged(answer, None, written, end))
            if burst.status in (pump.TIMEOUT, pump.OVERSIZED, pump.CLOSED, pump.FAILED):
                out.append(await self._unanswered(burst, lines[len(burst.answers)], wait_s, cap))
            return out

    async def _unanswered(self, burst: pump.Burst, line: bytes, wait_s: float, cap: int) -> Exchanged:
        """The line a burst ended on without its answer, as :meth:`exchange` would have ended it."""
        written = burst.written[-1] if burst.sent > len(burst.answers) else time.monotonic()
        error: GatewayError
        try:
            if burst.status == pump.OVERSIZED:
                self.heard = True
                self.count("oversized")
                await self.transport.drain_input(0.05, 0.5)
                raise OversizedAnswer(f"{self.transport.description}: an answer of more than {cap} bytes")
            if burst.status == pump.TIMEOUT:
                what = self.transport.description or "transport"
                timeout = TransportTimeout(f"{what}: no {cmd.PROMPT!r} within {wait_s:.2f} s")
                block = await self._after_timeout(wait_s, cap, timeout)
                self.heard = True
                end = time.monotonic()
                self.latency.append(end - written)
                return Exchanged(classify(block[:-1], line), None, written, end)
            raise TransportError(f"{self.transport.description}: the link failed during a burst")
        except GatewayError as exc:
            error = exc
        return Exchanged(None, error, written, time.monotonic())

    async def at(self, line: bytes, wait_s: float | None = None, *, required: bool = False) -> Answer:
        """An AT/ST command; a reset or STOPPED raises, ``?`` raises only when ``required``.

        A lost prompt or a garbled ``OK`` (line noise, dropped bytes) is retried twice: AT commands are
        idempotent, and a chip that lost our bytes is back at its prompt.
        """
        wants_ok = line.strip().upper() not in TEXT_COMMANDS
        answer: Answer | None = None
        for attempt in range(3):
            try:
                answer = await self.exchange(line, wait_s if wait_s is not None else min(self.timeout_s, 1.0))
            except TransportTimeout:
                if attempt == 2:
                    raise
                await self.transport.drain_input(0.05, 0.3)
                continue
            if answer.kind is Kind.UNKNOWN_COMMAND:
                if required:
                    raise UnsupportedCommand(f"the adapter does not know {line.decode().strip()}")
                log.debug("adapter lacks %s", line.decode().strip())
                return answer
            if answer.kind in (Kind.RESET, Kind.STOPPED):
                raise_for(answer)
            if wants_ok and answer.kind is not Kind.OK and attempt < 2:
                await self.transport.drain_input(0.02, 0.2)
                continue
            return answer
        assert answer is not None
        return answer

    async def resync(self) -> None:
        """Get back to a clean prompt after garbage or a time-out: drain, then a harmless ATI."""
        await self.transport.drain_input(0.05, 0.5)
        for _ in range(3):
            try:
                async with self.lock:
                    await self.transport.write(cmd.identify())
                    await self.transport.read_until(cmd.PROMPT, 1.0)
                await self.transport.drain_input(0.02, 0.2)
                return
            except (TransportTimeout, OversizedAnswer):
                await self.transport.drain_input(0.05, 0.5)
        raise TransportTimeout("the adapter does not come back to its prompt")
