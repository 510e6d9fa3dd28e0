"""SIGHUP reload on the running daemon: what can change at run time does, the rest is named."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIG = """
[device]
id = "reload-box"
state_dir = "{d}/state"

[adapter]
protocol = "6"

[polling]
pids = ["0C", "0D"]
rates = {rates}

[store]
path = "{d}/state/buffer.sqlite"
max_mb = {max_mb}

[diag]
socket = "{d}/diag.sock"
allow_clear_dtc = {allow}
"""


def ask(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "daemon closed the diagnostic connection"
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, KeyError, StopIteration):
            result = None
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def target_hz(sock: Path, pid: str) -> float:
    answer = ask(sock, {"cmd": "pids"})
    return float(next(p["target_hz"] for p in answer["data"] if p["pid"] == pid))


def test_sighup_applies_polling_and_clear_switch_and_names_the_rest(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(CONFIG.format(d=tmp_path, rates='{"0D" = 1.0}', max_mb=256, allow="true"))
    sock = tmp_path / "diag.sock"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--sim", "--config", str(cfg), "--sim-args=--fast"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for(lambda: target_hz(sock, "0D") == 1.0, "the initial plan")
        cfg.write_text(CONFIG.format(d=tmp_path, rates='{"0D" = 2.5}', max_mb=128, allow="false"))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: target_hz(sock, "0D") == 2.5, "the reloaded rate in the plan")
        refused = ask(sock, {"cmd": "clear_dtc", "confirm": True})
        assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
        assert "allow_clear_dtc" in refused["error"]["message"]

        cfg.write_text("[polling]\npids = 5\n")  # broken: refused, the running configuration stays
        daemon.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert target_hz(sock, "0D") == 2.5
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, err
    assert "applied: polling.rates, diag.allow_clear_dtc" in err
    assert "take effect after a restart: store.max_mb" in err
    assert "new configuration refused, keeping the running one: ConfigError: polling.pids: expected a list" in err
    assert "Traceback" not in err
