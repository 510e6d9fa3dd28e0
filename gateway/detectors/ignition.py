"""Ignition on/off, inferred from what the car shows (an OBD port has no ignition wire).

Evidence that the engine runs: the vehicle moving, RPM above zero, or — when RPM is not known (the
ECU is silent or RPM is not polled) — the battery at charging voltage (``charging_voltage_v``, 13.2 V).
An ECU starting to answer after being silent (the key turned) also switches the ignition on.

Ignition goes off only after ``confirm_s`` (60 s) without any running evidence, counted from the last
item that showed it, so a cranking voltage dip or a stop-start engine resting at a red light does not
split a trip. The ``ignition:off`` event is sent when the confirmation ends but is dated at that last
running item: that is when the trip ended. A known RPM beats the voltage: a battery still above 13.2 V
just after the engine stopped (surface charge) must not hold the ignition on while the ECU says 0 RPM.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.detectors.base import IdFactory, as_float, make_event, uuid4_str
from gateway.model import Event, LinkState, Sample


class IgnitionDetector:
    """``IGNITION_ON`` / ``IGNITION_OFF``. ``off_since`` is set while an off is being confirmed."""

    #: the only sample names ``feed`` reads (any other sample only moves time on: :meth:`tick`)
    SAMPLE_NAMES: ClassVar[frozenset[str]] = frozenset({"engine_rpm", "battery_voltage", "speed"})

    def __init__(
        self, *, confirm_s: float = 60.0, charging_voltage_v: float = 13.2, new_id: IdFactory = uuid4_str
    ) -> None:
        self.confirm_ms = round(confirm_s * 1000)
        self.charging_v = charging_voltage_v
        self._new_id = new_id
        self.on = False
        self.off_since: int | None = None
        self.last_running_ms: int | None = None
        self.rpm: float | None = None  # None: not known since the ECU last went silent
        self.volt: float | None = None
        self.moving = False
        self.ecu_ok: bool | None = None  # None until the first link state

    def running(self) -> bool:
        """Whether the latest observations say the engine runs."""
        if self.moving:
            return True
        if self.rpm is not None:
            return self.rpm > 0
        return self.volt is not None and self.volt >= self.charging_v

    def feed(self, item: Sample | LinkState) -> list[Event]:
        """Events completed by ``item``: a confirmed off (time passed) and/or an ignition on."""
        now = item.ts_ms
        out = self.tick(now)
        seen = self._observe(item)
        if seen is None:
            return out
        fresh, woke, trigger = seen
        running = self.running()
        if running and fresh:
            self.last_running_ms = now
        if not self.on:
            if running or woke:
                self.on = True
                self.off_since = None if running else now
                out.append(make_event(self._new_id, "IGNITION_ON", now, {"trigger": trigger}))
        elif running:
            self.off_since = None
        elif self.off_since is None:
            # The engine stopped after the last sign of running: with a silent ECU the first sign of
            # "off" comes seconds later (the poller's silence time-out), the last running sample does not.
            last = self.last_running_ms
            self.off_since = last if last is not None and last <= now else now
        return out

    def _observe(self, item: Sample | LinkState) -> tuple[bool, bool, str] | None:
        """Take what ``item`` says of the engine: (does it show the engine running right now, did the ECU
        just wake, the trigger name); None for an item that says nothing about it."""
        if isinstance(item, LinkState):
            ok = item.adapter_connected and item.ecu_responding
            woke = ok and self.ecu_ok is False
            self.ecu_ok = ok
            if not ok:
                # A silent ECU reports nothing: what we knew of RPM and motion is no longer current, and
                # a voltage read while the engine ran must not hold the ignition on after it stopped
                # (the poller reads ATRV only now and then): only a fresh reading counts from here.
                self.rpm = None
                self.moving = False
                self.volt = None
            return False, woke, "ecu_responding"
        value = as_float(item.value)
        if value is None:
            return None
        if item.name == "engine_rpm":
            self.rpm = value
            return value > 0, False, item.name
        if item.name == "battery_voltage":
            self.volt = value
            return self.rpm is None and value >= self.charging_v, False, item.name
        if item.name == "speed":
            self.moving = value > 0
            return self.moving, False, item.name
        return None

    def tick(self, now_ms: int) -> list[Event]:
        """``IGNITION_OFF`` once the engine has shown no sign of running for ``confirm_s``."""
        if self.on and self.off_since is not None and now_ms - self.off_since >= self.confirm_ms:
            date = self.off_since
            self.on = False
            self.off_since = None
            return [make_event(self._new_id, "IGNITION_OFF", date, {"confirm_s": self.confirm_ms / 1000})]
        return []

    def force_off(self, now_ms: int) -> list[Event]:
        """End of input (replay): an ignition still on goes off, dated when it stopped running if known."""
        if not self.on:
            return []
        if self.off_since is not None:  # the off was being confirmed: the same event as live
            date, payload = self.off_since, {"confirm_s": self.confirm_ms / 1000}
        else:
            date, payload = now_ms, {"end_of_input": True}
        self.on = False
        self.off_since = None
        return [make_event(self._new_id, "IGNITION_OFF", date, payload)]

    def to_state(self) -> dict[str, Any]:
        """What must survive a restart."""
        return {
            "on": self.on,
            "off_since": self.off_since,
            "last_running_ms": self.last_running_ms,
            "ecu_ok": self.ecu_ok,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`to_state`.

        Nothing observed before the restart is current, so an ignition that was on starts confirming
        its off from the last moment it was seen running: running evidence after the restart cancels
        that, and a restart long after the car was parked ends the trip when it really ended.
        """
        self.on = bool(state.get("on", False))
        last = state.get("last_running_ms")
        self.last_running_ms = int(last) if last is not None else None
        off = state.get("off_since")
        self.off_since = int(off) if off is not None else None
        if self.on and self.off_since is None:
            self.off_since = self.last_running_ms
        ecu = state.get("ecu_ok")
        self.ecu_ok = None if ecu is None else bool(ecu)
        self.rpm = None
        self.volt = None
        self.moving = False
