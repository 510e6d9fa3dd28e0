"""OBD-II over raw CAN (ISO 15765-4), without an ELM327 in between: the session for ``can:`` ports.

Functional requests go to 7DF (11-bit) or 18DB33F1 (29-bit), physical ones to 7E0+n / 18DA{ecu}F1
(:mod:`gateway.obd.protocols`); protocol detection tries 11- then 29-bit; supported PIDs are discovered per
ECU; multi-PID requests use the same form keeper as the ELM327 session (six PIDs per request per ISO
15765-4, fewer when an ECU answers them wrongly). Frames are collected by the sans-I/O
:class:`~gateway.link.isotp.IsoTpCollector` (flow control for multi-frame answers) and decoded by the
parser's ``decode_can``. Every frame sent passes the transport's write guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence

from gateway import obd
from gateway.errors import AdapterError, NoDataError, ParseError, ProtocolNotFound
from gateway.link.base import LinkInfo, RequestForm, Session, pick_answer
from gateway.link.forms import FormKeeper, probe_order
from gateway.link.isotp import IsoTpCollector, IsoTpReceiver, single_frame
from gateway.obd.protocols import functional_id, is_response_id, protocol_name, request_id
from gateway.obd.types import Reading
from gateway.transport.can import CanTransport

log = logging.getLogger("gateway.can")

P2_S = 0.05  # ISO 15765-4 P2CAN: an ECU answers within 50 ms
P2_STAR_S = 5.0  # ISO 14229-2 P2*server: after "response pending" (7F sid 78) the answer may take 5 s
N_CR_S = 1.0  # ISO 15765-2 N_Cr: at most this between consecutive frames
WAIT_S = 0.1  # how long to listen for answers to a request (P2 plus margin)


class CanSession(Session):
    """OBD-II over raw CAN; the poller's session for ``can:`` ports."""

    transport: CanTransport

    def __init__(
        self,
        transport: CanTransport,
        *,
        timeout_s: float = 5.0,
        wait_s: float = WAIT_S,
        block_size: int = 0,
        stmin_ms: int = 0,
    ) -> None:
        super().__init__()
        #: our flow control for manufacturer-specific answers: frames per block (0 = all), gap between them
        self.block_size = block_size
        self.stmin_ms = stmin_ms
        #: multi-frame answers dropped because a consecutive frame was lost (never decoded)
        self.lost_frames = 0
        self.transport = transport
        self.timeout_s = timeout_s
        self.wait_s = wait_s
        self.info = LinkInfo(kind="can", identity=f"python-can {transport.interface}")
        self.forms = FormKeeper()
        self.extended = False
        self._latency: deque[float] = deque(maxlen=64)
        self._lock = asyncio.Lock()

    @property
    def latency_ms(self) -> float:
        """Median request round trip, ms."""
        return statistics.median(self._latency) * 1000 if self._latency else 0.0

    def clear_permit(self, still_wanted: Callable[[], bool]) -> contextlib.AbstractContextManager[None]:
        """The transport guard's one-shot permit for service 04."""
        return self.transport.guard.permit_clear(still_wanted)

    @property
    def bus_requests(self) -> int:
        """Request frames the write guard let onto the bus so far."""
        return int(self.transport.guard.requests)

    async def request(
        self, payload: bytes, ecu: int | None = None, *, extended: bool | None = None, expect: int | None = None
    ) -> list[tuple[int, bytes]]:
        """Send one request (functional when ``ecu`` is None) and return the raw response frames.

        Physical requests end as soon as that ECU's answer is complete; functional ones when
        ``expect`` ECUs answered, or after the listening window.
        """
        ext = self.extended if extended is None else extended
        async with self._lock:
            self.transport.discard_pending()
            arb = functional_id(ext) if ecu is None else request_id(ecu, ext)
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
                if fext != ext or not is_response_id(arb_id, ext) or (ecu is not None and arb_id != ecu):
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

    async def read_raw(self, header: int, response: int, extended: bool, request: bytes) -> bytes:
        """A physical request to ``header``; the answer from ``response``, reassembled with our own flow
        control (block size, STmin) up to 4095 bytes; response pending waits up to P2* (5 s)."""
        async with self._lock:
            self.transport.discard_pending()
            t0 = time.monotonic()
            self.transport.send(header, single_frame(request), extended)
            self.requests += 1
            rx = IsoTpReceiver(block_size=self.block_size, stmin_ms=self.stmin_ms)
            deadline = t0 + max(self.wait_s, P2_S * 2)
            while not rx.done:
                frame = await self.transport.next_frame(deadline - time.monotonic())
                if frame is None:
                    break
                arb_id, data, fext = frame
                if fext != extended or arb_id != response:
                    continue
                fc = rx.feed(data)
                if fc is not None:
                    self.transport.send(header, fc, extended)
                if rx.pending:
                    rx.pending = False
                    self._count("response_pending")
                    deadline = time.monotonic() + P2_STAR_S
                elif rx.in_progress:
                    deadline = time.monotonic() + N_CR_S
            if rx.lost or rx.in_progress:
                self.lost_frames += 1
                self._count("isotp_lost_frame")
                raise ParseError(f"multi-frame answer from {response:X} lost a frame: dropped")
            if rx.message is None:
                raise NoDataError(f"NO DATA: {response:X} did not answer")
            self._latency.append(time.monotonic() - t0)
        raw, _ = pick_answer([(response, rx.message)], request, response)
        if raw is None:
            raise ParseError(f"{response:X} answered something else: {rx.message[:8].hex()}")
        return raw

    async def _readings(self, payload: bytes, ecu: int | None = None) -> list[Reading]:
        frames = await self.request(payload, ecu)
        if not frames:
            raise NoDataError("NO DATA: no ECU answered")
        readings: list[Reading] = obd.parser.decode_can(frames)
        return readings

    async def initialize(self) -> LinkInfo:
        """Find the bus's identifier length, the supported PIDs per ECU, and each ECU's request form."""
        self.info = LinkInfo(kind="can", identity=f"python-can {self.transport.interface}")
        self.forms = FormKeeper()
        await self.detect_protocol()
        await self.discover()
        for ecu, pids in sorted(self.info.supported.items()):
            usable = sorted(p for p in pids if p % 0x20)
            ladder = probe_order(multi=len(usable) >= 2, count=False, usable=len(usable))
            kept = ladder[-1]
            for form in ladder:
                group = usable[: form.pids]
                try:
                    got = await self._read_group(ecu, group)
                except (AdapterError, ParseError):
                    continue
                if {r.pid for r in got} >= set(group):
                    kept = form
                    break
            self.forms.keep(ecu, ladder, kept)
            self.info.forms[ecu] = kept
            self.info.form_notes[ecu] = "probed"
        return self.info

    async def detect_protocol(self) -> str:
        """11-bit first (most cars), then 29-bit; raises ProtocolNotFound when nothing answers."""
        for ext, proto in ((False, "6"), (True, "7")):
            frames = await self.request(bytes([0x01, 0x00]), extended=ext)
            if frames:
                self.extended = ext
                self.info.protocol = proto
                log.info("raw CAN: %s", protocol_name(proto))
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

    async def _read_group(self, ecu: int, pids: Sequence[int]) -> list[Reading]:
        got = [r for r in await self._readings(bytes([0x01, *pids]), ecu) if r.service == 0x01]
        if any(r.pid not in pids for r in got):
            raise ParseError("answer carries PIDs that were not asked for")
        return got

    async def read_pids(self, ecu: int, pids: Sequence[int]) -> list[Reading]:
        """Mode 01 ``pids`` from ``ecu`` (physical), in the form kept for the ECU."""
        out: list[Reading] = []
        first_error: AdapterError | ParseError | None = None
        size = self.forms.current(ecu).pids if ecu in self.forms.ecus else 6
        for i in range(0, len(pids), size):
            form = self.forms.current(ecu)
            try:
                out += await self._read_group(ecu, pids[i : i + size])
            except NoDataError:
                continue
            except (AdapterError, ParseError) as exc:
                first_error = first_error or exc
                if form != RequestForm(1, False):
                    new = self.forms.failure(ecu, time.monotonic())
                    if new is not None:
                        self.info.forms[ecu] = new
                        log.warning("ECU %X: %s failed (%s); using %s", ecu, form.label(), exc, new.label())
                continue
            new = self.forms.success(ecu, time.monotonic())
            if new is not None:
                self.info.forms[ecu] = new
        if first_error is not None and not out:
            raise first_error
        if not out:
            raise NoDataError("NO DATA")
        return out

    async def query(self, service: int, data: Sequence[int] = (), ecu: int | None = None) -> list[Reading]:
        """Any OBD request: functional unless ``ecu`` is given."""
        return await self._readings(bytes([service, *data]), ecu)

    async def resync(self) -> None:
        """Drop stale frames."""
        self.transport.discard_pending()


__all__ = ["CanSession"]
