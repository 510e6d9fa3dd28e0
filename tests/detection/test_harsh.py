"""Hard brake / hard acceleration episodes: the threshold, the gap, the refractory period, the peak, faults."""

from __future__ import annotations

import pytest

from gateway.detectors import HarshDetector
from gateway.detectors.rate import lsq_slope
from gateway.model import Event
from tests.detection.helpers import feed_all, link, ms, s, speeds


def run(points: list[tuple[float, float]], det: HarshDetector | None = None) -> list[Event]:
    det = det or HarshDetector()
    return feed_all(det, speeds(points)) + det.flush()


# (case, [(t_s, km/h) ...], expected HARD_BRAKE dates in s) — defaults: 11 km/h/s, 0.8 s window, 2 s gap, 5 s refractory
BRAKE_CASES = [
    ("exactly 11 km/h/s is not beyond", [(0, 50), (1, 39)], []),
    ("just over: 11.1 km/h/s", [(0, 50), (1, 38.9)], [1]),
    ("0.8 s pair at 11.25 km/h/s", [(0, 50), (0.8, 41)], [0.8]),
    ("just under at 0.8 s", [(0, 50), (0.8, 41.2)], []),
    ("a pair closer than the window gives no rate", [(0, 50), (0.5, 30)], []),
    ("2 s gap is still used", [(0, 50), (2, 27)], [2]),
    ("gap just over 2 s is ignored", [(0, 50), (2.001, 20)], []),
    ("acceleration is not braking", [(0, 20), (1, 40)], []),
    # 10 Hz with 1 km/h quantisation: neighbours differ by up to 20 km/h/s, the least-squares slope over
    # the 0.8 s window is about 6.5 km/h/s: no event
    ("quantised 10 Hz at ~6 km/h/s", [(i / 10, v) for i, v in enumerate([50, 50, 49, 47, 47, 46, 46, 45, 45])], []),
    ("10 Hz at 15 km/h/s", [(round(i * 0.1, 1), 50 - 1.5 * i) for i in range(10)], [0.8]),
    # 12 km/h/s for 7 s is one episode: one event (the reference's refractory suppresses a second event,
    # not the growth of the first)
    ("one long episode", [(t, 100 - 12 * t) for t in range(8)], [1]),
]


@pytest.mark.parametrize(("points", "expected"), [c[1:] for c in BRAKE_CASES], ids=[c[0] for c in BRAKE_CASES])
def test_hard_brake_table(points: list[tuple[float, float]], expected: list[float]) -> None:
    out = [e for e in run(points) if e.type == "HARD_BRAKE"]
    assert [e.date_ms for e in out] == [ms(t) for t in expected]
    assert all(e.automatic_type == "notification:hard_brake" for e in out)


def test_refractory_boundary() -> None:
    # first episode crosses at 1 s; a second one crossing at 5.999 s is disregarded, one at 6 s is not
    inside = [(0, 100), (1, 88), (2, 88), (3, 88), (4.999, 88), (5.999, 76), (7, 76)]
    assert [e.date_ms for e in run(inside)] == [ms(1)]
    outside = [(0, 100), (1, 88), (2, 88), (3, 88), (5, 88), (6, 76), (7, 76)]
    assert [e.date_ms for e in run(outside)] == [ms(1), ms(6)]


def test_emergency_stop_is_one_episode_with_its_peak() -> None:
    # the stop: 77 -> 60 -> 38 -> 11 -> 0 km/h at 1 Hz; peak 27 km/h/s = 0.765 g in 38 -> 11
    det = HarshDetector()
    out = feed_all(det, speeds([(0, 77), (1, 77), (2, 60), (3, 38), (4, 11), (5, 0)]))
    assert out == []  # in flight: published only once it has ended and nothing undid it
    out += feed_all(det, speeds([(6, 0), (7, 0)]))
    (ev,) = out
    assert ev.type == "HARD_BRAKE" and ev.date_ms == ms(2)
    assert ev.payload == {"g_force": 0.765, "rate_kmh_per_s": -27.0, "speed_from_kph": 77, "speed_to_kph": 0,
                          "start_time": ms(1), "end_time": ms(5), "duration_s": 4.0, "peak_time": ms(4)}


def test_an_episode_is_published_by_tick_when_samples_stop() -> None:
    det = HarshDetector()
    assert feed_all(det, speeds([(0, 60), (1, 45)])) == []
    assert det.tick(ms(3)) == []  # exactly max_gap after the last sample: it may still come
    (ev,) = det.tick(ms(3.001))
    assert ev.type == "HARD_BRAKE" and ev.payload["speed_to_kph"] == 45


def test_stale_value_catching_up_is_a_data_fault() -> None:
    # speed held at 52 for 14 s, then 3 km/h one second later (49 km/h/s = 1.39 g), then rising smoothly
    points = [(t, 52) for t in range(15)] + [(15, 3), (16, 9), (17, 15), (18, 21), (19, 26)]
    (ev,) = run(points)
    assert (ev.type, ev.automatic_type, ev.date_ms) == ("DATA_QUALITY", "gateway:data_quality", ms(15))
    assert ev.payload["reason"] == "implausible_rate" and ev.payload["held_s"] == 14.0
    assert ev.payload["implied_g"] == pytest.approx(1.388) and "g_force" not in ev.payload


