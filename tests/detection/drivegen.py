"""Generates the test corpus in tests/detection/drives/: short drives with real-world faults, and their truth.

Nothing here is copied from a third-party data set: each drive is a phase script (constant-acceleration
phases, so the truth is exact) sampled the way a cheap logger samples a real car — PID 0D in whole km/h,
at ~1 Hz with ±0.2 s of jitter around the grid, with the faults the issue describes written in (a value
held then catching up, a single-sample dropout, a logging gap, wheel spin on ice).

The truth of a hard event is the peak of the true profile's deceleration (or acceleration) in g, the
hardest phase lasting at least 2 s so that a whole sample interval falls inside it.

Regenerate with ``python -m tests.detection.drivegen`` (deterministic: a fixed seed per drive).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

DRIVES = Path(__file__).parent / "drives"
T0 = 1_700_000_000_000
G = 9.80665
# rpm per km/h in each gear of a typical five-speed hatchback (gear ratio · final drive / tyre circumference)
GEARS = [(0, 130.0), (20, 75.0), (40, 50.0), (60, 38.0), (80, 30.0)]


def profile(phases: list[tuple[float, float]], t: float) -> float:
    """The true speed at ``t`` s of (duration s, km/h per s) phases starting at rest."""
    v = 0.0
    for duration, accel in phases:
        if t <= duration:
            return max(0.0, v + accel * t)
        v = max(0.0, v + accel * duration)
        t -= duration
    return v


def rpm_of(v: float) -> float:
    ratio = [r for floor, r in GEARS if v >= floor][-1]
    return max(800.0, v * ratio)


def sample(phases: list[tuple[float, float]], *, seed: int, clean: bool = False) -> list[tuple[int, float, float]]:
    """(ms, km/h, rpm) rows: ~1 Hz with jitter and whole km/h, or an exact 1 Hz twin when ``clean``."""
    rnd = random.Random(seed)
    total = sum(d for d, _ in phases)
    rows = []
    for k in range(int(total) + 1):
        t = k if clean or k == 0 else k + rnd.uniform(-0.2, 0.2)
        v = profile(phases, t)
        rows.append((T0 + round(t * 1000), v if clean else float(round(v)), round(rpm_of(v))))
    return rows


def key_off(rows: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """A gentle stop (3 km/h/s), the engine off one second later, the logger on for 70 s (the off is confirmed)."""
    rows = list(rows)
    t, v, _ = rows[-1]
    while v > 0:
        t, v = t + 1000, max(0.0, v - 3.0)
        rows.append((t, v, round(rpm_of(v))))
    return [*rows, (t + 1000, 0.0, 800.0), (t + 2000, 0.0, 0.0), (t + 72_000, 0.0, 0.0)]


def write(name: str, rows: list[tuple[int, float, float]], truth: dict[str, Any]) -> None:
    lines = ["date,speed,engine_rpm"]
    for ts, v, rpm in rows:
        lines.append(f"{ts},{v:g},{rpm:g}")
    (DRIVES / f"{name}.csv").write_text("\n".join(lines) + "\n")
    (DRIVES / f"{name}.truth.json").write_text(json.dumps(truth, indent=2) + "\n")


def g(kmh_per_s: float) -> float:
    return round(kmh_per_s / 3.6 / G, 3)


def main() -> None:
    # 1. an emergency stop from 80 km/h: 15 km/h/s for 1 s, 27 km/h/s (0.77 g) for 2 s, then 11 to rest
    stop = [(3, 0.0), (26.0, 3.0769), (10, 0.0), (1, -15.0), (2, -27.0), (1, -11.0), (6, 0.0)]
    truth = {"description": "emergency stop from 80 km/h, ~1 Hz whole km/h with jitter",
             "trips": 1,
             "events": [{"type": "HARD_BRAKE", "g_force": g(27.0), "speed_from_kph": 80, "speed_to_kph": 0}]}
    write("emergency_stop", key_off(sample(stop, seed=16)), truth)
    write("emergency_stop_clean", key_off(sample(stop, seed=16, clean=True)),
          {**truth, "description": "the same drive sampled exactly at 1 Hz, unrounded"})

    # 2. a stale value: the logger repeats 52 km/h for 14 s while the car slows, then catches up at 3 km/h
    rows = sample([(3, 0.0), (13.0, 4.0), (5, 0.0)], seed=17)  # up to 52 km/h, cruise
    t = rows[-1][0]
    for k in range(1, 15):
        rows.append((t + k * 1000, 52.0, 1900))
    t = rows[-1][0]
    for k, v in enumerate([3, 9, 15, 21, 26, 30, 33, 35, 35, 35], start=1):
        rows.append((t + k * 1000, float(v), round(rpm_of(v))))
    write("stale_glitch", key_off(rows),
          {"description": "speed held at 52 km/h for 14 s, then 52 -> 3 km/h in one second (1.39 g), rising smoothly",
           "trips": 1, "events": [{"type": "DATA_QUALITY", "reason": "implausible_rate"}]})

    # 3. a logging gap of three minutes in the middle of a drive (60 km/h before, 20 km/h after)
    rows = sample([(3, 0.0), (12.0, 5.0), (10, 0.0)], seed=18)
    t = rows[-1][0] + 180_000
    rows += [(t + k * 1000, float(20 + 2 * k), round(rpm_of(20 + 2 * k))) for k in range(10)]
    write("logging_gap", key_off(rows),
          {"description": "a 3 min logging gap (60 -> 20 km/h across it): no event, one trip",
           "trips": 1, "events": []})

    # 4. wheel spin on ice: 10 -> 26 -> 39 -> 15 km/h with the engine racing to 4300 rpm
    rows = [(T0 + k * 1000, 10.0 if k > 2 else 4.0 * k, 1000.0) for k in range(6)]
    rows[0] = (T0, 0.0, 800.0)
    t = rows[-1][0]
    spin = [(26, 4300), (39, 4400), (15, 1600), (15, 1500), (16, 1550), (17, 1600), (18, 1650), (18, 1650)]
    rows += [(t + k * 1000, float(v), float(r)) for k, (v, r) in enumerate(spin, start=1)]
    write("wheel_spin_ice", key_off(rows),
          {"description": "wheel spin pulling away on ice: speed jumps and falls back while the engine races",
           "trips": 1, "events": [{"type": "DATA_QUALITY", "reason": "wheel_slip"}]})

    # 5. a dropout: one sample of 0 km/h at a 60 km/h cruise
    rows = sample([(3, 0.0), (15.0, 4.0), (12, 0.0)], seed=19)
    ts, _, rpm = rows[-6]
    rows[-6] = (ts, 0.0, rpm)
    write("dropout_spike", key_off(rows),
          {"description": "one sample reads 0 km/h in a 60 km/h cruise and snaps back",
           "trips": 1, "events": [{"type": "DATA_QUALITY", "reason": "snap_back"}]})


if __name__ == "__main__":
    main()
