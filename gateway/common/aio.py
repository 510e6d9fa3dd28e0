"""``wait_for`` that never loses a cancellation, on every Python the box may run (3.11 on Raspberry Pi OS
bookworm).

Python 3.11's :func:`asyncio.wait_for` runs the awaitable in an inner task; when that task finishes in the
same loop iteration as the outer task is cancelled, it returns the inner result and the cancellation is
lost (CPython gh-86296, fixed in 3.12 by rewriting ``wait_for`` on :func:`asyncio.timeout`). A forwarder
cancelled at shutdown just as new data arrived then went on draining forever: the daemon's stop hung. This
helper is what 3.12's ``wait_for`` is: the awaitable runs in the caller's task under ``asyncio.timeout``,
so a cancellation reaches it directly. ``asyncio.wait_for`` is banned in ``gateway/`` (ruff TID251).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109 - the stdlib signature
    """Await ``aw`` for at most ``timeout`` seconds (None: no limit); TimeoutError when it runs out."""
    async with asyncio.timeout(timeout):
        return await aw
