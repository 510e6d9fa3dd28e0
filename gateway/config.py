"""Configuration: one TOML file → frozen dataclasses, one per section, validated.

Every error names the key (``mqtt.port``) and the problem in one line and raises
:class:`~gateway.errors.ConfigError`. Unknown keys are errors, so a typo never silently falls back
to a default. Adding a setting is adding a typed field (with a default) to its section's dataclass;
value checks live in the section's ``validate()``.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from gateway.errors import ConfigError
from gateway.obd.custom import CustomPid, parse_many, shipped_profiles

SYSTEM_CONFIG_PATH = Path("/etc/obd-gateway/config.toml")


def _is_hex_pid(pid: str) -> bool:
    return len(pid) == 2 and all(c in "0123456789ABCDEFabcdef" for c in pid)


#: Every number a configuration may hold, with its sane range (inclusive). A value outside it is one
#: ConfigError line; NaN and infinities never pass (``commit_interval_s = inf`` would never commit).
#: Lists and tables of numbers (``speeding_mph``, ``polling.rates``) apply the range to each item.
#: A new numeric setting gets its range here (tests/unit/test_config_ranges.py checks that every one has one).
RANGES: dict[str, tuple[float, float]] = {
    "adapter.baud": (9600, 2_000_000),
    "adapter.timeout_s": (0.05, 120.0),
    "adapter.fast_baud": (0, 500_000),
    "adapter.reconnect_max_s": (0.1, 3600.0),
    "polling.rates": (0.001, 100.0),  # at least once in ~17 min, at most 100 Hz
    "polling.priorities": (-8, 8),
    "polling.idle_unrequested_s": (1.0, 86_400.0),
    "location.nmea_baud": (4800, 230_400),
    "location.rate_hz": (0.01, 20.0),
    "location.min_mode": (2, 3),
    "location.max_hdop": (0.1, 100.0),
    "location.event_max_age_s": (0.1, 3600.0),
    "location.update_interval_s": (0.0, 86_400.0),  # 0 = never
    "location.path_tolerance_m": (0.1, 10_000.0),
    "location.path_max_points": (10, 100_000),
    "location.hard_turn_g": (0.05, 2.0),
    "location.hard_turn_min_speed_kmh": (0.0, 300.0),
    "location.hard_turn_refractory_s": (0.0, 3600.0),
    "location.hard_turn_max_gap_s": (0.1, 60.0),
    "mqtt.deadband": (0.0, 1e9),  # per value name; 0 = exact
    "mqtt.refresh_s": (1.0, 86_400.0),
    "mqtt.linger_s": (0.0, 3600.0),
    "mqtt.commands_per_minute": (1, 6000),
    "power.voltage_interval_s": (0.1, 3600.0),
    "power.wake_check_interval_s": (10.0, 86_400.0),  # not more often than a wake every 10 s
    "power.low_battery_v": (0.0, 16.0),
    "power.low_battery_hysteresis_v": (0.0, 2.0),
    "power.low_battery_confirm_s": (0.0, 3600.0),
    "power.shutdown_after_parked_h": (0.0, 8760.0),  # 0 = never; at most a year
    "detection.hard_brake_kmh_per_s": (0.1, 100.0),
    "detection.hard_accel_kmh_per_s": (0.1, 100.0),
    "detection.refractory_s": (0.0, 3600.0),
    "detection.max_gap_s": (0.01, 600.0),
    "detection.speeding_mph": (1.0, 300.0),
    "detection.speeding_rearm_mph": (0.0, 100.0),
    "detection.ignition_off_confirm_s": (0.0, 3600.0),
    "detection.charging_voltage_v": (8.0, 16.0),
    "detection.min_trip_distance_m": (0.0, 100_000.0),
    "detection.rate_window_s": (0.0, 600.0),
    "detection.max_brake_g": (0.01, 10.0),
    "detection.max_accel_g": (0.01, 10.0),
    "detection.integrate_max_gap_s": (0.1, 3600.0),
    "detection.mil_dtc_wait_s": (0.0, 3600.0),
    "detection.state_save_interval_s": (0.1, 3600.0),
    "detection.stoich_afr": (1.0, 100.0),
    "detection.fuel_density_g_per_l": (100.0, 2000.0),
    "store.max_mb": (0.1, 1_000_000.0),
    "store.commit_interval_s": (0.01, 60.0),
    "store.batch_samples": (1, 100_000),
    "store.checkpoint_interval_s": (1.0, 86_400.0),
    "store.dead_letter_after": (1, 1000),
    "mqtt.port": (1, 65535),
    "mqtt.batch_samples": (1, 100_000),
    "https.batch_samples": (1, 100_000),
    "https.timeout_s": (0.1, 600.0),
    "diag.tcp_port": (0, 65535),
    "diag.max_clients": (1, 1024),
    "diag.max_tcp_clients": (0, 64),
    "diag.idle_timeout_s": (1.0, 86_400.0),
}


def _check_range(key: str, value: Any) -> None:
    """ConfigError unless every number in ``value`` is finite and inside ``RANGES[key]``."""
    if isinstance(value, bool):
        return
    if isinstance(value, list):
        for item in value:
            _check_range(key, item)
        return
    if isinstance(value, dict):
        for item in value.values():
            _check_range(key, item)
        return
    if not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number (got {value})")
    bounds = RANGES.get(key)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{key}: must be between {bounds[0]:g} and {bounds[1]:g} (got {value:g})")


def _positive(section: str, name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{section}.{name}: must be greater than 0 (got {value})")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Who this box is."""

    id: str = "obd-gateway-0001"
    car_id: str = ""
    state_dir: str = "/var/lib/obd-gateway"

    def validate(self) -> None:
        if not self.id or any(c in self.id for c in "/#+ "):
            raise ConfigError(f"device.id: must be non-empty without '/', '#', '+' or spaces (got {self.id!r})")


