"""Configuration loading: every bad key gets one clear line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_suit_a_pi_with_a_usb_elm327() -> None:
    cfg = config.from_dict({})
    assert cfg.adapter.port == "/dev/ttyUSB0"
    assert cfg.adapter.baud == 38400
    assert cfg.adapter.protocol == "auto"
    assert cfg.store.max_mb == 256
    assert cfg.store.commit_interval_s == 1.0
    assert cfg.mqtt.enabled is False and cfg.mqtt.tls is True
    assert cfg.diag.allow_clear_dtc is False
    assert cfg.diag.tcp_port == 0


@pytest.mark.parametrize("name", ["gateway.example.toml", "gateway.sim.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config.load(REPO / name)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mqtt": {"prot": 1}}, "mqtt.prot: unknown key"),
        ({"mqttt": {}}, "mqttt: unknown section"),
        ({"mqtt": {"port": "1883"}}, "mqtt.port: expected an integer, got str '1883'"),
        ({"mqtt": {"port": 0}}, "mqtt.port: must be 1-65535"),
        ({"mqtt": {"tls": "yes"}}, "mqtt.tls: expected true or false"),
        ({"store": {"max_mb": -1}}, "store.max_mb: must be greater than 0"),
        ({"store": {"max_mb": True}}, "store.max_mb: expected a number, got bool"),
        ({"adapter": {"baud": 12345}}, "adapter.baud: unsupported baud rate 12345"),
        ({"adapter": {"protocol": "Z"}}, "adapter.protocol: must be 'auto' or an ELM327 protocol"),
        ({"polling": {"pids": ["0C", "XYZ"]}}, "polling.pids: 'XYZ' is not a two-digit hex PID"),
        ({"polling": {"pids": "0C"}}, "polling.pids: expected a list of strings"),
        ({"polling": {"rates": {"0C": 0}}}, "polling.rates.0C: must be between 0 and 100 Hz"),
        ({"device": {"id": "a/b"}}, "device.id: must be non-empty"),
        ({"log": {"level": "LOUD"}}, "log.level: must be DEBUG, INFO, WARNING or ERROR"),
        ({"mqtt": 5}, "mqtt: expected a table [mqtt]"),
        ({"polling": {"rates": {"zz": 1.0}}}, "polling.rates: 'ZZ' is not a two-digit hex PID"),
        ({"polling": {"priorities": {"123": 1}}}, "polling.priorities: '123' is not a two-digit hex PID"),
        ({"polling": {"pids": []}}, "polling.pids: must name at least one PID"),
        ({"polling": {"idle_unrequested_s": -1}}, "polling.idle_unrequested_s: must be greater than 0"),
        ({"power": {"low_battery_v": -3}}, "power.low_battery_v: must be between 0 and 16 V"),
        ({"power": {"shutdown_after_parked_h": 48}}, "power.shutdown_after_parked_h: needs power.shutdown_command"),
        ({"power": {"shutdown_command": "poweroff 'x"}}, "power.shutdown_command: No closing quotation"),
        ({"diag": {"max_clients": 0}}, "diag.max_clients: must be greater than 0"),
        ({"mqtt": {"topic_prefix": "a/#"}}, "mqtt.topic_prefix: must be non-empty, without '#'"),
        ({"mqtt": {"enabled": True, "host": ""}}, "mqtt.host: must not be empty when mqtt.enabled = true"),
        ({"detection": {"speeding_mph": [80.0, 70.0]}}, "detection.speeding_mph: must be a non-empty list"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(raw)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_ints_are_accepted_for_floats() -> None:
    cfg = config.from_dict({"store": {"max_mb": 10}, "polling": {"rates": {"0c": 2}, "pids": ["0c", "0D"]}})
    assert cfg.store.max_mb == 10.0 and isinstance(cfg.store.max_mb, float)
    assert cfg.polling.rates == {"0C": 2.0}, "PID keys are normalised to the poller's upper case"
    assert cfg.polling.pids == ["0C", "0D"]


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)


def test_example_documents_every_key() -> None:
    """gateway.example.toml names every key with its default and a comment above it."""
    import dataclasses
    import tomllib

    text = (REPO / "gateway.example.toml").read_text()
    example = tomllib.loads(text)
    defaults = config.Config()
    lines = text.splitlines()
    for section in dataclasses.fields(config.Config):
        sec = getattr(defaults, section.name)
        for f in dataclasses.fields(sec):
            assert f.name in example.get(section.name, {}), f"[{section.name}] {f.name} is not in the example"
            value = example[section.name][f.name]
            assert value == getattr(sec, f.name), f"{section.name}.{f.name}: example {value!r} is not the default"
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{f.name} = ") and i > lines.index(
                f"[{section.name}]"))
            above = [line for line in lines[:index] if line.strip()][-1]
            assert above.startswith("#") or lines[index - 1].split(" = ")[0] in {
                g.name for g in dataclasses.fields(sec)
            }, f"{section.name}.{f.name} has no comment"
