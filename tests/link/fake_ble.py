"""FakeBleakClient: a stand-in for bleak's BleakClient, because no BLE radio exists here.

Thin on purpose: a GATT table for one of the adapter layouts, notifications cut into ATT-sized
pieces, writes recorded. Behind it answers the simulator's real ELM327 firmware (firmware_sim), so
everything above the BLE layer runs as it would against a real adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_sim import Simulator


@dataclass
class FakeChar:
    uuid: str
    properties: list[str]


@dataclass
class FakeService:
    uuid: str
    characteristics: list[FakeChar]


@dataclass
class FakeServices:
    services: list[FakeService]

    def __iter__(self) -> Any:
        return iter(self.services)

    def get_characteristic(self, uuid: str) -> FakeChar | None:
        for s in self.services:
            for c in s.characteristics:
                if c.uuid == uuid:
                    return c
        return None


@dataclass
class FakeBleakClient:
    """Implements the BleakClient calls BleTransport makes: connect, services, start_notify, write_gatt_char."""

    sim: Simulator
    services: FakeServices
    notify_uuid: str
    mtu_size: int = 23
    on_disconnect: Callable[[Any], None] | None = None
    writes: list[bytes] = field(default_factory=list)
    is_connected: bool = False
    _callback: Callable[[Any, bytearray], None] | None = None
    _line: bytearray = field(default_factory=bytearray)
    _elm: Any = None

    async def connect(self) -> None:
        self.is_connected = True
        self._elm = self.sim.new_elm()

    async def disconnect(self) -> None:
        self.is_connected = False

    async def start_notify(self, char: FakeChar, callback: Callable[[Any, bytearray], None]) -> None:
        assert char.uuid == self.notify_uuid and "notify" in char.properties
        self._callback = callback

    async def write_gatt_char(self, char: FakeChar, data: bytes, response: bool = False) -> None:
        assert self.is_connected, "write on a dropped link"
        assert len(data) <= self.mtu_size - 3, f"write of {len(data)} bytes exceeds the ATT payload"
        self.writes.append(bytes(data))
        self._line += data
        while b"\r" in self._line:
            idx = self._line.index(b"\r")
            line, self._line = bytes(self._line[:idx]), self._line[idx + 1 :]
            reply = self._elm.execute(line)
            out = b"".join(c.data for c in reply.chunks)
            payload = self.mtu_size - 3
            for i in range(0, len(out), payload):  # notifications are ATT-sized too
                piece = bytearray(out[i : i + payload])
                asyncio.get_running_loop().call_soon(self._notify, piece)

    def _notify(self, piece: bytearray) -> None:
        if self._callback is not None and self.is_connected:
            self._callback(None, piece)

    def drop(self) -> None:
        """The radio link goes away."""
        self.is_connected = False
        if self.on_disconnect is not None:
            self.on_disconnect(self)


def gatt(layout: str) -> tuple[FakeServices, str]:
    """A GATT table of one adapter layout and its notify UUID."""
    def u(short: int) -> str:
        return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"

    generic = FakeService(u(0x1800), [FakeChar(u(0x2A00), ["read"])])
    if layout == "fff0":
        svc = FakeService(u(0xFFF0), [FakeChar(u(0xFFF1), ["notify"]), FakeChar(u(0xFFF2), ["write-without-response"])])
        return FakeServices([generic, svc]), u(0xFFF1)
    if layout == "ffe0":
        return FakeServices([generic, FakeService(u(0xFFE0), [FakeChar(u(0xFFE1), ["notify", "write"])])]), u(0xFFE1)
    if layout == "vgate-obdlink":
        c = "bef8d6c9-9c21-4c9e-b632-bd58c1009f9f"
        svc = FakeService("e7810a71-73ae-499d-8c15-faa9aef0c3f2", [FakeChar(c, ["notify", "write"])])
        return FakeServices([generic, svc]), c
    # an unknown clone: some vendor service with a notify and a write characteristic
    svc = FakeService("0000abf0-0000-1000-8000-00805f9b34fb", [
        FakeChar("0000abf2-0000-1000-8000-00805f9b34fb", ["notify"]),
        FakeChar("0000abf1-0000-1000-8000-00805f9b34fb", ["write"]),
    ])
    return FakeServices([generic, svc]), "0000abf2-0000-1000-8000-00805f9b34fb"
