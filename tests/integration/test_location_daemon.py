"""The real daemon with a GPS, end to end (issue 13).

``obd-gateway run --sim`` with ``[location] source = "nmea:sim"``: the simulator serves the car's position
as NMEA on a second pseudo-terminal, the daemon's NMEA receiver reads it, and the positions travel with
the samples into the SQLite store and over a real mosquitto to a real paho subscriber. Mid-drive the
simulator's control socket takes the fix away (the receiver keeps talking, GGA quality 0 / RMC ``V``),
gives it back, unplugs the receiver (its pty closes), plugs it in again, and finally unplugs it for the
rest of the drive: samples must go on without location, nothing may crash, and the trip must end with the
last good fix. Home Assistant discovery's ``device_tracker`` is rendered as Home Assistant would (a
Jinja2 sandbox) against the retained state topic.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from firmware_sim.control import send_command
from firmware_sim.gps import load_route
from gateway.location import geo
from gateway.model import now_ms
from gateway.store import KIND_TIMESERIES
from gateway.uplink.drust import timeseries_items
from tests.fixtures.broker import Broker

pytestmark = pytest.mark.skipif(
    os.environ.get("OBD_GATEWAY_PURE") == "1",
    reason="a real-time drive of about a minute; the GPS path does not depend on the parser build: native pass only",
)

DEVICE = "gps-box"
BASE = f"obd/{DEVICE}"

DRIVE = """
name = "gps_e2e"
description = "idle, 40 km/h along a straight and a wide right turn, stop, key off"
repeat = false

[vehicle]
vin = "1HGCM82633A004352"
odometer_km = 1000.0

[route]
start = [48.85837, 2.29448]
heading = 90.0
[[route.leg]]
straight_m = 120.0
[[route.leg]]
turn_deg = 90.0
radius_m = 60.0

[[phase]]
kind = "ignition_on"
crank_s = 1.0

# the daemon needs ~8 s to its first sample on a loaded machine (no remembered protocol: a search);
# the trip's start is where the car stood when the ignition was seen, so it must still stand then
[[phase]]
kind = "idle"
duration = 15

[[phase]]
kind = "accelerate"
to = 40
rate = 5

[[phase]]
kind = "cruise"
duration = 45

[[phase]]
kind = "brake"
to = 0
rate = 8

[[phase]]
kind = "idle"
duration = 2

[[phase]]
kind = "ignition_off"
"""

LOCATION_KEYS = {"lat", "lon", "hdop", "altitude", "satellites_used", "satellites_visibles", "cog"}


def write_config(tmp: Path, broker: Broker) -> Path:
    cfg = tmp / "gateway.toml"
    cfg.write_text(
        f"""
[device]
id = "{DEVICE}"
car_id = "gps-car"
state_dir = "{tmp}/state"

[polling]
pids = ["0C", "0D"]

[detection]
ignition_off_confirm_s = 5

[location]
source = "nmea:sim"
update_interval_s = 5

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
home_assistant_discovery = true

