"""check-config on user PIDs: a real subprocess; each refusal is one line naming the PID, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_cli import cli

GOOD = """
[[pids.custom]]
name = "battery_soc"
unit = "%"
header = "{header}"
response = "7EC"
service = "{service}"
pid = "0101"
formula = "{formula}"
min = 0
max = 100
"""


def _write(tmp_path: Path, *, header: str = "7E4", service: str = "22", formula: str = "F/2") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(GOOD.format(header=header, service=service, formula=formula))
    return path


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"service": "10"}, "pids.custom[0] (battery_soc).service: 10 is not a read service"),
        ({"service": "27"}, "service: 27 is not a read service"),
        ({"service": "2E"}, "service: 2E is not a read service"),
        ({"service": "31"}, "service: 31 is not a read service"),
        ({"service": "3E"}, "service: 3E is not a read service"),
        ({"formula": "A*256+QQ"}, "pids.custom[0] (battery_soc).formula 'A*256+QQ': unknown name 'QQ' at position 6"),
        ({"formula": "F/(4-4)"}, "formula 'F/(4-4)': division by zero at position 1"),
        ({"header": "7G4"}, "pids.custom[0] (battery_soc).header: '7G4' is not a 3 or 8-digit hex value"),
    ],
)
def test_refusals_are_one_line_and_exit_2(tmp_path: Path, change: dict[str, str], expected: str) -> None:
    out = cli("check-config", str(_write(tmp_path, **change)))
    assert out.returncode == 2, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_good_custom_pid_and_profile(tmp_path: Path) -> None:
    path = _write(tmp_path)
    path.write_text(path.read_text() + '\n[vehicle]\nprofile = "nissan-leaf"\n')
    out = cli("check-config", str(path), "--json")
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert cfg["vehicle"]["profile"] == "nissan-leaf"
    assert cfg["pids"]["custom"][0]["service"] == 0x22 and cfg["pids"]["custom"][0]["formula"]["text"] == "F/2"
    path.write_text('[vehicle]\nprofile = "tesla"\n')
    out = cli("check-config", str(path))
    assert out.returncode == 2 and "vehicle.profile: no profile 'tesla'" in out.stderr


def test_profiles_command_lists_every_shipped_profile() -> None:
    out = cli("profiles", "--json")
    assert out.returncode == 0
    profiles = json.loads(out.stdout)
    assert {"hyundai-kona-ev", "nissan-leaf", "generic-combustion"} <= set(profiles)
    kona = {p["name"]: p for p in profiles["hyundai-kona-ev"]["pids"]}
    assert kona["battery_soc"] | {"source": ""} == kona["battery_soc"] | {
        "header": "7E4", "response": "7EC", "service": "22", "pid": "0101", "formula": "F/2", "source": ""}
    assert all(p["source"] for prof in profiles.values() for p in prof["pids"])  # every PID names its source
    text = cli("profiles").stdout
    assert "nissan-leaf: Nissan Leaf" in text and "79B→7BB 21 01" in text
