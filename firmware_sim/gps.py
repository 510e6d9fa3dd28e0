"""The simulated car's GPS: a route, positions consistent with the vehicle's speed, NMEA 0183 output.

A drive script may carry a route (ignored by older loaders)::

    [route]
    start = [48.8584, 2.2945]     # lat, lon of the start
    heading = 90.0                # initial course, degrees true
    [[route.leg]]                 # legs in order; after the last one the car goes straight on
    straight_m = 250.0
    [[route.leg]]
    turn_deg = 90.0               # + right, - left
    radius_m = 15.0

The position is a pure function of the distance driven, taken from the vehicle's odometer, so the GPS
agrees with PID 0D's speed by construction; the course over ground is the route's heading there and
the GPS speed is the vehicle's speed. Geometry: the route is laid out in metres east/north of the start
and projected equirectangularly (well under a metre of error over a few km).

NMEA sentences follow NMEA 0183 as documented publicly (gpsd's "NMEA 0183 Revealed",
https://gpsd.gitlab.io/gpsd/NMEA.html): ``$GPGGA`` (time, lat ddmm.mmmmm, N/S, lon dddmm.mmmmm, E/W,
quality 1, satellites, HDOP, altitude M, geoid separation M), ``$GPGSA`` (A, fix type 3, PRNs, PDOP,
HDOP, VDOP), ``$GPRMC`` (time, A, position, speed in knots, course, ddmmyy, magnetic variation),
``$GPVTG`` (course T, M, speed N, K), each with ``*hh``, the XOR of the characters between ``$`` and ``*``.
This module does not import ``gateway`` (the tests must not check the code against itself).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import termios
import threading
import tomllib
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

EARTH_R = 6_371_008.8
KMH_PER_KNOT = 1.852
DEFAULT_START = (48.85837, 2.29448)


@dataclass(frozen=True, slots=True)
class Leg:
    """A straight (``turn_deg`` 0) or an arc of ``radius_m`` turning by ``turn_deg``."""

    length_m: float
    turn_deg: float = 0.0
    radius_m: float = 0.0


@dataclass(frozen=True, slots=True)
class Route:
    """Start, initial heading and legs (see the module docstring)."""

    start: tuple[float, float] = DEFAULT_START
    heading: float = 90.0
    legs: tuple[Leg, ...] = field(default_factory=tuple)

    def at(self, s_m: float) -> tuple[float, float, float]:
        """``(lat, lon, heading)`` after ``s_m`` metres along the route."""
        x = y = 0.0
        h = math.radians(self.heading)
        left = max(0.0, s_m)
        for leg in self.legs:
            step = min(left, leg.length_m)
            if leg.turn_deg == 0:
                x += step * math.sin(h)
                y += step * math.cos(h)
            else:
                sign = 1.0 if leg.turn_deg > 0 else -1.0
                dh = sign * step / leg.radius_m
                # chord of the arc: exact for a circle
                chord = 2 * leg.radius_m * math.sin(abs(dh) / 2)
                mid = h + dh / 2
                x += chord * math.sin(mid)
                y += chord * math.cos(mid)
                h += dh
            left -= step
            if left <= 0:
                break
        if left > 0:
            x += left * math.sin(h)
            y += left * math.cos(h)
        lat0, lon0 = self.start
        lat = lat0 + math.degrees(y / EARTH_R)
        lon = lon0 + math.degrees(x / (EARTH_R * math.cos(math.radians(lat0))))
        return lat, lon, math.degrees(h) % 360.0

    def length_m(self) -> float:
        """Length of the legs (the route goes straight on after them)."""
        return sum(leg.length_m for leg in self.legs)


def parse_route(raw: Any) -> Route:
    """``[route]`` of a drive script → :class:`Route` (ValueError naming the key)."""
    if raw is None:
        return Route()
    if not isinstance(raw, dict):
        raise ValueError("[route] must be a table")
    start = raw.get("start", list(DEFAULT_START))
    if (not isinstance(start, list) or len(start) != 2 or not all(isinstance(v, int | float) for v in start)
            or not -90 <= start[0] <= 90 or not -180 <= start[1] <= 180):
        raise ValueError(f"[route] start must be [lat, lon], got {start!r}")
    heading = raw.get("heading", 90.0)
    if not isinstance(heading, int | float):
        raise ValueError("[route] heading must be a number (degrees)")
    legs: list[Leg] = []
    for i, leg in enumerate(raw.get("leg", [])):
        where = f"[[route.leg]] {i + 1}"
        if "straight_m" in leg:
            legs.append(Leg(float(leg["straight_m"])))
        elif "turn_deg" in leg and "radius_m" in leg:
            r, deg = float(leg["radius_m"]), float(leg["turn_deg"])
            if r <= 0 or deg == 0:
                raise ValueError(f"{where}: radius_m must be > 0 and turn_deg non-zero")
            legs.append(Leg(r * math.radians(abs(deg)), deg, r))
        else:
            raise ValueError(f"{where}: needs straight_m, or turn_deg and radius_m")
    return Route((float(start[0]), float(start[1])), float(heading), tuple(legs))


def load_route(source: str | Path | None) -> Route:
    """The ``[route]`` of a drive (built-in name or TOML path, as ``load_drive`` resolves them)."""
    name = "default" if source is None else source
    if isinstance(name, str) and "/" not in name and not name.endswith(".toml"):
        res = resources.files("firmware_sim") / "drives" / f"{name}.toml"
        text = res.read_text(encoding="utf-8") if res.is_file() else ""
    else:
        text = Path(name).read_text(encoding="utf-8")
    return parse_route(tomllib.loads(text).get("route") if text else None)


def _checksum(body: str) -> str:
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"{c:02X}"


def sentence(body: str) -> str:
    """``$body*hh\\r\\n``."""
    return f"${body}*{_checksum(body)}\r\n"


def _lat(v: float) -> tuple[str, str]:
    a = abs(v)
    d = int(a)
    return f"{d:02d}{(a - d) * 60:08.5f}", "N" if v >= 0 else "S"


def _lon(v: float) -> tuple[str, str]:
    a = abs(v)
    d = int(a)
    return f"{d:03d}{(a - d) * 60:08.5f}", "E" if v >= 0 else "W"


@dataclass(frozen=True, slots=True)
class Fix:
    """One simulated fix (the truth the tests compare against)."""

    ms: int
    lat: float
    lon: float
    cog: float
    speed_kmh: float
    distance_m: float


def nmea_epoch(fix: Fix, *, satellites: int = 9, hdop: float = 0.9, altitude: float = 35.0) -> str:
    """The sentences of one epoch: GGA, GSA, RMC, VTG."""
    t = dt.datetime.fromtimestamp(fix.ms / 1000, dt.UTC)
    hms = t.strftime("%H%M%S") + f".{t.microsecond // 10000:02d}"
    lat, ns = _lat(fix.lat)
    lon, ew = _lon(fix.lon)
    knots = fix.speed_kmh / KMH_PER_KNOT
    prns = ",".join(f"{p:02d}" for p in range(1, satellites + 1)[:12]) + "," * (12 - min(satellites, 12))
    return "".join((
        sentence(f"GPGGA,{hms},{lat},{ns},{lon},{ew},1,{satellites:02d},{hdop:.1f},{altitude:.1f},M,47.0,M,,"),
        sentence(f"GPGSA,A,3,{prns}{hdop + 0.6:.1f},{hdop:.1f},{hdop + 0.4:.1f}"),
        sentence(f"GPRMC,{hms},A,{lat},{ns},{lon},{ew},{knots:.2f},{fix.cog:.1f},{t.strftime('%d%m%y')},,,A"),
        sentence(f"GPVTG,{fix.cog:.1f},T,,M,{knots:.2f},N,{fix.speed_kmh:.2f},K,A"),
    ))


class GpsTrack:
    """Positions of a simulated vehicle along a route: ``fix(ms)`` reads the vehicle's odometer and speed."""

    def __init__(self, vehicle: Any, route: Route) -> None:
        self.vehicle = vehicle
        self.route = route
        self._odo0 = float(vehicle.state.odometer_km)

    def fix(self, ms: int) -> Fix:
        """Where the car is now (call after the vehicle was advanced to ``ms``)."""
        s = (float(self.vehicle.state.odometer_km) - self._odo0) * 1000.0
        lat, lon, heading = self.route.at(s)
        return Fix(ms, lat, lon, heading, float(self.vehicle.state.speed_kmh), s)


