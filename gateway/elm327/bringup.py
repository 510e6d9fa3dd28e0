"""Sans-I/O decisions of the ELM327 bring-up: which reset forms, which protocol command, which PIDs to
probe, what a supported-PIDs answer says. No I/O and no state; the session acts on the results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.elm327 import commands as cmd
from gateway.obd.protocols import ENGINE_ECU, PROTOCOL_NAMES
from gateway.obd.types import ObdMessage

#: ATZ (full reset, ~1 s), ATWS (warm start: clones that hang on ATZ answer it), ATI (last resort)
RESET_FORMS: tuple[tuple[bytes, float], ...] = ((cmd.reset(), 2.5), (cmd.warm_start(), 2.5), (cmd.identify(), 1.5))
#: PIDs that are bitmasks of supported PIDs (and 01, the monitor status, multi-ECU): never probed as data
BITMASK_PIDS = frozenset({0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0, 0x01})


def protocol_command(setting: str, remembered: str) -> bytes:
    """The ATSP line: the configured protocol; else automatic, starting from the remembered one."""
    if setting.upper() not in ("", "AUTO", "0"):
        return cmd.set_protocol(setting)
    if remembered in PROTOCOL_NAMES:
        return cmd.set_protocol(remembered, auto_fallback=True)
    return cmd.set_protocol("0")


def supported_from(messages: Iterable[ObdMessage], base: int) -> tuple[dict[int, set[int]], set[int]]:
    """PIDs each ECU announces in its answer to ``01 <base>``, and the ECUs that announce ``base + 0x20``
    (whose chain goes on)."""
    found: dict[int, set[int]] = {}
    more: set[int] = set()
    for msg in messages:
        if msg.service != 0x01 or msg.pid != base or len(msg.payload) < 4:
            continue
        bits = int.from_bytes(msg.payload[:4], "big")
        pids = {base + i + 1 for i in range(32) if bits & (1 << (31 - i))}
        found.setdefault(msg.ecu, set()).update(pids)
        if base + 0x20 in pids:
            more.add(msg.ecu)
    return found, more


def probe_pids(supported: Iterable[int]) -> list[int]:
    """The PIDs to probe request forms with: data PIDs the ECU supports, lowest first."""
    return sorted(p for p in supported if p not in BITMASK_PIDS)


def main_ecu(supported: dict[int, set[int]]) -> int | None:
    """The engine ECU when it answers, else the ECU with the most PIDs."""
    if not supported:
        return None
    if ENGINE_ECU in supported:
        return ENGINE_ECU
    return max(supported, key=lambda e: (len(supported[e]), -e))


def is_identity(text: bytes) -> bool:
    """Whether a line read after a baud switch is the chip's identity (``ELM327 v1.5``, ``STN1110``)."""
    up = text.upper()
    return b"ELM" in up or b"STN" in up or b"OBD" in up


def groups(pids: Sequence[int], size: int) -> list[list[int]]:
    """``pids`` in requests of at most ``size``."""
    n = max(1, size)
    return [list(pids[i : i + n]) for i in range(0, len(pids), n)]
