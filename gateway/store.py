"""The store-and-forward buffer: one SQLite file (aiosqlite, WAL) between the bus and the uplinks.

Layout (schema version in ``PRAGMA user_version``, migrated forward on open)::

    outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, kind, ts_ms, count, body BLOB)
                                            -- id unique among events and trips (partial index)
    cursors(uplink PRIMARY KEY, seq)        -- per uplink: every row with seq <= cursor is delivered
    dead_letter(uplink, id, kind, ts_ms, count, body, reason, tries, at_ms)
    counters(name PRIMARY KEY, value)       -- evictions and dead letters, kept across restarts

Samples are grouped into timeseries *batches* of ``store.batch_samples`` samples, each one compact
msgpack row (:mod:`gateway.common.samplebatch`). The store keeps bodies as opaque bytes: turning them into a
back-end's format (DRUST Timeseries items) is the uplink side's job (:mod:`gateway.uplink.drust`). Events and
trips are one row each, their own id as the row id (``INSERT OR IGNORE``, so a re-emitted record is
stored once). Every row's ``id`` is stable: receivers de-duplicate by it.

Durability and the SD card. Appends are buffered in memory and committed as one transaction every
``store.commit_interval_s`` (group commit): one WAL append and one fsync per interval whatever the
sample rate. ``synchronous=FULL`` in WAL mode fsyncs the WAL at each commit, so a committed group
survives SIGKILL *and* power loss (``NORMAL`` would survive SIGKILL only); with group commit that costs
one fsync a second. Automatic checkpoints are off; the store checkpoints itself every
``store.checkpoint_interval_s`` so the pages of many commits reach the main file once, and counts the
bytes that go to disk (WAL frames + checkpointed pages) for :meth:`Store.stats`. What the store reports
as stored is what a commit made durable: items still in memory at a SIGKILL (at most one interval) are
lost by design.

Bounded size: when the pages in use exceed ``store.max_mb``, the oldest timeseries batches are evicted
first; events and trips only once no timeseries is left. Evictions are counted (``counters``).

Failures never reach the caller of :meth:`Store.append` (the polling must go on): a full disk keeps the
items in memory (bounded, oldest timeseries dropped and counted) and retries at each interval; a corrupt
file is moved aside (``<path>.corrupt-<time>``) and a fresh one started. Both are logged and reported in
:meth:`Store.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import msgpack

from gateway.common.aio import wait_for
from gateway.common.ratelog import RateLimitedLog
from gateway.common.samplebatch import pack_samples
from gateway.config import StoreConfig
from gateway.errors import StoreError
from gateway.model import Event, Position, RecordKind, Sample, Samples, TripRecord, now_ms

log = logging.getLogger("gateway.store")

#: The buffer holds the car's position history and VIN-linked data: owner read/write, group read, no one else.
#: SQLite gives its -wal and -shm files the mode of the database file, so creating that one suffices.
DB_MODE = 0o640


def _private_file(path: Path, mode: int = DB_MODE) -> None:
    """Create ``path`` with ``mode`` if missing; take group write and all other access from an existing one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        current = os.stat(path).st_mode & 0o777
        if current & ~mode:
            os.chmod(path, current & mode)
        return
    os.close(fd)
    os.chmod(path, mode)  # os.open's mode passes through the umask; this one is exact

#: The ``kind`` column: the on-disk code of each record kind (fixed: stored files depend on it).
KIND_CODES: dict[RecordKind, int] = {"timeseries": 0, "event": 1, "trip": 2}
KIND_NAMES: dict[int, RecordKind] = {code: name for name, code in KIND_CODES.items()}
KIND_TIMESERIES = KIND_CODES["timeseries"]
KIND_EVENT = KIND_CODES["event"]
KIND_TRIP = KIND_CODES["trip"]

