"""``DetectionEngine.feed_many``: poll rounds in one call give exactly what feeding their samples one by one gives.

The daemon feeds the engine whole poll rounds (:class:`~gateway.model.Samples`) and whatever else was
queued with them, and the engine skips the detectors for names none of them reads. Every recorded drive
(``samples/`` and ``tests/detection/drives/``) is fed both ways, plain and enriched with what the skipping
must get right: names no detector reads (numeric and not), rounds holding only those at their own dates
(they move the ignition-off and ``mil:on`` time-outs on), link losses and GPS fixes. Every event and trip
(with deterministic ids, so ids are compared too) and the saved state must be the same.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import DetectionConfig, LocationConfig
from gateway.detection import DetectionEngine
from gateway.model import Event, LinkState, Position, Sample, Samples, TripRecord
from gateway.replay import Item, read_file
from tests.detection.helpers import T0, counter_ids

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = sorted((ROOT / "samples").glob("*.csv")) + sorted((Path(__file__).parent / "drives").glob("*.csv"))
# a short confirmation and a short MIL wait: the time-outs fire inside the recordings, from any sample
CFG = DetectionConfig(ignition_off_confirm_s=2.0, mil_dtc_wait_s=1.0, state_save_interval_s=1.0)
LOC = LocationConfig(update_interval_s=2.0)


def enriched(items: list[Item]) -> list[Item]:
    """``items`` with what the skipping must get right added between and inside the rounds."""
    out: list[Item] = []
    for i, item in enumerate(items):
        out.append(item)
        ts = item.ts_ms
        out.append(Sample(ts, "engine_coolant_temperature", 90.0 + i % 7, "°C", 0x05, 0x7E8))
        out.append(Sample(ts, "vin", "WVWZZZ1JZXW000001"))  # not a number: no trip time either
        if i % 3 == 0:
            # a round of unread names only, at its own date: time passes with nothing a detector reads
            out.append(Sample(ts + 250, "throttle_position", float(i % 40), "%", 0x11, 0x7E8))
            out.append(Sample(ts + 250, "intake_air_temperature", 21, "°C", 0x0F, 0x7E8))
        if i % 10 == 5:
            out.append(Position(ts + 300, 48.85 + i * 1e-4, 2.35 + i * 1e-4, 3, hdop=0.9, speed_kmh=40.0))
        if i % 97 == 50:
            out.append(LinkState(ts + 400, True, False, "6"))  # the ECU falls silent …
            out.append(Sample(ts + 3500, "engine_load", 20.0, "%", 0x04, 0x7E8))  # … long enough to end a trip
            out.append(LinkState(ts + 3600, True, True, "6"))
    return out


def as_rounds(items: list[Item]) -> list[Item | Samples]:
    """Consecutive samples of one date as one poll round; link states and fixes stay single."""
    out: list[Item | Samples] = []
    run: list[Sample] = []
    for item in items:
        if run and (not isinstance(item, Sample) or item.ts_ms != run[0].ts_ms):
            out.append(Samples(run))
            run = []
        if isinstance(item, Sample):
            run.append(item)
        else:
            out.append(item)
    if run:
        out.append(Samples(run))
    return out


class Twins:
    """Two engines on the same configuration: one fed call by call with ``feed_many``, one item by item."""

    def __init__(self, state_dir: Path) -> None:
        self.dirs = (state_dir / "many", state_dir / "one")
        self.many, self.one = (
            DetectionEngine(CFG, device_id="dev", car_id="car", state_path=d / "trip-state.json",
                            new_id=counter_ids(), location=LOC)
            for d in self.dirs
        )
        self.outputs: list[dict[str, object]] = []

    def call(self, items: list[Item | Samples]) -> list[dict[str, object]]:
        """One ``feed_many`` call; it must return what feeding every item and sample one by one returns."""
        many = [o.to_dict() for o in self.many.feed_many(items)]
        one: list[Event | TripRecord] = []
        for item in items:
            for x in item if isinstance(item, Samples) else (item,):
                one.extend(self.one.feed(x))
        assert many == [o.to_dict() for o in one], items
        self.outputs.extend(many)
        return many

    def states(self) -> tuple[object, object]:
        """The state files of both, written now (what a restart would continue from)."""
        for engine in (self.many, self.one):
            engine.save_state()
        many, one = (json.loads((d / "trip-state.json").read_text()) for d in self.dirs)
        return many, one


def replay_both_ways(items: list[Item], state_dir: Path) -> Twins:
    """``items`` as poll rounds, taken as the detection loop takes them: whatever was queued, 1 to 8 items."""
    twins = Twins(state_dir)
    queued = as_rounds(items)
    rnd = random.Random(7)
    start = 0
    while start < len(queued):
        n = rnd.randint(1, 8)
        twins.call(queued[start : start + n])
        start += n
        if rnd.random() < 0.05:
            many, one = twins.states()
            assert many == one
    end = items[-1].ts_ms + 1000
    last = [[o.to_dict() for o in engine.end_of_input(end)] for engine in (twins.many, twins.one)]
    assert last[0] == last[1]
    twins.outputs.extend(last[0])
    return twins


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("extra", [False, True], ids=["plain", "enriched"])
def test_rounds_give_the_same_events_trips_and_state(path: Path, extra: bool, tmp_path: Path) -> None:
    rec = read_file(path)
    assert rec.items and rec.skipped == []
    items = enriched(rec.items) if extra else rec.items
    twins = replay_both_ways(items, tmp_path)
    assert any(o.get("type") == "IGNITION_ON" for o in twins.outputs)  # a drive happened
    many, one = twins.states()
    assert many == one


def test_the_recordings_cover_every_kind_of_output(tmp_path: Path) -> None:
    """The comparison above means something only if the drives produce the events the detectors make."""
    seen: set[str] = set()
    for i, path in enumerate(RECORDINGS):
        out = replay_both_ways(enriched(read_file(path).items), tmp_path / str(i)).outputs
        seen |= {str(o["type"]) if "type" in o else "TRIP" for o in out}
    assert {"IGNITION_ON", "IGNITION_OFF", "HARD_BRAKE", "SPEEDING", "MIL_ON", "MOVING", "STOPPED", "PARKED",
            "TRIP_FINISHED", "LOCATION_UPDATED", "TRIP"} <= seen, seen


def unread(ts: int) -> Samples:
    """A poll round of names no detector reads."""
    return Samples([Sample(ts, "engine_coolant_temperature", 90.0, "°C", 0x05, 0x7E8),
                    Sample(ts, "throttle_position", 15.0, "%", 0x11, 0x7E8)])


def drive_start(twins: Twins) -> None:
    twins.call([LinkState(T0, True, True, "6"),
                Samples([Sample(T0, "engine_rpm", 2000.0), Sample(T0, "speed", 30.0), Sample(T0, "mil", False)])])


def test_unread_names_still_move_the_ignition_off_on(tmp_path: Path) -> None:
    twins = Twins(tmp_path)
    drive_start(twins)
    twins.call([unread(T0 + 1000)])
    # the ECU falls silent at 3 s: the off is dated at the last running sample (0 s), confirmed 2 s later:
    # by the unread round after the link state at the same date, in the same call
    out = twins.call([unread(T0 + 3000), LinkState(T0 + 3000, True, False, "6"), unread(T0 + 3000)])
    assert [o["type"] for o in out] == ["IGNITION_OFF", "PARKED"]
    assert out[0]["date"] == T0


def speed_only(ts: int) -> Samples:
    """A poll round of speed alone: a name the MIL detector does not read."""
    return Samples([Sample(ts, "speed", 30.0, "km/h", 0x0D, 0x7E8)])


@pytest.mark.parametrize("later", [unread, speed_only], ids=["unread", "speed"])
def test_any_sample_sends_a_mil_on_that_waited_for_codes(later: Callable[[int], Samples], tmp_path: Path) -> None:
    twins = Twins(tmp_path)
    drive_start(twins)
    twins.call([Samples([Sample(T0 + 500, "mil", True), Sample(T0 + 500, "speed", 30.0)])])
    assert twins.call([later(T0 + 1000)]) == []
    out = twins.call([later(T0 + 1500)])  # mil_dtc_wait_s (1 s) without a code read
    assert [o["type"] for o in out] == ["MIL_ON"] and out[0]["date"] == T0 + 500


def test_unread_numbers_move_the_trips_last_moment(tmp_path: Path) -> None:
    twins = Twins(tmp_path)
    drive_start(twins)
    twins.call([unread(T0 + 1000), Samples([Sample(T0 + 1200, "vin", "WVWZZZ1JZXW000001")])])
    many, one = twins.states()
    assert many == one
    assert many["trip"]["last_ms"] == T0 + 1000  # type: ignore[index]
