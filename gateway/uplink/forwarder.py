"""Drains one uplink's cursor of the store: connect, lease the oldest rows, send, acknowledge.

* Only while connected: when the uplink is down the forwarder reconnects with jittered exponential
  backoff (:class:`gateway.common.backoff.Backoff`) and leaves the rows in the store.
* Oldest first, in batches (about ``uplink.lease_samples`` samples per lease), ordered per stream: the
  cursor only moves over the leading acknowledged rows, the rest are sent again.
* At-least-once: a row is acknowledged only once the receiver returned its id.
* A batch rejected as malformed is retried row by row, so only the bad row is counted; after
  ``store.dead_letter_after`` rejections that row goes to the dead-letter table and the queue moves on.
* 429/5xx: wait the longer of ``Retry-After`` (when the server gave one) and the backoff.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway.common.backoff import Backoff
from gateway.common.ratelog import RateLimitedLog
from gateway.errors import RejectedBatch, UplinkError
from gateway.model import now_ms
from gateway.uplink.base import Record, RetryLater, Uplink

if TYPE_CHECKING:
    from gateway.store import Store, StoredRow

log = logging.getLogger("gateway.uplink.forwarder")

class Forwarder:
    """One uplink's delivery loop; ``run()`` until cancelled."""

    def __init__(
        self, store: Store, uplink: Uplink, name: str, *, idle_poll_s: float = 1.0, max_backoff_s: float = 60.0
    ) -> None:
        self.store = store
        self.uplink = uplink
        self.name = name
        self.idle_poll_s = idle_poll_s
        self.backoff = Backoff(first_s=min(0.5, max_backoff_s), max_s=max_backoff_s)
        self.sent_records = 0
        self.sent_samples = 0
        self._errors = RateLimitedLog(log)  # an unreachable back-end fails every retry: one line, then a count

    def _lease_rows(self) -> int:
        per_row = max(1, self.store.cfg.batch_samples)
        return max(1, getattr(self.uplink, "lease_samples", 1000) // per_row)

    async def run(self) -> None:
        """Deliver forever: reconnect with backoff, drain while connected."""
        try:
            while True:
                if not self.uplink.connected:
                    try:
                        await self.uplink.connect()
                        log.info("uplink %s connected", self.name)
                        self._errors.clear("connect")
                        self.backoff.reset()
                    except UplinkError as exc:
                        delay = self.backoff.next()
                        self._errors.warning("connect", "uplink %s: cannot connect (%s); retrying in %.1f s",
                                             self.name, exc, delay)
                        await asyncio.sleep(delay)
                        continue
                await self.drain_once()
        finally:
            await self.uplink.close()

    async def drain_once(self) -> int:
        """Lease and send one batch (waiting a little for data when idle); returns rows delivered."""
        rows = await self.store.lease(self.name, self._lease_rows())
        if not rows:
            await self.store.wait_for_data(self.name, self.idle_poll_s)
            return 0
        linger_s = float(getattr(self.uplink, "linger_s", 0.0))
        if linger_s > 0 and len(rows) < self._lease_rows():
            # a data-plan uplink: let the oldest row wait up to linger_s so one message carries many
            # (bigger batches compress far better); rows stay in the store meanwhile, nothing is at risk
            wait_s = (rows[0].ts_ms + linger_s * 1000 - now_ms()) / 1000
            if wait_s > 0:
                await asyncio.sleep(min(wait_s, linger_s))
                rows = await self.store.lease(self.name, self._lease_rows())
        if self.store.rejections(self.name, rows[0].id):
            rows = rows[:1]  # the head was rejected before: try it alone, not the whole batch again
        try:
            return await self._send(rows)
        except RejectedBatch as exc:
            return await self._send_singly(rows, exc)
        except RetryLater as exc:
            # at least what the server asked for, and growing while it keeps refusing
            delay = max(exc.retry_after_s or 0.0, self.backoff.next())
            self._errors.warning("later", "uplink %s: %s; waiting %.1f s", self.name, exc, delay)
            await asyncio.sleep(delay)
        except UplinkError as exc:
            delay = self.backoff.next()
            self._errors.warning("send", "uplink %s: send failed (%s); reconnecting in %.1f s", self.name, exc, delay)
            await self.uplink.close()
            await asyncio.sleep(delay)
        return 0

    async def _send(self, rows: list[StoredRow]) -> int:
        records = [Record(r.id, r.kind_name, r.ts_ms, r.count, raw=r.body) for r in rows]
        acked = await self.uplink.send(records)
        moved = self.store.ack(self.name, rows, set(acked))
        if moved:
            self.backoff.reset()
            self.sent_records += moved
            self.sent_samples += sum(r.count for r in rows[:moved])
        return moved

    async def _send_singly(self, rows: list[StoredRow], first: RejectedBatch) -> int:
        """Find the rejected row(s): send one at a time in order, stopping at the first rejection."""
        if len(rows) == 1:
            self._rejected(rows[0], first)
            return 0
        delivered = 0
        for row in rows:
            try:
                moved = await self._send([row])
            except RejectedBatch as exc:
                self._rejected(row, exc)
                return delivered
            if not moved:
                return delivered
            delivered += moved
        return delivered

    def _rejected(self, row: StoredRow, exc: RejectedBatch) -> None:
        if self.store.reject(self.name, row, str(exc)):
            self.store.ack(self.name, [row], {row.id})
        else:
            self._errors.warning("rejected", "uplink %s rejected %s (%s); will retry", self.name, row.id, exc)
