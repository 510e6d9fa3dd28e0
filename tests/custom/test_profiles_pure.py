"""Profiles, pure: selection by VIN prefix, a source for every PID, configuration PIDs replacing a profile's."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.obd.custom import parse_many, parse_profile, profile_for_vin, resolve, shipped_profiles

PROFILE = """
name = "test-car"
title = "Test"
vin_prefixes = ["1N4AZ", "1N4"]
[[pid]]
name = "soc"
header = "79B"
response = "7BB"
service = "21"
pid = "01"
formula = "A"
source = "a test"
"""


def test_vin_prefix_selection_prefers_the_longest() -> None:
    short = parse_profile(PROFILE.replace('"1N4AZ", ', "").replace("test-car", "short"), "short.toml")
    long = parse_profile(PROFILE, "test.toml")
    assert profile_for_vin("1n4az0cp5dc400000", [short, long]) is long
    assert profile_for_vin("1N4BL4BV5KC000000", [short, long]) is short
    assert profile_for_vin("KMHK381GFKU000000", [short, long]) is None


def test_profile_pid_needs_a_source() -> None:
    with pytest.raises(ConfigError, match="pid soc names no source"):
        parse_profile(PROFILE.replace('source = "a test"', ""), "bad.toml")


def test_configuration_pid_replaces_the_profiles() -> None:
    mine = parse_many([{"name": "battery_soc", "header": "7E4", "service": "22", "pid": "0101",
                        "formula": "F/2 + 0"}], "pids.custom")
    pids = {p.name: p for p in resolve("hyundai-kona-ev", mine)}
    assert pids["battery_soc"].formula.text == "F/2 + 0" and pids["battery_soc"].response == 0x7EC
    assert len(pids) == len(shipped_profiles()["hyundai-kona-ev"].pids)


def test_29_bit_defaults_and_mixing() -> None:
    (p,) = parse_many([{"name": "x", "header": "18DA10F1", "service": "22", "pid": "F190", "formula": "A"}], "c")
    assert p.extended and p.response == 0x18DAF110 and p.request == bytes([0x22, 0xF1, 0x90])
    with pytest.raises(ConfigError, match="as many bits as the header"):
        parse_many([{"name": "x", "header": "18DA10F1", "response": "7E8", "service": "22", "pid": "F190",
                     "formula": "A"}], "c")
    with pytest.raises(ConfigError, match="pid: '5C' is not a 4-digit hex value"):
        parse_many([{"name": "x", "header": "7E0", "service": "22", "pid": "5C", "formula": "A"}], "c")
