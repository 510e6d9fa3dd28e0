"""Acceptance: the daemon as systemd runs it. A real ``obd-gateway run --sim`` subprocess with
NOTIFY_SOCKET pointing at a test datagram socket: READY, STATUS and periodic WATCHDOG messages;
an uplink component killed through the diagnostic socket is restarted while polling goes on;
SIGHUP with an invalid file keeps the running configuration; SIGTERM stops it cleanly and quickly."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.commands.diag_client import DiagClient

CONFIG = """
[device]
id = "ops-test-box"
state_dir = "{d}/state"

[adapter]
port = "sim"

[store]
path = "{d}/buffer.sqlite"

[mqtt]
enabled = true
host = "127.0.0.1"
port = {port}
tls = false
username = "box"
password_file = "{d}/mqtt.password"

[diag]
socket = "{d}/diag.sock"

[log]
level = "INFO"
"""


SECRET = "Zq8-very-secret-mqtt-pw"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


class Service:
    """The daemon process, its notify socket and helpers to read both."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.config = workdir / "config.toml"
        self.config.write_text(CONFIG.format(d=workdir, port=_dead_port()))
        secret = workdir / "mqtt.password"
        secret.write_text(SECRET + "\n")
        secret.chmod(0o600)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(workdir / "notify.sock"))
        self.messages: list[tuple[float, str]] = []
        self.stderr = open(workdir / "stderr.txt", "w+b")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, NOTIFY_SOCKET=str(workdir / "notify.sock"), WATCHDOG_USEC="1000000")
        env.pop("WATCHDOG_PID", None)
        self.closed = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--sim", "--config", str(self.config)],
            env=env, stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True,
        )

    def _reader(self) -> None:
        """Read notifications all the time, as systemd does (its queue holds only a few datagrams)."""
        self.notify.settimeout(0.2)
        while not self.closed:
            try:
                data = self.notify.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode()))

    def collect(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait_for(self, needle: str, timeout: float) -> float:
        """Wait for a message containing the line ``needle``; its arrival time."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                for t, m in self.messages:
                    if needle in m.splitlines():
                        return t
            assert self.proc.poll() is None, f"daemon exited {self.proc.returncode}: {self.log()}"
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} within {timeout} s; got {self.messages}; log: {self.log()}")

    def lines(self, prefix: str) -> list[str]:
        with self.lock:
            return [line for _, m in self.messages for line in m.splitlines() if line.startswith(prefix)]

    def log(self) -> str:
        self.stderr.flush()
        return (self.dir / "stderr.txt").read_text(errors="replace")[-3000:]

    def ask(self, cmd: str, **kw: Any) -> Any:
        with DiagClient(str(self.dir / "diag.sock"), timeout_s=10) as c:
            return c.request(cmd, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the simulator child, should it linger
        self.closed = True
        self.thread.join(2)
        self.notify.close()
        self.stderr.close()


@pytest.fixture
def service() -> Iterator[Service]:
    workdir = Path(tempfile.mkdtemp(prefix="obdgw-svc-"))  # short: AF_UNIX path limit
    svc = Service(workdir)
    yield svc
    svc.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def poll_until(fn: Any, timeout: float = 15.0, step: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


def latest_ts(svc: Service) -> int:
    return max((v["ts_ms"] for v in svc.ask("values")), default=0)


@pytest.mark.timeout(120)
def test_service_lifecycle_under_systemd_protocol(service: Service) -> None:
    svc = service
    # READY once the store is open and the adapter session is up or retrying
    t_ready = svc.wait_for("READY=1", timeout=40)
    assert svc.lines("STATUS="), "READY comes with a STATUS line"

    # WATCHDOG=1 at half of WATCHDOG_USEC (1 s) from the main loop
    svc.collect(2.6)
    with svc.lock:
        msgs = list(svc.messages)
    pings = [t for t, m in msgs if "WATCHDOG=1" in m.splitlines() and t >= t_ready - 0.1]
    assert len(pings) >= 4, msgs
    gaps = sorted(b - a for a, b in itertools.pairwise(pings))
    assert 0.35 < gaps[len(gaps) // 2] < 0.8, gaps  # every ~0.5 s: half the 1 s watchdog

    # polling works and the components are all up
    poll_until(lambda: latest_ts(svc) > 0)
    status = svc.ask("status")
    comps = status["components"]
    assert comps["uplink:mqtt"]["state"] in ("running", "restarting")
    assert comps["poller"]["state"] == "running"

    # kill the uplink: it is restarted, polling never stops
    before = latest_ts(svc)
    assert svc.ask("restart", component="uplink:mqtt") == {"restarting": "uplink:mqtt"}
    comp = poll_until(lambda: (c := svc.ask("status")["components"]["uplink:mqtt"])["restarts"] >= 1 and c)
    assert comp["failures"] == comps["uplink:mqtt"]["failures"], "a requested restart is not a failure (issue 18)"
    assert comp["state"] in ("running", "restarting")
    poll_until(lambda: latest_ts(svc) > before)
    after = svc.ask("status")["components"]
    assert after["poller"]["restarts"] == 0 and after["poller"]["state"] == "running"
    assert after["store"]["restarts"] == 0
    # STATUS= follows the state (the summary names the restarted component while it is down, or
    # reports everything running again)
    svc.collect(2.5)
    assert any("components running" in s for s in svc.lines("STATUS="))

    # SIGHUP with an invalid file: refused, old configuration kept, daemon still serving
    good = svc.config.read_text()
    svc.config.write_text(good + "\n[mqtt]\nport = 0\n")
    os.kill(svc.proc.pid, signal.SIGHUP)
    poll_until(lambda: "refused" in svc.log())
    assert svc.proc.poll() is None
    assert svc.ask("ping")["pong"] is True
    svc.config.write_text(good)
    n_ready = len(svc.lines("READY=1"))
    os.kill(svc.proc.pid, signal.SIGHUP)
    poll_until(lambda: len(svc.lines("READY=1")) > n_ready)
    assert svc.lines("RELOADING=1")

    # secrets never in status or the log
    assert SECRET not in json.dumps(svc.ask("status"))

    # SIGTERM: STOPPING=1, a flushed buffer and exit 0, well inside systemd's TimeoutStopSec
    t0 = time.monotonic()
    os.kill(svc.proc.pid, signal.SIGTERM)
    code = svc.proc.wait(timeout=10)
    elapsed = time.monotonic() - t0
    svc.collect(0.2)
    assert code == 0, svc.log()
    assert svc.lines("STOPPING=1")
    assert not (svc.dir / "diag.sock").exists(), "the socket file is removed on exit"
    print(f"SIGTERM to exit: {elapsed:.2f} s")
    assert elapsed < 5, "SIGTERM must end the daemon within 5 s (issue 8)"
    assert "Traceback" not in svc.log()
    assert SECRET not in (svc.dir / "stderr.txt").read_text(errors="replace")


def test_second_daemon_on_the_same_socket_exits_with_one_line() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="obdgw-dup-"))
    try:
        config = workdir / "config.toml"
        config.write_text(CONFIG.format(d=workdir, port=_dead_port()).replace("enabled = true", "enabled = false"))
        (workdir / "mqtt.password").write_text("x\n")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as first:  # "the running daemon"
            first.bind(str(workdir / "diag.sock"))
            first.listen()
            dup = subprocess.run(
                [sys.executable, "-m", "gateway", "run", "--config", str(config)],
                capture_output=True, text=True, timeout=8,
            )
        assert dup.returncode == 1, dup.stderr
        assert "already running" in dup.stderr and "Traceback" not in dup.stderr
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
