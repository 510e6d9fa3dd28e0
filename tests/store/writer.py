"""A writer process for the kill/restart tests: a simulated drive into the store, drained by forwarders.

``python -m tests.store.writer --db FILE --run ID [--mqtt-port P] [--https-url U --ca CA --secrets DIR]
[--no-drive]`` appends samples (100 Hz, 4 values), an event every 0.2 s and a trip every 0.5 s with
ids prefixed by ``ID``, and runs one forwarder per uplink, until SIGTERM (graceful: flush and exit 0) or
SIGKILL (the point of the test). ``--no-drive`` only drains.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from pathlib import Path

from gateway.config import HttpsConfig, MqttConfig, StoreConfig
from gateway.model import Event, Sample, TripRecord
from gateway.store import Store
from gateway.uplink.base import Uplink
from gateway.uplink.forwarder import Forwarder


async def drive(store: Store, run: str) -> None:
    """Append a drive forever: 10 ms ticks of 4 values, events and trips with ids prefixed by ``run``."""
    n = 0
    while True:
        now = int(time.time() * 1000)
        items: list[Sample | Event | TripRecord] = [
            Sample(now, "speed", float(n % 130), "km/h", 0x0D, 0x7E8),
            Sample(now, "engine_rpm", 800.0 + n % 3000, "rpm", 0x0C, 0x7E8),
            Sample(now, "engine_coolant_temperature", 90.0, "°C", 0x05, 0x7E8),
            Sample(now, "battery_voltage", 13.8, "V", None, 0),
        ]
        if n % 20 == 0:
            items.append(Event(f"{run}-ev-{n}", "HARD_BRAKE", "notification:hard_brake", now, f"{run}-trip-{n // 50}",
                               {"n": n, "speed_drop_kmh": 12.5}))
        if n % 50 == 49:
            items.append(TripRecord(f"{run}-trip-{n // 50}", now - 990, now, {"distance": float(n), "idle": n % 7}))
        await store.append(items)
        n += 1
        await asyncio.sleep(0.01)


async def amain(args: argparse.Namespace) -> int:
    """Run until SIGTERM."""
    uplinks: dict[str, Uplink] = {}
    if args.mqtt_port:
        from gateway.uplink.mqtt import MqttUplink

        mcfg = MqttConfig(enabled=True, host="127.0.0.1", port=args.mqtt_port, tls=False, protocol="5",
                          batch_samples=100)
        uplinks["mqtt"] = MqttUplink(mcfg, device_id="dev-k", connect_timeout_s=1.0, publish_timeout_s=3.0)
    if args.https_url:
        from gateway.uplink.https import HttpsUplink

        sec = Path(args.secrets)
        hcfg = HttpsConfig(enabled=True, base_url=args.https_url, client_id="myclientid",
                           client_secret_file=str(sec / "secret"), username="myemail@example.com",
                           password_file=str(sec / "password"), token_file=str(sec / "token.json"),
                           ca_file=args.ca, timeout_s=3.0)
        uplinks["https"] = HttpsUplink(hcfg, device_id="dev-k", car_id="car-k")
    store = Store(StoreConfig(path=args.db, commit_interval_s=0.1, batch_samples=200), uplinks=list(uplinks))
    await store.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(Forwarder(store, up, name, max_backoff_s=0.3).run()) for name, up in uplinks.items()]
    if not args.no_drive:
        tasks.append(asyncio.create_task(drive(store, args.run)))
    print("ready", flush=True)
    await stop.wait()
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    await store.close()
    return 0


def main() -> None:
    """Entry point."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--run", default="r0")
    ap.add_argument("--mqtt-port", type=int, default=0)
    ap.add_argument("--https-url", default="")
    ap.add_argument("--ca", default="")
    ap.add_argument("--secrets", default="")
    ap.add_argument("--no-drive", action="store_true")
    raise SystemExit(asyncio.run(amain(ap.parse_args())))


if __name__ == "__main__":
    main()
