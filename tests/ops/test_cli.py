"""The diagnostic CLI against a real server socket (CLI in a worker thread, server in the test loop)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway import cli
from gateway.commands.diag_client import WatchView, resolve_socket
from gateway.diag import DiagServer
from gateway.model import Event, Sample

from .diagkit import TestSource


@pytest.fixture
def sock_path() -> Iterator[Path]:
    short = Path(tempfile.mkdtemp(prefix="obdgw-cli-"))
    yield short / "diag.sock"
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def source() -> TestSource:
    return TestSource()


@pytest.fixture
async def server(source: TestSource, sock_path: Path) -> AsyncIterator[DiagServer]:
    srv = DiagServer(source, socket_path=sock_path)
    await srv.start()
    yield srv
    await srv.close()


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def test_status_table_and_json(server: DiagServer, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(server.socket_path)
    assert await run_cli("status", "--socket", sock) == 0
    out = capsys.readouterr().out
    assert "vin" in out and "1HGCM82633A004352" in out
    assert "do-not-show" not in out
    assert "COMPONENT" in out and "poller" in out
    assert await run_cli("status", "--socket", sock, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["vin"] == "1HGCM82633A004352"
    assert data["mqtt"]["password"] == "***"


async def test_values_pids_trips_dtc_query(server: DiagServer, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(server.socket_path)
    assert await run_cli("values", "--socket", sock) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "VALUE", "UNIT", "PID", "ECU", "AGE_S"]
    assert out[1].split() == ["engine_rpm", "812.5", "rpm", "0C", "7E8", "0.1"]

    assert await run_cli("pids", "--socket", sock) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["0C", "engine_rpm", "yes", "yes", "5", "0.2", "s", "4.8"]  # every: the period

    assert await run_cli("trips", "--socket", sock, "--limit", "2", "--json") == 0
    assert [t["id"] for t in json.loads(capsys.readouterr().out)] == ["trip-1", "trip-2"]
    assert await run_cli("trips", "--socket", sock, "--limit", "2") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "START", "DURATION_MIN", "DISTANCE_KM"]
    assert out[2].split() == ["trip-2", "-", "2", "2"]

    assert await run_cli("dtc", "--socket", sock) == 0
    out = capsys.readouterr().out
    assert "MIL (check engine light): ON" in out and "P0301" in out

    assert await run_cli("query", "0c", "--socket", sock, "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["value"] == 800.0
    assert await run_cli("query", "FF", "--socket", sock) == 1
    assert "NO DATA" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # a malformed PID is a usage error, never sent to the daemon
        await run_cli("query", "ZZ", "--socket", sock)
    assert usage.value.code == 2
    assert 'pid must be one or two hex digits such as "0C"' in capsys.readouterr().err


async def test_dtc_clear_needs_yes_and_the_daemon_switch(
    server: DiagServer, source: TestSource, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = str(server.socket_path)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert await run_cli("dtc", "--clear", "--socket", sock) == 1
    assert "--yes" in capsys.readouterr().err
    assert await run_cli("dtc", "--clear", "--yes", "--socket", sock) == 1
    err = capsys.readouterr().err
    assert "allow_clear_dtc" in err and "confirm" not in err  # the CLI sends confirm itself
    assert source.cleared == 0
    server.allow_clear_dtc = True
    assert await run_cli("dtc", "--clear", "--yes", "--socket", sock) == 0
    assert "cleared" in capsys.readouterr().out
    assert source.cleared == 1


async def test_unreachable_socket_is_one_line_and_exit_1(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "status", "--socket", str(tmp_path / "none.sock"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 1
    assert out == b""
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "cannot reach the daemon at" in lines[0] and "none.sock" in lines[0]
    assert "Traceback" not in err.decode()


def test_socket_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.delenv("OBD_GATEWAY_SOCKET", raising=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[diag]\nsocket = "/run/x/diag.sock"\n')
    assert resolve_socket(argparse.Namespace(socket="/a.sock", config=str(cfg))) == "/a.sock"
    assert resolve_socket(argparse.Namespace(socket=None, config=str(cfg))) == "/run/x/diag.sock"
    monkeypatch.setenv("OBD_GATEWAY_SOCKET", "/env.sock")
    assert resolve_socket(argparse.Namespace(socket=None, config=str(cfg))) == "/env.sock"
    monkeypatch.delenv("OBD_GATEWAY_SOCKET")
    cfg.write_text("[diag]\ntcp_port = 7777\nsocket = \"/nonexistent/d.sock\"\n")
    assert resolve_socket(argparse.Namespace(socket=None, config=str(cfg))) == "tcp:127.0.0.1:7777"


def test_bad_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[diag]\ntcp_port = -1\n")
    assert cli.main(["status", "--config", str(cfg)]) == 2
    assert "diag.tcp_port" in capsys.readouterr().err


async def test_watch_json_streams_and_view_renders(
    server: DiagServer, source: TestSource, capsys: pytest.CaptureFixture[str]
) -> None:
    # --json makes watch print stream lines; it ends when the daemon goes away (exit 1)
    task = asyncio.create_task(run_cli("watch", "--socket", str(server.socket_path), "--json", "--interval", "0.05"))
    for _ in range(200):
        if server.stats()["clients"] == 1 and source.bus.stats():
            break
        await asyncio.sleep(0.01)
    assert server.stats()["clients"] == 1 and source.bus.stats(), "watch did not connect and subscribe within 2 s"
    await source.bus.publish(Sample(1, "speed", 55.0, "km/h", 0x0D))
    await source.bus.publish(Event("e1", "HARD_BRAKE", "notification:hard_brake", 2))
    await asyncio.sleep(0.3)
    await server.close()
    assert await asyncio.wait_for(task, 5) == 1
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines()]
    assert {"stream": "sample", "data": {"ts_ms": 1, "name": "speed", "value": 55.0, "unit": "km/h",
                                         "pid": "0D", "ecu": None}} in lines
    assert any(m["stream"] == "event" for m in lines)
    assert "closed the connection" in captured.err

    view = WatchView()
    for m in lines:
        view.feed(m)
    view.feed({"ok": True, "cmd": "status", "data": source.status()})
    screen = view.render("obd-gateway watch test")
    assert "speed" in screen and "55" in screen
    assert "notification:hard_brake" in screen
    assert "vin=1HGCM82633A004352" in screen
    assert "components: all running" in screen


def test_watch_ctrl_c_exits_0(tmp_path: Path) -> None:
    """A real terminal-less run: SIGINT to the CLI process ends it with exit 0."""
    import os
    import pty
    import select
    import signal
    import time

    sock = Path(tempfile.mkdtemp(prefix="obdgw-w-")) / "d.sock"
    server_code = f"""
