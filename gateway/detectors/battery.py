"""``LOW_BATTERY``: the parked car's battery fell below ``power.low_battery_v``.

The poller's parked plan decides (readings below the threshold for 30 s, cleared only above the
threshold plus the hysteresis: :mod:`gateway.poller.parked`) and publishes its decision as a
``low_battery`` sample (true / false) that the store records, so a replay sees the same events. This
detector turns a change to true into one event, carrying the last voltage read; the state survives a
restart, so a restarted daemon in the same flat car does not report it again.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.detectors.base import IdFactory, as_float, make_event, uuid4_str
from gateway.model import Event, LinkState, Sample

MARKER = "low_battery"


class LowBatteryDetector:
    """One ``LOW_BATTERY`` per fall below the threshold (the poller's hysteresis decides the fall)."""

    #: the only sample names ``feed`` reads; any other sample changes nothing
    SAMPLE_NAMES: ClassVar[frozenset[str]] = frozenset({"battery_voltage", MARKER})

    def __init__(self, *, new_id: IdFactory = uuid4_str) -> None:
        self._new_id = new_id
        self.low = False
        self.volts: float | None = None

    def feed(self, item: Sample | LinkState) -> list[Event]:
        """A ``LOW_BATTERY`` when the ``low_battery`` marker turns true."""
        if not isinstance(item, Sample):
            return []
        if item.name == "battery_voltage":
            self.volts = as_float(item.value)
            return []
        if item.name != MARKER or not isinstance(item.value, bool):
            return []
        was, self.low = self.low, item.value
        if item.value and not was:
            return [make_event(self._new_id, "LOW_BATTERY", item.ts_ms, {"voltage_v": self.volts})]
        return []

    def tick(self, now_ms: int) -> list[Event]:
        """Nothing happens with time alone."""
        return []

    def to_state(self) -> dict[str, Any]:
        """Whether the battery was low (so a restart does not report it twice)."""
        return {"low": self.low}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`to_state`."""
        self.low = bool(state.get("low", False))
