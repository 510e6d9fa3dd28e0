"""Coverage-guided fuzz target (atheris/libFuzzer) for the parser: both builds, one input.

Each input is cut into the session setting (headers, protocol), then adapter output; one input in
eight is read as raw CAN frames instead. The pure twin is instrumented (its branches guide the
fuzzer); the native build runs on the same input. A crash is any exception other than ParseError,
or the two builds disagreeing. Run for an hour with ``make fuzz``, or e.g.::

    python tests/fuzz/fuzz_parser.py -max_total_time=60 [corpus_dir]

Without a corpus directory a temporary one is seeded with typical adapter output.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import atheris

with atheris.instrument_imports(include=["gateway.obd"]):
    from gateway.errors import ParseError
    from gateway.obd import pyparser

try:
    NATIVE: ModuleType | None = importlib.import_module("gateway._native")
except ImportError:
    NATIVE = None

SEEDS = [
    b"\x00\x06410C1AF8\r\r",
    b"\x01\x067E8 04 41 0C 1A F8 00 00 00\r7E9 03 41 0D 32 00 00 00 00\r\r",
    b"\x01\x067E8 10 14 49 02 01 31 44 34\r7E8 21 47 50 30 30 52 35 35\r7E8 22 42 31 32 33 34 35 36\r",
    b"\x00\x06014\r0: 49 02 01 31 44 34\r1: 47 50 30 30 52 35 35\r2: 42 31 32 33 34 35 36\r",
    b"\x01\x0718DAF11004410C1AF8000000\r",
    b"\x01\x0348 6B 10 41 00 BE 3E B8 11 C9\r",
    b"\x01\x0483 F1 11 41 0D 32 05\r",
    b"\x00\x0343 01 33 C1 00 00 00\r",
    b"\x00\x06SEARCHING...\rNO DATA\r",
    b"\x00\x0600E\r0: 41 0C 1A F8 0D 32\r1: 05 7B 04 80 0F 46 11\r2: FF 00 00 00 00 00 00\r",
    b"\x00\x0643 02 01 33 C1 00\r",
    b"\x08\x00" + bytes.fromhex("0007E803410D32000000000007E91014490201314434"),
]


def _outcome(fn: Any, *args: Any) -> str:
    try:
        return "ok " + repr(fn(*args))
    except ParseError:
        return "ParseError"


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """Records of [id: 4 bytes][length: 1 byte][data]."""
    frames = []
    while len(data) >= 5:
        arb = int.from_bytes(data[:4], "big") & 0x1FFFFFFF
        n = data[4] & 0x0F
        frames.append((arb, data[5 : 5 + n]))
        data = data[5 + n :]
    return frames


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, protocol, block = data[0], data[1] % 13, data[2:]
    if mode & 0x08:
        frames = _frames(block)
        ours = _outcome(pyparser.decode_can, frames)
        if NATIVE is not None and ours != _outcome(NATIVE.decode_can, frames):
            raise AssertionError(f"builds disagree on frames {frames!r}")
        return
    headers = bool(mode & 1)
    for name in ("decode", "parse"):
        ours = _outcome(getattr(pyparser, name), block, headers, protocol)
        if NATIVE is not None:
            theirs = _outcome(getattr(NATIVE, name), block, headers, protocol)
            if ours != theirs:
                raise AssertionError(
                    f"{name} disagrees on {block!r} headers={headers} protocol={protocol}:\n"
                    f"python: {ours}\nnative: {theirs}"
                )


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        seeds = Path(tempfile.mkdtemp(prefix="obd-fuzz-"))
        for k, seed in enumerate(SEEDS):
            (seeds / f"seed{k}").write_bytes(seed)
        argv.append(str(seeds))
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
