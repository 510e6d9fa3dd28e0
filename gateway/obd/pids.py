"""The PID catalogue: one table that both parser builds decode from.

Every mode 01/02 PID of SAE J1979 from 00 to A2 (the refresh-rate table of the Automatic streaming
reference), plus A6 (odometer) and the supported-PID bitmasks up to C0. Each :class:`Pid` gives the
reference's title, the data size in bytes, the default refresh rate (``None``: on demand only) and
its :class:`Field` list; each field is one decoded value with a stable name and unit.

Names follow the DRUST Timeseries where it has the same quantity (``speed`` km/h, ``engine_rpm``,
``engine_coolant_temperature`` °C) and are stable snake_case otherwise. Every name is unique across
the catalogue, so ``(ecu, name)`` identifies a quantity.

A field is decoded by its ``kind``:

* ``LINEAR``: ``raw * mul / div + add`` where ``raw`` is the big-endian integer of ``length`` bytes
  at ``start`` (two's complement when ``signed``); the value is a ``float``.
* ``FLAG``: bit ``shift`` of byte ``start`` → ``bool``.
* ``BITS``: ``(byte[start] >> shift) & mask`` → ``int``.
* ``ENUM``: ``byte[start]`` looked up in ``enum`` → ``str`` (``"unknown_0xNN"`` when absent).
* ``SUPPORT``: the 4-byte supported-PID bitmask → ``tuple[int, ...]`` of the PIDs it announces.
* ``DTC``: two bytes → a code such as ``"P0301"``.
* ``HEX``: ``length`` bytes at ``start`` → upper-case hex ``str`` (bit-field PIDs kept raw).

``avail`` ≥ 0 means the value exists only when that bit of the PID's first byte (its "supported
sensors" byte) is set; ``gate_byte`` ≥ 0 means it exists only when bit ``gate_bit`` of that byte
equals ``gate_value`` (PID 01/41 monitors differ between spark and compression ignition);
``invalid`` ≥ 0 means the value is omitted when the raw integer equals it
(the 0xFF "not used for trim" of the O2 sensor PIDs). ``lo``/``hi`` document the range.

The native build (``native/parser.pyx``) imports this module at start-up and copies the table into
C arrays, so there is exactly one source of truth. ``markdown()`` renders
``docs/pids.md``.
"""

from __future__ import annotations

from typing import NamedTuple

LINEAR = 0
FLAG = 1
BITS = 2
ENUM = 3
SUPPORT = 4
DTC = 5
HEX = 6

KIND_NAMES = ("linear", "flag", "bits", "enum", "support", "dtc", "hex")


class Field(NamedTuple):
    """One value decoded from a PID's data bytes (see the module docstring for the kinds)."""

    name: str
    unit: str
    kind: int
    start: int
    length: int = 1
    mul: float = 1.0
    div: float = 1.0
    add: float = 0.0
    signed: bool = False
    shift: int = 0
    mask: int = 0xFF
    avail: int = -1
    invalid: int = -1
    lo: float | None = None
    hi: float | None = None
    enum: tuple[tuple[int, str], ...] = ()
    gate_byte: int = -1
    gate_bit: int = 0
    gate_value: int = 0


class Pid(NamedTuple):
    """A mode 01/02 PID: title (from the reference), data size, default rate in Hz, fields."""

    pid: int
    title: str
    size: int
    rate_hz: float | None
    fields: tuple[Field, ...]


def _lin(  # noqa: PLR0917 - a table row reads best positionally
    name: str,
    unit: str,
    start: int,
    length: int,
    mul: float,
    div: float,
    add: float,
    lo: float,
    hi: float,
    *,
    signed: bool = False,
    avail: int = -1,
    invalid: int = -1,
) -> Field:
    return Field(name, unit, LINEAR, start, length, mul, div, add, signed, 0, 0xFF, avail, invalid, lo, hi)


def _pct(name: str, start: int = 0, avail: int = -1) -> Field:
    """A*100/255: 0..100 %."""
    return _lin(name, "%", start, 1, 100.0, 255.0, 0.0, 0.0, 100.0, avail=avail)


def _trim(name: str, start: int = 0, avail: int = -1, invalid: int = -1) -> Field:
    """A*100/128 - 100: -100..99.22 %."""
    return _lin(name, "%", start, 1, 100.0, 128.0, -100.0, -100.0, 99.21875, avail=avail, invalid=invalid)


def _temp(name: str, start: int = 0, avail: int = -1) -> Field:
    """A - 40: -40..215 °C."""
    return _lin(name, "°C", start, 1, 1.0, 1.0, -40.0, -40.0, 215.0, avail=avail)


def _temp16(name: str, start: int, avail: int = -1) -> Field:
    """(256A+B)/10 - 40: -40..6513.5 °C."""
    return _lin(name, "°C", start, 2, 1.0, 10.0, -40.0, -40.0, 6513.5, avail=avail)


def _torque(name: str, start: int = 0) -> Field:
    """A - 125: -125..130 %."""
    return _lin(name, "%", start, 1, 1.0, 1.0, -125.0, -125.0, 130.0)


def _flag(name: str, start: int, bit: int) -> Field:
    return Field(name, "", FLAG, start, 1, shift=bit)


def _bits(name: str, start: int, shift: int = 0, mask: int = 0xFF) -> Field:
    return Field(name, "", BITS, start, 1, shift=shift, mask=mask)


def _enum(name: str, start: int, table: tuple[tuple[int, str], ...]) -> Field:
    return Field(name, "", ENUM, start, 1, enum=table)


def _monitor(name: str, start: int, bit: int, compression: bool) -> Field:
    """A PID 01/41 monitor flag that exists for one ignition type (B bit 3: 1 = compression)."""
    return Field(name, "", FLAG, start, 1, shift=bit, gate_byte=1, gate_bit=3, gate_value=int(compression))


_SPARK_MONITORS = (
    "catalyst",
    "heated_catalyst",
    "evap_system",
    "secondary_air",
    "ac_refrigerant",
    "o2_sensor",
    "o2_sensor_heater",
    "egr_system",
)
_COMPRESSION_MONITORS = (
    "nmhc_catalyst",
    "nox_scr",
    "",
    "boost_pressure",
    "",
    "exhaust_gas_sensor",
    "pm_filter",
    "egr_vvt",
)


def _monitors(first: str, second: str) -> tuple[Field, ...]:
    """Bytes C (first flag) and D (second flag) of PID 01 or 41, for both ignition types."""
    out = []
    for compression, names in ((False, _SPARK_MONITORS), (True, _COMPRESSION_MONITORS)):
        for bit, name in enumerate(names):
            if name:
                out.append(_monitor(f"{name}_monitor_{first}", 2, bit, compression))
                out.append(_monitor(f"{name}_monitor_{second}", 3, bit, compression))
    return tuple(out)


