"""Issue 13's robustness points that need no daemon: no fix for minutes, and bad input with memory flat.

* No fix for minutes runs on simulated time: a real :class:`NmeaSource` reads a real pty to which the
  test writes the simulated car's NMEA one simulated second at a time — epochs with a fix, then minutes
  of a receiver that talks but has lost its fix (GGA quality 0, RMC ``V``: ``firmware_sim.gps.nmea_no_fix``)
  — while the vehicle's speed and RPM keep flowing into the detection engine as samples.
* Memory flat: megabytes of garbage into the NMEA receiver (a pty) and of huge / malformed JSON lines
  into the gpsd client (a real socket), the peak of Python allocations measured with tracemalloc.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import sys
import termios
import tracemalloc
import tty
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.drive import load_drive
from firmware_sim.gps import Fix, GpsTrack, load_route, nmea_epoch, nmea_no_fix
from firmware_sim.vehicle import Vehicle
from gateway.config import DetectionConfig, LocationConfig
from gateway.detection import DetectionEngine
from gateway.location import geo
from gateway.location.gpsd import GpsdSource
from gateway.location.nmea import NmeaSource
from gateway.model import Event, Position, Sample, TripRecord

START_MS = 1_700_000_000_000

# ~5 min: 50 km/h for four minutes on a straight road, stop, key off.
LONG_DRIVE = """
name = "long_straight"
description = "four minutes at 50 km/h"
repeat = false
[vehicle]
vin = "JHMCM56557C404453"
odometer_km = 3000.0
[route]
start = [45.0, 7.0]
heading = 45.0
[[phase]]
kind = "ignition_on"
crank_s = 1.0
[[phase]]
kind = "idle"
duration = 3
[[phase]]
kind = "accelerate"
to = 50
rate = 5
[[phase]]
kind = "cruise"
duration = 240
[[phase]]
kind = "brake"
to = 0
rate = 8
[[phase]]
kind = "idle"
duration = 5
[[phase]]
kind = "ignition_off"
"""


def open_pty() -> tuple[int, str]:
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    path = os.ttyname(slave)
    os.close(slave)  # the source opens the slave by name, like a receiver's /dev/ttyACM0
    os.set_blocking(master, False)  # the reader runs in the test's own loop: a full pty must not block it
    return master, path


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def write_all(fd: int, data: bytes) -> None:
    """A short write to the pty (an epoch is ~300 bytes; the reader drains between epochs)."""
    assert os.write(fd, data) == len(data)


async def wait_for(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.005)


async def test_no_fix_for_minutes_samples_continue_and_trip_keeps_last_good_end(tmp_path: Path) -> None:
    drive_file = tmp_path / "long.toml"
    drive_file.write_text(LONG_DRIVE)
    vehicle = Vehicle(load_drive(str(drive_file)), seed=3, start_ms=START_MS)
    track = GpsTrack(vehicle, load_route(str(drive_file)))
    master, path = open_pty()
    got: asyncio.Queue[Position] = asyncio.Queue()

    async def publish(p: object) -> None:
        assert isinstance(p, Position)
        await got.put(p)

    # rate_hz 20: the source's rate limit runs on the gateway's clock; epochs are paced to pass it
    src = NmeaSource(LocationConfig(source=f"nmea:{path}", rate_hz=20), publish)
    task = asyncio.create_task(src.run())
    engine = DetectionEngine(DetectionConfig(), device_id="t", location=LocationConfig())
    out: list[Event | TripRecord] = []
    truth: dict[int, Fix] = {}
    # fixes for the first minute, none for 140 s (over two minutes), 30 s of fixes, none until the end
    has_fix = [t < 60 or 200 <= t < 230 for t in range(400)]
    samples_fed = 0
    no_fix_epochs = 0
    last_t = 0
    try:
        await wait_for(lambda: src.connected)
        for t in range(400):
            ms = START_MS + t * 1000
            vehicle.advance_to(ms)
            st = vehicle.state
            fix = truth[t] = track.fix(ms)
            if has_fix[t]:
                write_all(master, nmea_epoch(fix, in_view=12).encode())
                pos = await asyncio.wait_for(got.get(), 5.0)
                assert pos.gps_ms == ms
                out += engine.feed(dataclasses.replace(pos, ts_ms=pos.gps_ms))  # simulated time
                await asyncio.sleep(0.055)  # past the 20 Hz rate limit on the gateway's clock
            else:
                write_all(master, nmea_no_fix(ms).encode())
                no_fix_epochs += 1
                await asyncio.sleep(0.002)
            # the car's samples never stop, fix or no fix (the engine confirms ignition-off on 0 RPM)
            for item in (Sample(ms, "engine_rpm", st.rpm if st.engine_running else 0.0),
                         Sample(ms, "speed", st.speed_kmh)):
                out += engine.feed(item)
                samples_fed += 1
            last_t = t
            if any(isinstance(o, TripRecord) for o in out):
                break
        await wait_for(lambda: src.counters.counts.get("no_fix", 0) >= no_fix_epochs - 1)
        assert got.empty(), "a no-fix epoch must not produce a position"
        assert not task.done(), "the source keeps running"
    finally:
        await stop(task)
        os.close(master)
    assert last_t > 300 and samples_fed == 2 * (last_t + 1)
    trips = [o for o in out if isinstance(o, TripRecord)]
    assert len(trips) == 1, [getattr(o, "type", o) for o in out]
    trip = trips[0].to_dict()
    # the last good fix is the one of t = 229; the trip ended minutes later without one
    end = trip["end_location"]
    assert (end["lat"], end["lon"]) == pytest.approx((truth[229].lat, truth[229].lon), abs=1e-6)
    start = trip["start_location"]
    assert geo.distance_m((start["lat"], start["lon"]), (truth[0].lat, truth[0].lon)) < 2
    assert trip["path"]
    # the speed PID integrates the whole drive; the GPS distance only where there were fixes (gaps skipped)
    whole = truth[last_t].distance_m
    with_fix = (truth[59].distance_m - truth[0].distance_m) + (truth[229].distance_m - truth[200].distance_m)
    assert trip["distance"] == pytest.approx(whole, rel=0.03)
    assert trip["distance_gps_m"] == pytest.approx(with_fix, rel=0.03)
    events = [o for o in out if isinstance(o, Event)]
    # events while the fix is lost (more than event_max_age_s after the last good one) carry no location
    for ev in events:
        t = (ev.date_ms - START_MS) // 1000
        fresh = any(has_fix[s] for s in range(max(0, t - 5), t + 1))
        assert ("location" in ev.payload) == fresh, (ev.type, t, ev.payload.get("location"))
    stopped = [ev for ev in events if ev.type in ("STOPPED", "IGNITION_OFF")]
    assert stopped and all("location" not in ev.payload for ev in stopped)
    updates = [(ev.date_ms - START_MS) // 1000 for ev in events if ev.type == "LOCATION_UPDATED"]
    assert updates and all(has_fix[t] for t in updates)  # no heartbeat without a fix


def garbage_chunks(total: int, seed: int = 5) -> list[bytes]:
    """Binary noise, endless lines, bad checksums, truncated sentences and out-of-range positions."""
    rng = random.Random(seed)
    kinds = [
        lambda: rng.randbytes(4096),
        lambda: b"$GPGGA," + b"9" * 4000,  # a sentence that never ends
        lambda: b"$GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*00\r\n" * 40,
        lambda: b"$GPRMC,1235\r\n" * 200,
        lambda: b"$GPGGA,123519.00,9907.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*7F\r\n" * 40,
    ]
    # a receiver stuck mid-sentence: 2 MiB without a line end
    out: list[bytes] = [b"$GPGGA," + b"1234567," * (256 * 1024) + b"\r\n"]
    n = sum(map(len, out))
    while n < total:
        chunk = kinds[rng.randrange(len(kinds))]()
        out.append(chunk)
        n += len(chunk)
    return out


async def test_nmea_receiver_memory_flat_under_megabytes_of_garbage() -> None:
    master, path = open_pty()
    got: list[object] = []

    async def publish(p: object) -> None:
        got.append(p)

    src = NmeaSource(LocationConfig(source=f"nmea:{path}"), publish)
    task = asyncio.create_task(src.run())
    total = 8 * 1024 * 1024
    chunks = garbage_chunks(total)  # built before measuring: only the receiver's allocations count
    try:
        await wait_for(lambda: src.connected)
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(master, view):]
                except BlockingIOError:
                    await asyncio.sleep(0.001)  # the pty is full: let the reader (same loop) drain it
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert not task.done()
    finally:
        await stop(task)
        os.close(master)
    counts = src.counters.counts
    print(f"nmea: {total} bytes of garbage, tracemalloc peak {peak - base} bytes above the start")
    # 8 MiB went through; the receiver's queue (64 chunks of 4 KiB) and one line bound what it may hold
    assert peak - base < 512_000, f"peak {peak - base} bytes above the start for {total} bytes of garbage"
    assert got == []  # nothing in the garbage is a good fix
    assert counts.get("noise", 0) + counts.get("oversize_line", 0) > 100, counts
    assert counts.get("bad_checksum", 0) > 100, counts


#: a gpsd impostor in its own process (so its buffers are not measured): after the client's WATCH it sends
#: 4 lines of ~4.4 MB each (far over the client's 16 KiB bound; one held whole would break the bound
#: below), thousands of malformed lines, binary noise, TPVs with an infinite latitude, then one good TPV,
#: and prints the bytes it sent.
GARBAGE_GPSD = r"""
import socket, sys
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.recv(1024)
sent = 0
def send(b):
    global sent
    conn.sendall(b)
    sent += len(b)