# an HTTPS uplink that can never deliver: its cursor holds every stored row for the test to read
[https]
enabled = true
base_url = "https://127.0.0.1:9"
token_file = "{tmp}/state/token.json"
timeout_s = 1
"""
    )
    return cfg


class Subscriber:
    """A real MQTT client collecting the device's topics and Home Assistant's discovery."""

    def __init__(self, broker: Broker) -> None:
        self.items: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.trips: list[dict[str, Any]] = []
        self.retained: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="gps-test")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(f"{BASE}/#", 1), ("homeassistant/#", 1)])
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        body = json.loads(msg.payload) if msg.payload.startswith((b"{", b"[")) else msg.payload.decode()
        with self.lock:
            if msg.topic == f"{BASE}/timeseries":
                self.items.extend(body["items"])
            elif msg.topic.startswith(f"{BASE}/events/"):
                self.events.append(body)
            elif msg.topic == f"{BASE}/trips":
                self.trips.append(body)
            else:
                self.retained[msg.topic] = body

    def located(self, since_ms: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [it for it in self.items if "location" in it and it["date"] >= since_ms]

    def speeds(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        with self.lock:
            return [it for it in self.items if "speed" in it and since_ms <= it["date"] < until_ms]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait(cond: Callable[[], Any], what: str, daemon: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if daemon.poll() is not None:
            pytest.fail(f"the daemon exited while waiting for {what}: {daemon.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def location_status(cfg: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "gateway", "status", "--json", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    loc = json.loads(out.stdout)["location"]
    assert isinstance(loc, dict)
    return loc


def render_tracker(config: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """What Home Assistant makes of the state topic: its templates are Jinja2 in a sandbox, the payload
    as ``value_json`` (https://www.home-assistant.io/docs/configuration/templating/#processing-incoming-data)."""
    env = ImmutableSandboxedEnvironment()
    rendered = env.from_string(config["json_attributes_template"]).render(value_json=state)
    result = json.loads(rendered)
    assert isinstance(result, dict)
    return result


def test_daemon_with_gps_end_to_end(tmp_path: Path, mosquitto: Broker) -> None:
    cfg = write_config(tmp_path, mosquitto)
    drive = tmp_path / "gps.toml"
    drive.write_text(DRIVE)
    control = str(tmp_path / "sim.sock")
    sub = Subscriber(mosquitto)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--sim", "--config", str(cfg), "--drive", str(drive),
         "--sim-args", f"--seed 7 --control {control}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # a failed test kills the group: the daemon's simulator must not outlive it
    )
    try:
        # 1. positions flow: DRUST location objects in the timeseries, the retained state, HA discovery
        tracker_topic = f"homeassistant/device_tracker/{DEVICE}/location/config"
        wait(lambda: len(sub.located()) >= 3 and any(it.get("speed", 0) > 20 for it in sub.items),
             "located timeseries items while moving", daemon, 40)
        wait(lambda: "latitude" in (sub.retained.get(f"{BASE}/state") or {}) and tracker_topic in sub.retained,
             "the state topic's position and the device_tracker discovery", daemon, 15)
        tracker = sub.retained[tracker_topic]
        state = sub.retained[f"{BASE}/state"]
        assert tracker["source_type"] == "gps" and tracker["json_attributes_topic"] == f"{BASE}/state"
        assert tracker["unique_id"] == f"{DEVICE}_location"
        assert tracker["availability_topic"] == f"{BASE}/availability"
        assert sub.retained[f"{BASE}/availability"] == "online"
        attrs = render_tracker(tracker, state)
        assert attrs == {"latitude": state["latitude"], "longitude": state["longitude"],
                         "gps_accuracy": state["gpsAccuracy"]}
        assert abs(state["latitude"] - 48.858) < 0.01 and abs(state["longitude"] - 2.296) < 0.01
        assert 0 < state["gpsAccuracy"] < 50  # HDOP 0.9 × 5 m
        assert render_tracker(tracker, {"speed": 3}) == {}  # no fix in the state: no position for HA
        assert render_tracker(tracker, {"speed": 3, "latitude": None, "longitude": None, "gpsAccuracy": None}) == {}
        loc = sub.located()[0]["location"]
        assert set(loc) == LOCATION_KEYS, loc
        assert loc["satellites_used"] == 9 and loc["hdop"] == 0.9 and isinstance(loc["cog"], int)

        # 2. the fix is lost for 5 s: samples go on, none carries a location
        assert send_command(control, {"gps": "nofix"})["ok"]
        lost_ms = now_ms()
        time.sleep(5.0)
        assert send_command(control, {"gps": "fix"})["ok"]
        back_ms = now_ms()
        wait(lambda: len(sub.located(back_ms)) >= 2, "positions after the fix came back", daemon, 15)
        window = (lost_ms + 1500, back_ms)  # 1.5 s for the epoch in flight when the fix went
        assert len(sub.speeds(*window)) >= 3, "samples must continue without a fix"
        assert not [it for it in sub.located(window[0]) if it["date"] < window[1]]
        assert location_status(cfg)["counts"]["no_fix"] >= 3

        # 3. the receiver unplugged and plugged in again: the source reopens it
        assert send_command(control, {"gps": "unplug"})["ok"]
        wait(lambda: not location_status(cfg)["connected"], "the source to notice the unplugged receiver",
             daemon, 10)
        unplugged_ms = now_ms()
        time.sleep(2.0)
        # the samples of those 2 s reach the subscriber through the store and the forwarder: a loaded
        # machine delivers the last of them a little later
        wait(lambda: len(sub.speeds(unplugged_ms, unplugged_ms + 2000)) >= 2,
             "samples to continue without a receiver", daemon, 10)
        assert send_command(control, {"gps": "replug"})["ok"]
        replugged_ms = now_ms()
        wait(lambda: len(sub.located(replugged_ms)) >= 2, "positions from the replugged receiver", daemon, 20)
        assert location_status(cfg)["connected"]

        # 4. unplugged for good, still driving: the trip ends with the last good fix
        time.sleep(2.0)
        assert send_command(control, {"gps": "unplug"})["ok"]
        gone_ms = now_ms()
        wait(lambda: bool(sub.trips), "the finished trip", daemon, 90)
        time.sleep(2.0)  # the events of the same moment
        assert len(sub.speeds(gone_ms, now_ms())) >= 5, "samples must continue after the receiver is gone"
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=15)
        assert daemon.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and its simulator
        daemon.wait()
        sub.close()

    (trip,) = sub.trips
    last = sub.located()[-1]
    assert last["date"] < gone_ms + 1500
    end = trip["end_location"]
    assert (end["lat"], end["lon"]) == (last["location"]["lat"], last["location"]["lon"])
    assert 0 < end["accuracy_m"] < 50
    route = load_route(str(drive))
    start = trip["start_location"]
    assert geo.distance_m((start["lat"], start["lon"]), route.start) < 10
    path = geo.decode(trip["path"])
    assert len(path) >= 2
    dense = [route.at(s)[:2] for s in range(800)]
    for pt in path:
        assert min(geo.distance_m(pt, d) for d in dense) < 10, pt
    # the GPS distance counts only where there were fixes: less than the speed PID's, not nothing
    assert 50 < trip["distance_gps_m"] < trip["distance"]
    assert trip["distance"] > 300

    by_type: dict[str, list[dict[str, Any]]] = {}
    for ev in sub.events:
        by_type.setdefault(ev["type"], []).append(ev)
    for kind in ("IGNITION_ON", "MOVING"):
        where = by_type[kind][0]["payload"]["location"]
        assert geo.distance_m((where["lat"], where["lon"]), route.start) < 30, (kind, where)
        assert set(where) == {"lat", "lon", "accuracy_m", "created_at"}
    # the car stopped and was switched off long after the receiver went: no stale location
    for kind in ("STOPPED", "IGNITION_OFF", "TRIP_FINISHED"):
        assert by_type[kind] and "location" not in by_type[kind][-1]["payload"], kind
    updates = by_type.get("LOCATION_UPDATED", [])
    assert len(updates) >= 2 and all("location" in ev["payload"] for ev in updates)
    assert all(ev["date"] < gone_ms + 1500 for ev in updates)

    # the store holds the positions as DRUST Timeseries: read every row (the HTTPS cursor never moved)
    db = sqlite3.connect(tmp_path / "state" / "buffer.sqlite")
    try:
        (https_cursor,) = db.execute("select seq from cursors where uplink = 'https'").fetchone()
        rows = db.execute("select body from outbox where kind = ? order by seq", (KIND_TIMESERIES,))
        bodies = [body for (body,) in rows]
    finally:
        db.close()
    assert https_cursor == 0
    stored = [it for body in bodies for it in timeseries_items(body)]
    stored_located = [it for it in stored if "location" in it]
    assert len(stored_located) >= len(sub.located()) - 2
    assert {it["date"] for it in sub.located()} <= {it["date"] for it in stored_located}
    assert [it for it in stored if "speed" in it and window[0] <= it["date"] < window[1]]
    assert not [it for it in stored_located if window[0] <= it["date"] < window[1]]