def _hex(name: str, start: int, length: int) -> Field:
    return Field(name, "", HEX, start, length)


def _support(name: str) -> Field:
    return Field(name, "", SUPPORT, 0, 4)


FUEL_SYSTEM_STATUS: tuple[tuple[int, str], ...] = (
    (0x00, "off"),
    (0x01, "open_loop_insufficient_temperature"),
    (0x02, "closed_loop"),
    (0x04, "open_loop_engine_load"),
    (0x08, "open_loop_system_failure"),
    (0x10, "closed_loop_feedback_fault"),
)

SECONDARY_AIR_STATUS: tuple[tuple[int, str], ...] = (
    (0x01, "upstream"),
    (0x02, "downstream_of_catalytic_converter"),
    (0x04, "outside_atmosphere_or_off"),
    (0x08, "pump_on_for_diagnostics"),
)

OBD_STANDARDS: tuple[tuple[int, str], ...] = (
    (1, "OBD-II (CARB)"),
    (2, "OBD (EPA)"),
    (3, "OBD and OBD-II"),
    (4, "OBD-I"),
    (5, "not OBD compliant"),
    (6, "EOBD"),
    (7, "EOBD and OBD-II"),
    (8, "EOBD and OBD"),
    (9, "EOBD, OBD and OBD-II"),
    (10, "JOBD"),
    (11, "JOBD and OBD-II"),
    (12, "JOBD and EOBD"),
    (13, "JOBD, EOBD and OBD-II"),
    (17, "EMD"),
    (18, "EMD+"),
    (19, "HD OBD-C"),
    (20, "HD OBD"),
    (21, "WWH OBD"),
    (23, "HD EOBD-I"),
    (24, "HD EOBD-I N"),
    (25, "HD EOBD-II"),
    (26, "HD EOBD-II N"),
    (28, "OBDBr-1"),
    (29, "OBDBr-2"),
    (30, "KOBD"),
    (31, "IOBD I"),
    (32, "IOBD II"),
    (33, "HD EOBD-IV"),
)

FUEL_TYPES: tuple[tuple[int, str], ...] = (
    (0, "not_available"),
    (1, "gasoline"),
    (2, "methanol"),
    (3, "ethanol"),
    (4, "diesel"),
    (5, "lpg"),
    (6, "cng"),
    (7, "propane"),
    (8, "electric"),
    (9, "bifuel_gasoline"),
    (10, "bifuel_methanol"),
    (11, "bifuel_ethanol"),
    (12, "bifuel_lpg"),
    (13, "bifuel_cng"),
    (14, "bifuel_propane"),
    (15, "bifuel_electricity"),
    (16, "bifuel_electric_combustion"),
    (17, "hybrid_gasoline"),
    (18, "hybrid_ethanol"),
    (19, "hybrid_diesel"),
    (20, "hybrid_electric"),
    (21, "hybrid_electric_combustion"),
    (22, "hybrid_regenerative"),
    (23, "bifuel_diesel"),
)

# O2 sensor position n (1..8) as PID 13 numbers them: 1-4 bank 1 sensors 1-4, 5-8 bank 2 sensors 1-4.
_O2_NARROW = {
    0x14 + i: (
        2,
        (
            _lin(f"o2_sensor_{i + 1}_voltage", "V", 0, 1, 1.0, 200.0, 0.0, 0.0, 1.275),
            _trim(f"o2_sensor_{i + 1}_fuel_trim", 1, invalid=0xFF),
        ),
    )
    for i in range(8)
}
_O2_WIDE_V = {
    0x24 + i: (
        4,
        (
            _lin(f"o2_sensor_{i + 1}_lambda", "", 0, 2, 2.0, 65536.0, 0.0, 0.0, 2.0),
            _lin(f"o2_sensor_{i + 1}_wr_voltage", "V", 2, 2, 8.0, 65536.0, 0.0, 0.0, 8.0),
        ),
    )
    for i in range(8)
}
_O2_WIDE_I = {
    0x34 + i: (
        4,
        (
            _lin(f"o2_sensor_{i + 1}_wr_lambda", "", 0, 2, 2.0, 65536.0, 0.0, 0.0, 2.0),
            _lin(f"o2_sensor_{i + 1}_wr_current", "mA", 2, 2, 1.0, 256.0, -128.0, -128.0, 128.0),
        ),
    )
    for i in range(8)
}


def _egt(bank: int, first: int) -> tuple[int, tuple[Field, ...]]:
    return 9, tuple(_temp16(f"egt_bank_{bank}_sensor_{first + i}", 1 + 2 * i, avail=i) for i in range(4))


def _aecd(first: int, count: int) -> tuple[int, tuple[Field, ...]]:
    return 1 + 4 * count, tuple(
        _lin(f"aecd_{first + i}_run_time", "s", 1 + 4 * i, 4, 1.0, 1.0, 0.0, 0.0, 4294967295.0, avail=i)
        for i in range(count)
    )


def _aecd2(first: int) -> tuple[int, tuple[Field, ...]]:
    """Five AECDs with two 4-byte timers each (PIDs 89 and 8A)."""
    return 41, tuple(
        _lin(f"aecd_{first + i}_timer_{t + 1}", "s", 1 + 8 * i + 4 * t, 4, 1.0, 1.0, 0.0, 0.0, 4294967295.0, avail=i)
        for i in range(5)
        for t in range(2)
    )


