"""A GPS receiver read directly over a serial port: NMEA 0183 sentences parsed with pynmea2.

For boxes without gpsd (``location.source = "nmea:/dev/ttyACM0"``, ``nmea:/dev/serial0``). The sentence
formats are NMEA 0183's as documented publicly (gpsd's "NMEA 0183 Revealed", https://gpsd.gitlab.io/gpsd/NMEA.html):

* ``GGA`` time, lat/lon, fix quality (0 = none), satellites used, HDOP, altitude above mean sea level;
* ``RMC`` time, status (``A`` valid / ``V`` warning), lat/lon, speed over ground (knots), course, date;
* ``VTG`` course over ground (true) and speed in km/h (no time: it belongs to the epoch being built);
* ``GSA`` fix type (1 none, 2 = 2D, 3 = 3D) and DOPs; ``GSV`` satellites in view.

:class:`NmeaDecoder` is sans-I/O (bytes in, positions out). A sentence is at most 82 characters
including ``$`` and CR LF (NMEA 0183 §5.3); lines longer than :data:`MAX_LINE` are dropped whole, as are
bad checksums, missing checksums, truncated sentences and binary noise, each counted by reason.
Sentences of one epoch (same UTC time) are merged; an epoch is emitted when it has both GGA and RMC,
or when the next epoch begins (receivers that send only one of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

import pynmea2
import serial

from gateway.common.backoff import Backoff
from gateway.config import LocationConfig
from gateway.errors import LocationError
from gateway.location.base import Counters, FixFilter, Publish, Reconnecting
from gateway.model import Position, now_ms

#: longest line kept (NMEA's 82 plus slack for proprietary sentences); longer lines are noise
MAX_LINE = 128
KNOTS_TO_KMH = 1.852


class NmeaDecoder:
    """NMEA bytes → :class:`Position` (sans-I/O; see the module docstring)."""

    def __init__(self, counters: Counters, *, clock: Any = now_ms) -> None:
        self.counters = counters
        self._clock = clock
        self._buf = bytearray()
        self._skipping = False
        self._epoch: dict[str, Any] = {}
        self._epoch_time: dt.time | None = None
        self._date: dt.date | None = None
        self._mode_gsa: int | None = None
        self._hdop_gsa: float | None = None
        self._in_view: int | None = None
        self._emitted = False  # the current epoch went out already (GGA + RMC seen): its VTG is late

    def feed(self, data: bytes) -> list[Position]:
        """Bytes from the receiver → the positions they complete (bounded memory whatever arrives)."""
        out: list[Position] = []
        for chunk in data.splitlines(keepends=True):
            ended = chunk.endswith((b"\n", b"\r"))
            body = chunk.rstrip(b"\r\n")
            if self._skipping:
                if ended:
                    self._skipping = False
                continue
            if len(self._buf) + len(body) > MAX_LINE:
                self.counters.count("oversize_line", f"{len(self._buf) + len(body)} bytes without a line end")
                self._buf.clear()
                self._skipping = not ended
                continue
            self._buf += body
            if ended:
                line = bytes(self._buf)
                self._buf.clear()
                if line:
                    pos = self._line(line)
                    if pos is not None:
                        out.append(pos)
        return out

    def _line(self, raw: bytes) -> Position | None:
        c = self.counters
        start = raw.find(b"$")
        if start < 0:
            c.count("noise", repr(raw[:40]))
            return None
        try:
            text = raw[start:].decode("ascii")
        except UnicodeDecodeError:
            c.count("noise", repr(raw[:40]))
            return None
        if not text.isprintable():
            c.count("noise", repr(text[:40]))
            return None
        try:
            msg = pynmea2.parse(text, check=True)
        except pynmea2.ChecksumError as exc:
            c.count("bad_checksum", f"{text[:60]}: {exc.args[0] if exc.args else exc}")
            return None
        except (pynmea2.ParseError, ValueError, TypeError, AttributeError) as exc:
            c.count("unparsable", f"{text[:60]}: {exc}")
            return None
        c.count("sentences")
        try:
            return self._sentence(msg)
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            # a sentence with a valid checksum but fields missing or malformed (a truncated talker)
            c.count("bad_fields", f"{text[:60]}: {exc}")
            return None

    def _sentence(self, msg: Any) -> Position | None:
        kind = type(msg).__name__
        if kind == "GSA":
            self._mode_gsa = int(msg.mode_fix_type) if msg.mode_fix_type else None
            self._hdop_gsa = float(msg.hdop) if msg.hdop else None
            return None
        if kind == "GSV":
            self._in_view = int(msg.num_sv_in_view) if msg.num_sv_in_view else None
            return None
        if kind == "VTG":
            if self._emitted:
                return None
            if msg.true_track not in (None, ""):
                self._epoch.setdefault("cog", float(msg.true_track))
            if msg.spd_over_grnd_kmph not in (None, ""):
                self._epoch.setdefault("speed_kmh", float(msg.spd_over_grnd_kmph))
            return None
        if kind not in ("GGA", "RMC"):
            return None
        t = msg.timestamp
        emitted = None
        if self._epoch_time is not None and t != self._epoch_time:
            emitted = None if self._emitted else self._emit()
            self._epoch = {}
            self._emitted = False
        elif self._emitted:
            # a second GGA/RMC for an epoch that went out (a repeat): start afresh
            self._emitted = False
            self._epoch = {}
        self._epoch_time = t
        if kind == "GGA":
            self._gga(msg)
        else:
            self._rmc(msg)
        if self._epoch.get("gga") and self._epoch.get("rmc"):
            pos = self._emit()
            self._epoch_time = t  # VTG after RMC of the same epoch must not leak into the next
            self._emitted = True
            return pos or emitted
        return emitted

    def _gga(self, msg: Any) -> None:
        """GGA: the fix quality, position, satellites in use, HDOP and altitude of this epoch."""
        quality = int(msg.gps_qual or 0)
        self._epoch["gga"] = True
        self._epoch["gga_fix"] = quality > 0 and bool(msg.lat) and bool(msg.lon)
        if self._epoch["gga_fix"]:
            self._epoch["lat"], self._epoch["lon"] = float(msg.latitude), float(msg.longitude)
            self._epoch["sats"] = int(msg.num_sats) if msg.num_sats else None
            self._epoch["hdop"] = float(msg.horizontal_dil) if msg.horizontal_dil else None
            self._epoch["alt"] = float(msg.altitude) if msg.altitude not in (None, "") else None

    def _rmc(self, msg: Any) -> None:
        """RMC: validity, date, position, course and speed over ground (knots) of this epoch."""
        self._epoch["rmc"] = True
        self._epoch["rmc_fix"] = msg.status == "A" and bool(msg.lat) and bool(msg.lon)
        if msg.datestamp:
            self._date = msg.datestamp
        if self._epoch["rmc_fix"]:
            self._epoch.setdefault("lat", float(msg.latitude))
            self._epoch.setdefault("lon", float(msg.longitude))
            if msg.true_course not in (None, ""):
                self._epoch["cog"] = float(msg.true_course)
            if msg.spd_over_grnd not in (None, ""):
                self._epoch["speed_kmh"] = float(msg.spd_over_grnd) * KNOTS_TO_KMH

    def _emit(self) -> Position | None:
        e, self._epoch = self._epoch, {}
        t = self._epoch_time
        self._epoch_time = None
        if "lat" not in e or e.get("gga_fix") is False or e.get("rmc_fix") is False:
            if e:
                self.counters.count("no_fix")
            return None
        mode = self._mode_gsa or (3 if e.get("alt") is not None else 2)
        gps_ms = 0
        if t is not None and self._date is not None:
            when = dt.datetime.combine(self._date, t)
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            gps_ms = int(when.timestamp() * 1000)
        return Position(
            ts_ms=int(self._clock()),
            lat=e["lat"],
            lon=e["lon"],
            mode=mode,
            hdop=e.get("hdop") if e.get("hdop") is not None else self._hdop_gsa,
            altitude=e.get("alt"),
            satellites_used=e.get("sats"),
            satellites_visible=self._in_view,
            cog=e.get("cog"),
            speed_kmh=None if e.get("speed_kmh") is None else round(e["speed_kmh"], 2),
            gps_ms=gps_ms,
        )


class NmeaSource(Reconnecting):
    """A serial NMEA receiver as a location source (reopens with backoff when unplugged)."""

    def __init__(self, cfg: LocationConfig, publish: Publish, *, device: str | None = None) -> None:
        self.cfg = cfg
        self.device = device or cfg.source_spec[1]
        self.publish = publish
        self.counters = Counters(f"nmea {self.device}")
        self.filter = FixFilter(cfg, self.counters)
        self.connected = False
        self.backoff = Backoff(0.5, 30.0)

    async def _session(self) -> None:
        try:
            port = serial.Serial(self.device, self.cfg.nmea_baud, timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LocationError(f"cannot open {self.device}: {exc}") from exc
        loop = asyncio.get_running_loop()
        data_q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)
        decoder = NmeaDecoder(self.counters)

        def readable() -> None:
            try:
                data = port.read(4096)
            except (serial.SerialException, OSError):
                data = b""
            if not data:  # EOF: the receiver was unplugged (a pty's other end closed)
                loop.remove_reader(port.fileno())
                with contextlib.suppress(asyncio.QueueFull):
                    data_q.put_nowait(None)
                return
            if data_q.full():
                self.counters.count("queue_full")
                return
            data_q.put_nowait(data)

        loop.add_reader(port.fileno(), readable)
        self.connected = True
        try:
            while True:
                data = await data_q.get()
                if data is None:
                    raise LocationError(f"{self.device}: receiver gone (end of file)")
                for raw in decoder.feed(data):
                    pos = self.filter.accept(raw)
                    if pos is not None:
                        self.backoff.reset()
                        await self.publish(pos)
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(port.fileno())
            port.close()

    def status(self) -> dict[str, Any]:
        """Device, connection, counters, the latest fix."""
        latest = self.filter.latest
        return {
            "source": f"nmea:{self.device}",
            "connected": self.connected,
            "counts": dict(self.counters.counts),
            "latest": None if latest is None else {**latest.location(), "ts_ms": latest.ts_ms, "mode": latest.mode},
        }
