"""The shipped systemd files: verified by systemd's own tools where they exist, and checked for the
directives the operations contract promises (notify + watchdog, restart, dedicated user, hardening)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "obd-gateway.service"


def directives(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` → every value (systemd keys may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_is_clean() -> None:
    proc = subprocess.run(["sh", str(SYSTEMD / "verify.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "clean" in proc.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_verify_script_catches_a_bad_directive(tmp_path: Path) -> None:
    bad = tmp_path / "systemd"
    bad.mkdir()
    shutil.copy(SYSTEMD / "verify.sh", bad / "verify.sh")
    (bad / "obd-gateway.service").write_text(UNIT.read_text().replace("ProtectHome=yes", "ProtectHome=perhaps"))
    proc = subprocess.run(["sh", str(bad / "verify.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "ProtectHome" in proc.stderr or "protect home" in proc.stderr


def test_unit_promises() -> None:
    d = directives(UNIT)
    one = {k: v[-1] for k, v in d.items()}
    assert one["Service.Type"] == "notify"
    assert int(one["Service.WatchdogSec"]) > 0
    assert one["Service.Restart"] == "on-failure"
    assert one["Service.ExecStart"].startswith("/usr/local/bin/obd-gateway run --config /etc/obd-gateway/")
    assert one["Service.ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["Service.User"] == "obd-gateway"
    assert "dialout" in one["Service.SupplementaryGroups"].split()
    for key in ("StateDirectory", "RuntimeDirectory", "ConfigurationDirectory"):
        assert one[f"Service.{key}"] == "obd-gateway"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "RestrictSUIDSGID", "LockPersonality"):
        assert one[f"Service.{key}"] == "yes", key
    assert one["Service.ProtectSystem"] == "strict"
    assert one["Service.CapabilityBoundingSet"] == ""
    families = set(one["Service.RestrictAddressFamilies"].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_CAN", "AF_BLUETOOTH", "AF_NETLINK"}
    # the daemon must finish its 5 s shutdown before systemd resorts to SIGKILL
    assert int(one["Service.TimeoutStopSec"]) > 5


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed")
def test_sysusers_creates_the_user_in_dialout(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\n")
    proc = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSTEMD / "obd-gateway.sysusers.conf")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    group = (tmp_path / "etc" / "group").read_text()
    assert "obd-gateway:x:" in passwd and "/usr/sbin/nologin" in passwd
    assert any(line.startswith("dialout:") and line.endswith(":obd-gateway") for line in group.splitlines())


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles not installed")
def test_tmpfiles_creates_private_directories(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nobd-gateway:x:995:995::/:/bin/false\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nobd-gateway:x:995:\n")
    proc = subprocess.run(
        ["systemd-tmpfiles", f"--root={tmp_path}", "--create", str(SYSTEMD / "obd-gateway.tmpfiles.conf")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    state = tmp_path / "var" / "lib" / "obd-gateway"
    assert state.is_dir() and state.stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "etc" / "obd-gateway").stat().st_mode & 0o007 == 0
