"""``profiles``: the vehicle profiles shipped with the package and their PIDs (``--json``: one object)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.common import jsonout
from gateway.obd.custom import shipped_profiles


def register(sub: Any) -> None:
    """Add the ``profiles`` subcommand."""
    p = sub.add_parser(
        "profiles",
        help="list the shipped vehicle profiles (manufacturer-specific PIDs)",
        description="List the vehicle profiles shipped with obd-gateway: name, vehicles, and each PID's "
        "ECU, service, DID, formula and source. Select one with [vehicle] profile = NAME or poll --profile NAME.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (name → profile)")
    p.set_defaults(handler=_profiles)


def _profiles(args: argparse.Namespace) -> int:
    profiles = shipped_profiles()
    if args.json:
        print(jsonout.dumps({name: prof.as_dict() for name, prof in profiles.items()}, indent=2))
        return 0
    for name, prof in profiles.items():
        print(f"{name}: {prof.title}")
        if prof.vin_prefixes:
            print(f"  selected by VIN prefix: {', '.join(prof.vin_prefixes)}")
        for p in prof.pids:
            d = p.as_dict()
            print(f"  {p.name:<28} {p.unit:<4} {d['header']}→{d['response']} {d['service']} {d['pid']:<5} "
                  f"{p.formula.text}")
    return 0
