"""An asyncio client of gpsd's JSON protocol (https://gpsd.gitlab.io/gpsd/gpsd_json.html).

The client connects to gpsd (default localhost:2947), sends ``?WATCH={"enable":true,"json":true}`` and
reads one JSON object per line. It uses:

* ``TPV`` (time-position-velocity): ``mode`` (0 unknown, 1 no fix, 2 = 2D, 3 = 3D), ``lat``, ``lon``,
  ``altMSL`` (``alt`` before gpsd 3.20), ``track`` (course over ground, degrees true), ``speed`` (m/s),
  ``eph`` (estimated horizontal error, m, 95 %), ``time`` (ISO 8601 UTC);
* ``SKY``: ``hdop``, ``uSat``/``nSat`` (gpsd ≥ 3.23), else the ``satellites`` list with ``used`` flags.

The latest SKY travels with each TPV. Everything else (VERSION, DEVICES, WATCH, DEVICE) is read and
ignored. Lines are bounded by :data:`MAX_LINE` (gpsd's longest reports — SKY with 30+ satellites — stay
under 8 KiB); a longer line is discarded up to its end, malformed JSON is counted and dropped. When gpsd
goes away the client reconnects with backoff (:class:`~gateway.common.backoff.Backoff`); when the
receiver goes away gpsd itself stays up and reports ``mode`` 1 or nothing: no positions are published.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
from typing import Any

from gateway.common.aio import wait_for
from gateway.common.backoff import Backoff
from gateway.config import LocationConfig
from gateway.errors import BadFix, LocationError
from gateway.location.base import Counters, FixFilter, Publish, Reconnecting
from gateway.model import Position, now_ms

MAX_LINE = 16 * 1024
WATCH = b'?WATCH={"enable":true,"json":true};\n'
CONNECT_TIMEOUT_S = 5.0
#: gpsd sends TPV every epoch (1 s on most receivers) and a VERSION at once: silence this long means trouble
SILENCE_S = 30.0


def _num(obj: dict[str, Any], key: str) -> float | None:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _iso_ms(text: Any) -> int:
    if not isinstance(text, str):
        return 0
    try:
        return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


class GpsdDecoder:
    """gpsd JSON lines → :class:`Position` (sans-I/O)."""

    def __init__(self, counters: Counters, *, clock: Any = now_ms) -> None:
        self.counters = counters
        self._clock = clock
        self.sky: dict[str, Any] = {}

    def line(self, raw: bytes) -> Position | None:
        """One line from gpsd; raises nothing (bad lines are counted)."""
        try:
            return self._line(raw)
        except BadFix as exc:
            self.counters.count(exc.args[0], raw[:80].decode("ascii", "replace"))
            return None

    def _line(self, raw: bytes) -> Position | None:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadFix("bad_json") from None
        if not isinstance(obj, dict):
            raise BadFix("bad_json")
        cls = obj.get("class")
        if cls == "SKY":
            self._sky(obj)
            return None
        if cls != "TPV":
            return None
        mode = obj.get("mode")
        if not isinstance(mode, int) or isinstance(mode, bool) or mode < 2:
            self.counters.count("no_fix")
            return None
        lat, lon = _num(obj, "lat"), _num(obj, "lon")
        if lat is None or lon is None:
            raise BadFix("bad_tpv")
        alt = _num(obj, "altMSL")
        if alt is None:
            alt = _num(obj, "alt")
        speed = _num(obj, "speed")
        track = _num(obj, "track")
        eph = _num(obj, "eph")
        sky = self.sky
        return Position(
            ts_ms=int(self._clock()),
            lat=lat,
            lon=lon,
            mode=min(mode, 3),
            hdop=sky.get("hdop"),
            accuracy_m=None if eph is None else round(eph, 1),
            altitude=alt if mode >= 3 else None,
            satellites_used=sky.get("used"),
            satellites_visible=sky.get("visible"),
            cog=track,
            speed_kmh=None if speed is None else round(speed * 3.6, 2),
            gps_ms=_iso_ms(obj.get("time")),
        )

    def _sky(self, obj: dict[str, Any]) -> None:
        sky: dict[str, Any] = {}
        hdop = _num(obj, "hdop")
        if hdop is not None:
            sky["hdop"] = hdop
        used, seen = obj.get("uSat"), obj.get("nSat")
        sats = obj.get("satellites")
        if isinstance(sats, list):
            entries = [s for s in sats if isinstance(s, dict)]
            used = sum(1 for s in entries if s.get("used") is True) if used is None else used
            seen = len(entries) if seen is None else seen
        if isinstance(used, int) and not isinstance(used, bool):
            sky["used"] = used
        if isinstance(seen, int) and not isinstance(seen, bool):
            sky["visible"] = seen
        if sky:
            self.sky = sky


class GpsdSource(Reconnecting):
    """gpsd as a location source: connect, WATCH, publish filtered fixes, reconnect with backoff."""

    def __init__(
        self,
        cfg: LocationConfig,
        publish: Publish,
        *,
        host: str | None = None,
        port: int | None = None,
        clock: Any = now_ms,
    ) -> None:
        _kind, spec_host, spec_port = cfg.source_spec
        self.cfg = cfg
        self.host = host or spec_host or "127.0.0.1"
        self.port = port or spec_port or 2947
        self.publish = publish
        self.counters = Counters(f"gpsd {self.host}:{self.port}")
        self.filter = FixFilter(cfg, self.counters)
        self.decoder = GpsdDecoder(self.counters, clock=clock)
        self.connected = False
        self.backoff = Backoff(0.5, 30.0)

    async def _session(self) -> None:
        try:
            reader, writer = await wait_for(
                asyncio.open_connection(self.host, self.port, limit=MAX_LINE), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            raise LocationError(f"cannot connect to gpsd at {self.host}:{self.port}: {exc}") from exc
        try:
            writer.write(WATCH)
            await writer.drain()
            self.connected = True
            self.counters.count("connects")
            await self._read(reader)
        except OSError as exc:
            raise LocationError(f"gpsd connection failed: {exc}") from exc
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await wait_for(writer.wait_closed(), 1.0)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buf = bytearray()
        skipping = False
        while True:
            try:
                chunk = await wait_for(reader.read(4096), SILENCE_S)
            except TimeoutError:
                raise LocationError(f"gpsd silent for {SILENCE_S:.0f} s") from None
            if not chunk:
                raise LocationError("gpsd closed the connection")
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                part = chunk[start:] if nl < 0 else chunk[start:nl]
                if not skipping:
                    if len(buf) + len(part) > MAX_LINE:
                        self.counters.count("oversize_line", f"over {MAX_LINE} bytes")
                        buf.clear()
                        skipping = True
                    else:
                        buf += part
                if nl < 0:
                    break
                if not skipping and buf.strip():
                    await self._handle(bytes(buf))
                buf.clear()
                skipping = False
                start = nl + 1

    async def _handle(self, line: bytes) -> None:
        raw = self.decoder.line(line)
        pos = None if raw is None else self.filter.accept(raw)
        if pos is not None:
            self.backoff.reset()
            await self.publish(pos)

    def status(self) -> dict[str, Any]:
        """gpsd address, connection, counters, the latest fix."""
        latest = self.filter.latest
        return {
            "source": f"gpsd:{self.host}:{self.port}",
            "connected": self.connected,
            "counts": dict(self.counters.counts),
            "latest": None if latest is None else {**latest.location(), "ts_ms": latest.ts_ms, "mode": latest.mode},
        }

