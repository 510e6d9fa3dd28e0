"""Trip accounting: one trip per ignition cycle, summarised in DRUST's Trip shape plus Automatic's extras.

:class:`TripAccumulator` is pure: it is fed the samples and events of one ignition cycle and
integrates them. Segmentation (when a trip starts and ends) is the ignition detector's job; the
:class:`~gateway.detection.DetectionEngine` wires the two together.

Integrals use the trapezoid rule between consecutive samples of the same value, skipping pairs further
apart than ``max_gap_s`` (the link was lost; guessing across the hole would invent distance):

* distance (m) = Σ (v₀ + v₁)/2 · Δt / 3.6 over ``speed`` samples (km/h);
* ``duration_over_N_s`` = Σ time the straight line between two speed samples spends above N mph;
* ``idling_time_s`` = Σ Δt between two speed samples both at 0 while the last RPM is above 0;
* ``fuel_volume_l`` = Σ of ``engine_fuel_rate`` (L/h) · Δt when the car reports it, otherwise
  Σ ``maf`` (g/s) · Δt / (``stoich_afr`` · ``fuel_density_g_per_l``);
* ``average_kmpl`` = distance (km) / fuel (L).

Location (docs/location.md): ``start_location`` / ``end_location`` (``lat``, ``lon``, ``accuracy_m``,
Automatic's Trip fields), ``path`` (Google's Encoded Polyline of the fixes, simplified with
Douglas–Peucker at ``path_tolerance_m`` and kept to ``path_max_points``), and ``distance_gps_m``: the
sum of the distances between consecutive fixes (pairs further apart than ``max_gap_s`` skipped, and
steps while both fixes report under 2 km/h, which is receiver jitter around a parked car). When the car
never reported ``speed``, ``distance`` is the GPS distance.

Scores, 0 to 100, higher is better (Automatic does not publish its formulas):

* ``score_events`` = max(0, 100 − 100 · (hard_brakes + hard_accels) / max(distance_km, 10)):
  ten points per event per 10 km, short trips judged as if they were 10 km long;
* ``score_speeding`` = max(0, 100 − 100 · (t₇₀ + t₇₅ + t₈₀) / (3 · max(moving_s, 60))): a trip spent
  entirely between 70 and 75 mph scores 66.7, above 75 mph 33.3, above 80 mph 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from gateway.detectors.base import KMH_PER_MPH, as_float, time_above
from gateway.location import geo
from gateway.model import Event, Position, Sample

#: a step between two fixes that both report less than this is jitter of a standing car, not distance
_STANDING_KMH = 2.0

_INTEGRATED = ("speed", "engine_fuel_rate", "maf")


@dataclass(slots=True)
class TripAccumulator:
    """The running totals of one trip."""

    #: the sample names ``feed`` integrates; any other numeric sample only moves ``last_ms`` (:meth:`note_time`)
    SAMPLE_NAMES: ClassVar[frozenset[str]] = frozenset({"engine_rpm", *_INTEGRATED})

    id: str
    start_ms: int
    thresholds_mph: list[float] = field(default_factory=lambda: [70.0, 75.0, 80.0])
    max_gap_ms: int = 30_000
    stoich_afr: float = 14.7
    fuel_density_g_per_l: float = 745.0
    last_ms: int = 0
    distance_m: float = 0.0
    moving_s: float = 0.0
    idle_s: float = 0.0
    over_s: dict[str, float] = field(default_factory=dict)
    fuel_rate_l: float = 0.0
    fuel_rate_pairs: int = 0
    fuel_maf_l: float = 0.0
    max_speed_kph: float = 0.0
    hard_brakes: int = 0
    hard_accels: int = 0
    data_quality: int = 0  # DATA_QUALITY events (data faults, not driving; not in the scores)
    vehicle_events: list[dict[str, Any]] = field(default_factory=list)
    last: dict[str, list[float]] = field(default_factory=dict)  # name → [ts_ms, value]
    rpm: float | None = None
    hard_turns: int = 0
    start_location: dict[str, Any] | None = None
    end_location: dict[str, Any] | None = None
    path: list[list[float]] = field(default_factory=list)  # [lat, lon] of kept fixes
    distance_gps_m: float = 0.0
    last_fix: list[float] | None = None  # [ts_ms, lat, lon, speed km/h or -1]
    path_tolerance_m: float = 5.0
    path_max_points: int = 500

    def __post_init__(self) -> None:
        self.last_ms = max(self.last_ms, self.start_ms)
        for mph in self.thresholds_mph:
            self.over_s.setdefault(_mph_key(mph), 0.0)

    def note_time(self, sample: Sample) -> None:
        """What :meth:`feed` does with a sample whose name is not in :data:`SAMPLE_NAMES`."""
        if sample.ts_ms > self.last_ms and as_float(sample.value) is not None:
            self.last_ms = sample.ts_ms

    def feed(self, sample: Sample) -> None:
        """Integrate one sample into the totals."""
        value = as_float(sample.value)
        if value is None:
            return
        now = sample.ts_ms
        self.last_ms = max(self.last_ms, now)
        if sample.name == "engine_rpm":
            self.rpm = value
            return
        if sample.name not in _INTEGRATED:
            return
        prev = self.last.get(sample.name)
        self.last[sample.name] = [now, value]
        if prev is None:
            if sample.name == "speed":
                self.max_speed_kph = max(self.max_speed_kph, value)
            return
        t0, v0 = int(prev[0]), prev[1]
        dt = (now - t0) / 1000.0
        if dt <= 0 or now - t0 > self.max_gap_ms:
            return
        if sample.name == "speed":
            self.max_speed_kph = max(self.max_speed_kph, value)
            self.distance_m += (v0 + value) / 2 * dt / 3.6
            if v0 > 0 or value > 0:
                self.moving_s += dt
            elif self.rpm is not None and self.rpm > 0:
                self.idle_s += dt
            for mph in self.thresholds_mph:
                self.over_s[_mph_key(mph)] += time_above(t0, v0, now, value, mph * KMH_PER_MPH)
        elif sample.name == "engine_fuel_rate":
            self.fuel_rate_l += (v0 + value) / 2 * dt / 3600.0
            self.fuel_rate_pairs += 1
        else:  # maf, g/s of air
            air_g = (v0 + value) / 2 * dt
            self.fuel_maf_l += air_g / self.stoich_afr / self.fuel_density_g_per_l

    def feed_position(self, pos: Position) -> None:
        """Extend the path, the GPS distance and the end location with one (filtered) fix."""
        self.last_ms = max(self.last_ms, pos.ts_ms)
        place = _place(pos)
        if self.start_location is None:
            self.start_location = place
        self.end_location = place
        speed = -1.0 if pos.speed_kmh is None else pos.speed_kmh
        prev = self.last_fix
        self.last_fix = [float(pos.ts_ms), pos.lat, pos.lon, speed]
        if prev is not None:
            dt = pos.ts_ms - prev[0]
            standing = 0 <= prev[3] < _STANDING_KMH and 0 <= speed < _STANDING_KMH
            if 0 < dt <= self.max_gap_ms and not standing:
                self.distance_gps_m += geo.distance_m((prev[1], prev[2]), (pos.lat, pos.lon))
        if not self.path or self.path[-1] != [pos.lat, pos.lon]:
            self.path.append([pos.lat, pos.lon])
        if len(self.path) > 2 * self.path_max_points:
            # bounded memory on a long trip: thin what we hold now, finer detail stays in the timeseries
            kept, _tol = geo.bounded([(a, b) for a, b in self.path], self.path_tolerance_m, self.path_max_points)
            self.path = [[a, b] for a, b in kept]

    def set_start_location(self, pos: Position) -> None:
        """The place the trip started (the last fix before the ignition, when it is recent)."""
        self.start_location = _place(pos)
        if not self.path:
            self.path.append([pos.lat, pos.lon])

    def encoded_path(self) -> str:
        """The driven route as an Encoded Polyline (simplified and bounded)."""
        if not self.path:
            return ""
        kept, _tol = geo.bounded([(a, b) for a, b in self.path], self.path_tolerance_m, self.path_max_points)
        return geo.encode(kept)

    @property
    def effective_distance_m(self) -> float:
        """The speed PID's distance, or the GPS distance when the car never reported a speed."""
        if "speed" not in self.last and self.last_fix is not None:
            return self.distance_gps_m
        return self.distance_m

    def note_event(self, event: Event) -> None:
        """Count a driving event of this trip and keep it in ``vehicle_events``."""
        if event.type == "HARD_BRAKE":
            self.hard_brakes += 1
            self.vehicle_events.append(
                {"type": "hard_brake", "created_at": event.date_ms, "g_force": event.payload.get("g_force")}
            )
        elif event.type == "HARD_ACCELERATION":
            self.hard_accels += 1
            self.vehicle_events.append(
                {"type": "hard_accel", "created_at": event.date_ms, "g_force": event.payload.get("g_force")}
            )
        elif event.type == "DATA_QUALITY":
            self.data_quality += 1
        elif event.type == "HARD_TURN":
            self.hard_turns += 1
            self.vehicle_events.append(
                {
                    "type": "hard_turn",
                    "created_at": event.date_ms,
                    "g_force": event.payload.get("g_force"),
                    "location": event.payload.get("location"),
                }
            )
        elif event.type == "SPEEDING":
            p = event.payload
            self.vehicle_events.append(
                {
                    "type": "speeding",
                    "created_at": event.date_ms,
                    "start_time": p.get("start_time"),
                    "end_time": p.get("end_time"),
                    "velocity_mph": p.get("speed_mph"),
                    "velocity_kph": p.get("velocity_kph"),
                    "threshold_mph": p.get("threshold_mph"),
                }
            )

    @property
    def fuel_volume_l(self) -> float | None:
        """Fuel used: from the fuel-rate PID when the car reports it, else from MAF, else unknown."""
        if self.fuel_rate_pairs:
            return self.fuel_rate_l
        if self.fuel_maf_l > 0:
            return self.fuel_maf_l
        return None

    def summary(self, stop_ms: int, *, device_id: str, car_id: str) -> dict[str, Any]:
        """The trip in DRUST's Trip shape with Automatic's extras (see the module docstring)."""
        duration_ms = max(0, stop_ms - self.start_ms)
        distance = self.effective_distance_m
        distance_km = distance / 1000.0
        fuel = self.fuel_volume_l
        events = self.hard_brakes + self.hard_accels
        over = sum(self.over_s.values())
        score_events = max(0.0, 100.0 - 100.0 * events / max(distance_km, 10.0))
        score_speeding = max(0.0, 100.0 - 100.0 * over / (3 * max(self.moving_s, 60.0)))
        out: dict[str, Any] = {
            "id": self.id,
            "car": {"id": car_id},
            "device": {"id": device_id},
            "distance": round(distance, 2),
            "duration": duration_ms,
            "start": {"date": self.start_ms},
            "stop": {"date": stop_ms},
            "trip_event_counts": {
                "hard_turns": self.hard_turns,
                "hard_accelerations": self.hard_accels,
                "hard_brakes": self.hard_brakes,
            },
            # Automatic's Trip extras
            "distance_m": round(distance, 2),
            "duration_s": round(duration_ms / 1000.0, 3),
            "hard_brakes": self.hard_brakes,
            "hard_accels": self.hard_accels,
            "data_quality_events": self.data_quality,
            "idling_time_s": round(self.idle_s, 3),
            "fuel_volume_l": None if fuel is None else round(fuel, 4),
            "average_kmpl": round(distance_km / fuel, 3) if fuel else None,
            "max_speed_kph": self.max_speed_kph,
            "score_events": round(score_events, 2),
            "score_speeding": round(score_speeding, 2),
            "vehicle_events": list(self.vehicle_events),
            # location (Automatic's Trip fields; null without a GPS fix)
            "start_location": self.start_location,
            "end_location": self.end_location,
            "path": self.encoded_path() or None,
            "distance_gps_m": round(self.distance_gps_m, 2) if self.last_fix is not None else None,
        }
        for key, seconds in self.over_s.items():
            out[key] = round(seconds, 3)
        return out

    def copy(self) -> TripAccumulator:
        """An independent copy (the engine keeps one when an ignition-off starts being confirmed)."""
        return TripAccumulator.from_state(self.to_state())

    def to_state(self) -> dict[str, Any]:
        """JSON-able totals."""
        return {
            "id": self.id,
            "start_ms": self.start_ms,
            "thresholds_mph": list(self.thresholds_mph),
            "max_gap_ms": self.max_gap_ms,
            "stoich_afr": self.stoich_afr,
            "fuel_density_g_per_l": self.fuel_density_g_per_l,
            "last_ms": self.last_ms,
            "distance_m": self.distance_m,
            "moving_s": self.moving_s,
            "idle_s": self.idle_s,
            "over_s": dict(self.over_s),
            "fuel_rate_l": self.fuel_rate_l,
            "fuel_rate_pairs": self.fuel_rate_pairs,
            "fuel_maf_l": self.fuel_maf_l,
            "max_speed_kph": self.max_speed_kph,
            "hard_brakes": self.hard_brakes,
            "hard_accels": self.hard_accels,
            "data_quality": self.data_quality,
            "vehicle_events": [dict(e) for e in self.vehicle_events],
            "last": {k: list(v) for k, v in self.last.items()},
            "rpm": self.rpm,
            "hard_turns": self.hard_turns,
            "start_location": self.start_location,
            "end_location": self.end_location,
            "path": [list(p) for p in self.path],
            "distance_gps_m": self.distance_gps_m,
            "last_fix": self.last_fix,
            "path_tolerance_m": self.path_tolerance_m,
            "path_max_points": self.path_max_points,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TripAccumulator:
        """Rebuild from :meth:`to_state`."""
        return cls(
            id=str(state["id"]),
            start_ms=int(state["start_ms"]),
            thresholds_mph=[float(x) for x in state.get("thresholds_mph", [70.0, 75.0, 80.0])],
            max_gap_ms=int(state.get("max_gap_ms", 30_000)),
            stoich_afr=float(state.get("stoich_afr", 14.7)),
            fuel_density_g_per_l=float(state.get("fuel_density_g_per_l", 745.0)),
            last_ms=int(state.get("last_ms", 0)),
            distance_m=float(state.get("distance_m", 0.0)),
            moving_s=float(state.get("moving_s", 0.0)),
            idle_s=float(state.get("idle_s", 0.0)),
            over_s={str(k): float(v) for k, v in state.get("over_s", {}).items()},
            fuel_rate_l=float(state.get("fuel_rate_l", 0.0)),
            fuel_rate_pairs=int(state.get("fuel_rate_pairs", 0)),
            fuel_maf_l=float(state.get("fuel_maf_l", 0.0)),
            max_speed_kph=float(state.get("max_speed_kph", 0.0)),
            hard_brakes=int(state.get("hard_brakes", 0)),
            hard_accels=int(state.get("hard_accels", 0)),
            data_quality=int(state.get("data_quality", 0)),
            vehicle_events=[dict(e) for e in state.get("vehicle_events", [])],
            last={str(k): [float(x) for x in v] for k, v in state.get("last", {}).items()},
            rpm=None if state.get("rpm") is None else float(state["rpm"]),
            hard_turns=int(state.get("hard_turns", 0)),
            start_location=_place_state(state.get("start_location")),
            end_location=_place_state(state.get("end_location")),
            path=[[float(p[0]), float(p[1])] for p in state.get("path", [])],
            distance_gps_m=float(state.get("distance_gps_m", 0.0)),
            last_fix=None if state.get("last_fix") is None else [float(x) for x in state["last_fix"]],
            path_tolerance_m=float(state.get("path_tolerance_m", 5.0)),
            path_max_points=int(state.get("path_max_points", 500)),
        )


def _mph_key(mph: float) -> str:
    return f"duration_over_{mph:g}_s"


def _place(pos: Position) -> dict[str, Any]:
    """Automatic's location object: ``lat``, ``lon``, ``accuracy_m`` (null when unknown)."""
    return {"lat": pos.lat, "lon": pos.lon, "accuracy_m": pos.accuracy()}


def _place_state(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    acc = raw.get("accuracy_m")
    return {"lat": float(raw["lat"]), "lon": float(raw["lon"]), "accuracy_m": None if acc is None else float(acc)}
