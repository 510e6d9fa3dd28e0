"""Timeseries payloads for subscribers on a data plan: on-change filtering, the columnar layout, compression.

The store keeps every sample; this module decides, per MQTT message, what leaves the box and how it is
encoded. Three independent choices (``[mqtt]`` keys, docs/uplinks.md "Payload formats"):

* **What** (``on_change``, ``deadband``, ``refresh_s``): a series (one name from one ECU) whose value has not
  changed since it was last *sent* is left out, unless ``refresh_s`` passed since then (a subscriber that
  joins late, or lost its retained state, is complete again within that time). ``"status"`` (the default)
  does this for slow, status-like values only (PID 01 readiness monitors and DTC count, fuel system
  status, OBD standard, warm-ups, …: :data:`STATUS_PIDS`, and values without a PID such as the VIN);
  ``"all"`` for every series; ``"none"`` sends every sample. A ``deadband`` (name → absolute change)
  puts that series on change too and treats smaller moves as no change; without one the test is exact
  (``!=``), so every changed value is delivered.
* **Layout** (``payload_format``): ``json`` (DRUST Timeseries items, the default and the subscriber-facing
  vocabulary), ``msgpack`` (the same objects), ``columnar`` (msgpack, one timestamp vector per series:
  :func:`columnar_batch`).
* **Compression** (``compression``): ``none``, ``zlib`` (RFC 1950, stdlib) or ``zstd`` (RFC 8878, the
  ``zstandard`` package, optional). A compressed or columnar batch goes to ``P/D/timeseries/<format>``
  (:func:`encoding_name`: ``columnar-zlib``…), so a subscriber picks the encoding by topic; MQTT 5
  messages also carry it as the content type.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack

from gateway.common import jsonout, vocabulary
from gateway.common.vocabulary import ecu_hex, pid_hex
from gateway.errors import ConfigError
from gateway.model import Sample
from gateway.uplink.drust import LOCATION_FIELDS

#: Mode 01 PIDs whose values are states or counters that change rarely (SAE J1979 / ISO 15031-5 PID list):
#: 01 monitor status and DTC count, 03 fuel system status, 12 secondary air status, 13/1D O2 sensors
#: present, 1C OBD standard, 1E auxiliary input, 21 distance with MIL on, 30 warm-ups since codes cleared,
#: 31 distance since codes cleared, 41 monitor status this drive cycle, 4D/4E minutes with MIL / since
#: clear, 51 fuel type, 65 auxiliary I/O.
STATUS_PIDS = frozenset({0x01, 0x03, 0x12, 0x13, 0x1C, 0x1D, 0x1E, 0x21, 0x30, 0x31, 0x41, 0x4D, 0x4E, 0x51, 0x65})

FORMATS = ("json", "msgpack", "columnar")
COMPRESSIONS = ("none", "zlib", "zstd")
ON_CHANGE = ("status", "all", "none")
#: the samples of one GPS fix (gateway.location): a position is a measurement, and its fields belong together
FIX_NAMES = frozenset({*LOCATION_FIELDS, "gps_speed", "gps_mode"})
COLUMNAR_VERSION = 2
#: zlib level 6 (its default) and zstd level 3 (its default): the bench measured higher levels buying
#: a few per cent for several times the CPU on these small messages.
ZLIB_LEVEL = 6
ZSTD_LEVEL = 3


def encoding_name(fmt: str, compression: str) -> str:
    """The encoding's name in topics and docs: ``json``, ``msgpack``, ``columnar``, ``columnar-zlib``…"""
    return fmt if compression == "none" else f"{fmt}-{compression}"  # no "+": a wildcard in MQTT


def content_type(fmt: str, compression: str) -> str:
    """The MQTT 5 content type of a payload in this encoding."""
    base = "application/json" if fmt == "json" else f"application/vnd.obd-gateway.{fmt}+msgpack"
    return base if compression == "none" else f"{base}; compression={compression}"


class Compressor:
    """One codec, created once (a zstd context is reused across messages)."""

    def __init__(self, compression: str) -> None:
        if compression not in COMPRESSIONS:
            raise ConfigError(f"mqtt.compression: must be one of {', '.join(COMPRESSIONS)} (got {compression!r})")
        self.name = compression
        self._zstd: Any = None
        if compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise ConfigError(
                    "mqtt.compression = 'zstd' needs the zstandard package (pip install 'obd-gateway[zstd]')"
                ) from None
            self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)

    def __call__(self, data: bytes) -> bytes:
        if self.name == "zlib":
            return zlib.compress(data, ZLIB_LEVEL)
        if self._zstd is not None:
            return bytes(self._zstd.compress(data))
        return data


