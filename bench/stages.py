"""The pipeline's stages alone, in one process: µs of CPU per value, the per-sample way and the per-round way.

3,000 poll rounds of the six values the full-rate daemon polls (0C 0D 04 10 11 05, one ECU, 22 ms apart, a
speed that changes slowly so no event fires), through each stage the daemon runs them through after the parser:

* detection: ``DetectionEngine.feed`` per sample against ``feed_many`` per round (same outputs, tested);
* bus: ``Bus.publish`` of each sample to three subscribers (store, detection, console) against one publish per
  round (``Samples``) to subscribers that take rounds;
* store: ``Store.append`` of rounds and a flush (msgpack batch bodies, one SQLite commit);
* uplink: the DRUST Timeseries items of the stored bodies, and the MQTT uplink's messages for them (JSON).

    .venv/bin/python bench/stages.py [--rounds 3000] [--json]

Figures per value; the ratio column is per-sample over per-round where both exist.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

from gateway.bus import Bus
from gateway.common.samplebatch import pack_samples
from gateway.config import DetectionConfig, LocationConfig, MqttConfig, StoreConfig
from gateway.detection import DetectionEngine
from gateway.model import LinkState, Sample, Samples
from gateway.store import Store
from gateway.uplink.base import Record
from gateway.uplink.drust import timeseries_items
from gateway.uplink.mqtt import MqttUplink

NAMES = (("engine_rpm", 0x0C, "rpm"), ("speed", 0x0D, "km/h"), ("engine_load", 0x04, "%"), ("maf", 0x10, "g/s"),
         ("throttle_position", 0x11, "%"), ("engine_coolant_temperature", 0x05, "°C"))
T0 = 1_700_000_000_000


def rounds(n: int) -> list[Samples]:
    """``n`` poll rounds, 22 ms apart."""
    out = []
    for i in range(n):
        values = {0x0C: 800.0 + i % 97, 0x0D: 50.0 + (i // 20) % 3}
        out.append(Samples(Sample(T0 + i * 22, name, values.get(pid, float(i % 50) + 0.392), unit, pid, 0x7E8)
                           for name, pid, unit in NAMES))
    return out


def cpu_us(fn: Callable[[], Any], values: int) -> float:
    """µs of this process's CPU per value for one call of ``fn``."""
    c = time.process_time()
    fn()
    return (time.process_time() - c) / values * 1e6


def engine(work: Path, name: str) -> DetectionEngine:
    """A detection engine with its state file, after the ECU answered."""
    eng = DetectionEngine(DetectionConfig(), device_id="bench", car_id="car", state_path=work / f"{name}.json",
                          location=LocationConfig())
    eng.feed(LinkState(T0 - 1000, True, True, "6"))
    return eng


def detection(rs: list[Samples], work: Path) -> tuple[float, float]:
    """(per sample, per round) µs/value."""
    n = sum(len(r) for r in rs)
    one = engine(work, "one")
    many = engine(work, "many")
    per_sample = cpu_us(lambda: [one.feed(s) for r in rs for s in r], n)
    per_round = cpu_us(lambda: [many.feed_many([r]) for r in rs], n)
    return per_sample, per_round


def bus(rs: list[Samples]) -> tuple[float, float]:
    """(per sample, per round) µs/value: publish to three subscribers."""
    n = sum(len(r) for r in rs)

    async def run(batches: bool) -> float:
        b = Bus()
        b.subscribe("store", maxsize=100_000, lossless=True, batches=batches)
        b.subscribe("detection", maxsize=100_000, lossless=True, kinds=(Sample, LinkState), batches=batches)
        b.subscribe("console", maxsize=1000, batches=batches)
        c = time.process_time()
        if batches:
            for r in rs:
                await b.publish(r)
        else:
            for r in rs:
                for s in r:
                    await b.publish(s)
        return (time.process_time() - c) / n * 1e6

    return asyncio.run(run(False)), asyncio.run(run(True))


def store(rs: list[Samples], work: Path) -> float:
    """µs/value: append every round, flush."""
    n = sum(len(r) for r in rs)

    async def run() -> float:
        st = Store(StoreConfig(path=str(work / "stages.sqlite")), uplinks=["mqtt"])
        await st.open()
        c = time.process_time()
        for r in rs:
            await st.append([r])
        await st.flush()
        used = time.process_time() - c
        await st.close()
        return used / n * 1e6

    return asyncio.run(run())


def uplink(rs: list[Samples]) -> tuple[float, float]:
    """(DRUST items, MQTT messages) µs/value for 500-sample stored bodies."""
    flat = [s for r in rs for s in r]
    bodies = [pack_samples(flat[i : i + 500]) for i in range(0, len(flat), 500)]
    items = cpu_us(lambda: [timeseries_items(b) for b in bodies], len(flat))
    up = MqttUplink(MqttConfig(enabled=True, tls=False), device_id="bench")
    records = [Record(f"ts-{i}", "timeseries", T0, 500, raw=b) for i, b in enumerate(bodies)]
    mqtt = cpu_us(lambda: up._plan_batch(records), len(flat))
    return items, mqtt


def main() -> int:
    """Measure every stage and print a table (or one JSON object)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rs = rounds(args.rounds)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        det_one, det_round = detection(rs, work)
        bus_one, bus_round = bus(rs)
        store_us = store(rs, work)
    items_us, mqtt_us = uplink(rs)
    res = {"detection_feed_us": det_one, "detection_feed_many_us": det_round, "bus_per_sample_us": bus_one,
           "bus_per_round_us": bus_round, "store_us": store_us, "drust_items_us": items_us, "mqtt_json_us": mqtt_us}
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in res.items()}))
        return 0
    print(f"{'stage':32s} {'per sample':>11s} {'per round':>10s} {'ratio':>6s}  (µs of CPU per value)")
    print(f"{'detection':32s} {det_one:11.2f} {det_round:10.2f} {det_one / det_round:6.1f}")
    print(f"{'bus, 3 subscribers':32s} {bus_one:11.2f} {bus_round:10.2f} {bus_one / bus_round:6.1f}")
    print(f"{'store append + commit':32s} {'':11s} {store_us:10.2f}")
    print(f"{'DRUST items from stored bodies':32s} {'':11s} {items_us:10.2f}")
    print(f"{'MQTT messages (JSON)':32s} {'':11s} {mqtt_us:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
