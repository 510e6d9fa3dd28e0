"""Both parser builds, imported directly so every test runs for each, whatever OBD_GATEWAY_PURE says."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def _native() -> ModuleType | None:
    try:
        return importlib.import_module("gateway._native")
    except ImportError:
        return None


NATIVE = _native()


@pytest.fixture(
    params=[
        "python",
        pytest.param(
            "native",
            marks=pytest.mark.skipif(
                NATIVE is None,
                reason="gateway._native is not installed (OBD_GATEWAY_PURE=1 install); only the pure twin is tested",
            ),
        ),
    ]
)
def build(request: pytest.FixtureRequest) -> ModuleType:
    """The parser module under test: the pure twin or the native extension."""
    if request.param == "python":
        from gateway.obd import pyparser

        return pyparser
    assert NATIVE is not None
    return NATIVE
