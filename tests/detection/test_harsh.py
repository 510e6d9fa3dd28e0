"""Hard brake / hard acceleration at and around the 11 km/h/s threshold, the gap and the refractory period."""

from __future__ import annotations

import pytest

from gateway.detectors import HardAccelDetector, HardBrakeDetector
from tests.detection.helpers import feed_all, link, ms, speeds

# (case, [(t_s, km/h) ...], expected event times in s) — defaults: 11 km/h/s, 0.8 s window, 2 s gap, 5 s refractory
BRAKE_CASES = [
    ("exactly 11 km/h/s is not beyond", [(0, 50), (1, 39)], []),
    ("just over: 11.1 km/h/s", [(0, 50), (1, 38.9)], [1]),
    ("0.8 s pair at 11.25 km/h/s", [(0, 50), (0.8, 41)], [0.8]),
    ("just under at 0.8 s", [(0, 50), (0.8, 41.2)], []),
    ("a pair closer than the window gives no rate", [(0, 50), (0.5, 30)], []),
    ("2 s gap is still used", [(0, 50), (2, 27)], [2]),
    ("gap just over 2 s is ignored", [(0, 50), (2.001, 20)], []),
    ("acceleration is not braking", [(0, 20), (1, 40)], []),
    # 10 Hz with 1 km/h quantisation: one 0.1 s step of 2 km/h is 20 km/h/s between neighbours, but the
    # rate over the 0.8 s window is 5-6 km/h/s: no event.
    ("quantised 10 Hz at ~6 km/h/s", [(i / 10, v) for i, v in enumerate([50, 50, 49, 47, 47, 46, 46, 45, 45])], []),
    # 10 Hz at 15 km/h/s: the first pair at least 0.8 s apart is (0, 0.8): 12 km/h in 0.8 s
    ("10 Hz at 15 km/h/s", [(round(i * 0.1, 1), 50 - 1.5 * i) for i in range(10)], [0.8]),
    # refractory: 12 km/h/s every second from 100 km/h; the first fires at 1 s, the next at 6 s (5 s later)
    ("refractory 5 s", [(t, 100 - 12 * t) for t in range(8)], [1, 6]),
]


@pytest.mark.parametrize(("points", "expected"), [c[1:] for c in BRAKE_CASES], ids=[c[0] for c in BRAKE_CASES])
def test_hard_brake_table(points: list[tuple[float, float]], expected: list[float]) -> None:
    det = HardBrakeDetector()
    out = feed_all(det, speeds(points))
    assert [e.date_ms for e in out] == [ms(t) for t in expected]
    assert all(e.type == "HARD_BRAKE" and e.automatic_type == "notification:hard_brake" for e in out)


def test_refractory_boundary() -> None:
    # first event at 1 s; a second hard pair ending at 5.999 s is inside the 5 s window, one ending at 6 s is not
    inside = [(0, 100), (1, 88), (4.999, 88), (5.999, 76)]
    assert [e.date_ms for e in feed_all(HardBrakeDetector(), speeds(inside))] == [ms(1)]
    outside = [(0, 100), (1, 88), (5, 88), (6, 76)]
    assert [e.date_ms for e in feed_all(HardBrakeDetector(), speeds(outside))] == [ms(1), ms(6)]


def test_g_force_and_payload() -> None:
    (ev,) = feed_all(HardBrakeDetector(), speeds([(0, 50), (1, 38.9)]))
    # 11.1 km/h/s = 3.0833 m/s² = 0.3144 g
    assert ev.payload["g_force"] == pytest.approx(0.314, abs=1e-9)
    assert ev.payload["rate_kmh_per_s"] == pytest.approx(-11.1)
    assert ev.payload["speed_from_kph"] == 50 and ev.payload["speed_to_kph"] == 38.9


ACCEL_CASES = [
    ("exactly 11", [(0, 20), (1, 31)], []),
    ("11.1", [(0, 20), (1, 31.1)], [1]),
    ("braking is not accelerating", [(0, 50), (1, 20)], []),
    ("gap over 2 s", [(0, 0), (2.5, 40)], []),
    ("refractory", [(t, 12 * t) for t in range(8)], [1, 6]),
]


@pytest.mark.parametrize(("points", "expected"), [c[1:] for c in ACCEL_CASES], ids=[c[0] for c in ACCEL_CASES])
def test_hard_accel_table(points: list[tuple[float, float]], expected: list[float]) -> None:
    out = feed_all(HardAccelDetector(), speeds(points))
    assert [e.date_ms for e in out] == [ms(t) for t in expected]
    assert all(e.type == "HARD_ACCELERATION" and e.automatic_type == "notification:hard_accel" for e in out)


def test_silent_ecu_breaks_the_rate_chain() -> None:
    det = HardBrakeDetector()
    items = [*speeds([(0, 50)]), link(0.5, ok=False), *speeds([(1, 30)])]
    assert feed_all(det, items) == []


def test_consecutive_mode_and_configured_threshold() -> None:
    # rate_window_s = 0 compares strictly consecutive samples; threshold 8 km/h/s
    det = HardBrakeDetector(threshold_kmh_per_s=8.0, rate_window_s=0.0)
    out = feed_all(det, speeds([(0, 50), (0.1, 49), (0.2, 48.1)]))  # 10 then 9 km/h/s
    assert [e.date_ms for e in out] == [ms(0.1)]


def test_state_round_trip_keeps_refractory() -> None:
    det = HardBrakeDetector()
    feed_all(det, speeds([(0, 100), (1, 88)]))
    again = HardBrakeDetector()
    again.load_state(det.to_state())
    assert feed_all(again, speeds([(2, 76)])) == []  # still inside 5 s of the event at 1 s
    assert len(feed_all(again, speeds([(6, 64)]))) == 0  # 4 s pair: gap too long
    assert [e.date_ms for e in feed_all(again, speeds([(7, 52)]))] == [ms(7)]