def decompress(data: bytes, compression: str) -> bytes:
    """The inverse of :class:`Compressor` (for tests, the bench and docs)."""
    if compression == "zlib":
        return zlib.decompress(data)
    if compression == "zstd":
        import zstandard

        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    return data


class ChangeFilter:
    """Leaves out samples of series that did not change since they were last sent (see the module doc).

    :meth:`filter` returns the samples to send and a new state; :meth:`commit` adopts that state once the
    broker acknowledged the message, so a retried batch is filtered against what really went out.
    """

    def __init__(self, mode: str, deadband: Mapping[str, float], refresh_s: float) -> None:
        self.mode = mode
        self.deadband = dict(deadband)
        self.refresh_ms = round(refresh_s * 1000)
        #: (name, ecu) → (value last sent, when it was sent (sample time, ms))
        self.last: dict[tuple[str, int], tuple[Any, int]] = {}
        self.suppressed = 0

    def applies(self, s: Sample) -> bool:
        """Whether ``s``'s series is sent on change only."""
        return self.applies_to(s.name, s.pid)

    def applies_to(self, name: str, pid: int | None) -> bool:
        """Whether the series ``name`` (of mode 01 PID ``pid``) is sent on change only."""
        if self.mode == "none":
            return name in self.deadband
        if name in self.deadband:
            return True
        if name in FIX_NAMES:
            # a fix travels whole (DRUST's location object needs lat and lon together): never thinned
            return False
        if self.mode == "all":
            return True
        return pid is None or pid in STATUS_PIDS

    def passes_all(self, names: Iterable[str], pids: Iterable[int | None]) -> bool:
        """Whether none of these series is sent on change only: a batch of them passes whole, unchanged."""
        return not any(self.applies_to(n, p) for n, p in zip(names, pids, strict=True))

    def filter(
        self, samples: Iterable[Sample], state: dict[tuple[str, int], tuple[Any, int]] | None = None
    ) -> tuple[list[Sample], dict[tuple[str, int], tuple[Any, int]]]:
        """The samples to send, and the state after sending them (``state``: start from it, not ours)."""
        last = dict(self.last if state is None else state)
        out: list[Sample] = []
        for s in samples:
            if not self.applies(s):
                out.append(s)
                continue
            key = (s.name, s.ecu)
            prev = last.get(key)
            if prev is not None and s.ts_ms - prev[1] < self.refresh_ms and not self._changed(s.name, prev[0], s.value):
                continue
            last[key] = (s.value, s.ts_ms)
            out.append(s)
        return out, last

    def _changed(self, name: str, old: Any, new: Any) -> bool:
        band = self.deadband.get(name)
        if band and _number(old) and _number(new):
            return bool(abs(new - old) > band)
        return bool(old != new or type(old) is not type(new))

    def commit(self, state: dict[tuple[str, int], tuple[Any, int]], suppressed: int = 0) -> None:
        """The broker acknowledged what :meth:`filter` produced with this state."""
        self.last = state
        self.suppressed += suppressed


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _compact(v: Any) -> Any:
    # most OBD values are whole numbers: a small int packs in 1-3 bytes, a double in 9
    if type(v) is float and v.is_integer() and -(2**53) < v < 2**53:
        return int(v)
    return v


