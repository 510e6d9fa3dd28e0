"""The speed change rate, estimated over a short window of samples.

Raw OBD speed (PID 0D) is a whole number of km/h, read at irregular moments (the poller's schedule, a
slow ECU, a dropped answer). The rate between two raw samples therefore carries up to ±1 km/h of
rounding divided by whatever the interval happened to be, and a 0.3 s interval turns a 1 km/h step into
3.3 km/h/s. So the rate at a sample is the **least-squares slope** of speed against time over every
sample from the most recent one at least ``window_ms`` old up to the current one:

    slope = Σ (tᵢ − t̄)(vᵢ − v̄) / Σ (tᵢ − t̄)²

* With 1 Hz polling and the default 0.8 s window that is the two-point rate over the last interval
  (a sharp stop is not smeared over several seconds); when jitter brings a sample closer than 0.8 s
  the window holds three samples and the slope weighs them all, so a short interval cannot blow a
  1 km/h step up into a hard event.
* At 5–10 Hz the window holds 5–9 samples: each ±0.5 km/h rounding error moves the slope by at most
  about 1 km/h/s, against 10–20 km/h/s for the two-point rate between neighbours.
* Timestamps only need to be right relative to each other; a window is never formed across a gap
  longer than ``max_gap_ms`` (the caller clears it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Any


def lsq_slope(points: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of (ms, km/h) points in km/h per second; ``None`` without two distinct times."""
    n = len(points)
    if n < 2:
        return None
    # lists, not generators (a speed sample at 40 Hz pays this over ~30 points); the same operations in the
    # same order as the formula, so the same bits
    t0 = points[0][0]
    ts = [(t - t0) / 1000.0 for t, _ in points]
    vs = [v for _, v in points]
    mean_t = sum(ts) / n
    mean_v = sum(vs) / n
    dts = [t - mean_t for t in ts]
    sxx = sum([d**2 for d in dts])
    if sxx <= 0:
        return None
    sxy = sum([d * (v - mean_v) for d, v in zip(dts, vs, strict=True)])
    return sxy / sxx


class RateWindow:
    """Recent speed samples and the rate over the window ending at the newest (see the module docstring)."""

    def __init__(self, *, window_ms: int, max_gap_ms: int) -> None:
        self.window_ms = window_ms
        self.max_gap_ms = max_gap_ms
        self.samples: deque[tuple[int, float]] = deque()

    def clear(self) -> None:
        """Forget every sample (a gap, a silent ECU, time going backwards)."""
        self.samples.clear()

    def add(self, ts_ms: int, kph: float) -> tuple[float, int, float] | None:
        """Add a sample; the rate (km/h/s) over the window ending at it, with the window's first sample.

        ``None`` when no earlier sample is at least ``window_ms`` old, or the oldest one needed is more
        than ``max_gap_ms`` back (nothing is known about the rate then).
        """
        ref_index: int | None = None
        window_ms = self.window_ms
        i = len(self.samples)
        for ts, _ in reversed(self.samples):  # newest first: the window is the newest ~tenth of what is kept
            i -= 1
            if ts_ms - ts >= window_ms and ts_ms - ts > 0:
                ref_index = i
                break
        self.samples.append((ts_ms, kph))
        # bounded: nothing older than max_gap is ever used
        while self.samples and ts_ms - self.samples[0][0] > self.max_gap_ms:
            self.samples.popleft()
            if ref_index is not None:
                ref_index -= 1
        if ref_index is None or ref_index < 0:
            return None
        window = list(islice(self.samples, ref_index, None))
        slope = lsq_slope(window)
        if slope is None:
            return None
        return slope, window[0][0], window[0][1]

    def to_state(self) -> list[list[float]]:
        """JSON-able samples."""
        return [[ts, v] for ts, v in self.samples]

    def load_state(self, state: Any) -> None:
        """Restore :meth:`to_state`."""
        self.samples = deque((int(ts), float(v)) for ts, v in state or [])
