"""The one JSON encoder for everything the product emits (MQTT, the diagnostic socket, CLI ``--json``).

Output is strict JSON (RFC 8259): ``NaN`` and infinities, which Python's ``json`` writes by default and
``jq``, browsers and most back-ends reject, become ``null``; types JSON lacks become strings rather than
failing the whole message.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (at any depth of dicts, lists and tuples) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Strict JSON text: compact unless ``indent`` is given, non-finite floats as ``null``, UTF-8 kept."""
    separators = (",", ":") if indent is None else (",", ": ")
    try:
        return json.dumps(obj, separators=separators, indent=indent, default=str, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere: the fast path found it, now clean a copy
        return json.dumps(
            finite(obj), separators=separators, indent=indent, default=str, ensure_ascii=False, allow_nan=False
        )


def dumpb(obj: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes (an MQTT payload)."""
    return dumps(obj).encode("utf-8")
