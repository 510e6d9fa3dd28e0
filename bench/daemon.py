"""The whole daemon's CPU per value, memory and start-up, with the parser and the store alone as floors.

Against ``firmware_sim`` (genuine ELM327 personality, default timing: 38400 baud, 15 ms ECU latency) over a
pseudo-terminal, the real daemon (``python -m gateway run``) runs as its own process with the store on and
the MQTT uplink on to a mosquitto started here on a free loopback port (plain JSON, QoS 1), log level
WARNING, no console. Two runs, one after the other, each with a freshly started simulator:

* **default**: the default PID set at its default rates (the reference refresh-rate table) with a state
  directory that has no remembered protocol: ``cpu_percent_default`` (CPU seconds per wall second × 100),
  ``values_per_s_default``, ``time_to_first_value_cold_s`` (protocol search included);
* **full**: 0C, 0D, 04, 10, 11, 05 at 100 Hz each, more than the link carries, so the poller runs at the
  link's full rate (6-PID requests, ATBRD to 115200), started with the protocol the first run remembered:
  ``values_per_s``, ``cpu_us_per_value`` (utime + stime of the daemon process and its threads from
  ``/proc/PID/stat``, over the window, per value the poller delivered), ``rss_mb`` (VmRSS at the end),
  ``rss_peak_mb`` (VmHWM), ``time_to_first_value_s`` (process start → the first value, as the diagnostic
  socket reports it), ``mqtt_values_per_s`` (values a subscriber on the broker received in the window).

Floors, measured in this process in the same run: ``parser_us_per_value`` (the selected parser build
decoding the 6-PID answers the simulator sends), ``store_us_per_value`` (``Store.append`` + group commit
of the same values in the groups a poll round makes), ``uplink_us_per_value`` (forwarding stored batches
to the broker: lease, encode, publish, PUBACK, ack); ``cpu_vs_floor`` is ``cpu_us_per_value`` over their sum.
``exchange_floor_us_per_value``: the least an asyncio program spends per value on the link itself (write a 6-PID
request, sleep until about when the answer is whole, read to the prompt; no parsing: :func:`exchange_floor`).
``pump_floor_us_per_value``: the same exchanges through the link pump in 0.2 s bursts, as the daemon runs them
(:func:`pump_floor`). ``burst_share``: the share of the full run's requests the daemon sent in bursts of the link
pump (docs/link.md, "Bursts"). The CPU window closes before the last status request (answering one costs the
daemon tens of ms, a technician's command, not the pipeline).

    .venv/bin/python bench/daemon.py [--duration 30] [--warmup 5] [--json] [--profile FILE [--full-only]]
                                     [--components [--full-only]]

``--components``: the full run's daemon runs under ``bench/loop_accounting.py``; ``components_us_per_value``
gives the window's CPU per value by event-loop component (the task a callback steps) and by thread.

``--profile`` needs py-spy on the PATH (``pip install py-spy``; wheels for x86-64 and aarch64).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

import paho.mqtt.client as paho

from tests.fixtures.broker import Broker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from link import SimProcess  # bench/ is not a package: found through the path set just above

FULL_PIDS = ["0C", "0D", "04", "10", "11", "05"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_config(work: Path, port: str, broker: Broker, *, full: bool) -> Path:
    """The daemon's configuration for one run (state kept in ``work/state`` across runs)."""
    polling = ""
    if full:
        rates = ", ".join(f'"{p}" = 100.0' for p in FULL_PIDS)
        polling = f"[polling]\npids = {json.dumps(FULL_PIDS)}\nrates = {{ {rates} }}\n"
    text = f"""
[device]
id = "bench-box"
state_dir = "{work}/state"
[adapter]
port = "{port}"
[store]
path = "{work}/buffer.sqlite"
[mqtt]
enabled = true
host = "{broker.host}"
port = {broker.port}
tls = false
topic_prefix = "bench"
[diag]
socket = "{work}/diag.sock"
[log]
level = "WARNING"
{polling}"""
    path = work / ("full.toml" if full else "default.toml")
    path.write_text(text)
    return path