def columnar_batch(
    samples: Sequence[Sample], *, batch_ids: Sequence[str], device_id: str
) -> dict[str, Any]:
    """Samples → the columnar batch object (msgpack-encoded by the caller).

    ``{"v": 1, "ids": [stored batch ids], "device", "t0": ms, "series": [{"n": name, "u": unit,
    "pid": "0C" | None, "ecu": "7E8" | None, "t": [ms, …], "v": [value, …]}, …]}``: ``t[0]`` is the first
    sample's time minus ``t0``, ``t[1]`` the interval to the second, then each interval minus the previous
    one (second differences: small numbers, since a PID is polled at a steady rate). Values are rounded to
    the PID's resolution (:mod:`gateway.common.vocabulary`). A series
    of numbers that fit a fixed-point scale exactly carries ``"s": scale`` and ``v`` as the differences of
    ``round(value × scale)`` (see :func:`_fixed_point`). One message carries one or more stored batches
    (``ids``; de-duplicate by them).
    """
    t0 = min((s.ts_ms for s in samples), default=0)
    series: dict[tuple[str, int], dict[str, Any]] = {}
    prev: dict[tuple[str, int], int] = {}
    for s in samples:
        key = (s.name, s.ecu)
        col = series.get(key)
        if col is None:
            col = {"n": s.name, "u": s.unit, "pid": pid_hex(s.pid), "ecu": ecu_hex(s.ecu), "t": [], "v": []}
            series[key] = col
            prev[key] = t0
        col["t"].append(s.ts_ms - prev[key])
        prev[key] = s.ts_ms
        col["v"].append(_compact(vocabulary.value(s.name, s.value)))
    for col in series.values():
        col["t"] = _second_differences(col["t"])
        _fixed_point(col, vocabulary.decimals(col["n"]))
    return {
        "v": COLUMNAR_VERSION,
        "ids": list(batch_ids),
        "device": device_id,
        "t0": t0,
        "series": list(series.values()),
    }


def _second_differences(deltas: list[int]) -> list[int]:
    """``[d0, d1, d2, ...]`` → ``[d0, d1, d2 - d1, d3 - d2, ...]``: a PID polled every ~250 ms gives
    intervals 251, 248, 262...; their differences are small (msgpack: one byte from -32 to 127) and repeat,
    which the compressor rewards (measured: docs/uplinks.md, "Columnar layout")."""
    return deltas[:2] + [b - a for a, b in itertools.pairwise(deltas[1:])]


#: fixed-point scales tried for a series of non-integer values (OBD formulas scale by 1/4, 1/10, 1/100,
#: 1/1000, 1/1024...: the first that represents every value exactly is used)
_SCALES = (2, 4, 10, 20, 100, 200, 1000, 1024, 10000, 100000, 1000000)


def _fixed_point(col: dict[str, Any], decimals: int | None = None) -> None:
    """Store a series of numbers as integer steps when that is exact: ``"s": scale``, ``"v"`` holds the
    differences of ``round(value × scale)`` to the previous one (the first: to 0). Lossless by construction
    (each value decodes to the same double), so it is only used when every value round-trips."""
    vals = col["v"]
    if not vals or not all(type(v) in (int, float) for v in vals):
        return
    # the catalogue's resolution first (values are rounded to it: gateway/common/vocabulary.py)
    for scale in (1, *((10**decimals,) if decimals else ()), *_SCALES):
        ints = [round(v * scale) for v in vals]
        if all(abs(i) < 2**53 and (i if scale == 1 else i / scale) == v for i, v in zip(ints, vals, strict=True)):
            break
    else:
        return
    prev = 0
    deltas = []
    for i in ints:
        deltas.append(i - prev)
        prev = i
    col["s"] = scale
    col["v"] = deltas


def decode_columnar(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A columnar batch → flat rows ``{"ts", "name", "unit", "pid", "ecu", "value"}`` (the doc's decoder)."""
    rows: list[dict[str, Any]] = []
    for col in obj["series"]:
        ts = obj["t0"]
        step = 0  # t: first time - t0, the first interval, then each interval minus the previous one
        values = col["v"]
        if "s" in col:  # fixed point, differences: running sum / scale
            acc = 0
            values = []
            for d in col["v"]:
                acc += d
                values.append(acc if col["s"] == 1 else acc / col["s"])
        for i, (dt, v) in enumerate(zip(col["t"], values, strict=True)):
            step = dt if i < 2 else step + dt
            ts += step
            rows.append(
                {"ts": ts, "name": col["n"], "unit": col["u"], "pid": col["pid"], "ecu": col["ecu"], "value": v}
            )
    return rows


def encode_object(obj: Any, fmt: str) -> bytes:
    """An object as JSON (strict) or msgpack bytes, by ``fmt``."""
    if fmt == "json":
        return jsonout.dumpb(obj)
    return msgpack.packb(obj, use_bin_type=True, default=str)


def decode_payload(payload: bytes, encoding: str) -> Any:
    """A payload in the named encoding (``columnar-zlib``…) → the object (for tests, the bench, docs)."""
    fmt, _, comp = encoding.partition("-")
    raw = decompress(payload, comp or "none")
    if fmt == "json":
        import json

        return json.loads(raw)
    return msgpack.unpackb(raw, raw=False)
