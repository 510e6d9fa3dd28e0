"""The thin slice through every stage with real parts (issue 2).

The daemon runs as a subprocess against ``obd-gateway-sim`` on a pseudo-terminal (pyserial), polls
RPM, speed and coolant temperature, stores them in SQLite and publishes them to a real mosquitto;
a real paho subscriber checks the values against the simulator's ground truth; SIGTERM ends it
cleanly.
"""

from __future__ import annotations

import bisect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from tests.fixtures.broker import Broker

NAMES = ("speed", "engine_rpm", "engine_coolant_temperature")
# Resolution of the encoding plus what changes between the truth log's 1 Hz samples and our read.
TOLERANCE = {"speed": 1.5, "engine_rpm": 60.0, "engine_coolant_temperature": 1.0}


def write_config(tmp: Path, broker: Broker) -> Path:
    cfg = tmp / "gateway.toml"
    cfg.write_text(
        f"""
[device]
id = "slice-box"
state_dir = "{tmp}/state"

[polling]
pids = ["0C", "0D", "05"]

[store]
path = "{tmp}/state/buffer.sqlite"

[diag]
socket = "{tmp}/diag.sock"

[mqtt]
enabled = true
host = "{broker.host}"
port = {broker.port}
tls = false
protocol = "3.1.1"
"""
    )
    return cfg


DRIVE = """
name = "slice"
description = "idle long enough to compare RPM, then accelerate and cruise"
repeat = false

[vehicle]
vin = "1HGCM82633A004352"
odometer_km = 5000.0
fuel_level_pct = 40.0

[[phase]]
kind = "ignition_on"
crank_s = 1.0

[[phase]]
kind = "idle"
duration = 12

[[phase]]
kind = "accelerate"
to = 50
rate = 5

[[phase]]
kind = "cruise"
duration = 60
"""


class Subscriber:
    """A real MQTT client collecting every timeseries item it receives."""

    def __init__(self, broker: Broker, device: str) -> None:
        self.items: list[dict[str, Any]] = []
        self.topics: set[str] = set()
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="slice-test")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"obd/{device}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.topics.add(msg.topic)
            if msg.topic.endswith("/timeseries"):
                self.items.extend(json.loads(msg.payload)["items"])

    def values(self, name: str) -> list[tuple[int, float]]:
        with self.lock:
            return [(it["date"], it[name]) for it in self.items if name in it]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def truth_samples(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["type"] == "sample"]


def around(truth: list[dict[str, Any]], date: int) -> list[dict[str, Any]]:
    """The truth samples just before and just after ``date``."""
    i = bisect.bisect_right([r["t"] for r in truth], date)
    return [truth[j] for j in (i - 1, i) if 0 <= j < len(truth)]


def within_truth(truth: list[dict[str, Any]], name: str, date: int, value: float) -> bool:
    """``value`` read at ``date`` lies between the truth samples around that moment (± tolerance).

    The truth log is 1 Hz; speed and coolant move monotonically between its samples, so the bracket
    holds them. RPM climbs and drops with gear shifts inside a second, so it is compared only while
    the car stands still (idle), where the bracket is tight.
    """
    rows = around(truth, date)
    values = [r[name] for r in rows]
    return min(values) - TOLERANCE[name] <= value <= max(values) + TOLERANCE[name]


def checkable(truth: list[dict[str, Any]], name: str, date: int) -> bool:
    rows = around(truth, date)
    if name == "engine_rpm":
        return len(rows) == 2 and all(r["speed"] == 0 and r["engine_running"] for r in rows)
    return len(rows) == 2


def test_daemon_to_mqtt_matches_ground_truth(tmp_path: Path, mosquitto: Broker) -> None:
    cfg = write_config(tmp_path, mosquitto)
    truth_file = tmp_path / "truth.jsonl"
    drive = tmp_path / "slice.toml"
    drive.write_text(DRIVE)
    sub = Subscriber(mosquitto, "slice-box")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--sim", "--config", str(cfg), "--drive", str(drive),
         "--sim-args", f"--seed 7 --truth {truth_file}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            moving = [v for _, v in sub.values("speed") if v > 20]
            if len(moving) >= 3 and all(len(sub.values(n)) >= 5 for n in NAMES):
                break
            assert daemon.poll() is None, daemon.communicate()
            time.sleep(0.5)
        else:
            pytest.fail(f"not enough values over MQTT: { {n: len(sub.values(n)) for n in NAMES} }")
        daemon.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _out, err = daemon.communicate(timeout=10)
        assert time.monotonic() - t0 < 5.0, "SIGTERM must end the daemon within 5 s"
        assert daemon.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        sub.close()

    truth = truth_samples(truth_file)
    assert truth, "the simulator wrote no ground truth"
    for name in NAMES:
        received = [(d, v) for d, v in sub.values(name) if checkable(truth, name, d)]
        assert len(received) >= 3, f"{name}: too few values to compare with the ground truth"
        wrong = [(d, v) for d, v in received if not within_truth(truth, name, d, v)]
        assert not wrong, f"{name}: values that disagree with the ground truth: {wrong[:5]}"
    assert "obd/slice-box/events/IGNITION_ON" in sub.topics

    # The SQLite outbox: rows the broker acknowledged are behind the MQTT cursor and collected; every
    # row after it is still there (nothing stored is lost), and the daemon stored rows at all.
    db = sqlite3.connect(tmp_path / "state" / "buffer.sqlite")
    try:
        (last_seq,) = db.execute("select seq from sqlite_sequence where name = 'outbox'").fetchone()
        (delivered,) = db.execute("select seq from cursors where uplink = 'mqtt'").fetchone()
        kept = [seq for (seq,) in db.execute("select seq from outbox order by seq")]
    finally:
        db.close()
    assert 0 < delivered <= last_seq
    assert [seq for seq in kept if seq > delivered] == list(range(delivered + 1, last_seq + 1))
