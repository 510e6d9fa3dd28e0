"""Bytes a subscriber receives per hour of driving, per MQTT payload format, through the real daemon.

For each format: a mosquitto started here on a free loopback port, ``obd-gateway run --sim`` (the real
daemon, the simulated ELM327 and car with ``--time-scale``: ``--seconds`` of real time cover
``seconds × time-scale`` simulated seconds, one hour by default) at the default PID set and rates, and a
paho subscriber counting every byte (topic + payload) the box publishes on ``P/D/#`` (timeseries, events,
trips, state, availability). The daemon polls at its real rates while the car's values change
``time-scale`` times faster than on a road: a pessimistic case for the change filter and compression.

* ``bytes_per_driving_hour``: subscriber bytes × 3600 / real seconds of the run (the daemon's rates are
  real-time rates).
* ``cpu_s_per_driving_hour``: the daemon process's user+system CPU (``/proc/<pid>/stat``, the simulator
  child excluded) × 3600 / real seconds.
* ``changed_missing``: every sample the store kept whose value differs from the previous one of its series
  (name, ECU) is looked up, decoded at the subscriber, by (time, name, ECU, value); those missing are
  counted (must be 0). The store keeps every row because a second, unreachable HTTPS uplink holds its
  cursor (``127.0.0.1:9``), so nothing is garbage-collected before the comparison.

Formats: ``json-every`` (today's: JSON, every sample: ``on_change = "none"``), ``json``, ``msgpack``,
``columnar``, ``columnar-zlib``, ``columnar-zstd`` (``on_change = "status"``, the default).

    .venv/bin/python bench/uplink.py [--seconds 60] [--time-scale 60] [--formats json,columnar-zlib] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

import paho.mqtt.client as paho

from gateway.common import vocabulary
from gateway.common.samplebatch import unpack_samples
from gateway.uplink import payload
from tests.fixtures.broker import Broker

FORMATS = {
    # name: (payload_format, compression, on_change, linger_s)
    "json-every": ("json", "none", "none", 0.0),
    "json": ("json", "none", "status", 0.0),
    "msgpack": ("msgpack", "none", "status", 0.0),
    "columnar": ("columnar", "none", "status", 0.0),
    "columnar-zlib": ("columnar", "zlib", "status", 0.0),
    "columnar-zstd": ("columnar", "zstd", "status", 0.0),
    "columnar-zlib-linger30": ("columnar", "zlib", "status", 30.0),
    "columnar-zstd-linger30": ("columnar", "zstd", "status", 30.0),
}
ENGINE = (0, 0x7E8)


class Subscriber:
    """paho, QoS 1: every message on ``P/D/#`` with its size."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.msgs: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        ready = threading.Event()
        self.c.on_connect = lambda c, *a: (c.subscribe(topic, qos=1), ready.set())
        self.c.on_message = self._on
        self.c.connect(host, port)
        self.c.loop_start()
        if not ready.wait(10):
            raise RuntimeError("subscriber could not connect")

    def _on(self, _c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        with self.lock:
            self.msgs.append((m.topic, bytes(m.payload)))

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def received_samples(msgs: list[tuple[str, bytes]], base: str, encoding: str) -> tuple[set[tuple[Any, ...]], set[str]]:
    """(ts, name, ecu or None, value) of every sample decoded at the subscriber, and the batch ids seen."""
    got: set[tuple[Any, ...]] = set()
    ids: set[str] = set()
    for topic, body in msgs:
        if not topic.startswith(f"{base}/timeseries"):
            continue
        obj = payload.decode_payload(body, encoding)
        ids.update(obj["ids"] if "ids" in obj else [obj["id"]])
        if "series" in obj:
            for r in payload.decode_columnar(obj):
                ecu = None if r["ecu"] in (None, "7E8") else r["ecu"]
                got.add((r["ts"], r["name"], ecu, _key(r["value"])))
            continue
        for item in obj["items"]:
            ecu = item.get("ecu")
            for k, v in item.items():
                if k not in ("date", "ecu", "location"):
                    got.add((item["date"], k, ecu, _key(v)))
    return got, ids


def _key(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_key(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _key(x)) for k, x in v.items()))
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def run_one(name: str, seconds: float, time_scale: float, workdir: Path) -> dict[str, Any]:
    """One format: broker, daemon + simulator, subscriber; the figures of the module docstring."""
    fmt, comp, on_change, linger = FORMATS[name]
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Broker(workdir / "mosquitto")
    broker.start()
    dev = "bench-box"
    base = f"obd/{dev}"
    sub = Subscriber(broker.host, broker.port, f"{base}/#")
    cfg = workdir / "gateway.toml"
    cfg.write_text(
        f'[device]\nid = "{dev}"\nstate_dir = "{workdir}/state"\n'
        '[adapter]\nport = "sim"\nprotocol = "6"\n'
        f'[store]\npath = "{workdir}/buffer.sqlite"\n'
        f'[diag]\nsocket = "{workdir}/diag.sock"\n'
        '[log]\nlevel = "WARNING"\nconsole = false\n'
        f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\ntls = false\n'
        f'payload_format = "{fmt}"\ncompression = "{comp}"\non_change = "{on_change}"\nlinger_s = {linger}\n'
        # a second uplink that never delivers keeps every row in the store for the comparison
        '[https]\nenabled = true\nbase_url = "https://127.0.0.1:9"\nclient_id = "bench"\n'
        f'token_file = "{workdir}/token.json"\n'
    )
    exe = Path(sys.executable).parent / "obd-gateway"
    argv = [str(exe), "run", "--config", str(cfg), "--sim", "--sim-args", f"--time-scale {time_scale}"]
    with (workdir / "daemon.log").open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    try:
        t0 = time.monotonic()
        cpu0 = cpu_s(proc.pid)
        time.sleep(seconds)  # lingering rows still in the store at the end are not counted as received
        elapsed = time.monotonic() - t0
        cpu = cpu_s(proc.pid) - cpu0
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        time.sleep(1.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
        broker.stop()
    msgs = sub.msgs
    # timeseries, state and availability come at the daemon's real-time rates; events and trips at the
    # simulated car's pace (time_scale times faster than real): scale each by its own clock
    ts_bytes = sum(len(t) + len(p) for t, p in msgs if t.startswith(f"{base}/timeseries"))
    sim_bytes = sum(len(t) + len(p) for t, p in msgs if t.startswith((f"{base}/events/", f"{base}/trips")))
    real_bytes = sum(len(t) + len(p) for t, p in msgs) - sim_bytes
    got, ids = received_samples(msgs, base, payload.encoding_name(fmt, comp))
    if not (workdir / "buffer.sqlite").exists():
        log = (workdir / "daemon.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the daemon stored nothing; its log ends with:\n{log}")
    con = sqlite3.connect(workdir / "buffer.sqlite")
    rows = con.execute("SELECT id, body FROM outbox WHERE kind = 0 ORDER BY seq").fetchall()
    con.close()
    last: dict[tuple[str, int], Any] = {}
    changed = missing = samples = samples_received = 0
    for rid, body in rows:
        for s in unpack_samples(body):
            samples += 1
            samples_received += rid in ids
            key = (s.name, s.ecu)
            prev = last.get(key, ())
            last[key] = (_key(vocabulary.value(s.name, s.value)),)
            if prev == (_key(vocabulary.value(s.name, s.value)),) or rid not in ids:
                continue
            changed += 1
            ecu = None if s.ecu in ENGINE else format(s.ecu, "X")
            if (s.ts_ms, s.name, ecu, _key(vocabulary.value(s.name, s.value))) not in got:
                missing += 1
    scale = 3600.0 / elapsed
    sim_scale = 3600.0 / (elapsed * time_scale)
    # rows still in the store at the end (lingering, or the last second) are not at the subscriber:
    # count the timeseries bytes per sample delivered, times the samples the daemon stored
    ts_per_hour = ts_bytes * scale * (samples / samples_received) if samples_received else 0.0
    return {
        "format": name,
        "real_s": round(elapsed, 1),
        "simulated_s": round(elapsed * time_scale),
        "samples_stored": samples,
        "records_stored": len(rows),
        "records_received": len(ids & {r for r, _b in rows}),
        "changed_values_checked": changed,
        "changed_missing": missing,
        "bytes_per_driving_hour": round((real_bytes - ts_bytes) * scale + ts_per_hour + sim_bytes * sim_scale),
        "events_trips_bytes_per_driving_hour": round(sim_bytes * sim_scale),
        "samples_received": samples_received,
        "timeseries_bytes_per_driving_hour": round(ts_per_hour),
        "cpu_s_per_driving_hour": round(cpu * scale, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="real seconds per format (default 60)")
    ap.add_argument("--time-scale", type=float, default=60.0, help="simulated seconds per real second (60)")
    ap.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, of {', '.join(FORMATS)}")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    names = [n.strip() for n in args.formats.split(",") if n.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad:
        print(f"bench/uplink.py: unknown format(s) {', '.join(bad)}", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-uplink-") as tmp:
        for n in names:
            results.append(run_one(n, args.seconds, args.time_scale, Path(tmp) / n))
            if not args.json:
                print(json.dumps(results[-1]), flush=True)
    ref = next((r["bytes_per_driving_hour"] for r in results if r["format"] == "json-every"), None)
    for r in results:
        b = r["bytes_per_driving_hour"]
        r["ratio_vs_json_every"] = round(ref / b, 1) if ref and b else None
    out = {"seconds": args.seconds, "time_scale": args.time_scale, "formats": results}
    print(json.dumps(out, indent=None if args.json else 2))
    return 0 if all(r["changed_missing"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
