"""Raw CAN with python-can: OBD-II over ISO 15765-4, without an ELM327 in between.

``can:INTERFACE:CHANNEL`` (``can:socketcan:can0``, ``can:slcan:/dev/ttyACM0``, ``can:virtual:test``;
append ``@250000`` to the channel for 250 kbit/s buses where the interface sets the bit rate).

* :class:`CanTransport` opens the python-can bus (python-can is imported only here, when a ``can:``
  port is used) and hands received frames to the event loop.
* :class:`IsoTpCollector` is the sans-I/O ISO-TP receive side: it tells when an ECU's answer is
  complete and which flow-control frame to send after a first frame (ISO 15765-2: clear to send,
  block size 0, STmin 0), so multi-frame answers (VIN, DTC lists, 6-PID answers) flow.
* :class:`CanSession` gives the poller the same interface as the ELM327 session: functional
  requests on 7DF (11-bit) or 18DB33F1 (29-bit), physical ones on 7E0+n / 18DA{ecu}F1, protocol
  detection (11- then 29-bit), supported-PID discovery per ECU, multi-PID requests, VIN, DTCs.

The collected raw frames are decoded by the parser's ``decode_can`` (which does the reassembly
itself); the collector only decides completeness and flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway import obd
from gateway.errors import (
    AdapterError,
    GatewayError,
    NoDataError,
    ParseError,
    ProtocolNotFound,
    TransportError,
    UnsupportedCommand,
)

log = logging.getLogger("gateway.can")

FUNCTIONAL_11 = 0x7DF
FUNCTIONAL_29 = 0x18DB33F1
P2_S = 0.05  # ISO 15765-4 P2CAN: an ECU answers within 50 ms
WAIT_S = 0.1  # how long to listen for answers to a request (P2 plus margin)
FC_CTS = bytes([0x30, 0x00, 0x00, 0, 0, 0, 0, 0])  # flow control: clear to send, no blocks, no gap
PROTOCOL_NAMES = {"6": "ISO 15765-4 CAN (11 bit, 500 kbaud)", "7": "ISO 15765-4 CAN (29 bit, 500 kbaud)",
                  "8": "ISO 15765-4 CAN (11 bit, 250 kbaud)", "9": "ISO 15765-4 CAN (29 bit, 250 kbaud)"}


def is_response_id(arb_id: int, extended: bool) -> bool:
    """Whether ``arb_id`` is an OBD response identifier (7E8-7EF, 18DAF1xx)."""
    if extended:
        return arb_id & 0xFFFFFF00 == 0x18DAF100
    return 0x7E8 <= arb_id <= 0x7EF


def request_id(ecu: int, extended: bool) -> int:
    """The physical request identifier of the ECU answering on ``ecu``."""
    if extended:
        return 0x18DA00F1 | ((ecu & 0xFF) << 8)
    return ecu - 8


def single_frame(payload: bytes) -> bytes:
    """An ISO-TP single frame, padded to 8 bytes (OBD requests always fit in one)."""
    if not 1 <= len(payload) <= 7:
        raise ValueError("an OBD request is 1-7 bytes")
    return (bytes([len(payload)]) + payload).ljust(8, b"\x00")


class IsoTpCollector:
    """Sans-I/O: which ECUs' answers are complete, and the flow control to send for first frames."""

    def __init__(self) -> None:
        self._need: dict[int, int] = {}
        self._have: dict[int, int] = {}
        self.complete: list[int] = []  # ECUs whose current message is complete, in order
        self.frames: list[tuple[int, bytes]] = []

    def feed(self, arb_id: int, data: bytes) -> bytes | None:
        """Take one response frame; returns a flow-control frame to send to the ECU, or None."""
        if not data:
            return None
        self.frames.append((arb_id, data))
        kind = data[0] >> 4
        if kind == 0:
            self.complete.append(arb_id)
        elif kind == 1 and len(data) >= 2:
            self._need[arb_id] = ((data[0] & 0x0F) << 8) | data[1]
            self._have[arb_id] = len(data) - 2
            return FC_CTS
        elif kind == 2 and arb_id in self._need:
            self._have[arb_id] += len(data) - 1
            if self._have[arb_id] >= self._need[arb_id]:
                del self._need[arb_id]
                self.complete.append(arb_id)
        return None

    @property
    def in_progress(self) -> bool:
        """Whether a multi-frame answer is still arriving."""
        return bool(self._need)


