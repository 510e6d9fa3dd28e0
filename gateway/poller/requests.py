"""Requests a caller waits for (query, DTCs, clear), served between polls. Owned by their caller.

A request carries its caller's future. When the caller gives up (a time-out, a closed diagnostic
connection), the future is cancelled and the request is dropped before anything reaches the car; a clear
(service 04) additionally checks, at the write guard, that its future is still pending at the moment the
line is written. The queue is bounded: a flood of diagnostic requests gets "busy", not memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import AdapterError, GatewayError
from gateway.link.base import Session

log = logging.getLogger("gateway.poller")

#: requests waiting at once; more are refused (a technician's tool never needs more)
MAX_WAITING = 32


@dataclass
class Request:
    """One waiting request: what to run on the session, and the caller's future."""

    label: str
    run: Callable[[Session, Request], Awaitable[Any]]
    future: asyncio.Future[Any]

    def wanted(self) -> bool:
        """Whether the caller still waits for the answer."""
        return not self.future.done()


class RequestQueue:
    """A bounded FIFO of :class:`Request`; abandoned ones are skipped (and counted)."""

    def __init__(self, maxsize: int = MAX_WAITING) -> None:
        self._items: deque[Request] = deque()
        self.maxsize = maxsize
        #: requests whose caller gave up before they were served
        self.abandoned = 0

    def __len__(self) -> int:
        return len(self._items)

    def submit(self, label: str, run: Callable[[Session, Request], Awaitable[Any]]) -> asyncio.Future[Any]:
        """Queue a request; the future resolves with its result. AdapterError when the queue is full."""
        if len(self._items) >= self.maxsize:
            raise AdapterError(f"{self.maxsize} requests are already waiting for the adapter; try again later")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._items.append(Request(label, run, fut))
        return fut

    def next(self) -> Request | None:
        """The oldest request whose caller still waits, or None."""
        while self._items:
            req = self._items.popleft()
            if req.wanted():
                return req
            self.abandoned += 1
            log.info("dropped %s: its caller gave up before it was sent", req.label)
        return None

    def fail_all(self, exc: GatewayError) -> None:
        """Answer every waiting request with ``exc`` (the link went away)."""
        while self._items:
            req = self._items.popleft()
            if req.wanted():
                req.future.set_exception(exc)

    @staticmethod
    def resolve(req: Request, result: Any = None, exc: BaseException | None = None) -> None:
        """Give the caller its answer, unless it gave up meanwhile (never InvalidStateError)."""
        if req.future.done():
            return
        if exc is not None:
            req.future.set_exception(exc)
        else:
            req.future.set_result(result)
