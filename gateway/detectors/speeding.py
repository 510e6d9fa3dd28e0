"""Speeding: crossing 70, 75 and 80 mph (configurable), once per crossing, re-armed 5 mph below.

The reference sends ``notification:speeding`` once per threshold crossing with the maximum speed
reached; the same threshold fires again only after the speed has dipped 5 mph below it, so hovering
around 70 mph gives one event. Because the event carries the maximum speed and the time spent above
the threshold, it is emitted when its episode ends: when the speed dips to the re-arm level, or when
the trip ends (:meth:`SpeedingDetector.flush`). Its ``date`` is the moment of the crossing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.detectors.base import KMH_PER_MPH, IdFactory, as_float, make_event, time_above, uuid4_str
from gateway.model import Event, LinkState, Sample


@dataclass(slots=True)
class _Episode:
    start_ms: int
    max_kph: float
    above_s: float
    last_above_ms: int


class SpeedingDetector:
    """``SPEEDING`` / ``notification:speeding`` per threshold crossing."""

    #: the only sample name ``feed`` reads; any other sample changes nothing
    SAMPLE_NAMES: ClassVar[frozenset[str]] = frozenset({"speed"})

    def __init__(
        self,
        *,
        thresholds_mph: list[float] | tuple[float, ...] = (70.0, 75.0, 80.0),
        rearm_mph: float = 5.0,
        max_gap_s: float = 30.0,
        new_id: IdFactory = uuid4_str,
    ) -> None:
        self.thresholds_mph = sorted(thresholds_mph)
        self.rearm_mph = rearm_mph
        self.max_gap_ms = round(max_gap_s * 1000)
        self._new_id = new_id
        self.armed: dict[float, bool] = dict.fromkeys(self.thresholds_mph, True)
        self.episodes: dict[float, _Episode] = {}
        self._last: tuple[int, float] | None = None

    def feed(self, item: Sample | LinkState) -> list[Event]:
        """Events completed by ``item``: episodes that end because the speed dipped to re-arm."""
        if isinstance(item, LinkState) or item.name != "speed":
            return []
        speed = as_float(item.value)
        if speed is None:
            return []
        now = item.ts_ms
        prev = self._last
        self._last = (now, speed)
        out: list[Event] = []
        for mph in self.thresholds_mph:
            thr = mph * KMH_PER_MPH
            ep = self.episodes.get(mph)
            if ep is None and self.armed[mph] and speed > thr:
                ep = self.episodes[mph] = _Episode(now, speed, 0.0, now)
                self.armed[mph] = False
            if ep is None:
                if speed <= (mph - self.rearm_mph) * KMH_PER_MPH:
                    self.armed[mph] = True
                continue
            if prev is not None and 0 < now - prev[0] <= self.max_gap_ms:
                ep.above_s += time_above(prev[0], prev[1], now, speed, thr)
            if speed > thr:
                ep.max_kph = max(ep.max_kph, speed)
                ep.last_above_ms = now
            if speed <= (mph - self.rearm_mph) * KMH_PER_MPH:
                out.append(self._close(mph))
                self.armed[mph] = True
        return out

    def tick(self, now_ms: int) -> list[Event]:
        """Speeding episodes end with speed samples or the trip, not with time alone."""
        return []

    def flush(self) -> list[Event]:
        """End every open episode (the trip is over) and re-arm every threshold."""
        out = [self._close(mph) for mph in sorted(self.episodes)]
        self.armed = dict.fromkeys(self.thresholds_mph, True)
        self._last = None
        return out

    def _close(self, mph: float) -> Event:
        ep = self.episodes.pop(mph)
        payload = {
            "threshold_mph": mph,
            "speed_mph": round(ep.max_kph / KMH_PER_MPH, 1),
            "velocity_kph": round(ep.max_kph, 3),
            "duration_s": round(ep.above_s, 3),
            "start_time": ep.start_ms,
            "end_time": ep.last_above_ms,
        }
        return make_event(self._new_id, "SPEEDING", ep.start_ms, payload)

    def to_state(self) -> dict[str, Any]:
        """Armed thresholds, open episodes and the last speed."""
        return {
            "armed": [[mph, a] for mph, a in self.armed.items()],
            "episodes": [[mph, e.start_ms, e.max_kph, e.above_s, e.last_above_ms] for mph, e in self.episodes.items()],
            "last": list(self._last) if self._last else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`to_state` (thresholds no longer configured are dropped)."""
        for mph, armed in state.get("armed", []):
            if float(mph) in self.armed:
                self.armed[float(mph)] = bool(armed)
        self.episodes = {
            float(mph): _Episode(int(s), float(m), float(a), int(la))
            for mph, s, m, a, la in state.get("episodes", [])
            if float(mph) in self.armed
        }
        last = state.get("last")
        self._last = (int(last[0]), float(last[1])) if last else None
