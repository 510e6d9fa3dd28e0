"""DRUST's motion events: ``MOVING`` when the car starts rolling, ``STOPPED`` when it comes to a halt
with the ignition on, ``PARKED`` when the ignition goes off (sent by the engine through :meth:`park`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.detectors.base import IdFactory, as_float, make_event, uuid4_str
from gateway.model import Event, LinkState, Sample


class MotionDetector:
    """``MOVING`` / ``STOPPED`` on speed transitions, ``PARKED`` on request."""

    #: the only sample name ``feed`` reads; any other sample changes nothing
    SAMPLE_NAMES: ClassVar[frozenset[str]] = frozenset({"speed"})

    def __init__(self, *, new_id: IdFactory = uuid4_str) -> None:
        self._new_id = new_id
        self.moving: bool | None = None  # None: parked or not yet known

    def feed(self, item: Sample | LinkState) -> list[Event]:
        """``MOVING`` when speed leaves 0, ``STOPPED`` when it returns to 0."""
        if isinstance(item, LinkState) or item.name != "speed":
            return []
        speed = as_float(item.value)
        if speed is None:
            return []
        moving = speed > 0
        if moving == self.moving or (self.moving is None and not moving):
            self.moving = moving
            return []
        self.moving = moving
        return [make_event(self._new_id, "MOVING" if moving else "STOPPED", item.ts_ms, {"speed_kph": speed})]

    def tick(self, now_ms: int) -> list[Event]:
        """Motion changes only with speed samples."""
        return []

    def park(self, date_ms: int) -> list[Event]:
        """``PARKED``: the ignition went off at ``date_ms``."""
        self.moving = None
        return [make_event(self._new_id, "PARKED", date_ms)]

    def to_state(self) -> dict[str, Any]:
        """Whether the car was moving."""
        return {"moving": self.moving}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`to_state`."""
        m = state.get("moving")
        self.moving = None if m is None else bool(m)
