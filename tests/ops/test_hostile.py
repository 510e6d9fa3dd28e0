"""Issue 18: a hostile local user against the real daemon (``obd-gateway run --sim`` as a subprocess)
over its real sockets: idle TCP connections cannot lock the technician out, requested restarts are not
failures (and the store cannot be restarted), deep JSON is ``bad_json`` with at most one log line, the
buffer and state files are private, the VIN is masked over TCP, and a query flood leaves the configured
PIDs their rates."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.commands.diag_client import DiagClient

CONFIG = """
[device]
id = "hostile-box"
state_dir = "{d}/state"

[adapter]
port = "sim"
protocol = "6"

[store]
path = "{d}/buffer.sqlite"

[diag]
socket = "{d}/diag.sock"
tcp_port = {tcp}
max_clients = 4
max_tcp_clients = 2
idle_timeout_s = 2.0

[log]
level = "INFO"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.tcp = _free_port()
        (workdir / "config.toml").write_text(CONFIG.format(d=workdir, tcp=self.tcp))
        self.stderr = open(workdir / "stderr.txt", "w+b")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--sim", "--config", str(workdir / "config.toml")],
            env=env, stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True,
        )
        self.sock = str(workdir / "diag.sock")
        end = time.monotonic() + 30
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.log()
            with contextlib.suppress(Exception):
                if self.ask("status")["adapter"].get("vin"):
                    return
            time.sleep(0.2)
        raise AssertionError(f"daemon not up with a VIN: {self.log()}")

    def log(self) -> str:
        self.stderr.flush()
        return (self.dir / "stderr.txt").read_text(errors="replace")

    def ask(self, cmd: str, address: str | None = None, **kw: Any) -> Any:
        with DiagClient(address or self.sock, timeout_s=10) as c:
            return c.request(cmd, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.stderr.close()


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    workdir = Path(tempfile.mkdtemp(prefix="obdgw-host-"))  # short: AF_UNIX path limit
    d = Daemon(workdir)
    yield d
    d.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _raw(address: str | tuple[str, int]) -> socket.socket:
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=5)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(address)
    return s


def _line(s: socket.socket) -> dict[str, Any]:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    msg = json.loads(buf)
    assert isinstance(msg, dict)
    return msg


def test_idle_tcp_clients_cannot_lock_out_the_unix_socket(daemon: Daemon) -> None:
    held = [_raw(("127.0.0.1", daemon.tcp)) for _ in range(2)]  # the whole TCP budget
    try:
        extra = _raw(("127.0.0.1", daemon.tcp))
        assert _line(extra)["error"]["code"] == "busy"
        extra.close()
        # the technician on the Unix socket is not affected
        assert daemon.ask("ping")["pong"] is True
        # idle connections are closed after diag.idle_timeout_s (2 s), with a reason
        msg = _line(held[0])
        assert msg["error"]["code"] == "idle"
        assert daemon.ask("ping", address=f"tcp:127.0.0.1:{daemon.tcp}")["pong"] is True
    finally:
        for s in held:
            s.close()


def test_requested_restarts_are_not_failures_and_the_store_is_refused(daemon: Daemon) -> None:
    for _ in range(12):
        with DiagClient(daemon.sock, timeout_s=10) as c:
            with pytest.raises(Exception) as err:
                c.request("restart", component="store")
            assert getattr(err.value, "code", None) == "forbidden"
    assert daemon.proc.poll() is None, "restart requests on the store never stop the daemon"
    assert daemon.ask("restart", component="detection") == {"restarting": "detection"}
    with DiagClient(daemon.sock, timeout_s=10) as c, pytest.raises(Exception) as err:
        c.request("restart", component="detection")  # again at once: refused, it must get to run
    assert getattr(err.value, "code", None) == "forbidden"
    for name in ("supervisor", "daemon"):
        with DiagClient(daemon.sock, timeout_s=10) as c, pytest.raises(Exception) as err:
            c.request("restart", component=name)
        assert getattr(err.value, "code", None) == "bad_request"
    time.sleep(1.0)
    comps = daemon.ask("status")["components"]
    assert comps["store"]["failures"] == 0 and comps["store"]["state"] == "running"
    assert comps["detection"]["restarts"] == 1 and comps["detection"]["failures"] == 0
    assert comps["detection"]["state"] == "running"


def test_deeply_nested_json_is_bad_json_with_no_traceback(daemon: Daemon) -> None:
    s = _raw(daemon.sock)
    try:
        for _ in range(5):
            s.sendall(b"[" * 60_000 + b"\n")
            msg = _line(s)
            assert msg["ok"] is False and msg["error"]["code"] == "bad_json", msg
        s.sendall(b'{"cmd": "ping"}\n')
        assert _line(s)["ok"] is True, "the connection stays usable"
    finally:
        s.close()
    text = daemon.log()
    assert "Traceback" not in text and "RecursionError" not in text


def test_files_are_private_and_the_vin_is_masked_over_tcp(daemon: Daemon) -> None:
    for name in ("buffer.sqlite", "buffer.sqlite-wal"):
        mode = stat.S_IMODE(os.stat(daemon.dir / name).st_mode)
        assert mode & 0o007 == 0, f"{name} is mode {mode:o}: readable by other users"
    for path in (daemon.dir / "state").iterdir():
        if path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path.name} is mode {mode:o}"
    vin = daemon.ask("status")["adapter"]["vin"]
    assert len(vin) == 17 and "*" not in vin, "the Unix socket (group only) shows the VIN"
    masked = daemon.ask("status", address=f"tcp:127.0.0.1:{daemon.tcp}")["adapter"]["vin"]
    assert masked == "*" * 13 + vin[-4:]
    assert vin not in json.dumps(daemon.ask("status", address=f"tcp:127.0.0.1:{daemon.tcp}"))


def _rate(daemon: Daemon, pid: str) -> float:
    rows = {r["pid"]: r for r in daemon.ask("pids")}
    return float(rows[pid]["achieved_hz"])


def test_query_flood_leaves_configured_pids_their_rates(daemon: Daemon) -> None:
    time.sleep(11)  # a full 10 s window of achieved rates
    before = _rate(daemon, "0C"), _rate(daemon, "0D")
    end = time.monotonic() + 12
    with DiagClient(daemon.sock, timeout_s=10) as c:
        pid = 0
        while time.monotonic() < end:
            with contextlib.suppress(Exception):
                c.request("query", pid=f"{pid % 256:02X}")
            pid += 1
    after = _rate(daemon, "0C"), _rate(daemon, "0D")
    assert pid > 20, "the queries were answered"
    for b, a in zip(before, after, strict=True):
        assert a >= 0.8 * b, f"configured rate fell from {b} to {a} Hz under the query flood"
    asked = [r for r in daemon.ask("pids") if not r.get("configured", True) or r["pid"] not in
             ("01", "04", "05", "0C", "0D", "10", "11", "2F", "46", "5E", "A6")]
    assert len(asked) <= 8, f"{len(asked)} asked-for PIDs kept"
