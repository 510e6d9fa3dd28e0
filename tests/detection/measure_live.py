"""Measure live detection against firmware_sim: trip distance error and event timing vs the truth.

Run: ``.venv/bin/python -m tests.detection.measure_live [RUNS]`` (each run takes about 35 s, real time).
Prints, per run, the trip distance against the simulator's and each event's lag behind the truth.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from gateway.model import Event, TripRecord
from tests.detection.test_live_sim import drive_live

PAIRS = [("ignition_on", "IGNITION_ON"), ("hard_accel", "HARD_ACCELERATION"), ("speeding", "SPEEDING"),
         ("mil_on", "MIL_ON"), ("hard_brake", "HARD_BRAKE"), ("mil_off", "MIL_OFF"), ("ignition_off", "IGNITION_OFF")]


def main(runs: int) -> None:
    """Run the live drive ``runs`` times and print the figures."""
    for run in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            items, outs, truth = asyncio.run(drive_live(Path(tmp)))
        want = {r["event"]: r for r in truth.events()}
        got = {o.type: o for o in outs if isinstance(o, Event)}
        (trip,) = [o for o in outs if isinstance(o, TripRecord)]
        truth_m = want["ignition_off"]["distance_m"]
        err = 100 * (trip.summary["distance"] - truth_m) / truth_m
        lags = ", ".join(f"{ours} {got[ours].date_ms - want[name]['t']:+d}" for name, ours in PAIRS)
        print(f"run {run}: {len(items)} items, distance {trip.summary['distance']:.2f} m vs truth {truth_m} m "
              f"({err:+.3f}%); lag ms: {lags}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