@dataclass(frozen=True, slots=True)
class PortSpec:
    """A parsed port string."""

    kind: str
    target: str  # device path, host, BLE name/address, or python-can interface
    port: int = 0  # TCP port
    channel: str = ""  # CAN channel


def parse_port(port: str) -> PortSpec:
    """Parse an ``adapter.port`` string; raises ConfigError naming the problem."""
    p = port.strip()
    if not p:
        raise ConfigError("adapter.port: must not be empty")
    low = p.lower()
    if low.startswith("tcp:"):
        rest = p[4:]
        host, sep, num = rest.rpartition(":")
        if not sep:
            host, num = rest, "35000"
        host = host.strip("[]") or "192.168.0.10"
        try:
            tcp_port = int(num)
        except ValueError:
            raise ConfigError(f"adapter.port: {port!r}: TCP port must be a number") from None
        if not 0 < tcp_port < 65536:
            raise ConfigError(f"adapter.port: {port!r}: TCP port must be 1-65535")
        return PortSpec("tcp", host, port=tcp_port)
    if low.startswith("ble:"):
        target = p[4:]
        if not target:
            raise ConfigError(f"adapter.port: {port!r}: give the adapter's BLE name or address after 'ble:'")
        return PortSpec("ble", target)
    if low.startswith("can:"):
        parts = p[4:].split(":", 1)
        interface = parts[0] or "socketcan"
        channel = parts[1] if len(parts) > 1 and parts[1] else ("can0" if interface == "socketcan" else "")
        return PortSpec("can", interface, channel=channel)
    if low.startswith("serial:"):
        p = p[7:]
    return PortSpec("serial", p)


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """How to reach the car.

    ``port``: a serial device (``/dev/ttyUSB0``, ``/dev/rfcomm0``), ``tcp:HOST:PORT``,
    ``ble:NAME_OR_ADDRESS`` or ``can:INTERFACE:CHANNEL`` (``can:socketcan:can0``).
    """

    port: str = "/dev/ttyUSB0"
    baud: int = 38400
    protocol: str = "auto"
    timeout_s: float = 5.0
    fast_baud: int = 115200
    reconnect_max_s: float = 30.0
    state_file: str = ""

    @property
    def port_spec(self) -> PortSpec:
        """The parsed ``port`` (ConfigError when malformed)."""
        return parse_port(self.port)

    def validate(self) -> None:
        if not self.port:
            raise ConfigError("adapter.port: must not be empty")
        parse_port(self.port)  # serial path, tcp:HOST:PORT, ble:NAME, can:INTERFACE:CHANNEL
        if self.fast_baud and not 15_686 <= self.fast_baud <= 500_000:
            raise ConfigError(f"adapter.fast_baud: 0 (off) or 15686-500000, as ATBRD allows (got {self.fast_baud})")
        if self.baud not in (9600, 19200, 38400, 57600, 115200, 230400, 500000, 1000000, 2000000):
            raise ConfigError(f"adapter.baud: unsupported baud rate {self.baud}")
        _positive("adapter", "timeout_s", self.timeout_s)
        _positive("adapter", "reconnect_max_s", self.reconnect_max_s)
        valid = {"AUTO"} | {format(i, "X") for i in range(1, 13)}
        if self.protocol.upper() not in valid:
            raise ConfigError(f"adapter.protocol: must be 'auto' or an ELM327 protocol 1-C (got {self.protocol!r})")


