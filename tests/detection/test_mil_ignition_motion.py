"""MIL on/off, ignition inference (confirmation, cranking, stop-start), STOPPED/MOVING."""

from __future__ import annotations

import pytest

from gateway.detectors import IgnitionDetector, MilDetector, MotionDetector, parse_dtcs
from tests.detection.helpers import feed_all, link, ms, s


# ----------------------------------------------------------------------------------------------- MIL
def test_mil_on_waits_for_codes_and_dates_at_lamp() -> None:
    det = MilDetector()
    assert det.feed(s(0, "mil", True)) == []
    (ev,) = det.feed(s(3, "dtcs", ("P0301",)))
    assert (ev.type, ev.automatic_type, ev.date_ms) == ("MIL_ON", "mil:on", ms(0))
    assert ev.payload["dtcs"] == [{"code": "P0301", "start": ms(3)}]
    assert ev.payload["new_dtcs"] == ["P0301"]


@pytest.mark.parametrize(("tick_s", "fires"), [(9.999, False), (10.0, True)])
def test_mil_on_without_codes_after_wait(tick_s: float, fires: bool) -> None:
    det = MilDetector(dtc_wait_s=10)
    det.feed(s(0, "mil", True))
    out = det.tick(ms(tick_s))
    assert [e.type for e in out] == (["MIL_ON"] if fires else [])
    if fires:
        assert out[0].date_ms == ms(0) and out[0].payload["dtcs"] == []


def test_mil_codes_known_first_fire_immediately() -> None:
    det = MilDetector()
    det.feed(s(0, "dtcs", "P0301;P0420"))
    (ev,) = det.feed(s(1, "mil", True))
    assert [d["code"] for d in ev.payload["dtcs"]] == ["P0301", "P0420"]


def test_another_mil_on_for_new_codes_only() -> None:
    det = MilDetector()
    det.feed(s(0, "dtcs", ("P0301",)))
    det.feed(s(1, "mil", True))
    assert det.feed(s(2, "dtcs", ("P0301",))) == []  # nothing new
    (ev,) = det.feed(s(3, "dtcs", ("P0301", "P0420")))
    assert ev.type == "MIL_ON" and ev.payload["new_dtcs"] == ["P0420"]
    assert [d["code"] for d in ev.payload["dtcs"]] == ["P0301", "P0420"]


@pytest.mark.parametrize("cleared", [False, True])
def test_mil_off_user_cleared(cleared: bool) -> None:
    det = MilDetector()
    det.feed(s(0, "dtcs", ("P0301",)))
    det.feed(s(1, "mil", True))
    if cleared:
        det.note_user_cleared_dtcs()
    (ev,) = det.feed(s(5, "mil", False))
    assert (ev.type, ev.automatic_type, ev.date_ms) == ("MIL_OFF", "mil:off", ms(5))
    assert ev.payload == {"dtcs": [{"code": "P0301", "start": ms(0)}], "user_cleared": cleared}
    # the flag is used once
    det.feed(s(6, "mil", True))
    det.tick(ms(20))
    assert det.feed(s(21, "mil", False))[0].payload["user_cleared"] is False


def test_cleared_marker_sample_sets_user_cleared() -> None:
    det = MilDetector()
    feed_all(det, [s(0, "dtcs", ("P0301",)), s(1, "mil", True), s(2, "dtcs_cleared", True)])
    (ev,) = det.feed(s(3, "mil", False))
    assert ev.payload["user_cleared"] is True


def test_mil_off_at_start_and_repeats_are_silent() -> None:
    det = MilDetector()
    assert feed_all(det, [s(0, "mil", False), s(1, "mil", False)]) == []
    det.feed(s(2, "dtcs", ("P0301",)))
    assert len(feed_all(det, [s(3, "mil", True), s(4, "mil", True)])) == 1


@pytest.mark.parametrize(
    ("value", "codes"),
    [(("P0301",), ("P0301",)), ("P0301 p0420", ("P0301", "P0420")), ("none", ()), ("[]", ()), (3, None)],
)
def test_parse_dtcs(value: object, codes: tuple[str, ...] | None) -> None:
    assert parse_dtcs(value) == codes


# ---------------------------------------------------------------------------------------- ignition
ON_CASES = [
    ("rpm 0 is not running", [s(0, "engine_rpm", 0)], []),
    ("rpm above 0", [s(0, "engine_rpm", 0), s(1, "engine_rpm", 220)], [1]),
    ("13.1 V is not charging", [s(0, "battery_voltage", 13.1)], []),
    ("13.2 V is charging", [s(0, "battery_voltage", 13.19), s(1, "battery_voltage", 13.2)], [1]),
    ("voltage ignored while rpm 0 is known", [s(0, "engine_rpm", 0), s(1, "battery_voltage", 14.0)], []),
    ("moving", [s(0, "speed", 5)], [0]),
    ("ECU waking up", [link(0, ok=False), link(2, ok=True)], [2]),
    ("ECU answering at start-up is not an edge", [link(0, ok=True)], []),
]


