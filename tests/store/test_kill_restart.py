"""Kill/restart: a drive written by a real process that is SIGKILLed at random moments while the broker
is stopped and restarted and the HTTPS server fails requests on purpose; nothing stored may be lost."""

from __future__ import annotations

import random
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.drust_server import DrustServer
from tests.fixtures.broker import Broker
from tests.store.helpers import MqttCollector, received_ids
from tests.store.killcheck import DbWatcher, https_ids, kill_seed, wait_drained

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def seed() -> int:
    return kill_seed()


@pytest.fixture
def drust_flaky(tmp_path: Path, seed: int) -> Iterator[DrustServer]:
    srv = DrustServer(tmp_path / "drust", fail_rate=0.2, seed=seed & 0xFFFF).start()
    try:
        yield srv
    finally:
        srv.stop()


def start_writer(db: Path, run: str, broker: Broker, srv: DrustServer, secrets: Path, *, drive: bool = True,
                 ) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.store.writer", "--db", str(db), "--run", run,
            "--mqtt-port", str(broker.port), "--https-url", srv.url, "--ca", srv.ca_file, "--secrets", str(secrets)]
    if not drive:
        argv.append("--no-drive")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"writer did not start: {line!r}"
    return proc


def get_all(srv: DrustServer, path: str, **params: object) -> list[dict[str, object]]:
    ctx = ssl.create_default_context(cafile=srv.ca_file)
    with httpx.Client(verify=ctx) as c:
        tok = c.post(srv.url + "/oauth/token", data={
            "grant_type": "password", "scope": "global", "username": "myemail@example.com",
            "password": "myPassw0rd", "client_id": "myclientid", "client_secret": "myclientsecret"}).json()
        out: list[dict[str, object]] = []
        q: dict[str, object] = {"limit": 500, **params}
        while True:
            page = c.get(srv.url + path, params=q, headers={"Authorization": f"Bearer {tok['access_token']}"}).json()
            out += page["items"]
            if "next" not in page:
                return out
            q["offset"] = page["next"]["offset"]


def test_sigkill_and_broker_restarts_lose_nothing(mosquitto: Broker, drust_flaky: DrustServer, tmp_path: Path,
                                                  seed: int) -> None:
    rng = random.Random(seed)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "secret").write_text("myclientsecret\n")
    (secrets / "password").write_text("myPassw0rd\n")
    for name in ("secret", "password"):
        (secrets / name).chmod(0o600)  # the uplink refuses secrets every user can read
    db = tmp_path / "buffer.sqlite"
    col = MqttCollector(mosquitto.host, mosquitto.port, "obd/#")
    watcher = DbWatcher(db).start()
    kills = 0
    try:
        for run in range(6):
            proc = start_writer(db, f"r{run}", mosquitto, drust_flaky, secrets)
            try:
                time.sleep(rng.uniform(0.2, 0.8))
                if rng.random() < 0.6:
                    mosquitto.stop()
                    time.sleep(rng.uniform(0.1, 0.6))
                    if rng.random() < 0.5:
                        proc.send_signal(signal.SIGKILL)  # killed while the broker is away
                    mosquitto.start()
                time.sleep(rng.uniform(0.1, 0.8))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                assert proc.stdout is not None
                proc.stdout.close()
                kills += 1
        # the last run only drains, and stops gracefully
        proc = start_writer(db, "drain", mosquitto, drust_flaky, secrets, drive=False)
        try:
            assert wait_drained(watcher, 90), "the outbox did not drain"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert proc.stdout is not None
            proc.stdout.close()
    finally:
        watcher.stop()
    stored = watcher.seen
    assert kills == 6 and len(stored) > 20
    kinds = [k for k, _n in stored.values()]
    assert kinds.count(0) > 5 and kinds.count(1) > 3 and kinds.count(2) >= 1, kinds
    # every committed record reached the HTTPS server
    missing_https = set(stored) - https_ids(drust_flaky)
    assert not missing_https, f"{len(missing_https)} records missing at the HTTPS server"
    assert drust_flaky.state.injected > 0
    # ... and the MQTT subscriber (messages may still be on their way from the broker)
    ok = col.wait_for(lambda m: set(stored) <= received_ids(m), 30)
    missing_mqtt = set(stored) - received_ids(col.snapshot())
    col.close()
    assert ok and not missing_mqtt, f"{len(missing_mqtt)} records missing at the MQTT subscriber"
    # trips and events read back through the documented GET endpoints equal what was recorded
    trips = {t["id"]: t for t in get_all(drust_flaky, "/v2/devices/dev-k/trips", start_date=0, end_date=2**62)}
    events = {e["id"]: e for e in get_all(drust_flaky, "/v2/events", start_date=0, end_date=2**62)}
    for rid, body in watcher.bodies.items():
        kind = stored[rid][0]
        if kind == 2:
            assert trips[rid] == {**body, "device": {"id": "dev-k"}, "car": {"id": "car-k"}}
        else:
            assert events[rid] == {**body, "device": {"id": "dev-k"}}
            trip_events = get_all(drust_flaky, f"/v2/trips/{body['trip']}/events") if body["trip"] in trips else None
            if trip_events is not None:
                assert rid in {e["id"] for e in trip_events}