@dataclass(frozen=True, slots=True)
class PollingConfig:
    """What to ask the car, and how often.

    ``pids``: mode 01 PIDs as hex strings. ``rates``: PID → Hz overriding the reference table.
    ``priorities``: PID → priority (higher first when the link cannot carry all demand).
    """

    pids: list[str] = field(
        default_factory=lambda: ["01", "04", "05", "0C", "0D", "10", "11", "2F", "46", "5E", "A6"]
    )
    rates: dict[str, float] = field(default_factory=dict)
    priorities: dict[str, int] = field(default_factory=dict)
    idle_unrequested_s: float = 60.0
    multi_pid: bool = True

    def __post_init__(self) -> None:
        # "0c" and "0C" are the same PID; the poller looks PIDs up in upper case.
        object.__setattr__(self, "pids", [p.upper() for p in self.pids])
        object.__setattr__(self, "rates", {k.upper(): v for k, v in self.rates.items()})
        object.__setattr__(self, "priorities", {k.upper(): v for k, v in self.priorities.items()})

    def validate(self) -> None:
        if not self.pids:
            raise ConfigError("polling.pids: must name at least one PID")
        for key, pids in (("pids", self.pids), ("rates", self.rates), ("priorities", self.priorities)):
            for pid in pids:
                if not _is_hex_pid(pid):
                    raise ConfigError(f"polling.{key}: {pid!r} is not a two-digit hex PID")
        for pid, hz in self.rates.items():
            if hz <= 0 or hz > 100:
                raise ConfigError(f"polling.rates.{pid}: must be between 0 and 100 Hz (got {hz})")
        _positive("polling", "idle_unrequested_s", self.idle_unrequested_s)


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    """Event thresholds; defaults are the reference's trigger rules."""

    hard_brake_kmh_per_s: float = 11.0
    hard_accel_kmh_per_s: float = 11.0
    refractory_s: float = 5.0
    max_gap_s: float = 2.0
    speeding_mph: list[float] = field(default_factory=lambda: [70.0, 75.0, 80.0])
    speeding_rearm_mph: float = 5.0
    ignition_off_confirm_s: float = 60.0
    charging_voltage_v: float = 13.2
    min_trip_distance_m: float = 10.0
    # rate window: the speed change rate is taken against a sample at least this old (0: consecutive)
    rate_window_s: float = 0.8
    # plausibility: harsher than this is a data fault, not driving (sources: gateway/detectors/plausibility.py)
    max_brake_g: float = 1.2
    max_accel_g: float = 0.8
    integrate_max_gap_s: float = 30.0
    mil_dtc_wait_s: float = 10.0
    state_save_interval_s: float = 10.0
    stoich_afr: float = 14.7
    fuel_density_g_per_l: float = 745.0

    def validate(self) -> None:
        _positive("detection", "hard_brake_kmh_per_s", self.hard_brake_kmh_per_s)
        _positive("detection", "hard_accel_kmh_per_s", self.hard_accel_kmh_per_s)
        _positive("detection", "max_gap_s", self.max_gap_s)
        for name, threshold in (("max_brake_g", self.hard_brake_kmh_per_s), ("max_accel_g", self.hard_accel_kmh_per_s)):
            # the bound must lie above the event threshold, or no event could ever be reported
            if getattr(self, name) * 9.80665 * 3.6 <= threshold:
                raise ConfigError(f"detection.{name}: must be above the hard event threshold ({threshold} km/h/s "
                                  f"= {threshold / 3.6 / 9.80665:.3f} g), got {getattr(self, name)}")
        _positive("detection", "integrate_max_gap_s", self.integrate_max_gap_s)
        _positive("detection", "state_save_interval_s", self.state_save_interval_s)
        _positive("detection", "stoich_afr", self.stoich_afr)
        _positive("detection", "fuel_density_g_per_l", self.fuel_density_g_per_l)
        if self.ignition_off_confirm_s < 0:
            raise ConfigError("detection.ignition_off_confirm_s: must not be negative")
        for name in ("refractory_s", "speeding_rearm_mph", "min_trip_distance_m", "mil_dtc_wait_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"detection.{name}: must not be negative")
        if not 0 <= self.rate_window_s <= self.max_gap_s:
            raise ConfigError(
                f"detection.rate_window_s: must be between 0 and max_gap_s ({self.max_gap_s}) "
                f"(got {self.rate_window_s})"
            )
        if (
            not self.speeding_mph
            or any(v <= 0 for v in self.speeding_mph)
            or self.speeding_mph != sorted(set(self.speeding_mph))
        ):
            raise ConfigError(
                f"detection.speeding_mph: must be a non-empty list of positive speeds in ascending order "
                f"(got {self.speeding_mph})"
            )
        if not 8 <= self.charging_voltage_v <= 16:
            raise ConfigError(
                f"detection.charging_voltage_v: must be between 8 and 16 V (got {self.charging_voltage_v})"
            )


@dataclass(frozen=True, slots=True)
class PowerConfig:
    """The box in a parked car: what it reads, when it may touch the bus, when it gives up (docs/operations.md).

    ``low_battery_v`` 12.2 V: a lead-acid battery at rest at about 50 % state of charge (the usual
    open-circuit voltage charts: 12.6-12.7 V full, 12.4 V about 75 %, 12.2 V about 50 %, 12.0 V about 25 %).
    """

    # seconds between ATRV readings while parked (an adapter command: nothing goes on the bus)
    voltage_interval_s: float = 2.0
    # optional bus wake check (one mode 01 request) while parked, for cars whose voltage does not show a start
    wake_check: bool = False
    wake_check_interval_s: float = 900.0
    # below this resting voltage every request stops and LOW_BATTERY is reported once
    low_battery_v: float = 12.2
    # ... until the voltage is back above low_battery_v + this
    low_battery_hysteresis_v: float = 0.3
    # ... for this long (a crank dip lasts a second or two)
    low_battery_confirm_s: float = 30.0
    # put the adapter to sleep between readings where the chip can (ATLP on ELM327 v2+, STSLEEP on STN)
    adapter_sleep: bool = True
    # command run once (after the store is flushed) on a low battery or after shutdown_after_parked_h parked
    shutdown_command: str = ""
    # hours parked before shutdown_command runs (0: only on a low battery)
    shutdown_after_parked_h: float = 0.0

    def validate(self) -> None:
        _positive("power", "voltage_interval_s", self.voltage_interval_s)
        _positive("power", "wake_check_interval_s", self.wake_check_interval_s)
        if not 0 <= self.low_battery_v <= 16:
            raise ConfigError(f"power.low_battery_v: must be between 0 and 16 V (got {self.low_battery_v})")
        if not 0 <= self.low_battery_hysteresis_v <= 2:
            raise ConfigError(
                f"power.low_battery_hysteresis_v: must be between 0 and 2 V (got {self.low_battery_hysteresis_v})"
            )
        if self.low_battery_confirm_s < 0:
            raise ConfigError("power.low_battery_confirm_s: must not be negative")
        if self.shutdown_after_parked_h < 0:
            raise ConfigError("power.shutdown_after_parked_h: must not be negative")
        if self.shutdown_after_parked_h > 0 and not self.shutdown_command.strip():
            raise ConfigError("power.shutdown_after_parked_h: needs power.shutdown_command")
        try:
            shlex.split(self.shutdown_command)
        except ValueError as exc:
            raise ConfigError(f"power.shutdown_command: {exc}") from None


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The SQLite buffer."""

    path: str = "/var/lib/obd-gateway/buffer.sqlite"
    max_mb: float = 256.0
    commit_interval_s: float = 1.0
    batch_samples: int = 500
    # pages of many group commits reach the main file once per checkpoint (SD-card wear)
    checkpoint_interval_s: float = 60.0
    # rejections (4xx other than auth and rate limits) of one record before it is dead-lettered
    dead_letter_after: int = 3

    def validate(self) -> None:
        _positive("store", "max_mb", self.max_mb)
        _positive("store", "commit_interval_s", self.commit_interval_s)
        _positive("store", "batch_samples", self.batch_samples)
        _positive("store", "checkpoint_interval_s", self.checkpoint_interval_s)
        _positive("store", "dead_letter_after", self.dead_letter_after)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The MQTT uplink (off by default)."""

    enabled: bool = False
    host: str = "localhost"
    port: int = 8883
    protocol: str = "auto"
    tls: bool = True
    tls_insecure_skip_verify: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password_file: str = ""
    topic_prefix: str = "obd"
    payload_format: str = "json"
    compression: str = "none"
    on_change: str = "status"
    deadband: dict[str, float] = field(default_factory=dict)
    refresh_s: float = 300.0
    linger_s: float = 0.0
    home_assistant_discovery: bool = False
    discovery_prefix: str = "homeassistant"
    batch_samples: int = 100
    remote_commands: bool = False
    remote_allow_unsafe: bool = False
    commands_per_minute: int = 30

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"mqtt.port: must be 1-65535 (got {self.port})")
        if self.protocol not in ("auto", "3.1.1", "5"):
            raise ConfigError(f"mqtt.protocol: must be 'auto', '3.1.1' or '5' (got {self.protocol!r})")
        if self.payload_format not in ("json", "msgpack", "columnar"):
            raise ConfigError(
                f"mqtt.payload_format: must be 'json', 'msgpack' or 'columnar' (got {self.payload_format!r})"
            )
        if self.compression not in ("none", "zlib", "zstd"):
            raise ConfigError(f"mqtt.compression: must be 'none', 'zlib' or 'zstd' (got {self.compression!r})")
        if self.on_change not in ("status", "all", "none"):
            raise ConfigError(f"mqtt.on_change: must be 'status', 'all' or 'none' (got {self.on_change!r})")
        for name, band in self.deadband.items():
            if not band >= 0 or band == float("inf"):
                raise ConfigError(f"mqtt.deadband.{name}: must be a finite number >= 0 (got {band!r})")
        _positive("mqtt", "refresh_s", self.refresh_s)
        if not 0 <= self.linger_s <= 3600:
            raise ConfigError(f"mqtt.linger_s: must be 0-3600 (got {self.linger_s})")
        _positive("mqtt", "batch_samples", self.batch_samples)
        _positive("mqtt", "commands_per_minute", self.commands_per_minute)
        if not self.discovery_prefix or any(c in self.discovery_prefix for c in "#+") or (
            self.discovery_prefix.endswith("/")
        ):
            raise ConfigError(
                "mqtt.discovery_prefix: must be non-empty, without '#' or '+', not ending in '/' "
                f"(got {self.discovery_prefix!r})"
            )
        if self.enabled and not self.host:
            raise ConfigError("mqtt.host: must not be empty when mqtt.enabled = true")
        if not self.topic_prefix or any(c in self.topic_prefix for c in "#+") or self.topic_prefix.endswith("/"):
            raise ConfigError(
                "mqtt.topic_prefix: must be non-empty, without '#' or '+', not ending in '/' "
                f"(got {self.topic_prefix!r})"
            )


