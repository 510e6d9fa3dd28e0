"""gateway.common.aio.wait_for: a cancellation that arrives as the awaited thing finishes is never lost.

The race of CPython gh-86296 (Python 3.11's asyncio.wait_for): the event is set, and the waiting task is
cancelled before it runs again. The test tries every interleaving of a few loop iterations between the two;
the stdlib function on 3.11 returns normally in one of them (the test's own check of the reference shows
the race is really exercised), the helper never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.common.aio import wait_for

Waiter = Callable[[Awaitable[Any], float | None], Awaitable[Any]]


async def _lost_cancellations(waiter: Waiter) -> list[int]:
    """The interleavings (loop iterations between set and cancel) in which a cancellation, requested while
    the task was still running, was lost: the task returned normally."""
    lost = []
    for spins in range(6):
        ev = asyncio.Event()

        async def wait_then_return(ev: asyncio.Event = ev) -> str:
            await waiter(ev.wait(), 10)
            return "returned"

        task = asyncio.create_task(wait_then_return())
        for _ in range(3):
            await asyncio.sleep(0)  # the task is waiting
        ev.set()
        for _ in range(spins):
            await asyncio.sleep(0)
        requested = task.cancel()  # False: it had already returned, nothing to lose
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if requested and not task.cancelled():
            lost.append(spins)
    return lost


async def test_a_cancellation_is_never_lost() -> None:
    assert await _lost_cancellations(wait_for) == []


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the race is fixed in the stdlib from 3.12 on")
async def test_the_reference_race_is_real_on_3_11() -> None:
    assert await _lost_cancellations(asyncio.wait_for) != []  # type: ignore[arg-type]


async def test_a_timeout_raises_and_a_result_comes_back() -> None:
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.sleep(10), 0.01)
    assert await wait_for(asyncio.sleep(0, "x"), 1) == "x"
    assert await wait_for(asyncio.sleep(0, "y"), None) == "y"
