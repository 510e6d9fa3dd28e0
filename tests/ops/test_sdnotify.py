"""sd_notify client against a real datagram socket (a path and the abstract namespace)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sdnotify import Notifier


@pytest.fixture
def dgram(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_watchdog_stopping_reach_the_socket(dgram: tuple[str, socket.socket]) -> None:
    path, sock = dgram
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="polling 9 PIDs")
    assert recv(sock) == "READY=1\nSTATUS=polling 9 PIDs"
    assert n.status("adapter\nlost")  # a newline would inject a second assignment
    assert recv(sock) == "STATUS=adapter lost"
    assert n.watchdog()
    assert recv(sock) == "WATCHDOG=1"
    assert n.stopping()
    assert recv(sock) == "STOPPING=1"
    n.close()


def test_abstract_namespace_address() -> None:
    name = f"obd-gateway-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert recv(sock) == "READY=1"
        n.close()
    finally:
        sock.close()


def test_unset_socket_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.watchdog_interval_s is None


def test_missing_socket_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(str(tmp_path / "gone.sock"))
    assert n.ready() is False
    assert n.watchdog() is False
    # one warning, not one per ping
    assert sum("sd_notify" in r.getMessage() for r in caplog.records) == 1
    n.close()


def test_watchdog_interval_is_half_the_timeout_and_honours_watchdog_pid() -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "3000000"})
    assert n.watchdog_interval_s == 1.5
    mine = Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval_s == 1.5
    other = Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None
    bad = Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "soon"})
    assert bad.watchdog_interval_s is None


async def test_watchdog_loop_pings_periodically(dgram: tuple[str, socket.socket]) -> None:
    path, sock = dgram
    sock.setblocking(False)
    n = Notifier(path, watchdog_usec=100_000)  # a ping every 50 ms
    task = asyncio.create_task(n.watchdog_loop())
    await asyncio.sleep(0.4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = []
    while True:
        try:
            pings.append(sock.recv(100))
        except BlockingIOError:
            break
    assert len(pings) >= 3
    assert set(pings) == {b"WATCHDOG=1"}
    n.close()


async def test_watchdog_loop_returns_when_disabled() -> None:
    await asyncio.wait_for(Notifier(None, watchdog_usec=100_000).watchdog_loop(), 1)
    await asyncio.wait_for(Notifier("/x").watchdog_loop(), 1)


def test_a_reader_that_falls_behind_never_blocks_the_sender(dgram: tuple[str, socket.socket]) -> None:
    path, sock = dgram
    n = Notifier(path)
    sent = sum(n.watchdog() for _ in range(5000))  # nobody reads: the queue fills, then we drop
    assert n.dropped > 0
    assert sent + n.dropped == 5000
    sock.settimeout(0.5)
    assert recv(sock) == "WATCHDOG=1"
    n.close()


async def test_daemon_status_line_shows_the_queue_depth(tmp_path: Path, dgram: tuple[str, socket.socket]) -> None:
    """The STATUS= line names each uplink's queue depth, read from the store's real stats."""
    from gateway import config
    from gateway.daemon import Daemon
    from gateway.model import Sample
    from gateway.supervisor import Supervisor

    path, sock = dgram
    cfg = config.from_dict({
        "device": {"id": "box", "state_dir": str(tmp_path / "state")},
        "adapter": {"port": str(tmp_path / "no-adapter")},
        "store": {"path": str(tmp_path / "buf.sqlite"), "batch_samples": 10, "commit_interval_s": 60.0},
        "mqtt": {"enabled": True, "host": "127.0.0.1", "port": 1},
    })
    d = Daemon(cfg)
    d.build()
    d.supervisor = Supervisor()
    d.notifier = Notifier(path)
    await d.store.open()
    try:
        await d.store.append([Sample(1_700_000_000_000 + i, "speed", float(i)) for i in range(25)])
        await d.store.flush()
        task = asyncio.create_task(d.status_loop())
        try:
            line = await asyncio.get_running_loop().run_in_executor(None, recv, sock)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await d.store.close()
        d.notifier.close()
    assert line.startswith("STATUS="), line
    assert "mqtt queue 3 records (25 samples)" in line, line
