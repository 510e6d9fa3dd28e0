"""NMEA receiver on a pty, bad input to both decoders, replay of Torque and DRUST files with positions."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from firmware_sim.gps import GpsPty, GpsTrack, load_route, nmea_epoch, sentence, write_nmea_log
from gateway.config import LocationConfig
from gateway.location.base import Counters
from gateway.location.gpsd import GpsdDecoder, GpsdSource
from gateway.location.nmea import MAX_LINE, NmeaDecoder, NmeaSource
from gateway.model import Position
from gateway.replay import replay_file


def test_nmea_bad_input_counted_and_dropped() -> None:
    c = Counters("t")
    d = NmeaDecoder(c, clock=lambda: 1)
    good = sentence("GPGGA,123519.00,4807.03800,N,01131.00000,E,1,08,0.9,545.4,M,46.9,M,,") + sentence(
        "GPRMC,123519.00,A,4807.03800,N,01131.00000,E,22.4,84.4,230394,,,A"
    )
    bad_sum = "$GPGGA,123520.00,4807.03800,N,01131.00000,E,1,08,0.9,545.4,M,46.9,M,,*00\r\n"
    truncated = "$GPGGA,1235\r\n"
    out_of_range = sentence("GPGGA,123521.00,9907.03800,N,01131.00000,E,1,08,0.9,545.4,M,46.9,M,,") + sentence(
        "GPRMC,123521.00,A,9907.03800,N,01131.00000,E,22.4,84.4,230394,,,A"
    )
    noise = bytes(range(256)) * 4 + b"\r\n"
    stream = good.encode() + bad_sum.encode() + truncated.encode() + noise + b"Z" * 10_000 + b"\r\n"
    positions = d.feed(stream) + d.feed(out_of_range.encode()) + d.feed(good.encode().replace(b"123519", b"123522"))
    assert c.counts["bad_checksum"] >= 2  # the bad sum and the truncated sentence without one
    assert c.counts["oversize_line"] >= 1
    assert c.counts["noise"] >= 1
    assert len(d._buf) <= MAX_LINE  # memory flat whatever arrives
    filt_cfg = LocationConfig()
    from gateway.location.base import FixFilter

    f = FixFilter(filt_cfg, c)
    kept = [p for p in positions if f.accept(p) is not None]
    assert [round(p.lat, 4) for p in kept] == [48.1173]  # the 99° one is out of range, rate limit drops the rest
    assert c.counts["out_of_range"] == 1


def test_gpsd_json_bad_and_huge_lines() -> None:
    c = Counters("t")
    d = GpsdDecoder(c, clock=lambda: 5)
    assert d.line(b"{not json") is None
    assert d.line(b"[1,2]") is None
    assert d.line(b'{"class":"TPV","mode":3,"lat":"x","lon":2}') is None
    assert d.line(b'{"class":"TPV","mode":1}') is None
    assert d.line(b'{"class":"SKY","hdop":0.8,"satellites":[{"used":true},{"used":false}]}') is None
    pos = d.line(b'{"class":"TPV","mode":3,"lat":48.1,"lon":11.5,"altMSL":500,"track":90,"speed":10,"eph":4.2}')
    assert pos == Position(5, 48.1, 11.5, 3, hdop=0.8, accuracy_m=4.2, altitude=500.0, satellites_used=1,
                           satellites_visible=2, cog=90.0, speed_kmh=36.0)
    assert c.counts["bad_json"] == 2 and c.counts["bad_tpv"] == 1 and c.counts["no_fix"] == 1


async def test_gpsd_source_survives_garbage_from_a_real_socket() -> None:
    lines = [b'{"class":"VERSION"}', b"{garbage", b"x" * 100_000, b'\x00\xff' * 50,
             b'{"class":"TPV","mode":3,"lat":48.1,"lon":11.5,"track":1,"speed":1}']

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        for line in lines:
            writer.write(line + b"\n")
        await writer.drain()
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    got: list[object] = []

    async def publish(p: object) -> None:
        got.append(p)

    src = GpsdSource(LocationConfig(source=f"gpsd:127.0.0.1:{port}"), publish)
    task = asyncio.create_task(src.run())
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    server.close()
    assert len(got) == 1
    assert src.counters.counts["oversize_line"] == 1 and src.counters.counts["bad_json"] >= 2


async def test_nmea_receiver_on_a_pty_then_unplugged() -> None:
    from firmware_sim.drive import load_drive
    from firmware_sim.vehicle import Vehicle

    v = Vehicle(load_drive("city_route"), seed=1, start_ms=1_700_000_000_000)
    t = [1_700_000_000_000]

    def clock() -> float:
        t[0] += 1000
        v.advance_to(t[0])
        return t[0]

    gps = GpsPty(GpsTrack(v, load_route("city_route")), clock, interval_s=0.05)
    got: list[Position] = []

    async def publish(p: object) -> None:
        assert isinstance(p, Position)
        got.append(p)

    src = NmeaSource(LocationConfig(source=f"nmea:{gps.path}", rate_hz=20), publish)
    task = asyncio.create_task(src.run())
    try:
        for _ in range(100):
            if len(got) >= 5:
                break
            await asyncio.sleep(0.05)
        assert len(got) >= 5
        assert got[0].lat == pytest.approx(48.85837, abs=1e-4)
        gps.close()  # unplugged
        for _ in range(60):
            if not src.connected:
                break
            await asyncio.sleep(0.05)
        assert not src.connected
        assert task.done() is False  # keeps retrying, never crashes
    finally:
        task.cancel()
        gps.close()


def test_replay_torque_export_and_drust_json(tmp_path: Path) -> None:
    fixes = write_nmea_log("city_route", tmp_path / "d.nmea")
    torque = tmp_path / "torque.csv"
    with torque.open("w") as f:
        f.write("GPS Time, Device Time, Longitude, Latitude,GPS Speed (Meters/second), Bearing,"
                " Speed (OBD)(km/h), Engine RPM(rpm)\n")
        for fx in fixes:
            from datetime import UTC, datetime

            when = datetime.fromtimestamp(fx.ms / 1000, UTC).strftime("%d-%b-%Y %H:%M:%S.%f")[:-3]
            rpm = "-" if fx.ms == fixes[3].ms else "800"
            f.write(f"x,{when},{fx.lon},{fx.lat},{fx.speed_kmh / 3.6},{fx.cog},{fx.speed_kmh},{rpm}\n")
    drust = tmp_path / "drust.json"
    drust.write_text(json.dumps({"items": [
        {"date": fx.ms, "speed": fx.speed_kmh, "engine_rpm": 800,
         "location": {"lat": fx.lat, "lon": fx.lon, "hdop": 0.9, "cog": round(fx.cog)}} for fx in fixes]}))
    for path in (torque, drust):
        result = replay_file(path)
        assert not result.skipped, result.skipped
        (trip,) = result.to_dict()["trips"]
        assert trip["start_location"]["lat"] == pytest.approx(fixes[0].lat, abs=1e-5)
        assert trip["end_location"]["lon"] == pytest.approx(fixes[-1].lon, abs=1e-5)
        assert trip["path"]
        assert trip["distance_gps_m"] == pytest.approx(fixes[-1].distance_m, rel=0.02)


def test_privacy_zone_hides_the_start(tmp_path: Path) -> None:
    fixes = write_nmea_log("city_route", tmp_path / "d.nmea")
    drust = tmp_path / "drust.json"
    drust.write_text(json.dumps([{"date": fx.ms, "speed": fx.speed_kmh, "engine_rpm": 800,
                                  "location": {"lat": fx.lat, "lon": fx.lon}} for fx in fixes]))
    zone = {"lat": 48.8584, "lon": 2.2944, "radius_m": 100.0}
    result = replay_file(drust, location=LocationConfig(privacy_zones=[zone]))
    (trip,) = result.to_dict()["trips"]
    assert trip["start_location"] == {"lat": 48.8584, "lon": 2.2944, "accuracy_m": 100.0}
    for ev in result.to_dict()["events"]:
        loc = ev["payload"].get("location")
        if loc and loc["lat"] == 48.8584:
            assert loc["accuracy_m"] == 100.0


def test_nmea_epoch_checksums_parse() -> None:
    import pynmea2

    from firmware_sim.gps import Fix

    for line in nmea_epoch(Fix(1_700_000_000_000, -33.9, -70.6, 359.9, 12.0, 0.0)).split("\r\n")[:-1]:
        pynmea2.parse(line, check=True)
    assert os.environ is not None
