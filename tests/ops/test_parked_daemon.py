"""The real daemon started in a parked car (issue #17): no protocol search, one log line, the battery guard.

``obd-gateway run`` is a subprocess on a pseudo-terminal served by an in-process firmware_sim whose car is
off; the protocol is remembered from an earlier run. The battery is then drained below 12.2 V: one
``LOW_BATTERY`` event, and the shutdown command (a script recording how many events the store had
committed when it ran) runs once, after the store flush.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware_sim import Simulator
from gateway.commands.diag_client import DiagClient
from gateway.store import KIND_EVENT

pytestmark = pytest.mark.skipif(
    os.environ.get("OBD_GATEWAY_PURE") == "1",
    reason="parking behaviour does not depend on the parser build: runs in the native pass only",
)

CONFIG = """
[device]
id = "parked-box"
state_dir = "{d}/state"

[adapter]
port = "{port}"

[store]
path = "{d}/buffer.sqlite"
commit_interval_s = 30.0

[power]
voltage_interval_s = 0.2
low_battery_confirm_s = 1.0
shutdown_command = "{python} {d}/record.py {d}/buffer.sqlite {d}/shutdown.txt"

[diag]
socket = "{d}/diag.sock"

[log]
level = "INFO"
"""

RECORD = f"""
import sqlite3, sys
n = sqlite3.connect(sys.argv[1]).execute("select count(*) from outbox where kind = {KIND_EVENT}").fetchone()[0]
with open(sys.argv[2], "a") as f:
    f.write(f"{{n}}\\n")
"""


def until(cond: Callable[[], Any], timeout: float, what: str, log: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s; log: {log()[-3000:]}")


def test_restart_in_a_parked_car_is_quiet_and_a_flat_battery_runs_the_shutdown_once() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="obdgw-park-"))  # short: AF_UNIX path limit
    sim = Simulator(fast=True)
    sim.vehicle.hold(0.0)
    sim.vehicle.set_ignition(False)
    sim.command({"battery_rest_v": 12.6})
    proc: subprocess.Popen[bytes] | None = None
    try:
        with sim.serve_pty() as port:
            (workdir / "state").mkdir()
            (workdir / "state" / "elm327-state.json").write_text(json.dumps({"protocol": "6"}))
            (workdir / "record.py").write_text(RECORD)
            cfg = workdir / "config.toml"
            cfg.write_text(CONFIG.format(d=workdir, port=port, python=sys.executable))
            stderr = workdir / "stderr.txt"
            with open(stderr, "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                )

            def log() -> str:
                return stderr.read_text(errors="replace")

            def status() -> dict[str, Any]:
                try:
                    with DiagClient(str(workdir / "diag.sock"), timeout_s=5) as c:
                        answer: dict[str, Any] = c.request("status")
                        return answer
                except OSError:
                    return {}

            until(lambda: "parked, waiting for the engine" in log(), 20, "no 'parked, waiting'", log)
            time.sleep(2.0)  # ten voltage readings
            assert log().count("parked, waiting for the engine") == 1
            assert "UNABLE TO CONNECT" not in log() and "no ECU answered" not in log()
            assert len(sim.bus.wakeups) == 0  # no protocol search, no request at all
            parked = until(lambda: status().get("adapter", {}).get("parked"), 10, "no parked status", log)
            assert parked["bus_requests"] == 0 and parked["waiting_for_engine"] is True
            assert parked["last_voltage_v"] == pytest.approx(12.5, abs=0.1)  # 12.6 V at rest, minus the adapter's diode
            assert not (workdir / "shutdown.txt").exists()

            # the battery falls through 12.2 V: LOW_BATTERY once, the shutdown command once, after the flush
            sim.command({"battery_rest_v": 11.9})
            until((workdir / "shutdown.txt").exists, 20, "the shutdown command did not run", log)
            # the store commits every 30 s here: only the flush before the command can have written the event
            assert (workdir / "shutdown.txt").read_text().split() == ["1"]
            # hysteresis: back above 12.2 but below 12.5, then down again: no second report
            sim.command({"battery_rest_v": 12.35})
            time.sleep(1.5)
            sim.command({"battery_rest_v": 11.9})
            time.sleep(1.5)
            assert log().count("battery low") == 1
            assert (workdir / "shutdown.txt").read_text().split() == ["1"]
            st = status()
            assert st["shutdown_command_ran"] == "low battery"
            assert st["adapter"]["parked"]["low_battery"] is True
            assert len(sim.bus.wakeups) == 0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        sim.stop()
        shutil.rmtree(workdir, ignore_errors=True)