def diag_status(sock_path: Path) -> dict[str, Any] | None:
    """The daemon's status over its diagnostic socket; None while it is not answering yet."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(sock_path))
            s.sendall(b'{"cmd": "status", "id": 1}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    return None
                buf += chunk
    except OSError:
        return None
    reply = json.loads(buf)
    return reply.get("data") if reply.get("ok") else None


def cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` (every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid``: how often it went to sleep and woke again.

    On a virtual machine each wake-up costs the woken process 100-180 µs of CPU (measured here with
    ``asyncio.sleep(0.001)`` in a loop), more than the Python work of a whole poll round: the count
    explains most of ``cpu_us_per_value``."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def mem_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0]) / 1024
    return vals["VmRSS"], vals["VmHWM"]


class Subscriber:
    """Counts the values that reach the broker's timeseries topic (paho, its own thread)."""

    def __init__(self, broker: Broker) -> None:
        self.values = 0
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-sub")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("bench/+/timeseries", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        n = 0
        for item in json.loads(msg.payload)["items"]:
            n += sum(1 for k in item if k not in ("date", "ecu", "location"))
        with self.lock:
            self.values += n

    def count(self) -> int:
        with self.lock:
            return self.values

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_daemon(
    work: Path, broker: Broker, sub: Subscriber, *, full: bool, warmup: float, duration: float, profile: str = "",
    components: bool = False,
) -> dict[str, Any]:
    """One daemon run: start, wait for the first value, measure over the window, SIGTERM.

    ``profile``: also record the window with py-spy (collapsed stacks, one line per stack: ``--format raw``).
    ``components``: run the daemon under ``loop_accounting.py`` and report where the window's CPU went."""
    sim = SimProcess("genuine")
    cfg = write_config(work, sim.port, broker, full=full)
    sock = work / "diag.sock"
    started = time.monotonic()
    prefix = ["-m", "cProfile", "-o", os.environ["BENCH_CPROFILE"]] if full and os.environ.get("BENCH_CPROFILE") else []
    accounting = work / ("loop-full.jsonl" if full else "loop-default.jsonl")
    if components:
        prefix = [str(Path(__file__).resolve().parent / "loop_accounting.py"), str(accounting)]
    proc = subprocess.Popen(
        [sys.executable, *prefix, "-m", "gateway", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=open(work / ("full.log" if full else "default.log"), "w"),  # noqa: SIM115 (closed with the process)
    )
    try:
        first = None
        while time.monotonic() - started < 60:
            st = diag_status(sock)
            if st is not None and st["adapter"]["values"] > 0:
                first = time.monotonic() - started
                break
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited ({proc.returncode}); see {work}")
            time.sleep(0.02)
        if first is None:
            raise SystemExit("no value within 60 s")
        time.sleep(warmup)
        spy = None
        if profile:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--duration", str(int(duration)),
                                    "--rate", "1000", "--nonblocking", "--threads", "--format", "raw", "-o", profile],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        st0, c0, m0, t0 = diag_status(sock), cpu_s(proc.pid), sub.count(), time.monotonic()
        w0 = wakeups(proc.pid)
        time.sleep(duration)
        if spy is not None:
            spy.wait()
        # the CPU window closes before the last status request: answering one costs the daemon tens of ms
        # (a technician's command, not the pipeline), which the first one's reading leaves out as well
        c1, w1, m1, t1 = cpu_s(proc.pid), wakeups(proc.pid), sub.count(), time.monotonic()
        st1 = diag_status(sock)
        rss, hwm = mem_mb(proc.pid)
        assert st0 is not None and st1 is not None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sim.stop()
    values = st1["adapter"]["values"] - st0["adapter"]["values"]
    wall = t1 - t0
    cpu = c1 - c0
    return {
        "values_per_s": values / wall,
        "cpu_us_per_value": cpu / values * 1e6 if values else float("inf"),
        "cpu_percent": cpu / wall * 100,
        "wakeups_per_value": (w1 - w0) / values if values else float("inf"),
        "rss_mb": rss,
        "rss_peak_mb": hwm,
        "time_to_first_value_s": first,
        "mqtt_values_per_s": (m1 - m0) / wall,
        # the share of requests the link pump carried in bursts (docs/link.md, "Bursts")
        "burst_share": _burst_share(st0["adapter"], st1["adapter"]),
        "pump_build": st1["adapter"].get("bursts", {}).get("build", ""),
        **({"components": _components(accounting, t0, t1, values / wall)} if components else {}),
    }