send(b'{"class":"VERSION","release":"3.25"}\n')
big = b'{"class":"SKY","satellites":[' + b'{"PRN":1,"used":true},' * 200000 + b']}\n'
for i in range(4):
    send(big)
    send(b"{not json at all\n" * 1000)
    send(bytes(range(256)) * 200 + b"\n")
    send(b'{"class":"TPV","mode":3,"lat":1e999,"lon":2}\n' * 100)
send(b'{"class":"TPV","mode":3,"lat":48.1,"lon":11.5,"track":1,"speed":1}\n')
print(sent, flush=True)
sys.stdin.read()
"""


async def test_gpsd_client_memory_flat_under_huge_and_malformed_json() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", GARBAGE_GPSD, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    port = int(await asyncio.wait_for(proc.stdout.readline(), 10))
    got: list[object] = []

    async def publish(p: object) -> None:
        got.append(p)

    src = GpsdSource(LocationConfig(source=f"gpsd:127.0.0.1:{port}"), publish)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    task = asyncio.create_task(src.run())
    try:
        await wait_for(lambda: bool(got), timeout=60)
        _, peak = tracemalloc.get_traced_memory()
        sent = int(await asyncio.wait_for(proc.stdout.readline(), 10))
    finally:
        tracemalloc.stop()
        await stop(task)
        proc.stdin.close()
        await proc.wait()
    counts = src.counters.counts
    print(f"gpsd: {sent} bytes of bad JSON, tracemalloc peak {peak - base} bytes above the start")
    # over 12 MiB through the client; it holds at most one 16 KiB line and one 4 KiB read
    assert peak - base < 1_500_000, f"peak {peak - base} bytes above the start for {sent} bytes"
    assert len(got) == 1 and isinstance(got[0], Position) and got[0].lat == 48.1
    assert counts.get("oversize_line") == 4 and counts.get("bad_json", 0) >= 4_000, counts
    assert counts["connects"] == 1, counts
    assert sent > 12 * 1024 * 1024
