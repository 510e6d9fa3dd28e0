"""The ``obd-gateway`` command line.

Subcommands live in :mod:`gateway.commands`, one module each, every module exposing
``register(subparsers) -> None``; the chosen subcommand's handler returns the exit code.
Errors reach the user as one line on stderr, never a traceback: exit 2 for a bad configuration
or bad arguments, 1 for other failures, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gateway.errors import ConfigError, GatewayError

# Each module registers its own subcommands; a new command is one more line here.
COMMAND_MODULES = (
    "gateway.commands.core",
    "gateway.commands.poll",
    "gateway.commands.replay",
    "gateway.commands.diag_client",
    "gateway.commands.profiles",
)

log = logging.getLogger("gateway")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="obd-gateway",
        description="OBD-II telematics gateway: poll the car, detect events and trips, store and forward.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command is not part of this build yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``obd-gateway``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        print(f"obd-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"obd-gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
