"""HARD_TURN: lateral acceleration from GPS speed × heading rate (course over ground).

A car on a curve of radius r at speed v has a lateral (centripetal) acceleration a = v²/r = v · ω,
ω being the rate of change of its heading. Without an accelerometer we take ω from the course over
ground of two consecutive fixes and v from their mean GPS speed: a = v · |Δcog| / Δt.

Threshold: ``location.hard_turn_g`` (0.42 g). DriveScore counts "hard cornering" above 0.42 lateral g,
noting that a normal car can lose grip from 0.5 g on a wet road
(https://help.drivescore.com/hc/en-us/articles/4407580972178); industry values for passenger cars
range 0.3 g (Positrace's example device values) to 0.5 g (eDriving Mentor), and Digital Matter's G70
defaults to 5.5 m/s² (0.56 g).

Guards against false turns, as MiX Telematics advises for GPS-derived cornering (filter on HDOP,
satellites and fix age): fixes are already filtered on mode and HDOP by the location source; here
both fixes must carry a course and a speed, both speeds must be at least
``hard_turn_min_speed_kmh`` (20 km/h: the course of a slow or stopped car is noise, and a car-park
U-turn is slow), and the fixes at most ``hard_turn_max_gap_s`` apart (a gap hides what happened in
between). Later turns within ``hard_turn_refractory_s`` (5 s) of the last one are ignored, like hard
brakes.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.detectors.base import STANDARD_GRAVITY, IdFactory, make_event, uuid4_str
from gateway.location.geo import heading_change_deg
from gateway.model import Event, Position


class HardTurnDetector:
    """Pure state machine: ``feed(position) -> [Event]``."""

    def __init__(
        self,
        *,
        threshold_g: float = 0.42,
        min_speed_kmh: float = 20.0,
        refractory_s: float = 5.0,
        max_gap_s: float = 2.5,
        new_id: IdFactory = uuid4_str,
    ) -> None:
        self.threshold_g = threshold_g
        self.min_speed_kmh = min_speed_kmh
        self.refractory_ms = round(refractory_s * 1000)
        self.max_gap_ms = round(max_gap_s * 1000)
        self._new_id = new_id
        self._prev: tuple[int, float, float] | None = None  # ts_ms, cog, speed km/h
        self.last_event_ms: int | None = None

    def feed(self, pos: Position) -> list[Event]:
        """Events completed by this fix."""
        if pos.cog is None or pos.speed_kmh is None or not math.isfinite(pos.cog):
            self._prev = None
            return []
        prev, self._prev = self._prev, (pos.ts_ms, pos.cog, pos.speed_kmh)
        if prev is None:
            return []
        t0, cog0, v0 = prev
        dt_ms = pos.ts_ms - t0
        if dt_ms <= 0 or dt_ms > self.max_gap_ms:
            return []
        if min(v0, pos.speed_kmh) < self.min_speed_kmh:
            return []
        turn = heading_change_deg(cog0, pos.cog)
        rate = math.radians(abs(turn)) / (dt_ms / 1000.0)
        v_ms = (v0 + pos.speed_kmh) / 2 / 3.6
        g = v_ms * rate / STANDARD_GRAVITY
        if g <= self.threshold_g:
            return []
        if self.last_event_ms is not None and pos.ts_ms - self.last_event_ms < self.refractory_ms:
            return []
        self.last_event_ms = pos.ts_ms
        return [
            make_event(
                self._new_id,
                "HARD_TURN",
                pos.ts_ms,
                {
                    "g_force": round(g, 3),
                    "speed_kph": round((v0 + pos.speed_kmh) / 2, 1),
                    "heading_change_deg": round(turn, 1),
                    "rate_deg_per_s": round(abs(turn) / (dt_ms / 1000.0), 1),
                    "direction": "right" if turn > 0 else "left",
                },
            )
        ]

    def to_state(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"prev": list(self._prev) if self._prev else None, "last_event_ms": self.last_event_ms}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`to_state`."""
        prev = state.get("prev")
        self._prev = (int(prev[0]), float(prev[1]), float(prev[2])) if prev else None
        last = state.get("last_event_ms")
        self.last_event_ms = None if last is None else int(last)
