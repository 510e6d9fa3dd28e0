"""The link pump: a burst of ELM327 request lines written and answered outside the event loop (issue 19).

At the link's full rate the poller sends ~45 requests a second back to back. Through the event loop each
one costs a wake-up of the loop and a task switch when its answer arrives, and on the development VM that
wake-up costs far more CPU than the work it does (docs/performance.md). The pump does a whole burst of
requests planned ahead (a few hundred milliseconds' worth) in one blocking call, run in the transport's
worker thread: write a line, sleep until its answer can be whole (the settle), read to the ``>`` prompt,
write the next line. The loop wakes once per burst. The native build (``native/pump.pyx``) runs the burst
without the GIL; this module's :func:`pump_python` is its twin, with the same arguments, results and rules.

Safety toward the car, the same rules as :class:`gateway.obd.guard.ElmWriteGuard` (which checks every line
of a burst before any is written, see :meth:`gateway.transport.base.Transport.exchange_burst`):

* a line is written only after the previous answer ended with the ``>`` prompt, and the first one only at a
  prompt the guard saw; a time-out, an over-long answer or bytes after the prompt end the burst;
* an answer that is not plain hex data (``NO DATA``, ``STOPPED``, ``?``, ``CAN ERROR``, a reset banner,
  ``SEARCHING...``) ends the burst after it: the session handles it exactly as it would any single answer,
  before anything else is written;
* the caller can halt a burst between two requests (one byte in ``halt``: a technician's request waits for
  at most one exchange, closing the port for at most one).

Bounded: at most :data:`MAX_LINES` lines per burst and ``max_bytes`` kept per answer.

Result ``(status, answers, written, done, late, reads, partial, err, sent)``:

* ``status``: :data:`DONE` (every line answered in plain data) or why the burst ended: :data:`HALTED`,
  :data:`UNCLEAN` (the last answer is not plain data), :data:`TIMEOUT` (no prompt within ``wait_s`` of the
  write), :data:`OVERSIZED` (``max_bytes`` without a prompt), :data:`CLOSED` (end of stream),
  :data:`FAILED` (an OS error, ``err`` is its errno), :data:`STRAY` (bytes after a prompt);
* ``answers``: each answered line's bytes up to and including its prompt;
  ``written``: ``time.monotonic()`` when each line written was (``sent`` of them), ``done``: when each
  answer's prompt was read; ``late``: whether
  the answer was already whole when its settle ended;
* ``reads``: reads that returned bytes; ``partial``: the unanswered line's bytes (time-out, end of stream,
  error) or the stray bytes after the last prompt; ``sent``: lines written (``len(answers)``, or one more
  when the last one got no whole answer).
"""

from __future__ import annotations

import errno as errnos
import importlib.util
import os
import select
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

DONE, HALTED, UNCLEAN, TIMEOUT, OVERSIZED, CLOSED, FAILED, STRAY = range(8)
#: lines per burst (the native build's fixed arrays)
MAX_LINES = 64
_CLEAN = frozenset(b"0123456789ABCDEFabcdef :\r\n")
_DIGITS = frozenset(b"0123456789ABCDEFabcdef")


class Burst(NamedTuple):
    """What one pump call did (see the module docstring)."""

    status: int
    answers: list[bytes]
    written: list[float]
    done: list[float]
    late: list[bool]
    reads: int
    partial: bytes
    err: int
    sent: int


def clean(answer: bytes) -> bool:
    """Whether an answer (without its prompt) is plain hex data the burst may continue after."""
    return bool(answer) and _CLEAN.issuperset(answer) and not _DIGITS.isdisjoint(answer)


