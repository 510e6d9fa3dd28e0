"""``run``, ``check-config`` and ``version``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway import __version__, config
from gateway.common import jsonout
from gateway.errors import ConfigError


def register(sub: Any) -> None:
    """Add the core subcommands."""
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", metavar="FILE", help=f"configuration file (default {config.SYSTEM_CONFIG_PATH})")
    p.add_argument(
        "--sim",
        action="store_true",
        help="start the simulated adapter and vehicle (obd-gateway-sim) and connect to it; "
        "prints live values and events to the terminal",
    )
    p.add_argument("--drive", metavar="FILE", help="with --sim: the drive script for the simulator")
    p.add_argument("--sim-args", default="", help="with --sim: extra arguments for obd-gateway-sim")
    p.set_defaults(handler=_run)

    p = sub.add_parser(
        "check-config",
        help="validate a configuration file and print the effective values (defaults included, secrets masked)",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print the effective configuration as JSON")
    p.set_defaults(handler=_check_config)

    p = sub.add_parser("version", help="print the version and the active parser build")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_version)


def _load(path: str | None) -> config.Config:
    return config.load(path or config.SYSTEM_CONFIG_PATH)


def _run(args: argparse.Namespace) -> int:
    from gateway import daemon

    if (args.drive or args.sim_args) and not args.sim:
        raise ConfigError("--drive and --sim-args only go with --sim")
    cfg = _load(args.config)
    return daemon.main(cfg, config_path=args.config, sim=args.sim, drive=args.drive, sim_args=args.sim_args)


def _check_config(args: argparse.Namespace) -> int:
    import dataclasses

    from gateway import secrets

    cfg = config.load(args.file)
    warnings = secrets.check_config_secrets(cfg)  # the daemon refuses what this refuses
    warnings += secrets.config_warnings(cfg)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    # secrets by key name and user:password@ in URLs are masked in both forms
    effective = secrets.redact(dataclasses.asdict(cfg))
    if args.json:
        print(jsonout.dumps(effective, indent=2))
        return 0
    print(f"# {args.file}: configuration is valid; effective values (defaults included):")
    for section, values in effective.items():
        print(f"[{section}]")
        for key, value in values.items():
            print(f"{key} = {jsonout.dumps(value)}")
    return 0


def _version(args: argparse.Namespace) -> int:
    from gateway.obd import PARSER_BUILD

    if args.json:
        print(jsonout.dumps({"version": __version__, "parser": PARSER_BUILD}))
    else:
        print(f"obd-gateway {__version__}")
        print(f"parser: {PARSER_BUILD}")
    return 0
