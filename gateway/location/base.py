"""What every location source shares: the fix filter, bounded counters, the publishing contract.

A source turns receiver output into :class:`~gateway.model.Position` and hands each one to
:meth:`FixFilter.accept`, which decides whether it reaches the bus:

* no fix (gpsd mode 0/1, NMEA quality 0 / status V) or below ``location.min_mode`` → dropped;
* HDOP above ``location.max_hdop`` → dropped (a bad fix must not draw a path or fake a turn;
  MiX Telematics' note on GPS-derived cornering recommends exactly these HDOP/satellite filters);
* latitude/longitude out of range, not finite, or 0/0 → dropped;
* more often than ``location.rate_hz`` → dropped (the receiver may run at 5–10 Hz);
* inside a ``location.privacy_zones`` entry → replaced by the zone's centre (nothing precise is stored).

Every drop is counted by reason (:attr:`FixFilter.counts`); a reason is logged the first time and
then at most once a minute, so a receiver spewing garbage cannot fill the journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway.common.backoff import Backoff
from gateway.config import LocationConfig
from gateway.errors import LocationError
from gateway.location.geo import private, valid_lat_lon
from gateway.model import Position

log = logging.getLogger("gateway.location")

Publish = Callable[[Any], Awaitable[None]]

#: at most one log line per drop reason per this many seconds
LOG_EVERY_S = 60.0


class LocationSource(Protocol):
    """A long-running component beside the poller (``gpsd`` or ``nmea``)."""

    async def run(self) -> None:
        """Forever: connect, read, publish positions; reconnect with backoff; never raises on bad input."""

    def status(self) -> dict[str, Any]:
        """Counters and the latest fix, for ``status``."""


class Reconnecting:
    """The reconnect loop both sources share: one session after another, the one backoff rule between."""

    counters: Counters
    connected: bool
    backoff: Backoff

    async def run(self) -> None:
        """Forever: one session after another, with backoff between failures."""
        while True:
            try:
                await self._session()
            except LocationError as exc:
                self.counters.count("disconnects", str(exc))
            self.connected = False
            await asyncio.sleep(self.backoff.next())

    async def _session(self) -> None:
        raise NotImplementedError


class Counters:
    """Drop/accept counts by reason with rate-limited logging (bounded: one entry per reason)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    def count(self, reason: str, detail: str = "") -> None:
        """Count one occurrence; log it if this reason was not logged in the last minute."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        last = self._logged.get(reason)
        if detail and (last is None or now - last >= LOG_EVERY_S):
            self._logged[reason] = now
            log.warning("%s: %s (%s; %d so far)", self.name, reason, detail[:120], self.counts[reason])


class FixFilter:
    """The quality gate and rate limit between a source and the bus (see the module docstring)."""

    def __init__(self, cfg: LocationConfig, counters: Counters) -> None:
        self.cfg = cfg
        self.counters = counters
        self._min_interval_ms = 1000.0 / cfg.rate_hz
        self._last_ms: int | None = None
        self.latest: Position | None = None

    def accept(self, pos: Position) -> Position | None:
        """The fix to publish (moved to a privacy zone's centre when inside one), or None (reason counted)."""
        c = self.counters
        if pos.mode < 2:
            c.count("no_fix")
            return None
        if not valid_lat_lon(pos.lat, pos.lon):
            c.count("out_of_range", f"lat {pos.lat} lon {pos.lon}")
            return None
        if pos.mode < self.cfg.min_mode:
            c.count("below_min_mode")
            return None
        if pos.hdop is not None and pos.hdop > self.cfg.max_hdop:
            c.count("hdop_too_high")
            return None
        if self._last_ms is not None and 0 <= pos.ts_ms - self._last_ms < self._min_interval_ms - 1:
            c.count("rate")
            return None
        self._last_ms = pos.ts_ms
        pos = private(pos, self.cfg.privacy_zones)
        self.latest = pos
        c.count("published")
        return pos
