"""What every detector shares: the detector protocol, event construction, unit conversions.

Detectors are pure state machines: they see samples (and link states) in time order and return the
events those samples complete. They never read a clock, never do I/O and never know about trips;
the :class:`~gateway.detection.DetectionEngine` stamps the trip id on what they return.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Protocol

from gateway.model import Event, LinkState, Sample

KMH_PER_MPH = 1.609344
STANDARD_GRAVITY = 9.80665  # m/s², to express a speed change rate as g_force

IdFactory = Callable[[], str]


def uuid4_str() -> str:
    """A fresh random event or trip id (DRUST ids are UUID strings)."""
    return str(uuid.uuid4())


class Detector(Protocol):
    """One rule. ``feed`` is called for every item in time order, ``tick`` for time-outs."""

    def feed(self, item: Sample | LinkState) -> list[Event]:
        """Events completed by ``item``."""
        ...

    def tick(self, now_ms: int) -> list[Event]:
        """Events completed by time passing up to ``now_ms``."""
        ...

    def to_state(self) -> dict[str, Any]:
        """JSON-able state, so a restarted daemon continues where it stopped."""
        ...

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`to_state` returned."""
        ...


# DRUST type → Automatic type. DRUST has no names for speeding, MIL or ignition, so those use the
# same upper-case style; Automatic has none for STOPPED/MOVING/PARKED, so those get "vehicle:*".
AUTOMATIC_TYPES: dict[str, str] = {
    "HARD_BRAKE": "notification:hard_brake",
    "HARD_ACCELERATION": "notification:hard_accel",
    "HARD_TURN": "notification:hard_turn",  # Automatic has none: its notification:* style
    "LOCATION_UPDATED": "location:updated",
    "SPEEDING": "notification:speeding",
    "MIL_ON": "mil:on",
    "MIL_OFF": "mil:off",
    "IGNITION_ON": "ignition:on",
    "IGNITION_OFF": "ignition:off",
    "TRIP_FINISHED": "trip:finished",
    "STOPPED": "vehicle:stopped",
    "MOVING": "vehicle:moving",
    "PARKED": "vehicle:parked",
    # neither names data faults; ours, in each one's style (docs/events-and-trips.md)
    "DATA_QUALITY": "gateway:data_quality",
}


def make_event(new_id: IdFactory, type_: str, date_ms: int, payload: dict[str, Any] | None = None) -> Event:
    """An event of DRUST type ``type_`` with its Automatic type name filled in."""
    return Event(
        id=new_id(),
        type=type_,
        automatic_type=AUTOMATIC_TYPES[type_],
        date_ms=date_ms,
        payload=dict(payload or {}),
    )


def as_float(value: object) -> float | None:
    """A sample value as a number, or ``None`` for missing and non-numeric values (NO DATA)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def time_above(t0_ms: int, v0: float, t1_ms: int, v1: float, threshold: float) -> float:
    """Seconds of [t0, t1] during which the linear speed between the two samples exceeds ``threshold``."""
    dt = (t1_ms - t0_ms) / 1000.0
    if dt <= 0:
        return 0.0
    if v0 > threshold and v1 > threshold:
        return dt
    if v0 <= threshold and v1 <= threshold:
        return 0.0
    # One end above: the crossing is where the straight line meets the threshold.
    above = (max(v0, v1) - threshold) / abs(v1 - v0)
    return dt * above