# pid: (data size in bytes, fields)
_FIELDS: dict[int, tuple[int, tuple[Field, ...]]] = {
    0x00: (4, (_support("pids_supported_01_20"),)),
    0x01: (
        4,
        (
            _flag("mil", 0, 7),
            _bits("dtc_count", 0, 0, 0x7F),
            _flag("compression_ignition", 1, 3),
            _flag("misfire_monitor_available", 1, 0),
            _flag("fuel_system_monitor_available", 1, 1),
            _flag("components_monitor_available", 1, 2),
            _flag("misfire_monitor_incomplete", 1, 4),
            _flag("fuel_system_monitor_incomplete", 1, 5),
            _flag("components_monitor_incomplete", 1, 6),
            *_monitors("available", "incomplete"),
            _hex("readiness_since_dtc_clear", 1, 3),
        ),
    ),
    0x02: (2, (Field("freeze_frame_dtc", "", DTC, 0, 2),)),
    0x03: (
        2,
        (
            _enum("fuel_system_1_status", 0, FUEL_SYSTEM_STATUS),
            _enum("fuel_system_2_status", 1, FUEL_SYSTEM_STATUS),
        ),
    ),
    0x04: (1, (_pct("engine_load"),)),
    0x05: (1, (_temp("engine_coolant_temperature"),)),
    0x06: (1, (_trim("short_term_fuel_trim_bank_1"),)),
    0x07: (1, (_trim("long_term_fuel_trim_bank_1"),)),
    0x08: (1, (_trim("short_term_fuel_trim_bank_2"),)),
    0x09: (1, (_trim("long_term_fuel_trim_bank_2"),)),
    0x0A: (1, (_lin("fuel_pressure", "kPa", 0, 1, 3.0, 1.0, 0.0, 0.0, 765.0),)),
    0x0B: (1, (_lin("intake_manifold_pressure", "kPa", 0, 1, 1.0, 1.0, 0.0, 0.0, 255.0),)),
    0x0C: (2, (_lin("engine_rpm", "rpm", 0, 2, 1.0, 4.0, 0.0, 0.0, 16383.75),)),
    0x0D: (1, (_lin("speed", "km/h", 0, 1, 1.0, 1.0, 0.0, 0.0, 255.0),)),
    0x0E: (1, (_lin("timing_advance", "°", 0, 1, 1.0, 2.0, -64.0, -64.0, 63.5),)),
    0x0F: (1, (_temp("intake_air_temperature"),)),
    0x10: (2, (_lin("maf", "g/s", 0, 2, 1.0, 100.0, 0.0, 0.0, 655.35),)),
    0x11: (1, (_pct("throttle_position"),)),
    0x12: (1, (_enum("secondary_air_status", 0, SECONDARY_AIR_STATUS),)),
    0x13: (1, (_bits("o2_sensors_present", 0),)),
    **_O2_NARROW,
    0x1C: (1, (_enum("obd_standard", 0, OBD_STANDARDS),)),
    0x1D: (1, (_bits("o2_sensors_present_4_banks", 0),)),
    0x1E: (1, (_flag("pto_active", 0, 0),)),
    0x1F: (2, (_lin("time_since_engine_start", "s", 0, 2, 1.0, 1.0, 0.0, 0.0, 65535.0),)),
    0x20: (4, (_support("pids_supported_21_40"),)),
    0x21: (2, (_lin("distance_with_mil_on", "km", 0, 2, 1.0, 1.0, 0.0, 0.0, 65535.0),)),
    0x22: (2, (_lin("fuel_rail_pressure_relative", "kPa", 0, 2, 0.079, 1.0, 0.0, 0.0, 5177.265),)),
    0x23: (2, (_lin("fuel_rail_gauge_pressure", "kPa", 0, 2, 10.0, 1.0, 0.0, 0.0, 655350.0),)),
    **_O2_WIDE_V,
    0x2C: (1, (_pct("commanded_egr"),)),
    0x2D: (1, (_trim("egr_error"),)),
    0x2E: (1, (_pct("commanded_evaporative_purge"),)),
    0x2F: (1, (_pct("fuel_level"),)),
    0x30: (1, (_lin("warmups_since_dtc_clear", "", 0, 1, 1.0, 1.0, 0.0, 0.0, 255.0),)),
    0x31: (2, (_lin("distance_since_dtc_clear", "km", 0, 2, 1.0, 1.0, 0.0, 0.0, 65535.0),)),
    0x32: (2, (_lin("evap_vapor_pressure", "Pa", 0, 2, 1.0, 4.0, 0.0, -8192.0, 8191.75, signed=True),)),
    0x33: (1, (_lin("barometric_pressure", "kPa", 0, 1, 1.0, 1.0, 0.0, 0.0, 255.0),)),
    **_O2_WIDE_I,
    0x3C: (2, (_temp16("catalyst_temperature_bank_1_sensor_1", 0),)),
    0x3D: (2, (_temp16("catalyst_temperature_bank_2_sensor_1", 0),)),
    0x3E: (2, (_temp16("catalyst_temperature_bank_1_sensor_2", 0),)),
    0x3F: (2, (_temp16("catalyst_temperature_bank_2_sensor_2", 0),)),
    0x40: (4, (_support("pids_supported_41_60"),)),
    0x41: (
        4,
        (
            _flag("misfire_monitor_enabled_this_cycle", 1, 0),
            _flag("fuel_system_monitor_enabled_this_cycle", 1, 1),
            _flag("components_monitor_enabled_this_cycle", 1, 2),
            _flag("misfire_monitor_incomplete_this_cycle", 1, 4),
            _flag("fuel_system_monitor_incomplete_this_cycle", 1, 5),
            _flag("components_monitor_incomplete_this_cycle", 1, 6),
            *_monitors("enabled_this_cycle", "incomplete_this_cycle"),
            _hex("monitor_status_this_cycle", 0, 4),
        ),
    ),
    0x42: (2, (_lin("control_module_voltage", "V", 0, 2, 1.0, 1000.0, 0.0, 0.0, 65.535),)),
    0x43: (2, (_lin("absolute_load", "%", 0, 2, 100.0, 255.0, 0.0, 0.0, 25700.0),)),
    0x44: (2, (_lin("commanded_equivalence_ratio", "", 0, 2, 2.0, 65536.0, 0.0, 0.0, 2.0),)),
    0x45: (1, (_pct("relative_throttle_position"),)),
    0x46: (1, (_temp("ambient_air_temperature"),)),
    0x47: (1, (_pct("absolute_throttle_position_b"),)),
    0x48: (1, (_pct("absolute_throttle_position_c"),)),
    0x49: (1, (_pct("accelerator_pedal_position_d"),)),
    0x4A: (1, (_pct("accelerator_pedal_position_e"),)),
    0x4B: (1, (_pct("accelerator_pedal_position_f"),)),
    0x4C: (1, (_pct("commanded_throttle_actuator"),)),
    0x4D: (2, (_lin("time_with_mil_on", "min", 0, 2, 1.0, 1.0, 0.0, 0.0, 65535.0),)),
    0x4E: (2, (_lin("time_since_dtc_clear", "min", 0, 2, 1.0, 1.0, 0.0, 0.0, 65535.0),)),
    0x4F: (
        4,
        (
            _lin("max_equivalence_ratio", "", 0, 1, 1.0, 1.0, 0.0, 0.0, 255.0),
            _lin("max_o2_sensor_voltage", "V", 1, 1, 1.0, 1.0, 0.0, 0.0, 255.0),
            _lin("max_o2_sensor_current", "mA", 2, 1, 1.0, 1.0, 0.0, 0.0, 255.0),
            _lin("max_intake_manifold_pressure", "kPa", 3, 1, 10.0, 1.0, 0.0, 0.0, 2550.0),
        ),
    ),
    0x50: (4, (_lin("max_maf", "g/s", 0, 1, 10.0, 1.0, 0.0, 0.0, 2550.0),)),
    0x51: (1, (_enum("fuel_type", 0, FUEL_TYPES),)),
    0x52: (1, (_pct("ethanol_fuel_percent"),)),
    0x53: (2, (_lin("evap_vapor_pressure_absolute", "kPa", 0, 2, 1.0, 200.0, 0.0, 0.0, 327.675),)),
    0x54: (2, (_lin("evap_vapor_pressure_wide", "Pa", 0, 2, 1.0, 1.0, -32767.0, -32767.0, 32768.0),)),
    0x55: (2, (_trim("short_term_secondary_o2_trim_bank_1", 0), _trim("short_term_secondary_o2_trim_bank_3", 1))),
    0x56: (2, (_trim("long_term_secondary_o2_trim_bank_1", 0), _trim("long_term_secondary_o2_trim_bank_3", 1))),
    0x57: (2, (_trim("short_term_secondary_o2_trim_bank_2", 0), _trim("short_term_secondary_o2_trim_bank_4", 1))),
    0x58: (2, (_trim("long_term_secondary_o2_trim_bank_2", 0), _trim("long_term_secondary_o2_trim_bank_4", 1))),
    0x59: (2, (_lin("fuel_rail_absolute_pressure", "kPa", 0, 2, 10.0, 1.0, 0.0, 0.0, 655350.0),)),
    0x5A: (1, (_pct("relative_accelerator_pedal_position"),)),
    0x5B: (1, (_pct("hybrid_battery_remaining"),)),
    0x5C: (1, (_temp("engine_oil_temperature"),)),
    0x5D: (2, (_lin("fuel_injection_timing", "°", 0, 2, 1.0, 128.0, -210.0, -210.0, 301.9921875),)),
    0x5E: (2, (_lin("engine_fuel_rate", "L/h", 0, 2, 1.0, 20.0, 0.0, 0.0, 3276.75),)),
    0x5F: (1, (_bits("emission_requirements", 0),)),
    0x60: (4, (_support("pids_supported_61_80"),)),
    0x61: (1, (_torque("drivers_demand_torque"),)),
    0x62: (1, (_torque("actual_engine_torque"),)),
    0x63: (2, (_lin("engine_reference_torque", "N·m", 0, 2, 1.0, 1.0, 0.0, 0.0, 65535.0),)),
    0x64: (
        5,
        (
            _torque("engine_torque_idle", 0),
            _torque("engine_torque_point_1", 1),
            _torque("engine_torque_point_2", 2),
            _torque("engine_torque_point_3", 3),
            _torque("engine_torque_point_4", 4),
        ),
    ),
    0x65: (2, (_bits("auxiliary_io_supported", 0), _bits("auxiliary_io_status", 1))),
    0x66: (
        5,
        (
            _lin("maf_sensor_a", "g/s", 1, 2, 1.0, 32.0, 0.0, 0.0, 2047.96875, avail=0),
            _lin("maf_sensor_b", "g/s", 3, 2, 1.0, 32.0, 0.0, 0.0, 2047.96875, avail=1),
        ),
    ),
    0x67: (
        3,
        (
            _temp("engine_coolant_temperature_sensor_1", 1, avail=0),
            _temp("engine_coolant_temperature_sensor_2", 2, avail=1),
        ),
    ),
    0x68: (
        7,
        (
            _temp("intake_air_temperature_bank_1_sensor_1", 1, avail=0),
            _temp("intake_air_temperature_bank_1_sensor_2", 2, avail=1),
            _temp("intake_air_temperature_bank_1_sensor_3", 3, avail=2),
            _temp("intake_air_temperature_bank_2_sensor_1", 4, avail=3),
            _temp("intake_air_temperature_bank_2_sensor_2", 5, avail=4),
            _temp("intake_air_temperature_bank_2_sensor_3", 6, avail=5),
        ),
    ),
    0x69: (
        7,
        (
            _pct("commanded_egr_a_duty_cycle", 1, avail=0),
            _pct("actual_egr_a_duty_cycle", 2, avail=1),
            _trim("egr_a_error", 3, avail=2),
            _pct("commanded_egr_b_duty_cycle", 4, avail=3),
            _pct("actual_egr_b_duty_cycle", 5, avail=4),
            _trim("egr_b_error", 6, avail=5),
        ),
    ),
    0x6A: (
        5,
        (
            _pct("commanded_intake_air_flow_a", 1, avail=0),
            _pct("relative_intake_air_flow_position_a", 2, avail=1),
            _pct("commanded_intake_air_flow_b", 3, avail=2),
            _pct("relative_intake_air_flow_position_b", 4, avail=3),
        ),
    ),
    0x6B: (
        5,
        (
            _temp("egr_temperature_bank_1_sensor_1", 1, avail=0),
            _temp("egr_temperature_bank_1_sensor_2", 2, avail=1),
            _temp("egr_temperature_bank_2_sensor_1", 3, avail=2),
            _temp("egr_temperature_bank_2_sensor_2", 4, avail=3),
        ),
    ),
    0x6C: (
        5,
        (
            _pct("commanded_throttle_actuator_a", 1, avail=0),
            _pct("relative_throttle_position_a", 2, avail=1),
            _pct("commanded_throttle_actuator_b", 3, avail=2),
            _pct("relative_throttle_position_b", 4, avail=3),
        ),
    ),
    0x6D: (
        11,
        (
            _lin("commanded_fuel_rail_pressure_a", "kPa", 1, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=0),
            _lin("fuel_rail_pressure_a", "kPa", 3, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=1),
            _temp("fuel_rail_temperature_a", 5, avail=2),
            _lin("commanded_fuel_rail_pressure_b", "kPa", 6, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=3),
            _lin("fuel_rail_pressure_b", "kPa", 8, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=4),
            _temp("fuel_rail_temperature_b", 10, avail=5),
        ),
    ),
    0x6E: (
        9,
        (
            _lin("commanded_injection_pressure_a", "kPa", 1, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=0),
            _lin("injection_pressure_a", "kPa", 3, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=1),
            _lin("commanded_injection_pressure_b", "kPa", 5, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=2),
            _lin("injection_pressure_b", "kPa", 7, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=3),
        ),
    ),
    0x6F: (
        3,
        (
            _lin("turbo_compressor_inlet_pressure_a", "kPa", 1, 1, 1.0, 1.0, 0.0, 0.0, 255.0, avail=0),
            _lin("turbo_compressor_inlet_pressure_b", "kPa", 2, 1, 1.0, 1.0, 0.0, 0.0, 255.0, avail=1),
        ),
    ),
    0x70: (
        10,
        (
            _lin("commanded_boost_pressure_a", "kPa", 1, 2, 1.0, 32.0, 0.0, 0.0, 2047.96875, avail=0),
            _lin("boost_pressure_a", "kPa", 3, 2, 1.0, 32.0, 0.0, 0.0, 2047.96875, avail=1),
            _lin("commanded_boost_pressure_b", "kPa", 5, 2, 1.0, 32.0, 0.0, 0.0, 2047.96875, avail=2),
            _lin("boost_pressure_b", "kPa", 7, 2, 1.0, 32.0, 0.0, 0.0, 2047.96875, avail=3),
            _bits("boost_pressure_control_status", 9),
        ),
    ),
    0x71: (
        6,
        (
            _pct("commanded_vgt_position_a", 1, avail=0),
            _pct("vgt_position_a", 2, avail=1),
            _pct("commanded_vgt_position_b", 3, avail=2),
            _pct("vgt_position_b", 4, avail=3),
            _bits("vgt_control_status", 5),
        ),
    ),
    0x72: (
        5,
        (
            _pct("commanded_wastegate_a", 1, avail=0),
            _pct("wastegate_position_a", 2, avail=1),
            _pct("commanded_wastegate_b", 3, avail=2),
            _pct("wastegate_position_b", 4, avail=3),
        ),
    ),
    0x73: (
        5,
        (
            _lin("exhaust_pressure_bank_1", "kPa", 1, 2, 1.0, 100.0, 0.0, 0.0, 655.35, avail=0),
            _lin("exhaust_pressure_bank_2", "kPa", 3, 2, 1.0, 100.0, 0.0, 0.0, 655.35, avail=1),
        ),
    ),
    0x74: (
        5,
        (
            _lin("turbo_a_rpm", "rpm", 1, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=0),
            _lin("turbo_b_rpm", "rpm", 3, 2, 10.0, 1.0, 0.0, 0.0, 655350.0, avail=1),
        ),
    ),
    0x75: (
        7,
        (
            _temp("turbo_a_compressor_inlet_temperature", 1, avail=0),
            _temp("turbo_a_compressor_outlet_temperature", 2, avail=1),
            _temp16("turbo_a_turbine_inlet_temperature", 3, avail=2),
            _temp16("turbo_a_turbine_outlet_temperature", 5, avail=3),
        ),
    ),
    0x76: (
        7,
        (
            _temp("turbo_b_compressor_inlet_temperature", 1, avail=0),
            _temp("turbo_b_compressor_outlet_temperature", 2, avail=1),
            _temp16("turbo_b_turbine_inlet_temperature", 3, avail=2),
            _temp16("turbo_b_turbine_outlet_temperature", 5, avail=3),
        ),
    ),
    0x77: (
        5,
        (
            _temp("charge_air_cooler_temperature_bank_1_sensor_1", 1, avail=0),
            _temp("charge_air_cooler_temperature_bank_1_sensor_2", 2, avail=1),
            _temp("charge_air_cooler_temperature_bank_2_sensor_1", 3, avail=2),
            _temp("charge_air_cooler_temperature_bank_2_sensor_2", 4, avail=3),
        ),
    ),
    0x78: _egt(1, 1),
    0x79: _egt(2, 1),
    0x7A: (
        7,
        (
            _lin("dpf_bank_1_delta_pressure", "kPa", 1, 2, 1.0, 100.0, 0.0, -327.68, 327.67, signed=True, avail=0),
            _lin("dpf_bank_1_inlet_pressure", "kPa", 3, 2, 1.0, 100.0, 0.0, 0.0, 655.35, avail=1),
            _lin("dpf_bank_1_outlet_pressure", "kPa", 5, 2, 1.0, 100.0, 0.0, 0.0, 655.35, avail=2),
        ),
    ),
    0x7B: (
        7,
        (
            _lin("dpf_bank_2_delta_pressure", "kPa", 1, 2, 1.0, 100.0, 0.0, -327.68, 327.67, signed=True, avail=0),
            _lin("dpf_bank_2_inlet_pressure", "kPa", 3, 2, 1.0, 100.0, 0.0, 0.0, 655.35, avail=1),
            _lin("dpf_bank_2_outlet_pressure", "kPa", 5, 2, 1.0, 100.0, 0.0, 0.0, 655.35, avail=2),
        ),
    ),
    0x7C: (
        9,
        (
            _temp16("dpf_bank_1_inlet_temperature", 1, avail=0),
            _temp16("dpf_bank_1_outlet_temperature", 3, avail=1),
            _temp16("dpf_bank_2_inlet_temperature", 5, avail=2),
            _temp16("dpf_bank_2_outlet_temperature", 7, avail=3),
        ),
    ),
    0x7D: (1, (_bits("nox_nte_control_area_status", 0),)),
    0x7E: (1, (_bits("pm_nte_control_area_status", 0),)),
    0x7F: (
        13,
        (
            _lin("engine_run_time", "s", 1, 4, 1.0, 1.0, 0.0, 0.0, 4294967295.0, avail=0),
            _lin("engine_idle_run_time", "s", 5, 4, 1.0, 1.0, 0.0, 0.0, 4294967295.0, avail=1),
            _lin("engine_pto_run_time", "s", 9, 4, 1.0, 1.0, 0.0, 0.0, 4294967295.0, avail=2),
        ),
    ),
    0x80: (4, (_support("pids_supported_81_a0"),)),
    0x81: _aecd(1, 5),
    0x82: _aecd(6, 5),
    0x83: (
        9,
        (
            _lin("nox_bank_1_sensor_1", "ppm", 1, 2, 1.0, 1.0, 0.0, 0.0, 65535.0, avail=0),
            _lin("nox_bank_1_sensor_2", "ppm", 3, 2, 1.0, 1.0, 0.0, 0.0, 65535.0, avail=1),
            _lin("nox_bank_2_sensor_1", "ppm", 5, 2, 1.0, 1.0, 0.0, 0.0, 65535.0, avail=2),
            _lin("nox_bank_2_sensor_2", "ppm", 7, 2, 1.0, 1.0, 0.0, 0.0, 65535.0, avail=3),
        ),
    ),
    0x84: (1, (_temp("manifold_surface_temperature"),)),
    0x85: (
        10,
        (
            _lin("reagent_consumption", "L/h", 1, 2, 1.0, 200.0, 0.0, 0.0, 327.675, avail=0),
            _lin("reagent_demand", "L/h", 3, 2, 1.0, 200.0, 0.0, 0.0, 327.675, avail=1),
            _pct("reagent_tank_level", 5, avail=2),
            _lin("nox_warning_indicator_time", "s", 6, 4, 1.0, 1.0, 0.0, 0.0, 4294967295.0, avail=3),
        ),
    ),
    0x86: (
        5,
        (
            _lin("pm_bank_1_sensor_1", "mg/m³", 1, 2, 1.0, 80.0, 0.0, 0.0, 819.1875, avail=0),
            _lin("pm_bank_2_sensor_1", "mg/m³", 3, 2, 1.0, 80.0, 0.0, 0.0, 819.1875, avail=1),
        ),
    ),
    0x87: (
        5,
        (
            _lin("intake_manifold_pressure_a", "kPa", 1, 2, 1.0, 32.0, 0.0, 0.0, 2047.96875, avail=0),
            _lin("intake_manifold_pressure_b", "kPa", 3, 2, 1.0, 32.0, 0.0, 0.0, 2047.96875, avail=1),
        ),
    ),
    0x88: (13, (_hex("scr_inducement_system", 0, 13),)),
    0x89: _aecd2(11),
    0x8A: _aecd2(16),
    0x8B: (7, (_hex("diesel_aftertreatment_status", 0, 7),)),
    0x8C: (17, (_hex("o2_sensor_wide_range", 0, 17),)),
    0x8D: (1, (_pct("absolute_throttle_position_g"),)),
    0x8E: (1, (_torque("engine_friction_torque"),)),
    0x8F: (7, (_hex("pm_sensor_output", 0, 7),)),
    0x90: (3, (_hex("wwh_obd_vehicle_information", 0, 3),)),
    0x91: (5, (_hex("wwh_obd_ecu_information", 0, 5),)),
    0x92: (2, (_hex("fuel_system_control_status", 0, 2),)),
    0x93: (3, (_hex("wwh_obd_counters", 0, 3),)),
    0x94: (12, (_hex("nox_inducement_status", 0, 12),)),
    0x98: _egt(1, 5),
    0x99: _egt(2, 5),
    0x9A: (6, (_hex("hybrid_ev_system_data", 0, 6),)),
    0x9B: (4, (_hex("def_sensor_output", 0, 4),)),
    0x9C: (17, (_hex("o2_sensor_wide_range_data", 0, 17),)),
    0x9D: (
        4,
        (
            _lin("engine_fuel_mass_rate", "g/s", 0, 2, 1.0, 50.0, 0.0, 0.0, 1310.7),
            _lin("vehicle_fuel_mass_rate", "g/s", 2, 2, 1.0, 50.0, 0.0, 0.0, 1310.7),
        ),
    ),
    0x9E: (2, (_lin("exhaust_flow_rate", "kg/h", 0, 2, 1.0, 5.0, 0.0, 0.0, 13107.0),)),
    0x9F: (9, (_hex("fuel_system_percentage_use", 0, 9),)),
    0xA0: (4, (_support("pids_supported_a1_c0"),)),
    0xA1: (
        9,
        (
            _lin("nox_corrected_bank_1_sensor_1", "ppm", 1, 2, 1.0, 1.0, 0.0, 0.0, 65535.0, avail=0),
            _lin("nox_corrected_bank_1_sensor_2", "ppm", 3, 2, 1.0, 1.0, 0.0, 0.0, 65535.0, avail=1),
            _lin("nox_corrected_bank_2_sensor_1", "ppm", 5, 2, 1.0, 1.0, 0.0, 0.0, 65535.0, avail=2),
            _lin("nox_corrected_bank_2_sensor_2", "ppm", 7, 2, 1.0, 1.0, 0.0, 0.0, 65535.0, avail=3),
        ),
    ),
    0xA2: (2, (_lin("cylinder_fuel_rate", "mg/stroke", 0, 2, 1.0, 32.0, 0.0, 0.0, 2047.96875),)),
    0xA6: (4, (_lin("odometer", "km", 0, 4, 1.0, 10.0, 0.0, 0.0, 429496729.5),)),
    0xC0: (4, (_support("pids_supported_c1_e0"),)),
}

