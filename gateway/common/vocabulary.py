"""The one JSON vocabulary of every output: diagnostic socket, CLI ``--json``, MQTT and HTTPS payloads.

* **PIDs** as upper-case hex strings: two digits for a mode 01 PID (``"0C"``), four for a DID (``"F190"``);
  ``None`` for values without a PID (VIN, battery voltage, positions).
* **ECUs** as upper-case hex strings (``"7E8"``); ``None`` when unknown (0: headers off).
* **Values** rounded to the PID's resolution (:func:`decimals`): ``fuel_level`` is ``100/255 × raw``, so
  ``39.22`` rather than ``39.21568627450981``; whole numbers stay exact. The rounding never merges two
  different raw readings (the grid is at most a tenth of the step), so nothing that changed is lost.
* **Units** as the PID catalogue spells them (``gateway/obd/pids.py``, docs/pids.md: ``km/h``, ``°C``,
  ``rpm``, ``%``, ``kPa``, ``V``...), the sample's own unit everywhere.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from gateway.model import Sample
from gateway.obd import pids

#: at most this many decimals: a terminating step finer than that (1/32768) uses the fallback rule
_MAX_EXACT = 6


def pid_hex(pid: int | None) -> str | None:
    """A PID as two (or four, for a DID) upper-case hex digits; None for values without a PID."""
    if pid is None:
        return None
    return format(pid, "02X") if pid <= 0xFF else format(pid, "04X")


def ecu_hex(ecu: int | None) -> str | None:
    """An ECU as upper-case hex (``7E8``); None when unknown (0)."""
    return format(ecu, "X") if ecu else None


def _step_decimals(step: float, add: float) -> int:
    for d in range(_MAX_EXACT + 1):
        scale = 10**d
        if abs(step * scale - round(step * scale)) < 1e-9 and abs(add * scale - round(add * scale)) < 1e-9:
            return d
    # a step without a short decimal form (100/255, 1/32768): one digit more than the step's first
    # significant one, so the grid is at most a tenth of the step and two readings never round together
    return max(0, math.ceil(-math.log10(step))) + 1


@cache
def decimals(name: str) -> int | None:
    """Decimals of the value called ``name`` (a catalogue field), None when not a scaled number."""
    entry = pids.by_name().get(name)
    if entry is None:
        return None
    f = entry[1]
    if f.kind != pids.LINEAR:
        return None
    return _step_decimals(abs(f.mul / f.div), f.add)


def value(name: str, v: Any) -> Any:
    """``v`` rounded to the resolution of ``name`` (unchanged when it has none or is not a float)."""
    if type(v) is not float:
        return v
    return rounded(v, decimals(name))


def rounded(v: Any, d: int | None) -> Any:
    """``v`` rounded to ``d`` decimals (:func:`decimals` of its name, looked up once per series by callers
    that convert many values); unchanged when ``d`` is None or ``v`` is not a finite float."""
    if d is None or type(v) is not float or not math.isfinite(v):
        return v
    return round(v, d)


def sample_row(name: str, v: Any, unit: str, pid: int | None, ecu: int | None) -> dict[str, Any]:
    """One value in the vocabulary: ``{"name", "value", "unit", "pid", "ecu"}``."""
    return {"name": name, "value": value(name, v), "unit": unit, "pid": pid_hex(pid), "ecu": ecu_hex(ecu)}


def sample(s: Sample) -> dict[str, Any]:
    """A sample in the vocabulary: ``{"name", "value", "unit", "pid", "ecu", "ts_ms"}``."""
    return {**sample_row(s.name, s.value, s.unit, s.pid, s.ecu), "ts_ms": s.ts_ms}
