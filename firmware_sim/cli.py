"""``obd-gateway-sim``: serve the simulated adapter and car until SIGTERM/SIGINT.

The first line of stdout is the port (pty symlink path, ``tcp:127.0.0.1:PORT``, or the SLCAN pty path).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from firmware_sim.drive import DriveError, builtin_drives
from firmware_sim.faults import FAULTS


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its --help is the reference for the command line)."""
    p = argparse.ArgumentParser(
        prog="obd-gateway-sim",
        description="Simulated ELM327 adapter and vehicle. Prints the port (pty path or tcp:HOST:PORT) as the "
                    "first line of stdout, then serves until SIGTERM/SIGINT.",
        epilog=f"Built-in drives: {', '.join(builtin_drives())}. Faults for --control: {', '.join(FAULTS)}. "
               "See docs/simulator.md.")
    p.add_argument("--drive", metavar="FILE", help="drive script (TOML path or built-in name; default: default)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1): same seed, same drive")
    p.add_argument("--fast", action="store_true", help="no serial, ECU or search delays (quick tests)")
    p.add_argument("--tcp", type=int, metavar="PORT", nargs="?", const=35000,
                   help="serve on TCP instead of a pty, like a Wi-Fi adapter (default port 35000; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="TCP listen address (default loopback only)")
    p.add_argument("--slcan", action="store_true", help="serve raw CAN (ISO-TP ECUs) behind an SLCAN pty")
    p.add_argument("--truth", metavar="FILE", help="append the ground truth (samples and events) as JSON lines")
    p.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                   help="simulated seconds per real second (default 1)")
    p.add_argument("--baud", type=int, default=38400, metavar="N", help="initial serial baud rate (default 38400)")
    p.add_argument("--protocol", default="6", metavar="P",
                   help="the car's OBD protocol 1-9 (default 6 = ISO 15765-4 CAN 11/500)")
    p.add_argument("--control", metavar="PATH", help="Unix socket for JSON-line control commands")
    p.add_argument("--linefeeds", action="store_true", help="power up with ATL1 (pin 7 high)")
    p.add_argument("--elm-version", default="ELM327 v1.5", metavar="TEXT",
                   help="the chip's ID string for ATI and resets (default 'ELM327 v1.5', like most clones)")
    p.add_argument("--strict-baud", action="store_true",
                   help="the host must open the pty at the chip's baud rate (and follow ATBRD), else garbage")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``obd-gateway-sim``."""
    args = build_parser().parse_args(argv)
    if args.time_scale <= 0:
        print("obd-gateway-sim: --time-scale must be > 0", file=sys.stderr)
        return 2
    if args.baud <= 0:
        print("obd-gateway-sim: --baud must be > 0", file=sys.stderr)
        return 2
    if args.protocol.upper() not in set("123456789"):
        print("obd-gateway-sim: --protocol must be one of 1-9", file=sys.stderr)
        return 2
    from firmware_sim.simulator import Simulator

    try:
        sim = Simulator(args.drive, seed=args.seed, fast=args.fast, time_scale=args.time_scale,
                        protocol=args.protocol.upper(), truth_path=args.truth, baud=args.baud,
                        linefeeds_default=args.linefeeds, strict_baud=args.strict_baud,
                        elm_version=args.elm_version)
    except DriveError as exc:
        print(f"obd-gateway-sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"obd-gateway-sim: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    control = None
    try:
        if args.slcan:
            where = sim.serve_slcan().path
        elif args.tcp is not None:
            where = sim.serve_tcp(port=args.tcp, host=args.host).address
        else:
            where = sim.serve_pty().path
        if args.control:
            from firmware_sim.control import ControlServer

            control = ControlServer(sim, args.control)
        sys.stdout.write(where + "\n")
        sys.stdout.flush()
        while not done.wait(0.5):
            pass
    except OSError as exc:
        print(f"obd-gateway-sim: {exc}", file=sys.stderr)
        return 1
    finally:
        if control is not None:
            control.stop()
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
