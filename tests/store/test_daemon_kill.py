"""Kill/restart with the real daemon: ``obd-gateway run --sim`` SIGKILLed (with its simulator) at random
moments while the broker is stopped and restarted and the HTTPS server fails requests on purpose; then the
daemon, started without an adapter, drains the buffer. Every record it ever committed must have arrived."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.drust_server import DrustServer
from tests.fixtures.broker import Broker
from tests.store.helpers import MqttCollector, received_ids
from tests.store.killcheck import DbWatcher, https_ids, kill_seed, wait_drained, wait_until
from tests.store.test_kill_restart import get_all

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "obd-gateway"


def write_config(tmp: Path, broker: Broker, srv: DrustServer, adapter_port: str = "sim", level: str = "WARNING",
                 ) -> Path:
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    for name, value in (("secret", "myclientsecret"), ("password", "myPassw0rd")):
        (tmp / name).write_text(value + "\n")
        (tmp / name).chmod(0o600)  # the daemon refuses secrets others can read
    cfg = tmp / f"config-{adapter_port.strip('/').replace('/', '_')}.toml"
    cfg.write_text(f"""
[device]
id = "dev-d"
car_id = "car-d"
state_dir = "{state}"

[adapter]
port = "{adapter_port}"
reconnect_max_s = 1.0

[store]
path = "{state}/buffer.sqlite"
commit_interval_s = 0.2

[mqtt]
enabled = true
host = "{broker.host}"
port = {broker.port}
tls = false

[https]
enabled = true
base_url = "{srv.url}"
client_id = "myclientid"
client_secret_file = "{tmp}/secret"
username = "myemail@example.com"
password_file = "{tmp}/password"
token_file = "{state}/token.json"
ca_file = "{srv.ca_file}"
timeout_s = 3.0

[diag]
socket = "{tmp}/diag.sock"

[log]
level = "{level}"
""")
    return cfg


def start_daemon(cfg: Path, *args: str) -> subprocess.Popen[bytes]:
    # a session of its own: SIGKILL to the group takes the simulator child down too (a power cut)
    with open(cfg.parent / "daemon.log", "ab") as log:
        return subprocess.Popen([str(EXE), "run", "--config", str(cfg), *args], cwd=ROOT, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=log)


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait(15)


def log_tail(tmp: Path, lines: int = 30) -> str:
    """The end of the daemons' shared stderr log, for a failure message."""
    path = tmp / "daemon.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@pytest.fixture
def seed() -> int:
    return kill_seed()


@pytest.fixture
def flaky_server(tmp_path: Path, seed: int) -> Iterator[DrustServer]:
    srv = DrustServer(tmp_path / "drust", fail_rate=0.2, seed=seed % 1000).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_daemon_sigkill_and_broker_restarts_lose_nothing(mosquitto: Broker, flaky_server: DrustServer,
                                                         tmp_path: Path, seed: int) -> None:
    if not EXE.exists():
        pytest.skip("obd-gateway is not installed in this environment")
    rng = random.Random(seed)
    srv = flaky_server
    cfg = write_config(tmp_path, mosquitto, srv)
    watcher = DbWatcher(tmp_path / "state" / "buffer.sqlite").start()
    col = MqttCollector(mosquitto.host, mosquitto.port, "obd/#")
    try:
        for run in range(3):
            before = watcher.samples()
            proc = start_daemon(cfg, "--sim")
            try:
                # The first start searches the protocol (about 7 s against the simulated chip, longer on a
                # loaded machine), and a start killed before it saved the protocol searches again. The
                # random moments begin once this run has stored samples: each kill lands mid-drive.
                assert wait_until(lambda b=before: watcher.samples() > b, 60), (
                    f"run {run}: the daemon stored nothing within 60 s; its log ends:\n{log_tail(tmp_path)}")
                time.sleep(rng.uniform(1.0, 5.0))
                if rng.random() < 0.7:
                    mosquitto.stop()
                    time.sleep(rng.uniform(0.2, 1.0))
                    if rng.random() < 0.5:
                        kill_group(proc)  # the power goes while the broker is away
                    mosquitto.start()
                time.sleep(rng.uniform(0.2, 1.5))
            finally:
                kill_group(proc)
        # the same daemon without a car: it only drains the buffer, then stops on SIGTERM
        drain_cfg = write_config(tmp_path, mosquitto, srv, adapter_port=str(tmp_path / "no-adapter"), level="INFO")
        proc = start_daemon(drain_cfg)
        try:
            deadline = time.monotonic() + 30
            while b"running (device" not in (tmp_path / "daemon.log").read_bytes() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert wait_drained(watcher, 120), "the daemon did not drain the buffer"
        finally:
            kill_group(proc, signal.SIGTERM)
        assert proc.returncode == 0
    finally:
        watcher.stop()
    stored = watcher.seen
    samples = watcher.samples()
    errors = f"{watcher.errors} watcher errors, last {watcher.last_error!r}"
    print(f"stored {len(stored)} records, {samples} samples; {errors}")  # shown with -s: the note's figures
    assert samples > 100, f"the daemon stored only {samples} samples ({errors})"
    missing = set(stored) - https_ids(srv)
    assert not missing, f"{len(missing)} of {len(stored)} records missing at the HTTPS server"
    ok = col.wait_for(lambda m: set(stored) <= received_ids(m), 30)
    missing_mqtt = set(stored) - received_ids(col.snapshot())
    col.close()
    assert ok and not missing_mqtt, f"{len(missing_mqtt)} of {len(stored)} records missing at the MQTT subscriber"
    assert srv.state.injected > 0
    # trips and events read back through the documented GET endpoints equal what the daemon recorded
    trips = {t["id"]: t for t in get_all(srv, "/v2/devices/dev-d/trips", start_date=0, end_date=2**62)}
    events = {e["id"]: e for e in get_all(srv, "/v2/events", start_date=0, end_date=2**62)}
    for rid, body in watcher.bodies.items():
        if stored[rid][0] == 2:
            assert trips[rid] == {**body, "device": {"id": "dev-d"}, "car": {"id": "car-d"}}
        else:
            assert events[rid] == {**body, "device": {"id": "dev-d"}}
