"""Reading recordings (CSV, DRUST Timeseries JSON), bad rows, the recorder, and ``obd-gateway replay``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import DetectionConfig
from gateway.detection import DetectionEngine
from gateway.errors import ParseError
from gateway.model import Event, LinkState, Position, Sample, TripRecord
from gateway.replay import read_csv, read_file, read_json, replay, write_csv
from tests.detection.helpers import T0, counter_ids, link, ms, s

CSV = f"""date,speed,engine_rpm,engine_coolant_temperature,mil,dtcs,fuel_type
{T0},0,800,20.5,false,none,Gasoline
{T0 + 1000},10,,,,,
{T0 + 2300},,1200,21,,,
{T0 + 2300},abc,1200,21,,,
{T0 + 2400},12,1200,21,,
{T0 + 1000},12,1200,21,,,
{T0 + 1400},13,,,,,
not-a-date,12,1200,21,,,
{T0 + 5000},12.5,1300,22,true,P0301;P0420,
"""


def test_csv_rows_irregular_missing_and_bad() -> None:
    rec = read_csv(io.StringIO(CSV), "drive.csv")
    assert rec.skipped == [
        (5, "speed: not a number: 'abc'"),
        (6, "6 cells, the header has 7"),
        (7, f"date {T0 + 1000} goes backwards (latest row {T0 + 2300})"),
        (9, "date: not a timestamp in ms: 'not-a-date'"),
    ]
    assert rec.items[:6] == [
        Sample(T0, "speed", 0, "km/h"),
        Sample(T0, "engine_rpm", 800, "rpm"),
        Sample(T0, "engine_coolant_temperature", 20.5, "°C"),
        Sample(T0, "mil", False),
        Sample(T0, "dtcs", ()),
        Sample(T0, "fuel_type", "Gasoline"),
    ]
    assert rec.items[6] == Sample(T0 + 1000, "speed", 10, "km/h")
    assert Sample(T0 + 1400, "speed", 13, "km/h") in rec.items  # 0.9 s before the latest row: kept, in file order
    assert [i.name for i in rec.items if isinstance(i, Sample) and i.ts_ms == T0 + 2300] == [
        "engine_rpm", "engine_coolant_temperature"
    ]
    last = [i for i in rec.items if i.ts_ms == T0 + 5000]
    assert Sample(T0 + 5000, "dtcs", ("P0301", "P0420")) in last and Sample(T0 + 5000, "mil", True) in last


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty file"), ("speed,engine_rpm\n1,2\n", "no 'date' column"), ("date,speed,speed\n", "named twice")],
)
def test_csv_unusable_header(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        read_csv(io.StringIO(text), "x.csv")


def test_drust_collection_json() -> None:
    doc = {
        "limit": 1000,
        "offset": "0",
        "items": [
            {"device": {"id": "d"}, "date": T0, "speed": 5.15, "engine_rpm": 450,
             "engine_coolant_temperature": 20.47, "location": {"lat": 43.5, "lon": 1.38}},
            {"device": {"id": "d"}, "date": T0 + 250, "acceleration": {"x": 5.48, "y": 0, "z": -0.1}},
            {"date": "soon", "speed": 3},
            {"date": T0 + 500, "speed": "fast"},
            {"speed": 1},
            {"date": T0 + 750, "speed": "7"},
        ],
        "next": {"offset": "c3d4"},
    }
    rec = read_json(doc)
    assert rec.items == [
        Position(T0, 43.5, 1.38, 2),  # DRUST's location object is read since issue 13
        Sample(T0, "speed", 5.15, "km/h"),
        Sample(T0, "engine_rpm", 450, "rpm"),
        Sample(T0, "engine_coolant_temperature", 20.47, "°C"),
        Sample(T0 + 750, "speed", 7, "km/h"),
    ]
    assert [line for line, _ in rec.skipped] == [3, 4, 5]
    with pytest.raises(ParseError, match="Collection"):
        read_json({"data": []})


def test_read_file_picks_format_and_reports_json_errors(tmp_path: Path) -> None:
    p = tmp_path / "drive.json"
    p.write_text(json.dumps([{"date": T0, "speed": 1}]))
    assert read_file(p).items == [Sample(T0, "speed", 1, "km/h")]
    p.write_text('{"items": [\n{"date": 1,}\n]}')
    with pytest.raises(ParseError, match=r"drive.json:2: not valid JSON"):
        read_file(p)
    with pytest.raises(ParseError, match="no such file"):
        read_file(tmp_path / "missing.csv")


def recorded_drive() -> list[Sample | LinkState]:
    """A small drive: key on, hard acceleration, 72 mph, hard brake, a MIL, engine off."""
    items: list[Sample | LinkState] = [link(0, ok=False), s(0, "battery_voltage", 12.4), link(1, ok=True),
                                       s(1.5, "battery_voltage", 10.3), s(2, "engine_rpm", 760),
                                       s(2, "battery_voltage", 14.1)]
    # 12 km/h/s (hard) then 10 km/h/s up to 116 km/h (72.1 mph), 12 km/h/s down (hard), then 4 km/h/s to 0
    ramp = [0, 12, 24, 36, 46, 56, 66, 76, 86, 96, 106, 116, 116, 110, 98, 86, 74]
    speed = [(3 + i, v) for i, v in enumerate(ramp)]
    speed += [(19 + 0.25 * i, 74 - 1.0 * i) for i in range(1, 75)]  # 0 km/h at 37.5 s
    for t, v in speed:
        items.append(s(t, "speed", v))
        items.append(s(t, "engine_rpm", 800 + 20 * v))
        items.append(s(t, "maf", 3 + v / 10))
    items += [s(20, "mil", True), s(21, "dtcs", ("P0301",)), s(40, "engine_rpm", 0), s(40, "battery_voltage", 12.3),
              link(41, ok=False), link(110, ok=False)]
    return sorted(items, key=lambda i: i.ts_ms)


def _key(item: Sample | LinkState) -> tuple:
    if isinstance(item, LinkState):
        return (item.ts_ms, item.adapter_connected, item.ecu_responding, item.protocol)
    return (item.ts_ms, item.name, item.value)


def normalised(out: list[Event | TripRecord]) -> list[dict]:
    """Outputs with ids replaced by their order of first appearance (two runs make different uuids)."""
    names: dict[str, str] = {}
    text = json.dumps([x.to_dict() for x in out])
    for x in out:
        for ident in ([x.id] + ([x.trip_id] if isinstance(x, Event) and x.trip_id else [])):
            names.setdefault(ident, f"ID{len(names)}")
    for ident, name in names.items():
        text = text.replace(ident, name)
    return json.loads(text)


def test_recorded_csv_replays_to_the_same_events_and_trips() -> None:
    items = recorded_drive()
    live = DetectionEngine(DetectionConfig(), device_id="replay", new_id=counter_ids())
    live_out: list[Event | TripRecord] = []
    for item in items:
        live_out.extend(live.feed(item))
    live_out.extend(live.tick(ms(120)))
    buf = io.StringIO()
    write_csv(items, buf)
    rec = read_csv(io.StringIO(buf.getvalue()))
    # the CSV carries date, name and value (units come from the names)
    assert rec.skipped == []
    assert [_key(i) for i in rec.items] == [_key(i) for i in items]
    trips, events = replay(rec.items, new_id=counter_ids())
    assert normalised([*events, *trips]) == normalised(
        [x for x in live_out if isinstance(x, Event)] + [x for x in live_out if isinstance(x, TripRecord)]
    )
    assert [(e.type, e.date_ms) for e in events] == [
        ("IGNITION_ON", ms(1)),  # the ECU woke up
        ("MOVING", ms(4)),
        ("HARD_ACCELERATION", ms(4)),  # one episode 0 -> 46 km/h (3-7 s), sent two samples after it ended
        ("SPEEDING", ms(14)),  # crossed 70 mph at 14 s, sent at 17 s when 98 km/h re-armed it
        ("HARD_BRAKE", ms(17)),  # one episode 110 -> 73 km/h, crossed at 17 s, sent after it ended
        ("MIL_ON", ms(20)),  # lamp at 20 s, codes read at 21 s
        ("STOPPED", ms(37.5)),
        ("IGNITION_OFF", ms(37.5)),  # last running sample at 37.5 s (rpm 0 read at 40 s), confirmed 60 s later
        ("PARKED", ms(37.5)),
        ("TRIP_FINISHED", ms(37.5)),
    ]
    (trip,) = trips
    assert trip.start_ms == ms(1) and trip.stop_ms == ms(37.5)


def test_cli_replay_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "drive.csv"
    with path.open("w", newline="") as f:
        write_csv(recorded_drive(), f)
    with path.open("a") as f:
        f.write(f"{ms(200)},oops\n")
    assert main(["replay", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert set(doc) == {"trips", "events", "skipped"}
    (trip,) = doc["trips"]
    assert trip["trip_event_counts"] == {"hard_turns": 0, "hard_accelerations": 1, "hard_brakes": 1}
    assert trip["duration_over_70_s"] > 0 and trip["fuel_volume_l"] > 0
    first_three = [e["automatic_type"] for e in doc["events"]][:3]
    assert first_three == ["ignition:on", "vehicle:moving", "notification:hard_accel"]
    assert all(e["trip"] == trip["id"] for e in doc["events"])
    line = len(path.read_text().splitlines())
    assert f"drive.csv:{line}: skipped:" in captured.err
    assert doc["skipped"][0]["line"] == line


def test_cli_replay_text_and_errors_in_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "drive.csv"
    with path.open("w", newline="") as f:
        write_csv(recorded_drive(), f)
    cmd = [sys.executable, "-m", "gateway", "replay"]
    done = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 trip(s), 10 event(s)")
    assert "notification:hard_brake" in done.stdout and "trip " in done.stdout
    bad = subprocess.run([*cmd, str(tmp_path / "nope.csv")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_drust_json_and_csv_of_one_drive_replay_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = recorded_drive()
    # one Timeseries item per sample (link states as the extension keys), in recorded order
    doc: dict[str, list[dict[str, object]]] = {"items": []}
    for item in items:
        if isinstance(item, LinkState):
            doc["items"].append({"date": item.ts_ms, "adapter_connected": item.adapter_connected,
                                 "ecu_responding": item.ecu_responding, "protocol": item.protocol})
        else:
            value = list(item.value) if isinstance(item.value, tuple) else item.value
            doc["items"].append({"device": {"id": "d"}, "date": item.ts_ms, item.name: value})
    json_path = tmp_path / "drive.json"
    json_path.write_text(json.dumps(doc))
    csv_path = tmp_path / "drive.csv"
    with csv_path.open("w", newline="") as f:
        write_csv(items, f)
    outputs = []
    for path in (json_path, csv_path):
        assert main(["replay", str(path), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        outputs.append(normalised_dicts(out["trips"] + out["events"]))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 11  # one trip and ten events


def normalised_dicts(objs: list[dict]) -> list[dict]:
    """JSON objects with every id renamed by first appearance."""
    names: dict[str, str] = {}
    for o in objs:
        for ident in (o.get("id"), o.get("trip")):
            if isinstance(ident, str):
                names.setdefault(ident, f"ID{len(names)}")
    text = json.dumps(objs)
    for ident, name in names.items():
        text = text.replace(ident, name)
    return json.loads(text)