@dataclass(frozen=True, slots=True)
class HttpsConfig:
    """The DRUST-style HTTPS uplink (off by default)."""

    enabled: bool = False
    base_url: str = "https://api.example.com"
    token_url: str = ""
    client_id: str = ""
    client_secret_file: str = ""
    username: str = ""
    password_file: str = ""
    token_file: str = "/var/lib/obd-gateway/oauth-token.json"
    ca_file: str = ""
    tls_insecure_skip_verify: bool = False
    batch_samples: int = 1000
    timeout_s: float = 15.0

    def validate(self) -> None:
        if self.enabled and not self.base_url.startswith("https://"):
            raise ConfigError(f"https.base_url: must start with https:// (got {self.base_url!r})")
        _positive("https", "timeout_s", self.timeout_s)


@dataclass(frozen=True, slots=True)
class DiagConfig:
    """The local diagnostic socket."""

    socket: str = "/run/obd-gateway/diag.sock"
    group: str = ""
    tcp_port: int = 0
    allow_clear_dtc: bool = False
    # Unix socket clients; TCP clients have their own budget, so they can never lock a technician out
    max_clients: int = 32
    max_tcp_clients: int = 4
    # a client that sends nothing for this long (and has no subscription) is disconnected
    idle_timeout_s: float = 300.0

    def validate(self) -> None:
        if not 0 <= self.tcp_port < 65536:
            raise ConfigError(f"diag.tcp_port: must be 0 (off) or 1-65535 (got {self.tcp_port})")
        if not self.socket:
            raise ConfigError("diag.socket: must not be empty")
        _positive("diag", "max_clients", self.max_clients)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging."""

    level: str = "INFO"
    console: bool = False

    def validate(self) -> None:
        if self.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log.level: must be DEBUG, INFO, WARNING or ERROR (got {self.level!r})")


@dataclass(frozen=True, slots=True)
class VehicleConfig:
    """Which vehicle profile's manufacturer-specific PIDs to poll (``obd-gateway profiles`` lists them).

    ``profile``: a shipped profile's name ('' = none). ``auto_profile``: when no profile is named, pick
    the one whose VIN prefix matches the car's VIN (read at connection), where a profile declares one."""

    profile: str = ""
    auto_profile: bool = True

    def validate(self) -> None:
        if self.profile:
            profiles = shipped_profiles()
            if self.profile not in profiles:
                raise ConfigError(
                    f"vehicle.profile: no profile {self.profile!r} (shipped: {', '.join(sorted(profiles))})"
                )