# Title and default refresh rate (Hz, None = on demand) from the reference's "Refresh Rate" table.
_REFERENCE: dict[int, tuple[str, float | None]] = {
    0x00: ("Supported PIDs 01-20", None),
    0x01: ("Monitor status since DTCs cleared", None),
    0x02: ("DTC that caused required freeze frame data storage", None),
    0x03: ("Fuel system status", 0.1),
    0x04: ("Calculated LOAD Value", 1.0),
    0x05: ("Engine Coolant Temperature", 1.0),
    0x06: ("Short Term Fuel Trim - Bank 1/Bank 3", 5.0),
    0x07: ("Long Term Fuel Trim Bank 1/Bank 3", 5.0),
    0x08: ("Short Term Fuel Trim - Bank 2/Bank 4", 5.0),
    0x09: ("Long Term Fuel Trim - Bank 2/Bank 4", 5.0),
    0x0A: ("Fuel Pressure (gauge)", 1.0),
    0x0B: ("Intake Manifold Absolute Pressure", 0.5),
    0x0C: ("Engine RPM", 5.0),
    0x0D: ("Vehicle Speed Sensor", 1.0),
    0x0E: ("Ignition Timing Advance for #1 Cylinder", 5.0),
    0x0F: ("Intake Air Temperature", 1.0),
    0x10: ("Air Flow Rate from Mass Air Flow Sensor", 5.0),
    0x11: ("Absolute Throttle Position", 5.0),
    0x12: ("Commanded Secondary Air Status", None),
    0x13: ("Location of Oxygen Sensors", None),
    0x14: ("O2 Sensor Voltage / Short Term Fuel Trim - 1.1", 5.0),
    0x15: ("O2 Sensor Voltage / Short Term Fuel Trim - 1.2", 5.0),
    0x16: ("O2 Sensor Voltage / Short Term Fuel Trim - 1.3 or 2.1", 5.0),
    0x17: ("O2 Sensor Voltage / Short Term Fuel Trim - 1.4 or 2.2", 5.0),
    0x18: ("O2 Sensor Voltage / Short Term Fuel Trim - 2.1 or 3.1", 5.0),
    0x19: ("O2 Sensor Voltage / Short Term Fuel Trim - 2.2 or 3.2", 5.0),
    0x1A: ("O2 Sensor Voltage / Short Term Fuel Trim - 2.3 or 4.1", 5.0),
    0x1B: ("O2 Sensor Voltage / Short Term Fuel Trim - 2.4 or 4.2", 5.0),
    0x1C: ("OBD requirements to which vehicle or engine is certified.", None),
    0x1D: ("Location of oxygen sensors", None),
    0x1E: ("Auxiliary Input Status", None),
    0x1F: ("Time Since Engine Start", 1.0),
    0x20: ("Supported PIDs 21-40", None),
    0x21: ("Distance Traveled While MIL is Activated", 1.0),
    0x22: ("Fuel Pressure relative to manifold vacuum", 1.0),
    0x23: ("Fuel Rail Pressure", 1.0),
    0x24: ("O2 Lambda / Sensor Voltage - 1.1", 5.0),
    0x25: ("O2 Lambda / Sensor Voltage - 1.2", 5.0),
    0x26: ("O2 Lambda / Sensor Voltage - 1.3 or 2.1", 5.0),
    0x27: ("O2 Lambda / Sensor Voltage - 1.4 or 2.2", 5.0),
    0x28: ("O2 Lambda / Sensor Voltage - 2.1 or 3.1", 5.0),
    0x29: ("O2 Lambda / Sensor Voltage - 2.2 or 3.2", 5.0),
    0x2A: ("O2 Lambda / Sensor Voltage - 2.3 or 4.1", 5.0),
    0x2B: ("O2 Lambda / Sensor Voltage - 2.4 or 4.2", 5.0),
    0x2C: ("Commanded EGR", 1.0),
    0x2D: ("EGR Error", 0.1),
    0x2E: ("Commanded Evaporative Purge", 0.1),
    0x2F: ("Fuel Level Input", 1 / 60),
    0x30: ("Number of warm-ups since DTCs cleared", None),
    0x31: ("Distance traveled since DTCs cleared", 0.1),
    0x32: ("Evap System Vapor Pressure", 0.1),
    0x33: ("Barometric Pressure", 0.1),
    0x34: ("O2 Lambda / Sensor Current - 1.1", 5.0),
    0x35: ("O2 Lambda / Sensor Current - 1.2", 5.0),
    0x36: ("O2 Lambda / Sensor Current - 1.3 or 2.1", 5.0),
    0x37: ("O2 Lambda / Sensor Current - 1.4 or 2.2", 5.0),
    0x38: ("O2 Lambda / Sensor Current - 2.1 or 3.1", 5.0),
    0x39: ("O2 Lambda / Sensor Current - 2.2 or 3.2", 5.0),
    0x3A: ("O2 Lambda / Sensor Current - 2.3 or 4.1", 5.0),
    0x3B: ("O2 Lambda / Sensor Current - 2.4 or 4.2", 5.0),
    0x3C: ("Catalyst Temperature Bank 1, Sensor 1", 1.0),
    0x3D: ("Catalyst Temperature Bank 2, Sensor 1", 1.0),
    0x3E: ("Catalyst Temperature Bank 1, Sensor 2", 1.0),
    0x3F: ("Catalyst Temperature Bank 2, Sensor 2", 1.0),
    0x40: ("Supported PIDs 41-60", None),
    0x41: ("Monitor status this driving cycle", 1 / 60),
    0x42: ("Control module voltage", 0.1),
    0x43: ("Absolute Load Value", 1.0),
    0x44: ("Fuel/Air Commanded Equivalence Ratio", 1.0),
    0x45: ("Relative Throttle Position", 5.0),
    0x46: ("Ambient air temperature", 0.1),
    0x47: ("Absolute Throttle Position B", 5.0),
    0x48: ("Absolute Throttle Position C", 5.0),
    0x49: ("Accelerator Pedal Position D", 5.0),
    0x4A: ("Accelerator Pedal Position E", 5.0),
    0x4B: ("Accelerator Pedal Position F", 5.0),
    0x4C: ("Commanded Throttle Actuator Control", 5.0),
    0x4D: ("Engine run time while MIL is activated", 0.1),
    0x4E: ("Engine run time since DTCs cleared", 0.1),
    0x4F: ("External Test Equipment Configuration Information #1", 1 / 60),
    0x50: ("External Test Equipment Configuration Information #2", 1 / 60),
    0x51: ("Type of fuel currently being utilized by the internal combustion engine", None),
    0x52: ("Alcohol Fuel Percentage", 1 / 60),
    0x53: ("Absolute Evap System Vapor Pressure", None),
    0x54: ("Evap System Vapor Pressure", None),
    0x55: ("Short Term Secondary O2 Sensor Fuel Trim Banks 1 & 3", 5.0),
    0x56: ("Long Term Secondary O2 Sensor Fuel Trim Banks 1 & 3", 5.0),
    0x57: ("Short Term Secondary O2 Sensor Fuel Trim Banks 2 & 4", 5.0),
    0x58: ("Long Term Secondary O2 Sensor Fuel Trim Banks 2 & 4", 5.0),
    0x59: ("Fuel Rail Pressure", 1.0),
    0x5A: ("Relative Accelerator Pedal Position", 5.0),
    0x5B: ("Hybrid/EV Battery Pack Remaining Charge", 0.1),
    0x5C: ("Engine Oil Temperature", 0.1),
    0x5D: ("Fuel Injection Timing", 0.1),
    0x5E: ("Engine Fuel Rate", 0.1),
    0x5F: ("Emission requirements to which vehicle is designed", None),
    0x60: ("Supported PIDs 61-80", None),
    0x61: ("Driver's Demand Engine - Percent Torque", 1.0),
    0x62: ("Actual Engine - Percent Torque", 1.0),
    0x63: ("Engine Reference Torque", 1.0),
    0x64: ("Engine Percent Torque Data", 1.0),
    0x65: ("Auxiliary Inputs / Outputs", 1.0),
    0x66: ("Mass Air Flow Sensor", 5.0),
    0x67: ("Engine Coolant Temperature", 0.1),
    0x68: ("Intake Air Temperature Sensor", 0.1),
    0x69: ("Commanded EGR and EGR Error", 0.1),
    0x6A: ("Commanded Diesel Intake Air Flow Control and Relative Intake Air Flow Position", 1.0),
    0x6B: ("Exhaust Gas Recirculation Temperature", 1.0),
    0x6C: ("Commanded Throttle Actuator Control and Relative Throttle Position", 5.0),
    0x6D: ("Fuel Pressure Control System", 1.0),
    0x6E: ("Injection Pressure Control System", 1.0),
    0x6F: ("Turbocharger Compressor Inlet Pressure", 1.0),
    0x70: ("Boost Pressure Control", 1.0),
    0x71: ("Variable Geometry Turbo (VGT) Control", 1.0),
    0x72: ("Wastegate Control", 1.0),
    0x73: ("Exhaust Pressure", 1.0),
    0x74: ("Turbocharger RPM", 5.0),
    0x75: ("Turbocharger A Temperature", 0.1),
    0x76: ("Turbocharger B Temperature", 0.1),
    0x77: ("Charge Air Cooler Temperature (CACT)", 0.1),
    0x78: ("Exhaust Gas Temperature (EGT) Bank 1", 0.1),
    0x79: ("Exhaust Gas Temperature (EGT) Bank 2", 0.1),
    0x7A: ("Diesel Particulate Filter (DPF) Bank 1", 0.1),
    0x7B: ("Diesel Particulate Filter (DPF) Bank 2", 0.1),
    0x7C: ("Diesel Particulate Filter (DPF) Temperature", 0.1),
    0x7D: ("NOx NTE control area status", 0.1),
    0x7E: ("PM NTE control area status", 0.1),
    0x7F: ("Engine Run Time", 1.0),
    0x80: ("Supported PIDs 81-A0", None),
    0x81: ("Engine Run Time for AECD #1 - #5", 1.0),
    0x82: ("Engine Run Time for AECD #6 - #10", 1.0),
    0x83: ("NOx Sensor", 1.0),
    0x84: ("Manifold Surface Temperature", 0.1),
    0x85: ("NOx Control System", 1.0),
    0x86: ("Particulate Matter (PM) Sensor", 1.0),
    0x87: ("Intake Manifold Absolute Pressure", 0.5),
    0x88: ("SCR inducement system actual state", 0.1),
    0x89: ("Engine Run Time for AECD #11 - #15", 1.0),
    0x8A: ("Engine Run Time for AECD #16 - #20", 1.0),
    0x8B: ("Diesel Aftertreatment Status", None),
    0x8C: ("O2 Sensor (Wide Range)", 5.0),
    0x8D: ("Absolute Throttle Position G", 5.0),
    0x8E: ("Engine Friction - Percent Torque", 1.0),
    0x8F: ("Particulate Matter (PM) Sensor Output", 1.0),
    0x90: ("WWH-OBD Vehicle OBD System Information", None),
    0x91: ("WWH-OBD ECU OBD System Information", None),
    0x92: ("Fuel System Control Status (Compression Ignition)", 0.1),
    0x93: ("WWH-OBD Vehicle OBD Counters", None),
    0x94: ("NOx control - driver inducement system status and counters", None),
    0x98: ("Exhaust Gas Temperature (EGT) Bank 1", 0.1),
    0x99: ("Exhaust Gas Temperature (EGT) Bank 2", 0.1),
    0x9A: ("Hybrid/EV Vehicle System Data", None),
    0x9B: ("Diesel Exhaust Fluid Sensor Output", 0.1),
    0x9C: ("O2 Sensor (Wide Range)", 5.0),
    0x9D: ("Engine Fuel Rate", 1.0),
    0x9E: ("Engine Exhaust Flow Rate", 1.0),
    0x9F: ("Fuel System Percentage Use", 0.1),
    0xA0: ("Supported PIDs A1-C0", None),
    0xA1: ("NOx Sensor Corrected", 0.1),
    0xA2: ("Cylinder Fuel Rate", 0.1),
    # Beyond the reference table: requested by the gateway (odometer) or needed to walk bitmasks.
    0xA6: ("Odometer", 1 / 60),
    0xC0: ("Supported PIDs C1-E0", None),
}

