"""The body of a stored timeseries batch: samples as one compact columnar msgpack value, defined once.

The store writes it (:func:`pack_samples`) and keeps it as opaque bytes; the uplink side reads it
(:func:`columns`, :mod:`gateway.uplink.drust`) to build what a back-end wants. Layout, version 1::

    [1, t0, names, units, pids, ecus, dts, name_ix, values, ecu_ix | None]

one entry per distinct name in ``names``/``units``/``pids``, one per sample in ``dts`` (ms after ``t0``),
``name_ix``, ``values`` and ``ecu_ix`` (None when every sample came from one ECU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgpack

from gateway.model import Sample


class Columns(NamedTuple):
    """A batch body unpacked, column by column (see the module docstring)."""

    t0: int
    names: list[str]
    units: list[str]
    pids: list[int | None]
    ecus: list[int]
    dts: list[int]
    name_ix: list[int]
    values: list[Any]
    ecu_ix: list[int] | None


def pack_samples(samples: Sequence[Sample]) -> bytes:
    """Samples → one compact msgpack batch body (see :func:`unpack_samples`)."""
    t0 = samples[0].ts_ms
    names: list[str] = []
    units: list[str] = []
    name_ix: dict[str, int] = {}
    ecus: list[int] = []
    ecu_ix: dict[int, int] = {}
    dts: list[int] = []
    nis: list[int] = []
    vals: list[Any] = []
    eis: list[int] = []
    pids: dict[str, int | None] = {}
    for s in samples:
        ni = name_ix.get(s.name)
        if ni is None:
            ni = name_ix[s.name] = len(names)
            names.append(s.name)
            units.append(s.unit)
            pids[s.name] = s.pid
        ei = ecu_ix.get(s.ecu)
        if ei is None:
            ei = ecu_ix[s.ecu] = len(ecus)
            ecus.append(s.ecu)
        dts.append(s.ts_ms - t0)
        nis.append(ni)
        v = s.value
        # most OBD values are whole numbers: a small int packs in 1-3 bytes, a double in 9
        if type(v) is float and v.is_integer() and -(2**53) < v < 2**53:
            v = int(v)
        vals.append(v)
        eis.append(ei)
    body = [1, t0, names, units, [pids[n] for n in names], ecus, dts, nis, vals, eis if len(ecus) > 1 else None]
    return msgpack.packb(body, use_bin_type=True, default=str)


def columns(body: bytes) -> Columns:
    """A batch body → its columns."""
    _v, *cols = msgpack.unpackb(body, raw=False)
    return Columns(*cols)


def unpack_samples(body: bytes) -> list[Sample]:
    """A batch body → the samples it holds, in their original order."""
    t0, names, units, pids, ecus, dts, nis, vals, eis = columns(body)
    if eis is None:
        eis = [0] * len(dts)
    return [
        Sample(t0 + dt, names[ni], v, units[ni], pids[ni], ecus[ei])
        for dt, ni, v, ei in zip(dts, nis, vals, eis, strict=True)
    ]