@dataclass(frozen=True, slots=True)
class PidsConfig:
    """User-defined PIDs: ``[[pids.custom]]`` tables (see docs/pids.md, "Writing a custom PID").

    Each has ``name``, ``unit``, ``header`` (request id, 3 or 8 hex digits), ``response`` (default: the
    header + 8, or 18DAF1xx for 18DAxxF1), ``service`` (01, 21 or 22 only), ``pid`` (2 hex digits; 4 for a
    service 22 DID), ``formula``, ``rate_hz`` (1), ``priority`` (0), ``min``/``max`` (sanity bounds) and
    ``source``. A custom PID replaces a profile PID of the same name."""

    custom: list[CustomPid] = field(default_factory=list)

    def validate(self) -> None:
        names = [p.name for p in self.custom]
        if len(names) != len(set(names)):
            raise ConfigError("pids.custom: a name is used twice")


@dataclass(frozen=True, slots=True)
class LocationConfig:
    """The GPS: where positions come from, which fixes count, trip paths, hard turns, privacy zones.

    ``source``: ``none``, ``gpsd`` (localhost:2947), ``gpsd:HOST:PORT``, or ``nmea:/dev/ttyACM0`` (a
    receiver on a serial port, read directly). ``privacy_zones``: tables ``{lat, lon, radius_m}``.
    """

    source: str = "none"
    nmea_baud: int = 9600
    rate_hz: float = 1.0
    min_mode: int = 2
    max_hdop: float = 5.0
    event_max_age_s: float = 5.0
    update_interval_s: float = 30.0
    path_tolerance_m: float = 5.0
    path_max_points: int = 500
    hard_turn_g: float = 0.42
    hard_turn_min_speed_kmh: float = 20.0
    hard_turn_refractory_s: float = 5.0
    hard_turn_max_gap_s: float = 2.5
    privacy_zones: list[dict[str, float]] = field(default_factory=list)

    @property
    def source_spec(self) -> tuple[str, str, int]:
        """``(kind, target, port)``: ``("gpsd", host, port)``, ``("nmea", device, 0)`` or ``("none", "", 0)``."""
        src = self.source.strip()
        low = src.lower()
        if low == "none":
            return ("none", "", 0)
        if low == "gpsd":
            return ("gpsd", "127.0.0.1", 2947)
        if low.startswith("gpsd:"):
            host, sep, num = src[5:].rpartition(":")
            if not sep or not num.isdigit() or not 0 < int(num) < 65536:
                raise ConfigError(f"location.source: {src!r}: expected gpsd:HOST:PORT")
            return ("gpsd", host.strip("[]") or "127.0.0.1", int(num))
        if low.startswith("nmea:") and len(src) > 5:
            return ("nmea", src[5:], 0)
        raise ConfigError(f"location.source: must be 'none', 'gpsd', 'gpsd:HOST:PORT' or 'nmea:/dev/...' (got {src!r})")

    def validate(self) -> None:
        _ = self.source_spec
        if self.nmea_baud not in (4800, 9600, 19200, 38400, 57600, 115200, 230400):
            raise ConfigError(f"location.nmea_baud: unsupported baud rate {self.nmea_baud}")
        if not 0 < self.rate_hz <= 20:
            raise ConfigError(f"location.rate_hz: must be between 0 and 20 Hz (got {self.rate_hz})")
        if self.min_mode not in (2, 3):
            raise ConfigError(f"location.min_mode: 2 (2D fix) or 3 (3D fix) (got {self.min_mode})")
        for name in ("max_hdop", "event_max_age_s", "path_tolerance_m", "hard_turn_g", "hard_turn_max_gap_s"):
            _positive("location", name, getattr(self, name))
        for name in ("update_interval_s", "hard_turn_min_speed_kmh", "hard_turn_refractory_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"location.{name}: must not be negative")
        if not 10 <= self.path_max_points <= 100_000:
            raise ConfigError(f"location.path_max_points: must be between 10 and 100000 (got {self.path_max_points})")
        for i, zone in enumerate(self.privacy_zones):
            if set(zone) != {"lat", "lon", "radius_m"}:
                raise ConfigError(
                    f"location.privacy_zones[{i}]: needs exactly lat, lon and radius_m (got {sorted(zone)})"
                )
            if not -90 <= zone["lat"] <= 90 or not -180 <= zone["lon"] <= 180 or zone["radius_m"] <= 0:
                raise ConfigError(f"location.privacy_zones[{i}]: lat -90..90, lon -180..180, radius_m > 0")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration."""

    device: DeviceConfig = field(default_factory=DeviceConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    polling: PollingConfig = field(default_factory=PollingConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    power: PowerConfig = field(default_factory=PowerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    https: HttpsConfig = field(default_factory=HttpsConfig)
    diag: DiagConfig = field(default_factory=DiagConfig)
    log: LogConfig = field(default_factory=LogConfig)
    vehicle: VehicleConfig = field(default_factory=VehicleConfig)
    pids: PidsConfig = field(default_factory=PidsConfig)
    location: LocationConfig = field(default_factory=LocationConfig)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is None:
        return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(
            tp, getattr(tp, "__name__", str(tp))
        )
    if origin is list:
        return f"a list of {_plural(get_args(tp)[0])}"
    if origin is dict:
        return f"a table of {_plural(get_args(tp)[1])}"
    return str(tp)


def _plural(tp: Any) -> str:
    return {float: "numbers", int: "integers", str: "strings", bool: "booleans"}.get(tp, str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        for arg in get_args(tp):
            try:
                return _coerce(key, arg, value)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {tp}, got {type(value).__name__} {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        (item_tp,) = get_args(tp)
        return [_coerce(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        _, val_tp = get_args(tp)
        return {str(k): _coerce(f"{key}.{k}", val_tp, v) for k, v in value.items()}
    return _coerce_scalar(key, tp, value)


def _coerce_scalar(key: str, tp: Any, value: Any) -> Any:
    is_bool = isinstance(value, bool)
    if tp is bool and is_bool:
        return value
    if tp is int and isinstance(value, int) and not is_bool:
        return value
    if tp is float and isinstance(value, (int, float)) and not is_bool:
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    if tp is type(None) and value is None:
        return None
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _build_section(name: str, cls: type[Any], raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table [{name}], got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(known))})")
    if cls is PidsConfig:
        items = raw.get("custom", [])
        if not isinstance(items, list):
            raise ConfigError(f"{name}.custom: expected [[{name}.custom]] tables, got {type(items).__name__}")
        pids_section = PidsConfig(custom=parse_many(items, f"{name}.custom"))
        pids_section.validate()
        return pids_section
    kwargs = {key: _coerce(f"{name}.{key}", hints[key], value) for key, value in raw.items()}
    section = cls(**kwargs)
    section.validate()  # the section's own messages first; then every number's range
    for key, value in kwargs.items():
        _check_range(f"{name}.{key}", value)
    return section


def from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from parsed TOML."""
    hints = typing.get_type_hints(Config)
    known = {f.name for f in dataclasses.fields(Config)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{key}: unknown section (known: {', '.join(sorted(known))})")
    sections = {key: _build_section(key, hints[key], value) for key, value in raw.items()}
    cfg = Config(**sections)
    for f in dataclasses.fields(Config):
        getattr(cfg, f.name).validate()
    return cfg


def load(path: str | Path) -> Config:
    """Read, parse and validate a TOML configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read configuration file: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return from_dict(raw)


def replace(cfg: Config, section: str, **changes: Any) -> Config:
    """A copy of ``cfg`` with some keys of one section changed (validated)."""
    new_section = dataclasses.replace(getattr(cfg, section), **changes)
    new_section.validate()
    return dataclasses.replace(cfg, **{section: new_section})
