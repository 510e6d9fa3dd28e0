"""Live detection against firmware_sim, then replay of the recorded drive.

The simulator runs a scripted drive in real time on a pseudo-terminal; the gateway's Poller reads it
like a real adapter and every sample and link state it publishes goes to a DetectionEngine and into a
recording. Checks: the events match the simulator's ground truth, the trip distance is within 1% of
the simulator's, and replaying the recorded CSV gives the same events and trips as the live run.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from firmware_sim import simulator
from gateway import poller as poller_mod
from gateway.config import AdapterConfig, DetectionConfig, PollingConfig, PowerConfig
from gateway.detection import DetectionEngine
from gateway.model import Event, LinkState, Sample, Samples, TripRecord
from gateway.replay import read_csv, replay, write_csv
from tests.detection.helpers import counter_ids

DRIVE = Path(__file__).parent / "drives" / "live_short.toml"
CFG = DetectionConfig(ignition_off_confirm_s=2.0)
TOLERANCE_MS = 1500  # poll period + answer latency + the 0.8 s rate window


async def drive_live(tmp_path: Path) -> tuple[list[Sample | LinkState], list[Event | TripRecord], Any]:
    """Run the drive; returns the recorded items, the live outputs and the simulator's truth."""
    # fast: no serial or ECU delays; the car still moves with the wall clock (in whole 0.1 s steps),
    # so the gateway's timestamps and the simulator's truth share one time base
    sim = simulator.Simulator(DRIVE, seed=3, fast=True)
    items: list[Sample | LinkState] = []
    outputs: list[Event | TripRecord] = []
    engine = DetectionEngine(CFG, device_id="live", new_id=counter_ids())
    finished = asyncio.Event()
    reading_dtcs: list[asyncio.Task[None]] = []
    poller: Any = None

    def take(item: Sample | Samples | LinkState) -> None:
        # as the daemon does: a poll round in one call (the replay below feeds its samples one by one)
        items.extend(item if isinstance(item, Samples) else (item,))
        out = engine.feed_many([item])
        outputs.extend(out)
        after(out)

    plan = ["driving"]

    def after(out: list[Event | TripRecord]) -> None:
        if any(isinstance(o, TripRecord) for o in out):
            finished.set()
        wanted = "driving" if engine.ignition_on else "parked"
        if wanted != plan[0]:  # as the daemon does: switch on changes only
            plan[0] = wanted
            poller.set_plan(wanted)
        if engine.dtc_read_wanted and not any(not t.done() for t in reading_dtcs):
            reading_dtcs.append(asyncio.create_task(read_dtcs()))
        if any(isinstance(o, Event) and o.type == "MIL_ON" for o in out):
            reading_dtcs.append(asyncio.create_task(clear_dtcs()))

    async def read_dtcs() -> None:
        # what the daemon does when a mil:on waits for its codes
        dtcs = await poller.read_dtcs()
        take(Sample(int(time.time() * 1000), "dtcs", tuple(dtcs["stored"])))

    async def clear_dtcs() -> None:
        # The marker goes first: the poller may read the lamp off before this task runs again.
        take(Sample(int(time.time() * 1000), "dtcs_cleared", True))
        await poller.clear_dtcs()

    async def publish(item: Any) -> None:
        take(item)

    try:
        with sim.serve_pty() as port:
            from gateway.daemon import session_factory

            adapter = AdapterConfig(port=port, timeout_s=2.0, reconnect_max_s=1.0)
            polling = PollingConfig(
                pids=["0C", "0D", "01", "10"],
                rates={"0C": 5.0, "0D": 5.0, "01": 2.0, "10": 2.0},
            )
            poller = poller_mod.Poller(
                adapter,
                polling,
                sessions=session_factory(adapter, polling, tmp_path),
                publish=publish,
                allow_clear_dtc=True,
                power_cfg=PowerConfig(voltage_interval_s=0.5),
            )
            task = asyncio.create_task(poller.run())
            try:
                deadline = time.monotonic() + 90
                while not finished.is_set():
                    assert time.monotonic() < deadline, (
                        f"the live trip never finished: outputs {[getattr(o, 'type', 'TRIP') for o in outputs]}, "
                        f"last items {items[-5:]}, truth {sim.truth.events()}"
                    )
                    assert not task.done(), f"the poller stopped: {task.exception() if task.done() else ''}"
                    try:
                        await asyncio.wait_for(finished.wait(), 0.5)
                    except TimeoutError:
                        out = engine.tick(int(time.time() * 1000))
                        outputs.extend(out)
                        after(out)
            finally:
                for t in [task, *reading_dtcs]:
                    t.cancel()
                await asyncio.wait([task, *reading_dtcs], timeout=10)
        return items, outputs, sim.truth
    finally:
        sim.stop()


