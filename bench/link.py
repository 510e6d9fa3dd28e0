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

    .venv/bin/python bench/link.py [--duration 10] [--fast-baud 115200] [--pids 0C,0D,05,04,10,11] [--json]

``--json`` prints one object with ``values_per_s``, ``theoretical_max_per_s``, ``python_obd_values_per_s``,
the ratios and the baud rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

from firmware_sim import Simulator
from firmware_sim.timing import TimingModel, brd_baud
from gateway.config import AdapterConfig, PollingConfig
from gateway.elm327 import commands as cmd


class SimProcess:
    """``python -m firmware_sim`` (default timing) as a child process; ``port`` is its pty."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firmware_sim"],
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


def theoretical_max(pids: list[int], baud: int) -> float:
    """Values/s of the fastest request form, from the timing model at ``baud``."""
    sim = Simulator(seed=1, fast=True)
    sim.advance(5.0)  # engine running, as in the measured runs
    try:
        elm = sim.new_elm()
        for c in (b"ATE0", b"ATL0", b"ATS0", b"ATH0", b"ATSP6", b"ATSH7E0", b"0100"):
            elm.execute(c)
        model = TimingModel(baud=baud)
        total = 0.0
        for i in range(0, len(pids), cmd.MAX_PIDS_PER_REQUEST):
            group = pids[i : i + cmd.MAX_PIDS_PER_REQUEST]
            line = cmd.mode01(group, count=1)  # with its CR
            reply = elm.execute(line[:-1])
            out = b"".join(c.data for c in reply.chunks)
            if b"NO DATA" in out or b"?" in out:
                raise SystemExit(f"the simulated chip does not answer {line!r}: {out!r}")
            prompt = 2  # the closing CR and '>'
            total += model.exchange_duration(len(line), len(out) - prompt, prompt_bytes=prompt, count_satisfied=True)
        return len(pids) / total
    finally:
        sim.stop()


def run_ours(port: str, pids: list[str], duration: float, fast_baud: int) -> dict[str, object]:
    from gateway.commands.poll import run_poll

    adapter = AdapterConfig(port=port, baud=38400, fast_baud=fast_baud)
    polling = PollingConfig(pids=pids)
    return asyncio.run(run_poll(adapter, polling, duration))


def run_python_obd(port: str, pids: list[int], duration: float) -> float:
    import obd

    logging.getLogger("obd").setLevel(logging.CRITICAL)
    obd.logger.setLevel(logging.CRITICAL)
    conn = obd.OBD(port, baudrate=38400, fast=True)
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


def main() -> int:
    """Run the three measurements and print them."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of polling per side (default 10)")
    ap.add_argument("--fast-baud", type=int, default=115200, help="ATBRD target for our side (0: stay at 38400)")
    ap.add_argument("--pids", default="0C,0D,05,04,10,11")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pid_strs = [p.strip().upper() for p in args.pids.split(",") if p.strip()]
    pids = [int(p, 16) for p in pid_strs]

    sim = SimProcess()
    try:
        ours = run_ours(sim.port, pid_strs, args.duration, args.fast_baud)
    finally:
        sim.stop()
    baud = int(ours.get("baud") or 38400)  # type: ignore[call-overload]
    if baud != 38400:
        baud = brd_baud(round(4_000_000 / baud))  # what ATBRD really selects: 4 MHz / divisor
    theo = theoretical_max(pids, baud)
    sim = SimProcess()
    try:
        theirs = run_python_obd(sim.port, pids, args.duration)
    finally:
        sim.stop()
    vps = float(ours["values_per_s"])  # type: ignore[arg-type]
    result = {
        "values_per_s": round(vps, 1),
        "theoretical_max_per_s": round(theo, 1),
        "python_obd_values_per_s": round(theirs, 1),
        "of_theoretical": round(vps / theo, 3) if theo else None,
        "vs_python_obd": round(vps / theirs, 2) if theirs else math.inf,
        "baud": baud,
        "requests_per_s": ours["requests_per_s"],
        "pids": pid_strs,
        "duration_s": args.duration,
        "errors": ours["errors"],
        "theoretical_max_basis": "non-pipelined: one request at a time (genuine ELM327)",
        "pipelining": bool(ours.get("pipelining", False)),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"PIDs {','.join(pid_strs)}, firmware_sim default timing model, our link at {baud} baud")
        print(f"obd-gateway:        {vps:8.1f} values/s ({ours['requests_per_s']} requests/s)")
        print(f"theoretical max:    {theo:8.1f} values/s  -> {vps / theo:.1%} of it "
              "(one request at a time: a genuine ELM327 cannot be pipelined)")
        print(f"python-OBD (fast):  {theirs:8.1f} values/s  -> obd-gateway is {vps / theirs:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
