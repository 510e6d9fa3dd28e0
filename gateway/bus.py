"""In-process fan-out of samples, events and trips to the consumers (detectors, store, diag).

The poller publishes the samples of one poll round as one :class:`~gateway.model.Samples` item.
Subscribers that opt in (``batches=True``: the daemon's store, detection and console) receive it as
it is; every other subscriber receives its samples one by one, as if each had been published alone.

Each subscriber has its own bounded queue. A slow subscriber never blocks the publisher:
``lossless`` subscribers (the store) apply back-pressure by making ``publish`` wait, the others
(diagnostic clients) drop their oldest item and count the drop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gateway.model import Sample, Samples


@dataclass(frozen=True, slots=True)
class SubscriberStats:
    """One subscription as :meth:`Bus.stats` reports it: a snapshot, not the live queue."""

    name: str
    lossless: bool
    #: items waiting in the subscriber's queue now
    queued: int
    maxsize: int
    #: items dropped because the (non-lossless) queue was full, since the subscription began
    dropped: int


class Subscription:
    """One consumer's queue. Iterate it with ``async for``; close it with :meth:`close`."""

    def __init__(
        self,
        bus: Bus,
        maxsize: int,
        lossless: bool,
        name: str,
        kinds: tuple[type, ...] | None = None,
        *,
        batches: bool = False,
    ) -> None:
        self._bus = bus
        self.kinds = kinds
        self.batches = batches
        # decided once: a batch item is delivered whole when its samples are of a wanted kind
        self.takes_samples = kinds is None or issubclass(Sample, kinds)
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.lossless = lossless
        self.name = name
        self.dropped = 0

    async def get(self) -> Any:
        """The next item."""
        return await self.queue.get()

    def get_nowait_all(self) -> list[Any]:
        """Every item waiting now, without blocking."""
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    def close(self) -> None:
        """Stop receiving."""
        self._bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            yield await self.queue.get()


class Bus:
    """Publish items to every subscription."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []

    def subscribe(
        self,
        name: str,
        maxsize: int = 10_000,
        lossless: bool = False,
        kinds: tuple[type, ...] | None = None,
        *,
        batches: bool = False,
    ) -> Subscription:
        """A new subscription; ``lossless`` ones make publishers wait instead of dropping.

        ``kinds`` limits the subscription to items of those types (a consumer that also publishes,
        such as detection, must not receive its own output or it could wait on itself).
        ``batches``: receive a poll round's :class:`~gateway.model.Samples` as one item (``maxsize``
        then counts rounds); without it each of its samples arrives as an item of its own.
        """
        sub = Subscription(self, maxsize, lossless, name, kinds, batches=batches)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscription (idempotent)."""
        if sub in self._subs:
            self._subs.remove(sub)

    def stats(self) -> list[SubscriberStats]:
        """Every current subscription, in subscription order (for status reports; read-only)."""
        return [SubscriberStats(s.name, s.lossless, s.queue.qsize(), s.queue.maxsize, s.dropped) for s in self._subs]

    async def publish(self, item: Any) -> None:
        """Deliver ``item`` to every subscriber; waits only for full lossless subscribers."""
        batch = type(item) is Samples
        for sub in list(self._subs):
            for one in self._for(sub, item, batch):
                if sub.lossless:
                    await sub.queue.put(one)
                else:
                    self._put_dropping(sub, one)

    def publish_nowait(self, item: Any) -> None:
        """Deliver without waiting; a full lossless queue raises ``asyncio.QueueFull``."""
        batch = type(item) is Samples
        for sub in list(self._subs):
            for one in self._for(sub, item, batch):
                if sub.lossless:
                    sub.queue.put_nowait(one)
                else:
                    self._put_dropping(sub, one)

    @staticmethod
    def _for(sub: Subscription, item: Any, batch: bool) -> tuple[Any, ...]:
        """What ``sub`` receives of ``item``: the item, its samples one by one, or nothing."""
        kinds = sub.kinds
        if not batch:
            return (item,) if kinds is None or isinstance(item, kinds) else ()
        if sub.batches:
            return (item,) if sub.takes_samples or isinstance(item, kinds or ()) else ()
        if kinds is None:
            return tuple(item)
        return tuple(s for s in item if isinstance(s, kinds))

    @staticmethod
    def _put_dropping(sub: Subscription, item: Any) -> None:
        if sub.queue.full():
            sub.queue.get_nowait()
            sub.dropped += 1
        sub.queue.put_nowait(item)
