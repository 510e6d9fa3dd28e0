"""The simulator's J1979 encoders against the standard's forward formulas (property-based)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim import j1979
from firmware_sim.vehicle import VehicleState

# PID → (state field, J1979 decode formula, physical range, resolution)
FORWARD: dict[int, tuple[str, Callable[[bytes], float], tuple[float, float], float]] = {
    0x04: ("load_pct", lambda d: d[0] * 100 / 255, (0, 100), 100 / 255),
    0x05: ("coolant_c", lambda d: d[0] - 40, (-40, 215), 1),
    0x0C: ("rpm", lambda d: (d[0] * 256 + d[1]) / 4, (0, 16383.75), 0.25),
    0x0D: ("speed_kmh", lambda d: d[0], (0, 255), 1),
    0x0E: ("timing_deg", lambda d: d[0] / 2 - 64, (-64, 63.5), 0.5),
    0x0F: ("intake_c", lambda d: d[0] - 40, (-40, 215), 1),
    0x10: ("maf_gs", lambda d: (d[0] * 256 + d[1]) / 100, (0, 655.35), 0.01),
    0x11: ("throttle_pct", lambda d: d[0] * 100 / 255, (0, 100), 100 / 255),
    0x1F: ("run_time_s", lambda d: d[0] * 256 + d[1], (0, 65535), 1),
    0x2F: ("fuel_level_pct", lambda d: d[0] * 100 / 255, (0, 100), 100 / 255),
    0x33: ("baro_kpa", lambda d: d[0], (0, 255), 1),
    0x42: ("battery_v", lambda d: (d[0] * 256 + d[1]) / 1000, (0, 65.535), 0.001),
    0x46: ("ambient_c", lambda d: d[0] - 40, (-40, 215), 1),
    0x5C: ("oil_c", lambda d: d[0] - 40, (-40, 215), 1),
    0x5E: ("fuel_rate_lph", lambda d: (d[0] * 256 + d[1]) / 20, (0, 3276.75), 0.05),
}


@pytest.mark.parametrize("pid", sorted(FORWARD))
@settings(max_examples=60, deadline=None)
@given(x=st.floats(min_value=-1000, max_value=100000, allow_nan=False))
def test_encoder_inverts_the_standard_formula(pid: int, x: float) -> None:
    field, decode, (lo, hi), res = FORWARD[pid]
    state = VehicleState()
    setattr(state, field, x)
    length, encode = j1979.MODE01[pid]
    data = encode(state)
    assert len(data) == length
    # In range the value survives to within half a step; out of range the sensor saturates at the limit.
    assert decode(data) == pytest.approx(min(hi, max(lo, x)), abs=res / 2 + 1e-9)


def test_every_encoder_gives_its_declared_length() -> None:
    state = VehicleState(ignition=True, engine_running=True, rpm=2000, speed_kmh=50, mil=True, dtcs=["P0301"],
                         freeze_dtc="P0301")
    for pid, (length, encode) in j1979.MODE01.items():
        assert len(encode(state)) == length, f"PID {pid:02X}"


@pytest.mark.parametrize(("code", "raw"), [("P0301", "0301"), ("P0420", "0420"), ("C0123", "4123"),
                                           ("B1234", "9234"), ("U0100", "C100"), ("P3FFF", "3FFF")])
def test_dtc_encoding(code: str, raw: str) -> None:
    assert j1979.encode_dtc(code).hex().upper() == raw


@pytest.mark.parametrize("bad", ["P030", "X0301", "P4301", "P03G1", ""])
def test_bad_dtcs(bad: str) -> None:
    assert not j1979.valid_dtc(bad)
    with pytest.raises(ValueError):
        j1979.encode_dtc(bad)


def test_support_mask_chain() -> None:
    answered = j1979.answered_pids({0x0C, 0x0D, 0x2F, 0x42})
    assert answered == {0x00, 0x0C, 0x0D, 0x20, 0x2F, 0x40, 0x42}
    assert j1979.support_mask(0x00, answered).hex() == "00180001"  # 0C, 0D, and "20 supported"
    assert j1979.support_mask(0x20, answered).hex() == "00020001"  # 2F, and "40 supported"
    assert j1979.support_mask(0x40, answered).hex() == "40000000"  # 42, end of chain
