"""SAE J1979 encoding tables of the simulated ECUs: physical value → data bytes.

These are the inverse of the J1979 / ISO 15031-5 scaling formulas (``value = f(A, B, …)``), written
from the standard, independently of any decoder in ``gateway`` (the simulator must not check the
gateway against itself). Each mode-01 PID has its data length and an encoder taking the vehicle state.

Also here: DTC encoding (``P0301`` → ``03 01``), the supported-PID bitmasks (derived from the set of
PIDs an ECU answers, so they can never disagree), and the mode-09 items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware_sim.vehicle import VehicleState

Encoder = Callable[["VehicleState"], bytes]


def _clamp(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, round(x)))


def u8(x: float) -> bytes:
    """One unsigned byte, clamped to its range (a sensor saturates, it does not wrap)."""
    return bytes([_clamp(x, 0, 0xFF)])


def u16(x: float) -> bytes:
    """Two bytes, big-endian, unsigned and clamped."""
    return _clamp(x, 0, 0xFFFF).to_bytes(2, "big")


def s16(x: float) -> bytes:
    """Two bytes, big-endian two's complement, clamped."""
    return _clamp(x, -0x8000, 0x7FFF).to_bytes(2, "big", signed=True)


def pct(p: float) -> bytes:
    """Percent 0..100 → A (A·100/255)."""
    return u8(p * 255 / 100)


def pct_centered(p: float) -> bytes:
    """Percent −100..99.2 → A ((A−128)·100/128), used by fuel trims and EGR error."""
    return u8(p * 128 / 100 + 128)


def temp(c: float) -> bytes:
    """°C −40..215 → A (A−40)."""
    return u8(c + 40)


def o2_narrow(volts: float, trim: float | None) -> bytes:
    """PIDs 14–1B: A = V/0.005, B = short-term trim (0xFF: sensor not used for trim)."""
    return u8(volts / 0.005) + (b"\xff" if trim is None else pct_centered(trim))


def o2_wide_voltage(lam: float, volts: float) -> bytes:
    """PIDs 24–2B: equivalence ratio ·32768, voltage ·8192."""
    return u16(lam * 32768) + u16(volts * 8192)


def o2_wide_current(lam: float, ma: float) -> bytes:
    """PIDs 34–3B: equivalence ratio ·32768, current (mA + 128)·256."""
    return u16(lam * 32768) + u16((ma + 128) * 256)


def cat_temp(c: float) -> bytes:
    """PIDs 3C–3F: (°C + 40)·10."""
    return u16((c + 40) * 10)


def torque_pct(p: float) -> bytes:
    """PIDs 61–64: A − 125 %."""
    return u8(p + 125)


def monitor_status(v: VehicleState, *, this_cycle: bool = False) -> bytes:
    """PID 01 (since DTCs cleared) / 41 (this drive cycle): MIL bit + DTC count, then monitor bits.

    Spark ignition: misfire, fuel system and components supported and complete; catalyst, EVAP,
    O2 sensor and O2 heater supported, EGR not.
    """
    a = 0 if this_cycle else (0x80 if v.mil else 0) | min(len(v.dtcs), 0x7F)
    b = 0x07  # misfire, fuel, components supported; bit 3 = 0: spark ignition; completeness bits 0
    c = 0x65  # catalyst, evap, O2 sensor, O2 heater supported
    d = 0x00 if v.warm else 0x61  # incomplete until the engine has warmed up once
    return bytes([a, b, c, d])


def _fuel_status(v: VehicleState) -> bytes:
    # 02 = closed loop once warm; 01 = open loop (cold); 04 = open loop (decel fuel cut).
    if not v.engine_running:
        return b"\x00\x00"
    if v.accel_kmh_s < -3:
        return b"\x04\x00"
    return b"\x02\x00" if v.coolant_c > 45 else b"\x01\x00"


