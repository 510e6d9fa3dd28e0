"""DRUST's vocabulary on the uplink side: stored record bodies → what the MQTT and HTTPS uplinks send.

The store keeps opaque bytes (:mod:`gateway.common.samplebatch` for timeseries, msgpack of
:meth:`~gateway.model.Event.to_dict` / :meth:`~gateway.model.TripRecord.to_dict` for events and trips); the
forwarder turns each leased row into a :class:`~gateway.uplink.base.Record` with :func:`record_body`.
The shapes are DRUST's as docs/uplinks.md describes them (Timeseries items: ``date`` in ms since the epoch
plus one field per value, names as in docs/pids.md).
"""

from __future__ import annotations

from typing import Any

import msgpack

from gateway.common import vocabulary
from gateway.common.samplebatch import Columns, columns
from gateway.model import RecordKind

#: the engine ECU (or 0 when headers are off): its values carry no ``ecu`` field
_ENGINE_ECUS = (0, 0x7E8)

#: stored sample name → field of DRUST's Timeseries ``location`` object (drust-api.txt, "Location")
LOCATION_FIELDS = {
    "latitude": "lat",
    "longitude": "lon",
    "hdop": "hdop",
    "altitude": "altitude",
    "satellites_used": "satellites_used",
    "satellites_visibles": "satellites_visibles",
    "cog": "cog",
}


def _fold_location(item: dict[str, Any]) -> None:
    """Move a fix's samples into DRUST's ``location`` object (``cog`` is an Integer there)."""
    if "latitude" not in item or "longitude" not in item:
        return
    loc: dict[str, Any] = {}
    for name, key in LOCATION_FIELDS.items():
        if name in item:
            v = item.pop(name)
            loc[key] = round(v) if key == "cog" and isinstance(v, (int, float)) else v
    item["location"] = loc


def timeseries_items(body: bytes) -> list[dict[str, Any]]:
    """A batch body → DRUST Timeseries items (without ``device``): one per timestamp and ECU.

    Values of one timestamp become fields of one item (``{"date": ms, "speed": 42.0, "engine_rpm": 900}``).
    Values from an ECU other than the engine's (0x7E8, or 0 when headers are off) carry ``"ecu": "7E9"``.
    """
    return timeseries_items_of(columns(body))


def timeseries_items_of(cols: Columns) -> list[dict[str, Any]]:
    """:func:`timeseries_items` of a batch body already unpacked."""
    t0, names, _units, _pids, ecus, dts, nis, vals, eis = cols
    items: list[dict[str, Any]] = []
    # the resolution of each series, looked up once per batch rather than once per value
    decs = [vocabulary.decimals(n) for n in names]
    rounded = vocabulary.rounded
    if eis is None:
        ecu = ecus[0]
        tag = None if ecu in _ENGINE_ECUS else format(ecu, "X")
        last_dt = None
        item: dict[str, Any] = {}
        for dt, ni, v in zip(dts, nis, vals, strict=True):
            if dt != last_dt or names[ni] in item:
                item = {"date": t0 + dt}
                if tag:
                    item["ecu"] = tag
                items.append(item)
                last_dt = dt
            item[names[ni]] = rounded(v, decs[ni])
        for item in items:
            _fold_location(item)
        return items
    by_key: dict[tuple[int, int], dict[str, Any]] = {}
    for dt, ni, v, ei in zip(dts, nis, vals, eis, strict=True):
        it = by_key.get((dt, ei))
        if it is None or names[ni] in it:
            it = {"date": t0 + dt}
            ecu = ecus[ei]
            if ecu not in _ENGINE_ECUS:
                it["ecu"] = format(ecu, "X")
            by_key[(dt, ei)] = it
            items.append(it)
        it[names[ni]] = rounded(v, decs[ni])
    for it in items:
        _fold_location(it)
    return items


def record_body(kind: RecordKind, body: bytes) -> Any:
    """A stored body in the back-end vocabulary (see :mod:`gateway.uplink.base`)."""
    if kind == "timeseries":
        return timeseries_items(body)
    return msgpack.unpackb(body, raw=False)