class CanTransport:
    """A python-can bus; received frames are queued for the event loop."""

    def __init__(self, interface: str = "socketcan", channel: str = "can0", bitrate: int = 500_000) -> None:
        if "@" in channel:
            channel, _, rate = channel.rpartition("@")
            try:
                bitrate = int(rate)
            except ValueError:
                raise TransportError(f"can:{interface}:{channel}: bad bit rate {rate!r}") from None
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.description = f"can:{interface}:{channel}"
        self._bus: Any = None
        self._notifier: Any = None
        self.frames: asyncio.Queue[tuple[int, bytes, bool]] = asyncio.Queue()
        self._error: TransportError | None = None

    @property
    def is_open(self) -> bool:
        """Whether the bus is open."""
        return self._bus is not None

    @property
    def baud(self) -> int | None:
        """None: there is no serial rate between us and the bus."""
        return None

    async def open(self) -> None:
        """Open the bus and start receiving."""
        try:
            import can
        except ImportError as exc:
            raise TransportError("raw CAN needs python-can (pip install python-can)") from exc
        kwargs: dict[str, Any] = {"interface": self.interface, "channel": self.channel}
        if self.interface not in ("socketcan", "virtual"):
            kwargs["bitrate"] = self.bitrate
        if self.interface == "slcan":
            kwargs["sleep_after_open"] = 0
        loop = asyncio.get_running_loop()
        self.frames = asyncio.Queue()
        self._error = None
        try:
            self._bus = await loop.run_in_executor(None, lambda: can.Bus(**kwargs))
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise TransportError(f"{self.description}: cannot open: {exc}") from exc

        def on_message(msg: Any) -> None:
            if msg.is_error_frame or msg.is_remote_frame:
                return
            loop.call_soon_threadsafe(self.frames.put_nowait, (msg.arbitration_id, bytes(msg.data), msg.is_extended_id))

        def on_error(exc: Exception) -> None:
            self._error = TransportError(f"{self.description}: receive failed: {exc}")
            loop.call_soon_threadsafe(self.frames.put_nowait, (-1, b"", False))

        class Forward(can.Listener):  # python-can calls it from its receive thread
            def on_message_received(self, msg: can.Message) -> None:
                on_message(msg)

            def on_error(self, exc: Exception) -> None:
                on_error(exc)

        self._notifier = can.Notifier(self._bus, [Forward()], timeout=0.1)

    async def close(self) -> None:
        """Stop receiving and shut the bus down (idempotent)."""
        notifier, self._notifier = self._notifier, None
        bus, self._bus = self._bus, None
        if notifier is not None:
            with contextlib.suppress(Exception):
                notifier.stop()
        if bus is not None:
            with contextlib.suppress(Exception):
                bus.shutdown()

    def send(self, arb_id: int, data: bytes, extended: bool) -> None:
        """Send one frame."""
        if self._bus is None:
            raise TransportError(f"{self.description}: not open")
        import can

        try:
            self._bus.send(can.Message(arbitration_id=arb_id, data=data, is_extended_id=extended), timeout=0.2)
        except (can.CanError, OSError) as exc:
            raise TransportError(f"{self.description}: send failed: {exc}") from exc

    async def next_frame(self, wait_s: float) -> tuple[int, bytes, bool] | None:
        """The next received frame, or None when none arrives within ``wait_s``."""
        try:
            async with asyncio.timeout(max(0.0, wait_s)):
                frame = await self.frames.get()
        except TimeoutError:
            return None
        if frame[0] == -1 and self._error is not None:
            raise self._error
        return frame

    def discard_pending(self) -> int:
        """Drop frames received but not consumed."""
        n = 0
        while not self.frames.empty():
            self.frames.get_nowait()
            n += 1
        return n