@pytest.mark.parametrize(("items", "on_at"), [c[1:] for c in ON_CASES], ids=[c[0] for c in ON_CASES])
def test_ignition_on_table(items: list, on_at: list[float]) -> None:
    det = IgnitionDetector()
    out = feed_all(det, items)
    assert [(e.type, e.date_ms) for e in out] == [("IGNITION_ON", ms(t)) for t in on_at]


def running_then_stop() -> IgnitionDetector:
    det = IgnitionDetector(confirm_s=60)
    # last sign of running at 10 s; the confirmation counts from there
    feed_all(det, [s(0, "engine_rpm", 800), s(10, "engine_rpm", 760), s(10.2, "engine_rpm", 0)])
    return det


@pytest.mark.parametrize(("tick_s", "off"), [(69.999, False), (70.0, True)])
def test_ignition_off_after_confirmation(tick_s: float, off: bool) -> None:
    det = running_then_stop()
    out = det.tick(ms(tick_s))
    expected = [("IGNITION_OFF", "ignition:off", ms(10))] if off else []
    assert [(e.type, e.automatic_type, e.date_ms) for e in out] == expected
    assert det.on is not off


def test_stop_start_at_a_red_light_does_not_end_ignition() -> None:
    det = running_then_stop()
    assert det.feed(s(59, "engine_rpm", 780)) == []
    assert det.tick(ms(200)) == []
    assert det.on


def test_cranking_dip_does_not_end_ignition() -> None:
    det = IgnitionDetector(confirm_s=60)
    items = [link(0, ok=False), link(1, ok=True), s(1.5, "battery_voltage", 10.3), s(1.6, "engine_rpm", 220),
             s(3, "battery_voltage", 14.1), s(3, "engine_rpm", 760)]
    out = feed_all(det, items)
    assert [e.type for e in out] == ["IGNITION_ON"] and out[0].date_ms == ms(1)
    assert det.off_since is None and det.tick(ms(1000)) == []


def test_silent_ecu_and_low_voltage_end_ignition() -> None:
    det = IgnitionDetector(confirm_s=60)
    feed_all(det, [s(0, "engine_rpm", 800), s(0, "battery_voltage", 14.1), s(5, "battery_voltage", 12.4)])
    assert det.off_since is None  # rpm 800 still known
    det.feed(link(6, ok=False))  # silence makes rpm unknown; voltage says off
    assert det.off_since == ms(0)  # the last item that showed the engine running: rpm 800 at 0 s
    assert det.feed(link(59.999, ok=False)) == []
    assert [e.date_ms for e in det.feed(link(60, ok=False))] == [ms(0)]


def test_only_items_showing_running_move_the_stop_date() -> None:
    # the poller reads ATRV right after the key-off, before it declares the ECU silent: the old
    # rpm is still "known" then, but that reading must not count as a sign of running
    det = IgnitionDetector(confirm_s=60)
    feed_all(det, [s(0, "engine_rpm", 760), s(2, "battery_voltage", 12.3), link(2, ok=False)])
    assert det.off_since == ms(0)


def test_silent_ecu_with_fresh_charging_voltage_keeps_ignition() -> None:
    det = IgnitionDetector(confirm_s=60)
    feed_all(det, [s(0, "engine_rpm", 800), s(0, "battery_voltage", 14.1), link(1, ok=False)])
    assert det.off_since == ms(0)  # the voltage read before the silence does not count
    det.feed(s(2, "battery_voltage", 14.1))  # a fresh reading while the ECU is silent: still running
    assert det.off_since is None and det.tick(ms(500)) == []


def test_ignition_state_round_trip_resumes_confirmation_from_last_running() -> None:
    det = IgnitionDetector(confirm_s=60)
    feed_all(det, [s(0, "engine_rpm", 800), s(30, "engine_rpm", 900)])
    again = IgnitionDetector(confirm_s=60)
    again.load_state(det.to_state())
    assert again.on and again.off_since == ms(30)
    assert again.feed(s(40, "engine_rpm", 850)) == [] and again.off_since is None  # same trip goes on
    late = IgnitionDetector(confirm_s=60)
    late.load_state(det.to_state())
    assert [e.date_ms for e in late.feed(link(3600, ok=False))] == [ms(30)]


# ------------------------------------------------------------------------------------------ motion
def test_motion_events() -> None:
    det = MotionDetector()
    pts = [(0, 0), (1, 0), (2, 3), (3, 10), (4, 0), (5, 0), (6, 1)]
    out = feed_all(det, [s(t, "speed", v) for t, v in pts])
    assert [(e.type, e.date_ms) for e in out] == [("MOVING", ms(2)), ("STOPPED", ms(4)), ("MOVING", ms(6))]
    assert out[0].automatic_type == "vehicle:moving"
    (parked,) = det.park(ms(7))
    assert (parked.type, parked.automatic_type) == ("PARKED", "vehicle:parked")
