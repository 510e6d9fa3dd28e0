"""Issue 20: a SIGKILL just after a trip finishes must not lose the trip.

The real daemon (``obd-gateway run --sim --drive short``, the simulator time-scaled) with a 5 s group commit
and MQTT to a mosquitto the test starts. The test watches the diagnostic socket's stream and SIGKILLs the
daemon (with its simulator) as soon as a trip line appears, i.e. long before the store's next commit; the
trip, its TRIP_FINISHED and every other event the daemon published must still reach the broker, with their
original ids, once a daemon runs again.

``OBD_TEST_KILLS`` sets the randomised variant's kill count (default 3; it runs in the native parser pass
only unless the count is given), ``OBD_TEST_SEED`` its seed (printed).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.broker import Broker
from tests.store.helpers import MqttCollector
from tests.store.killcheck import DiagStream, wait_until
from tests.store.test_daemon_kill import EXE, kill_group, log_tail, start_daemon

DEVICE = "dev-t"
KILLS = os.environ.get("OBD_TEST_KILLS")
# 5x simulated time: the ~70 s short drive takes ~14 s and still covers well over the 10 m a trip needs
SIM_ARGS = ("--sim", "--drive", "short", "--sim-args", "--time-scale 5")


def write_config(tmp: Path, broker: Broker, adapter_port: str = "sim") -> Path:
    """MQTT only, a 5 s group commit (the reproduction's), a 3 s ignition-off confirmation (shorter tests)."""
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    cfg = tmp / ("config-sim.toml" if adapter_port == "sim" else "config-drain.toml")
    cfg.write_text(f"""
[device]
id = "{DEVICE}"
car_id = "car-t"
state_dir = "{state}"

[adapter]
port = "{adapter_port}"
protocol = "6"
reconnect_max_s = 1.0

[detection]
ignition_off_confirm_s = 3
# the simulator runs 5x faster than the wall clock that dates the samples, so every deceleration is 5x
# harder: without this its hard brakes are implausible for a road car (DATA_QUALITY), more often the
# more closely speed is sampled
max_brake_g = 6.0
max_accel_g = 4.0

[store]
path = "{state}/buffer.sqlite"
commit_interval_s = 5

[mqtt]
enabled = true
host = "{broker.host}"
port = {broker.port}
tls = false

[diag]
socket = "{tmp}/diag.sock"

[log]
level = "INFO"
""")
    return cfg


def committed_ids(db_path: Path) -> set[str]:
    """Event and trip ids committed to the buffer right now."""
    if not db_path.exists():
        return set()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
    try:
        return {r[0] for r in db.execute("SELECT id FROM outbox WHERE kind != 0")}
    except sqlite3.OperationalError:  # killed before the schema was created
        return set()
    finally:
        db.close()


def unconfirmed_ids(state_file: Path) -> set[str]:
    """Ids the detection state keeps as published but not yet committed."""
    state = json.loads(state_file.read_text())
    return {next(iter(o.values()))["id"] for o in state.get("unconfirmed", [])}


def broker_records(col: MqttCollector) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(trips, events) received, duplicates included."""
    trips, events = [], []
    for topic, payload, _retain in col.snapshot():
        if topic == f"obd/{DEVICE}/trips":
            trips.append(json.loads(payload))
        elif topic.startswith(f"obd/{DEVICE}/events/"):
            events.append(json.loads(payload))
    return trips, events


def drain(tmp: Path, broker: Broker, col: MqttCollector, want_ids: set[str]) -> None:
    """A daemon without an adapter re-publishes what the killed one left unconfirmed; stop it once delivered."""
    proc = start_daemon(write_config(tmp, broker, adapter_port=str(tmp / "no-adapter")))
    try:
        def arrived() -> bool:
            trips, events = broker_records(col)
            return want_ids <= {r["id"] for r in trips + events}

        assert wait_until(arrived, 60), f"records missing at the broker; daemon log:\n{log_tail(tmp)}"
        # the next commit of the store (5 s) confirms them to the engine, which rewrites its state
        assert wait_until(lambda: not unconfirmed_ids(tmp / "state" / "trip-state.json"), 30), (
            "the engine kept outputs the store had committed")
    finally:
        kill_group(proc, signal.SIGTERM)
    assert proc.returncode == 0, log_tail(tmp)


def run_until_trip(tmp: Path, cfg: Path, known: set[str], delay_s: float,
                   events_seen: set[str]) -> str:
    """Start daemon + simulator, wait for a new trip on the diagnostic stream, SIGKILL both ``delay_s`` later."""
    proc = start_daemon(cfg, *SIM_ARGS)
    stream: DiagStream | None = None
    trip_id: str | None = None
    try:
        stream = DiagStream(tmp / "diag.sock")
        trip_id = stream.wait_trip(known, 120)
        if trip_id is not None and delay_s:
            time.sleep(delay_s)
    finally:
        kill_group(proc)  # a power cut: no save, no flush
        if stream is not None:
            stream.close()
            events_seen |= stream.event_ids()
    assert trip_id is not None, f"no trip within 120 s; daemon log:\n{log_tail(tmp)}"
    return trip_id


def need_daemon() -> None:
    if not EXE.exists():
        pytest.skip("obd-gateway is not installed in this environment")


@pytest.mark.slow
def test_sigkill_right_after_a_trip_loses_nothing(mosquitto: Broker, tmp_path: Path) -> None:
    need_daemon()
    col = MqttCollector(mosquitto.host, mosquitto.port, "obd/#")
    events_seen: set[str] = set()
    try:
        trip_id = run_until_trip(tmp_path, write_config(tmp_path, mosquitto), set(), 0.0, events_seen)
        state = json.loads((tmp_path / "state" / "trip-state.json").read_text())
        assert state["trip"] is None  # the state has moved on: nothing would emit this trip again...
        if trip_id not in committed_ids(tmp_path / "state" / "buffer.sqlite"):
            # ...so the kill landed before the store's commit (nearly always, with 5 s between commits)
            # and the state must hold the trip and its closing events for the restart to publish again
            held = unconfirmed_ids(tmp_path / "state" / "trip-state.json")
            assert trip_id in held
            assert len(held) >= 4  # at least IGNITION_OFF, PARKED, TRIP_FINISHED and the trip
        drain(tmp_path, mosquitto, col, {trip_id} | events_seen)
        trips, events = broker_records(col)
    finally:
        col.close()
    assert {t["id"] for t in trips} == {trip_id}
    finished = {e["id"]: e for e in events if e["type"] == "TRIP_FINISHED"}
    assert len(finished) == 1
    (fin,) = finished.values()
    assert fin["trip"] == trip_id and fin["payload"]["trip"]["id"] == trip_id
    assert fin["id"] in events_seen  # the original id, the one the killed daemon published
    types = {e["type"] for e in events if e["trip"] == trip_id}
    assert {"IGNITION_ON", "IGNITION_OFF", "TRIP_FINISHED", "HARD_BRAKE", "SPEEDING", "MIL_ON"} <= types
    assert events_seen <= {e["id"] for e in events}  # every event the daemon published arrived
    (trip,) = {t["id"]: t for t in trips}.values()
    assert trip["distance"] > 10 and trip["hard_brakes"] >= 1


@pytest.mark.slow
@pytest.mark.timeout(120 + 60 * int(KILLS or 3))  # about 20 s a kill on an idle 2-core machine
def test_random_kills_after_trips_lose_no_trip(mosquitto: Broker, tmp_path: Path) -> None:
    need_daemon()
    if KILLS is None and os.environ.get("OBD_GATEWAY_PURE", "") not in ("", "0"):
        pytest.skip("slow: runs in the native parser pass (set OBD_TEST_KILLS to run it here)")
    kills = int(KILLS or 3)
    seed = int(os.environ.get("OBD_TEST_SEED") or random.randrange(2**32))
    print(f"OBD_TEST_SEED={seed} OBD_TEST_KILLS={kills}", file=sys.stderr)
    rng = random.Random(seed)
    cfg = write_config(tmp_path, mosquitto)
    col = MqttCollector(mosquitto.host, mosquitto.port, "obd/#")
    trip_ids: list[str] = []
    events_seen: set[str] = set()
    gaps = 0
    try:
        for _ in range(kills):
            # the next run publishes what this one left unconfirmed, then drives a new trip
            delay = rng.uniform(0.0, 1.0)
            trip_ids.append(run_until_trip(tmp_path, cfg, set(trip_ids), delay, events_seen))
            gaps += trip_ids[-1] not in committed_ids(tmp_path / "state" / "buffer.sqlite")
        drain(tmp_path, mosquitto, col, set(trip_ids) | events_seen)
        trips, events = broker_records(col)
    finally:
        col.close()
    log = (tmp_path / "daemon.log").read_text(errors="replace")
    starts = [line for line in log.splitlines() if "running (device" in line]
    builds = sorted({line.rsplit("parser ", 1)[1].rstrip(")") for line in starts})
    print(f"seed {seed}: {kills} kills, {gaps} inside the commit gap; {len(trips)} trip messages "
          f"for {len(set(trip_ids))} trips; parser build {builds}", file=sys.stderr)
    assert len(set(trip_ids)) == kills
    assert {t["id"] for t in trips} == set(trip_ids), f"seed {seed}"
    finished = {e["id"]: e["trip"] for e in events if e["type"] == "TRIP_FINISHED"}
    assert sorted(finished.values()) == sorted(trip_ids), f"seed {seed}"  # one TRIP_FINISHED per trip
    assert events_seen <= {e["id"] for e in events}, f"seed {seed}"
    assert gaps > 0  # the kills did land before the store's commit: the case of the issue was exercised
