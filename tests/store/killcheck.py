"""What the kill/restart tests check: every record the buffer ever held reached every back-end.

:class:`DbWatcher` reads the writer's SQLite file from another connection every few milliseconds
while the writer runs (WAL lets it read beside the writer) and remembers every committed row. A row
that was ever committed is one the gateway reported as stored; after the drain each one must have
arrived (de-duplicated by id) at the broker's subscriber and at the HTTPS server.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from tests.drust_server import DrustServer

SEED_ENV = "OBD_TEST_SEED"


def kill_seed() -> int:
    """The seed of one kill test's random choices (kill moments, broker restarts, server failures).

    ``OBD_TEST_SEED=<n>`` replays a run; otherwise a fresh seed. Printed, so a failure's captured output
    names the seed that replays it.
    """
    raw = os.environ.get(SEED_ENV, "").strip()
    seed = int(raw) if raw else int.from_bytes(os.urandom(4), "big")
    print(f"kill test seed: {SEED_ENV}={seed}", flush=True)
    return seed


class DbWatcher:
    """Collects every row id (and event/trip bodies) ever committed to ``path``."""

    def __init__(self, path: Path, interval_s: float = 0.02) -> None:
        self.path = path
        self.interval_s = interval_s
        self.seen: dict[str, tuple[int, int]] = {}  # id → (kind, samples)
        self.bodies: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="db-watcher", daemon=True)
        self.errors = 0
        self.last_error = ""

    def start(self) -> DbWatcher:
        """Watch in a thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, after one last look."""
        self._stop.set()
        self._thread.join(10)
        self.look()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.look()
            time.sleep(self.interval_s)

    def look(self) -> None:
        """One snapshot of the outbox."""
        if not self.path.exists():
            return
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1.0)
            try:
                known = self.seen
                rows = db.execute("SELECT id, kind, count, CASE WHEN kind = 0 THEN NULL ELSE body END FROM outbox")
                for rid, kind, count, body in rows:
                    if rid not in known:
                        known[rid] = (kind, count)
                        if body is not None:
                            self.bodies[rid] = msgpack.unpackb(body, raw=False)
            finally:
                db.close()
        except sqlite3.Error as exc:  # e.g. the schema not created yet by a writer just started
            self.errors += 1
            self.last_error = str(exc)

    def samples(self) -> int:
        """Samples in every timeseries row seen committed so far."""
        return sum(n for k, n in list(self.seen.values()) if k == 0)

    def outbox_rows(self) -> int:
        """Rows still in the outbox (undelivered to some uplink)."""
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        try:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        finally:
            db.close()


def https_ids(srv: DrustServer) -> set[str]:
    """Ids the DRUST server holds (timeseries batch ids, trips, events)."""
    st = srv.state
    with st.lock:
        return set(st.timeseries) | set(st.trips) | set(st.events)


def wait_until(cond: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``cond`` until it holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


def wait_drained(watcher: DbWatcher, timeout_s: float) -> bool:
    """Wait until the outbox is empty (delivered everywhere and garbage-collected)."""

    def drained() -> bool:
        watcher.look()
        try:
            return watcher.outbox_rows() == 0
        except sqlite3.Error:
            return False

    return wait_until(drained, timeout_s)


class DiagStream:
    """``trip`` and ``event`` stream lines from a running daemon's diagnostic socket, read in a thread.

    Connects (retrying while the daemon starts: a killed daemon's socket file refuses connections),
    sends ``subscribe`` and keeps every item. The thread ends when the daemon goes away.
    """

    def __init__(self, path: Path, timeout_s: float = 60.0) -> None:
        self.path = path
        self.trips: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        deadline = time.monotonic() + timeout_s
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.sendall(b'{"cmd": "subscribe", "kinds": ["trip", "event"]}\n')
        self.sock = sock
        self._thread = threading.Thread(target=self._run, name="diag-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError), self.sock.makefile("rb") as f:
            for line in f:
                msg = json.loads(line)
                kind = msg.get("stream")
                with self.lock:
                    if kind == "trip":
                        self.trips.append(msg["data"])
                    elif kind == "event":
                        self.events.append(msg["data"])

    def trip_ids(self) -> list[str]:
        """Ids of the trips seen so far, in order (a re-published trip appears again)."""
        with self.lock:
            return [t["id"] for t in self.trips]

    def event_ids(self) -> set[str]:
        """Ids of the events seen so far."""
        with self.lock:
            return {e["id"] for e in self.events}

    def wait_trip(self, known: set[str], timeout_s: float) -> str | None:
        """The first trip id not in ``known`` (polled every millisecond: the caller kills right after)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            new = [t for t in self.trip_ids() if t not in known]
            if new:
                return new[0]
            time.sleep(0.001)
        return None

    def close(self) -> None:
        """Disconnect."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
