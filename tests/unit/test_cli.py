"""The command line as a user runs it: a real subprocess, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, env=full_env, timeout=60, cwd=REPO
    )


def test_version_names_the_active_parser() -> None:
    pure = cli("version", env={"OBD_GATEWAY_PURE": "1"})
    assert pure.returncode == 0
    assert pure.stdout.splitlines()[1] == "parser: python"
    as_json = json.loads(cli("version", "--json", env={"OBD_GATEWAY_PURE": "1"}).stdout)
    assert as_json["parser"] == "python"
    assert as_json["version"]


def test_version_reports_native_when_built() -> None:
    pytest.importorskip("gateway._native", reason="native parser not built (OBD_GATEWAY_PURE install)")
    out = cli("version", env={"OBD_GATEWAY_PURE": "0"})
    assert out.stdout.splitlines()[1] == "parser: native"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mqtt]\nprot = 1\n", "mqtt.prot: unknown key"),
        ("[store]\nmax_mb = 'big'\n", "store.max_mb: expected a number, got str 'big'"),
        ("[adapter\n", "not valid TOML"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_broken_config_is_one_line_and_exit_2(tmp_path: Path, text: str, expected: str, command: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    args = ("check-config", str(path)) if command == "check-config" else ("run", "--config", str(path))
    out = cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert expected in lines[0]
    assert "Traceback" not in out.stderr


def test_run_without_config_names_the_system_path() -> None:
    out = cli("run")
    if Path("/etc/obd-gateway/config.toml").exists():
        pytest.skip("a system configuration exists on this machine")
    assert out.returncode == 2
    assert "/etc/obd-gateway/config.toml: configuration file not found" in out.stderr


def test_check_config_json_prints_effective_values(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[mqtt]\nport = 1884\n")
    out = cli("check-config", str(path), "--json")
    assert out.returncode == 0
    assert json.loads(out.stdout)["mqtt"]["port"] == 1884


def test_every_subcommand_has_help() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for name in ("run", "check-config", "version"):
        assert name in out.stdout
        sub = cli(name, "--help")
        assert sub.returncode == 0 and "usage:" in sub.stdout
