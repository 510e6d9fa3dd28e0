"""``obd-gateway-sim``: serve the simulated adapter and car until SIGTERM/SIGINT.

The first line of stdout is the port, ready to paste into ``obd-gateway poll --port``: the pty symlink
path, ``tcp:127.0.0.1:PORT``, or ``can:slcan:PATH`` (the SLCAN pty) with ``--slcan``. Bad options get
one line on stderr and exit status 2; a port that cannot be served, exit status 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from firmware_sim.adapters import PERSONALITIES
from firmware_sim.drive import DriveError, builtin_drives
from firmware_sim.faults import FAULTS


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its --help is the reference for the command line)."""
    p = argparse.ArgumentParser(
        prog="obd-gateway-sim",
        description="Simulated ELM327 adapter and vehicle. Prints the port (pty path, tcp:HOST:PORT or "
                    "can:slcan:PATH) as the first line of stdout, then serves until SIGTERM/SIGINT.",
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
    p.add_argument("--baud", type=int, default=None, metavar="N",
                   help="initial serial baud rate (default: the adapter's, 38400 except stn 115200)")
    p.add_argument("--protocol", default="6", metavar="P",
                   help="the car's OBD protocol 1-9 (default 6 = ISO 15765-4 CAN 11/500)")
    p.add_argument("--control", metavar="PATH", help="Unix socket for JSON-line control commands")
    p.add_argument("--linefeeds", action="store_true", help="power up with ATL1 (pin 7 high)")
    p.add_argument("--elm-version", default=None, metavar="TEXT",
                   help="the chip's ID string for ATI and resets (default: the adapter's, 'ELM327 v1.5' for genuine)")
    p.add_argument("--adapter", default="genuine", metavar="NAME", choices=sorted(PERSONALITIES),
                   help="adapter personality: " + "; ".join(f"{p.name}: {p.summary}" for p in PERSONALITIES.values())
                   + " (default genuine; see docs/simulator.md)")
    p.add_argument("--pipelining", action="store_true",
                   help="a line-buffering adapter (Automatic adapter, STN-style) that answers requests written "
                        "back to back in order; default: a genuine ELM327, which answers STOPPED to them")
    p.add_argument("--ev", action="append", default=[], choices=["kona", "leaf"],
                   help="add an EV battery ECU answering its profile's reads (firmware_sim.ev); repeatable")
    p.add_argument("--strict-baud", action="store_true",
                   help="the host must open the pty at the chip's baud rate (and follow ATBRD), else garbage")
    p.add_argument("--gps-pty", action="store_true",
                   help="also serve the car's position as NMEA 0183 on a second pty (its path printed as "
                        "'gps:PATH' on the second line); the route comes from the drive's [route]")
    p.add_argument("--nmea-log", metavar="FILE",
                   help="write the whole drive's NMEA (one epoch per simulated second) to FILE and exit "
                        "(for gpsfake)")
    return p


def _ecus(ev_names: list[str]) -> list[Any] | None:
    """The default engine and transmission, plus the EV battery ECUs asked for (None: the default set)."""
    if not ev_names:
        return None
    from firmware_sim import ev
    from firmware_sim.ecu import default_ecus

    makers = {"kona": ev.kona_bms, "leaf": ev.leaf_lbc}
    return [*default_ecus(), *(makers[name]() for name in dict.fromkeys(ev_names))]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``obd-gateway-sim``."""
    args = build_parser().parse_args(argv)
    if args.time_scale <= 0:
        print("obd-gateway-sim: --time-scale must be > 0", file=sys.stderr)
        return 2
    if args.baud is not None and not 300 <= args.baud <= 4_000_000:
        # an ELM327 UART runs from 300 baud (ATBRD FF is ~15686) up to 4 Mbaud (4 MHz / 1)
        print(f"obd-gateway-sim: --baud must be between 300 and 4000000, got {args.baud}", file=sys.stderr)
        return 2
    if args.tcp is not None and not 0 <= args.tcp <= 65535:
        print(f"obd-gateway-sim: --tcp must be a port number 0-65535, got {args.tcp}", file=sys.stderr)
        return 2
    if args.control:
        parent = os.path.dirname(os.path.abspath(args.control))
        if not os.path.isdir(parent):
            print(f"obd-gateway-sim: --control {args.control}: directory {parent} does not exist", file=sys.stderr)
            return 2
    if args.protocol.upper() not in set("123456789"):
        print("obd-gateway-sim: --protocol must be one of 1-9", file=sys.stderr)
        return 2
    if args.nmea_log:
        from firmware_sim.gps import write_nmea_log

        try:
            fixes = write_nmea_log(args.drive, args.nmea_log, seed=args.seed)
        except (DriveError, ValueError, OSError) as exc:
            print(f"obd-gateway-sim: --nmea-log: {exc}", file=sys.stderr)
            return 2
        print(f"{args.nmea_log}: {len(fixes)} epochs, {fixes[-1].distance_m:.1f} m")
        return 0
    from firmware_sim.simulator import Simulator

    try:
        sim = Simulator(args.drive, seed=args.seed, fast=args.fast, time_scale=args.time_scale,
                        protocol=args.protocol.upper(), truth_path=args.truth, baud=args.baud,
                        linefeeds_default=args.linefeeds, strict_baud=args.strict_baud,
                        elm_version=args.elm_version, pipelining=args.pipelining, adapter=args.adapter,
                        ecus=_ecus(args.ev))
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
    gps: Any = None
    try:
        if args.slcan:
            where = "can:slcan:" + sim.serve_slcan().path  # pasteable into obd-gateway poll --port
        elif args.tcp is not None:
            where = sim.serve_tcp(port=args.tcp, host=args.host).address
        else:
            where = sim.serve_pty().path
        if args.control:
            from firmware_sim.control import ControlServer

            try:
                control = ControlServer(sim, args.control)
            except OSError as exc:
                print(f"obd-gateway-sim: --control {args.control}: {exc.strerror or exc}", file=sys.stderr)
                return 1
        sys.stdout.write(where + "\n")
        if args.gps_pty:
            from firmware_sim.gps import GpsPty, GpsTrack, load_route

            def clock() -> float:
                sim.sync()
                return sim.now_ms()

            gps = GpsPty(GpsTrack(sim.vehicle, load_route(args.drive)), clock)
            sys.stdout.write(f"gps:{gps.path}\n")
        sys.stdout.flush()
        while not done.wait(0.5):
            pass
    except OSError as exc:
        what = f"TCP port {args.tcp}" if args.tcp is not None and not args.slcan else "the port"
        print(f"obd-gateway-sim: cannot serve {what}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        if control is not None:
            control.stop()
        if gps is not None:
            gps.close()
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
