"""The obd-gateway-sim command line as a real subprocess: first line, signals, --truth, --control, --tcp."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from firmware_sim.control import send_command
from tests.fixtures.sim import SimCli
from tests.sim.helpers import Terminal, lines


def test_help_documents_the_options() -> None:
    out = subprocess.run([sys.executable, "-m", "firmware_sim", "--help"], capture_output=True, text=True, check=True)
    for opt in ("--drive", "--seed", "--fast", "--tcp", "--slcan", "--truth", "--time-scale", "--baud", "--control",
                "--pipelining"):
        assert opt in out.stdout


def test_pty_first_line_control_socket_and_sigterm(sim_cli: SimCli, tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    control = str(tmp_path / "ctl.sock")
    proc, path = sim_cli("--fast", "--drive", "short", "--truth", str(truth), "--control", control,
                         "--time-scale", "5")
    assert path.endswith("/elm327")
    t = Terminal(path)
    try:
        t.cmd("ATE0")
        assert lines(t.cmd("0100"))[0] == "SEARCHING..."
        assert send_command(control, {"fault": "no_data", "on": True}) == {"ok": True}
        assert lines(t.cmd("010C")) == ["NO DATA"]
        send_command(control, {"clear_faults": True})
        send_command(control, {"set_dtcs": ["P0301"]})
        assert lines(t.cmd("03")) == ["43 01 03 01", "43 00"]  # the transmission has none
        send_command(control, {"ignition": False})
        assert lines(t.cmd("010C")) == ["NO DATA"]
        state = send_command(control, {"state": True})
        assert state["state"]["ignition"] is False and state["state"]["dtcs"] == ["P0301"]  # type: ignore[index]
        bad = send_command(control, {"fault": "gremlins"})
        assert bad["ok"] is False and "unknown fault" in str(bad["error"])
        assert send_command(control, {"bogus": 1})["ok"] is False
    finally:
        t.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    events = [json.loads(x) for x in truth.read_text().splitlines()]
    names = [e.get("event") for e in events if e["type"] == "event"]
    assert names[0] == "ignition_on" and "mil_on" in names and "ignition_off" in names


def test_control_socket_makes_the_adapter_vanish(sim_cli: SimCli, tmp_path: Path) -> None:
    control = str(tmp_path / "ctl.sock")
    proc, path = sim_cli("--fast", "--control", control)
    assert send_command(control, {"close_port": True})["ok"] is True
    assert not Path(path).exists()
    send_command(control, {"reopen_port": True})
    t = Terminal(path)
    assert t.cmd("ATI") == b"ATI\rELM327 v1.5\r\r>"
    t.close()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_tcp_first_line(sim_cli: SimCli) -> None:
    proc, where = sim_cli("--fast", "--tcp", "0")
    assert where.startswith("tcp:127.0.0.1:")
    port = int(where.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=3) as c:
        c.sendall(b"ATI\r")
        buf = b""
        while not buf.endswith(b">"):
            buf += c.recv(100)
    assert buf == b"ATI\rELM327 v1.5\r\r>"
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def test_bad_drive_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[phase]]\nkind = 'teleport'\n")
    out = subprocess.run([sys.executable, "-m", "firmware_sim", "--drive", str(bad)], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 2
    assert "kind must be one of" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "firmware_sim", "--time-scale", "0"], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_slcan_first_line(sim_cli: SimCli) -> None:
    import can

    proc, where = sim_cli("--fast", "--slcan")
    assert where.startswith("can:slcan:")  # pasteable into obd-gateway poll --port
    path = where.removeprefix("can:slcan:")
    bus = can.Bus(interface="slcan", channel=path, bitrate=500000, sleep_after_open=0)
    try:
        bus.send(can.Message(arbitration_id=0x7E0, data=b"\x02\x01\x0D" + b"\x00" * 5, is_extended_id=False))
        deadline = time.monotonic() + 3
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = bus.recv(0.5)
        assert msg is not None and msg.arbitration_id == 0x7E8 and msg.data[:3] == b"\x03\x41\x0d"
    finally:
        bus.shutdown()
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def _sim_error(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware_sim", "--fast", *args], capture_output=True, text=True,
                          timeout=20)


def test_bad_options_are_one_clear_line() -> None:
    cases = {
        ("--tcp", "99999"): "--tcp must be a port number 0-65535, got 99999",
        ("--baud", "12"): "--baud must be between 300 and 4000000, got 12",
        ("--control", "/nonexistent/dir/sock"): "/nonexistent/dir",
    }
    for args, message in cases.items():
        out = _sim_error(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stdout == ""  # no port printed: nothing is served
        err = out.stderr.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "Traceback" not in out.stderr, (args, out.stderr)


def test_tcp_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = _sim_error("--tcp", str(port))
    assert out.returncode == 1
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and f"TCP port {port}" in err[0] and "Traceback" not in out.stderr
