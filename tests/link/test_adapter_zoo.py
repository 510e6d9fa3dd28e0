"""Every adapter personality of the simulator's zoo × {``poll``, the daemon}: values flow (issue 12).

Rates against each personality's own ceiling are a benchmark (``bench/link.py --adapter all``), not a test;
here: values arrive for every PID, the request form kept fits what the clone accepts, nothing but read
services reaches the car (the audit fixture checks every simulator's log), and the write guard never fires.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_sim import PERSONALITIES, Simulator
from gateway import config
from gateway.commands.diag_client import DiagClient
from gateway.commands.poll import run_poll
from gateway.errors import GatewayError

PIDS = ["0C", "0D", "05", "04", "10", "11"]
NAMES = sorted(PERSONALITIES)
one_pass = pytest.mark.skipif(
    os.environ.get("OBD_GATEWAY_PURE") == "1",
    reason="adapter behaviour does not depend on the parser build: runs in the native pass only",
)


@pytest.mark.parametrize("adapter", NAMES)
async def test_poll_gets_values_from_every_adapter(adapter: str) -> None:
    sim = Simulator(seed=4, fast=True, adapter=adapter)
    sim.advance(3.0)
    try:
        with sim.serve_pty() as port:
            cfg = config.AdapterConfig(port=port, baud=PERSONALITIES[adapter].baud, protocol="6", timeout_s=2.0)
            polling = config.PollingConfig(pids=PIDS)
            report = await run_poll(cfg, polling, 1.5)
    finally:
        sim.stop()
    assert set(report["per_pid"]) == set(PIDS), report
    assert all(rate > 0 for rate in report["per_pid"].values()), report
    assert report["values_per_s"] > 0
    forms = report["forms"]
    assert forms, report
    most = PERSONALITIES[adapter].max_pids
    for label in forms.values():
        assert int(label.split()[0]) <= most, (adapter, forms)  # never more PIDs than the clone takes
    assert not report["errors"].get("DisallowedRequest"), report


@one_pass
@pytest.mark.parametrize("adapter", NAMES)
def test_the_daemon_gets_values_from_every_adapter(adapter: str, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""
[device]
id = "zoo-{adapter}"
state_dir = "{tmp_path}/state"

[adapter]
protocol = "6"
baud = {PERSONALITIES[adapter].baud}

[polling]
pids = {PIDS!r}

[store]
path = "{tmp_path}/state/buffer.sqlite"

[diag]
socket = "{tmp_path}/diag.sock"
"""
    )
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--sim", "--sim-args", f"--adapter {adapter} --fast",
             "--config", str(cfg)],
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )
    try:
        names: set[str] = set()
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not {"engine_rpm", "speed", "engine_coolant_temperature"} <= names:
            assert proc.poll() is None, stderr.read_text(errors="replace")[-2000:]
            time.sleep(0.3)
            with contextlib.suppress(GatewayError), DiagClient(str(tmp_path / "diag.sock"), timeout_s=5) as c:
                names = {row["name"] for row in c.request("values")}
        assert {"engine_rpm", "speed", "engine_coolant_temperature"} <= names, (
            names, stderr.read_text(errors="replace")[-2000:])
        with DiagClient(str(tmp_path / "diag.sock"), timeout_s=5) as c:
            status = c.request("status")
        adapter_status = status["adapter"]
        assert adapter_status["adapter_info"]["forms"], adapter_status
        assert "DisallowedRequest" not in adapter_status["errors"], adapter_status
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert proc.returncode == 0, stderr.read_text(errors="replace")[-2000:]


async def test_an_stn_chip_switches_baud_with_stsbr() -> None:
    """STN chips get STSBR (not ATBRD); the session confirms the new rate with an ATI at it."""
    from gateway.elm327.session import Elm327Session
    from gateway.transport.serial import SerialTransport

    sim = Simulator(seed=4, fast=True, adapter="stn", baud=38400, strict_baud=True)
    sim.advance(3.0)
    try:
        with sim.serve_pty() as port:
            session = Elm327Session(SerialTransport(port, 38400), protocol="6", timeout_s=2.0, fast_baud=115200)
            await session.open()
            try:
                info = await session.initialize()
                assert info.stn.startswith("STN"), info
                assert info.baud == 115200
                readings = await session.read_pids(0x7E8, [0x0C, 0x0D])
                assert {r.name for r in readings} == {"engine_rpm", "speed"}
            finally:
                await session.close()
        commands = [e.command.strip().upper() for e in list(sim.log)]
        assert "STSBR115200" in commands, commands
        assert not [c for c in commands if c.startswith("ATBRD")], commands
    finally:
        sim.stop()
