"""Parser benchmark: responses/s of the native build, the pure-Python twin and python-OBD, same run.

The corpus is a seeded mix of what a poller sees: single-PID answers (headers off and on, spaces on
and off), six-PID answers (multi-frame when longer than one CAN frame), 29-bit CAN, ISO 9141-2 with
checksums, multi-frame VIN and DTC answers, and error lines (NO DATA, CAN ERROR, SEARCHING... before
the data, STOPPED). Our builds decode each block with ``decode_many`` per session setting (headers,
protocol), as the poller does.

python-OBD is driven the way its own ``OBD.query`` drives it, minus the serial port: the adapter's
bytes go through its ``ELM327.__read`` clean-up (NULs, prompt, UTF-8, line split), its protocol object
(``obd.protocols``) turns lines into ``Message``s, and the ``OBDCommand`` decodes them (Pint units).
python-OBD always runs with headers on, so it gets the headers-on rendering of the same answers; it has
no multi-PID decoder, so a six-PID answer costs it the six single-PID answers that carry the same
values. Responses/s counts the corpus' responses for all three. Each run times the three back to back
for about the same wall time; the figures are medians over the runs.

User formulas (issue 14): ``formula_values_per_s`` (``python``, ``native``) evaluates the Kona BMS
profile's nine formulas over a 62-byte ``22 0101`` answer with each build's ``eval_formula``;
``formula_lambda_per_s`` is the same arithmetic as hand-written Python lambdas, for scale.

    python bench/parser.py [--n 3000] [--runs 7] [--json] [--breakdown]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

# One corpus entry: our block, headers, protocol, and python-OBD's equivalent (raw block, protocol key, commands)
Entry = tuple[bytes, bool, int, list[tuple[bytes, str, list[Any]]], str]

SINGLE_PIDS = [0x04, 0x05, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x1F, 0x2F, 0x31, 0x33, 0x42, 0x46, 0x5E]
SIZES = {
    0x04: 1,
    0x05: 1,
    0x0B: 1,
    0x0C: 2,
    0x0D: 1,
    0x0E: 1,
    0x0F: 1,
    0x10: 2,
    0x11: 1,
    0x1F: 2,
    0x2F: 1,
    0x31: 2,
    0x33: 1,
    0x42: 2,
    0x46: 1,
    0x5E: 2,
}


def _hex(data: bytes, spaces: bool) -> str:
    return " ".join(f"{b:02X}" for b in data) if spaces else data.hex().upper()


def can_on(payload: bytes, ecu: int, spaces: bool, bits29: bool = False) -> list[str]:
    """ELM327 lines for one message, headers on (PCI shown, frames padded to 8 bytes)."""
    head = f"{ecu:08X}" if bits29 else f"{ecu:03X}"
    if bits29 and spaces:
        head = " ".join(head[i : i + 2] for i in range(0, 8, 2))
    frames: list[bytes] = []
    if len(payload) <= 7:
        frames.append(bytes([len(payload)]) + payload)
    else:
        frames.append(bytes([0x10 | (len(payload) >> 8), len(payload) & 0xFF]) + payload[:6])
        rest, seq = payload[6:], 1
        while rest:
            frames.append(bytes([0x20 | seq]) + rest[:7])
            rest, seq = rest[7:], (seq + 1) & 0xF
    sep = " " if spaces else ""
    return [head + sep + _hex(f.ljust(8, b"\x00"), spaces) for f in frames]


def can_off(payload: bytes, spaces: bool) -> list[str]:
    """ELM327 lines for one message, headers off (byte count and numbered lines when multi-frame)."""
    if len(payload) <= 7:
        return [_hex(payload, spaces)]
    lines = [f"{len(payload):03X}"]
    chunks = [payload[:6]] + [payload[i : i + 7] for i in range(6, len(payload), 7)]
    sep = " " if spaces else ""
    lines += [f"{k & 0xF:X}:{sep}{_hex(c, spaces)}" for k, c in enumerate(chunks)]
    return lines


def iso9141(payload: bytes, spaces: bool) -> list[str]:
    frame = bytes([0x48, 0x6B, 0x10]) + payload
    return [_hex(frame + bytes([sum(frame) & 0xFF]), spaces)]


def block(lines: list[str]) -> bytes:
    return ("\r".join(lines) + "\r\r").encode()


def build(n: int, seed: int = 1979) -> list[Entry]:
    """The seeded mixed corpus."""
    import obd  # python-OBD

    rnd = random.Random(seed)
    cmd = obd.commands
    out: list[Entry] = []

    def pid_answer(pid: int) -> bytes:
        return bytes([pid]) + bytes(rnd.randrange(256) for _ in range(SIZES[pid]))

    def obd_single(pid_data: bytes, key: str = "can11") -> tuple[bytes, str, list[Any]]:
        payload = b"\x41" + pid_data
        if key == "iso9141":
            lines = iso9141(payload, True)
        else:
            lines = can_on(payload, 0x18DAF110 if key == "can29" else 0x7E8, True, key == "can29")
        return block(lines), key, [cmd[1][pid_data[0]]]

    for _ in range(n):
        kind = rnd.random()
        spaces = rnd.random() < 0.5
        if kind < 0.40:  # one PID, headers off (the Automatic-style setting)
            d = pid_answer(rnd.choice(SINGLE_PIDS))
            out.append((block(can_off(b"\x41" + d, spaces)), False, 6, [obd_single(d)], "one PID, headers off"))
        elif kind < 0.55:  # one PID, headers on, 11-bit
            d = pid_answer(rnd.choice(SINGLE_PIDS))
            out.append((block(can_on(b"\x41" + d, 0x7E8, spaces)), True, 6, [obd_single(d)], "one PID, headers on"))
        elif kind < 0.70:  # six PIDs in one answer, headers off
            ds = [pid_answer(p) for p in rnd.sample(SINGLE_PIDS, 6)]
            out.append(
                (block(can_off(b"\x41" + b"".join(ds), spaces)), False, 6, [obd_single(d) for d in ds], "six PIDs")
            )
        elif kind < 0.75:  # 29-bit
            d = pid_answer(rnd.choice(SINGLE_PIDS))
            out.append(
                (block(can_on(b"\x41" + d, 0x18DAF110, spaces, True)), True, 7, [obd_single(d, "can29")], "29-bit CAN")
            )
        elif kind < 0.80:  # ISO 9141-2 with checksum
            d = pid_answer(rnd.choice(SINGLE_PIDS))
            out.append((block(iso9141(b"\x41" + d, spaces)), True, 3, [obd_single(d, "iso9141")], "ISO 9141-2"))
        elif kind < 0.85:  # VIN, multi-frame
            vin = "".join(rnd.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(17)).encode()
            payload = b"\x49\x02\x01" + vin
            headers = rnd.random() < 0.5
            lines = can_on(payload, 0x7E8, spaces) if headers else can_off(payload, spaces)
            out.append((block(lines), headers, 6, [(block(can_on(payload, 0x7E8, True)), "can11", [cmd.VIN])], "VIN"))
        elif kind < 0.92:  # stored DTCs, one to five codes
            codes = bytes(rnd.randrange(256) for _ in range(2 * rnd.randint(1, 5)))
            payload = bytes([0x43, len(codes) // 2]) + codes
            headers = rnd.random() < 0.5
            lines = can_on(payload, 0x7E8, spaces) if headers else can_off(payload, spaces)
            out.append(
                (block(lines), headers, 6, [(block(can_on(payload, 0x7E8, True)), "can11", [cmd.GET_DTC])], "DTCs")
            )
        else:  # error lines and status noise
            d = pid_answer(0x0D)
            choice = rnd.randrange(4)
            if choice == 0:
                ours, theirs = ["NO DATA"], ["NO DATA"]
            elif choice == 1:
                ours, theirs = ["CAN ERROR"], ["CAN ERROR"]
            elif choice == 2:
                ours, theirs = (
                    ["SEARCHING...", *can_off(b"\x41" + d, spaces)],
                    ["SEARCHING...", *can_on(b"\x41" + d, 0x7E8, True)],
                )
            else:
                ours, theirs = ["STOPPED"], ["STOPPED"]
            out.append((block(ours), False, 6, [(block(theirs), "can11", [cmd.SPEED])], "error lines"))
    return out


def run_ours(mod: Any, groups: list[tuple[bool, int, list[bytes]]]) -> int:
    count = 0
    for headers, protocol, blocks in groups:
        count += len(mod.decode_many(blocks, headers, protocol))
    return count


def python_obd_runner(corpus: list[Entry]) -> Callable[[], int]:
    """python-OBD over the corpus: ELM327.__read's clean-up, protocol(lines), command(messages)."""
    from obd.protocols import ISO_9141_2, ISO_15765_4_11bit_500k, ISO_15765_4_29bit_500k

    logging.getLogger("obd").setLevel(logging.CRITICAL)
    protocols = {
        "can11": ISO_15765_4_11bit_500k(["7E8 06 41 00 BE 3F A8 13 00"]),
        "can29": ISO_15765_4_29bit_500k(["18 DA F1 10 06 41 00 BE 3F A8 13 00"]),
        "iso9141": ISO_9141_2(["48 6B 10 41 00 BE 3F A8 13 00"]),
    }
    work = [(raw, protocols[key], cmds) for _, _, _, equivalents, _ in corpus for raw, key, cmds in equivalents]
    split = re.compile("[\r\n]")

    def run() -> int:
        count = 0
        for raw, protocol, cmds in work:
            buffer = re.sub(b"\x00", b"", raw)
            if buffer.endswith(b">"):
                buffer = buffer[:-1]
            lines = [s.strip() for s in split.split(buffer.decode("utf-8", "ignore")) if s]
            messages = protocol(lines)
            for command in cmds:
                if command(messages).value is not None:
                    count += 1
        return count

    return run


