"""Store-and-forward throughput and SD-card wear, with the plain baselines in the same run.

* **ingest**: ``Store.append`` of samples in groups of ``--group`` (as the daemon's store loop hands them
  over), batched into msgpack rows and group-committed, until ``flush()`` returns; baseline: plain
  ``sqlite3`` inserting the same samples as batched msgpack rows (``executemany`` + one commit per batch
  group), no store logic;
* **drain**: a backlog of ``--drain-samples`` samples forwarded to a local mosquitto (started here on a
  free port) by ``Forwarder`` + ``MqttUplink`` (QoS 1, JSON, 100 items per message); baseline: paho-mqtt
  publishing the same number of four-field rows in 100-row JSON QoS 1 messages;
* **bytes_per_sample**: pages in use in the database file / samples stored;
* **drain_8h_s**: samples of an 8-hour drive at the default PID set and rates (+ battery voltage at
  1 Hz) / measured drain rate;
* **disk_bytes_per_hour**: one hour of driving at the default rates, time-compressed: one group commit
  per simulated second, a checkpoint per simulated minute (the defaults), bytes counted by the store
  (WAL frames + checkpointed frames, an upper bound) and by the kernel (the process's ``write_bytes`` from
  /proc, reported as ``disk_bytes_per_hour`` when available).

    .venv/bin/python bench/store.py [--samples 1000000] [--drain-samples 300000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

import msgpack
import paho.mqtt.client as paho

from gateway.config import MqttConfig, PollingConfig, StoreConfig
from gateway.model import Sample
from gateway.obd import pids
from gateway.store import Store
from gateway.uplink.forwarder import Forwarder
from gateway.uplink.mqtt import MqttUplink
from tests.fixtures.broker import Broker

NAMES = ("engine_rpm", "speed", "engine_coolant_temperature", "engine_load", "maf", "throttle_position")


def make_samples(n: int, t0: int = 1_700_000_000_000) -> list[Sample]:
    """A drive: six PIDs in turn, one sample every 10 ms, realistic values (some whole, some not)."""
    out = []
    for i in range(n):
        name = NAMES[i % 6]
        v: float = (800 + (i % 5000) * 0.25) if name == "engine_rpm" else float(i % 130) if name == "speed" else (
            (i % 1000) * 0.392)
        out.append(Sample(t0 + i * 10, name, v, "", 0x0C, 0x7E8))
    return out


def default_rate_hz() -> float:
    """Samples per second of the default polling set at the reference rates, plus ATRV at 1 Hz."""
    total = 1.0
    for p in PollingConfig().pids:
        pid = pids.PIDS[int(p, 16)]
        total += (pid.rate_hz or 0.0) * len(pid.fields)
    return total


async def bench_ingest(samples: list[Sample], group: int, workdir: Path) -> dict[str, float]:
    store = Store(StoreConfig(path=str(workdir / "ingest.sqlite"), max_mb=4096), uplinks=["mqtt"])
    await store.open()
    t = time.perf_counter()
    for i in range(0, len(samples), group):
        await store.append(samples[i : i + group])
        if i % (group * 50) == 0:
            await asyncio.sleep(0)  # let the group-commit task run as it would in the daemon
    await store.flush()
    dt = time.perf_counter() - t
    used = store.stats()["db_bytes"]
    await store.close()
    return {"ingest_samples_per_s": len(samples) / dt, "bytes_per_sample": used / len(samples)}


def bench_sqlite_baseline(samples: list[Sample], workdir: Path, batch: int = 500) -> float:
    db = sqlite3.connect(workdir / "baseline.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, ts INTEGER, body BLOB)")
    t = time.perf_counter()
    rows = []
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        rows.append((chunk[0].ts_ms, msgpack.packb([(s.ts_ms, s.name, s.value) for s in chunk])))
        if len(rows) >= 200:
            db.executemany("INSERT INTO t(ts, body) VALUES (?, ?)", rows)
            db.commit()
            rows = []
    db.executemany("INSERT INTO t(ts, body) VALUES (?, ?)", rows)
    db.commit()
    dt = time.perf_counter() - t
    db.close()
    return len(samples) / dt


async def bench_drain(samples: list[Sample], broker: Broker, workdir: Path) -> float:
    store = Store(StoreConfig(path=str(workdir / "drain.sqlite"), max_mb=4096), uplinks=["mqtt"])
    await store.open()
    for i in range(0, len(samples), 1000):
        await store.append(samples[i : i + 1000])
    await store.flush()
    up = MqttUplink(MqttConfig(enabled=True, host=broker.host, port=broker.port, tls=False, batch_samples=100),
                    device_id="bench")
    fwd = Forwarder(store, up, "mqtt")
    t = time.perf_counter()
    task = asyncio.create_task(fwd.run())
    while store.stats()["queue"]["mqtt"]["records"]:  # noqa: ASYNC110 - the counter is what we time
        await asyncio.sleep(0.005)
    dt = time.perf_counter() - t
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await store.close()
    return fwd.sent_samples / dt


def bench_paho_baseline(n_rows: int, broker: Broker) -> float:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-baseline")
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    rows = [{"date": 1_700_000_000_000 + i * 10, "speed": i % 130, "engine_rpm": 800 + i % 3000,
             "engine_load": 40.5} for i in range(n_rows)]
    t = time.perf_counter()
    infos = []
    for i in range(0, n_rows, 100):
        payload = json.dumps({"items": rows[i : i + 100]}, separators=(",", ":"))
        infos.append(client.publish("bench/baseline", payload, qos=1))
    for info in infos:
        info.wait_for_publish(30)
    dt = time.perf_counter() - t
    client.loop_stop()
    client.disconnect()
    return n_rows / dt


def _proc_write_bytes() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def bench_wear(workdir: Path, minutes: int, commit_every_s: int = 1) -> dict[str, float]:
    """Time-compressed driving: per simulated second one append of that second's samples + one commit."""
    rate = default_rate_hz()
    store = Store(StoreConfig(path=str(workdir / "wear.sqlite")), uplinks=["mqtt", "https"])
    await store.open()
    t0 = 1_700_000_000_000
    per_s = max(1, round(rate))
    await store.checkpoint()
    base_store = store.stats()["bytes_written"]
    base_proc = _proc_write_bytes()
    for sec in range(minutes * 60):
        await store.append([Sample(t0 + sec * 1000 + k * (1000 // per_s), NAMES[k % 6], 800.25 + k, "", 0x0C)
                            for k in range(per_s)])
        if sec % commit_every_s == commit_every_s - 1:
            await store.flush()
        if sec % 60 == 59:
            await store.checkpoint()
    written = store.stats()["bytes_written"] - base_store
    proc = _proc_write_bytes() - base_proc
    await store.close()
    factor = 60 / minutes
    # the kernel's count is what reaches the card; the store's own count is the fallback (and an upper bound)
    return {"disk_bytes_per_hour": (proc or written) * factor, "store_bytes_written_per_hour": written * factor,
            "proc_write_bytes_per_hour": proc * factor, "default_samples_per_s": rate}


def main() -> None:
    """Run every measurement and print them (or one JSON object)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--drain-samples", type=int, default=300_000)
    ap.add_argument("--group", type=int, default=100)
    ap.add_argument("--wear-minutes", type=int, default=10)
    ap.add_argument("--commit-interval", type=int, default=1, help="simulated store.commit_interval_s for wear")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        samples = make_samples(args.samples)
        res.update(asyncio.run(bench_ingest(samples, args.group, work)))
        res["sqlite_baseline_samples_per_s"] = bench_sqlite_baseline(samples, work)
        broker = Broker(work / "mosquitto")
        broker.start()
        try:
            res["drain_samples_per_s"] = asyncio.run(bench_drain(samples[: args.drain_samples], broker, work))
            res["paho_baseline_rows_per_s"] = bench_paho_baseline(args.drain_samples // 4 * 4 // 4, broker)
        finally:
            broker.stop()
        res.update(asyncio.run(bench_wear(work, args.wear_minutes, args.commit_interval)))
    rate = res["default_samples_per_s"]
    res["drain_8h_s"] = rate * 8 * 3600 / res["drain_samples_per_s"]
    res["ingest_vs_sqlite_baseline"] = res["ingest_samples_per_s"] / res["sqlite_baseline_samples_per_s"]
    # a baseline row carries four values: compare samples with samples
    res["drain_vs_paho_baseline"] = res["drain_samples_per_s"] / (res["paho_baseline_rows_per_s"] * 4)
    if args.json:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))
        return
    print(f"ingest            {res['ingest_samples_per_s']:>12,.0f} samples/s  (target >= 200,000)")
    print(f"  plain sqlite3+msgpack {res['sqlite_baseline_samples_per_s']:>12,.0f} samples/s  "
          f"ratio {res['ingest_vs_sqlite_baseline']:.2f}")
    print(f"drain to mosquitto {res['drain_samples_per_s']:>12,.0f} samples/s  (target >= 100,000)")
    print(f"  raw paho publish {res['paho_baseline_rows_per_s']:>12,.0f} four-field rows/s "
          f"({res['paho_baseline_rows_per_s'] * 4:,.0f} values/s)  ratio {res['drain_vs_paho_baseline']:.2f}")
    print(f"bytes on disk per sample  {res['bytes_per_sample']:.2f}")
    print(f"default rates      {rate:.2f} samples/s; 8-hour backlog drains in {res['drain_8h_s']:.1f} s")
    print(f"disk bytes written per hour of driving  {res['disk_bytes_per_hour'] / 1e6:.2f} MB "
          f"(/proc write_bytes {res['proc_write_bytes_per_hour'] / 1e6:.2f} MB, "
          f"store's upper-bound count {res['store_bytes_written_per_hour'] / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
