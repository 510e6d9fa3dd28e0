"""DetectionEngine: trips per ignition cycle, the 10 m discard, trip ids on events, persisted state."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from gateway.config import DetectionConfig
from gateway.detection import DetectionEngine
from gateway.model import Event, LinkState, Sample, TripRecord
from tests.detection.helpers import counter_ids, link, ms, s, types

CFG = DetectionConfig()


def engine(state_path: Path | None = None, **changes: object) -> DetectionEngine:
    cfg = dataclasses.replace(CFG, **changes) if changes else CFG
    return DetectionEngine(cfg, device_id="dev-1", car_id="car-1", state_path=state_path, new_id=counter_ids())


def drive(peak_kmh: float = 9.0) -> list[Sample | LinkState]:
    """Key on at 0.5 s, engine at 1 s, 0 → peak → 0 km/h over 8 s, engine off at 10 s."""
    return [
        link(0, ok=False),
        link(0.5, ok=True),
        s(1, "engine_rpm", 800),
        s(1, "speed", 0),
        s(5, "speed", peak_kmh),
        s(9, "speed", 0),
        s(10, "engine_rpm", 760),  # the last sign of running: the trip ends here
        s(10.2, "engine_rpm", 0),
        link(11, ok=False),
    ]


def run(eng: DetectionEngine, items: list[Sample | LinkState], tick_s: float | None = None) -> list:
    out: list = []
    for item in items:
        out.extend(eng.feed(item))
    if tick_s is not None:
        out.extend(eng.tick(ms(tick_s)))
    return out


def test_one_trip_per_ignition_cycle() -> None:
    eng = engine()
    out = run(eng, drive(), tick_s=69.999)
    assert types(out) == ["IGNITION_ON", "MOVING", "STOPPED"]
    trip_id = eng.current_trip_id
    assert eng.ignition_on and trip_id is not None
    assert all(isinstance(e, Event) and e.trip_id == trip_id for e in out)
    out = eng.tick(ms(70))  # 60 s after the engine stopped at 10 s
    assert types(out) == ["IGNITION_OFF", "PARKED", "TRIP_FINISHED", "TRIP"]
    off, parked, finished, trip = out
    assert off.date_ms == parked.date_ms == finished.date_ms == ms(10)
    assert isinstance(trip, TripRecord) and trip.id == trip_id
    assert (trip.start_ms, trip.stop_ms) == (ms(0.5), ms(10))
    d = trip.to_dict()
    assert d["distance"] == 10.0 and d["duration"] == 9500
    assert d["car"] == {"id": "car-1"} and d["device"] == {"id": "dev-1"}
    assert finished.automatic_type == "trip:finished" and finished.payload["trip"]["id"] == trip_id
    assert not eng.ignition_on and eng.current_trip_id is None


@pytest.mark.parametrize(("peak", "kept"), [(9.0, True), (8.99, False)])
def test_trips_under_10_m_are_discarded(peak: float, kept: bool) -> None:
    # 0 → peak → 0 over 8 s: 2 × 4 s × 4.5 km/h / 3.6 = 10.0 m at 9 km/h (kept), 9.99 m at 8.99 (discarded)
    eng = engine()
    out = run(eng, drive(peak), tick_s=70)
    assert ("TRIP" in types(out)) is kept
    assert ("TRIP_FINISHED" in types(out)) is kept
    assert "IGNITION_OFF" in types(out)


def test_off_is_also_confirmed_by_later_samples_without_tick() -> None:
    eng = engine()
    out = run(eng, [*drive(), link(70, ok=False)])
    assert types(out)[-4:] == ["IGNITION_OFF", "PARKED", "TRIP_FINISHED", "TRIP"]


def test_new_trip_after_off_gets_new_id_and_events_between_trips_have_none() -> None:
    eng = engine()
    first = next(x for x in run(eng, drive(), tick_s=70) if isinstance(x, TripRecord))
    parked = run(eng, [s(80, "dtcs", ("P0301",)), s(81, "mil", True)])
    assert types(parked) == ["MIL_ON"] and parked[0].trip_id is None
    later = [dataclasses.replace(i, ts_ms=i.ts_ms + 100_000) for i in drive()]
    out = run(eng, later, tick_s=170)
    second = next(x for x in out if isinstance(x, TripRecord))
    assert second.id != first.id


def test_hard_brake_counted_in_trip() -> None:
    eng = engine()
    items = [s(0, "engine_rpm", 800), s(0, "speed", 0), s(1, "speed", 12), s(2, "speed", 24),
             s(3, "speed", 12), s(4, "speed", 0), s(5, "engine_rpm", 0)]
    out = run(eng, items, tick_s=65)
    trip = next(x for x in out if isinstance(x, TripRecord)).to_dict()
    # 12 km/h/s up at 1 s and 2 s (the second inside the 5 s refractory period), down at 3 s and 4 s
    assert trip["trip_event_counts"] == {"hard_turns": 0, "hard_accelerations": 1, "hard_brakes": 1}
    assert [e["type"] for e in trip["vehicle_events"]] == ["hard_accel", "hard_brake"]


def test_open_speeding_episode_is_closed_with_the_trip() -> None:
    eng = engine()
    items = [s(0, "engine_rpm", 2500), s(0, "speed", 110), s(10, "speed", 120), s(30, "engine_rpm", 0),
             s(30, "speed", 0)]
    out = run(eng, items, tick_s=90)
    names = types(out)
    assert names.index("SPEEDING") < names.index("IGNITION_OFF")
    speeding = out[names.index("SPEEDING")]
    trip = next(x for x in out if isinstance(x, TripRecord)).to_dict()
    assert speeding.trip_id == trip["id"]
    assert [e["type"] for e in trip["vehicle_events"]] == ["speeding"]


def test_stop_start_does_not_split_the_trip() -> None:
    eng = engine()
    # the engine stops at a light after 3 s (last running sample) and restarts 59.999 s later
    items = [s(0, "engine_rpm", 800), s(0, "speed", 0), s(1, "speed", 36), s(2, "speed", 0),
             s(3, "engine_rpm", 780), s(3.2, "engine_rpm", 0), s(62.999, "engine_rpm", 750), s(63, "speed", 20)]
    out = run(eng, items, tick_s=100)
    assert "IGNITION_OFF" not in types(out) and eng.ignition_on


def test_user_cleared_dtcs_reach_mil_off() -> None:
    eng = engine()
    run(eng, [s(0, "dtcs", ("P0420",)), s(1, "mil", True)])
    eng.note_user_cleared_dtcs()
    (off,) = eng.feed(s(2, "mil", False))
    assert off.type == "MIL_OFF" and off.payload["user_cleared"] is True


# ------------------------------------------------------------------------------------ persistence
def test_restart_continues_the_same_trip(tmp_path: Path) -> None:
    path = tmp_path / "detection.json"
    first = engine(path)
    run(first, [s(0, "engine_rpm", 800), s(0, "speed", 0), s(1, "speed", 36), s(2, "speed", 36)])
    trip_id = first.current_trip_id
    first.save_state()
    del first
    second = engine(path)  # the daemon restarted
    assert second.ignition_on and second.current_trip_id == trip_id
    out = run(second, [s(20, "engine_rpm", 800), s(20, "speed", 36), s(21, "speed", 36), s(22, "speed", 0),
                       s(22, "engine_rpm", 760), s(23, "engine_rpm", 0)], tick_s=83)
    (trip,) = [x for x in out if isinstance(x, TripRecord)]
    assert trip.id == trip_id and trip.start_ms == ms(0) and trip.stop_ms == ms(22)  # last running sample
    # 5 + 10 m before the restart, the 18 s hole (2 s -> 20 s) bridged (< 30 s) at 36 km/h, then 10 + 5 m
    assert trip.summary["distance"] == pytest.approx(15 + 180 + 15)
    assert "IGNITION_ON" not in types(out)


def test_restart_long_after_parking_ends_trip_when_it_ended(tmp_path: Path) -> None:
    path = tmp_path / "detection.json"
    first = engine(path)
    run(first, [s(0, "engine_rpm", 800), s(0, "speed", 0), s(1, "speed", 36), s(2, "speed", 36), s(3, "speed", 0),
                s(3, "engine_rpm", 760)])
    trip_id = first.current_trip_id
    first.save_state()
    second = engine(path)
    out = second.feed(link(3600, ok=False))  # an hour later, the car is silent
    assert types(out) == ["IGNITION_OFF", "PARKED", "TRIP_FINISHED", "TRIP"]
    trip = out[-1]
    assert trip.id == trip_id and trip.stop_ms == ms(3)


def test_state_file_is_written_atomically_and_periodically(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "detection.json"
    eng = engine(path, state_save_interval_s=10.0)
    eng.feed(s(0, "engine_rpm", 800))  # ignition on: saved at once
    state = json.loads(path.read_text())
    assert state["trip"]["id"] == eng.current_trip_id and state["ignition"]["on"] is True
    eng.feed(s(0, "speed", 36))  # MOVING: an event, saved at once
    eng.feed(s(5, "speed", 36))  # nothing new and not due
    assert json.loads(path.read_text())["trip"]["distance_m"] == 0
    eng.feed(s(10, "speed", 36))  # 10 s since the last save
    assert json.loads(path.read_text())["trip"]["distance_m"] == pytest.approx(100.0)
    assert [p.name for p in path.parent.iterdir()] == ["detection.json"]  # no temporary files left


def test_corrupt_state_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "detection.json"
    path.write_text("{not json")
    eng = engine(path)
    assert not eng.ignition_on
    assert (tmp_path / "detection.json.corrupt").read_text() == "{not json"
    eng.feed(s(0, "engine_rpm", 800))
    assert json.loads(path.read_text())["ignition"]["on"] is True


def test_unwritable_state_does_not_stop_detection(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    eng = engine(blocker / "detection.json")  # parent is a file: every save fails
    assert types(eng.feed(s(0, "engine_rpm", 800))) == ["IGNITION_ON"]


def test_end_of_input_closes_the_open_trip() -> None:
    eng = engine()
    # (0 -> 36 km/h within 4 s: 0 -> 36 in one second would be 1.02 g, a data fault)
    run(eng, [s(0, "engine_rpm", 800), s(0, "speed", 0), s(4, "speed", 36), s(5, "speed", 36)])
    out = eng.end_of_input(ms(5))
    assert types(out) == ["IGNITION_OFF", "PARKED", "TRIP_FINISHED", "TRIP"]
    assert out[0].payload == {"end_of_input": True} and out[-1].stop_ms == ms(5)