def per_pass(fn: Callable[[], int], passes: int) -> float:
    """Mean seconds per pass over the corpus, over ``passes`` back-to-back passes."""
    gc.collect()  # each measurement starts from the same heap; the GC stays on while it runs
    t0 = time.perf_counter()
    for _ in range(passes):
        fn()
    return (time.perf_counter() - t0) / passes


def passes_for(fn: Callable[[], int], seconds: float) -> int:
    """How many passes of ``fn`` take about ``seconds``."""
    return max(1, round(seconds / per_pass(fn, 1)))


def grouped(corpus: list[Entry]) -> list[tuple[bool, int, list[bytes]]]:
    """The corpus' blocks per session setting (headers, protocol), as decode_many takes them."""
    groups: dict[tuple[bool, int], list[bytes]] = {}
    for blk, headers, protocol, _, _ in corpus:
        groups.setdefault((headers, protocol), []).append(blk)
    return [(h, p, blocks) for (h, p), blocks in groups.items()]


def breakdown(corpus: list[Entry], native: Any, pyparser: Any, runs: int) -> dict[str, dict[str, float]]:
    """Responses/s and ratios for each kind of answer on its own (medians of ``runs`` runs)."""
    out: dict[str, dict[str, float]] = {}
    for kind in dict.fromkeys(e[4] for e in corpus):
        part = [e for e in corpus if e[4] == kind]
        groups = grouped(part)
        obd_run = python_obd_runner(part)
        span = per_pass(obd_run, 1)
        py_passes = passes_for(lambda g=groups: run_ours(pyparser, g), span)
        rows: dict[str, list[float]] = {"obd": [], "py": [], "nat": []}
        for _ in range(runs):
            rows["obd"].append(per_pass(obd_run, 1))
            rows["py"].append(per_pass(lambda g=groups: run_ours(pyparser, g), py_passes))
            if native is not None:
                nat_passes = passes_for(lambda g=groups: run_ours(native, g), span)
                rows["nat"].append(per_pass(lambda g=groups: run_ours(native, g), nat_passes))
        n = len(part)
        entry = {
            "responses": n,
            "python_obd_per_s": round(n / statistics.median(rows["obd"])),
            "python_per_s": round(n / statistics.median(rows["py"])),
        }
        if rows["nat"]:
            entry["native_per_s"] = round(n / statistics.median(rows["nat"]))
            entry["native_vs_python_obd"] = round(entry["native_per_s"] / entry["python_obd_per_s"], 1)
        entry["python_vs_python_obd"] = round(entry["python_per_s"] / entry["python_obd_per_s"], 2)
        out[kind] = entry
    return out


