"""Packaging: the runtime set installs on its own (what `make run` does on a Raspberry Pi), dev tools
are extras, the licence is an SPDX expression with its file (issue 18, items 1, 8, 9)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# tools a box never needs; atheris has no wheel for a 64-bit Raspberry Pi and needs clang + libFuzzer
DEV_ONLY = ("atheris", "pytest", "ruff", "mypy", "hypothesis", "can-isotp", "obd", "trustme", "Cython")


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower()


def _imported_top_levels(*dirs: str) -> set[str]:
    found: set[str] = set()
    for d in dirs:
        for path in (ROOT / d).rglob("*.py"):
            for m in re.finditer(r"^\s*(?:import|from)\s+([A-Za-z_][\w]*)", path.read_text(encoding="utf-8"), re.M):
                found.add(m.group(1))
    return found


def test_license_is_an_spdx_string_with_its_file() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0", "an SPDX expression, not the deprecated table"
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")[:200]
    assert any(r.startswith("setuptools>=77") for r in PYPROJECT["build-system"]["requires"])


def test_runtime_dependencies_are_the_ones_runtime_code_imports() -> None:
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for tool in DEV_ONLY:
        assert tool.lower() not in runtime, f"{tool} is a dev tool, not a runtime dependency"
    dev = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert {"can-isotp", "pytest"} <= dev
    imported = _imported_top_levels("gateway", "firmware_sim")
    # import name -> distribution name, for the runtime set
    dist_of = {"serial": "pyserial", "msgpack": "msgpack", "aiosqlite": "aiosqlite", "aiomqtt": "aiomqtt",
               "httpx": "httpx", "authlib": "authlib", "can": "python-can", "paho": "paho-mqtt",
               "pynmea2": "pynmea2", "polyline": "polyline"}
    for module, dist in dist_of.items():
        if dist in runtime:
            assert module in imported, f"{dist} is a runtime dependency but nothing in gateway/ imports {module}"
    assert "isotp" not in imported and "atheris" not in imported


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(os.environ.get("OBD_GATEWAY_PURE") == "1",
                    reason="installs the native build into a fresh venv: runs in the native pass only")
def test_runtime_set_installs_into_a_fresh_venv_without_dev_tools(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBD_GATEWAY", "PYTHON", "VIRTUAL_ENV"))}
    # exactly what `make run` installs (non-editable here, so the checkout's own build is untouched)
    done = subprocess.run([py, "-m", "pip", "install", "-q", str(ROOT)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    listed = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], env=env, capture_output=True, text=True,
                            check=True).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    for tool in DEV_ONLY:
        assert tool.lower() not in installed, f"the runtime set pulled in {tool}"
    exe = env_dir / "bin" / "obd-gateway"
    version = subprocess.run([exe, "version"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert "parser: native" in version.stdout
    # every runtime module imports with the runtime set alone (uplinks, store, CAN, the simulator)
    code = ("import gateway.daemon, gateway.store, gateway.uplink.mqtt, gateway.uplink.https, "
            "gateway.transport.serial, gateway.commands.diag_client, firmware_sim.cli; "
            "from importlib.metadata import metadata; print(metadata('obd-gateway')['License-Expression'])")
    probe = subprocess.run([py, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "Apache-2.0"
    check = subprocess.run([exe, "check-config", str(ROOT / "gateway.sim.toml")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "configuration is valid" in check.stdout, check.stderr
    assert sys.version_info >= (3, 11)
