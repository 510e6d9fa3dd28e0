"""The build: the native parser compiles or the install fails; pure-Python only when asked."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def source_tree(dest: Path) -> Path:
    """A copy of the tracked source files (what a fresh clone has)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
    return dest


def build_wheel(tree: Path, out: Path, pure: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OBD_GATEWAY_PURE": "1" if pure else "0"}
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(tree)],
        capture_output=True, text=True, env=env, timeout=600,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to copy the tracked files")
    return source_tree(tmp_path_factory.mktemp("src"))


def test_pure_install_has_no_extension(tree: Path, tmp_path: Path) -> None:
    result = build_wheel(tree, tmp_path, pure=True)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("obd_gateway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "gateway/obd/pyparser.py" in names
    assert not [n for n in names if n.startswith("gateway/_native")]


def test_failed_compile_fails_the_install(tree: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in tree.rglob("*"):
        if path.is_file():
            target = broken / path.relative_to(tree)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    pyx = broken / "native" / "parser.pyx"
    pyx.write_text(pyx.read_text() + "\ncdef int this is not cython(\n")
    result = build_wheel(broken, tmp_path / "out", pure=False)
    assert result.returncode != 0
    assert not list((tmp_path / "out").glob("*.whl"))
    assert "parser.pyx" in result.stdout + result.stderr