@dataclass
class CanInfo:
    """What the CAN session learned (the ELM327 session's AdapterInfo, for raw CAN)."""

    protocol: str = ""
    version: str = ""
    pipelining: bool = False
    count_suffix: bool = False
    extended: bool = False
    multi_pid: dict[int, bool] = field(default_factory=dict)
    supported: dict[int, set[int]] = field(default_factory=dict)

    @property
    def protocol_name(self) -> str:
        """ELM327-style protocol name."""
        return PROTOCOL_NAMES.get(self.protocol, "")

    @property
    def is_can(self) -> bool:
        """Always CAN."""
        return True

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "protocol": self.protocol,
            "protocol_name": self.protocol_name,
            "multi_pid": {f"{k:X}": v for k, v in self.multi_pid.items()},
            "supported": {f"{k:X}": sorted(f"{p:02X}" for p in v) for k, v in self.supported.items()},
        }


class CanSession:
    """OBD-II over raw CAN; the poller's session for ``can:`` ports."""

    def __init__(self, transport: CanTransport, *, timeout_s: float = 5.0, wait_s: float = WAIT_S) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.wait_s = wait_s
        self.info = CanInfo()
        self.requests = 0
        self.errors: dict[str, int] = {}
        self._latency: deque[float] = deque(maxlen=64)
        self._lock = asyncio.Lock()

    @property
    def latency_ms(self) -> float:
        """Median request round trip, ms."""
        return statistics.median(self._latency) * 1000 if self._latency else 0.0

    async def request(
        self, payload: bytes, ecu: int | None = None, *, extended: bool | None = None, expect: int | None = None
    ) -> list[tuple[int, bytes]]:
        """Send one request (functional when ``ecu`` is None) and return the raw response frames.

        Physical requests end as soon as that ECU's answer is complete; functional ones when
        ``expect`` ECUs answered, or after the listening window.
        """
        ext = self.info.extended if extended is None else extended
        async with self._lock:
            self.transport.discard_pending()
            arb = (FUNCTIONAL_29 if ext else FUNCTIONAL_11) if ecu is None else request_id(ecu, ext)
            t0 = time.monotonic()
            self.transport.send(arb, single_frame(payload), ext)
            self.requests += 1
            collector = IsoTpCollector()
            deadline = t0 + self.wait_s
            while True:
                frame = await self.transport.next_frame(deadline - time.monotonic())
                if frame is None:
                    if collector.in_progress and time.monotonic() < t0 + self.timeout_s:
                        deadline = time.monotonic() + self.wait_s  # a multi-frame answer is still coming
                        continue
                    break
                arb_id, data, fext = frame
                if fext != ext or not is_response_id(arb_id, ext):
                    continue
                if ecu is not None and arb_id != ecu:
                    continue
                fc = collector.feed(arb_id, data)
                if fc is not None:
                    self.transport.send(request_id(arb_id, ext), fc, ext)
                    deadline = time.monotonic() + self.timeout_s
                if collector.complete and not collector.in_progress:
                    if ecu is not None or (expect is not None and len(set(collector.complete)) >= expect):
                        break
                    deadline = min(deadline, time.monotonic() + P2_S) if ecu is None else deadline
            if collector.frames:
                self._latency.append(time.monotonic() - t0)
            return collector.frames

    async def _readings(self, payload: bytes, ecu: int | None = None, expect: int | None = None) -> list[Any]:
        frames = await self.request(payload, ecu, expect=expect)
        if not frames:
            raise NoDataError("NO DATA: no ECU answered")
        readings: list[Any] = obd.parser.decode_can(frames)
        return readings

    async def initialize(self) -> CanInfo:
        """Find the bus's identifier length, then the supported PIDs per ECU."""
        self.info = CanInfo()
        await self.detect_protocol()
        await self.discover()
        for ecu, pids in self.info.supported.items():
            usable = sorted(p for p in pids if p % 0x20)[:3]
            ok = False
            if len(usable) >= 2:
                try:
                    got = await self.read_pids(ecu, usable)
                    ok = {r.pid for r in got} >= set(usable)
                except (AdapterError, ParseError):
                    ok = False
            self.info.multi_pid[ecu] = ok
        return self.info

    async def detect_protocol(self) -> str:
        """11-bit first (most cars), then 29-bit; raises ProtocolNotFound when nothing answers."""
        for ext, proto in ((False, "6"), (True, "7")):
            frames = await self.request(bytes([0x01, 0x00]), extended=ext)
            if frames:
                self.info.extended = ext
                self.info.protocol = proto
                log.info("raw CAN: %s", PROTOCOL_NAMES[proto])
                return proto
        raise ProtocolNotFound("no ECU answered on the CAN bus (11- or 29-bit): is the ignition on?")

    async def discover(self) -> dict[int, set[int]]:
        """Supported mode 01 PIDs per ECU (functional 0100, 0120 … while announced)."""
        supported: dict[int, set[int]] = {}
        base = 0x00
        while base <= 0xE0:
            frames = await self.request(bytes([0x01, base]))
            if not frames:
                break
            try:
                messages = obd.parser.decode_can(frames)
            except ParseError:
                break
            more = False
            for r in messages:
                if r.service == 0x01 and r.pid == base and isinstance(r.value, tuple):
                    pids = {int(p) for p in r.value}
                    supported.setdefault(r.ecu, set()).update(pids)
                    more = more or (base + 0x20) in pids
            if not more:
                break
            base += 0x20
        self.info.supported = supported
        return supported

    async def read_pids(self, ecu: int, pids: Sequence[int]) -> list[Any]:
        """Mode 01 ``pids`` from ``ecu`` (physical; six per request where the ECU takes multi-PID)."""
        multi = self.info.multi_pid.get(ecu, True)
        groups = [list(pids[i : i + 6]) for i in range(0, len(pids), 6)] if multi else [[p] for p in pids]
        out: list[Any] = []
        for g in groups:
            try:
                readings = await self._readings(bytes([0x01, *g]), ecu)
            except NoDataError:
                continue
            wanted = set(g)
            got = [r for r in readings if r.service == 0x01]
            if any(r.pid not in wanted for r in got):
                raise ParseError("answer carries PIDs that were not asked for")
            out += got
        if not out:
            raise NoDataError("NO DATA")
        return out

    async def pipeline_pids(self, ecu: int, batches: Sequence[Sequence[int]]) -> list[list[Any] | GatewayError]:
        """No pipelining on raw CAN: the batches one after the other."""
        out: list[list[Any] | GatewayError] = []
        for b in batches:
            try:
                out.append(await self.read_pids(ecu, b))
            except (AdapterError, ParseError) as exc:
                out.append(exc)
        return out

    async def query(self, service: int, data: Sequence[int] = (), ecu: int | None = None) -> list[Any]:
        """Any OBD request: functional unless ``ecu`` is given."""
        return await self._readings(bytes([service, *data]), ecu)

    async def read_voltage(self) -> float:
        """Raw CAN has no adapter voltage input."""
        raise UnsupportedCommand("battery voltage is not available on a raw CAN interface")

    async def read_vin(self) -> str:
        """Mode 09 PID 02 (multi-frame, with flow control)."""
        for r in await self.query(0x09, [0x02]):
            if r.service == 0x09 and isinstance(r.value, str) and len(r.value.strip()) >= 11:
                return r.value.strip()
        raise NoDataError("no VIN in the answer")

    async def read_dtcs(self) -> dict[str, Any]:
        """Stored, pending and permanent DTCs and the MIL."""
        out: dict[str, Any] = {"stored": [], "pending": [], "permanent": [], "mil": False}
        for key, service in (("stored", 0x03), ("pending", 0x07), ("permanent", 0x0A)):
            try:
                readings = await self.query(service)
            except NoDataError:
                continue
            codes: list[str] = []
            for r in readings:
                if isinstance(r.value, str):
                    codes.append(r.value)
                elif isinstance(r.value, tuple):
                    codes += [str(c) for c in r.value]
            out[key] = sorted(set(codes))
        with contextlib.suppress(NoDataError):
            for r in await self.query(0x01, [0x01]):
                if r.pid == 0x01 and r.name == "mil":
                    out["mil"] = out["mil"] or bool(r.value)  # lit when any ECU lights it
        return out

    async def clear_dtcs(self) -> None:
        """Service 04 (the caller checks that clearing is allowed)."""
        frames = await self.request(bytes([0x04]))
        if not frames:
            raise NoDataError("no ECU confirmed clearing the DTCs")

    async def low_power(self) -> bool:
        """No low-power mode on raw CAN."""
        return False

    async def resync(self) -> None:
        """Drop stale frames."""
        self.transport.discard_pending()


__all__ = ["CanInfo", "CanSession", "CanTransport", "IsoTpCollector"]
