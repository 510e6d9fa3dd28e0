"""A short bounded pass of the atheris fuzz target, so CI runs it on every change."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).with_name("fuzz_parser.py")


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed on this platform")
def test_bounded_fuzz_pass(tmp_path: Path) -> None:
    # libFuzzer stops at whichever limit comes first; a crash or a disagreement exits non-zero
    proc = subprocess.run(
        [sys.executable, str(TARGET), "-runs=150000", "-max_total_time=10", f"-artifact_prefix={tmp_path}/"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Done" in proc.stderr or "DONE" in proc.stderr, proc.stderr[-2000:]