def formula_bench(pyparser: Any, native: Any, runs: int) -> dict[str, Any]:
    """Values/s of user formulas: the Kona profile's formulas over a 62-byte 22 0101 answer, in both builds,
    and the same arithmetic as hand-written Python lambdas (what a formula costs over plain code)."""
    from gateway.obd.custom import shipped_profiles

    pids = shipped_profiles()["hyundai-kona-ev"].pids
    data = bytes((i * 37 + 11) & 0xFF for i in range(59))
    programs = [(p.formula.ops, p.formula.args) for p in pids] * 20
    lambdas = [
        lambda d: d[5] / 2, lambda d: int.from_bytes(d[10:12], "big", signed=True) / 10,
        lambda d: (d[12] * 256 + d[13]) / 10, lambda d: d[14] - 256 if d[14] > 127 else d[14],
        lambda d: d[15] - 256 if d[15] > 127 else d[15], lambda d: d[22] - 256 if d[22] > 127 else d[22],
        lambda d: d[29] / 10, lambda d: (d[25] * 256 + d[26]) / 10, lambda d: d[31] / 2,
    ] * 20
    for build in (b for b in (pyparser, native) if b is not None):  # both builds agree before timing
        got = [build.eval_formula(o, a, data) for o, a in programs[: len(pids)]]
        want = [fn(data) for fn in lambdas[: len(pids)]]
        if got != want:
            raise SystemExit(f"{build.__name__}: formula values {got} differ from {want}")

    def timed(fn: Any) -> float:
        best: list[float] = []
        for _ in range(max(3, runs)):
            t0 = time.perf_counter()
            for _ in range(200):
                fn()
            best.append(time.perf_counter() - t0)
        return 200 * len(programs) / statistics.median(best)

    def run_build(build: Any) -> Any:
        ev = build.eval_formula
        return lambda: [ev(o, a, data) for o, a in programs]

    out: dict[str, Any] = {"formula_values_per_s": {
        "python": round(timed(run_build(pyparser))),
        "native": round(timed(run_build(native))) if native is not None else None,
    }}
    out["formula_lambda_per_s"] = round(timed(lambda: [fn(data) for fn in lambdas]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="responses in the corpus")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per implementation (the median is reported)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--breakdown", action="store_true", help="also time each kind of answer on its own")
    args = ap.parse_args(argv)

    from gateway.obd import pyparser

    try:
        native: Any = importlib.import_module("gateway._native")
    except ImportError:
        native = None
    corpus = build(args.n)
    group_list = grouped(corpus)

    if native is not None:  # the two builds must agree before their speed means anything
        for h, p, blocks in group_list:
            if native.decode_many(blocks, h, p) != pyparser.decode_many(blocks, h, p):
                print("native and pure builds disagree on the corpus", file=sys.stderr)
                return 1
    obd_run = python_obd_runner(corpus)
    # warm-up (imports, Pint registry), and a check that python-OBD really decodes every answer
    expected = sum(len(cmds) for *_, eqs, kind in corpus if kind != "error lines" for _, _, cmds in eqs)
    if obd_run() < expected:
        print("python-OBD did not decode every answer of the corpus", file=sys.stderr)
        return 1
    # The corpus, the Pint unit registry and the modules are long-lived: keep them out of the GC's
    # traversals, as a long-running daemon would, so that all three are timed on their own garbage.
    gc.collect()
    gc.freeze()
    result: dict[str, Any] = {"responses": len(corpus), "runs": args.runs}

    # The machine is shared and noisy. In each run all three are timed back to back, each for about
    # the same wall time as one python-OBD pass (the faster ones repeat the corpus), so a ratio
    # compares equally long samples of the same load; the figures are medians over the runs.
    def py_run() -> int:
        return run_ours(pyparser, group_list)

    def nat_run() -> int:
        return run_ours(native, group_list)

    span = per_pass(obd_run, 1)
    py_passes = passes_for(py_run, span)
    nat_passes = passes_for(nat_run, span) if native is not None else 0
    t_obd: list[float] = []
    t_py: list[float] = []
    t_nat: list[float] = []
    for _ in range(args.runs):
        t_obd.append(per_pass(obd_run, 1))
        t_py.append(per_pass(py_run, py_passes))
        if native is not None:
            t_nat.append(per_pass(nat_run, nat_passes))
    n = len(corpus)
    result["python_obd_per_s"] = round(n / statistics.median(t_obd))
    result["python_per_s"] = round(n / statistics.median(t_py))
    result["python_vs_python_obd"] = round(statistics.median(o / p for o, p in zip(t_obd, t_py, strict=True)), 2)
    if native is not None:
        result["native_per_s"] = round(n / statistics.median(t_nat))
        result["native_vs_python_obd"] = round(statistics.median(o / t for o, t in zip(t_obd, t_nat, strict=True)), 1)
        result["native_vs_python"] = round(statistics.median(p / t for p, t in zip(t_py, t_nat, strict=True)), 1)
    else:
        result["native_per_s"] = None
    result.update(formula_bench(pyparser, native, args.runs))
    if args.breakdown:
        result["categories"] = breakdown(corpus, native, pyparser, max(3, args.runs // 2))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"corpus: {len(corpus)} responses; medians of {args.runs} runs, each timing all three")
        if native is not None:
            print(
                f"native       {result['native_per_s']:>12,} responses/s"
                f"   {result['native_vs_python_obd']:>7}x python-OBD"
            )
        else:
            print("native       not installed")
        print(
            f"pure twin    {result['python_per_s']:>12,} responses/s   {result['python_vs_python_obd']:>7}x python-OBD"
        )
        print(f"python-OBD   {result['python_obd_per_s']:>12,} responses/s")
        fv = result["formula_values_per_s"]
        print(
            f"user formulas (Kona BMS profile, 62-byte answer): native {fv['native'] or 0:>10,} values/s, "
            f"pure twin {fv['python']:>10,} values/s, a hand-written Python lambda {result['formula_lambda_per_s']:,}"
        )
        for kind, row in result.get("categories", {}).items():
            nat = f"{row['native_vs_python_obd']:>7}x" if "native_vs_python_obd" in row else "      -"
            print(
                f"  {kind:<22} {row['responses']:>5} responses  native {nat}  twin {row['python_vs_python_obd']:>5}x"
                f"  python-OBD {row['python_obd_per_s']:>9,}/s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
