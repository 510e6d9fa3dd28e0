"""User PIDs in the poller against the simulator (ELM327 over a pty): a DID the car lacks is marked
unsupported after a few refusals and no longer asked for; out-of-range values are counted and dropped;
PIDs sharing a DID share one request; ``poll --profile`` reports them."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from firmware_sim import Simulator, ev
from firmware_sim.ecu import default_ecus
from gateway.config import AdapterConfig, PollingConfig
from gateway.daemon import session_factory
from gateway.model import Sample, Samples
from gateway.obd.custom import parse_many
from gateway.poller import Poller
from gateway.poller.custom import UNSUPPORTED_AFTER
from tests.link.helpers import run_until
from tests.unit.test_cli import cli

one_pass = pytest.mark.skipif(
    os.environ.get("OBD_GATEWAY_PURE") == "1",
    reason="link behaviour does not depend on the parser build: runs in the native pass only",
)

PIDS = parse_many(
    [
        {"name": "battery_soc", "unit": "%", "header": "7E4", "response": "7EC", "service": "22", "pid": "0101",
         "formula": "F/2", "rate_hz": 20},
        {"name": "battery_voltage_hv", "unit": "V", "header": "7E4", "response": "7EC", "service": "22",
         "pid": "0101", "formula": "(M*256+N)/10", "rate_hz": 20, "max": 10},  # a pack is never below 10 V
        {"name": "missing", "header": "7E4", "service": "22", "pid": "0202", "formula": "A", "rate_hz": 20},
    ],
    "pids.custom",
)


@one_pass
async def test_unsupported_bounds_and_shared_requests(tmp_path: Path) -> None:
    sim = Simulator("short", fast=True, ecus=[*default_ecus(), ev.kona_bms(soc_pct=55.0)])
    sim.advance(5)
    got: list[Sample] = []

    async def publish(item: Any) -> None:
        for s in item if isinstance(item, Samples) else (item,):  # a poll round, or one item
            if isinstance(s, Sample) and s.name in {p.name for p in PIDS}:
                got.append(s)

    try:
        cfg = AdapterConfig(port=sim.serve_pty().path, timeout_s=2.0, reconnect_max_s=1.0, fast_baud=0)
        polling = PollingConfig(pids=["0D"])
        poller = Poller(cfg, polling, sessions=session_factory(cfg, polling, tmp_path), publish=publish, custom=PIDS)
        assert await run_until(poller, lambda: poller.custom.counts["missing"].unsupported and len(got) >= 10, 20)
        asked = sum(e.command == "220202" for e in sim.log)
        reads = sum(e.command == "220101" for e in sim.log)
        await run_until(poller, lambda: sum(e.command == "220101" for e in sim.log) >= reads + 10, 10)
    finally:
        sim.stop()
    assert asked == UNSUPPORTED_AFTER  # refused three times (7F 22 31), then never asked again
    assert sum(e.command == "220202" for e in sim.log) == asked
    assert {s.name for s in got} == {"battery_soc"}  # 400 V is out of range: dropped, counted
    assert {s.value for s in got} <= {55.0, 54.5}
    assert {s.ecu for s in got} == {0x7EC}
    counts = poller.status()["custom"]
    assert counts["battery_voltage_hv"]["out_of_range"] > 0 and counts["battery_voltage_hv"]["values"] == 0
    assert counts["missing"]["unsupported"] is True
    # SOC and voltage come from the same DID: one request gives both (never two 220101 in a row for them)
    assert reads <= counts["battery_soc"]["values"] + 2
    stats = {r["name"]: r for r in poller.pid_stats()}
    assert stats["missing"]["supported"] is False and stats["battery_soc"]["pid"] == "custom"


@one_pass
async def test_poll_command_with_a_profile() -> None:
    sim = Simulator("short", fast=True, ecus=[*default_ecus(), ev.kona_bms(soc_pct=64.5)])
    sim.advance(5)
    try:
        path = sim.serve_pty().path
        out = await asyncio.to_thread(
            cli, "poll", "--port", path, "--fast-baud", "0", "--pids", "0D", "--profile", "hyundai-kona-ev",
            "--duration", "2", "--json",
        )
    finally:
        sim.stop()
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["last"]["battery_soc"] == 64.5 and report["units"]["battery_soc"] == "%"
    assert report["per_pid"]["battery_soc"] > 0 and report["per_pid"]["0D"] > 0
    assert report["custom"]["battery_soh"]["values"] >= 1
    out = cli("poll", "--port", "/dev/null", "--profile", "tesla")
    assert out.returncode == 2 and "--profile: no profile 'tesla'" in out.stderr