#: Index i holds the statements that take a database from version i to i + 1.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE outbox(
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL,
            kind INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            count INTEGER NOT NULL,
            body BLOB NOT NULL)""",
        # events and trips may be re-emitted (after a restart) and must be stored once; batch ids are fresh and
        # never collide, so they stay out of the index: one page less to write per group commit
        "CREATE UNIQUE INDEX outbox_record_id ON outbox(id) WHERE kind != 0",
        "CREATE TABLE cursors(uplink TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
        """CREATE TABLE dead_letter(
            uplink TEXT NOT NULL, id TEXT NOT NULL, kind INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
            count INTEGER NOT NULL, body BLOB NOT NULL, reason TEXT NOT NULL, tries INTEGER NOT NULL,
            at_ms INTEGER NOT NULL, PRIMARY KEY (uplink, id))""",
        "CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

#: How many samples may wait in memory while the disk is full before the oldest are dropped.
MAX_PENDING_SAMPLES = 2_000_000
#: Open :meth:`Store.when_committed` watches at most; beyond it the oldest is cancelled.
MAX_COMMIT_WATCHES = 1024
_WAL_FRAME_HEADER = 24
_WAL_HEADER = 32


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row of the outbox as the forwarder leases it."""

    seq: int
    id: str
    kind: int
    ts_ms: int
    count: int
    body: bytes
    #: which database file the row came from (a corrupt file replaced by a fresh one starts seq anew)
    generation: int = 0

    @property
    def kind_name(self) -> RecordKind:
        """The record's kind by name (``timeseries``, ``event``, ``trip``)."""
        return KIND_NAMES[self.kind]


def _is_full(exc: BaseException) -> bool:
    return "full" in str(exc).lower() or getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or (
        isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    )


def _is_corrupt(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    )


