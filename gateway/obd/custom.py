"""User-defined PIDs and vehicle profiles: manufacturer-specific reads (service 0x22 DIDs, service 0x21 local
ids) and mode 01 PIDs with the user's own formula. Pure: no I/O but reading the shipped profile files.

A :class:`CustomPid` says whom to ask (request header, response id; 11- or 29-bit), what (service 01, 21
or 22 and the PID/DID), how to turn the answer's data bytes into a value (a formula, see
:mod:`gateway.obd.formula`), how often and how urgently, and which values are sane. Several PIDs that
share one request (header, service, DID) are read with one request (:attr:`CustomPid.request_key`).

Only read services are accepted (01, 21, 22): the box stays read-only toward the car, whatever a
configuration or a profile says; the transport's write guard enforces it again at the lowest level.

Profiles are TOML files shipped in ``gateway/profiles/`` (package data): ``name``, ``title``,
optional ``vin_prefixes`` (auto-selection), and ``[[pid]]`` tables with the keys of a custom PID plus
``source`` (where the DID and formula come from).
"""

from __future__ import annotations

import importlib.resources
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError, FormulaError
from gateway.obd.formula import Formula, compile_formula

READ_SERVICES = frozenset({0x01, 0x21, 0x22})
#: virtual PID numbers of custom PIDs in the scheduler start here (mode 01 PIDs are 0x00-0xFF)
VIRTUAL_BASE = 0x10000
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_KEYS = {
    "name", "unit", "header", "response", "service", "pid", "formula", "rate_hz", "priority", "min", "max",
    "source", "title",
}


@dataclass(frozen=True, slots=True)
class CustomPid:
    """One user-defined value read from one ECU."""

    name: str
    unit: str
    header: int
    response: int
    extended: bool
    service: int
    pid: int
    formula: Formula
    rate_hz: float = 1.0
    priority: int = 0
    min: float | None = None
    max: float | None = None
    source: str = ""
    title: str = ""

    @property
    def request(self) -> bytes:
        """The request bytes (``22 01 01``, ``21 01``, ``01 5C``)."""
        width = 2 if self.service == 0x22 else 1
        return bytes([self.service]) + self.pid.to_bytes(width, "big")

    @property
    def request_key(self) -> tuple[int, int, bytes]:
        """PIDs with the same key are answered by one request."""
        return (self.header, self.response, self.request)

    @property
    def echo_len(self) -> int:
        """Bytes before the formula's data: the response service byte and the echoed PID/DID."""
        return len(self.request)

    def in_range(self, value: float) -> bool:
        """Whether ``value`` is finite and within the sanity bounds."""
        if not math.isfinite(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``profiles --json``, ``status``)."""
        return {
            "name": self.name, "unit": self.unit, "header": _id(self.header, self.extended),
            "response": _id(self.response, self.extended), "service": f"{self.service:02X}",
            "pid": f"{self.pid:0{4 if self.service == 0x22 else 2}X}", "formula": self.formula.text,
            "rate_hz": self.rate_hz, "priority": self.priority, "min": self.min, "max": self.max,
            "source": self.source,
        }


def _id(value: int, extended: bool) -> str:
    return f"{value:08X}" if extended else f"{value:03X}"


def _hex_field(where: str, key: str, raw: Mapping[str, Any], *, digits: tuple[int, ...]) -> int:
    value = raw.get(key)
    if not isinstance(value, str) or not _HEX.match(value) or len(value) not in digits:
        want = " or ".join(str(d) for d in digits)
        raise ConfigError(f"{where}.{key}: {value!r} is not a {want}-digit hex value")
    return int(value, 16)


def parse_custom(raw: Mapping[str, Any], where: str) -> CustomPid:
    """One custom PID from its TOML table; ``where`` names it in errors (``pids.custom[0]``).

    Every problem is one ``ConfigError`` line naming the PID and the key (a formula: the position)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}.name: {name!r} must be lower case letters, digits and _ (≤ 64)")
    where = f"{where} ({name})"
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_KEYS))})")
    service, header, response, extended, pid = _address(where, raw)
    text = raw.get("formula")
    if not isinstance(text, str):
        raise ConfigError(f"{where}.formula: expected a string, got {type(text).__name__}")
    try:
        formula = compile_formula(text)
    except FormulaError as exc:
        raise ConfigError(f"{where}.formula {text!r}: {exc}") from None
    rate, prio, low, high = _schedule(where, raw)
    unit, source, title = (_text(where, raw, key) for key in ("unit", "source", "title"))
    return CustomPid(
        name, unit, header, response, extended, service, pid, formula, rate, prio, low, high, source, title,
    )


