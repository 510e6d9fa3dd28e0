"""The vehicle model: physical consistency, drive scripts, ground truth and determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_sim import DriveError, Simulator, load_drive
from firmware_sim.drive import MPH, builtin_drives
from firmware_sim.vehicle import GEARS, Vehicle


def run(drive: str, seconds: float, seed: int = 1) -> Vehicle:
    v = Vehicle(load_drive(drive), seed=seed, start_ms=1_700_000_000_000)
    v.advance(seconds)
    return v


def test_builtin_drives_load() -> None:
    assert {"default", "short"} <= set(builtin_drives())
    d = load_drive(None)
    assert d.name == "default" and d.repeat
    assert load_drive("short").repeat is False


def test_short_drive_ground_truth_events() -> None:
    v = run("short", 120)
    names = [e["event"] for e in v.truth.events()]
    assert names[0] == "ignition_on"
    assert "hard_brake" in names and "hard_accel" in names
    assert [e["threshold_mph"] for e in v.truth.events("speeding")] == [70]
    assert "mil_on" in names and v.state.dtcs == ["P0420"]
    off = v.truth.events("ignition_off")
    assert len(off) == 1
    # The trip distance in the event is the integral of speed, and the odometer moved by as much.
    assert off[0]["distance_m"] == pytest.approx((v.state.odometer_km - 1000.0) * 1000, abs=0.5)
    samples = v.truth.samples()
    integral_m = sum(s["speed"] / 3.6 for s in samples)  # 1 s samples
    assert off[0]["distance_m"] == pytest.approx(integral_m, rel=0.03)
    assert not v.state.ignition and v.state.battery_v == pytest.approx(12.4, abs=0.05)


def test_default_drive_has_everything_the_issue_asks_for() -> None:
    v = run("default", 420)
    names = [e["event"] for e in v.truth.events()]
    assert names.count("hard_brake") >= 2 and names.count("hard_accel") >= 1
    assert [e["threshold_mph"] for e in v.truth.events("speeding")][:3] == [70, 75, 80]
    assert "mil_on" in names and "ignition_off" in names
    assert max(s["speed"] for s in v.truth.samples()) == pytest.approx(83 * MPH, abs=1)


def test_physics_is_consistent() -> None:
    v = Vehicle(load_drive("default"), seed=1, start_ms=0)
    v.advance(0.5)
    assert v.state.cranking and 9.5 < v.state.battery_v < 11
    v.advance(10)
    s = v.state
    assert s.engine_running and 13.9 < s.battery_v < 14.2
    assert 740 < s.rpm < 1100 and s.speed_kmh == 0
    cold = s.coolant_c
    fuel = s.fuel_level_pct
    v.advance(150)
    assert s.coolant_c > cold + 10  # warming up
    assert s.fuel_level_pct < fuel  # burning fuel
    v.hold(100)
    v.advance(5)
    gear_ratio = next(r for top, r in GEARS if top > 100)
    assert s.rpm == pytest.approx(100 * gear_ratio, abs=10)
    expected_maf = 2.0 * s.rpm / 120 * 1.2 * s.load_pct / 100
    assert s.maf_gs == pytest.approx(expected_maf, rel=1e-6)
    assert s.fuel_rate_lph == pytest.approx(s.maf_gs / 14.7 / 745 * 3600, rel=1e-6)
    odo = s.odometer_km
    v.advance(36)
    assert s.odometer_km - odo == pytest.approx(1.0, abs=0.01)  # 36 s at 100 km/h


def test_same_seed_same_truth_and_different_seed_differs() -> None:
    a, b, c = run("short", 60, 5), run("short", 60, 5), run("short", 60, 6)
    assert a.truth.records == b.truth.records
    assert a.truth.records != c.truth.records


def test_truth_file_is_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    sim = Simulator("short", seed=1, fast=True, clock="manual", truth_path=path, start_ms=1_700_000_000_000)
    sim.advance(30)
    sim.stop()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["type"] == "event" and records[0]["event"] == "ignition_on"
    assert records[0]["t"] >= 1_700_000_000_000
    samples = [r for r in records if r["type"] == "sample"]
    assert len(samples) == 30
    assert {"speed", "engine_rpm", "engine_coolant_temperature", "fuel_level", "battery_voltage"} <= set(samples[0])
    assert samples[-1]["t"] - samples[0]["t"] == 29_000


def test_time_scale_runs_faster_than_real_time() -> None:
    import time

    sim = Simulator("short", seed=1, fast=True, time_scale=50.0)
    sim.start()
    time.sleep(0.2)
    sim.sync()
    elapsed_sim_s = (sim.vehicle.sim_ms - sim._start_ms) / 1000
    sim.stop()
    assert elapsed_sim_s >= 9.0  # 0.2 s × 50 (generously: at least 90 %)


@pytest.mark.parametrize(("text", "message"), [
    ("[[phase]]\nkind = 'fly'\n", "kind must be one of"),
    ("[[phase]]\nkind = 'accelerate'\nrate = 3\n", "needs 'to'"),
    ("[[phase]]\nkind = 'cruise'\n", "needs 'duration'"),
    ("[[phase]]\nkind = 'set_dtcs'\ndtcs = ['X9999']\n", "list of DTCs"),
    ("[[phase]]\nkind = 'brake'\nto = 0\nrate = -1\n", "rate must be > 0"),
    ("[[phase]]\nkind = 'idle'\nduration = 1\nspeed = 3\n", "unknown key"),
    ("name = 'x'\n", r"at least one \[\[phase\]\]"),
    ("[vehicle]\nvin = 'SHORT'\n[[phase]]\nkind = 'idle'\nduration = 1\n", "vin must be 17"),
    ("this is = = not toml", "invalid TOML"),
])
def test_drive_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DriveError, match=message):
        load_drive(path)


def test_missing_drive_file_and_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(DriveError, match="cannot read"):
        load_drive(tmp_path / "nope.toml")
    with pytest.raises(DriveError, match="no built-in drive"):
        load_drive("nope")
