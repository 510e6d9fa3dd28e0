"""Rate-limited logging for errors that repeat: the first line in full, then one line with a count.

A full or read-only disk, a broker that keeps refusing, a client that keeps sending garbage: each of
these fails again on every sample or every retry. Logging each failure fills the journal (and the SD
card) with identical lines and hides everything else. Every site that may log the same problem in a
loop goes through :class:`RateLimitedLog`::

    _errors = RateLimitedLog(log, interval_s=60.0)
    _errors.warning("save", "cannot save detection state to %s: %s", path, exc)
    _errors.clear("save")        # after a success: the next failure is logged in full at once

Per ``key`` (a short name of the problem, not the message: the message may carry a changing detail):
the first occurrence is logged as is; later ones within ``interval_s`` are only counted; the first
occurrence after the interval is logged with ``(repeated N times in the last S s)`` appended. The
number of keys is bounded (the oldest key is forgotten), so a key built from client input cannot
grow the table without bound.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Seen:
    last_logged: float
    suppressed: int = 0


class RateLimitedLog:
    """A logger front that logs a repeated problem once per ``interval_s``, with the count in between."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = 60.0,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0 or max_keys <= 0:
            raise ValueError("need interval_s > 0 and max_keys > 0")
        self.logger = logger
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.clock = clock
        self._seen: OrderedDict[Hashable, _Seen] = OrderedDict()
        #: lines not written since this object exists (for tests and ``status``)
        self.suppressed_total = 0

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` was logged within the interval; True when written."""
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.last_logged < self.interval_s:
            seen.suppressed += 1
            self.suppressed_total += 1
            return False
        if seen is not None and seen.suppressed:
            msg = f"{msg} (repeated {seen.suppressed} times in the last {now - seen.last_logged:.0f} s)"
        self._seen[key] = _Seen(now)
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: Hashable, msg: str, *args: object) -> bool:
        """:meth:`log` at WARNING."""
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: Hashable, msg: str, *args: object) -> bool:
        """:meth:`log` at ERROR."""
        return self.log(logging.ERROR, key, msg, *args)

    def clear(self, key: Hashable) -> None:
        """The problem went away: its next occurrence is logged at once (the count is reported then)."""
        seen = self._seen.get(key)
        if seen is not None and not seen.suppressed:
            del self._seen[key]
        elif seen is not None:
            seen.last_logged = -float("inf")  # logged at the next occurrence, with what was missed