def _address(where: str, raw: Mapping[str, Any]) -> tuple[int, int, int, bool, int]:
    """(service, request header, response id, 29-bit, PID or DID); only read services pass."""
    service = _hex_field(where, "service", raw, digits=(2,))
    if service not in READ_SERVICES:
        raise ConfigError(
            f"{where}.service: {service:02X} is not a read service (01, 21 or 22 only: the box stays read-only)"
        )
    header = _hex_field(where, "header", raw, digits=(3, 8))
    extended = len(str(raw["header"])) == 8
    if not extended and header > 0x7FF:
        raise ConfigError(f"{where}.header: {header:X} is not an 11-bit identifier")
    # ISO 15765-4: 11-bit answers come from the request id + 8; 29-bit 18DA<ecu><tester> from 18DA<tester><ecu>
    swapped = (header & 0xFFFF0000) | ((header & 0xFF) << 8) | ((header >> 8) & 0xFF)
    response = _hex_field(where, "response", raw, digits=(3, 8)) if "response" in raw else (
        swapped if extended else header + 8)
    if "response" in raw and (len(str(raw["response"])) == 8) != extended:
        raise ConfigError(f"{where}.response: must have as many bits as the header (3 or 8 hex digits)")
    pid = _hex_field(where, "pid", raw, digits=(4,) if service == 0x22 else (2,))
    return service, header, response, extended, pid


