"""The diagnostic socket server over a real Unix socket, with an in-test StatusSource."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import random
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.diag import COMMANDS, MAX_LINE, DiagServer, normalise_pid
from gateway.errors import ConfigError, GatewayError
from gateway.model import Event, LinkState, Sample, TripRecord

from .diagkit import Conn, TestSource


@pytest.fixture
def source() -> TestSource:
    return TestSource()


@pytest.fixture
def sock_path() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes and pytest's tmp_path can be longer
    short = Path(tempfile.mkdtemp(prefix="obdgw-diag-"))
    yield short / "diag.sock"
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
async def server(source: TestSource, sock_path: Path) -> AsyncIterator[DiagServer]:
    srv = DiagServer(source, socket_path=sock_path, max_clients=64, queue_size=50, write_timeout_s=1.0)
    await srv.start()
    yield srv
    await srv.close()


async def connect(server: DiagServer) -> Conn:
    return await Conn.open(str(server.socket_path))


async def test_socket_mode_is_0660(server: DiagServer) -> None:
    mode = stat.S_IMODE(os.stat(server.socket_path).st_mode)
    assert mode == 0o660
    assert server.tcp_address is None, "no TCP unless configured"


async def test_read_commands(server: DiagServer) -> None:
    c = await connect(server)
    ping = await c.ask({"cmd": "ping", "id": 7})
    assert ping["ok"] is True and ping["id"] == 7 and ping["data"]["pong"] is True

    st = await c.ask({"cmd": "status"})
    assert st["ok"] and st["cmd"] == "status"
    assert st["data"]["vin"] == "1HGCM82633A004352"
    assert st["data"]["mqtt"] == {"queue": 3, "password": "***"}, "secrets never appear in status"
    assert st["data"]["diag"]["clients"] == 1

    assert (await c.ask({"cmd": "values"}))["data"][0]["value"] == 812.5
    assert (await c.ask({"cmd": "pids"}))["data"][0]["achieved_hz"] == 4.8
    assert (await c.ask({"cmd": "dtc"}))["data"] == {"stored": ["P0301"], "pending": [], "permanent": [], "mil": True}
    trips = await c.ask({"cmd": "trips", "limit": 3})
    assert [t["id"] for t in trips["data"]] == ["trip-1", "trip-2", "trip-3"]
    assert len((await c.ask({"cmd": "trips"}))["data"]) == 10
    assert "status" in (await c.ask({"cmd": "help"}))["data"]["commands"]
    await c.close()


async def test_query_normalises_pid_and_reports_adapter_errors(server: DiagServer, source: TestSource) -> None:
    c = await connect(server)
    ok = await c.ask({"cmd": "query", "pid": "0c"})
    assert ok["ok"] and ok["data"][0]["pid"] == "0C" and ok["data"][0]["ecu"] == "7E8"
    assert source.queries == ["0C"]
    failed = await c.ask({"cmd": "query", "pid": "FF"})
    assert failed["ok"] is False and failed["error"]["code"] == "failed"
    assert "NO DATA" in failed["error"]["message"]
    for bad in ("0G", "123", "", None, True, 256, [1]):
        r = await c.ask({"cmd": "query", "pid": bad})
        assert r["ok"] is False and r["error"]["code"] == "bad_request", bad
    r = await c.ask({"cmd": "query"})
    assert r["error"]["code"] == "bad_request"
    assert source.queries == ["0C", "FF"]
    await c.close()


async def test_answers_are_strict_json(server: DiagServer, source: TestSource) -> None:
    c = await connect(server)
    await c.send_raw(b'{"cmd": "ping", "id": NaN}\n')
    assert (await c.answer())["id"] is None
    await c.ask({"cmd": "subscribe", "kinds": ["sample"]})
    await source.bus.publish(Sample(1, "maf", float("inf"), "g/s"))
    msg = await c.recv()
    assert msg["data"]["value"] is None and msg["data"]["name"] == "maf"
    await c.close()


def test_normalise_pid() -> None:
    assert normalise_pid("0C") == "0C"
    assert normalise_pid("0x0d") == "0D"
    assert normalise_pid("5") == "05"
    assert normalise_pid(0x2F) == "2F"


@pytest.mark.parametrize(
    ("allow", "confirm", "missing"),
    [
        (False, None, ["allow_clear_dtc", '"confirm": true']),
        (False, True, ["allow_clear_dtc"]),
        (True, None, ['"confirm": true']),
        (True, "yes", ['"confirm": true']),
    ],
)
async def test_clear_dtc_is_refused_and_says_what_is_missing(
    server: DiagServer, source: TestSource, allow: bool, confirm: object, missing: list[str]
) -> None:
    server.allow_clear_dtc = allow
    c = await connect(server)
    req: dict[str, object] = {"cmd": "clear_dtc"}
    if confirm is not None:
        req["confirm"] = confirm
    r = await c.ask(req)
    assert r["ok"] is False and r["error"]["code"] == "forbidden"
    for m in missing:
        assert m in r["error"]["message"]
    for m in {"allow_clear_dtc", '"confirm": true'} - set(missing):
        assert m not in r["error"]["message"]
    assert source.cleared == 0, "nothing may reach the vehicle"
    await c.close()


async def test_clear_dtc_with_both_switches(server: DiagServer, source: TestSource) -> None:
    server.allow_clear_dtc = True
    c = await connect(server)
    r = await c.ask({"cmd": "clear_dtc", "confirm": True})
    assert r == {"id": None, "ok": True, "cmd": "clear_dtc", "data": {"cleared": True}}
    assert source.cleared == 1
    await c.close()


async def test_malformed_requests_get_errors_and_the_connection_stays_usable(server: DiagServer) -> None:
    c = await connect(server)
    cases = [
        (b"{not json\n", "bad_json"),
        (b"\xff\xfe\n", "bad_json"),
        (b"[1, 2]\n", "bad_request"),
        (b'{"cmd": 5}\n', "bad_request"),
        (b'{"nocmd": true}\n', "bad_request"),
        (b'{"cmd": "reboot"}\n', "unknown_cmd"),
        (b'{"cmd": "trips", "limit": 0}\n', "bad_request"),
        (b'{"cmd": "trips", "limit": "5"}\n', "bad_request"),
        (b'{"cmd": "subscribe", "kinds": ["nope"]}\n', "bad_request"),
        (b'{"cmd": "restart"}\n', "bad_request"),
        (b'{"cmd": "restart", "component": "nope"}\n', "bad_request"),
    ]
    for raw, code in cases:
        await c.send_raw(raw)
        r = await c.answer()
        assert r["ok"] is False and r["error"]["code"] == code, raw
        assert r["error"]["message"]
    await c.send_raw(b"\n   \n")  # blank lines are ignored, not answered
    assert (await c.ask({"cmd": "ping"}))["ok"] is True
    unknown = await c.ask({"cmd": "reboot", "id": "x"})
    assert unknown["id"] == "x" and "status" in unknown["error"]["message"]
    await c.close()


async def test_oversized_line_gets_one_error_and_the_next_request_works(server: DiagServer) -> None:
    c = await connect(server)
    big = b'{"cmd": "status", "pad": "' + b"x" * (3 * MAX_LINE) + b'"}\n'
    await c.send_raw(big + b'{"cmd": "ping", "id": 2}\n')
    err = await c.answer()
    assert err["ok"] is False and err["error"]["code"] == "too_long"
    ok = await c.answer()
    assert ok["ok"] is True and ok["id"] == 2, "only one error for one oversized line"
    # exactly at the limit is still fine when the JSON is valid
    pad = MAX_LINE - len(b'{"cmd": "ping", "pad": ""}')
    await c.send_raw(b'{"cmd": "ping", "pad": "' + b"y" * pad + b'"}\n')
    assert (await c.answer())["ok"] is True
    await c.close()


async def test_many_concurrent_clients(server: DiagServer) -> None:
    async def one(i: int) -> list[bool]:
        c = await connect(server)
        oks = []
        for j in range(5):
            r = await c.ask({"cmd": "status" if j % 2 else "values", "id": [i, j]})
            oks.append(r["ok"] and r["id"] == [i, j])
        await c.close()
        return oks

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert all(all(r) for r in results)
    assert server.stats()["requests"] >= 250
    await asyncio.sleep(0.05)
    assert server.stats()["clients"] == 0


async def test_max_clients_refuses_with_busy(source: TestSource, sock_path: Path) -> None:
    srv = DiagServer(source, socket_path=sock_path, max_clients=2)
    await srv.start()
    try:
        a, b = await Conn.open(str(sock_path)), await Conn.open(str(sock_path))
        assert (await a.ask({"cmd": "ping"}))["ok"] and (await b.ask({"cmd": "ping"}))["ok"]
        c = await Conn.open(str(sock_path))
        r = await c.recv()
        assert r["ok"] is False and r["error"]["code"] == "busy"
        assert await c.reader.read() == b""
        await a.close()
        await asyncio.sleep(0.05)
        d = await Conn.open(str(sock_path))
        assert (await d.ask({"cmd": "ping"}))["ok"], "a freed slot is usable again"
        for x in (b, c, d):
            await x.close()
    finally:
        await srv.close()


async def test_subscribe_streams_samples_events_trips_and_link_state(server: DiagServer, source: TestSource) -> None:
    c = await connect(server)
    r = await c.ask({"cmd": "subscribe"})
    assert r["data"] == {"subscribed": ["event", "link", "sample", "trip"]}
    await source.bus.publish(Sample(1000, "speed", 42.0, "km/h", 0x0D, 0x7E8))
    await source.bus.publish(Event("e1", "HARD_BRAKE", "notification:hard_brake", 2000, "t1", {"delta": -12}))
    await source.bus.publish(TripRecord("t1", 0, 60000, {"distance": 900.0}))
    await source.bus.publish(LinkState(3000, True, False, "6"))
    got = [await c.recv() for _ in range(4)]
    assert got[0] == {"stream": "sample", "data": {"ts_ms": 1000, "name": "speed", "value": 42.0, "unit": "km/h",
                                                   "pid": "0D", "ecu": "7E8"}}
    assert got[1]["stream"] == "event" and got[1]["data"]["automatic_type"] == "notification:hard_brake"
    assert got[2]["stream"] == "trip" and got[2]["data"]["distance"] == 900.0
    assert got[3]["stream"] == "link" and got[3]["data"]["ecu_responding"] is False
    # requests still work while subscribed; answers interleave with the stream
    assert (await c.ask({"cmd": "ping"}))["ok"]
    assert (await c.ask({"cmd": "unsubscribe"}))["data"] == {"unsubscribed": True}
    await source.bus.publish(Sample(4000, "speed", 1.0))
    assert (await c.ask({"cmd": "ping", "id": "after"}))["id"] == "after"
    await c.close()


async def test_subscribe_filter_by_kind(server: DiagServer, source: TestSource) -> None:
    c = await connect(server)
    await c.ask({"cmd": "subscribe", "kinds": ["event"]})
    await source.bus.publish(Sample(1, "speed", 1.0))
    await source.bus.publish(Event("e2", "MIL_ON", "notification:mil_on", 5))
    msg = await c.recv()
    assert msg["stream"] == "event" and msg["data"]["id"] == "e2"
    await c.close()


async def test_stuck_subscriber_cannot_block_the_daemon(server: DiagServer, source: TestSource) -> None:
    # A client that subscribes and then never reads: its socket buffer fills, then its queue.
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(str(server.socket_path))
    stuck.sendall(b'{"cmd": "subscribe"}\n')
    healthy = await connect(server)
    await healthy.ask({"cmd": "subscribe", "kinds": ["event"]})
    await asyncio.sleep(0.05)

    # ~2 MB of stream output: more than the kernel and transport buffers can absorb
    for i in range(20000):
        await source.bus.publish(Sample(i, "engine_rpm", float(i), "rpm", 0x0C, 0x7E8))
        if i % 2 == 0:
            await asyncio.sleep(0)  # the poller yields between requests
    await source.bus.publish(Event("e9", "HARD_ACCEL", "notification:hard_accel", 9))
    # the healthy client is served promptly
    ev = await healthy.recv()
    assert ev["stream"] == "event" and ev["data"]["id"] == "e9"
    assert (await healthy.ask({"cmd": "status"}))["ok"]
    # the stuck one lost items (counted) and, after write_timeout_s without reading, was disconnected
    for _ in range(100):
        if server.stats()["disconnected_stuck"]:
            break
        await asyncio.sleep(0.05)
    stats = server.stats()
    assert stats["stream_dropped"] > 0
    assert stats["disconnected_stuck"] >= 1
    assert stats["clients"] == 1
    stuck.close()
    await healthy.close()


async def test_slow_subscriber_is_told_how_much_it_missed(server: DiagServer, source: TestSource) -> None:
    c = await connect(server)
    await c.ask({"cmd": "subscribe", "kinds": ["sample"]})
    for i in range(2000):
        source.bus.publish_nowait(Sample(i, "speed", float(i)))
    await asyncio.sleep(0.1)
    seen = []
    dropped = None
    while True:
        try:
            msg = await c.recv(timeout=0.5)
        except TimeoutError:
            break
        if msg["stream"] == "dropped":
            dropped = msg["data"]["dropped"]
        else:
            seen.append(msg["data"]["ts_ms"])
    assert dropped is not None and dropped > 0
    assert seen == sorted(seen), "what arrives keeps its order"
    assert len(seen) + dropped == 2000
    assert server.stats()["stream_dropped"] == dropped
    # a new subscription keeps counting from the old total: the number never goes down
    await c.ask({"cmd": "subscribe", "kinds": ["sample"]})
    for i in range(3000):
        source.bus.publish_nowait(Sample(i, "speed", float(i)))
    totals = []
    while True:
        try:
            msg = await c.recv(timeout=0.5)
        except TimeoutError:
            break
        if msg.get("stream") == "dropped":
            totals.append(msg["data"]["dropped"])
    assert totals and totals[0] > dropped and totals == sorted(totals)
    await c.close()


async def test_client_that_sends_but_never_reads_is_disconnected(server: DiagServer) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(str(server.socket_path))
    s.setblocking(False)
    payload = b'{"cmd": "trips", "limit": 29}\n' * 50
    sent = 0
    for _ in range(200):
        try:
            sent += s.send(payload)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0)
    for _ in range(100):
        if server.stats()["disconnected_stuck"] and not server.stats()["clients"]:
            break
        await asyncio.sleep(0.05)
    assert server.stats()["disconnected_stuck"] >= 1
    assert server.stats()["clients"] == 0
    s.close()


async def test_restart_command_reaches_the_source(server: DiagServer, source: TestSource) -> None:
    c = await connect(server)
    r = await c.ask({"cmd": "restart", "component": "uplink:mqtt"})
    assert r["ok"] and source.restarted == ["uplink:mqtt"]
    await c.close()


async def test_slow_query_does_not_block_other_clients(server: DiagServer, source: TestSource) -> None:
    source.query_gate = asyncio.Event()
    slow = await connect(server)
    await slow.send({"cmd": "query", "pid": "0C", "id": "slow"})
    while source.queries != ["0C"]:
        await asyncio.sleep(0.01)
    fast = await connect(server)
    assert (await fast.ask({"cmd": "status"}))["ok"], "answered while the vehicle query is still pending"
    source.query_gate.set()
    assert (await slow.answer())["id"] == "slow"
    await slow.close()
    await fast.close()


async def test_request_timeout(source: TestSource, sock_path: Path) -> None:
    source.query_delay_s = 5
    srv = DiagServer(source, socket_path=sock_path, request_timeout_s=0.1)
    await srv.start()
    try:
        c = await Conn.open(str(sock_path))
        r = await c.ask({"cmd": "query", "pid": "0C"})
        assert r["error"]["code"] == "timeout"
        await c.close()
    finally:
        await srv.close()


async def test_stale_socket_is_replaced_and_a_live_one_is_not(source: TestSource, sock_path: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))
    dead.close()  # the file stays, nobody listens: a crashed daemon's leftover
    first = DiagServer(source, socket_path=sock_path)
    await first.start()
    second = DiagServer(source, socket_path=sock_path)
    with pytest.raises(GatewayError, match="already running"):
        await second.start()
    await first.close()
    assert not sock_path.exists(), "close removes the socket file"
    sock_path.write_text("not a socket")
    with pytest.raises(GatewayError, match="not a socket"):
        await DiagServer(source, socket_path=sock_path).start()
    sock_path.unlink()


async def test_group_and_tcp_loopback(source: TestSource, sock_path: Path) -> None:
    group = grp.getgrgid(os.getgid() if os.getgid() != 0 else 1).gr_name  # root may give away; others own it
    srv = DiagServer(source, socket_path=sock_path, group=group, tcp_port=_free_port())
    await srv.start()
    try:
        assert grp.getgrgid(os.stat(sock_path).st_gid).gr_name == group
        assert srv.tcp_address is not None and srv.tcp_address[0] == "127.0.0.1"
        reader, writer = await asyncio.open_connection(*srv.tcp_address)
        writer.write(b'{"cmd": "ping"}\n')
        assert json.loads(await reader.readline())["ok"] is True
        writer.close()
        await writer.wait_closed()
    finally:
        await srv.close()
    with pytest.raises(GatewayError, match=r"diag\.group"):
        await DiagServer(source, socket_path=sock_path, group="no-such-group-xyz").start()
    assert not sock_path.exists()


async def test_run_is_a_supervisable_component(source: TestSource, sock_path: Path) -> None:
    srv = DiagServer(source, socket_path=sock_path)
    task = asyncio.create_task(srv.run())
    for _ in range(100):
        if sock_path.exists():
            break
        await asyncio.sleep(0.01)
    c = await Conn.open(str(sock_path))
    assert (await c.ask({"cmd": "ping"}))["ok"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not sock_path.exists()
    assert await c.reader.read() == b""
    await c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _random_json(rng: random.Random, depth: int = 0) -> object:
    choice = rng.randrange(8 if depth < 3 else 5)
    if choice == 0:
        return rng.choice([None, True, False])
    if choice == 1:
        return rng.randint(-(2**70), 2**70)
    if choice == 2:
        return rng.choice([0.5, -1e308, 1e-9, float("inf")])
    if choice in (3, 4):
        return "".join(rng.choice("abc0CF\"\\\u00e9\u2603 ") for _ in range(rng.randrange(6)))
    if choice == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = rng.sample(["pid", "limit", "kinds", "confirm", "id", "component", "x"], rng.randrange(4))
    obj: dict[str, object] = {k: _random_json(rng, depth + 1) for k in keys}
    if rng.random() < 0.8:
        obj["cmd"] = rng.choice([*COMMANDS, "", "STATUS", "nope"])
    return obj


async def test_random_requests_each_get_exactly_one_answer(server: DiagServer, source: TestSource) -> None:
    """Fuzz: 600 random lines (bytes, broken and odd JSON) on one connection; one answer per line."""
    rng = random.Random(8)
    lines: list[bytes] = []
    for _ in range(600):
        kind = rng.random()
        if kind < 0.3:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))).replace(b"\n", b"")
        elif kind < 0.4:
            raw = json.dumps(_random_json(rng))[: rng.randrange(1, 40)].encode()  # truncated
        else:
            raw = json.dumps(_random_json(rng)).encode()
        if raw.strip():
            lines.append(raw)
    c = await connect(server)
    source.query_delay_s = 0
    answers = 0
    for raw in lines:
        await c.send_raw(raw + b"\n")
        msg = await c.answer(timeout=5)
        assert set(msg) >= {"ok", "cmd", "id"}
        assert msg["ok"] in (True, False)
        if msg["ok"] is False:
            assert msg["error"]["code"] in {"bad_json", "bad_request", "unknown_cmd", "forbidden", "failed"}
        answers += 1
    assert answers == len(lines)
    assert source.cleared == 0, "random input never clears codes (allow_clear_dtc is off)"
    assert (await c.ask({"cmd": "ping"}))["ok"]
    await c.close()


async def test_unusable_addresses_are_clear_errors(source: TestSource, sock_path: Path, tmp_path: Path) -> None:
    long_path = Path("/tmp") / ("x" * 120) / "diag.sock"
    with pytest.raises(ConfigError, match=r"^diag\.socket: .* longer than"):
        await DiagServer(source, socket_path=long_path).start()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(GatewayError, match=r"^diag\.socket: cannot listen"):
        await DiagServer(source, socket_path=blocker / "diag.sock").start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(GatewayError, match=r"^diag\.tcp_port: cannot listen"):
            await DiagServer(source, socket_path=sock_path, tcp_port=port).start()
    assert not sock_path.exists(), "a failed start leaves no socket file behind"


async def test_vehicle_write_and_restart_refused_over_tcp(source: TestSource, sock_path: Path) -> None:
    srv = DiagServer(source, socket_path=sock_path, tcp_port=_free_port(), allow_clear_dtc=True)
    await srv.start()
    try:
        assert srv.tcp_address is not None
        reader, writer = await asyncio.open_connection(*srv.tcp_address)
        writer.write(b'{"cmd": "clear_dtc", "confirm": true}\n{"cmd": "restart", "component": "poller"}\n')
        clear = json.loads(await reader.readline())
        restart = json.loads(await reader.readline())
        assert clear["ok"] is False and clear["error"]["code"] == "forbidden"
        assert "Unix socket" in clear["error"]["message"]
        assert restart["ok"] is False and restart["error"]["code"] == "forbidden"
        writer.write(b'{"cmd": "ping"}\n')
        assert json.loads(await reader.readline())["ok"] is True, "the connection stays usable"
        writer.close()
        await writer.wait_closed()
        # The same request over the Unix socket is accepted (both switches set).
        ureader, uwriter = await asyncio.open_unix_connection(str(sock_path))
        uwriter.write(b'{"cmd": "clear_dtc", "confirm": true}\n')
        assert json.loads(await ureader.readline())["ok"] is True
        uwriter.close()
        await uwriter.wait_closed()
    finally:
        await srv.close()
