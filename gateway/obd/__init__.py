"""OBD-II knowledge and the parser selection point.

``parser`` is the selected parser build, chosen once at import (as msgpack does):

* ``OBD_GATEWAY_PURE=1`` in the environment forces the pure-Python twin;
* otherwise the compiled ``gateway._native`` is used when it was installed;
* a package installed with ``OBD_GATEWAY_PURE=1 pip install .`` has no extension and uses the twin.

A compiled extension that exists but fails to import is an error, never a silent fallback.
``PARSER_BUILD`` is ``"native"`` or ``"python"``. Both builds expose the same API (see
:mod:`gateway.obd.pyparser`) and raise the same :class:`gateway.errors.ParseError`.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType


def _select() -> tuple[ModuleType, str]:
    if os.environ.get("OBD_GATEWAY_PURE", "") not in ("", "0"):
        from gateway.obd import pyparser

        return pyparser, "python"
    if importlib.util.find_spec("gateway._native") is None:
        from gateway.obd import pyparser

        return pyparser, "python"
    # an extension that exists but cannot load must fail loudly
    return importlib.import_module("gateway._native"), "native"


parser, PARSER_BUILD = _select()

__all__ = ["PARSER_BUILD", "parser"]
