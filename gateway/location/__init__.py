"""The location source: a sibling of the poller that publishes :class:`~gateway.model.Position` on the bus.

* :mod:`gateway.location.gpsd` — an asyncio client of gpsd's JSON protocol (WATCH, TPV, SKY);
* :mod:`gateway.location.nmea` — a direct NMEA 0183 serial receiver (pynmea2: GGA, RMC, VTG, GSA, GSV);
* :mod:`gateway.location.base` — the fix filter both share (quality gate, range checks, rate, counters);
* :mod:`gateway.location.geo` — pure geometry: distances, Douglas–Peucker, Encoded Polyline, privacy zones.

Nothing is imported here, so the pure layers (trips, detectors) can use :mod:`geo` without pulling in
asyncio I/O, and a box without a GPS never imports pyserial or pynmea2 for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import LocationConfig
    from gateway.location.base import LocationSource, Publish


def create(cfg: LocationConfig, publish: Publish) -> LocationSource | None:
    """The configured source, or None for ``source = "none"`` (modules of unused sources are not imported)."""
    kind = cfg.source_spec[0]
    if kind == "gpsd":
        from gateway.location.gpsd import GpsdSource

        return GpsdSource(cfg, publish)
    if kind == "nmea":
        from gateway.location.nmea import NmeaSource

        return NmeaSource(cfg, publish)
    return None
