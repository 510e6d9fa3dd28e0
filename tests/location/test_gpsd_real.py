"""The location source against a real gpsd, fed by gpsfake from an NMEA log the simulator writes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from firmware_sim.gps import load_route, write_nmea_log
from gateway.config import DetectionConfig, LocationConfig
from gateway.detection import DetectionEngine
from gateway.location import geo
from gateway.location.gpsd import GpsdSource
from gateway.model import Position, Sample, TripRecord

pytestmark = [
    pytest.mark.skipif(shutil.which("gpsfake") is None, reason="gpsd-clients not installed (make gpsd)"),
    pytest.mark.skipif(os.environ.get("OBD_GATEWAY_PURE") == "1", reason="real-time gpsd scenario: one parser pass"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gpsfake(log: Path, port: int) -> subprocess.Popen[bytes]:
    # gpsfake starts its own gpsd on PORT (never the system's) and feeds it the log through a pty
    return subprocess.Popen(
        ["gpsfake", "-q", "-1", "-P", str(port), "-c", "0.02", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def collect(port: int, until: float, got: list[Position], source_box: list[GpsdSource]) -> None:
    async def publish(pos: object) -> None:
        assert isinstance(pos, Position)
        got.append(dataclasses.replace(pos, ts_ms=pos.gps_ms))  # the log's own time: replayable against truth

    src = GpsdSource(LocationConfig(source=f"gpsd:127.0.0.1:{port}", rate_hz=20), publish)
    src.backoff.first_s = 0.05
    source_box.append(src)
    task = asyncio.create_task(src.run())
    try:
        await asyncio.sleep(until)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_trip_places_path_and_distance_from_real_gpsd(tmp_path: Path) -> None:
    log = tmp_path / "drive.nmea"
    truth = write_nmea_log("city_route", log, lead_s=60)
    port = free_port()
    proc = start_gpsfake(log, port)
    got: list[Position] = []
    box: list[GpsdSource] = []
    try:
        await collect(port, 14.0, got, box)
    finally:
        stop(proc)
    drive = [p for p in got if p.ts_ms >= truth[0].ms]
    assert len(drive) >= len(truth) - 2, box[0].counters.counts
    engine = DetectionEngine(DetectionConfig(), device_id="t", location=LocationConfig())
    items: list[Position | Sample] = []
    for p in drive:
        items.append(Sample(p.ts_ms, "engine_rpm", 800.0))
        items.append(Sample(p.ts_ms, "speed", p.speed_kmh or 0.0))
        items.append(p)
    out = []
    for it in items:
        out += engine.feed(it)
    out += engine.end_of_input(items[-1].ts_ms)
    trips = [o for o in out if isinstance(o, TripRecord)]
    assert len(trips) == 1
    trip = trips[0].to_dict()
    start, end = trip["start_location"], trip["end_location"]
    assert geo.distance_m((start["lat"], start["lon"]), (truth[0].lat, truth[0].lon)) < 10
    assert geo.distance_m((end["lat"], end["lon"]), (truth[-1].lat, truth[-1].lon)) < 10
    route = load_route("city_route")
    dense = [route.at(s)[:2] for s in range(int(truth[-1].distance_m) + 2)]
    path = geo.decode(trip["path"])
    assert len(path) >= 4
    for pt in path:
        assert min(geo.distance_m(pt, d) for d in dense) < 10, pt
    true_m = truth[-1].distance_m - truth[0].distance_m
    assert abs(trip["distance_gps_m"] - true_m) / true_m < 0.02, (trip["distance_gps_m"], true_m)
    turns = [o for o in out if getattr(o, "type", "") == "HARD_TURN"]
    assert len(turns) == 1  # the sharp turn at 50 km/h, not the slow U-turn
    assert turns[0].payload["location"]["lat"] == pytest.approx(48.857, abs=0.003)


async def test_gpsd_killed_and_restarted_mid_drive(tmp_path: Path) -> None:
    log = tmp_path / "drive.nmea"
    write_nmea_log("city_route", log, lead_s=30)
    port = free_port()
    got: list[Position] = []
    box: list[GpsdSource] = []
    proc = start_gpsfake(log, port)
    task = asyncio.create_task(collect(port, 12.0, got, box))
    try:
        await asyncio.sleep(3.0)
        before = len(got)
        assert before > 0
        stop(proc)  # gpsd and its feeder gone mid-drive
        await asyncio.sleep(2.0)
        assert not box[0].connected
        proc = start_gpsfake(log, port)
        await task
    finally:
        stop(proc)
    counts = box[0].counters.counts
    assert counts["connects"] >= 2, counts
    assert counts["disconnects"] >= 1, counts
    assert len(got) > before + 10