#: The catalogue, by PID.
PIDS: dict[int, Pid] = {
    pid: Pid(pid, _REFERENCE[pid][0], size, _REFERENCE[pid][1], fields) for pid, (size, fields) in _FIELDS.items()
}

#: Mode 09 information types: pid → (name, unit, how the data is read).
#: ``count``: one byte; ``text``: ASCII; ``texts16``: 16-byte ASCII items; ``hex4``: 4-byte items as
#: hex; ``counters``: 2-byte big-endian integers; ``support``: the 4-byte bitmask.
MODE09: dict[int, tuple[str, str]] = {
    0x00: ("mode09_supported", "support"),
    0x01: ("vin_message_count", "count"),
    0x02: ("vin", "text"),
    0x03: ("calibration_id_message_count", "count"),
    0x04: ("calibration_ids", "texts16"),
    0x05: ("cvn_message_count", "count"),
    0x06: ("cvns", "hex4"),
    0x07: ("ipt_message_count", "count"),
    0x08: ("in_use_performance_tracking", "counters"),
    0x09: ("ecu_name_message_count", "count"),
    0x0A: ("ecu_name", "text"),
    0x0B: ("in_use_performance_tracking_ci", "counters"),
}

#: Names of the DTC readings per service.
DTC_SERVICES: dict[int, str] = {0x03: "dtcs", 0x07: "pending_dtcs", 0x0A: "permanent_dtcs"}