def pump_python(  # noqa: PLR0917 - the native build's signature (positional, as Cython exposes it)
    fd: int, lines: list[bytes], settles: list[float], wait_s: float, max_bytes: int, halt: bytearray
) -> tuple[int, list[bytes], list[float], list[float], list[bool], int, bytes, int, int]:
    """Write ``lines`` one per prompt on non-blocking ``fd``, read each answer (module docstring)."""
    if len(lines) > MAX_LINES:
        raise ValueError(f"at most {MAX_LINES} lines per burst")
    if len(settles) != len(lines) or max_bytes < 2 or len(halt) != 1:
        raise ValueError("one settle per line, max_bytes >= 2, a one-byte halt flag")
    answers: list[bytes] = []
    written: list[float] = []
    done: list[float] = []
    late: list[bool] = []
    reads = sent = err = 0
    partial = b""
    status = DONE
    poller = select.poll()
    for line, settle_s in zip(lines, settles, strict=True):
        if halt[0]:
            status = HALTED
            break
        status, err = _write_all(fd, line, time.monotonic() + wait_s, poller)
        if status != DONE:
            break
        sent += 1
        written.append(time.monotonic())
        if settle_s > 0:
            time.sleep(settle_s)
        status, buf, n, settled, err = _read_answer(fd, written[-1] + wait_s, max_bytes, poller)
        reads += n
        if status != DONE:
            partial = b"" if status == OVERSIZED else bytes(buf)
            break
        end = buf.index(b">") + 1
        done.append(time.monotonic())
        late.append(settled and settle_s > 0)
        answers.append(bytes(buf[:end]))
        if end < len(buf):
            status, partial = STRAY, bytes(buf[end:])  # bytes after the prompt: the chip never sends any
            break
        if not clean(answers[-1][:-1]):
            status = UNCLEAN
            break
    return status, answers, written, done, late, reads, partial, err, sent


def _read_answer(
    fd: int, deadline: float, max_bytes: int, poller: select.poll
) -> tuple[int, bytearray, int, bool, int]:
    """(status, bytes, reads, whether the prompt came before any wait, errno) of one answer."""
    buf = bytearray()
    reads = 0
    settled = True  # no wait yet: what the first reads take arrived during the settle
    polled = False
    while True:
        try:
            chunk: bytes | None = os.read(fd, max_bytes - len(buf))
        except InterruptedError:
            continue
        except BlockingIOError:
            chunk = None
        except OSError as exc:
            return FAILED, buf, reads, settled, exc.errno or errnos.EIO
        if chunk:
            reads += 1
            buf += chunk
            polled = False
            if b">" in chunk:
                return DONE, buf, reads, settled, 0
            if len(buf) >= max_bytes:
                return OVERSIZED, buf, reads, settled, 0
            continue
        if chunk is not None and polled:
            return CLOSED, buf, reads, settled, 0  # readable, yet nothing: the other end has gone
        settled = False
        ready = _wait(poller, fd, select.POLLIN, deadline)
        if ready == 0:
            return TIMEOUT, buf, reads, settled, 0
        if ready < 0:
            return FAILED, buf, reads, settled, errnos.EIO
        polled = True


def _write_all(fd: int, line: bytes, deadline: float, poller: select.poll) -> tuple[int, int]:
    view = memoryview(line)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue
        except BlockingIOError:
            ready = _wait(poller, fd, select.POLLOUT, deadline)
            if ready <= 0:
                return (TIMEOUT, 0) if ready == 0 else (FAILED, errnos.EIO)
        except OSError as exc:
            return FAILED, exc.errno or errnos.EIO
    return DONE, 0


def _wait(poller: select.poll, fd: int, events: int, deadline: float) -> int:
    """1 when ready before ``deadline``, 0 on time-out, -1 on an error."""
    poller.register(fd, events)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return 0
            try:
                if poller.poll(int(left * 1000) + 1):
                    return 1
            except InterruptedError:
                continue
            except OSError:
                return -1
    finally:
        poller.unregister(fd)


PumpFunction = Callable[
    [int, list[bytes], list[float], float, int, bytearray],
    tuple[int, list[bytes], list[float], list[float], list[bool], int, bytes, int, int],
]


def _select() -> tuple[PumpFunction, str]:
    # the same selection as the parser's (gateway.obd): OBD_GATEWAY_PURE forces the twin
    if os.environ.get("OBD_GATEWAY_PURE", "") not in ("", "0") or importlib.util.find_spec("gateway._pump") is None:
        return pump_python, "python"
    import gateway._pump as native  # an extension that exists but cannot load must fail loudly

    function: PumpFunction = native.pump
    return function, "native"


pump, PUMP_BUILD = _select()


def run(
    fn: PumpFunction,
    fd: int,
    lines: Sequence[bytes],
    *,
    settles: Sequence[float],
    wait_s: float,
    max_bytes: int,
    halt: bytearray,
) -> Burst:
    """One burst with ``fn`` (:data:`pump` or :func:`pump_python`), as a :class:`Burst`."""
    return Burst(*fn(fd, list(lines), list(settles), wait_s, max_bytes, halt))
