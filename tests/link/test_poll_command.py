"""``obd-gateway poll`` as a real subprocess: silent ports, human output, --pids errors, SLCAN paste."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

from tests.fixtures.sim import SimCli


def _poll(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "poll", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_port_without_an_elm327_or_missing_is_one_line(tmp_path: Path) -> None:
    # ptys nobody answers on (one per process: pyserial locks a port exclusively): they open fine,
    # but nothing ever comes back
    ptys = [os.openpty() for _ in range(2)]
    paths = []
    for _, slave in ptys:
        tty.setraw(slave)
        paths.append(os.ttyname(slave))
    missing = str(tmp_path / "no-such-tty")
    try:
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "gateway", "poll", "--duration", "2", *extra],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for extra in (["--port", paths[0]], ["--port", paths[1], "--json"], ["--port", missing])]
        outs = [p.communicate(timeout=40) for p in procs]  # all at once: the test waits once
        elapsed = time.monotonic() - t0
    finally:
        for fds in ptys:
            for fd in fds:
                os.close(fd)
    # a port that cannot be opened at all: one line after a few tries
    assert procs[2].returncode == 1
    assert outs[2][1].count("\n") == 1 and "cannot reach the adapter" in outs[2][1], outs[2][1]
    for proc, (stdout, stderr), path in zip(procs[:2], outs[:2], paths, strict=True):
        assert proc.returncode == 1, stderr
        assert stderr.strip().splitlines() == [f"obd-gateway: no ELM327 answer on {path} at 38400 baud"]
        if stdout.strip():  # nothing may claim a connection
            assert json.loads(stdout).get("connected") is not True
    assert elapsed < 16, elapsed  # the silent pty ~4 s (an ELM327 echoes ATZ at once), the missing one ~8 s


def test_human_output_rounds_values_and_shows_units(sim_cli: SimCli) -> None:
    _, port = sim_cli("--fast")
    out = _poll("--port", port, "--duration", "1", "--pids", "0C,0D,10")
    assert out.returncode == 0, out.stderr
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^  ([0-9A-F]{2}) +[\d.]+/s  last (.*)$", out.stdout, re.M)}
    assert set(rows) == {"0C", "0D", "10"}, out.stdout
    assert re.fullmatch(r"\d+(\.\d)? rpm", rows["0C"]), rows  # RPM: at most one decimal (0.25 rpm steps)
    assert re.fullmatch(r"\d+ km/h", rows["0D"]), rows
    assert re.fullmatch(r"\d+(\.\d{1,2})? g/s", rows["10"]), rows  # MAF: 0.01 g/s steps, rounded


@pytest.mark.parametrize("pids", ["ZZ", "100", "G1", "", "0C;0D"])
def test_bad_pids_name_the_option(pids: str, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    assert main(["poll", "--port", "/dev/null", "--pids", pids, "--duration", "1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--pids" in lines[0], lines


def test_bad_pids_as_a_process_is_one_line() -> None:
    out = _poll("--port", "/dev/null", "--pids", "ZZ", "--duration", "1", timeout=20)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "obd-gateway: configuration error: --pids: 'ZZ' is not a two-digit hex PID (example: --pids 0C,0D,05)"]


def test_slcan_first_line_pastes_into_port(sim_cli: SimCli) -> None:
    _, where = sim_cli("--fast", "--slcan")
    out = _poll("--port", where, "--duration", "1", "--pids", "0C,0D", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["per_pid"]) == {"0C", "0D"} and report["connected"] is True
    assert report["units"] == {"0C": "rpm", "0D": "km/h"}
