"""Root conftest: shared fixtures are plugins under tests/fixtures/ (one module per peer)."""

import importlib.util

# Each fixture module belongs to the part of the suite that owns the peer it starts.
pytest_plugins = [
    name
    for name in ("tests.fixtures.sim", "tests.fixtures.broker", "tests.fixtures.daemon")
    if importlib.util.find_spec(name) is not None
]