MODE01: dict[int, tuple[int, Encoder]] = {
    0x01: (4, monitor_status),
    0x02: (2, lambda v: encode_dtc(v.freeze_dtc) if v.freeze_dtc else b"\x00\x00"),
    0x03: (2, _fuel_status),
    0x04: (1, lambda v: pct(v.load_pct)),
    0x05: (1, lambda v: temp(v.coolant_c)),
    0x06: (1, lambda v: pct_centered(v.stft_pct)),
    0x07: (1, lambda v: pct_centered(v.ltft_pct)),
    0x08: (1, lambda v: pct_centered(v.stft_pct * 0.8)),
    0x09: (1, lambda v: pct_centered(v.ltft_pct + 0.8)),
    0x0A: (1, lambda v: u8(v.fuel_pressure_kpa / 3)),
    0x0B: (1, lambda v: u8(v.map_kpa)),
    0x0C: (2, lambda v: u16(v.rpm * 4)),
    0x0D: (1, lambda v: u8(v.speed_kmh)),
    0x0E: (1, lambda v: u8((v.timing_deg + 64) * 2)),
    0x0F: (1, lambda v: temp(v.intake_c)),
    0x10: (2, lambda v: u16(v.maf_gs * 100)),
    0x11: (1, lambda v: pct(v.throttle_pct)),
    0x12: (1, lambda v: b"\x01" if v.engine_running and not v.warm else b"\x04"),
    0x13: (1, lambda v: b"\x33"),  # bank 1 sensors 1–2, bank 2 sensors 1–2
    0x14: (2, lambda v: o2_narrow(v.o2_volts, v.stft_pct)),
    0x15: (2, lambda v: o2_narrow(0.62, None)),
    0x16: (2, lambda v: o2_narrow(v.o2_volts * 0.97, v.stft_pct * 0.8)),
    0x17: (2, lambda v: o2_narrow(0.60, None)),
    0x18: (2, lambda v: o2_narrow(0.0, None)),
    0x19: (2, lambda v: o2_narrow(0.0, None)),
    0x1A: (2, lambda v: o2_narrow(0.0, None)),
    0x1B: (2, lambda v: o2_narrow(0.0, None)),
    0x1C: (1, lambda v: b"\x03"),  # OBD and OBD-II
    0x1D: (1, lambda v: b"\x33"),
    0x1E: (1, lambda v: b"\x00"),
    0x1F: (2, lambda v: u16(v.run_time_s)),
    0x21: (2, lambda v: u16(v.dist_mil_km)),
    0x22: (2, lambda v: u16(v.fuel_pressure_kpa / 0.079)),
    0x23: (2, lambda v: u16(v.rail_pressure_kpa / 10)),
    0x24: (4, lambda v: o2_wide_voltage(v.lambda_, 2.5)),
    0x25: (4, lambda v: o2_wide_voltage(v.lambda_, 2.5)),
    0x26: (4, lambda v: o2_wide_voltage(v.lambda_, 2.5)),
    0x27: (4, lambda v: o2_wide_voltage(v.lambda_, 2.5)),
    0x28: (4, lambda v: o2_wide_voltage(1.0, 0.0)),
    0x29: (4, lambda v: o2_wide_voltage(1.0, 0.0)),
    0x2A: (4, lambda v: o2_wide_voltage(1.0, 0.0)),
    0x2B: (4, lambda v: o2_wide_voltage(1.0, 0.0)),
    0x2C: (1, lambda v: pct(v.egr_pct)),
    0x2D: (1, lambda v: pct_centered(0.0)),
    0x2E: (1, lambda v: pct(v.evap_purge_pct)),
    0x2F: (1, lambda v: pct(v.fuel_level_pct)),
    0x30: (1, lambda v: u8(v.warmups_since_clear)),
    0x31: (2, lambda v: u16(v.dist_since_clear_km)),
    0x32: (2, lambda v: s16(v.evap_pa * 4)),
    0x33: (1, lambda v: u8(v.baro_kpa)),
    0x34: (4, lambda v: o2_wide_current(v.lambda_, 0.0)),
    0x35: (4, lambda v: o2_wide_current(v.lambda_, 0.0)),
    0x36: (4, lambda v: o2_wide_current(v.lambda_, 0.0)),
    0x37: (4, lambda v: o2_wide_current(v.lambda_, 0.0)),
    0x38: (4, lambda v: o2_wide_current(1.0, 0.0)),
    0x39: (4, lambda v: o2_wide_current(1.0, 0.0)),
    0x3A: (4, lambda v: o2_wide_current(1.0, 0.0)),
    0x3B: (4, lambda v: o2_wide_current(1.0, 0.0)),
    0x3C: (2, lambda v: cat_temp(v.catalyst_c)),
    0x3D: (2, lambda v: cat_temp(v.catalyst_c - 5)),
    0x3E: (2, lambda v: cat_temp(v.catalyst_c - 60)),
    0x3F: (2, lambda v: cat_temp(v.catalyst_c - 65)),
    0x41: (4, lambda v: monitor_status(v, this_cycle=True)),
    0x42: (2, lambda v: u16(v.battery_v * 1000)),
    0x43: (2, lambda v: u16(v.load_pct * 0.9 * 255 / 100)),
    0x44: (2, lambda v: u16(v.lambda_ * 32768)),
    0x45: (1, lambda v: pct(max(0.0, v.throttle_pct - 12))),
    0x46: (1, lambda v: temp(v.ambient_c)),
    0x47: (1, lambda v: pct(v.throttle_pct + 4)),
    0x48: (1, lambda v: pct(v.throttle_pct + 4)),
    0x49: (1, lambda v: pct(v.pedal_pct)),
    0x4A: (1, lambda v: pct(v.pedal_pct / 2)),
    0x4B: (1, lambda v: pct(v.pedal_pct / 2)),
    0x4C: (1, lambda v: pct(v.throttle_pct)),
    0x4D: (2, lambda v: u16(v.mil_time_min)),
    0x4E: (2, lambda v: u16(v.time_since_clear_min)),
    0x4F: (4, lambda v: bytes([2, 8, 128, 26])),  # max λ 2, max O2 V 8, max I 128 mA, max MAP 260 kPa
    0x50: (4, lambda v: bytes([30, 0, 0, 0])),  # max MAF 300 g/s
    0x51: (1, lambda v: b"\x01"),  # gasoline
    0x52: (1, lambda v: pct(v.ethanol_pct)),
    0x53: (2, lambda v: u16((v.baro_kpa + v.evap_pa / 1000) * 200)),
    0x54: (2, lambda v: s16(v.evap_pa)),
    0x55: (2, lambda v: pct_centered(0.0) + pct_centered(0.0)),
    0x56: (2, lambda v: pct_centered(0.8) + pct_centered(0.8)),
    0x57: (2, lambda v: pct_centered(0.0) + pct_centered(0.0)),
    0x58: (2, lambda v: pct_centered(0.8) + pct_centered(0.8)),
    0x59: (2, lambda v: u16(v.rail_pressure_kpa / 10)),
    0x5A: (1, lambda v: pct(v.pedal_pct)),
    0x5B: (1, lambda v: pct(0.0)),
    0x5C: (1, lambda v: temp(v.oil_c)),
    0x5D: (2, lambda v: u16((v.timing_deg + 210) * 128)),
    0x5E: (2, lambda v: u16(v.fuel_rate_lph * 20)),
    0x5F: (1, lambda v: b"\x0d"),
    0x61: (1, lambda v: torque_pct(v.torque_pct + 3)),
    0x62: (1, lambda v: torque_pct(v.torque_pct)),
    0x63: (2, lambda v: u16(v.reference_torque_nm)),
    0x64: (5, lambda v: torque_pct(0) + torque_pct(20) + torque_pct(60) + torque_pct(90) + torque_pct(100)),
    0x65: (2, lambda v: bytes([0x0F, 0x00 if v.speed_kmh > 0 else 0x08])),
    0x66: (5, lambda v: b"\x01" + u16(v.maf_gs * 32) + b"\x00\x00"),
    0x67: (3, lambda v: b"\x01" + temp(v.coolant_c) + b"\x00"),
    0x68: (7, lambda v: b"\x01" + temp(v.intake_c) + b"\x00" * 5),
    0x69: (7, lambda v: b"\x01" + pct(v.egr_pct) + b"\x00" * 5),
    0x6A: (5, lambda v: b"\x00" * 5),
    0x6B: (5, lambda v: b"\x00" * 5),
    0x6C: (5, lambda v: b"\x03" + pct(v.throttle_pct) + pct(max(0.0, v.throttle_pct - 12)) + b"\x00\x00"),
    0x6D: (6, lambda v: b"\x00" * 6),
    0x6E: (5, lambda v: b"\x00" * 5),
    0x6F: (3, lambda v: b"\x01" + u8(v.baro_kpa) + b"\x00"),
    0x70: (9, lambda v: b"\x00" * 9),
    0x71: (5, lambda v: b"\x00" * 5),
    0x72: (5, lambda v: b"\x00" * 5),
    0x73: (5, lambda v: b"\x01" + u16(v.baro_kpa * 100 + v.maf_gs * 10) + b"\x00\x00"),
    0x74: (5, lambda v: b"\x00" * 5),
    0x75: (7, lambda v: b"\x00" * 7),
    0x76: (7, lambda v: b"\x00" * 7),
    0x77: (5, lambda v: b"\x00" * 5),
    0x78: (9, lambda v: b"\x01" + u16((v.catalyst_c + 40) * 10) + b"\x00" * 6),
    0x79: (9, lambda v: b"\x01" + u16((v.catalyst_c + 40) * 10) + b"\x00" * 6),
    0x7A: (7, lambda v: b"\x00" * 7),
    0x7B: (7, lambda v: b"\x00" * 7),
    0x7C: (9, lambda v: b"\x00" * 9),
    0x7D: (1, lambda v: b"\x00"),
    0x7E: (1, lambda v: b"\x00"),
    0x7F: (13, lambda v: b"\x01" + int(v.total_run_s).to_bytes(4, "big") + b"\x00" * 8),
    0x81: (21, lambda v: b"\x00" * 21),
    0x82: (21, lambda v: b"\x00" * 21),
    0x83: (5, lambda v: b"\x00" * 5),
    0x84: (1, lambda v: temp(v.coolant_c + 10)),
    0x85: (10, lambda v: b"\x00" * 10),
    0x86: (5, lambda v: b"\x00" * 5),
    0x87: (5, lambda v: b"\x01" + u16(v.map_kpa * 32) + b"\x00\x00"),
    0x88: (13, lambda v: b"\x00" * 13),
    0x89: (41, lambda v: b"\x00" * 41),
    0x8A: (41, lambda v: b"\x00" * 41),
    0x8B: (7, lambda v: b"\x00" * 7),
    0x8C: (16, lambda v: b"\x00" * 16),
    0x8D: (1, lambda v: pct(v.throttle_pct)),
    0x8E: (1, lambda v: torque_pct(-8)),
    0x8F: (5, lambda v: b"\x00" * 5),
    0x90: (3, lambda v: b"\x00" * 3),
    0x91: (5, lambda v: b"\x00" * 5),
    0x92: (2, lambda v: b"\x00\x00"),
    0x93: (3, lambda v: b"\x00" * 3),
    0x94: (12, lambda v: b"\x00" * 12),
    0x98: (9, lambda v: b"\x00" * 9),
    0x99: (9, lambda v: b"\x00" * 9),
    0x9A: (6, lambda v: b"\x00" * 6),
    0x9B: (4, lambda v: b"\x00" * 4),
    0x9C: (17, lambda v: b"\x00" * 17),
    0x9D: (4, lambda v: u16(v.fuel_rate_lph * 20 / 0.745) + b"\x00\x00"),
    0x9E: (2, lambda v: u16(v.maf_gs * 3.6 * 1.07 / 0.2)),  # exhaust flow kg/h ÷ 0.2
    0x9F: (9, lambda v: b"\x00" * 9),
    0xA1: (9, lambda v: b"\x00" * 9),
    0xA2: (2, lambda v: u16(v.fuel_rate_lph * 0.745 / 4 / max(v.rpm, 1) * 60 * 1000 / 2 * 32)),
}
"""Mode-01 PID → (data length, encoder). All PIDs of the reference refresh-rate table."""

