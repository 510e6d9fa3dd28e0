"""The parser benchmark runs and reports its keys (timing goals live in the script, not in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "parser.py"


def test_bench_reports_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--n", "80", "--runs", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["responses"] == 80
    for key in ("native_per_s", "python_per_s", "python_obd_per_s"):
        assert key in result
    assert result["python_per_s"] > 0 and result["python_obd_per_s"] > 0
    # user formulas, both builds (issue 14)
    assert result["formula_values_per_s"]["python"] > 0
    assert "native" in result["formula_values_per_s"] and result["formula_lambda_per_s"] > 0