def test_single_sample_spike_is_one_snap_back() -> None:
    (ev,) = run([(0, 50), (1, 50), (2, 5), (3, 50), (4, 50), (5, 50)])
    assert ev.type == "DATA_QUALITY" and ev.payload["reason"] == "snap_back"
    assert ev.payload["direction"] == "down" and ev.payload["undone_time"] == ms(3)
    # a plausible one-sample dip is the same fault
    (dip,) = run([(0, 60), (1, 60), (2, 45), (3, 60), (4, 60), (5, 60)])
    assert dip.payload["reason"] == "snap_back"


def test_hard_then_hard_back_over_several_samples_stays_driving() -> None:
    out = run([(0, 0), (1, 12), (2, 24), (3, 12), (4, 0), (5, 0)])
    assert [e.type for e in out] == ["HARD_ACCELERATION", "HARD_BRAKE"]


def test_wheel_spin_on_ice() -> None:
    # the case: 10 -> 26 -> 39 -> 15 km/h while the engine goes 1000 -> 4300 -> 1600 rpm
    items = []
    for t, v, rpm in [(0, 10, 1000), (1, 26, 4300), (2, 39, None), (3, 15, 1600), (4, 16, 1100), (5, 17, 1150)]:
        items.append(s(t, "speed", v))
        if rpm is not None:
            items.append(s(t, "engine_rpm", rpm))
    det = HarshDetector()
    (ev,) = feed_all(det, items) + det.flush()
    assert ev.type == "DATA_QUALITY" and ev.payload["reason"] == "wheel_slip"
    assert ev.payload["rpm_over_gear"] == 1.65  # 4300 rpm at 26 km/h where the gear predicts 2600
    # the same speeds with the engine following them: a real hard acceleration and brake
    items = [x if x.name == "speed" else s((x.ts_ms - ms(0)) / 1000, "engine_rpm", 100 * [10, 26, 39, 15][
        round((x.ts_ms - ms(0)) / 1000)]) for x in items if x.ts_ms <= ms(3)]
    det = HarshDetector()
    assert [e.type for e in feed_all(det, items) + det.flush()] == ["HARD_ACCELERATION", "HARD_BRAKE"]


def test_jump_across_a_gap() -> None:
    (ev,) = run([(0, 80), (5, 0)])  # 16 km/h/s on average over 5 s: maybe a hard brake, unmeasurable
    assert ev.type == "DATA_QUALITY" and ev.payload["reason"] == "gap" and ev.payload["gap_s"] == 5.0
    assert run([(0, 60), (180, 0), (181, 0)]) == []  # a gap of minutes: nothing


def test_implausible_bounds_are_configurable() -> None:
    points = [(0, 100), (1, 100), (2, 60), (3, 20), (4, 0), (5, 0), (6, 0)]  # 40 km/h/s = 1.13 g
    assert [e.type for e in run(points)] == ["HARD_BRAKE"]
    assert [e.payload["reason"] for e in run(points, HarshDetector(max_brake_g=1.0))] == ["implausible_rate"]
    accel = [(0, 0), (1, 0), (2, 30), (3, 60), (4, 61), (5, 62)]  # 30 km/h/s = 0.85 g
    assert [e.type for e in run(accel)] == ["DATA_QUALITY"]
    assert [e.type for e in run(accel, HarshDetector(max_accel_g=1.0))] == ["HARD_ACCELERATION"]


def test_silent_ecu_breaks_the_rate_chain() -> None:
    det = HarshDetector()
    items = [*speeds([(0, 50)]), link(0.5, ok=False), *speeds([(1, 30)])]
    assert feed_all(det, items) + det.flush() == []


def test_consecutive_mode_and_configured_threshold() -> None:
    det = HarshDetector(brake_kmh_per_s=8.0, rate_window_s=0.0)
    out = feed_all(det, speeds([(0, 50), (0.1, 49), (0.2, 48.1), (0.3, 48.1), (0.4, 48.1)])) + det.flush()
    assert [e.date_ms for e in out] == [ms(0.1)]  # 10 then 9 km/h/s: one episode


def test_least_squares_slope() -> None:
    assert lsq_slope([(0, 50.0)]) is None
    assert lsq_slope([(0, 50.0), (1000, 38.0)]) == pytest.approx(-12.0)
    # rounding noise on a 10 km/h/s line barely moves the slope
    assert lsq_slope([(0, 50), (250, 48), (500, 45), (750, 43), (1000, 40)]) == pytest.approx(-10.0, abs=0.5)


def test_state_round_trip_keeps_the_episode_in_flight() -> None:
    det = HarshDetector()
    feed_all(det, speeds([(0, 100), (1, 100), (2, 85)]))
    again = HarshDetector()
    again.load_state(det.to_state())
    out = feed_all(again, speeds([(3, 60), (4, 50), (5, 50), (6, 50)]))
    (ev,) = out
    assert ev.date_ms == ms(2) and ev.payload["speed_from_kph"] == 100 and ev.payload["speed_to_kph"] == 50
    assert ev.payload["rate_kmh_per_s"] == -25.0
    fresh = HarshDetector()
    fresh.load_state(again.to_state())
    # the refractory clock survives too: a crossing at 6.5 s is within 5 s of the event at 2 s
    assert feed_all(fresh, speeds([(7.5, 35), (8.5, 35), (9.5, 35)])) == []