def by_name() -> dict[str, tuple[Pid, Field]]:
    """Every field name of the catalogue → its PID and field."""
    return {f.name: (p, f) for p in PIDS.values() for f in p.fields}


def _formula(f: Field) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 2
    raw = letters[f.start] if f.length == 1 else "".join(letters[f.start : f.start + f.length])
    if f.kind == FLAG:
        return f"{raw} bit {f.shift}"
    if f.kind == BITS:
        return raw + (f" >> {f.shift}" if f.shift else "") + (f" & 0x{f.mask:02X}" if f.mask != 0xFF else "")
    if f.kind == ENUM:
        return f"{raw}: enumeration (below)"
    if f.kind == SUPPORT:
        return f"{raw}: bit 31 − n set = PID base + n + 1 supported"
    if f.kind == DTC:
        return f"{raw}: DTC (P/C/B/U + 4 digits)"
    if f.kind == HEX:
        return f"{raw} as hex"
    if f.signed:
        raw = f"signed({raw})"
    text = raw
    if f.mul != 1.0:
        text = f"{text}×{f.mul:g}"
    if f.div != 1.0:
        text = f"{text}/{f.div:g}"
    if f.add:
        text = f"{text} {'+' if f.add > 0 else '−'} {abs(f.add):g}"
    return text


