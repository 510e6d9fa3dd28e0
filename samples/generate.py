"""Generate the sample recordings in this directory (``python samples/generate.py``).

They are synthetic: piecewise constant accelerations sampled at 2 Hz, with RPM, coolant temperature
and battery voltage derived from speed by simple rules. No vehicle, person or place is behind any of
them; they are dedicated to the public domain (CC0-1.0), like this script. ``obd-gateway replay``
reads them: see README.md, "Sample recordings".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_S = 0.5


def drive(phases: list[tuple[float, float]], *, dtcs_at: float | None = None) -> list[dict[str, object]]:
    """Rows for ``phases`` of (seconds, acceleration in km/h/s); idle 30 s before, 70 s engine-off after."""
    rows: list[dict[str, object]] = []
    t, speed = 0.0, 0.0
    plan = [(30.0, 0.0), *phases, (10.0, 0.0)]
    for seconds, accel in plan:
        for _ in range(round(seconds / STEP_S)):
            speed = max(0.0, speed + accel * STEP_S)
            rpm = 800 + speed * 28 if speed < 60 else 1400 + speed * 12
            row: dict[str, object] = {
                "date": START_MS + round(t * 1000),
                "speed": round(speed, 1),
                "engine_rpm": round(rpm, 1),
                "engine_coolant_temperature": min(90, 40 + round(t / 6)),
                "battery_voltage": 14.1,
            }
            if dtcs_at is not None:
                row["mil"] = t >= dtcs_at  # PID 01's lamp bit; the codes follow as mode 03 would give them
                if t >= dtcs_at:
                    row["dtcs"] = ["P0301"]
            rows.append(row)
            t += STEP_S
    for _ in range(round(70 / STEP_S)):  # ignition off: the ECU stops answering, battery at rest
        rows.append({"date": START_MS + round(t * 1000), "speed": 0, "engine_rpm": 0, "battery_voltage": 12.4})
        t += STEP_S
    return rows


DRIVES = {
    # a short town drive with one hard brake at a crossing (about -20 km/h/s for 2 s)
    "town-hard-brake": drive([(8, 6), (40, 0), (2, -20), (6, 0), (5, -1.6)]),
    # a motorway stretch above 70 and 75 mph for half a minute, then back down
    "motorway-speeding": drive([(20, 6), (30, 0.4), (35, 0), (20, -0.8), (40, 0), (35, -3.5)]),
    # the check-engine light comes on mid-drive with a misfire code
    "misfire-mil": drive([(10, 5), (60, 0), (10, -5)], dtcs_at=50.0),
}


def write() -> None:
    """Each drive as CSV and as a DRUST Collection<Timeseries> JSON document."""
    for name, rows in DRIVES.items():
        columns = sorted({k for r in rows for k in r}, key=lambda k: (k != "date", k))
        with open(HERE / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(columns)
            for r in rows:
                w.writerow(["|".join(v) if isinstance(v := r.get(c, ""), list) else v for c in columns])
        (HERE / f"{name}.json").write_text(json.dumps({"items": rows}, separators=(",", ":")) + "\n",
                                           encoding="utf-8")


if __name__ == "__main__":
    write()