class Store:
    """The SQLite outbox: ``append`` from the bus, ``lease``/``ack`` from the forwarders."""

    def __init__(
        self,
        store_cfg: StoreConfig,
        uplinks: Sequence[str] = (),
        *,
        dead_letter_after: int | None = None,
    ) -> None:
        self.cfg = store_cfg
        self.path = Path(store_cfg.path)
        self.uplinks = list(uplinks)
        self.dead_letter_after = dead_letter_after or store_cfg.dead_letter_after
        self._db: aiosqlite.Connection | None = None
        self._page_size = 4096
        # the open timeseries batch, as parallel lists so appending a sample stays cheap
        self._open: list[Sample] = []
        self._pending: list[tuple[str, int, int, int, bytes]] = []
        self._pending_samples = 0
        self._cursors: dict[str, int] = {}
        self._dirty_cursors: set[str] = set()
        self._depth: dict[str, list[int]] = {}  # uplink → [records, samples] not yet delivered
        self._last_upload_ms: dict[str, int | None] = dict.fromkeys(self.uplinks)
        self._rejections: dict[tuple[str, str], int] = {}
        self._dead_pending: list[tuple[str, StoredRow, str, int]] = []
        self._counters: dict[str, int] = {}
        self._counters_dirty = False
        self._generation = 0
        self._bytes_written = 0
        self._commits = 0
        self._last_checkpoint = time.monotonic()
        self._commit_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._new_data: dict[str, asyncio.Event] = {}
        self._disk_full = False
        self._last_error: str | None = None
        self._corrupt_moved: list[str] = []
        self._db_bytes = 0
        self._watches: list[tuple[set[str], asyncio.Future[None]]] = []
        # a full or read-only disk fails every commit: one line, then a count (gateway.common.ratelog)
        self._errors = RateLimitedLog(log)

    # -- lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        """Open (or create, migrate, or recover) the database and start the group-commit task."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store.path: cannot create {self.path.parent}: {exc}") from exc
        try:
            await self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                raise StoreError(f"store: cannot open {self.path}: {exc}") from exc
            await self._move_aside(str(exc))
            try:
                await self._connect()
            except sqlite3.DatabaseError as exc2:
                raise StoreError(f"store: cannot open a fresh {self.path}: {exc2}") from exc2
        for u in self.uplinks:
            self._new_data[u] = asyncio.Event()
            if (await self._depth_of(u))[0]:
                self._new_data[u].set()
        self._commit_task = asyncio.create_task(self._commit_loop(), name="store-commit")

    async def _connect(self) -> None:
        with contextlib.suppress(OSError):  # a read-only directory: sqlite3 says why in one line below
            _private_file(self.path)
        db = await aiosqlite.connect(str(self.path), isolation_level=None)
        try:
            await self._prepare(db)
        except BaseException:
            await db.close()
            raise
        self._db = db
        self._generation += 1

    async def _prepare(self, db: aiosqlite.Connection) -> None:
        # quick_check first: a file that is not a database or is damaged fails here, not mid-drive
        rows = await db.execute_fetchall("PRAGMA quick_check")
        result = [r[0] for r in rows]
        if result != ["ok"]:
            raise sqlite3.DatabaseError(f"database disk image is malformed: {'; '.join(map(str, result[:3]))}")
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA wal_autocheckpoint=0")
        await db.execute("PRAGMA journal_size_limit=8388608")
        self._page_size = (await (await db.execute("PRAGMA page_size")).fetchone() or (4096,))[0]
        version = (await (await db.execute("PRAGMA user_version")).fetchone() or (0,))[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store: {self.path} has schema version {version}, newer than this gateway's "
                f"{SCHEMA_VERSION}; upgrade the gateway or move the file away"
            )
        for v in range(version, SCHEMA_VERSION):
            await db.execute("BEGIN IMMEDIATE")
            for stmt in MIGRATIONS[v]:
                await db.execute(stmt)
            await db.execute(f"PRAGMA user_version={v + 1}")
            await db.execute("COMMIT")
            log.info("store: migrated %s to schema version %d", self.path, v + 1)
        await db.execute("BEGIN IMMEDIATE")
        for u in self.uplinks:
            await db.execute("INSERT OR IGNORE INTO cursors(uplink, seq) VALUES (?, 0)", (u,))
        await db.execute("COMMIT")
        self._cursors = {str(r[0]): int(r[1]) for r in await db.execute_fetchall("SELECT uplink, seq FROM cursors")}
        self._counters = {str(r[0]): int(r[1]) for r in await db.execute_fetchall("SELECT name, value FROM counters")}
        for u in self.uplinks:
            sql = "SELECT count(*), coalesce(sum(count), 0) FROM outbox WHERE seq > ?"
            row = await (await db.execute(sql, (self._cursors[u],))).fetchone()
            self._depth[u] = [int(row[0]), int(row[1])] if row else [0, 0]
        self._db_bytes = await self._used_bytes(db)

    async def _depth_of(self, uplink: str) -> list[int]:
        return self._depth.get(uplink, [0, 0])

    async def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        log.error("store: %s is unusable (%s); moved to %s, starting a fresh buffer", self.path, reason, target)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(str(self.path) + suffix, str(target) + suffix)
        self._corrupt_moved.append(str(target))
        self._last_error = f"corrupt database moved to {target}: {reason}"
        self._cursors = {}
        self._depth = {}

    async def flush(self) -> None:
        """Seal the open timeseries batch and commit everything now."""
        self._seal()
        await self._commit()

    async def close(self) -> None:
        """Flush, checkpoint and close (idempotent)."""
        if self._commit_task is not None:
            self._commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_task
            self._commit_task = None
        if self._db is None:
            return
        await self.flush()
        with contextlib.suppress(sqlite3.Error):
            await self._checkpoint()
        await self._db.close()
        self._db = None

    # -- writing ---------------------------------------------------------------------------------
    async def append(self, items: Sequence[Sample | Samples | Event | TripRecord | Position]) -> None:
        """Buffer items for the next group commit; samples are grouped into batches. Never raises.

        A :class:`Samples` (one poll round) is stored as its samples, split across batches as if each had
        come alone. A :class:`Position` is stored as its samples (``latitude``, ``longitude``, ``hdop`` …),
        which the DRUST codec folds back into a Timeseries ``location`` object."""
        batch = self.cfg.batch_samples
        open_ = self._open
        for it in items:
            # samples are nearly every item: the cheapest tests first (an isinstance on a union costs more)
            if type(it) is Samples:
                room = max(batch - len(open_), 1)
                if len(it) < room:
                    open_.extend(it)
                    continue
                start = 0
                while len(it) - start >= room:  # fill the open batch, seal it, go on with the rest
                    open_.extend(it[start : start + room])
                    start += room
                    self._seal()
                    open_ = self._open
                    room = batch
                open_.extend(it[start:])
                continue
            if type(it) is Sample:
                open_.append(it)
            elif isinstance(it, Position):
                open_.extend(it.samples())  # one fix never straddles two batches
            elif isinstance(it, Sample):
                open_.append(it)
            elif isinstance(it, Event):
                # default=str: an odd payload value is stored as text rather than failing the append
                body = msgpack.packb(it.to_dict(), use_bin_type=True, default=str)
                self._pending.append((it.id, KIND_EVENT, it.date_ms, 1, body))
            elif isinstance(it, TripRecord):
                body = msgpack.packb(it.to_dict(), use_bin_type=True, default=str)
                self._pending.append((it.id, KIND_TRIP, it.start_ms, 1, body))
            if len(open_) >= batch:
                self._seal()
                open_ = self._open
        if self._pending_samples > MAX_PENDING_SAMPLES:
            self._drop_pending_timeseries()

    def when_committed(self, ids: Iterable[str]) -> asyncio.Future[None]:
        """A future that completes once group commits have written every event/trip id in ``ids``.

        Call it *before* the records are appended: it completes at the first successful commit of a
        group holding each id (a row ignored because the id is already in the outbox counts: it was
        committed before). Nothing runs per sample; it costs nothing while no watch is open. Never
        completes for ids that are never appended; the oldest watch is cancelled beyond
        :data:`MAX_COMMIT_WATCHES`.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        want = set(ids)
        if not want:
            fut.set_result(None)
            return fut
        self._watches = [w for w in self._watches if not w[1].done()]
        while len(self._watches) >= MAX_COMMIT_WATCHES:
            self._watches.pop(0)[1].cancel()
        self._watches.append((want, fut))
        return fut

    def _settle_watches(self, rows: Sequence[tuple[str, int, int, int, bytes]]) -> None:
        """``rows`` were just committed: complete the watches they satisfy."""
        if not self._watches:
            return
        ids = {r[0] for r in rows if r[1] != KIND_TIMESERIES}
        keep: list[tuple[set[str], asyncio.Future[None]]] = []
        for want, fut in self._watches:
            if fut.done():
                continue
            left = want - ids
            if left:
                keep.append((left, fut))
            else:
                fut.set_result(None)
        self._watches = keep

    def _seal(self) -> None:
        if not self._open:
            return
        samples, self._open = self._open, []
        # time-ordered, so ids sort like the data they name
        row_id = f"ts-{time.time_ns() // 1_000_000:011x}-{uuid.uuid4().hex[:12]}"
        self._pending.append((row_id, KIND_TIMESERIES, samples[0].ts_ms, len(samples), pack_samples(samples)))
        self._pending_samples += len(samples)

    def _drop_pending_timeseries(self) -> None:
        keep: list[tuple[str, int, int, int, bytes]] = []
        for row in self._pending:
            if row[1] == KIND_TIMESERIES and self._pending_samples > MAX_PENDING_SAMPLES // 2:
                self._pending_samples -= row[3]
                self._count("evicted_samples", row[3])
                self._count("evicted_timeseries", 1)
            else:
                keep.append(row)
        self._pending = keep

    def _count(self, name: str, n: int) -> None:
        self._counters[name] = self._counters.get(name, 0) + n
        self._counters_dirty = True

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.commit_interval_s)
            self._seal()
            try:
                await self._commit()
            except Exception as exc:  # the group commit must outlive any one failure
                self._last_error = str(exc)
                self._errors.error("commit-bug", "store: group commit failed (%s); retrying at the next interval",
                                   self._last_error)
                log.debug("store: group commit failure", exc_info=exc)

    async def _commit(self) -> None:
        """One transaction: new rows, cursor moves, dead letters, garbage collection, counters."""
        async with self._lock:
            if self._db is None:
                return
            rows, dead = self._pending, self._dead_pending
            if not rows and not dead and not self._dirty_cursors:
                return
            try:
                inserted = await self._write(rows, dead)
            except sqlite3.Error as exc:
                await self._handle_write_error(exc)
                return
            self._settle_watches(rows)
            self._pending = self._pending[len(rows) :]
            self._pending_samples -= sum(r[3] for r in rows if r[1] == KIND_TIMESERIES)
            self._dead_pending = self._dead_pending[len(dead) :]
            if self._disk_full:
                log.warning("store: writing again after a full disk")
            self._disk_full = False
            self._errors.clear("commit")
            self._commits += 1
            if inserted:
                for u in self.uplinks:
                    d = self._depth.setdefault(u, [0, 0])
                    d[0] += inserted[0]
                    d[1] += inserted[1]
                    self._new_data[u].set()
            try:
                self._db_bytes = await self._used_bytes(self._db)
                if self._db_bytes > self.cfg.max_mb * 1024 * 1024:
                    await self._evict()
                if time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint_interval_s:
                    await self._checkpoint()
            except sqlite3.Error as exc:
                await self._handle_write_error(exc)

    async def _write(
        self, rows: list[tuple[str, int, int, int, bytes]], dead: list[tuple[str, StoredRow, str, int]]
    ) -> tuple[int, int]:
        db = self._db
        assert db is not None
        await db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            inserted_samples = 0
            if rows:
                sql = "INSERT OR IGNORE INTO outbox(id, kind, ts_ms, count, body) VALUES (?,?,?,?,?)"
                await db.executemany(sql, rows)
            inserted = db.total_changes - before
            if inserted:
                inserted_samples = sum(r[3] for r in rows) if inserted == len(rows) else inserted
            now = now_ms()
            for uplink, row, reason, tries in dead:
                await db.execute(
                    "INSERT OR REPLACE INTO dead_letter VALUES (?,?,?,?,?,?,?,?,?)",
                    (uplink, row.id, row.kind, row.ts_ms, row.count, row.body, reason, tries, now),
                )
            dirty, self._dirty_cursors = self._dirty_cursors, set()
            for u in dirty:
                await db.execute("UPDATE cursors SET seq = ? WHERE uplink = ?", (self._cursors[u], u))
            if self.uplinks:
                low = min(self._cursors.get(u, 0) for u in self.uplinks)
                await db.execute("DELETE FROM outbox WHERE seq <= ?", (low,))
            if self._counters_dirty:
                # only when one changed: an untouched page costs no WAL frame (SD-card wear)
                await db.executemany(
                    "INSERT OR REPLACE INTO counters(name, value) VALUES (?, ?)", list(self._counters.items())
                )
            await db.execute("COMMIT")
            self._counters_dirty = False
        except BaseException:
            self._dirty_cursors |= set(self._cursors)
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise
        return inserted, inserted_samples

    async def _handle_write_error(self, exc: sqlite3.Error) -> None:
        self._last_error = str(exc)
        if _is_full(exc):
            if not self._disk_full:
                log.error("store: the disk holding %s is full; keeping data in memory and retrying", self.path)
            self._disk_full = True
            if self._pending_samples > MAX_PENDING_SAMPLES:
                self._drop_pending_timeseries()
            return
        if _is_corrupt(exc):
            assert self._db is not None
            with contextlib.suppress(sqlite3.Error, ValueError):
                await self._db.close()
            self._db = None
            await self._move_aside(str(exc))
            try:
                await self._connect()
            except (sqlite3.Error, StoreError) as exc2:
                self._errors.error("fresh", "store: cannot start a fresh buffer: %s", exc2)
                self._last_error = str(exc2)
            return
        self._errors.error("commit", "store: commit failed (%s); retrying at the next interval", exc)

    async def _used_bytes(self, db: aiosqlite.Connection) -> int:
        # one round trip to the database thread (each costs the process two wake-ups: see docs/performance.md)
        rows = await db.execute_fetchall("SELECT p.page_count - f.freelist_count FROM pragma_page_count() AS p, "
                                         "pragma_freelist_count() AS f")
        used = next(iter(rows), (0,))[0]
        return int(used * self._page_size)

    async def _evict(self) -> None:
        """Drop the oldest timeseries (then events and trips) until the pages in use fit ``max_mb``."""
        db = self._db
        assert db is not None
        limit = self.cfg.max_mb * 1024 * 1024
        for _ in range(20):
            excess = self._db_bytes - limit * 0.9
            if excess <= 0:
                break
            victims = await self._oldest(db, excess)
            if not victims:
                break
            # counted on a copy: the counters and depths change only once the deletion is committed
            counters = dict(self._counters)
            for _seq, kind, count in victims:
                key = f"evicted_{KIND_NAMES[kind]}"
                counters[key] = counters.get(key, 0) + 1
                if kind == KIND_TIMESERIES:
                    counters["evicted_samples"] = counters.get("evicted_samples", 0) + count
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany("DELETE FROM outbox WHERE seq = ?", [(v[0],) for v in victims])
                await db.executemany(
                    "INSERT OR REPLACE INTO counters(name, value) VALUES (?, ?)", list(counters.items())
                )
                await db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                raise
            self._counters = counters
            self._forget_depths(victims)
            self._db_bytes = await self._used_bytes(db)
            self._errors.warning("evict", "store: over %.0f MB, evicted %d oldest records",
                                 self.cfg.max_mb, len(victims))

    async def _oldest(self, db: aiosqlite.Connection, excess: float) -> list[tuple[int, int, int]]:
        """(seq, kind, count) of the oldest records whose bodies free ``excess`` bytes: timeseries first,
        events and trips only when no timeseries is left."""
        for kinds in ((KIND_TIMESERIES,), (KIND_EVENT, KIND_TRIP)):
            victims: list[tuple[int, int, int]] = []
            freed = 0
            marks = ",".join("?" * len(kinds))
            cur = await db.execute(
                f"SELECT seq, kind, count, length(body) FROM outbox WHERE kind IN ({marks}) ORDER BY seq LIMIT 2000",
                kinds,
            )
            for seq, kind, count, size in await cur.fetchall():
                victims.append((seq, kind, count))
                freed += size + 64
                if freed >= excess:
                    break
            if victims:
                return victims
        return []

    def _forget_depths(self, victims: list[tuple[int, int, int]]) -> None:
        """Evicted records no longer wait for the uplinks that had not sent them."""
        for seq, _kind, count in victims:
            for u in self.uplinks:
                if seq > self._cursors.get(u, 0):
                    d = self._depth[u]
                    d[0] -= 1
                    d[1] -= count

    async def checkpoint(self) -> None:
        """Copy the WAL's pages into the main file now (done by itself every ``checkpoint_interval_s``)."""
        async with self._lock:
            if self._db is not None:
                await self._checkpoint()

    async def _checkpoint(self) -> None:
        assert self._db is not None
        row = await (await self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")).fetchone()
        self._last_checkpoint = time.monotonic()
        if row and row[1] > 0:
            _busy, frames, done = row
            self._bytes_written += _WAL_HEADER + frames * (self._page_size + _WAL_FRAME_HEADER) + done * self._page_size

    # -- reading, for the forwarders -------------------------------------------------------------
    async def wait_for_data(self, uplink: str, wait_s: float) -> bool:
        """Wait until rows for ``uplink`` may be waiting (or ``wait_s``); True if there may be."""
        ev = self._new_data.setdefault(uplink, asyncio.Event())
        if not ev.is_set():
            with contextlib.suppress(TimeoutError):
                await wait_for(ev.wait(), wait_s)
        return ev.is_set()

    async def lease(self, uplink: str, limit: int) -> list[StoredRow]:
        """The oldest ``limit`` committed rows ``uplink`` has not acknowledged, oldest first."""
        async with self._lock:
            if self._db is None:
                return []
            try:
                found = await self._db.execute_fetchall(
                    "SELECT seq, id, kind, ts_ms, count, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                    (self._cursors.get(uplink, 0), limit),
                )
                gen = self._generation
                rows = [StoredRow(r[0], r[1], r[2], r[3], r[4], r[5], gen) for r in found]
            except sqlite3.Error as exc:
                self._last_error = str(exc)
                self._errors.error("read", "store: reading the outbox failed: %s", exc)
                return []
        if not rows:
            self._new_data.setdefault(uplink, asyncio.Event()).clear()
        return rows

    def ack(self, uplink: str, rows: Sequence[StoredRow], acked_ids: Sequence[str] | set[str]) -> int:
        """Move ``uplink``'s cursor over the leading rows of ``rows`` that were acknowledged.

        Rows after the first unacknowledged one stay behind the cursor (they are sent again: order per
        stream is kept, receivers de-duplicate). The move is persisted by the next group commit.
        Returns how many rows the cursor moved over.
        """
        acked = acked_ids if isinstance(acked_ids, set) else set(acked_ids)
        moved = 0
        cursor = self._cursors.get(uplink, 0)
        d = self._depth.setdefault(uplink, [0, 0])
        for row in rows:
            if row.generation != self._generation:
                return 0  # leased from a file since moved aside: its seq means nothing in this one
            if row.id not in acked or row.seq <= cursor:
                if row.seq <= cursor:
                    continue
                break
            cursor = row.seq
            moved += 1
            d[0] -= 1
            d[1] -= row.count
        if moved:
            self._cursors[uplink] = cursor
            self._dirty_cursors.add(uplink)
            self._last_upload_ms[uplink] = now_ms()
        return moved

    def rejections(self, uplink: str, row_id: str) -> int:
        """How often ``uplink`` has rejected the row (since the start, while not dead-lettered)."""
        return self._rejections.get((uplink, row_id), 0)

    def reject(self, uplink: str, row: StoredRow, reason: str) -> bool:
        """Count a rejection of ``row`` by ``uplink``; after N it is dead-lettered (True) and skipped."""
        key = (uplink, row.id)
        tries = self._rejections.get(key, 0) + 1
        self._rejections[key] = tries
        if tries < self.dead_letter_after:
            return False
        del self._rejections[key]
        self._dead_pending.append((uplink, row, reason, tries))
        self._count(f"dead_letters_{uplink}", 1)
        log.error("store: %s rejected %s %s %d times (%s); moved to the dead-letter table",
                  uplink, KIND_NAMES.get(row.kind, row.kind), row.id, tries, reason)
        return True

    async def dead_letters(self, uplink: str | None = None) -> list[dict[str, Any]]:
        """The dead-letter table (committed rows), for inspection."""
        if self._db is None:
            return []
        sql = "SELECT uplink, id, kind, ts_ms, count, reason, tries, at_ms FROM dead_letter"
        args: tuple[Any, ...] = ()
        if uplink is not None:
            sql += " WHERE uplink = ?"
            args = (uplink,)
        keys = ("uplink", "id", "kind", "ts_ms", "count", "reason", "tries", "at_ms")
        return [dict(zip(keys, r, strict=True)) for r in await self._db.execute_fetchall(sql, args)]

    # -- reporting -------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Queue depth per uplink, evictions, dead letters, bytes written, last upload, health."""
        c = self._counters
        return {
            "path": str(self.path),
            "queue": {
                u: {"records": max(0, d[0]), "samples": max(0, d[1])}
                for u, d in self._depth.items()
                if u in self.uplinks
            },
            "pending_in_memory": {"records": len(self._pending), "samples": self._pending_samples + len(self._open)},
            "evicted": {
                "timeseries": c.get("evicted_timeseries", 0),
                "samples": c.get("evicted_samples", 0),
                "events": c.get("evicted_event", 0),
                "trips": c.get("evicted_trip", 0),
            },
            "dead_letters": {u: c.get(f"dead_letters_{u}", 0) for u in self.uplinks},
            "bytes_written": self._bytes_written,
            "db_bytes": self._db_bytes,
            "commits": self._commits,
            "last_upload_ms": dict(self._last_upload_ms),
            "disk_full": self._disk_full,
            "corrupt_files_moved": list(self._corrupt_moved),
            "last_error": self._last_error,
        }


__all__ = [
    "KIND_CODES",
    "KIND_EVENT",
    "KIND_NAMES",
    "KIND_TIMESERIES",
    "KIND_TRIP",
    "Store",
    "StoreError",
    "StoredRow",
]