def markdown() -> str:
    """The catalogue as the Markdown page ``docs/pids.md``."""
    out = [
        "# PID catalogue",
        "",
        "Generated from `gateway/obd/pids.py`; do not edit. Regenerate with",
        "`python -c \"from gateway.obd.pids import markdown; print(markdown(), end='')\" > docs/pids.md`.",
        "Letters A, B, C … are the PID's data bytes; a multi-letter raw value (AB) is big-endian.",
        "“if A bit n” means the value is only reported when the ECU sets that support bit.",
        "",
        "| PID | Title | Bytes | Rate | Name | Unit | Formula | Range |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in PIDS.values():
        rate = "on demand" if p.rate_hz is None else ("1/60 Hz" if p.rate_hz < 0.05 else f"{p.rate_hz:g} Hz")
        for i, f in enumerate(p.fields):
            formula = _formula(f)
            if f.avail >= 0:
                formula += f" (if A bit {f.avail})"
            if f.gate_byte >= 0:
                formula += f" (if {'ABCD'[f.gate_byte]} bit {f.gate_bit} = {f.gate_value})"
            if f.invalid >= 0:
                formula += f" (omitted when raw = 0x{f.invalid:02X})"
            rng = "" if f.lo is None else f"{f.lo:g} … {f.hi:g}"
            head = f"| {p.pid:02X} | {p.title} | {p.size} | {rate} " if i == 0 else "| | | | "
            out.append(f"{head}| `{f.name}` | {f.unit} | {formula} | {rng} |")
    enums = {f.name: f.enum for p in PIDS.values() for f in p.fields if f.kind == ENUM}
    out += ["", "## Enumerations", "", "Values absent from a list read as `unknown_0xNN`.", ""]
    for name, table in enums.items():
        out.append(f"- `{name}`: " + ", ".join(f"{k} = `{v}`" for k, v in table))
    out += ["", "## Mode 09", "", "| PID | Name | Read as |", "|---|---|---|"]
    out += [f"| {pid:02X} | `{name}` | {how} |" for pid, (name, how) in MODE09.items()]
    out += ["", "## DTC services", "", "| Service | Name |", "|---|---|"]
    out += [f"| {s:02X} | `{name}` |" for s, name in DTC_SERVICES.items()]
    from gateway.obd.custom import profiles_markdown  # custom PIDs build on this module: import late

    out += ["", profiles_markdown().rstrip("\n")]
    return "\n".join(out) + "\n"
