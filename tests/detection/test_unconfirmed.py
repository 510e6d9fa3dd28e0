"""Order of durability (issue 20): outputs stay in the state until the store confirms their commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import detection
from gateway.config import DetectionConfig
from gateway.detection import DetectionEngine
from gateway.model import Event, TripRecord
from tests.detection.helpers import counter_ids, link, ms, s, types

CFG = DetectionConfig()


def engine(path: Path | None) -> DetectionEngine:
    return DetectionEngine(CFG, device_id="dev-1", car_id="car-1", state_path=path, new_id=counter_ids())


def a_trip(eng: DetectionEngine) -> list[Event | TripRecord]:
    """Key on, 0 → 20 → 0 km/h gently (11.1 m), engine off after 5 s, the off confirmed at 65 s."""
    out: list[Event | TripRecord] = []
    items = [link(0, ok=False), link(0.5, ok=True), s(1, "engine_rpm", 800),
             *(s(t, "speed", v) for t, v in ((1, 0), (2, 10), (3, 20), (4, 10), (5, 0))),
             s(5, "engine_rpm", 800), s(5.5, "engine_rpm", 0), link(6, ok=False)]
    for item in items:
        out.extend(eng.feed(item))
    out.extend(eng.tick(ms(65)))
    return out


def test_a_finished_trip_stays_in_the_state_until_confirmed(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    eng = engine(path)
    out = a_trip(eng)
    assert types(out) == ["IGNITION_ON", "MOVING", "STOPPED", "IGNITION_OFF", "PARKED", "TRIP_FINISHED", "TRIP"]
    state = json.loads(path.read_text())
    assert state["trip"] is None  # the trip is closed...
    assert [next(iter(o.values()))["id"] for o in state["unconfirmed"]] == [o.id for o in out]  # ...but kept

    # a SIGKILL now: the restarted engine hands back every output, equal field by field
    again = engine(path)
    assert again.unconfirmed() == out
    assert again.current_trip_id is None and not again.ignition_on
    trip = out[-1]
    assert isinstance(trip, TripRecord) and trip.summary["distance"] == pytest.approx(11.11, abs=0.01)

    # the store committed the first three; then the rest
    again.confirm_durable([o.id for o in out[:3]])
    assert [o.id for o in engine(path).unconfirmed()] == [o.id for o in out[3:]]  # rewritten at once
    again.confirm_durable([o.id for o in out[3:]] + ["unknown-id"])
    assert again.unconfirmed() == [] and json.loads(path.read_text())["unconfirmed"] == []


def test_outputs_are_held_by_the_save_that_moves_the_state_on(tmp_path: Path) -> None:
    """A kill right after feed() returns (before any publish) keeps the output: one write, one file."""
    path = tmp_path / "state.json"
    eng = engine(path)
    for item in (link(0, ok=False), link(0.5, ok=True), s(1, "engine_rpm", 800), s(1, "speed", 0)):
        eng.feed(item)
    eng.confirm_durable([o.id for o in eng.unconfirmed()])
    (moving,) = eng.feed(s(2, "speed", 10))
    state = json.loads(path.read_text())
    assert state["motion"] != engine(None).motion.to_state()  # the detector's state moved on...
    assert state["unconfirmed"] == [{"event": {"id": moving.id, "type": "MOVING", "automatic_type": "vehicle:moving",
                                               "date_ms": ms(2), "trip_id": eng.current_trip_id,
                                               "payload": {"speed_kph": 10.0}}}]  # ...with the event


def test_state_without_the_key_loads_and_replay_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    eng = engine(path)
    a_trip(eng)
    state = json.loads(path.read_text())
    del state["unconfirmed"]  # a file written before the key existed
    path.write_text(json.dumps(state))
    assert engine(path).unconfirmed() == []
    assert not path.with_name("state.json.corrupt").exists()
    replay = engine(None)  # no state file: nobody confirms, nothing is kept
    assert len(a_trip(replay)) == 7 and replay.unconfirmed() == []


def test_unconfirmed_outputs_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(detection, "MAX_UNCONFIRMED", 5)
    eng = engine(tmp_path / "state.json")
    out = a_trip(eng)
    assert eng.feed(s(100, "mil", True)) == []  # mil:on waits for its codes...
    out += eng.tick(ms(111))  # ...for mil_dtc_wait_s
    assert types(out[-1:]) == ["MIL_ON"] and len(out) == 8
    assert [o.id for o in eng.unconfirmed()] == [o.id for o in out[-5:]]  # the oldest forgotten
    assert eng.unconfirmed_dropped == 3
    assert sum("await the store's commit" in r.getMessage() for r in caplog.records) == 1  # once, not per event