def _schedule(where: str, raw: Mapping[str, Any]) -> tuple[float, int, float | None, float | None]:
    """(rate, priority, min, max) with their ranges checked."""
    rate = raw.get("rate_hz", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 100:
        raise ConfigError(f"{where}.rate_hz: must be a number above 0 and at most 100 (got {rate!r})")
    prio = raw.get("priority", 0)
    if isinstance(prio, bool) or not isinstance(prio, int) or not -8 <= prio <= 8:
        raise ConfigError(f"{where}.priority: must be an integer from -8 to 8 (got {prio!r})")
    bounds: list[float | None] = []
    for key in ("min", "max"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise ConfigError(f"{where}.{key}: must be a number (got {v!r})")
        bounds.append(float(v) if v is not None else None)
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        raise ConfigError(f"{where}: min {bounds[0]} is above max {bounds[1]}")
    return float(rate), prio, bounds[0], bounds[1]


def _text(where: str, raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or len(value) > 400:
        raise ConfigError(f"{where}.{key}: expected a string (≤ 400 characters)")
    return value


def parse_many(items: Sequence[Any], where: str) -> list[CustomPid]:
    """A list of custom PID tables; names must be unique."""
    out: list[CustomPid] = []
    seen: set[str] = set()
    for i, raw in enumerate(items):
        pid = parse_custom(raw, f"{where}[{i}]")
        if pid.name in seen:
            raise ConfigError(f"{where}[{i}] ({pid.name}): the name is used twice")
        seen.add(pid.name)
        out.append(pid)
    return out


@dataclass(frozen=True, slots=True)
class Profile:
    """A vehicle profile: custom PIDs for one family of cars."""

    name: str
    title: str
    vin_prefixes: tuple[str, ...]
    pids: tuple[CustomPid, ...]
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "name": self.name, "title": self.title, "vin_prefixes": list(self.vin_prefixes), "notes": self.notes,
            "pids": [p.as_dict() for p in self.pids],
        }


def parse_profile(text: str, origin: str) -> Profile:
    """A profile from TOML text (``origin`` names the file in errors)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name.replace("-", "_")):
        raise ConfigError(f"{origin}: name {name!r} must be lower case letters, digits, - and _")
    prefixes = raw.get("vin_prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and 3 <= len(p) <= 11 for p in prefixes):
        raise ConfigError(f"{origin}: vin_prefixes must be a list of 3-11 character strings")
    pids = raw.get("pid", [])
    if not isinstance(pids, list) or not pids:
        raise ConfigError(f"{origin}: a profile needs at least one [[pid]]")
    parsed = parse_many(pids, f"{origin}: pid")
    for p in parsed:
        if not p.source:
            raise ConfigError(f"{origin}: pid {p.name} names no source")
    return Profile(name, str(raw.get("title", name)), tuple(p.upper() for p in prefixes), tuple(parsed),
                   str(raw.get("notes", "")))


def shipped_profiles() -> dict[str, Profile]:
    """The profiles shipped with the package (``gateway/profiles/*.toml``), by name."""
    out: dict[str, Profile] = {}
    folder = importlib.resources.files("gateway") / "profiles"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            prof = parse_profile(entry.read_text(encoding="utf-8"), f"profiles/{entry.name}")
            out[prof.name] = prof
    return out


def profile_for_vin(vin: str, profiles: Iterable[Profile]) -> Profile | None:
    """The profile whose longest VIN prefix matches ``vin`` (None when none does)."""
    best: tuple[int, Profile] | None = None
    for prof in profiles:
        for prefix in prof.vin_prefixes:
            if vin.upper().startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), prof)
    return best[1] if best else None


def resolve(profile: str, custom: Sequence[CustomPid]) -> list[CustomPid]:
    """The custom PIDs to poll: the named profile's (``""``: none) and the configuration's own, which
    replace a profile PID of the same name."""
    pids: dict[str, CustomPid] = {}
    if profile:
        profiles = shipped_profiles()
        if profile not in profiles:
            raise ConfigError(f"vehicle.profile: no profile {profile!r} (shipped: {', '.join(sorted(profiles))})")
        pids.update((p.name, p) for p in profiles[profile].pids)
    pids.update((p.name, p) for p in custom)
    return list(pids.values())




GUIDE = """\
## Writing a custom PID

Data that mode 01 does not carry (an EV's state of charge, cell temperatures, gear, oil temperature on
many cars) lives behind manufacturer-specific reads: service 0x22 (UDS ReadDataByIdentifier, a 2-byte DID)
and the older 0x21 (KWP2000 ReadDataByLocalIdentifier, 1 byte), sent to one ECU. Add one
`[[pids.custom]]` table per value to the configuration:

```toml
[[pids.custom]]
name = "battery_soc"        # the sample's name: lower case, digits and _
unit = "%"
header = "7E4"              # request id: 3 hex digits (11-bit) or 8 (29-bit, e.g. 18DA10F1)
response = "7EC"            # answer id; default header + 8 (11-bit) or 18DAF1xx for 18DAxxF1
service = "22"              # 01, 21 or 22 — anything else is refused: the box stays read-only
pid = "0101"                # 4 hex digits for service 22, 2 for 01 and 21
formula = "F/2"
rate_hz = 0.2               # default 1 (at most 100)
priority = 1                # default 0; higher wins when the link is short
min = 0                     # optional sanity bounds: values outside are counted and dropped
max = 100
source = "where the DID and formula come from"
```

**Formulas** are the Torque Pro "extended PID" notation, parsed into an expression tree (never Python
`eval`): `A` … `Z` are the data bytes 0 … 25 *after* the echoed service byte and PID/DID (`62 01 01` for
`22 0101`), `[n]` is any byte of a long answer (`[0]` = `A`, up to `[4094]`), `{A:7}` is bit 7 of A,
`signed(A)` reads a byte as −128 … 127 and `signed(A*256+B, 16)` two bytes as −32768 … 32767 (widths 8,
16, 24, 32); `+ - * /`, `& | << >>` (on whole numbers), parentheses, numbers (`12`, `0.5`, `0x1F`),
`min(a, b)`, `max(a, b)`, `abs(x)`. Examples: `A*256+B`, `((A*256)+B)/10`, `signed(K*256+L, 16)/10`,
`{J:6}`, `([29]*65536+[30]*256+[31])/10000`. A formula that reads a byte the answer does not have gives
no value (counted as `short_answer` in `status` → `custom`); a division by zero at run time gives no value
either (counted as `out_of_range`). `obd-gateway check-config` refuses a bad formula in one line naming the
PID and the character position (`pids.custom[0] (battery_soc).formula 'A*256+QQ': unknown name 'QQ' at
position 6`), a service other than 01/21/22, a header that is not hex and a division by a constant zero
(exit 2 each).

**Counting bytes from a published list.** Lists that give frame/byte indices of the ISO-TP answer (the
first frame carries 6 bytes, each later frame 7) convert as: data byte = 6 + 7 × (frame − 1) + index − (1
+ length of the PID/DID) for frames 1 and later, index − (1 + length of the PID/DID) in frame 0. For
`22 0101` (3 bytes of echo): frame 1 byte 2 is data byte 5, `F`. Lists that
count from the byte after the echo (OVMS's `reply_data`) are used as they are.

**How they are read.** Every custom PID is a scheduler entry like a mode 01 PID (rate, priority, fair
share, NO DATA back-off, the cache); PIDs that share header, service and DID are read with one request.
Over an ELM327 the session switches ECUs with as few commands as possible: `ATSH` when the request id
changes, `ATCRA` when the answer id does, and, for ECUs whose answer id is not the request id + 8 (the
Leaf's 79B/7BB), `ATFCSH`/`ATFCSD300000`/`ATFCSM1` so the chip's flow control reaches the ECU (ATFCSM0 when
going back to standard pairs). Headers stay off; CAN auto-formatting prints long answers as a byte count
and `0:` … `F:` lines, which the parser reassembles (up to 4095 bytes). On raw CAN the session sends the
flow control itself (block size, STmin) and reassembles up to 4095 bytes; a lost consecutive frame drops
the whole answer (counted as `isotp_lost_frame`), never a value from a message with a hole.

**Negative responses.** `7F 22 31` (requestOutOfRange: the car has no such DID), `7F 22 12` and
`7F 22 11` three times in a row mark the PIDs of that request unsupported: they are no longer asked for
until the next connection (`pid_stats` shows `supported: false`, the log says so once). `7F 22 78`
(response pending) is waited for: up to 5 s on raw CAN (P2*), on an ELM327 the request is repeated (up to
3 times) when the chip's prompt came before the answer.

**BUFFER FULL** (an ELM327 whose serial link is slower than the ECU's frames overruns its 512-byte
buffer on a long answer): the session makes the chip's flow control ask the ECU for 10 ms between
consecutive frames (`ATFCSD30000A`, `ATFCSM1`) and repeats the request; if that overflows too, 30 ms; after
that the read fails with `BUFFER FULL with 30 ms between frames: raise the serial rate (adapter.fast_baud)`.

## Writing a profile

A profile is a TOML file in `gateway/profiles/` (shipped as package data) with `name`, `title`, `notes`,
`vin_prefixes` (the car's VIN starts with one of them: the profile is selected automatically when
`[vehicle] auto_profile = true` and no profile is named) and one `[[pid]]` table per value with the keys
of a custom PID; `source` is required (where the DID, its byte positions and the formula come from). Select
one with `[vehicle] profile = "NAME"` or `obd-gateway poll --profile NAME`; `obd-gateway profiles
[--json]` lists them. A `[[pids.custom]]` with the same name replaces the profile's PID. Values reach the
bus, the store and the uplinks as samples named like the PID (`battery_soc`, unit `%`, `ecu` = the answer
id).

No shipped profile declares VIN prefixes yet: a manufacturer's WMI (`KMH`, `KNA`, `SJN`, `1N4`) covers its
combustion cars as well, and the model digits were not checked against public VIN tables.
"""


def profiles_markdown() -> str:
    """The shipped profiles as Markdown tables (part of ``docs/pids.md``)."""
    out = [GUIDE, "## Shipped profiles", ""]
    for prof in shipped_profiles().values():
        out += [f"### `{prof.name}`: {prof.title}", ""]
        if prof.notes:
            out += [prof.notes, ""]
        out += ["| Name | Unit | ECU | Service | PID/DID | Formula | Source |", "|---|---|---|---|---|---|---|"]
        for p in prof.pids:
            d = p.as_dict()
            out.append(f"| `{p.name}` | {p.unit} | {d['header']} → {d['response']} | {d['service']} | {d['pid']} "
                       f"| `{p.formula.text}` | {p.source.replace('|', chr(92) + '|')} |")
        out.append("")
    return "\n".join(out)


__all__ = [
    "GUIDE", "READ_SERVICES", "VIRTUAL_BASE", "CustomPid", "Profile", "parse_custom", "parse_many",
    "parse_profile", "profile_for_vin", "profiles_markdown", "resolve", "shipped_profiles",
]
