"""Bluetooth Low Energy adapters with bleak.

BLE OBD adapters expose a serial link as GATT characteristics; the layout depends on the chip:

==================  ========================================  =====================  =====================
layout              service                                   notify (adapter → us)  write (us → adapter)
==================  ========================================  =====================  =====================
``fff0``            0000FFF0-…  (most clones)                 0000FFF1-…             0000FFF2-…
``ffe0``            0000FFE0-…  (HM-10 / CC254x modules)       0000FFE1-…             0000FFE1-…
``vgate-obdlink``   E7810A71-73AE-499D-8C15-FAA9AEF0C3F2       BEF8D6C9-9C21-…        BEF8D6C9-9C21-…
==================  ========================================  =====================  =====================

The adapter is found by name or address (``ble:OBDII``, ``ble:AA:BB:CC:DD:EE:FF``), its layout
recognised by UUIDs (with a fall-back to any service holding one notify and one write
characteristic), writes are split to the negotiated MTU (ATT payload = MTU − 3), and notifications
are queued as they come: the base class reassembles them into lines and prompts. A dropped link
surfaces as TransportError. bleak is imported only when a ``ble:`` port is opened.

Bytes kept: notifications cannot be paused, so the receive queue drops its oldest bytes past 64 KiB
unread and the next read raises OversizedAnswer (see :mod:`gateway.transport._queue`); answers are
capped by :meth:`~gateway.transport.base.Transport.read_until`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import TransportError
from gateway.transport._queue import ChunkQueue
from gateway.transport.base import Transport


def _uuid16(short: int) -> str:
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True, slots=True)
class GattLayout:
    """Where an adapter's serial link lives in its GATT table."""

    name: str
    service: str
    notify: str
    write: str


LAYOUTS: tuple[GattLayout, ...] = (
    GattLayout("fff0", _uuid16(0xFFF0), _uuid16(0xFFF1), _uuid16(0xFFF2)),
    GattLayout("ffe0", _uuid16(0xFFE0), _uuid16(0xFFE1), _uuid16(0xFFE1)),
    GattLayout(
        "vgate-obdlink",
        "e7810a71-73ae-499d-8c15-faa9aef0c3f2",
        "bef8d6c9-9c21-4c9e-b632-bd58c1009f9f",
        "bef8d6c9-9c21-4c9e-b632-bd58c1009f9f",
    ),
)
_ADDRESS = re.compile(r"^([0-9A-F]{2}:){5}[0-9A-F]{2}$|^[0-9A-F]{8}-([0-9A-F]{4}-){3}[0-9A-F]{12}$", re.IGNORECASE)
DEFAULT_ATT_PAYLOAD = 20  # MTU 23 minus the 3-byte ATT header


def find_layout(services: Any) -> GattLayout:
    """The layout of a connected client's services (bleak's BleakGATTServiceCollection or alike)."""
    by_uuid = {str(s.uuid).lower(): s for s in services}
    for layout in LAYOUTS:
        svc = by_uuid.get(layout.service)
        if svc is None:
            continue
        chars = {str(c.uuid).lower() for c in svc.characteristics}
        if layout.notify in chars and layout.write in chars:
            return layout
    # an unknown clone: the first service with a notify and a write characteristic
    for svc in services:
        notify = [c for c in svc.characteristics if {"notify", "indicate"} & set(c.properties)]
        write = [c for c in svc.characteristics if {"write", "write-without-response"} & set(c.properties)]
        if notify and write and not str(svc.uuid).lower().startswith(("00001800", "00001801", "0000180a")):
            return GattLayout("generic", str(svc.uuid).lower(), str(notify[0].uuid).lower(), str(write[0].uuid).lower())
    raise TransportError("no serial-over-BLE service found (known: FFF0, FFE0, E7810A71)")


def split_for_mtu(data: bytes, payload: int) -> list[bytes]:
    """``data`` in pieces of at most ``payload`` bytes (one GATT write each)."""
    size = max(1, payload)
    return [data[i : i + size] for i in range(0, len(data), size)]


class BleTransport(Transport):
    """A BLE adapter found by name or address.

    ``client_factory(target, disconnected_callback)`` builds the client; by default bleak's
    BleakClient after a scan (tests pass a fake client here, there being no radio).
    """

    def __init__(
        self,
        target: str,
        *,
        scan_timeout_s: float = 10.0,
        client_factory: Callable[[str, Callable[[Any], None]], Any] | None = None,
    ) -> None:
        super().__init__()
        self.target = target
        self.scan_timeout_s = scan_timeout_s
        self._factory = client_factory
        self._client: Any = None
        self._rx = ChunkQueue()
        self.layout: GattLayout | None = None
        self._write_char: Any = None
        self._with_response = False
        self.description = f"ble:{target}"

    async def _make_client(self, on_disconnect: Callable[[Any], None]) -> Any:
        if self._factory is not None:
            return self._factory(self.target, on_disconnect)
        try:
            from bleak import BleakClient, BleakScanner
        except ImportError as exc:
            raise TransportError("BLE adapters need bleak (pip install 'obd-gateway[ble]')") from exc
        if _ADDRESS.match(self.target):
            device = await BleakScanner.find_device_by_address(self.target, timeout=self.scan_timeout_s)
        else:
            device = await BleakScanner.find_device_by_name(self.target, timeout=self.scan_timeout_s)
        if device is None:
            raise TransportError(f"{self.description}: no BLE adapter of that name or address in range")
        return BleakClient(device, disconnected_callback=on_disconnect)

    async def _open(self) -> None:
        self._rx = ChunkQueue()
        rx = self._rx

        def on_disconnect(_client: Any) -> None:
            rx.fail(TransportError(f"{self.description}: BLE link dropped"))

        try:
            client = await self._make_client(on_disconnect)
            await client.connect()
        except TransportError:
            raise
        except Exception as exc:  # bleak raises BleakError (an Exception) and platform errors
            raise TransportError(f"{self.description}: cannot connect: {exc}") from exc
        self._client = client
        try:
            layout = find_layout(client.services)
            notify = client.services.get_characteristic(layout.notify)
            write = client.services.get_characteristic(layout.write)
            self._with_response = "write-without-response" not in set(write.properties)
            await client.start_notify(notify, lambda _char, data: rx.feed(bytes(data)))
        except TransportError:
            await self._close()
            raise
        except Exception as exc:
            await self._close()
            raise TransportError(f"{self.description}: cannot subscribe: {exc}") from exc
        self.layout = layout
        self._write_char = write

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.disconnect()
            except Exception:  # the link may already be gone; closing is best effort
                pass

    @property
    def att_payload(self) -> int:
        """Bytes per write: the negotiated MTU minus the ATT header."""
        mtu = getattr(self._client, "mtu_size", 23) or 23
        return max(DEFAULT_ATT_PAYLOAD, int(mtu) - 3)

    async def _write(self, data: bytes) -> None:
        if self._client is None or self._rx.failed is not None:
            raise self._rx.failed or TransportError(f"{self.description}: not open")
        for piece in split_for_mtu(data, self.att_payload):
            try:
                await self._client.write_gatt_char(self._write_char, piece, response=self._with_response)
            except Exception as exc:
                raise TransportError(f"{self.description}: write failed: {exc}") from exc

    async def _read_chunk(self) -> bytes:
        return await self._rx.get()

    def _read_ready(self) -> bytes:
        # notifications cannot be paused: a settle is a plain wait, and they queue meanwhile
        return self._rx.get_nowait()

    def _take_queued(self) -> bytes:
        return self._rx.take_all()

    @property
    def queued_bytes(self) -> int:
        return self._rx.queued