SUPPORT_PIDS = (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0)


def support_mask(block: int, supported: Iterable[int]) -> bytes:
    """The 4-byte bitmask answering PID ``block`` (00, 20, …): bit 31 = PID block+1.

    The last bit (block+0x20) is set when any higher PID is supported, so clients walk the chain.
    """
    pids = set(supported)
    value = 0
    for i in range(1, 0x20):
        if block + i in pids:
            value |= 1 << (32 - i)
    if any(p > block + 0x20 for p in pids if p not in SUPPORT_PIDS) or (block + 0x20) in pids:
        value |= 1
    return value.to_bytes(4, "big")


def answered_pids(supported: Iterable[int]) -> set[int]:
    """The PIDs an ECU answers: its data PIDs plus each support PID needed to reach them."""
    pids = {p for p in supported if p not in SUPPORT_PIDS}
    out = set(pids)
    top = max(pids, default=0)
    for block in SUPPORT_PIDS:
        if block == 0 or block < top:
            out.add(block)
    return out


_DTC_LETTERS = "PCBU"


def encode_dtc(code: str) -> bytes:
    """``P0301`` → ``b"\\x03\\x01"``: 2 bits letter, 2 bits first digit, then three hex digits."""
    code = code.strip().upper()
    if len(code) != 5 or code[0] not in _DTC_LETTERS:
        raise ValueError(f"not a DTC: {code!r}")
    first = int(code[1], 16)
    if first > 3:
        raise ValueError(f"not a DTC: {code!r}")
    rest = int(code[2:], 16)
    value = (_DTC_LETTERS.index(code[0]) << 14) | (first << 12) | rest
    return value.to_bytes(2, "big")


def valid_dtc(code: str) -> bool:
    """Whether ``code`` is a well-formed DTC string."""
    try:
        encode_dtc(code)
    except ValueError:
        return False
    return True


def ascii_field(text: str, length: int, pad: bytes = b"\x00") -> bytes:
    """A mode-09 text item padded to its fixed length (calibration IDs pad with NUL)."""
    raw = text.encode("ascii")[:length]
    return raw + pad * (length - len(raw))
