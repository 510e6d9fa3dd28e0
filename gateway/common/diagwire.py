"""The diagnostic socket's wire format, written once for both ends.

The server (:mod:`gateway.diag`) and the CLI client (:mod:`gateway.commands.diag_client`) both use it, so
what one writes the other reads. One JSON object per line in each direction, UTF-8, ``\\n``-terminated, at
most :data:`MAX_LINE` bytes per line; output is strict JSON (:mod:`gateway.common.jsonout`: ``NaN`` and
infinities as ``null``). Stream lines are ``{"stream": KIND, "data": ...}`` with KIND one of
:data:`STREAM_KINDS`, or :data:`STREAM_DROPPED` with the count of items a slow client lost.
The examples are in ``docs/operations.md``.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.common import jsonout

MAX_LINE = 64 * 1024
PROTOCOL_VERSION = 1

STREAM_SAMPLE = "sample"
STREAM_EVENT = "event"
STREAM_TRIP = "trip"
STREAM_LINK = "link"
#: The kinds a client may ``subscribe`` to, in the order they are documented.
STREAM_KINDS: tuple[str, ...] = (STREAM_SAMPLE, STREAM_EVENT, STREAM_TRIP, STREAM_LINK)
#: Not subscribable: the server's notice that this client's queue overflowed.
STREAM_DROPPED = "dropped"


def encode(obj: Any) -> bytes:
    """One wire line: compact strict JSON and ``\\n``; types JSON lacks become strings."""
    return (jsonout.dumps(obj) + "\n").encode("utf-8")


def decode(line: bytes) -> Any:
    """One received line (without or with its ``\\n``) → the JSON value; ``ValueError`` if it is not JSON.

    Lenient on input (Python's parser also takes ``NaN``): a client's oddity gets an answer, not a drop.
    """
    try:
        return json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except RecursionError:
        # 60,000 '[' fit in one 64 KiB line and exhaust the parser's recursion limit
        raise ValueError("not valid JSON: nested too deeply") from None
