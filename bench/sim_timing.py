"""Measured single-PID round trip against the simulator vs the documented timing model.

Runs the simulator with its default timing (38400 baud, 15 ms ECU latency, adaptive timing AT1), opens
its pseudo-terminal with pyserial, and times ``010C`` → prompt N times (echo off, spaces on, headers off),
with and without the response-count digit. Prints the model's value, the median measured value and
their ratio; ``--json`` for machines. The acceptance bound is |ratio − 1| ≤ 10 %.

    .venv/bin/python bench/sim_timing.py [-n 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import serial

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

from firmware_sim import Simulator
from firmware_sim.timing import TimingModel, answer_bytes, single_pid_round_trip


def measure(path: str, command: bytes, n: int) -> list[float]:
    """Round trips of ``command`` in seconds (write → prompt read)."""
    port = serial.Serial(path, 38400, timeout=2)
    try:
        for c in (b"ATE0", b"ATSP6", b"0100"):
            port.write(c + b"\r")
            port.read_until(b">")
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            port.write(command + b"\r")
            reply = port.read_until(b">")
            out.append(time.perf_counter() - t0)
            if not reply.endswith(b">"):
                raise RuntimeError(f"no prompt: {reply!r}")
        return out
    finally:
        port.close()


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100, help="round trips per case (default 100)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model = TimingModel()
    sim = Simulator(seed=1, fast=False, timing=model)
    sim.advance(3)
    results = {}
    try:
        with sim.serve_pty() as path:
            six = b"010C0D051011041"  # 6 PIDs, 15-byte answer (ISO-TP multi-frame), count digit
            six_model = model.exchange_duration(len(six) + 1, answer_bytes(15), count_satisfied=True)
            cases = (("010C (AT1 wait)", b"010C", single_pid_round_trip(model)),
                     ("010C1 (count digit)", b"010C1", single_pid_round_trip(model, count_digit=True)),
                     ("6 PIDs + count digit", six, six_model))
            for name, cmd, expected in cases:
                samples = measure(path, cmd, args.n)
                med = statistics.median(samples)
                results[name] = {"model_ms": round(expected * 1000, 3), "measured_median_ms": round(med * 1000, 3),
                                 "p90_ms": round(sorted(samples)[int(0.9 * len(samples))] * 1000, 3),
                                 "ratio": round(med / expected, 4), "n": len(samples),
                                 "pids_per_s": round((6 if cmd == six else 1) / med, 1)}
    finally:
        sim.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, r in results.items():
            print(f"{name:22s} model {r['model_ms']:8.3f} ms   measured median {r['measured_median_ms']:8.3f} ms "
                  f"(p90 {r['p90_ms']:.3f})   ratio {r['ratio']:.3f}   {r['pids_per_s']:6.1f} PIDs/s   n={r['n']}")
    ok = all(abs(r["ratio"] - 1) <= 0.10 for r in results.values())
    print("within 10 %" if ok else "OUTSIDE 10 %")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
