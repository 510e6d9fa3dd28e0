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


class Samples(tuple[Sample, ...]):
    """The samples of one poll round, or of a burst's rounds in the order they were read, carried on the
    bus as one item.

    One item per round (per burst of the link pump, a few hundred ms of rounds) instead of one per value:
    each bus hop, queue put and consumer wake-up is paid once per item. Subscribers that did not ask for
    batches get the samples one by one
    (:meth:`gateway.bus.Bus.subscribe`), so a batch is invisible outside the daemon's own consumers.
    """

    __slots__ = ()


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


#: User Equivalent Range Error (m) used to turn an HDOP into an accuracy when the receiver gives no
#: error estimate: accuracy ≈ HDOP × UERE. 5 m is the usual figure for a single-frequency consumer
#: receiver (see "Dilution of precision (navigation)", the DOP × UERE rule); gpsd's TPV ``eph`` wins.
UERE_M = 5.0


@dataclass(frozen=True, slots=True)
class Position:
    """One GPS fix from the location source (gpsd or an NMEA receiver), with its quality.

    ``mode`` is gpsd's: 2 (2D fix) or 3 (3D fix); sources never publish mode 0/1 (no fix).
    ``accuracy_m`` is the horizontal error estimate (gpsd's ``eph``, else HDOP × :data:`UERE_M`).
    ``cog`` is the course over ground in degrees (NMEA RMC/VTG, gpsd ``track``), ``speed_kmh`` the
    GPS speed. ``gps_ms`` is the receiver's own time of the fix (0 when it gave none); ``ts_ms`` is
    when the gateway received it (the clock every other sample uses).
    """

    ts_ms: int
    lat: float
    lon: float
    mode: int = 3
    hdop: float | None = None
    accuracy_m: float | None = None
    altitude: float | None = None
    satellites_used: int | None = None
    satellites_visible: int | None = None
    cog: float | None = None
    speed_kmh: float | None = None
    gps_ms: int = 0

    def location(self) -> dict[str, Any]:
        """DRUST's Timeseries ``location`` object (only the fields that are known)."""
        out: dict[str, Any] = {"lat": self.lat, "lon": self.lon}
        for key, value in (
            ("hdop", self.hdop),
            ("altitude", self.altitude),
            ("satellites_used", self.satellites_used),
            ("satellites_visibles", self.satellites_visible),
            ("cog", None if self.cog is None else round(self.cog)),
        ):
            if value is not None:
                out[key] = value
        return out

    def accuracy(self) -> float | None:
        """Horizontal accuracy in metres (``accuracy_m``, else HDOP × UERE), None when unknown."""
        if self.accuracy_m is not None:
            return self.accuracy_m
        return None if self.hdop is None else round(self.hdop * UERE_M, 1)

    def samples(self) -> list[Sample]:
        """The fix as timeseries samples (names of DRUST's Location object, ``gps_speed``, ``gps_mode``)."""
        ts = self.ts_ms
        out = [Sample(ts, "latitude", self.lat, "deg"), Sample(ts, "longitude", self.lon, "deg")]
        for name, value, unit in (
            ("hdop", self.hdop, ""),
            ("altitude", self.altitude, "m"),
            ("satellites_used", self.satellites_used, ""),
            ("satellites_visibles", self.satellites_visible, ""),
            ("cog", self.cog, "deg"),
            ("gps_speed", self.speed_kmh, "km/h"),
        ):
            if value is not None:
                out.append(Sample(ts, name, value, unit))
        out.append(Sample(ts, "gps_mode", self.mode, ""))
        return out
