"""``obd-gateway replay FILE [--json | --summary]``: run the detection and trip code over a recorded drive."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from gateway import config
from gateway.common import jsonout
from gateway.model import Event, TripRecord


def register(sub: Any) -> None:
    """Add the ``replay`` subcommand."""
    p = sub.add_parser(
        "replay",
        help="replay a recorded drive (CSV or DRUST Timeseries JSON) through event and trip detection",
        description="Runs exactly the detection and trip code of the daemon over a recorded drive and prints "
        "the trips and events. FILE is a CSV whose header names DRUST Timeseries fields (date in ms, "
        "speed in km/h, engine_rpm, ...) or a DRUST Collection<Timeseries> JSON document. Rows that "
        "cannot be used are reported on stderr with their line number and skipped.",
    )
    p.add_argument("file", metavar="FILE", help="the recording (CSV or JSON)")
    p.add_argument("--json", action="store_true", help='print one JSON object {"trips": [...], "events": [...]}')
    p.add_argument("--summary", action="store_true",
                   help="one line per event: time, type, speed before -> after, peak g, duration (or the reason)")
    p.add_argument("--config", metavar="FILE", help="take the [detection] thresholds and device id from this file")
    p.set_defaults(handler=_replay)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _replay(args: argparse.Namespace) -> int:
    from gateway.replay import replay_file

    cfg = config.load(args.config) if args.config else config.Config()
    result = replay_file(args.file, cfg.detection, device_id=cfg.device.id, location=cfg.location)
    for line, reason in result.skipped:
        print(f"{args.file}:{line}: skipped: {reason}", file=sys.stderr)
    if args.json:
        print(jsonout.dumps(result.to_dict(), indent=2))
        return 0
    if args.summary:
        _print_summary(result.trips, result.events)
        return 0
    _print_text(result.trips, result.events)
    return 0


def _num(value: Any, fmt: str = "g", unit: str = "") -> str:
    """A figure, or ``null`` when it is unknown (as in the JSON output), never Python's ``None``."""
    if value is None:
        return "null"
    return f"{value:{fmt}}{unit}"


def _print_summary(trips: list[TripRecord], events: list[Event]) -> None:
    """The events a fleet manager reviews, one per line, in time order."""
    print(f"{'time':<24}  {'event':<18} {'speed km/h':>15}  {'peak g':>6}  {'duration':>8}  note")
    for ev in events:
        p = ev.payload
        if "speed_from_kph" not in p:
            continue
        g = p.get("g_force", p.get("implied_g"))
        speeds = f"{_num(p['speed_from_kph'])} -> {_num(p['speed_to_kph'])}"
        duration = _num(p.get("duration_s", p.get("gap_s")), "g", " s")
        note = p.get("reason", "")
        if ev.type == "DATA_QUALITY":
            note = f"{note}: not driving" + (f", speed held {p['held_s']:g} s" if "held_s" in p else "")
        print(f"{_when(ev.date_ms):<24}  {ev.type:<18} {speeds:>15}  {_num(g, '.3f'):>6}  {duration:>8}  {note}")
    for trip in trips:
        s = trip.summary
        print(f"trip {trip.id}: {s['hard_brakes']} hard brake(s), {s['hard_accels']} hard accel(s), "
              f"{s.get('data_quality_events', 0)} data fault(s)")


def _print_text(trips: list[TripRecord], events: list[Event]) -> None:
    print(f"{len(trips)} trip(s), {len(events)} event(s)")
    for ev in events:
        extra = ""
        p = ev.payload
        if ev.type == "DATA_QUALITY":
            extra = f" reason={p.get('reason')}"
        elif "g_force" in p:
            extra = f" g_force={p['g_force']} {p.get('speed_from_kph')} -> {p.get('speed_to_kph')} km/h"
        elif ev.type == "SPEEDING":
            extra = f" max={p['speed_mph']} mph over {p['threshold_mph']:g} mph for {p['duration_s']} s"
        elif ev.type in ("MIL_ON", "MIL_OFF"):
            extra = " dtcs=" + ",".join(d["code"] for d in p.get("dtcs", []))
            if p.get("user_cleared"):
                extra += " user_cleared"
        print(f"  {_when(ev.date_ms)}  {ev.automatic_type:<26} {ev.type:<18}{extra}")
    for trip in trips:
        s = trip.summary
        print(
            f"trip {trip.id}: {_when(trip.start_ms)} → {_when(trip.stop_ms)}, "
            f"{s['distance'] / 1000:.3f} km in {s['duration'] / 1000:.0f} s, "
            f"{s['hard_brakes']} hard brake(s), {s['hard_accels']} hard accel(s), "
            f"{s.get('data_quality_events', 0)} data fault(s), "
            f"idle {s['idling_time_s']:.0f} s, fuel {_num(s['fuel_volume_l'], 'g', ' L')}, "
            f"average {_num(s['average_kmpl'], 'g', ' km/L')}, "
            f"score_events {s['score_events']}, score_speeding {s['score_speeding']}"
        )
