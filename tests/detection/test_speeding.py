"""Speeding at 70/75/80 mph: one event per crossing, 5 mph re-arm, max speed and time above."""

from __future__ import annotations

import pytest

from gateway.detectors import SpeedingDetector
from tests.detection.helpers import feed_all, ms, speeds

# 70 mph = 112.654 km/h, 65 mph = 104.607 km/h, 75 mph = 120.701 km/h, 80 mph = 128.748 km/h


def run(points: list[tuple[float, float]]) -> list[tuple[float, int]]:
    """(threshold, date) of the events of a drive, including those the end of the trip flushes."""
    det = SpeedingDetector()
    out = feed_all(det, speeds(points)) + det.flush()
    return [(e.payload["threshold_mph"], e.date_ms) for e in out]


CASES = [
    ("112 km/h (69.6 mph) is under", [(0, 100), (1, 112), (2, 100)], []),
    ("113 km/h (70.2 mph) is over", [(0, 100), (1, 113), (2, 100)], [(70.0, ms(1))]),
    ("hovering 68-71 mph gives one event", [(0, 113), (1, 110), (2, 113), (3, 109), (4, 113)], [(70.0, ms(0))]),
    ("dip to 105 km/h (65.2 mph) does not re-arm", [(0, 113), (1, 105), (2, 113)], [(70.0, ms(0))]),
    ("dip to 104.6 km/h (64.996 mph) re-arms", [(0, 113), (1, 104.6), (2, 113)], [(70.0, ms(0)), (70.0, ms(2))]),
    (
        "130 km/h crosses all three",
        [(0, 100), (1, 130), (2, 100)],
        [(70.0, ms(1)), (75.0, ms(1)), (80.0, ms(1))],  # 100 km/h re-arms all three at once
    ),
    ("75 re-arms at 70 mph while 70 stays disarmed", [(0, 121), (1, 112.6), (2, 121)],
     [(75.0, ms(0)), (70.0, ms(0)), (75.0, ms(2))]),
]


@pytest.mark.parametrize(("points", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_speeding_table(points: list[tuple[float, float]], expected: list[tuple[float, int]]) -> None:
    assert run(points) == expected


def test_episode_payload_is_hand_computed() -> None:
    det = SpeedingDetector()
    pts = [(0, 100), (1, 113), (2, 113), (3, 110), (4, 113), (5, 105), (6, 104)]
    out = feed_all(det, speeds(pts))
    (ev,) = out  # emitted at 6 s, when 104 km/h <= 65 mph re-arms
    assert ev.type == "SPEEDING" and ev.automatic_type == "notification:speeding"
    thr = 70 * 1.609344
    # time above 112.654 km/h along the straight lines between samples
    expected = (113 - thr) / 13 + 1 + (113 - thr) / 3 + (113 - thr) / 3 + (113 - thr) / 8
    assert ev.payload["duration_s"] == pytest.approx(expected, abs=1e-3)
    assert ev.payload["duration_s"] == pytest.approx(1.3005, abs=1e-3)
    assert ev.payload["velocity_kph"] == 113
    assert ev.payload["speed_mph"] == 70.2
    assert ev.date_ms == ms(1) and ev.payload["start_time"] == ms(1) and ev.payload["end_time"] == ms(4)
    assert det.flush() == []


def test_flush_ends_open_episode_and_rearms() -> None:
    det = SpeedingDetector()
    feed_all(det, speeds([(0, 110), (2, 120)]))
    (ev,) = det.flush()
    # 110 -> 120 over 2 s: above 112.654 for 2 * (120 - 112.654) / 10 = 1.469 s
    assert ev.payload["duration_s"] == pytest.approx(1.469, abs=1e-3)
    assert ev.payload["velocity_kph"] == 120
    assert [e.payload["threshold_mph"] for e in feed_all(det, speeds([(100, 113)])) + det.flush()] == [70.0]


def test_time_above_skips_gaps_longer_than_integration_limit() -> None:
    det = SpeedingDetector(max_gap_s=30)
    feed_all(det, speeds([(0, 120), (31, 120)]))
    (ev,) = det.flush()
    assert ev.payload["duration_s"] == 0


def test_state_round_trip() -> None:
    det = SpeedingDetector()
    feed_all(det, speeds([(0, 100), (1, 113)]))
    again = SpeedingDetector()
    again.load_state(det.to_state())
    (ev,) = feed_all(again, speeds([(2, 113), (3, 100)]))
    assert ev.date_ms == ms(1)
    assert ev.payload["duration_s"] == pytest.approx((113 - 112.65408) / 13 + 1 + (113 - 112.65408) / 13, abs=1e-3)
