"""Issue 18: bad configuration and bad files (items 7, 15, 16, 17, 18) and rate-limited errors (19),
through the real CLI in a subprocess where the user would meet them."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from gateway import config
from gateway.common.ratelog import RateLimitedLog
from gateway.config import RANGES
from gateway.detection import DetectionEngine

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gateway", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[store]\nmax_mb = nan", "store.max_mb"),
        ("[store]\ncommit_interval_s = inf", "store.commit_interval_s"),
        ('[polling]\nrates = {"0C" = 1e-300}', "polling.rates"),
        ("[diag]\nmax_clients = 100000000", "diag.max_clients"),
        ("[detection]\nspeeding_mph = [70.0, inf]", "detection.speeding_mph"),
        ("[adapter]\ntimeout_s = -inf", "adapter.timeout_s"),
    ],
)
def test_every_number_has_a_finite_sane_range(tmp_path: Path, toml: str, key: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml + "\n")
    done = cli("check-config", str(f), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and key in done.stderr and "Traceback" not in done.stderr


def test_every_numeric_setting_has_a_range() -> None:
    missing = []
    for section in dataclasses.fields(config.Config):
        cls = typing.get_type_hints(config.Config)[section.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            args = typing.get_args(tp)
            numeric = tp in (int, float) or any(a in (int, float) for a in args)
            if numeric and f"{section.name}.{f.name}" not in RANGES:
                missing.append(f"{section.name}.{f.name}")
    assert not missing, f"numbers without a range in gateway.config.RANGES: {missing}"


def test_check_config_prints_effective_values_redacts_and_warns(tmp_path: Path) -> None:
    pw = tmp_path / "mqtt.password"
    pw.write_text("hunter2-secret\n")
    pw.chmod(0o600)
    f = tmp_path / "c.toml"
    f.write_text(
        f'[mqtt]\nenabled = true\ntls = false\nusername = "box"\npassword_file = "{pw}"\n'
        '[https]\nenabled = true\nbase_url = "https://user:s3cr3tpw@api.example.com"\ntls_insecure_skip_verify = true\n'
        "[store]\nmax_mb = 64\n"
    )
    text = cli("check-config", str(f), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "max_mb = 64.0" in text.stdout, "the effective values, as the README says"
    assert "commit_interval_s = 1.0" in text.stdout, "defaults included"
    assert "mqtt.tls = false" in text.stderr and "in clear" in text.stderr
    assert "https.tls_insecure_skip_verify = true" in text.stderr
    as_json = cli("check-config", "--json", str(f), cwd=tmp_path)
    assert as_json.returncode == 0
    for out in (text.stdout, as_json.stdout):
        assert "s3cr3tpw" not in out and "hunter2" not in out
    data = _strict(as_json.stdout)
    assert isinstance(data, dict) and data["https"]["base_url"] == "https://user:***@api.example.com"


def test_state_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    f = tmp_path / "c.toml"
    f.write_text(f'[device]\nstate_dir = "{tmp_path}/state"\n[adapter]\nport = "/dev/null-none"\n'
                 f'[store]\npath = "{tmp_path}/b.sqlite"\n[diag]\nsocket = "{tmp_path}/d.sock"\n')
    done = cli("run", "--config", str(f), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "device.state_dir" in done.stderr and "Traceback" not in done.stderr


def test_replay_bad_dates_and_deep_json_are_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("date,speed\n253402300800000,10\n12345678901234567890123456,12\n1000,5\n2000,1e308\n")
    done = cli("replay", str(csv), cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "d.csv:2: skipped" in done.stderr and "d.csv:3: skipped" in done.stderr
    as_json = cli("replay", "--json", str(csv), cwd=tmp_path)
    _strict(as_json.stdout)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    done = cli("replay", str(deep), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "nested too deeply" in done.stderr


def test_rate_limited_log_writes_one_line_then_a_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("t.rl"), interval_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t.rl"):
        for i in range(1582):
            now[0] = i * 0.03  # 1,582 failures in 45 s
            rl.warning("save", "cannot save: %s", "disk full")
        now[0] = 61.0
        rl.warning("save", "cannot save: %s", "disk full")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["cannot save: disk full", "cannot save: disk full (repeated 1581 times in the last 61 s)"]


def test_detection_state_on_a_read_only_disk_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from gateway.model import Sample

    blocked = tmp_path / "ro"
    blocked.write_text("a file where the state directory should be")
    engine = DetectionEngine(config.DetectionConfig(state_save_interval_s=0.1), device_id="d",
                             state_path=blocked / "trip-state.json")
    with caplog.at_level(logging.WARNING, logger="gateway.detection"):
        for i in range(300):
            engine.feed(Sample(1_700_000_000_000 + i * 200, "engine_rpm", 900.0, "rpm", 0x0C, 0x7E8))
    saves = [r for r in caplog.records if "cannot save detection state" in r.getMessage()]
    assert len(saves) == 1, [r.getMessage() for r in saves][:3]