def _components(path: Path, t0: float, t1: float, values_per_s: float) -> dict[str, dict[str, float]]:
    """µs of CPU per value by loop component and by thread, between the accounting lines nearest the window."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    inside = [x for x in lines if t0 <= x["t"] <= t1]
    if len(inside) < 2:
        return {}
    a, b = inside[0], inside[-1]
    per_value = 1e6 / ((b["t"] - a["t"]) * values_per_s)

    def diff(key: str, top: int) -> dict[str, float]:
        d = {k: (v - a[key].get(k, 0.0)) * per_value for k, v in b[key].items()}
        return {k: round(v, 2) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top] if v > 0}

    return {"loop": diff("handles", 12), "threads": diff("threads", 8)}


def _burst_share(a0: dict[str, Any], a1: dict[str, Any]) -> float:
    requests = a1["requests"] - a0["requests"]
    bursts0, bursts1 = a0.get("bursts", {}), a1.get("bursts", {})
    return (bursts1.get("requests", 0) - bursts0.get("requests", 0)) / requests if requests else 0.0


# -- floors -----------------------------------------------------------------------------------------
def parser_floor(rounds: int = 20_000) -> float:
    """µs per value: the selected parser decoding a 6-PID CAN answer (headers off, as the poller asks)."""
    from gateway.obd import parser

    # 0C 0D 04 10 11 05 from the engine ECU, headers on, no spaces: the bytes the simulated chip sends
    payload = bytes.fromhex("410C1AF80D32048010 01F4 11 33 05 7B".replace(" ", ""))
    frames = [bytes([0x10, len(payload)]) + payload[:6]]
    frames += [bytes([0x21 + i]) + payload[6 + 7 * i : 13 + 7 * i] for i in range((len(payload) - 6 + 6) // 7)]
    block = ("\r".join("7E8" + f.ljust(8, b"\0").hex().upper() for f in frames) + "\r\r").encode()
    n_values = len(parser.decode(block, headers=True, protocol=6))
    if n_values != len(FULL_PIDS):
        raise SystemExit(f"parser floor: {n_values} values decoded from {block!r}")
    t = time.perf_counter()
    for _ in range(rounds):
        parser.decode(block, headers=True, protocol=6)
    return (time.perf_counter() - t) / (rounds * n_values) * 1e6


INIT_LINES = (b"ATZ\r", b"ATE0\r", b"ATL0\r", b"ATS0\r", b"ATH0\r", b"ATSP6\r", b"ATSH7E0\r", b"0100\r")
REQUEST = b"010D0C040510111\r"


async def exchange_floor(duration_s: float = 8.0) -> float:
    """µs of CPU per value for the least an asyncio program can do per 6-PID exchange with the simulated chip.

    A fresh simulator (genuine, started at 115200 baud: the rate the daemon switches to with ATBRD), a few AT
    commands, then for ``duration_s``: write the
    request, sleep until 1 ms before the last answer's time (the daemon's settle, without the prediction), read
    to the prompt. No parsing, no session, no pipeline: one write and about one wake-up per exchange. Measured
    with ``time.thread_time`` (this thread only: the subscriber's paho thread is not counted).

    Writes raw bytes to the simulator's pty, past the daemon's write guard: never point this at a real adapter."""
    import serial

    sim = SimProcess("genuine", "--baud", "115200")
    ser = serial.Serial(sim.port, 115200, timeout=0)
    fd = ser.fileno()
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()

    async def exchange(line: bytes, settle_s: float = 0.0) -> None:
        os.write(fd, line)
        if settle_s > 0:
            await asyncio.sleep(settle_s)
        buf = b""
        while not buf.endswith(b">"):
            chunk = os.read(fd, 4096)  # a raw tty (VMIN=0) reads b"" when empty: then wait, never spin
            if chunk:
                buf += chunk
                continue
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_reader(fd)

    try:
        for line in INIT_LINES:
            await exchange(line)
        last, n = 1.0, 0
        for _ in range(10):
            t = time.monotonic()
            await exchange(REQUEST)
            last = min(last, time.monotonic() - t)
        c, end = time.thread_time(), time.monotonic() + duration_s
        while time.monotonic() < end:
            t = time.monotonic()
            await exchange(REQUEST, max(0.0, last - 0.001))
            last = min(last, time.monotonic() - t)
            n += 1
        used = time.thread_time() - c
    finally:
        ser.close()
        sim.stop()
    return used / (n * len(FULL_PIDS)) * 1e6


async def pump_floor(duration_s: float = 8.0, burst_s: float = 0.2) -> float:
    """µs of CPU per value for the link pump alone (the selected build), as the daemon runs it: bursts of
    ``burst_s`` of 6-PID requests in a worker thread, the event loop woken once per burst; no parsing.
    CPU of this thread and the worker (``time.thread_time`` in each). The same simulator set-up as
    :func:`exchange_floor`, and the same warning: raw bytes to the simulator only."""
    import serial

    from gateway.transport import pump

    sim = SimProcess("genuine", "--baud", "115200")
    ser = serial.Serial(sim.port, 115200, timeout=0)
    fd = ser.fileno()
    os.set_blocking(fd, False)
    halt = bytearray(1)

    def run(lines: list[bytes], settle: float) -> tuple[pump.Burst, float]:
        c = time.thread_time()
        got = pump.run(pump.pump, fd, lines, settles=[settle] * len(lines), wait_s=5.0, max_bytes=4096, halt=halt)
        return got, time.thread_time() - c

    try:
        with ThreadPoolExecutor(1) as worker:
            loop = asyncio.get_running_loop()
            for line in INIT_LINES:
                await loop.run_in_executor(worker, run, [line], 0.0)
            warm, _ = await loop.run_in_executor(worker, run, [REQUEST] * 10, 0.0)
            last = min(d - w for w, d in zip(warm.written, warm.done, strict=True))
            count = max(1, int(burst_s / last))
            n, used, c, end = 0, 0.0, time.thread_time(), time.monotonic() + duration_s
            while time.monotonic() < end:
                got, cpu = await loop.run_in_executor(worker, run, [REQUEST] * count, max(0.0, last - 0.001))
                n, used = n + len(got.answers), used + cpu
            used += time.thread_time() - c
    finally:
        ser.close()
        sim.stop()
    return used / (n * len(FULL_PIDS)) * 1e6


async def store_floor(work: Path, n: int = 120_000) -> float:
    """µs per value: Store.append of 6-value poll rounds, group commits, flush (CPU of this process)."""
    from gateway.config import StoreConfig
    from gateway.model import Sample
    from gateway.store import Store

    names = [("engine_rpm", 0x0C, "rpm"), ("speed", 0x0D, "km/h"), ("engine_load", 0x04, "%"),
             ("maf", 0x10, "g/s"), ("throttle_position", 0x11, "%"), ("engine_coolant_temperature", 0x05, "°C")]
    store = Store(StoreConfig(path=str(work / "floor.sqlite")), uplinks=["mqtt"])
    await store.open()
    t0 = 1_700_000_000_000
    rounds = [[Sample(t0 + i * 20, nm, float(i % 97), u, p, 0x7E8) for nm, p, u in names] for i in range(n // 6)]
    c = time.process_time()
    for r in rounds:
        await store.append(r)
    await store.flush()
    used = time.process_time() - c
    await store.close()
    return used / (len(rounds) * 6) * 1e6


async def uplink_floor(work: Path, broker: Broker) -> float:
    """µs per value: forwarding the floor store's backlog to the broker (this process's CPU)."""
    from gateway.config import MqttConfig, StoreConfig
    from gateway.store import Store
    from gateway.uplink.forwarder import Forwarder
    from gateway.uplink.mqtt import MqttUplink

    store = Store(StoreConfig(path=str(work / "floor.sqlite")), uplinks=["mqtt"])
    await store.open()
    total = store.stats()["queue"]["mqtt"]["samples"]
    uplink = MqttUplink(MqttConfig(enabled=True, host=broker.host, port=broker.port, tls=False,
                                   topic_prefix="floor"), device_id="floor")
    await uplink.connect()
    fwd = Forwarder(store, uplink, "mqtt")
    c = time.process_time()
    while fwd.sent_samples < total:
        await fwd.drain_once()
    used = time.process_time() - c
    await uplink.close()
    await store.close()
    return used / total * 1e6


def main() -> int:
    """Run both daemon runs and the floors; print a table (or one JSON object with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0, help="measurement window per run (s)")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after the first value before measuring")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", default="", help="record the full-rate window with py-spy into this file")
    ap.add_argument("--full-only", action="store_true", help="skip the default-rate run (profiling)")
    ap.add_argument("--components", action="store_true",
                    help="the full run under loop_accounting.py: CPU per value by loop component and thread")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from gateway.obd import PARSER_BUILD
    from gateway.transport.pump import PUMP_BUILD

    res: dict[str, Any] = {"parser_build": PARSER_BUILD, "pump_build": PUMP_BUILD, "duration_s": args.duration}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        broker = Broker(work / "mosquitto")
        broker.start()
        sub = Subscriber(broker)
        try:
            default = run_daemon(work, broker, sub, full=False, warmup=args.warmup,
                                 duration=5.0 if args.full_only else args.duration)
            full = run_daemon(work, broker, sub, full=True, warmup=args.warmup, duration=args.duration,
                              profile=args.profile, components=args.components)
            res["exchange_floor_us_per_value"] = asyncio.run(exchange_floor())
            res["pump_floor_us_per_value"] = asyncio.run(pump_floor())
            res["parser_us_per_value"] = parser_floor()
            res["store_us_per_value"] = asyncio.run(store_floor(work))
            res["uplink_us_per_value"] = asyncio.run(uplink_floor(work, broker))
        finally:
            sub.stop()
            broker.stop()
    res.update({k: full[k] for k in ("values_per_s", "cpu_us_per_value", "cpu_percent", "rss_mb", "rss_peak_mb",
                                      "time_to_first_value_s", "mqtt_values_per_s",
                                      "wakeups_per_value", "burst_share")})
    if args.components:
        res["components_us_per_value"] = full.get("components", {})
    res["cpu_percent_default"] = default["cpu_percent"]
    res["values_per_s_default"] = default["values_per_s"]
    res["cpu_us_per_value_default"] = default["cpu_us_per_value"]
    res["rss_mb_default"] = default["rss_mb"]
    res["time_to_first_value_cold_s"] = default["time_to_first_value_s"]
    floor = res["parser_us_per_value"] + res["store_us_per_value"] + res["uplink_us_per_value"]
    res["floor_us_per_value"] = floor
    res["cpu_vs_floor"] = res["cpu_us_per_value"] / floor
    if args.json:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))
        return 0
    print(f"parser build {PARSER_BUILD}; {args.duration:.0f} s windows after {args.warmup:.0f} s warm-up")
    print(f"full link rate   {res['values_per_s']:8.1f} values/s  {res['cpu_us_per_value']:7.1f} µs CPU/value  "
          f"{res['cpu_percent']:5.1f} % CPU  RSS {res['rss_mb']:.1f} MB (peak {res['rss_peak_mb']:.1f})")
    print(f"                 {res['mqtt_values_per_s']:8.1f} values/s reached the broker; "
          f"{res['wakeups_per_value']:.2f} wake-ups per value; {res['burst_share'] * 100:.0f} % of requests in bursts")
    print(f"default rates    {res['values_per_s_default']:8.1f} values/s  "
          f"{res['cpu_us_per_value_default']:7.1f} µs CPU/value  {res['cpu_percent_default']:5.1f} % CPU  "
          f"RSS {res['rss_mb_default']:.1f} MB")
    print(f"first value      {res['time_to_first_value_s']:.2f} s with a remembered protocol, "
          f"{res['time_to_first_value_cold_s']:.2f} s searching")
    print(f"floors per value parser {res['parser_us_per_value']:.2f} µs, store {res['store_us_per_value']:.2f} µs, "
          f"uplink {res['uplink_us_per_value']:.2f} µs; daemon / floor = {res['cpu_vs_floor']:.1f}×")
    print(f"                 a bare asyncio exchange loop (write, sleep, read to '>'): "
          f"{res['exchange_floor_us_per_value']:.1f} µs/value; daemon / that = "
          f"{res['cpu_us_per_value'] / res['exchange_floor_us_per_value']:.1f}×")
    print(f"                 the link pump alone ({res['pump_build']} build, 0.2 s bursts): "
          f"{res['pump_floor_us_per_value']:.1f} µs/value; daemon / that = "
          f"{res['cpu_us_per_value'] / res['pump_floor_us_per_value']:.1f}×")
    for part, figures in res.get("components_us_per_value", {}).items():
        print(f"by {part:<14} " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()) + " (µs/value)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
