"""Properties over random drives: refractory, bounds and re-arm rules always hold; recordings round-trip."""

from __future__ import annotations

import io
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.detectors import HarshDetector, SpeedingDetector
from gateway.detectors.base import KMH_PER_MPH
from gateway.detectors.plausibility import MAX_BRAKE_G
from gateway.model import LinkState, Sample
from gateway.replay import read_csv, write_csv
from tests.detection.helpers import T0, feed_all

# irregular speed traces: (gap ms, km/h) steps
traces = st.lists(st.tuples(st.integers(50, 3000), st.integers(0, 180)), min_size=2, max_size=120)


def to_samples(trace: list[tuple[int, int]]) -> list[Sample]:
    t = T0
    out = []
    for gap, v in trace:
        t += gap
        out.append(Sample(t, "speed", v, "km/h"))
    return out


@settings(max_examples=150, deadline=None)
@given(traces)
def test_hard_brakes_respect_refractory_bounds_and_are_justified(trace: list[tuple[int, int]]) -> None:
    samples = to_samples(trace)
    det = HarshDetector()
    events = feed_all(det, samples) + det.flush()
    brakes = [e for e in events if e.type == "HARD_BRAKE"]
    dates = [e.date_ms for e in brakes]
    assert all(b - a >= 5000 for a, b in itertools.pairwise(dates))
    by_ts = {s.ts_ms: s.value for s in samples}
    for ev in brakes:
        p = ev.payload
        # the peak lies between the threshold and what tyres can do; the episode went down
        assert 11 / 3.6 / 9.80665 < p["g_force"] <= MAX_BRAKE_G + 1e-9
        assert p["speed_to_kph"] < p["speed_from_kph"]
        assert p["start_time"] < ev.date_ms <= p["peak_time"] <= p["end_time"]
        assert by_ts[p["start_time"]] == p["speed_from_kph"] and by_ts[p["end_time"]] == p["speed_to_kph"]
    for ev in events:
        assert ev.type in ("HARD_BRAKE", "HARD_ACCELERATION", "DATA_QUALITY")


@settings(max_examples=150, deadline=None)
@given(traces)
def test_speeding_fires_once_per_crossing(trace: list[tuple[int, int]]) -> None:
    samples = to_samples(trace)
    det = SpeedingDetector()
    events = feed_all(det, samples) + det.flush()
    for mph in (70.0, 75.0, 80.0):
        starts = sorted(e.date_ms for e in events if e.payload["threshold_mph"] == mph)
        crossings = 0
        armed = True
        for s in samples:
            if armed and s.value > mph * KMH_PER_MPH:
                crossings += 1
                armed = False
            elif s.value <= (mph - 5) * KMH_PER_MPH:
                armed = True
        assert len(starts) == crossings
        for a, b in itertools.pairwise(starts):
            assert any(a < s.ts_ms < b and s.value <= (mph - 5) * KMH_PER_MPH for s in samples)
    for e in events:
        assert e.payload["velocity_kph"] > e.payload["threshold_mph"] * KMH_PER_MPH
        assert e.payload["duration_s"] >= 0


values = st.one_of(
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.booleans(),
)
names = st.sampled_from(["speed", "engine_rpm", "maf", "mil", "fuel_level", "dtcs", "custom_value"])


@st.composite
def recordings(draw: st.DrawFn) -> list[Sample | LinkState]:
    n = draw(st.integers(1, 40))
    t = T0
    items: list[Sample | LinkState] = []
    for _ in range(n):
        t += draw(st.integers(0, 2000))
        if draw(st.integers(0, 9)) == 0:
            items.append(LinkState(t, draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from(["", "6"]))))
            continue
        name = draw(names)
        if name == "mil":
            value: object = draw(st.booleans())
        elif name == "dtcs":
            codes = st.sampled_from(["P0301", "P0420", "U0100", "C1234"])
            value = tuple(draw(st.lists(codes, unique=True, max_size=3)))
        else:
            value = draw(values.filter(lambda v: not isinstance(v, bool)))
        items.append(Sample(t, name, value))  # type: ignore[arg-type]
    return items


@settings(max_examples=150, deadline=None)
@given(recordings())
def test_csv_recording_round_trips(items: list[Sample | LinkState]) -> None:
    buf = io.StringIO()
    write_csv(items, buf)
    rec = read_csv(io.StringIO(buf.getvalue()))
    assert rec.skipped == []

    def key(i: Sample | LinkState) -> tuple[object, ...]:
        if isinstance(i, LinkState):
            return ("link", i.ts_ms, i.adapter_connected, i.ecu_responding, i.protocol)
        return (i.ts_ms, i.name, i.value)

    assert [key(i) for i in rec.items] == [key(i) for i in items]
