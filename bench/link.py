"""Link throughput: obd-gateway's poller vs the timing model's maximum vs python-OBD, one run.

Against ``firmware_sim`` with its DEFAULT timing model (38400 baud, 15 ms ECU latency, adaptive timing),
each side talking to its own freshly started simulator process over a pseudo-terminal:

* **ours**: ``gateway.commands.poll.run_poll`` (the ``obd-gateway poll`` command): session + scheduler
  polling the PID set as fast as it can (6-PID requests, response-count digit, ATBRD to ``--fast-baud``);
* **theoretical maximum**: the same PID set in the fastest request form the simulated chip answers
  (6 PIDs per request, count digit, echo/spaces/headers off), its exchange time computed with
  ``firmware_sim.timing.TimingModel.exchange_duration`` at the baud rate our run ended up using, with
  the answer's exact bytes taken from the simulator's own ELM327 formatter; no host turnaround. It is
  the NON-PIPELINED bound (one request at a time: request bytes, ECU latency, answer bytes, prompt),
  which is what a genuine ELM327 allows: it answers ``STOPPED`` to a request written before the
  previous prompt, and the simulator's default chip does the same, so ours stays at or below it;
* **python-OBD**: ``obd.OBD(port, fast=True)`` querying the same PIDs in turn for the same duration.

    .venv/bin/python bench/link.py [--adapter NAME|all] [--duration 10] [--fast-baud 115200]
                                   [--pids 0C,0D,05,04,10,11] [--json]

``--adapter`` picks the simulator's personality (firmware_sim.adapters; ``all``: each in turn); the
ceiling is :func:`firmware_sim.adapters.ceiling`, the personality's best accepted request form under its
constraints (max PIDs per request, count digit usable, baud switching), non-pipelined. ``--json`` prints,
per personality, ``values_per_s``, ``ceiling_per_s``, ``python_obd_values_per_s`` (null if python-OBD
cannot connect to that adapter), the ratios, the form and the baud rate; one object, or a list with ``all``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

from firmware_sim.adapters import PERSONALITIES, ceiling, personality
from firmware_sim.timing import brd_baud
from gateway.config import AdapterConfig, PollingConfig


class SimProcess:
    """``python -m firmware_sim --adapter NAME`` (default timing) as a child process; ``port`` is its pty."""

    def __init__(self, adapter: str = "genuine", *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firmware_sim", "--adapter", adapter, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        self.port = self.proc.stdout.readline().strip()
        if not self.port:
            raise SystemExit("the simulator did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_ours(port: str, pids: list[str], duration: float, fast_baud: int, baud: int = 38400) -> dict[str, object]:
    from gateway.commands.poll import run_poll

    adapter = AdapterConfig(port=port, baud=baud, fast_baud=fast_baud)
    polling = PollingConfig(pids=pids)
    return asyncio.run(run_poll(adapter, polling, duration))


def run_python_obd(port: str, pids: list[int], duration: float, baud: int = 38400) -> float:
    import obd

    logging.getLogger("obd").setLevel(logging.CRITICAL)
    obd.logger.setLevel(logging.CRITICAL)
    conn = obd.OBD(port, baudrate=baud, fast=True)
    try:
        if not conn.is_connected():
            raise SystemExit(f"python-OBD could not connect: {conn.status()}")
        commands = [obd.commands[1][p] for p in pids]
        for c in commands:  # python-OBD learns each command's frame count on first use
            conn.query(c, force=True)
        n = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration:
            for c in commands:
                if not conn.query(c, force=True).is_null():
                    n += 1
        return n / (time.monotonic() - t0)
    finally:
        conn.close()


def measure(adapter: str, pids: list[int], pid_strs: list[str], duration: float, fast_baud: int) -> dict[str, object]:
    """One personality: ours, its ceiling at the baud rate we ended at, python-OBD on a fresh simulator."""
    p = personality(adapter)
    sim = SimProcess(adapter)
    ours: dict[str, object] = {}
    error: str | None = None
    try:
        ours = run_ours(sim.port, pid_strs, duration, fast_baud, baud=p.baud)
    except Exception as exc:  # a personality our side cannot poll yet: report it, keep benchmarking
        error = f"{type(exc).__name__}: {exc}"
    finally:
        sim.stop()
    baud = int(ours.get("baud") or p.baud)  # type: ignore[call-overload]
    if baud != p.baud:
        baud = brd_baud(round(4_000_000 / baud))  # what ATBRD really selects: 4 MHz / divisor
    top = ceiling(p, pids, baud=baud)
    sim = SimProcess(adapter)
    theirs: float | None = None
    obd_error: str | None = None
    try:
        theirs = run_python_obd(sim.port, pids, duration, baud=p.baud)
    except (Exception, SystemExit) as exc:  # python-OBD refuses some clones (e.g. echo that stays on)
        obd_error = str(exc) or type(exc).__name__
    finally:
        sim.stop()
    vps = float(ours.get("values_per_s", 0.0))  # type: ignore[arg-type]
    return {
        "adapter": adapter,
        "values_per_s": round(vps, 1),
        "ceiling_per_s": round(top.values_per_s, 1),
        "python_obd_values_per_s": None if theirs is None else round(theirs, 1),
        "of_ceiling": round(vps / top.values_per_s, 3) if top.values_per_s else None,
        "vs_python_obd": round(vps / theirs, 2) if theirs else None,
        "ceiling_form": {"pids_per_request": top.pids_per_request, "count_digit": top.count_digit},
        "baud": baud,
        "requests_per_s": ours.get("requests_per_s"),
        "errors": ours.get("errors"),
        "error": error,
        "python_obd_error": obd_error,
        "pids": pid_strs,
        "duration_s": duration,
        "ceiling_basis": "non-pipelined: one request at a time, the personality's best accepted form",
    }


def main() -> int:
    """Measure each requested personality and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of polling per side (default 10)")
    ap.add_argument("--fast-baud", type=int, default=115200, help="ATBRD target for our side (0: stay at 38400)")
    ap.add_argument("--pids", default="0C,0D,05,04,10,11")
    ap.add_argument("--adapter", default="genuine", help=f"personality or 'all' ({', '.join(PERSONALITIES)})")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pid_strs = [p.strip().upper() for p in args.pids.split(",") if p.strip()]
    pids = [int(p, 16) for p in pid_strs]
    names = list(PERSONALITIES) if args.adapter == "all" else [args.adapter]
    try:
        for name in names:
            personality(name)
    except ValueError as exc:
        print(f"bench/link.py: {exc}", file=sys.stderr)
        return 2
    results = [measure(name, pids, pid_strs, args.duration, args.fast_baud) for name in names]
    if args.json:
        print(json.dumps(results if args.adapter == "all" else results[0]))
        return 0
    print(f"PIDs {','.join(pid_strs)}, firmware_sim default timing model, {args.duration:g} s per side")
    print(f"{'adapter':12} {'ours/s':>8} {'ceiling/s':>10} {'of ceil':>8} {'python-OBD/s':>13} {'baud':>7}  form")
    for r in results:
        form = r["ceiling_form"]
        theirs = r["python_obd_values_per_s"]
        shown = "-" if theirs is None else f"{theirs:.1f}"
        print(f"{r['adapter']:12} {r['values_per_s']:8.1f} {r['ceiling_per_s']:10.1f} "
              f"{(r['of_ceiling'] or 0):8.1%} {shown:>13} {r['baud']:7d}  "
              f"{form['pids_per_request']} PIDs{' +count' if form['count_digit'] else ''}"  # type: ignore[index]
              + (f"  ours: {r['error']}" if r["error"] else "")
              + (f"  python-OBD: {r['python_obd_error']}" if r["python_obd_error"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
