"""Trip integrals and scores, hand-computed."""

from __future__ import annotations

import pytest

from gateway.model import Event
from gateway.trips import TripAccumulator
from tests.detection.helpers import T0, ms, s


def acc() -> TripAccumulator:
    return TripAccumulator(id="trip-1", start_ms=T0)


def test_distance_trapezoid() -> None:
    t = acc()
    for sec, v in [(0, 0), (1, 36), (2, 36), (3, 0)]:
        t.feed(s(sec, "speed", v))
    # 36 km/h = 10 m/s: 5 m + 10 m + 5 m
    assert t.distance_m == pytest.approx(20.0)
    assert t.moving_s == pytest.approx(3.0)


def test_distance_skips_gaps_longer_than_limit() -> None:
    t = acc()
    for sec, v in [(0, 36), (1, 36), (31.001, 36), (32.001, 36)]:
        t.feed(s(sec, "speed", v))
    assert t.distance_m == pytest.approx(20.0)  # the 30.001 s hole adds nothing
    t2 = acc()
    for sec, v in [(0, 36), (30, 36)]:
        t2.feed(s(sec, "speed", v))
    assert t2.distance_m == pytest.approx(300.0)  # exactly 30 s is bridged


def test_idle_needs_engine_running_and_standstill() -> None:
    t = acc()
    t.feed(s(0, "speed", 0))
    t.feed(s(5, "speed", 0))  # rpm unknown: not idling
    t.feed(s(5, "engine_rpm", 780))
    t.feed(s(15, "speed", 0))  # 10 s idle
    t.feed(s(16, "speed", 10))  # moving
    assert t.idle_s == pytest.approx(10.0)
    assert t.moving_s == pytest.approx(1.0)


def test_duration_over_thresholds() -> None:
    t = acc()
    for sec, v in [(0, 100), (10, 130), (20, 130), (30, 100)]:
        t.feed(s(sec, "speed", v))
    thr70, thr75, thr80 = (m * 1.609344 for m in (70, 75, 80))
    ramp = 10 / 30  # seconds per km/h on the 10 s ramps of 30 km/h
    assert t.over_s["duration_over_70_s"] == pytest.approx(2 * (130 - thr70) * ramp + 10)
    assert t.over_s["duration_over_75_s"] == pytest.approx(2 * (130 - thr75) * ramp + 10)
    assert t.over_s["duration_over_80_s"] == pytest.approx(2 * (130 - thr80) * ramp + 10)


def test_fuel_from_rate_beats_maf() -> None:
    t = acc()
    for sec in range(11):
        t.feed(s(sec, "engine_fuel_rate", 3.6))  # 3.6 L/h for 10 s = 0.01 L
        t.feed(s(sec, "maf", 50.0))
    assert t.fuel_volume_l == pytest.approx(0.01)


def test_fuel_from_maf() -> None:
    t = acc()
    g_per_s = 14.7 * 745.0 / 1000  # one millilitre of fuel per second at stoichiometry
    for sec in range(11):
        t.feed(s(sec, "maf", g_per_s))
    assert t.fuel_volume_l == pytest.approx(0.01)
    assert acc().fuel_volume_l is None


def ev(kind: str, g: float = 0.4) -> Event:
    return Event("e", kind, "", ms(1), "trip-1", {"g_force": g})


@pytest.mark.parametrize(
    ("distance_km", "brakes", "accels", "score"),
    [(5, 2, 0, 80.0), (20, 2, 1, 85.0), (10, 0, 0, 100.0), (1, 11, 0, 0.0)],
)
def test_score_events(distance_km: float, brakes: int, accels: int, score: float) -> None:
    t = acc()
    t.distance_m = distance_km * 1000
    for _ in range(brakes):
        t.note_event(ev("HARD_BRAKE"))
    for _ in range(accels):
        t.note_event(ev("HARD_ACCELERATION"))
    out = t.summary(ms(600), device_id="dev", car_id="car")
    assert out["score_events"] == score
    assert out["trip_event_counts"] == {"hard_turns": 0, "hard_accelerations": accels, "hard_brakes": brakes}


@pytest.mark.parametrize(
    ("moving_s", "over", "score"),
    [(120, (60, 0, 0), 83.33), (30, (30, 0, 0), 83.33), (600, (600, 0, 0), 66.67), (600, (600, 600, 600), 0.0)],
)
def test_score_speeding(moving_s: float, over: tuple[float, float, float], score: float) -> None:
    t = acc()
    t.moving_s = moving_s
    t.over_s = {"duration_over_70_s": over[0], "duration_over_75_s": over[1], "duration_over_80_s": over[2]}
    assert t.summary(ms(600), device_id="d", car_id="c")["score_speeding"] == score


def test_summary_shape() -> None:
    t = acc()
    for sec, v in [(0, 0), (1, 36), (2, 36), (3, 0)]:
        t.feed(s(sec, "speed", v))
    t.feed(s(0, "engine_fuel_rate", 7.2))
    t.feed(s(3, "engine_fuel_rate", 7.2))  # 7.2 L/h for 3 s = 0.006 L
    t.note_event(ev("HARD_BRAKE", 0.35))
    out = t.summary(ms(3), device_id="dev-1", car_id="car-1")
    assert out["id"] == "trip-1" and out["car"] == {"id": "car-1"} and out["device"] == {"id": "dev-1"}
    assert out["distance"] == 20.0 and out["duration"] == 3000
    assert out["start"] == {"date": T0} and out["stop"] == {"date": ms(3)}
    assert out["fuel_volume_l"] == 0.006
    assert out["average_kmpl"] == pytest.approx(0.02 / 0.006, abs=1e-3)
    assert out["vehicle_events"] == [{"type": "hard_brake", "created_at": ms(1), "g_force": 0.35}]
    assert out["hard_brakes"] == 1 and out["hard_accels"] == 0
    for key in ("duration_over_70_s", "duration_over_75_s", "duration_over_80_s", "idling_time_s"):
        assert out[key] == 0


def test_state_round_trip() -> None:
    t = acc()
    for sec, v in [(0, 0), (1, 36)]:
        t.feed(s(sec, "speed", v))
    copy = TripAccumulator.from_state(t.to_state())
    copy.feed(s(2, "speed", 36))
    assert copy.distance_m == pytest.approx(15.0)
    assert t.distance_m == pytest.approx(5.0)
