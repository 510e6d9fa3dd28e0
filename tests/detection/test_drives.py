"""The drive corpus (tests/detection/drives/*.csv, made by tests/detection/drivegen.py) against its truth files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.replay import replay_file

DRIVES = Path(__file__).parent / "drives"
TRUTHS = sorted(DRIVES.glob("*.truth.json"))
JUDGED = ("HARD_BRAKE", "HARD_ACCELERATION", "DATA_QUALITY")


def judged(path: Path) -> tuple[list[Any], list[Any]]:
    result = replay_file(path)
    assert result.skipped == []
    return [e for e in result.events if e.type in JUDGED], result.trips


def test_the_corpus_is_there() -> None:
    names = {p.name.removesuffix(".truth.json") for p in TRUTHS}
    assert {"emergency_stop", "stale_glitch", "logging_gap", "wheel_spin_ice", "dropout_spike"} <= names


@pytest.mark.parametrize("truth_path", TRUTHS, ids=[p.name.removesuffix(".truth.json") for p in TRUTHS])
def test_drive_matches_its_truth(truth_path: Path) -> None:
    truth = json.loads(truth_path.read_text())
    events, trips = judged(truth_path.with_name(truth_path.name.replace(".truth.json", ".csv")))
    assert [(e.type, e.payload.get("reason")) for e in events] == [
        (t["type"], t.get("reason")) for t in truth["events"]
    ], truth["description"]
    for ev, want in zip(events, truth["events"], strict=True):
        if "g_force" in want:
            assert ev.payload["g_force"] == pytest.approx(want["g_force"], abs=0.05)
        for key in ("speed_from_kph", "speed_to_kph"):
            if key in want:
                assert ev.payload[key] == pytest.approx(want[key], abs=3)
    assert len(trips) == truth["trips"]
    faults = sum(t["type"] == "DATA_QUALITY" for t in truth["events"])
    assert sum(t.summary["data_quality_events"] for t in trips) == faults
    assert sum(t.summary["hard_brakes"] for t in trips) == sum(t["type"] == "HARD_BRAKE" for t in truth["events"])


def test_quantised_jittery_drive_gives_the_events_of_its_clean_twin() -> None:
    rough, _ = judged(DRIVES / "emergency_stop.csv")
    clean, _ = judged(DRIVES / "emergency_stop_clean.csv")
    assert [e.type for e in rough] == [e.type for e in clean] == ["HARD_BRAKE"]
    for a, b in zip(rough, clean, strict=True):
        assert a.payload["g_force"] == pytest.approx(b.payload["g_force"], abs=0.05)
        assert abs(a.date_ms - b.date_ms) <= 1000


def test_cli_summary_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    assert main(["replay", str(DRIVES / "emergency_stop.csv"), "--summary"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (brake,) = [line for line in lines if "HARD_BRAKE" in line]
    assert "80 -> 2" in brake and "0.773" in brake and "3.932 s" in brake
    assert main(["replay", str(DRIVES / "stale_glitch.csv")]) == 0
    out = capsys.readouterr().out
    assert "reason=implausible_rate" in out and "1 data fault(s)" in out
    assert "fuel null" in out and "None" not in out  # the drive has no fuel figures
