"""Hard braking and hard acceleration: the speed changing faster than a threshold.

The reference's rule is a speed change of more than 11 km/h per second, with later events inside
five seconds of the first disregarded. Samples arrive irregularly (the poller's schedule, a slow ECU,
a dropped answer), so the rate is measured between the current speed sample and the most recent
earlier one that is at least ``rate_window_s`` (0.8 s) old (with samples a second apart that is simply the
previous sample at the default 1 Hz); a pair further apart than ``max_gap_s`` says nothing about the
rate and is skipped. The window keeps the 1 km/h steps of PID 0D (and the jitter of answer times) from
looking like 10 km/h/s at 5-10 Hz polling: over 0.8 s they are worth at most ±1.25 km/h/s.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from gateway.detectors.base import STANDARD_GRAVITY, IdFactory, as_float, make_event, uuid4_str
from gateway.model import Event, LinkState, Sample


class _SpeedRateDetector:
    """Shared machinery; subclasses choose the sign and the event type."""

    EVENT_TYPE = ""
    SIGN = 1.0  # +1 for acceleration, -1 for braking

    def __init__(
        self,
        *,
        threshold_kmh_per_s: float = 11.0,
        refractory_s: float = 5.0,
        max_gap_s: float = 2.0,
        rate_window_s: float = 0.8,
        new_id: IdFactory = uuid4_str,
    ) -> None:
        self.threshold = threshold_kmh_per_s
        self.refractory_ms = round(refractory_s * 1000)
        self.max_gap_ms = round(max_gap_s * 1000)
        self.window_ms = round(rate_window_s * 1000)
        self._new_id = new_id
        self._history: deque[tuple[int, float]] = deque()
        self.last_event_ms: int | None = None

    def feed(self, item: Sample | LinkState) -> list[Event]:
        """Events completed by ``item`` (only ``speed`` samples and lost links matter)."""
        if isinstance(item, LinkState):
            if not (item.adapter_connected and item.ecu_responding):
                self._history.clear()  # a speed from before a silence says nothing about the rate after
            return []
        if item.name != "speed":
            return []
        speed = as_float(item.value)
        if speed is None:
            return []
        now = item.ts_ms
        if self._history and now < self._history[-1][0]:
            self._history.clear()  # time went backwards (clock step): start over rather than invent a rate
        ref: tuple[int, float] | None = None
        for ts, v in reversed(self._history):
            if now - ts >= self.window_ms and now - ts > 0:
                ref = (ts, v)
                break
        self._history.append((now, speed))
        while self._history and now - self._history[0][0] > self.max_gap_ms:
            self._history.popleft()
        if ref is None or now - ref[0] > self.max_gap_ms:
            return []
        rate = (speed - ref[1]) / ((now - ref[0]) / 1000.0)  # km/h per second
        if self.SIGN * rate <= self.threshold:
            return []
        if self.last_event_ms is not None and now - self.last_event_ms < self.refractory_ms:
            return []
        self.last_event_ms = now
        g_force = abs(rate) / 3.6 / STANDARD_GRAVITY
        payload = {
            "g_force": round(g_force, 3),
            "rate_kmh_per_s": round(rate, 2),
            "speed_from_kph": ref[1],
            "speed_to_kph": speed,
        }
        return [make_event(self._new_id, self.EVENT_TYPE, now, payload)]

    def tick(self, now_ms: int) -> list[Event]:
        """Nothing here depends on time passing without samples."""
        return []

    def to_state(self) -> dict[str, Any]:
        """The refractory clock and the recent speeds."""
        return {"last_event_ms": self.last_event_ms, "history": [list(p) for p in self._history]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`to_state`."""
        last = state.get("last_event_ms")
        self.last_event_ms = int(last) if last is not None else None
        self._history = deque((int(ts), float(v)) for ts, v in state.get("history", []))


class HardBrakeDetector(_SpeedRateDetector):
    """``HARD_BRAKE`` / ``notification:hard_brake`` when speed falls faster than the threshold."""

    EVENT_TYPE = "HARD_BRAKE"
    SIGN = -1.0


class HardAccelDetector(_SpeedRateDetector):
    """``HARD_ACCELERATION`` / ``notification:hard_accel`` when speed rises faster than the threshold."""

    EVENT_TYPE = "HARD_ACCELERATION"
    SIGN = 1.0
