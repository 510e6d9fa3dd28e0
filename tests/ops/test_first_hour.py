"""Issue 18, a new user's first hour: `make run` says how to reach the daemon (2), the console marks
stale values and prints human event and trip lines (3), `watch` fits a 24-row terminal (4), `values`
folds the readiness flags and `pids` explains slow PIDs (5), the sample recordings replay (6)."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pytest

from gateway.bus import Bus
from gateway.commands.diag_client import WatchView, render_pids, render_values
from gateway.daemon import ConsolePrinter, describe_event, describe_trip
from gateway.model import Event, Sample, Samples, TripRecord
from gateway.obd import pids as catalogue
from gateway.replay import replay_file

ROOT = Path(__file__).resolve().parents[2]
READINESS = [f.name for f in catalogue.PIDS[0x01].fields if "_monitor_" in f.name]


def test_make_run_prints_the_command_for_another_terminal() -> None:
    out = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert ".venv/bin/obd-gateway status --config gateway.sim.toml" in out
    assert "pip install -e ." in out or ".venv/.runtime" not in out  # the runtime set, not .[dev]
    assert "'.[dev]'" not in out
    assert ".venv/bin/obd-gateway status --config gateway.sim.toml" in (ROOT / "README.md").read_text()


def test_console_marks_stale_values_and_prints_human_lines() -> None:
    out = io.StringIO()
    printer = ConsolePrinter(Bus().subscribe("t", maxsize=10), out=out, stale_s=5.0)
    printer.take(Sample(1, "engine_rpm", 812.0, "rpm", 0x0C, 0x7E8))
    printer.take(Samples([Sample(1, "speed", 42.0, "km/h", 0x0D, 0x7E8)]))  # the daemon's subscription: rounds
    now = time.monotonic()
    assert printer.values_line(now) == "values: 812 rpm  42 km/h"
    stale = printer.values_line(now + 30)
    assert stale is not None and "none fresh" in stale and "812" not in stale
    assert printer.values_line(now + 31) is None, "said once, not every second"
    mil = Event("e1", "MIL_ON", "mil:on", 1, "t1", {"dtcs": [{"code": "P0301", "kind": "stored"}], "mil": True})
    line = describe_event(mil)
    assert line == "EVENT check-engine light ON: P0301"
    brake = Event("e2", "HARD_BRAKE", "notification:hard_brake", 1, "t1",
                  {"speed_from_kph": 62.0, "speed_to_kph": 31.0, "g_force": 0.45})
    assert describe_event(brake) == "EVENT hard brake: 62 -> 31 km/h, 0.45 g"
    trip = TripRecord("t1", 0, 600_000, {"distance": 5230.0, "duration": 600_000, "hard_brakes": 2,
                                          "hard_accels": 0, "idling_time_s": 42.0, "fuel_volume_l": None})
    text = describe_trip(trip)
    assert text.startswith("TRIP finished t1: 5.23 km in 10 min, 2 hard brake(s)") and "idle 42 s" in text
    printer.take(mil)
    assert "{" not in out.getvalue() and "[" not in out.getvalue()


def _view(n_values: int) -> WatchView:
    view = WatchView()
    now = int(time.time() * 1000)
    for i in range(n_values):
        view.feed({"stream": "sample", "data": {"name": f"value_{i:02d}", "value": float(i), "unit": "x",
                                                "ts_ms": now}})
    for name in READINESS:
        view.feed({"stream": "sample", "data": {"name": name, "value": name.endswith("_available"), "ts_ms": now}})
    view.feed({"cmd": "status", "ok": True, "data": {
        "adapter": {"connected": True, "ecu_responding": True, "protocol": "ISO 15765-4 (CAN 11/500)",
                    "vin": "1HGCM82633A004352"},
        "ignition": True, "current_trip": "8c0e2b4a-9f7d-4c39-a6a2-0d1c55e0f1b2", "parser": "native",
        "components": {"uplink:mqtt": {"state": "restarting"}}}})
    for i in range(8):
        view.feed({"stream": "event", "data": {"date": now, "automatic_type": f"notification:event_{i}"}})
    return view


@pytest.mark.parametrize(("width", "height"), [(80, 24), (100, 44), (40, 12)])
def test_watch_fits_the_terminal(width: int, height: int) -> None:
    screen = _view(40).render("obd-gateway watch var/diag.sock", width=width, height=height).splitlines()
    assert len(screen) <= height and all(len(line) <= width for line in screen)
    text = "\n".join(screen)
    assert "more (a taller terminal" in text, "values that do not fit are counted, not scrolled away"
    assert "readiness:" in text and "misfire_monitor_available" not in text
    if width >= 80:
        assert "trip=8c0e2b4a-9f7d-4c39-a6a2-0d1c55e0f1b2" in text, "header fields wrap, never cut"
        assert "uplink:mqtt:restarting" in text


def test_values_fold_readiness_and_pids_explain_slow_rates() -> None:
    rows = [{"name": "engine_rpm", "value": 800.0, "unit": "rpm", "pid": "0C", "ecu": "7E8", "age_s": 0.1}]
    rows += [{"name": n, "value": n.endswith("_available") and "catalyst" in n, "unit": "", "pid": "01",
              "ecu": "7E8", "age_s": 0.2} for n in READINESS]
    out = io.StringIO()
    render_values(rows, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # header, engine_rpm, one readiness line
    assert lines[-1].startswith("readiness: ") and f"[{len(READINESS)} flags" in lines[-1]
    out = io.StringIO()
    render_pids([{"pid": "0C", "name": "engine_rpm", "supported": True, "polled": True, "target_hz": 5.0,
                  "achieved_hz": 4.9},
                 {"pid": "A6", "name": "odometer", "supported": True, "polled": True, "target_hz": 1 / 300,
                  "achieved_hz": 0.0}], out)
    text = out.getvalue()
    assert "5 min" in text and "0.2 s" in text
    assert "1 PID(s) are read less than once a minute on purpose" in text


@pytest.mark.parametrize(("name", "event"), [("town-hard-brake", "HARD_BRAKE"), ("motorway-speeding", "SPEEDING"),
                                             ("misfire-mil", "MIL_ON")])
@pytest.mark.parametrize("ext", ["csv", "json"])
def test_sample_recordings_replay(name: str, event: str, ext: str) -> None:
    path = ROOT / "samples" / f"{name}.{ext}"
    result = replay_file(path)
    assert not result.skipped and len(result.trips) == 1
    assert event in {e.type for e in result.events}
    assert f"samples/{name}.{ext}" in (ROOT / "README.md").read_text() or f"samples/{name}.*" in (
        ROOT / "README.md").read_text()