def normalised(out: list[Event | TripRecord]) -> list[dict[str, Any]]:
    """Outputs as dicts with ids renamed by first appearance (the two runs make their own ids)."""
    names: dict[str, str] = {}
    text = json.dumps([x.to_dict() for x in out])
    for x in out:
        for ident in [x.id, *([x.trip_id] if isinstance(x, Event) and x.trip_id else [])]:
            names.setdefault(ident, f"ID{len(names)}")
    for ident, name in names.items():
        text = text.replace(ident, name)
    loaded: list[dict[str, Any]] = json.loads(text)
    return loaded


@pytest.mark.timeout(150)
async def test_live_drive_matches_truth_and_replay(tmp_path: Path) -> None:
    items, live, truth = await drive_live(tmp_path)
    events = [o for o in live if isinstance(o, Event)]
    trips = [o for o in live if isinstance(o, TripRecord)]

    # --- against the simulator's ground truth
    want = {r["event"]: r for r in truth.events()}
    got = {e.type: e for e in events}
    driving = [e.type for e in events if e.type in ("HARD_BRAKE", "HARD_ACCELERATION", "SPEEDING", "MIL_ON")]
    assert sorted(driving) == ["HARD_ACCELERATION", "HARD_BRAKE", "MIL_ON", "SPEEDING"], [e.type for e in events]
    pairs = [("ignition_on", "IGNITION_ON"), ("hard_accel", "HARD_ACCELERATION"), ("speeding", "SPEEDING"),
             ("hard_brake", "HARD_BRAKE"), ("ignition_off", "IGNITION_OFF")]
    for truth_name, ours in pairs:
        lag = got[ours].date_ms - want[truth_name]["t"]
        assert -500 <= lag <= TOLERANCE_MS, f"{ours}: {lag} ms after the truth"
    assert got["SPEEDING"].payload["threshold_mph"] == 70.0
    assert got["SPEEDING"].payload["speed_mph"] == pytest.approx(117 / 1.609344, abs=0.7)
    mil_lag = got["MIL_ON"].date_ms - want["mil_on"]["t"]
    assert 0 <= mil_lag <= 1000 + TOLERANCE_MS, f"MIL_ON {mil_lag} ms after the truth"
    assert [d["code"] for d in got["MIL_ON"].payload["dtcs"]] == want["mil_on"]["dtcs"]
    off_lag = got["MIL_OFF"].date_ms - want["mil_off"]["t"]
    assert 0 <= off_lag <= 1000 + TOLERANCE_MS, f"MIL_OFF {off_lag} ms after the truth"
    assert got["MIL_OFF"].payload == {"dtcs": [{"code": "P0301", "start": got["MIL_ON"].payload["dtcs"][0]["start"]}],
                                      "user_cleared": True}
    (trip,) = trips
    truth_m = want["ignition_off"]["distance_m"]
    assert trip.summary["distance"] == pytest.approx(truth_m, rel=0.01)
    assert trip.summary["trip_event_counts"] == {"hard_turns": 0, "hard_accelerations": 1, "hard_brakes": 1}
    assert all(e.trip_id == trip.id for e in events)

    # --- record, replay, compare
    buf = io.StringIO()
    write_csv(items, buf)
    (tmp_path / "live.csv").write_text(buf.getvalue())
    rec = read_csv(io.StringIO(buf.getvalue()), "live.csv")
    assert rec.skipped == []
    r_trips, r_events = replay(rec.items, CFG, device_id="live", new_id=counter_ids())
    assert normalised([*r_events, *r_trips]) == normalised([*events, *trips])
