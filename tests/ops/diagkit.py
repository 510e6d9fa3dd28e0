"""An in-test StatusSource (real Bus, canned vehicle data) and a small asyncio client for diag tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.bus import Bus, Subscription
from gateway.common import vocabulary
from gateway.errors import AdapterError


class TestSource:
    """Implements gateway.diag.StatusSource with fixed data; records what the server asked for."""

    __test__ = False

    def __init__(self) -> None:
        self.bus = Bus()
        self.cleared = 0
        self.queries: list[str] = []
        self.restarted: list[str] = []
        self.query_delay_s = 0.0
        self.query_gate: asyncio.Event | None = None  # when set, query() waits for it

    def status(self) -> dict[str, Any]:
        return {
            "adapter": {"connected": True, "port": "/dev/ttyUSB0", "elm_version": "ELM327 v1.5"},
            "protocol": "6",
            "vin": "1HGCM82633A004352",
            "ignition": True,
            "trip": "trip-1",
            "mqtt": {"queue": 3, "password": "do-not-show"},
            "components": {"poller": {"state": "running", "restarts": 0, "last_error": None}},
        }

    def values(self) -> list[dict[str, Any]]:
        # the daemon's answer, in the one vocabulary (gateway/common/vocabulary.py)
        return [{**vocabulary.sample_row("engine_rpm", 812.5, "rpm", 0x0C, 0x7E8), "age_s": 0.1}]

    def pids(self) -> list[dict[str, Any]]:
        return [{"pid": "0C", "name": "engine_rpm", "supported": True, "polled": True,
                 "target_hz": 5.0, "achieved_hz": 4.8}]

    def trips(self, limit: int) -> list[dict[str, Any]]:
        return [{"id": f"trip-{i}", "distance": 1000.0 * i, "duration": 60000 * i} for i in range(1, 30)][:limit]

    async def dtc(self) -> dict[str, Any]:
        return {"stored": ["P0301"], "pending": [], "permanent": [], "mil": True}

    async def clear_dtc(self) -> dict[str, Any]:
        self.cleared += 1
        return {"cleared": True}

    async def query(self, pid: str) -> list[dict[str, Any]]:
        self.queries.append(pid)
        if self.query_gate is not None:
            await self.query_gate.wait()
        await asyncio.sleep(self.query_delay_s)
        if pid == "FF":
            raise AdapterError("NO DATA for 01FF")
        return [vocabulary.sample_row("engine_rpm", 800.0, "rpm", int(pid, 16), 0x7E8)]

    def subscribe(self, name: str, maxsize: int, kinds: tuple[type, ...]) -> Subscription:
        return self.bus.subscribe(name, maxsize=maxsize, kinds=kinds)

    def restart(self, component: str) -> dict[str, Any]:
        if component != "uplink:mqtt":
            raise KeyError(component)
        self.restarted.append(component)
        return {"restarting": component}


def _strict(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name} on the wire")


class Conn:
    """A test client: raw lines out, parsed JSON lines in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: str) -> Conn:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, obj: Any) -> None:
        await self.send_raw(json.dumps(obj).encode() + b"\n")

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line, "server closed the connection"
        msg = json.loads(line, parse_constant=_strict)  # the server must send strict JSON
        assert isinstance(msg, dict)
        return msg

    async def answer(self, timeout: float = 3.0) -> dict[str, Any]:
        """The next non-stream line."""
        while True:
            msg = await self.recv(timeout)
            if "stream" not in msg:
                return msg

    async def ask(self, obj: Any) -> dict[str, Any]:
        await self.send(obj)
        return await self.answer()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
