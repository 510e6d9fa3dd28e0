"""The parked plan's policy: when to read the voltage, when the bus may be touched, whether the battery is low.

Pure state, no I/O, time passed in. While parked (the ignition-off is confirmed, or the box started in a
parked car) the poller reads only the adapter's own voltage (ATRV: the adapter measures its supply pin, no
byte goes on the car's bus) every ``power.voltage_interval_s``. One OBD request (the wake check, 010C to
the engine) is sent only when :meth:`ParkedPlan.observe` or :meth:`ParkedPlan.wake_check_due` says so:

* **charging**: the voltage rises to ``charging_voltage_v`` (13.2 V) or above after having been below it.
  A running alternator holds a 12 V system at about 13.5-14.7 V; a lead-acid battery at rest reads
  12.4-12.7 V (the usual battery voltage charts, e.g. the state-of-charge tables of battery makers and
  the "13.5 to 14.5 V with the engine running" test of alternator guides). A reading already above it
  when parking starts (surface charge just after the engine stopped) does not count until it has fallen
  below once.
* **crank_dip**: a reading at least ``CRANK_DIP_V`` (1.0 V) below the last resting reading — the starter
  draws 100-200 A and pulls a healthy battery to about 9.6-10.5 V (the battery load-test rule: no lower
  than 9.6 V while cranking); nothing else in a parked car draws that much. The check goes out at the
  dip itself: the key is on, the ECUs are powered, so the request wakes nothing and the trip starts
  about a second earlier than the charging sign would give (the recovery that follows shows as
  charging). Only when a reading falls inside the crank (about 1-2 s); one sign per dip.
* **ecu_awake** (decided by the poller): the ECU still answered the last request — the plan started
  while the car was awake (the box started in a running car before detection saw it run, a car whose
  ECUs answer for a while after the key is off). A request then wakes nothing; one per reading goes
  on until the ECU falls silent.
* **wake_check**: ``power.wake_check`` on, every ``power.wake_check_interval_s``; the only way to find a
  start on a car whose voltage shows none (some hybrids and start-stop cars), and the fallback where the
  voltage cannot be read (raw CAN, a clone without ATRV), whatever the switch says.

**Battery guard**: readings below ``power.low_battery_v`` for ``power.low_battery_confirm_s`` (30 s)
make the battery low — a crank dip lasts a second or two, a flat battery stays flat: no request at
all, not even the wake check, until a reading
at or above ``low_battery_v + low_battery_hysteresis_v``. Reported once per change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Sign = Literal["charging", "crank_dip", "wake_check", "ecu_awake"]

CRANK_DIP_V = 1.0
REARM_BELOW_V = 0.2  # the charging sign re-arms once the voltage is this far below charging_voltage_v
ADAPTER_SLEEP_MIN_S = 30.0  # sleeping the chip between readings only pays off at long intervals (ATLP: 1 s delay)


@dataclass
class ParkedPlan:
    """See the module docstring. The poller calls :meth:`enter` when the plan starts, :meth:`reading_due`
    before each ATRV, :meth:`observe` with its value and :meth:`wake_check_due` for the timer."""

    next_read_at: float = 0.0
    next_wake_at: float = math.inf
    low_battery: bool = False
    sleeping: bool = False
    since: float | None = None
    rest_v: float | None = None
    dip_at: float | None = None
    below_since: float | None = None
    charging_armed: bool = False
    last_volts: float | None = None
    wake_checks: int = 0
    requests_at_entry: int = 0
    announced: bool = False  # "parked, waiting for the engine" logged since the last start of the engine

    def enter(self, now: float, *, wake_interval_s: float | None, bus_requests: int) -> None:
        """The plan (re)starts at ``now``: a reading is due at once; the wake check (when on) after its interval."""
        self.since = now
        self.next_read_at = now
        self.next_wake_at = now + wake_interval_s if wake_interval_s is not None else math.inf
        self.rest_v = None
        self.dip_at = None
        self.charging_armed = False
        self.wake_checks = 0
        self.requests_at_entry = bus_requests

    def leave(self) -> None:
        """The engine runs again (driving plan)."""
        self.since = None
        self.announced = False
        self.next_wake_at = math.inf

    def reading_due(self, now: float, interval_s: float) -> bool:
        """Whether an ATRV is due at ``now``; if so the next one is scheduled ``interval_s`` later."""
        if now < self.next_read_at:
            return False
        self.next_read_at = now + interval_s
        return True

    def wait_s(self, now: float) -> float:
        """Seconds until the next reading or wake check."""
        return max(0.0, min(self.next_read_at, self.next_wake_at) - now)

    def wake_check_due(self, now: float, interval_s: float) -> bool:
        """Whether the timed wake check is due (never while the battery is low); schedules the next one."""
        if now < self.next_wake_at or self.low_battery:
            return False
        self.next_wake_at = now + interval_s
        self.wake_checks += 1
        return True

    def observe(
        self,
        now: float,
        volts: float,
        *,
        charging_v: float,
        low_v: float,
        hysteresis_v: float,
        low_confirm_s: float = 30.0,
    ) -> tuple[Sign | None, bool]:
        """Record a voltage reading: (a sign that the engine started or None, whether ``low_battery`` changed)."""
        self.last_volts = volts
        changed = self._guard(now, volts, low_v, hysteresis_v, low_confirm_s)
        sign: Sign | None = None
        if volts >= charging_v:
            if self.charging_armed:
                sign = "charging"
            self.charging_armed = False
        elif volts < charging_v - REARM_BELOW_V:
            self.charging_armed = True
        rest = self.rest_v
        if rest is not None and volts <= rest - CRANK_DIP_V:
            if self.dip_at is None:
                sign = sign or "crank_dip"
            self.dip_at = now  # readings during the dip do not move the resting level
        else:
            self.dip_at = None
            if volts < charging_v:
                self.rest_v = volts
        if self.low_battery:
            sign = None  # the guard stops every request; a charging alternator clears it first
        return sign, changed

    def _guard(self, now: float, volts: float, low_v: float, hysteresis_v: float, confirm_s: float) -> bool:
        if volts >= low_v:
            self.below_since = None
        elif self.below_since is None:
            self.below_since = now
        if not self.low_battery and self.below_since is not None and now - self.below_since >= confirm_s:
            self.low_battery = True
            return True
        if self.low_battery and volts >= low_v + hysteresis_v:
            self.low_battery = False
            return True
        return False


def shutdown_due(
    *, low_battery: bool, parked_for_s: float | None, command: str, after_parked_h: float
) -> str | None:
    """Why the configured shutdown command should run now (None: it should not).

    A low battery while parked runs it at once; ``after_parked_h`` > 0 runs it after that long parked."""
    if not command.strip() or parked_for_s is None:
        return None
    if low_battery:
        return "low battery"
    if after_parked_h > 0 and parked_for_s >= after_parked_h * 3600:
        return f"parked for {after_parked_h:g} h"
    return None