def write_nmea_log(drive: str | Path | None, path: str | Path, *, seed: int = 1, start_ms: int = 1_700_000_000_000,
                   seconds: float | None = None, lead_s: int = 0) -> list[Fix]:
    """Drive the whole script on a manual clock and write one NMEA epoch per second to ``path``.

    Returns the fixes written (the truth). ``seconds`` bounds a repeating drive. ``lead_s`` epochs of
    the car standing at the start come first (time for a client to connect to gpsfake's gpsd).
    """
    from firmware_sim.drive import load_drive
    from firmware_sim.vehicle import Vehicle

    d = load_drive(drive)
    route = load_route(drive)
    vehicle = Vehicle(d, seed=seed, start_ms=start_ms)
    track = GpsTrack(vehicle, route)
    limit = seconds if seconds is not None else (None if d.repeat else 3600.0)
    fixes: list[Fix] = []
    t = 0
    with open(path, "w", encoding="ascii", newline="") as out:
        lat, lon, heading = route.at(0.0)
        for i in range(lead_s, 0, -1):
            out.write(nmea_epoch(Fix(start_ms - i * 1000, lat, lon, heading, 0.0, 0.0)))
        while True:
            ms = start_ms + t * 1000
            vehicle.advance_to(ms)
            fix = track.fix(ms)
            fixes.append(fix)
            out.write(nmea_epoch(fix))
            t += 1
            if (limit is not None and t > limit) or (limit is None and t > 3600) or (
                    seconds is None and vehicle.finished and t > 2):
                break
    return fixes


class GpsPty:
    """The simulated receiver on a pseudo-terminal: one NMEA epoch per simulated second.

    ``clock()`` returns the simulation's time in ms and brings the vehicle up to it. ``close()`` closes
    the pty (the receiver unplugged: the reader sees end of file / EIO).
    """

    def __init__(self, track: GpsTrack, clock: Callable[[], float], *, interval_s: float = 1.0) -> None:
        self.track = track
        self.clock = clock
        self.interval_s = interval_s
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        self._master: int | None = master
        self._slave: int | None = slave
        self.path = os.ttyname(slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-gps", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            ms = int(self.clock())
            data = nmea_epoch(self.track.fix(ms)).encode("ascii")
            fd = self._master
            if fd is None:
                return
            with contextlib.suppress(OSError):
                os.write(fd, data)

    def close(self) -> None:
        """Stop writing and close both ends (idempotent)."""
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
