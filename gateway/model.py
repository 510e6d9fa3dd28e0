"""Values that flow between the stages. Frozen, slotted, no I/O.

Dates are milliseconds since the epoch (DRUST's convention), units follow DRUST
(``speed`` in km/h, temperatures in °C).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Scalar = float | int | str | bool | tuple[str, ...] | tuple[int, ...] | None


#: What one stored record holds: a timeseries batch of samples, one Event or one TripRecord. These are the
#: names on the wire and in stats; the store maps them to its own codes (``gateway.store.KIND_CODES``).
RecordKind = Literal["timeseries", "event", "trip"]


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch: the date of every sample, event and trip."""
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Sample:
    """One decoded value read from the vehicle (or the adapter, such as battery voltage).

    ``pid`` is the mode 01 PID (0x0C for RPM), or ``None`` for values that do not come from a PID
    (``battery_voltage`` from ATRV). ``ecu`` is the answering ECU's address (0x7E8), 0 when unknown.
    """

    ts_ms: int
    name: str
    value: Scalar
    unit: str = ""
    pid: int | None = None
    ecu: int = 0


@dataclass(frozen=True, slots=True)
class LinkState:
    """What the adapter session saw of the car at ``ts_ms``: detectors use it for ignition-off.

    ``ecu_responding`` is False when requests to the car go unanswered (NO DATA, UNABLE TO CONNECT)
    while the adapter itself is alive; ``adapter_connected`` is False while the adapter is gone.
    """

    ts_ms: int
    adapter_connected: bool
    ecu_responding: bool
    protocol: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    """A detected event, in DRUST's Event shape with Automatic's type name alongside.

    ``type`` is DRUST's (``HARD_BRAKE``), ``automatic_type`` Automatic's (``notification:hard_brake``).
    """

    id: str
    type: str
    automatic_type: str
    date_ms: int
    trip_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form sent to back-ends (DRUST field names)."""
        return {
            "id": self.id,
            "trip": self.trip_id,
            "date": self.date_ms,
            "type": self.type,
            "automatic_type": self.automatic_type,
            "payload": dict(self.payload),
        }


@dataclass(frozen=True, slots=True)
class TripRecord:
    """A finished trip's summary; ``summary`` holds DRUST Trip fields plus Automatic's extras."""

    id: str
    start_ms: int
    stop_ms: int
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form sent to back-ends (DRUST Trip field names)."""
        out = dict(self.summary)
        out.setdefault("id", self.id)
        out.setdefault("start", {"date": self.start_ms})
        out.setdefault("stop", {"date": self.stop_ms})
        out.setdefault("duration", self.stop_ms - self.start_ms)
        return out
