"""The control socket: a Unix socket taking JSON-line commands, so tests in other processes can steer
the simulator (faults, ignition, DTCs, port vanishing). One JSON object per line in, one per line out:
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Commands: see :meth:`Simulator.command`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading

from firmware_sim.simulator import Simulator


class ControlServer:
    """Serves :meth:`Simulator.command` on a Unix socket at ``path`` (several clients at once)."""

    def __init__(self, sim: Simulator, path: str) -> None:
        self.sim = sim
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(8)
        self._stopping = False
        self._thread = threading.Thread(target=self._accept, name="sim-control", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="sim-control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                try:
                    cmd = json.loads(raw)
                    answer = self.sim.command(cmd)
                except (ValueError, KeyError, TypeError) as exc:
                    answer = {"ok": False, "error": str(exc).strip("'\"")}
                try:
                    f.write(json.dumps(answer).encode() + b"\n")
                    f.flush()
                except OSError:
                    return

    def stop(self) -> None:
        """Close the socket and remove its path."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def send_command(path: str, cmd: dict[str, object], timeout: float = 5.0) -> dict[str, object]:
    """Client helper: send one command to a control socket and return its JSON answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(cmd).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    result = json.loads(buf)
    if not isinstance(result, dict):
        raise ValueError("control socket answered something that is not an object")
    return result
