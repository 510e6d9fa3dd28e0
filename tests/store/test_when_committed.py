"""Store.when_committed: the daemon's way to learn that engine outputs are durable (issue 20)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway import store as store_mod
from gateway.model import Event, TripRecord
from gateway.store import Store
from tests.store.test_store import cfg, rows, samples


def event(i: int) -> Event:
    return Event(f"ev-{i}", "PARKED", "vehicle:parked", 1_700_000_000_000 + i, "trip-1", {})


async def test_completes_only_when_a_commit_holds_every_id(tmp_path: Path) -> None:
    st = Store(cfg(tmp_path), uplinks=["mqtt"])  # group commit every hour: only flush() commits
    await st.open()
    try:
        trip = TripRecord("trip-1", 1_700_000_000_000, 1_700_000_100_000, {"distance": 12.0})
        fut = st.when_committed(["ev-1", "trip-1"])
        other = st.when_committed(["ev-9"])
        await st.append([*samples(5), event(1)])
        await asyncio.sleep(0)
        assert not fut.done()
        await st.flush()
        assert not fut.done()  # ev-1 committed, the trip not yet appended
        await st.append([trip])
        assert not fut.done()  # appended is not committed
        await st.flush()
        assert fut.done() and not fut.cancelled()
        assert {r[1] for r in rows(Path(st.path))} >= {"ev-1", "trip-1"}
        assert not other.done()  # never appended: never completes

        # re-emitted after a restart: the row is ignored as a duplicate, and that counts as committed
        again = st.when_committed(["trip-1"])
        await st.append([trip])
        await st.flush()
        assert again.done()
        assert [r[1] for r in rows(Path(st.path))].count("trip-1") == 1
        assert st.when_committed([]).done()
    finally:
        await st.close()


async def test_a_failed_commit_completes_nothing(tmp_path: Path) -> None:
    st = Store(cfg(tmp_path), uplinks=["mqtt"])
    await st.open()
    try:
        fut = st.when_committed(["ev-1"])
        await st.append([event(1)])
        assert st._db is not None
        await st._db.execute("PRAGMA query_only=1")  # every write fails, as on a read-only card
        await st.flush()
        assert not fut.done() and st.stats()["last_error"]
        await st._db.execute("PRAGMA query_only=0")
        await st.flush()  # the rows stayed in memory: the retry commits them
        assert fut.done()
    finally:
        await st.close()


async def test_open_watches_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "MAX_COMMIT_WATCHES", 3)
    st = Store(cfg(tmp_path), uplinks=["mqtt"])
    await st.open()
    try:
        futs = [st.when_committed([f"ev-{i}"]) for i in range(5)]
        assert [f.cancelled() for f in futs] == [True, True, False, False, False]
        await st.append([event(i) for i in range(5)])
        await st.flush()
        assert all(f.done() for f in futs) and [f.cancelled() for f in futs] == [True, True, False, False, False]
    finally:
        await st.close()
