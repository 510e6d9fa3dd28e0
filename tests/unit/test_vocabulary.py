"""The one JSON vocabulary (gateway/common/vocabulary.py): hex ids, values at the PID's resolution."""

from __future__ import annotations

from gateway.common import vocabulary
from gateway.common.samplebatch import pack_samples
from gateway.model import Sample
from gateway.obd import pids
from gateway.uplink.drust import timeseries_items


def test_hex_ids() -> None:
    assert vocabulary.pid_hex(0x0C) == "0C" and vocabulary.pid_hex(0xF190) == "F190"
    assert vocabulary.pid_hex(None) is None
    assert vocabulary.ecu_hex(0x7E8) == "7E8" and vocabulary.ecu_hex(0) is None


def test_resolution_from_the_catalogue() -> None:
    # speed 1 km/h, rpm raw/4, coolant raw-40, fuel level 100/255 %, control module voltage raw/1000 V
    got = {n: vocabulary.decimals(n) for n in ("speed", "engine_rpm", "engine_coolant_temperature", "fuel_level")}
    assert got == {"speed": 0, "engine_rpm": 2, "engine_coolant_temperature": 0, "fuel_level": 2}
    assert vocabulary.value("fuel_level", 100 / 255 * 100) == 39.22
    assert vocabulary.value("engine_rpm", 812.25) == 812.25
    assert vocabulary.value("mil", True) is True and vocabulary.value("dtc_count", 3) == 3
    assert vocabulary.value("not_in_catalogue", 1 / 3) == 1 / 3
    assert vocabulary.decimals("mil") is None  # a flag, not a scaled number


def test_rounding_never_merges_two_readings() -> None:
    """Every LINEAR field: all raw readings of its first byte (or two) stay distinct after rounding."""
    for name, (_pid, f) in pids.by_name().items():
        if f.kind != pids.LINEAR:
            continue
        raws = range(1 << (8 * min(f.length, 2)))
        vals = {vocabulary.value(name, float(r * f.mul / f.div + f.add)) for r in raws}
        assert len(vals) == len(raws), name


def test_uplink_items_use_the_vocabulary() -> None:
    body = pack_samples([Sample(5, "fuel_level", 100 / 255 * 100, "%", 0x2F, 0x7E8),
                         Sample(5, "speed", 42.0, "km/h", 0x0D, 0x7E9)])
    assert timeseries_items(body) == [{"date": 5, "fuel_level": 39.22}, {"date": 5, "ecu": "7E9", "speed": 42.0}]


def test_sample_row() -> None:
    s = Sample(7, "throttle_position", 100 / 255 * 3, "%", 0x11, 0x7E8)
    assert vocabulary.sample(s) == {"name": "throttle_position", "value": 1.18, "unit": "%", "pid": "11",
                                    "ecu": "7E8", "ts_ms": 7}