import asyncio, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from tests.ops.diagkit import TestSource
from gateway.diag import DiagServer
async def main():
    srv = DiagServer(TestSource(), socket_path={str(sock)!r})
    await srv.start()
    print("up", flush=True)
    await asyncio.sleep(30)
asyncio.run(main())
"""
    srv = subprocess.Popen([sys.executable, "-c", server_code], stdout=subprocess.PIPE)
    try:
        assert srv.stdout is not None and srv.stdout.readline() == b"up\n"
        # stdout on a pseudo-terminal, as at a technician's console: ANSI redraws
        master, slave = pty.openpty()
        w = subprocess.Popen(
            [sys.executable, "-m", "gateway", "watch", "--socket", str(sock), "--interval", "0.1"],
            stdout=slave, stderr=subprocess.PIPE,
        )
        os.close(slave)
        out = b""
        deadline = time.monotonic() + 15
        while out.count(b"\x1b[H\x1b[2J") < 3 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                out += os.read(master, 65536)
        os.kill(w.pid, signal.SIGINT)
        _, err = w.communicate(timeout=10)
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        assert w.returncode == 0, err
        assert out.count(b"\x1b[H\x1b[2J") >= 3, "the view is redrawn in place"
        assert b"obd-gateway watch" in out and b"vin=1HGCM82633A004352" in out
        assert out.rstrip().endswith(b"\x1b[?25h"), "the cursor is shown again on exit"
        assert b"Traceback" not in err
    finally:
        srv.kill()
        srv.wait()
        shutil.rmtree(sock.parent, ignore_errors=True)


def test_render_status_shortens_long_values_unless_verbose() -> None:
    import io

    from gateway.commands.diag_client import render_status

    data = {"adapter": {"supported": [f"{i:02X}" for i in range(160)], "connected": True}}
    short = io.StringIO()
    render_status(data, short)
    line = next(x for x in short.getvalue().splitlines() if x.startswith("adapter.supported"))
    assert line.endswith("… (160 items)") and len(line) < 120
    assert "adapter.connected  yes" in short.getvalue()
    full = io.StringIO()
    render_status(data, full, verbose=True)
    assert "9F" in full.getvalue()
