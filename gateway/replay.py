"""Recorded drives: read them (CSV, DRUST ``Collection<Timeseries>`` JSON), write them, replay them.

CSV: the first line names the columns with DRUST Timeseries field names; ``date`` (ms since the epoch)
is required, every other column is one decoded value (``speed`` km/h, ``engine_rpm``,
``engine_coolant_temperature`` °C, ``battery_voltage`` V, ``mil``, ``dtcs`` …). An empty cell means
"not measured in this row". Two extension columns carry the link state the live engine saw:
``adapter_connected`` and ``ecu_responding`` (``true``/``false``, with optional ``protocol``); a row with
them is a :class:`~gateway.model.LinkState`. Rows may be irregularly spaced.

A row that cannot be used (wrong number of cells, a date that is not an integer or lies more than 1 s
before the latest date seen, a value that is not a number where one is needed) is reported with its
line number and skipped as a whole, never used in part.

:func:`write_csv` records a live stream in the same format, one item per row in arrival order, so a
replay feeds the engine exactly what it saw live.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gateway.config import DetectionConfig, LocationConfig
from gateway.detection import DetectionEngine
from gateway.detectors.base import IdFactory, uuid4_str
from gateway.detectors.mil import parse_dtcs
from gateway.errors import ParseError
from gateway.location.geo import valid_lat_lon
from gateway.model import Event, LinkState, Position, Sample, Scalar, TripRecord

# Units of the names we know; anything else is replayed with an empty unit.
UNITS: dict[str, str] = {
    "speed": "km/h",
    "engine_rpm": "rpm",
    "engine_coolant_temperature": "°C",
    "battery_voltage": "V",
    "maf": "g/s",
    "engine_fuel_rate": "L/h",
    "fuel_level": "%",
    "odometer": "km",
    "engine_load": "%",
    "throttle_position": "%",
    "intake_air_temperature": "°C",
}
BOOL_NAMES = frozenset({"mil", "dtcs_cleared"})
TEXT_NAMES = frozenset({"dtcs", "vin", "protocol"})
LINK_COLUMNS = ("adapter_connected", "ecu_responding")
#: CSV columns of a position (docs/location.md); ``latitude`` and ``longitude`` make a row a fix
POSITION_COLUMNS = ("latitude", "longitude", "altitude", "hdop", "satellites_used", "cog", "gps_speed")
Item = Sample | LinkState | Position
# A live stream is in arrival order, and values read in one exchange are stamped before those that
# are published after them (a DTC read in between), so dates may step back a little; a larger step
# back means a shuffled or concatenated file.
REORDER_TOLERANCE_MS = 1000
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(slots=True)
class Recording:
    """What a file held: the items in order, and the rows that were skipped (line, reason)."""

    items: list[Item] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class ReplayResult:
    """The trips and events of a replay."""

    trips: list[TripRecord]
    events: list[Event]
    skipped: list[tuple[int, str]]

    def to_dict(self) -> dict[str, Any]:
        """``{"trips": [...], "events": [...]}`` in DRUST form (plus ``skipped`` rows)."""
        return {
            "trips": [t.to_dict() for t in self.trips],
            "events": [e.to_dict() for e in self.events],
            "skipped": [{"line": line, "reason": reason} for line, reason in self.skipped],
        }


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"not true/false: {text!r}")


def _parse_value(name: str, value: Any) -> Scalar | tuple[str, ...]:
    """One cell (CSV text or a JSON value) as the value the live pipeline would have produced."""
    if name in BOOL_NAMES:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return bool(value)
        return _parse_bool(str(value))
    if name == "dtcs":
        codes = parse_dtcs(value)
        if codes is None:
            raise ValueError(f"not a list of trouble codes: {value!r}")
        return codes
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{name}: not a finite number: {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"unsupported value {value!r}")
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        if name in UNITS:
            raise ValueError(f"{name}: not a number: {text!r}") from None
        return text
    if not math.isfinite(number):
        raise ValueError(f"{name}: not a finite number: {text!r}")
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _parse_date(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"date: not a timestamp in ms: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ValueError(f"date: not a timestamp in ms: {value!r}")


def _number(name: str, raw: Any) -> float:
    value = _parse_value(name, raw) if not isinstance(raw, (int, float)) or isinstance(raw, bool) else raw
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: not a finite number: {raw!r}")
    return float(value)


def _position(date: int, pos: dict[str, Any]) -> Position:
    """A fix from CSV position columns or a DRUST ``location`` object (``lat``/``lon``); ValueError when bad."""
    lat = _number("latitude", pos["latitude"])
    lon = _number("longitude", pos["longitude"])
    if not valid_lat_lon(lat, lon):
        raise ValueError(f"position out of range: latitude {lat}, longitude {lon}")
    opt = {k: _number(k, v) for k, v in pos.items() if k not in ("latitude", "longitude") and v is not None}
    sats = opt.get("satellites_used")
    seen = opt.get("satellites_visibles")
    return Position(
        date,
        lat,
        lon,
        3 if "altitude" in opt else 2,
        hdop=opt.get("hdop"),
        accuracy_m=opt.get("accuracy_m"),
        altitude=opt.get("altitude"),
        satellites_used=None if sats is None else int(sats),
        satellites_visible=None if seen is None else int(seen),
        cog=opt.get("cog"),
        speed_kmh=opt.get("gps_speed"),
    )


_DRUST_LOCATION = {"lat": "latitude", "lon": "longitude", "hdop": "hdop", "altitude": "altitude",
                   "satellites_used": "satellites_used", "satellites_visibles": "satellites_visibles", "cog": "cog"}


def _row_items(date: int, fields: Iterable[tuple[str, Any]]) -> list[Item]:
    """The items of one row; raises ``ValueError`` naming the bad field."""
    values: dict[str, Any] = {}
    link: dict[str, Any] = {}
    pos: dict[str, Any] = {}
    for name, raw in fields:
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            continue
        if name == "location" and isinstance(raw, dict):
            # DRUST Timeseries Location object (drust-api.txt): lat, lon, hdop, altitude, satellites_*, cog
            if "lat" in raw and "lon" in raw:
                pos.update({_DRUST_LOCATION[k]: v for k, v in raw.items() if k in _DRUST_LOCATION})
            continue
        if name in POSITION_COLUMNS:
            pos[name] = raw
            continue
        if isinstance(raw, (dict, list)) and name != "dtcs":
            continue  # nested DRUST objects (device, location, acceleration) carry nothing we detect on
        if name in LINK_COLUMNS:
            link[name] = raw if isinstance(raw, bool) else _parse_bool(str(raw))
        elif name == "protocol":
            link[name] = str(raw)
        else:
            values[name] = _parse_value(name, raw)
    items: list[Item] = []
    if pos:
        if "latitude" not in pos or "longitude" not in pos:
            raise ValueError("a position needs both latitude and longitude")
        items.append(_position(date, pos))
    if link:
        if set(LINK_COLUMNS) - set(link):
            raise ValueError("a link state needs both adapter_connected and ecu_responding")
        items.append(
            LinkState(date, link["adapter_connected"], link["ecu_responding"], str(link.get("protocol", "")))
        )
    for name, value in values.items():
        items.append(Sample(date, name, value, UNITS.get(name, "")))
    return items


def read_csv(stream: TextIO, origin: str = "<csv>") -> Recording:
    """Read a CSV recording (see the module docstring)."""
    rec = Recording()
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise ParseError(f"{origin}: empty file, expected a header line naming the columns") from None
    except csv.Error as exc:
        raise ParseError(f"{origin}:1: {exc}") from None
    header = [h.strip() for h in header]
    if "date" not in header and "Device Time" in header:
        return read_torque(header, reader, origin)
    if "date" not in header:
        raise ParseError(f"{origin}:1: no 'date' column in the header {header}")
    if len(set(header)) != len(header):
        raise ParseError(f"{origin}:1: a column is named twice in {header}")
    date_at = header.index("date")
    last_date: int | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rec.skipped.append((reader.line_num, str(exc)))
            continue
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            rec.skipped.append((line, f"{len(row)} cells, the header has {len(header)}"))
            continue
        try:
            date = _parse_date(row[date_at])
            if last_date is not None and date < last_date - REORDER_TOLERANCE_MS:
                raise ValueError(f"date {date} goes backwards (latest row {last_date})")
            items = _row_items(date, ((h, c) for h, c in zip(header, row, strict=True) if h != "date"))
        except ValueError as exc:
            rec.skipped.append((line, str(exc)))
            continue
        last_date = date if last_date is None else max(last_date, date)
        rec.items.extend(items)
    return rec


#: Torque Pro CSV export column → (our name, factor). Torque writes "-" for a value it did not have and
#: pads headers with spaces (" Latitude"); its "Device Time" reads "18-Mar-2021 09:12:34.567" (the
#: phone's local time, taken here as UTC: a replay only needs the order and spacing of rows).
TORQUE_COLUMNS: dict[str, tuple[str, float]] = {
    "Longitude": ("longitude", 1.0),
    "Latitude": ("latitude", 1.0),
    "Altitude": ("altitude", 1.0),
    "Bearing": ("cog", 1.0),
    "GPS Speed (Meters/second)": ("gps_speed", 3.6),
    "Horizontal Dilution of Precision": ("hdop", 1.0),
    "Speed (OBD)(km/h)": ("speed", 1.0),
    "Engine RPM(rpm)": ("engine_rpm", 1.0),
    "Engine Coolant Temperature(°C)": ("engine_coolant_temperature", 1.0),
    "Engine Load(%)": ("engine_load", 1.0),
    "Throttle Position(Manifold)(%)": ("throttle_position", 1.0),
    "Mass Air Flow Rate(g/s)": ("maf", 1.0),
    "Voltage (Control Module)(V)": ("battery_voltage", 1.0),
    "Fuel flow rate/hour(l/hr)": ("engine_fuel_rate", 1.0),
}


def _torque_date(text: str) -> int:
    from datetime import UTC, datetime

    t = text.strip()
    for fmt in ("%d-%b-%Y %H:%M:%S.%f", "%d-%b-%Y %H:%M:%S"):
        try:
            return int(datetime.strptime(t, fmt).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            continue
    raise ValueError(f"Device Time: not a Torque time like 18-Mar-2021 09:12:34.567: {text!r}")


def read_torque(header: list[str], reader: Any, origin: str) -> Recording:
    """A Torque Pro CSV export (header with ``Device Time``; see :data:`TORQUE_COLUMNS`)."""
    rec = Recording()
    names = [h.strip() for h in header]
    at = names.index("Device Time")
    cols = [(i, TORQUE_COLUMNS[n]) for i, n in enumerate(names) if n in TORQUE_COLUMNS]
    last_date: int | None = None
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if row[0].strip() == names[0] and len(row) == len(names):
            continue  # Torque repeats the header when a logging session is appended
        if len(row) != len(names):
            rec.skipped.append((line, f"{len(row)} cells, the header has {len(names)}"))
            continue
        try:
            date = _torque_date(row[at])
            if last_date is not None and date < last_date - REORDER_TOLERANCE_MS:
                raise ValueError(f"date {date} goes backwards (latest row {last_date})")
            fields: list[tuple[str, Any]] = []
            for i, (name, factor) in cols:
                cell = row[i].strip()
                if cell in ("", "-"):
                    continue
                fields.append((name, _number(name, cell) * factor))
            items = _row_items(date, fields)
        except ValueError as exc:
            rec.skipped.append((line, str(exc)))
            continue
        last_date = date if last_date is None else max(last_date, date)
        rec.items.extend(items)
    return rec


def read_json(data: Any, origin: str = "<json>") -> Recording:
    """Read a DRUST ``Collection<Timeseries>`` (``{"items": [...]}``) or a bare list of Timeseries.

    Bad items are reported as "line" numbers counting items from 1.
    """
    if isinstance(data, dict):
        items = data.get("items")
        if not isinstance(items, list):
            raise ParseError(f"{origin}: expected a Collection<Timeseries> with an 'items' list")
    elif isinstance(data, list):
        items = data
    else:
        raise ParseError(f"{origin}: expected a Collection<Timeseries> object or a list of Timeseries")
    rec = Recording()
    last_date: int | None = None
    for index, obj in enumerate(items, start=1):
        try:
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            if "date" not in obj:
                raise ValueError("no 'date'")
            date = _parse_date(obj["date"])
            if last_date is not None and date < last_date - REORDER_TOLERANCE_MS:
                raise ValueError(f"date {date} goes backwards (latest item {last_date})")
            row = _row_items(date, ((k, v) for k, v in obj.items() if k != "date"))
        except ValueError as exc:
            rec.skipped.append((index, str(exc)))
            continue
        last_date = date if last_date is None else max(last_date, date)
        rec.items.extend(row)
    return rec


def read_file(path: str | Path) -> Recording:
    """Read a recording, choosing the format by its first non-blank character (``{``/``[`` is JSON)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ParseError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"{p}: cannot read: {exc}") from None
    if text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParseError(f"{p}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        return read_json(data, str(p))
    return read_csv(io.StringIO(text, newline=""), str(p))


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ";".join(str(v) for v in value) if value else "none"
    if value is None:
        return ""
    return str(value)


def write_csv(items: Sequence[Item], stream: TextIO) -> None:
    """Record ``items`` as CSV, one item per row in order (so replay sees exactly the live order)."""
    names: list[str] = []
    for item in items:
        if isinstance(item, Sample) and item.name not in names:
            names.append(item.name)
    has_pos = any(isinstance(item, Position) for item in items)
    pos_cols = [c for c in POSITION_COLUMNS if c not in names] if has_pos else []
    header = ["date", *names, *LINK_COLUMNS, "protocol", *pos_cols]
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    width = len(header)
    col = {name: i for i, name in enumerate(header)}
    for item in items:
        row = [""] * width
        row[0] = str(item.ts_ms)
        if isinstance(item, LinkState):
            row[col["adapter_connected"]] = _cell(item.adapter_connected)
            row[col["ecu_responding"]] = _cell(item.ecu_responding)
            row[col["protocol"]] = item.protocol
        elif isinstance(item, Position):
            for c, v in zip(
                POSITION_COLUMNS,
                (item.lat, item.lon, item.altitude, item.hdop, item.satellites_used, item.cog, item.speed_kmh),
                strict=True,
            ):
                row[col[c]] = _cell(v)
        else:
            row[col[item.name]] = _cell(item.value)
        writer.writerow(row)


def replay(
    items: Iterable[Item],
    cfg: DetectionConfig | None = None,
    *,
    device_id: str = "replay",
    car_id: str = "",
    new_id: IdFactory = uuid4_str,
    location: LocationConfig | None = None,
) -> tuple[list[TripRecord], list[Event]]:
    """Run the detection engine over ``items`` and close what is open at the end of the recording."""
    engine = DetectionEngine(
        cfg or DetectionConfig(), device_id=device_id, car_id=car_id, new_id=new_id, location=location
    )
    trips: list[TripRecord] = []
    events: list[Event] = []
    last: int | None = None
    for item in items:
        last = item.ts_ms
        _split(engine.feed(item), trips, events)
    if last is not None:
        _split(engine.end_of_input(last), trips, events)
    return trips, events


def replay_file(
    path: str | Path,
    cfg: DetectionConfig | None = None,
    *,
    device_id: str = "replay",
    location: LocationConfig | None = None,
) -> ReplayResult:
    """Read and replay a recording; the events in time order (by ``date``, ties in emission order)."""
    rec = read_file(path)
    trips, events = replay(rec.items, cfg, device_id=device_id, location=location)
    # in time order: an episode is sent when it ends, after events dated later than its start
    events.sort(key=lambda e: e.date_ms)
    return ReplayResult(trips, events, rec.skipped)


def _split(out: list[Event | TripRecord], trips: list[TripRecord], events: list[Event]) -> None:
    for x in out:
        if isinstance(x, TripRecord):
            trips.append(x)
        else:
            events.append(x)
