"""A restart anywhere in a drive continues the same trip: in-process at every point, and across SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import DetectionConfig
from gateway.detection import DetectionEngine
from gateway.model import Event, LinkState, Sample, TripRecord
from tests.detection.helpers import counter_ids, ms
from tests.detection.test_replay import normalised, recorded_drive

CFG = DetectionConfig()


def run(items: list[Sample | LinkState], path: Path | None, restart_at: int | None) -> list[Event | TripRecord]:
    ids = counter_ids()  # shared by both engines, like the fresh uuids of one box
    eng = DetectionEngine(CFG, device_id="dev", state_path=path, new_id=ids)
    out: list[Event | TripRecord] = []
    for i, item in enumerate(items):
        if i == restart_at:
            eng.save_state()  # a graceful stop (SIGTERM) saves; the daemon restarts
            eng = DetectionEngine(CFG, device_id="dev", state_path=path, new_id=ids)
        out.extend(eng.feed(item))
    out.extend(eng.tick(ms(200)))
    return out


@pytest.mark.parametrize("restart_at", range(3, 285, 10))
def test_graceful_restart_anywhere_gives_the_same_trips_and_events(tmp_path: Path, restart_at: int) -> None:
    items = recorded_drive()
    assert restart_at < len(items)
    expected = run(items, None, None)
    got = run(items, tmp_path / "state.json", restart_at)
    assert normalised(got) == normalised(expected)
    assert sum(isinstance(x, TripRecord) for x in got) == 1


CHILD = r"""
import json, sys
from pathlib import Path
from gateway.config import DetectionConfig
from gateway.detection import DetectionEngine
from gateway.replay import read_csv
rec = read_csv(open(sys.argv[1], newline=""))
eng = DetectionEngine(DetectionConfig(state_save_interval_s=1.0), device_id="dev", state_path=Path(sys.argv[2]))
stop_after = int(sys.argv[3])
for i, item in enumerate(rec.items):
    for out in eng.feed(item):
        print(json.dumps(out.to_dict()), flush=True)
    if i == stop_after:
        print("TRIP " + str(eng.current_trip_id), flush=True)
        sys.stdin.read()  # wait here to be killed
"""


def test_sigkill_mid_trip_then_restart_continues_the_trip(tmp_path: Path) -> None:
    from gateway.replay import write_csv

    items = recorded_drive()
    csv_path = tmp_path / "drive.csv"
    with csv_path.open("w", newline="") as f:
        write_csv(items, f)
    state = tmp_path / "state.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    half = len(items) // 2
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(csv_path), str(state), str(half)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert child.stdout is not None
    trip_id = None
    deadline = time.monotonic() + 60
    for line in child.stdout:
        if line.startswith("TRIP "):
            trip_id = line.split()[1]
            break
        assert time.monotonic() < deadline
    assert trip_id and trip_id != "None"
    child.send_signal(signal.SIGKILL)  # no chance to save: only what was fsynced survives
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert json.loads(state.read_text())["trip"]["id"] == trip_id
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".state")] == []  # no torn temporaries

    # the restarted daemon gets the rest of the drive
    eng = DetectionEngine(CFG, device_id="dev", state_path=state)
    assert eng.ignition_on and eng.current_trip_id == trip_id
    out: list[Event | TripRecord] = []
    for item in items[half + 1:]:
        out.extend(eng.feed(item))
    out.extend(eng.tick(ms(200)))
    (trip,) = [x for x in out if isinstance(x, TripRecord)]
    assert trip.id == trip_id
    assert "IGNITION_ON" not in [x.type for x in out if isinstance(x, Event)]
    # lost at most the state_save_interval (1 s of samples) of distance: compare with an uninterrupted run
    (full,) = [x for x in run(items, None, None) if isinstance(x, TripRecord)]
    assert trip.summary["distance"] == pytest.approx(full.summary["distance"], abs=35.0)
    assert trip.start_ms == full.start_ms and trip.stop_ms == full.stop_ms


def test_sigkill_during_a_hard_brake_loses_nothing(tmp_path: Path) -> None:
    from gateway.replay import read_file

    drive = Path(__file__).parent / "drives" / "emergency_stop.csv"
    items = read_file(drive).items
    probe = DetectionEngine(CFG, device_id="dev")
    stop_after = next(i for i, item in enumerate(items) if (probe.feed(item) or True) and probe.harsh.episodes) + 2
    assert probe.harsh.episodes  # still in flight two items later
    state = tmp_path / "state.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    # periodic saves far apart: only the save at the episode's transitions can have kept it
    script = CHILD.replace("state_save_interval_s=1.0", "state_save_interval_s=600.0")
    assert script != CHILD
    child = subprocess.Popen([sys.executable, "-c", script, str(drive), str(state), str(stop_after)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("TRIP "):
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    assert child.stdin is not None
    child.stdin.close()
    # the episode was saved when it opened and grew, not only every state_save_interval_s
    assert json.loads(state.read_text())["harsh"]["episodes"]
    eng = DetectionEngine(CFG, device_id="dev", state_path=state)
    out = [o for item in items[stop_after + 1:] for o in eng.feed(item)]
    whole = DetectionEngine(CFG, device_id="x")
    full = [o for item in items for o in whole.feed(item)]
    (got,) = [o for o in out if isinstance(o, Event) and o.type == "HARD_BRAKE"]
    (want,) = [o for o in full if isinstance(o, Event) and o.type == "HARD_BRAKE"]
    assert got.payload == want.payload and got.date_ms == want.date_ms
