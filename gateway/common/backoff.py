"""One backoff rule for every retry loop (poller reconnect, supervisor restarts, uplink forwarders).

The n-th consecutive failure waits a delay drawn uniformly from ``[cap_n / 2, cap_n]`` where
``cap_n = min(max_s, first_s * 2**(n-1))`` ("equal jitter" in the AWS architecture blog's terms,
Marc Brooker, *Exponential Backoff And Jitter*, 2015). Two properties matter for a fleet:

* the delay never exceeds ``max_s`` (the configured ceiling is a promise to the operator);
* it never falls below half the cap, so a flapping peer is not hammered, while boxes that lost the same
  broker at the same moment spread their retries over half the window instead of retrying in step.
"""

from __future__ import annotations

import random


class Backoff:
    """Jittered exponential backoff; ``next()`` after a failure, ``reset()`` after a success."""

    def __init__(self, first_s: float = 0.5, max_s: float = 60.0, *, rng: random.Random | None = None) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError("need 0 < first_s <= max_s")
        self.first_s = first_s
        self.max_s = max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def cap(self, failures: int) -> float:
        """The upper bound of the delay after ``failures`` consecutive failures (1-based)."""
        n = max(1, failures)
        return float(min(self.max_s, self.first_s * 2.0 ** min(n - 1, 60)))

    def delay(self, failures: int) -> float:
        """A delay for ``failures`` consecutive failures, without counting one."""
        cap = self.cap(failures)
        return cap / 2 + (cap / 2) * self._rng.random()

    def next(self) -> float:
        """Count one more failure and return the delay to wait before the next try."""
        self.failures += 1
        return self.delay(self.failures)

    def reset(self) -> None:
        """After a success: the next failure starts from ``first_s`` again."""
        self.failures = 0
