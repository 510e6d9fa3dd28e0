"""Drive scripts: a TOML file describing what the simulated car does, phase by phase.

Format (see docs/simulator.md for the full description)::

    name = "short"
    repeat = false                # start again from the first phase when the last one ends
    [vehicle]                     # initial state, all optional
    vin = "JHMCM56557C404453"
    odometer_km = 48211.0
    fuel_level_pct = 62.0
    tank_l = 55.0
    ambient_c = 18.0
    coolant_c = 18.0              # cold start by default (= ambient)
    dtcs = []                     # stored at start (MIL on if any)

    [[phase]]
    kind = "ignition_on"          # key on, crank (crank_s, default 1.2 s), engine runs
    [[phase]]
    kind = "idle"
    duration = 10                 # seconds of simulated time
    [[phase]]
    kind = "accelerate"
    to = 50                       # km/h (or to_mph)
    rate = 4                      # km/h per second; > 11 is a hard acceleration
    [[phase]]
    kind = "cruise"
    duration = 20
    wobble = 2                    # optional ± km/h of seeded speed noise
    [[phase]]
    kind = "brake"
    to = 0
    rate = 15                     # > 11 km/h/s is a hard brake
    [[phase]]
    kind = "speeding"             # accelerate to to_mph at rate, then hold it for duration
    to_mph = 82
    rate = 3
    duration = 15
    [[phase]]
    kind = "set_dtcs"
    dtcs = ["P0301"]
    mil = true                    # default: true when dtcs is not empty
    pending = ["P0171"]           # optional mode-07 codes
    [[phase]]
    kind = "clear_dtcs"
    [[phase]]
    kind = "ignition_off"
    [[phase]]
    kind = "park"                 # ignition stays off for duration
    duration = 30
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from firmware_sim.j1979 import valid_dtc

MPH = 1.609344
KINDS = frozenset({"ignition_on", "ignition_off", "idle", "accelerate", "cruise", "brake", "speeding", "set_dtcs",
                   "clear_dtcs", "park"})


class DriveError(ValueError):
    """A drive script that cannot be loaded; the message names the phase and key."""


@dataclass(frozen=True, slots=True)
class Phase:
    """One step of a drive script (fields unused by a kind keep their defaults)."""

    kind: str
    duration: float = 0.0
    to: float = 0.0  # km/h
    rate: float = 3.0  # km/h per second
    wobble: float = 0.0
    crank_s: float = 1.2
    dtcs: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    mil: bool | None = None


@dataclass(frozen=True, slots=True)
class VehicleSetup:
    """Initial vehicle state of a drive."""

    vin: str = "JHMCM56557C404453"
    odometer_km: float = 48211.0
    fuel_level_pct: float = 62.0
    tank_l: float = 55.0
    ambient_c: float = 18.0
    coolant_c: float | None = None
    dtcs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Drive:
    """A parsed drive script."""

    name: str
    phases: tuple[Phase, ...]
    vehicle: VehicleSetup = field(default_factory=VehicleSetup)
    repeat: bool = False
    description: str = ""


def _num(where: str, key: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DriveError(f"{where}: {key} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise DriveError(f"{where}: {key} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _codes(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) and valid_dtc(c) for c in value):
        raise DriveError(f"{where}: {key} must be a list of DTCs like \"P0301\", got {value!r}")
    return tuple(c.upper() for c in value)


def _phase(i: int, raw: Any) -> Phase:
    where = f"phase {i + 1}"
    if not isinstance(raw, dict):
        raise DriveError(f"{where}: must be a table")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise DriveError(f"{where}: kind must be one of {sorted(KINDS)}, got {kind!r}")
    known = {"kind", "duration", "to", "to_mph", "rate", "wobble", "crank_s", "dtcs", "pending", "mil"}
    extra = set(raw) - known
    if extra:
        raise DriveError(f"{where}: unknown key(s) {sorted(extra)}")
    kw: dict[str, Any] = {"kind": kind}
    for key in ("duration", "rate", "wobble", "crank_s"):
        if key in raw:
            kw[key] = _num(where, key, raw[key], positive=key == "rate")
    if "to_mph" in raw:
        kw["to"] = _num(where, "to_mph", raw["to_mph"]) * MPH
    elif "to" in raw:
        kw["to"] = _num(where, "to", raw["to"])
    if kind in {"accelerate", "speeding"} and "to" not in kw:
        raise DriveError(f"{where}: {kind} needs 'to' (km/h) or 'to_mph'")
    if kind in {"idle", "cruise", "park"} and "duration" not in kw:
        raise DriveError(f"{where}: {kind} needs 'duration' (seconds)")
    if "to" in kw and kw["to"] > 255:
        raise DriveError(f"{where}: speed {kw['to']:.0f} km/h exceeds what PID 0D can carry (255)")
    if "dtcs" in raw:
        kw["dtcs"] = _codes(where, "dtcs", raw["dtcs"])
    if "pending" in raw:
        kw["pending"] = _codes(where, "pending", raw["pending"])
    if "mil" in raw:
        if not isinstance(raw["mil"], bool):
            raise DriveError(f"{where}: mil must be true or false")
        kw["mil"] = raw["mil"]
    return Phase(**kw)


def parse_drive(data: dict[str, Any], name: str = "drive") -> Drive:
    """Build a :class:`Drive` from parsed TOML, with errors naming the phase and key."""
    phases_raw = data.get("phase", [])
    if not isinstance(phases_raw, list) or not phases_raw:
        raise DriveError(f"{name}: needs at least one [[phase]]")
    phases = tuple(_phase(i, p) for i, p in enumerate(phases_raw))
    veh_raw = data.get("vehicle", {})
    if not isinstance(veh_raw, dict):
        raise DriveError(f"{name}: [vehicle] must be a table")
    vkw: dict[str, Any] = {}
    for key in ("odometer_km", "fuel_level_pct", "tank_l", "coolant_c"):
        if key in veh_raw:
            vkw[key] = _num(f"{name} [vehicle]", key, veh_raw[key], positive=key == "tank_l")
    if "ambient_c" in veh_raw:
        v = veh_raw["ambient_c"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not -40 <= v <= 60:
            raise DriveError(f"{name} [vehicle]: ambient_c must be a number in -40..60")
        vkw["ambient_c"] = float(v)
    if "vin" in veh_raw:
        vin = veh_raw["vin"]
        if not isinstance(vin, str) or len(vin) != 17 or not vin.isascii() or not vin.isalnum():
            raise DriveError(f"{name} [vehicle]: vin must be 17 letters/digits")
        vkw["vin"] = vin.upper()
    if "dtcs" in veh_raw:
        vkw["dtcs"] = _codes(f"{name} [vehicle]", "dtcs", veh_raw["dtcs"])
    if vkw.get("fuel_level_pct", 0) > 100:
        raise DriveError(f"{name} [vehicle]: fuel_level_pct must be <= 100")
    unknown = set(veh_raw) - {"vin", "odometer_km", "fuel_level_pct", "tank_l", "ambient_c", "coolant_c", "dtcs"}
    if unknown:
        raise DriveError(f"{name} [vehicle]: unknown key(s) {sorted(unknown)}")
    repeat = data.get("repeat", False)
    if not isinstance(repeat, bool):
        raise DriveError(f"{name}: repeat must be true or false")
    return Drive(name=str(data.get("name", name)), phases=phases, vehicle=VehicleSetup(**vkw), repeat=repeat,
                 description=str(data.get("description", "")))


def load_drive(source: str | Path | None) -> Drive:
    """Load a drive: None → the built-in ``default``; a bare name → a built-in; else a TOML file path."""
    if source is None:
        source = "default"
    text: str
    label = str(source)
    if isinstance(source, str) and "/" not in source and not source.endswith(".toml"):
        res = resources.files("firmware_sim") / "drives" / f"{source}.toml"
        if not res.is_file():
            raise DriveError(f"no built-in drive named {source!r} (built-ins: {', '.join(builtin_drives())})")
        text = res.read_text(encoding="utf-8")
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DriveError(f"cannot read drive script {path}: {exc.strerror}") from exc
        label = path.stem
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DriveError(f"{label}: invalid TOML: {exc}") from exc
    return parse_drive(data, label)


def builtin_drives() -> list[str]:
    """Names of the drive scripts shipped in ``firmware_sim/drives``."""
    root = resources.files("firmware_sim") / "drives"
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))
