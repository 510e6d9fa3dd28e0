"""Root conftest: shared fixtures are plugins under tests/fixtures/ (one module per peer), plus the
simulator audit that fails any test whose simulated car was sent a non-read service."""

import importlib.util
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from firmware_sim import audit

# Each fixture module belongs to the part of the suite that owns the peer it starts.
pytest_plugins = [
    name
    for name in ("tests.fixtures.sim", "tests.fixtures.broker", "tests.fixtures.daemon")
    if importlib.util.find_spec(name) is not None
]

_AUDIT_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker that exempts a test from the simulator audit."""
    config.addinivalue_line(
        "markers",
        "sim_audit_allow(*services): the test deliberately makes a simulator see these non-read services "
        "(e.g. 0x10 to check the simulator's STOPPED modelling, 0x06 sent by python-OBD); the read-only "
        "audit still fails the test on any other")


@pytest.fixture(autouse=True)
def sim_audit(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Per-test audit directory in OBD_SIM_AUDIT_DIR (inherited by obd-gateway-sim subprocesses) and a
    clean in-process audit; the check itself runs right after the test body (pytest_runtest_call)."""
    directory = tmp_path_factory.mktemp("sim-audit")
    monkeypatch.setenv(audit.ENV_DIR, str(directory))
    audit.clear()
    request.node.stash[_AUDIT_DIR] = directory
    yield directory


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail the test if any simulator (in this process or a subprocess) saw a service outside the read
    set other than mode 04 (which the tests that send it check themselves)."""
    result = yield  # a test that already failed keeps its own error
    directory = item.stash.get(_AUDIT_DIR, None)
    if directory is None:
        return result
    allowed = {s for m in item.iter_markers("sim_audit_allow") for s in m.args}
    seen = audit.records() + audit.read_dir(directory, exclude_pid=_own_pid())
    bad = [r for r in audit.violations(seen) if r.service not in allowed]
    if bad:
        shown = ", ".join(f"{r.line!r} (service 0x{r.service:02X}, {r.via}, pid {r.pid})" for r in bad[:5])
        pytest.fail(f"read-only audit: the simulated car was sent {len(bad)} request(s) outside the read "
                    f"services 01 02 03 07 09 0A 21 22: {shown}", pytrace=False)
    return result


def _own_pid() -> int:
    import os

    return os.getpid()
