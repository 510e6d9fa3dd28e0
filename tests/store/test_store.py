"""The SQLite outbox on real files: batching, ids, cursors, migrations, eviction, corruption, dead letters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgpack
import pytest

from gateway.common.samplebatch import pack_samples, unpack_samples
from gateway.config import StoreConfig
from gateway.errors import StoreError
from gateway.model import Event, Sample, Samples, TripRecord
from gateway.store import KIND_EVENT, KIND_TIMESERIES, KIND_TRIP, SCHEMA_VERSION, Store
from gateway.uplink.drust import timeseries_items


def cfg(tmp_path: Path, **kw: object) -> StoreConfig:
    base: dict[str, object] = {"path": str(tmp_path / "buf.sqlite"), "commit_interval_s": 3600.0, "batch_samples": 10}
    base.update(kw)
    return StoreConfig(**base)  # type: ignore[arg-type]


def samples(n: int, t0: int = 1_700_000_000_000, step: int = 100) -> list[Sample]:
    out = []
    for i in range(n):
        out.append(Sample(t0 + (i // 2) * step, "speed" if i % 2 == 0 else "engine_rpm", float(i), "", 0x0D, 0x7E8))
    return out


def rows(path: Path) -> list[tuple[int, str, int, int, bytes]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT seq, id, kind, count, body FROM outbox ORDER BY seq").fetchall()


def test_codec_round_trip_and_drust_items() -> None:
    ss = [
        Sample(1000, "speed", 42.0, "km/h", 0x0D, 0x7E8),  # PID 0D: whole km/h (the vocabulary rounds to it)
        Sample(1000, "engine_rpm", 900, "rpm", 0x0C, 0x7E8),
        Sample(1000, "engine_rpm", 880, "rpm", 0x0C, 0x7E9),
        Sample(1250, "battery_voltage", 12.6, "V", None, 0),
    ]
    body = pack_samples(ss)
    assert unpack_samples(body) == ss
    assert timeseries_items(body) == [
        {"date": 1000, "speed": 42.0, "engine_rpm": 900},
        {"date": 1000, "ecu": "7E9", "engine_rpm": 880},
        {"date": 1250, "battery_voltage": 12.6},
    ]
    # one ECU: the fast path groups by timestamp, and a repeated name starts a new item
    one = [Sample(5, "speed", 1.0), Sample(5, "speed", 2.0), Sample(6, "speed", 3.0)]
    assert timeseries_items(pack_samples(one)) == [{"date": 5, "speed": 1.0}, {"date": 5, "speed": 2.0},
                                                   {"date": 6, "speed": 3.0}]
    # compact: well under the size of the samples as JSON
    assert len(pack_samples(samples(500))) < 500 * 12


async def test_append_batches_commit_and_stable_ids(tmp_path: Path) -> None:
    store = Store(cfg(tmp_path), uplinks=["mqtt"])
    await store.open()
    ev = Event("ev-1", "HARD_BRAKE", "notification:hard_brake", 1_700_000_000_500, "trip-1", {"speed": 50})
    trip = TripRecord("trip-1", 1_700_000_000_000, 1_700_000_100_000, {"distance": 1234.5})
    await store.append([*samples(25), ev, trip])
    assert rows(Path(store.path)) == []  # nothing committed before the group commit
    await store.flush()
    got = rows(Path(store.path))
    kinds = [r[2] for r in got]
    # two full batches sealed as they filled, the event and trip, then the remainder at flush
    assert kinds == [KIND_TIMESERIES, KIND_TIMESERIES, KIND_EVENT, KIND_TRIP, KIND_TIMESERIES]
    assert [r[3] for r in got] == [10, 10, 1, 1, 5]
    assert [s for r in got if r[2] == KIND_TIMESERIES for s in unpack_samples(r[4])] == samples(25)
    assert got[2][1] == "ev-1" and msgpack.unpackb(got[2][4]) == ev.to_dict()
    assert got[3][1] == "trip-1" and msgpack.unpackb(got[3][4]) == trip.to_dict()
    # the same event again (re-emitted after a restart) is stored once
    await store.append([ev])
    await store.flush()
    assert len(rows(Path(store.path))) == 5
    st = store.stats()
    assert st["queue"]["mqtt"] == {"records": 5, "samples": 27}
    await store.close()
    # ids survive a restart unchanged
    again = Store(cfg(tmp_path), uplinks=["mqtt"])
    await again.open()
    leased = await again.lease("mqtt", 100)
    assert [r.id for r in leased] == [r[1] for r in got]
    assert again.stats()["queue"]["mqtt"] == {"records": 5, "samples": 27}
    await again.close()


async def test_cursors_are_independent_and_gc_after_all_delivered(tmp_path: Path) -> None:
    store = Store(cfg(tmp_path), uplinks=["mqtt", "https"])
    await store.open()
    await store.append(samples(40))
    await store.flush()
    a = await store.lease("mqtt", 3)
    assert len(a) == 3
    # acknowledging rows 0 and 2 but not 1 moves the cursor over row 0 only (order per stream)
    assert store.ack("mqtt", a, {a[0].id, a[2].id}) == 1
    nxt = await store.lease("mqtt", 10)
    assert [r.id for r in nxt] == [r.id for r in a[1:]] + [r.id for r in (await store.lease("https", 4))[3:]]
    assert store.ack("mqtt", nxt, {r.id for r in nxt}) == 3
    await store.flush()
    assert len(rows(Path(store.path))) == 4  # https has not received anything: nothing deleted
    h = await store.lease("https", 2)
    store.ack("https", h, {r.id for r in h})
    await store.flush()
    assert len(rows(Path(store.path))) == 2  # delivered to both: garbage-collected
    st = store.stats()
    assert st["queue"] == {"mqtt": {"records": 0, "samples": 0}, "https": {"records": 2, "samples": 20}}
    assert st["last_upload_ms"]["mqtt"] is not None
    await store.close()
    # cursors persisted
    again = Store(cfg(tmp_path), uplinks=["mqtt", "https"])
    await again.open()
    assert await again.lease("mqtt", 10) == []
    assert len(await again.lease("https", 10)) == 2
    await again.close()


async def test_group_commit_runs_on_its_own(tmp_path: Path) -> None:
    store = Store(cfg(tmp_path, commit_interval_s=0.05), uplinks=["mqtt"])
    await store.open()
    await store.append(samples(3))
    assert await store.wait_for_data("mqtt", 5.0)
    assert sum(r[3] for r in rows(Path(store.path))) == 3
    assert store.stats()["commits"] >= 1
    await store.close()


async def test_migration_from_empty_and_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "buf.sqlite"
    sqlite3.connect(path).close()
    store = Store(cfg(tmp_path), uplinks=[])
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        await Store(cfg(tmp_path)).open()


async def test_corrupt_file_is_moved_aside_and_a_fresh_one_started(tmp_path: Path) -> None:
    path = tmp_path / "buf.sqlite"
    path.write_bytes(b"this is not an sqlite database at all" * 200)
    store = Store(cfg(tmp_path), uplinks=["mqtt"])
    await store.open()
    await store.append(samples(5))
    await store.flush()
    moved = store.stats()["corrupt_files_moved"]
    assert len(moved) == 1 and Path(moved[0]).read_bytes().startswith(b"this is not")
    assert sum(r[3] for r in rows(path)) == 5
    await store.close()


async def test_corruption_while_running_keeps_buffered_items(tmp_path: Path) -> None:
    store = Store(cfg(tmp_path), uplinks=["mqtt"])
    await store.open()
    await store.append(samples(10))
    await store.flush()
    # damage the main file's pages behind SQLite's back (an SD card gone bad), then force a re-read
    await store._checkpoint()
    path = Path(store.path)
    data = bytearray(path.read_bytes())
    for i in range(4096, len(data)):
        data[i] = 0xA5
    path.write_bytes(bytes(data))
    assert store._db is not None
    await store._db.execute("PRAGMA shrink_memory")  # drop the page cache: the next write reads the disk
    await store.append(samples(7, t0=1_800_000_000_000))
    await store.flush()
    await store.flush()
    st = store.stats()
    assert st["corrupt_files_moved"], st
    assert sum(r[3] for r in rows(path)) == 7  # what was in memory went to the fresh file
    await store.close()


async def test_eviction_timeseries_first_then_events_and_trips(tmp_path: Path) -> None:
    store = Store(cfg(tmp_path, max_mb=0.25, batch_samples=200), uplinks=["mqtt"])
    await store.open()
    events = [Event(f"ev-{i}", "HARD_BRAKE", "notification:hard_brake", 1000 + i, None, {"pad": "x" * 200})
              for i in range(20)]
    await store.append(events[:10])
    await store.flush()
    t = 1_700_000_000_000
    for k in range(80):
        await store.append([Sample(t + k * 1000 + i, f"n{i % 7}", k * 1000 + i + 0.5) for i in range(400)])
        await store.flush()
    st = store.stats()
    assert st["evicted"]["timeseries"] > 0 and st["evicted"]["samples"] == st["evicted"]["timeseries"] * 200
    assert st["evicted"]["events"] == 0
    got = rows(Path(store.path))
    assert {r[1] for r in got if r[2] == KIND_EVENT} == {f"ev-{i}" for i in range(10)}
    ts_rows = [r for r in got if r[2] == KIND_TIMESERIES]
    # the newest timeseries survived, the oldest went
    assert unpack_samples(ts_rows[-1][4])[-1].value == 79 * 1000 + 399.5
    assert unpack_samples(ts_rows[0][4])[0].value > 0
    assert st["db_bytes"] <= 0.25 * 1024 * 1024
    # only events and trips left and still too big: now the oldest of those go
    await store.append([TripRecord(f"trip-{i}", i, i + 1, {"pad": "y" * 4000}) for i in range(80)])
    await store.append(events[10:])
    await store.flush()
    st2 = store.stats()
    got2 = rows(Path(store.path))
    assert not [r for r in got2 if r[2] == KIND_TIMESERIES]
    assert st2["evicted"]["events"] + st2["evicted"]["trips"] > 0
    assert "ev-19" in {r[1] for r in got2} and "trip-79" in {r[1] for r in got2}
    assert "ev-0" not in {r[1] for r in got2}
    await store.close()
    # the counts are kept across restarts
    again = Store(cfg(tmp_path, max_mb=0.25, batch_samples=200), uplinks=["mqtt"])
    await again.open()
    assert again.stats()["evicted"] == st2["evicted"]
    await again.close()
    # every record that left the file was counted, once: 80 x 400 samples in batches of 200, 20 events, 80 trips
    assert st2["evicted"]["timeseries"] == 80 * 400 // 200 and st2["evicted"]["samples"] == 80 * 400
    assert st2["evicted"]["events"] == 20 - sum(r[2] == KIND_EVENT for r in got2)
    assert st2["evicted"]["trips"] == 80 - sum(r[2] == KIND_TRIP for r in got2)


async def test_reject_counts_then_dead_letters(tmp_path: Path) -> None:
    store = Store(cfg(tmp_path, dead_letter_after=2), uplinks=["https"])
    await store.open()
    await store.append(samples(10))
    await store.flush()
    (row,) = await store.lease("https", 1)
    assert store.reject("https", row, "400 bad") is False
    assert store.reject("https", row, "400 bad") is True
    store.ack("https", [row], {row.id})
    await store.flush()
    assert store.stats()["dead_letters"] == {"https": 1}
    (dl,) = await store.dead_letters("https")
    assert dl["id"] == row.id and dl["reason"] == "400 bad" and dl["tries"] == 2 and dl["count"] == 10
    await store.close()


async def test_full_disk_keeps_items_in_memory_and_recovers(tmp_path: Path) -> None:
    store = Store(cfg(tmp_path), uplinks=["mqtt"])
    await store.open()
    await store.append(samples(10))
    await store.flush()
    assert store._db is not None
    pages = (await (await store._db.execute("PRAGMA page_count")).fetchone() or (0,))[0]
    # SQLite answers SQLITE_FULL ("database or disk is full") once the file may not grow: a full SD card
    await store._db.execute(f"PRAGMA max_page_count={pages}")
    big = [Sample(2_000_000_000_000 + i, f"name{i % 50}", i + 0.5) for i in range(20_000)]
    await store.append(big)  # never raises: the polling goes on
    await store.flush()
    st = store.stats()
    assert st["disk_full"] is True and "full" in (st["last_error"] or "")
    assert st["pending_in_memory"]["samples"] == 20_000
    assert sum(r[3] for r in rows(Path(store.path))) == 10
    # space again: the next commit writes what waited in memory
    await store._db.execute("PRAGMA max_page_count=1073741823")
    await store.flush()
    st = store.stats()
    assert st["disk_full"] is False and st["pending_in_memory"]["samples"] == 0
    assert sum(r[3] for r in rows(Path(store.path))) == 20_010
    await store.close()


async def test_odd_payload_values_are_stored_as_text(tmp_path: Path) -> None:
    store = Store(cfg(tmp_path), uplinks=["mqtt"])
    await store.open()
    await store.append([Event("ev-odd", "MIL_ON", "notification:mil_on", 5, None, {"where": Path("/x"), "n": 1})])
    await store.flush()
    (row,) = rows(Path(store.path))
    assert msgpack.unpackb(row[4])["payload"] == {"where": "/x", "n": 1}
    await store.close()


async def test_failed_eviction_rolls_back_and_counts_nothing(tmp_path: Path) -> None:
    """An eviction whose DELETE fails leaves no open transaction behind and no eviction counted."""
    store = Store(cfg(tmp_path, max_mb=0.25, batch_samples=200), uplinks=["mqtt"])
    await store.open()
    try:
        assert store._db is not None
        # a real SQLite failure inside the eviction's transaction (as a full disk or I/O error would be)
        await store._db.execute(
            "CREATE TRIGGER no_delete BEFORE DELETE ON outbox BEGIN SELECT RAISE(ABORT, 'delete refused'); END"
        )
        t = 1_700_000_000_000
        for k in range(40):
            await store.append([Sample(t + k * 1000 + i, f"n{i % 7}", k * 1000 + i + 0.5) for i in range(400)])
            await store.flush()
        st = store.stats()
        assert "delete refused" in (st["last_error"] or ""), st["last_error"]
        assert st["evicted"] == {"timeseries": 0, "samples": 0, "events": 0, "trips": 0}
        assert store._db.in_transaction is False
        assert sum(r[3] for r in rows(Path(store.path))) == 40 * 400  # every commit still went through
        assert st["queue"]["mqtt"] == {"records": 80, "samples": 40 * 400}
        # the cause gone, eviction works and counts exactly what it deleted
        await store._db.execute("DROP TRIGGER no_delete")
        await store.append([Sample(t + 99_000 + i, "speed", 1.0) for i in range(400)])
        await store.flush()
        st = store.stats()
        kept = rows(Path(store.path))
        assert st["evicted"]["timeseries"] == 82 - len(kept) > 0
        assert st["evicted"]["samples"] == 41 * 400 - sum(r[3] for r in kept)
        assert st["queue"]["mqtt"] == {"records": len(kept), "samples": sum(r[3] for r in kept)}
    finally:  # a failure must not leave the connection thread running (pytest would hang)
        await store.close()


async def test_poll_rounds_fill_batches_as_their_samples_would(tmp_path: Path) -> None:
    # 25 samples in rounds of 1, 3, 7, 11 and 3 (one round straddles two batches, one spans a whole one)
    # plus an event between rounds: the same rows, counts and samples as appending them one by one
    flat = samples(25)
    rounds, start = [], 0
    for size in (1, 3, 7, 11, 3):
        rounds.append(Samples(flat[start : start + size]))
        start += size
    ev = Event("ev-1", "HARD_BRAKE", "notification:hard_brake", 1_700_000_000_500, "trip-1", {"speed": 50})
    got = []
    for name, items in (("one", [*flat[:11], ev, *flat[11:]]), ("rounds", [*rounds[:3], ev, *rounds[3:]])):
        store = Store(cfg(tmp_path, path=str(tmp_path / f"{name}.sqlite")), uplinks=["mqtt"])
        await store.open()
        await store.append(items[:4])
        await store.append(items[4:])
        await store.flush()
        got.append([(r[2], r[3], r[4] if r[2] != KIND_TIMESERIES else unpack_samples(r[4]))
                    for r in rows(Path(store.path))])
        await store.close()
    assert [(k, n) for k, n, _ in got[1]] == [(KIND_TIMESERIES, 10), (KIND_EVENT, 1), (KIND_TIMESERIES, 10),
                                              (KIND_TIMESERIES, 5)]
    assert got[1] == got[0]
