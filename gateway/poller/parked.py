"""The parked plan's timing and battery state: when the next check is due, whether the battery is low.

While parked the poller reads only the battery voltage (ATRV) and checks whether the ECU wakes, every
``polling.parked_interval_s``, putting the adapter in its low-power mode between checks where it has one;
below ``polling.parked_min_battery_v`` even the wake check stops until the voltage recovers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ParkedPlan:
    """Pure state: no I/O. The poller asks :meth:`due` and reports voltages with :meth:`battery`; the
    interval and threshold come from the live ``[polling]`` section on each call (SIGHUP changes them)."""

    next_at: float = 0.0
    low_battery: bool = False
    sleeping: bool = False

    def restart(self) -> None:
        """The plan was (re)entered: the first check is due at once."""
        self.next_at = 0.0

    def due(self, now: float, interval_s: float) -> bool:
        """Whether a check is due at ``now``; if so the next one is scheduled ``interval_s`` later."""
        if now < self.next_at:
            return False
        self.next_at = now + interval_s
        return True

    def wait_s(self, now: float) -> float:
        """Seconds until the next check."""
        return max(0.0, self.next_at - now)

    def battery(self, volts: float | None, min_battery_v: float) -> bool:
        """Record a reading; whether the low-battery state (below ``min_battery_v``) changed."""
        low = volts is not None and volts < min_battery_v
        changed = low != self.low_battery
        self.low_battery = low
        return changed
