"""Acceptance: for each shipped EV profile, the simulator's battery ECU and the gateway agree on the state
of charge over a drive, within the formula's resolution, through the ELM327 path (pty) and raw CAN
(python-can virtual bus); the SOC falls as the car drives."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from firmware_sim import Simulator, ev
from firmware_sim.ecu import default_ecus
from gateway.config import AdapterConfig, PollingConfig
from gateway.daemon import session_factory
from gateway.model import Sample, Samples
from gateway.obd.custom import shipped_profiles
from gateway.poller import Poller
from tests.link.helpers import run_until

# resolution of each profile's SOC formula (F/2: 0.5 %; bytes 29-31 / 10000: 0.0001 %)
RESOLUTION = {"hyundai-kona-ev": 0.5, "nissan-leaf": 0.0001}


@pytest.mark.skipif(
    os.environ.get("OBD_GATEWAY_PURE") == "1",
    reason="a real-time link test: the formulas of both builds are compared in tests/custom/test_formula.py",
)
@pytest.mark.parametrize("kind", ["elm327", "can"])
@pytest.mark.parametrize("profile", sorted(RESOLUTION))
async def test_soc_agrees_over_a_drive(profile: str, kind: str, tmp_path: Path) -> None:
    ecu = ev.kona_bms(soc_pct=71.3) if profile == "hyundai-kona-ev" else ev.leaf_lbc(soc_pct=71.3)
    # 40× simulated time: the default drive's city and highway phases go by in seconds
    sim = Simulator("default", fast=True, time_scale=40.0, ecus=[*default_ecus(), ecu])
    sim.start()
    pairs: list[tuple[float, float]] = []

    async def publish(item: Any) -> None:
        for s in item if isinstance(item, Samples) else (item,):  # a poll round, or one item
            if isinstance(s, Sample) and s.name == "battery_soc":
                with ecu.battery.lock:  # the battery as the ECU last encoded it
                    pairs.append((s.value, ecu.battery.soc_pct))  # type: ignore[arg-type]

    try:
        if kind == "can":
            channel = f"obd-{uuid.uuid4().hex[:8]}"
            sim.serve_can(channel, interface="virtual")
            port = f"can:virtual:{channel}"
        else:
            port = sim.serve_pty().path
        cfg = AdapterConfig(port=port, timeout_s=2.0, reconnect_max_s=1.0, fast_baud=0)
        polling = PollingConfig(pids=["0D"])
        soc = next(p for p in shipped_profiles()[profile].pids if p.name == "battery_soc")
        custom = [dataclasses.replace(soc, rate_hz=5.0)]  # the profile's 0.2 Hz, faster for the test
        poller = Poller(cfg, polling, sessions=session_factory(cfg, polling, tmp_path), publish=publish,
                        custom=custom)
        assert await run_until(poller, lambda: len(pairs) >= 25 and pairs[0][1] - pairs[-1][1] > 0.6, 60), pairs[-3:]
    finally:
        sim.stop()
    for got, truth in pairs:
        assert abs(got - truth) <= RESOLUTION[profile] / 2 + 1e-9, (got, truth)
    assert pairs[-1][0] < pairs[0][0]  # the state of charge fell as the car drove
    assert poller.custom.counts["battery_soc"].out_of_range == 0
