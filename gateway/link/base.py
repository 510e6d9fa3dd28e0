"""The contract between the poller and an adapter session (ELM327 or raw CAN).

::

    session = factory()                 # built by the composition root (gateway.daemon.session_factory)
    await session.open()                # the transport
    info = await session.initialize()   # reset, protocol, supported PIDs, request forms → LinkInfo
    readings = await session.read_pids(0x7E8, [0x0C, 0x0D])
    await session.close()

One exchange at a time; errors are the :mod:`gateway.errors` tree: ``NoDataError`` (no ECU answered),
``BusError``/``ProtocolNotFound`` (the bus), ``AdapterReset``/``Stopped``/``UnsupportedCommand``/
``OversizedAnswer`` (the adapter), ``ParseError`` (unreadable answer), ``TransportError``/``TransportTimeout``
(the link itself), ``DisallowedRequest`` (the write guard: a bug). :meth:`Session.read_vin`,
:meth:`Session.read_dtcs` and :meth:`Session.clear_dtcs` are written once, here, on top of :meth:`Session.query`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

from gateway.errors import GatewayError, NegativeResponse, NoDataError, UnsupportedCommand
from gateway.obd.protocols import CAN_PROTOCOLS, protocol_name
from gateway.obd.types import ObdMessage, Reading

#: ISO 14229-1 negative response code "requestCorrectlyReceived-ResponsePending": the answer follows later
RESPONSE_PENDING = 0x78
_PID_SERVICES = frozenset((0x01, 0x02, 0x05, 0x06, 0x08, 0x09))


def raw_message(m: ObdMessage) -> bytes:
    """An :class:`ObdMessage` as the bytes the ECU sent (response service byte first)."""
    if m.service == 0x7F:
        return b"\x7f" + m.payload
    if m.pid is not None and m.service in _PID_SERVICES:
        return bytes([m.service + 0x40, m.pid]) + m.payload
    return bytes([m.service + 0x40]) + m.payload


def pick_answer(messages: Sequence[tuple[int, bytes]], request: bytes, response: int) -> tuple[bytes | None, bool]:
    """Sans-I/O: the positive answer to ``request`` among ``messages`` ((source id or 0, bytes)), and
    whether the ECU said "response pending" (7F sid 78) without answering yet.

    ``NegativeResponse`` for any other ``7F sid nrc`` from that ECU."""
    pending = False
    for source, raw in messages:
        if source not in (0, response) or not raw:
            continue
        if raw[0] == request[0] + 0x40 and raw[1 : len(request)] == request[1:]:
            return raw, False
        if raw[0] == 0x7F and len(raw) >= 3 and raw[1] == request[0]:
            if raw[2] == RESPONSE_PENDING:
                pending = True
                continue
            raise NegativeResponse(raw[1], raw[2])
    return None, pending


@dataclass(frozen=True, slots=True, order=True)
class RequestForm:
    """How mode 01 PIDs are asked of one ECU: PIDs per request, and whether the count digit is appended.

    Ordered by speed: more PIDs per request first, then the count digit (which spares the ELM327 its wait
    for the ST time-out)."""

    pids: int = 1
    count: bool = False

    def label(self) -> str:
        """``6 PIDs + count digit``."""
        return f"{self.pids} PID{'s' if self.pids > 1 else ''}" + (" + count digit" if self.count else "")


class DtcReport(TypedDict):
    """What :meth:`Session.read_dtcs` returns (and the diagnostic socket's ``dtc`` answer)."""

    stored: list[str]
    pending: list[str]
    permanent: list[str]
    mil: bool


@dataclass
class LinkInfo:
    """What a session learned about the adapter and the car (``status()`` shows it)."""

    kind: Literal["elm327", "can"] = "elm327"
    #: ELM327 protocol number (1-C), '' before detection
    protocol: str = ""
    protocol_auto: bool = False
    #: the adapter's identity line (``ELM327 v1.5``, ``STN1110 v4.2.1``, ``python-can slcan``)
    identity: str = ""
    #: ELM327 version (``1.5``); '' when unknown or not an ELM327
    version: str = ""
    #: STN chip identity (OBDLink) when the adapter answered STI
    stn: str = ""
    #: serial baud rate in use (None off serial)
    baud: int | None = None
    #: ECU → supported mode 01 PIDs
    supported: dict[int, set[int]] = field(default_factory=dict)
    #: ECU → the request form in use (probed, demoted at run time when it fails)
    forms: dict[int, RequestForm] = field(default_factory=dict)
    #: ECU → why that form (what the probe or the last demotion found)
    form_notes: dict[int, str] = field(default_factory=dict)
    #: the ELM327's ST time-out set from measured latency, ms (0 = the chip's default)
    st_ms: float = 0.0
    echo: bool = False
    spaces: bool = False

    @property
    def protocol_name(self) -> str:
        """The protocol's name (``ISO 15765-4 CAN (11 bit, 500 kbaud)``), '' before detection."""
        return protocol_name(self.protocol)

    @property
    def is_can(self) -> bool:
        """Whether the detected protocol is a CAN one."""
        return self.protocol in CAN_PROTOCOLS

    def max_pids(self, ecu: int) -> int:
        """PIDs per request for ``ecu`` in its current form (1 before probing)."""
        form = self.forms.get(ecu)
        return form.pids if form is not None else 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "kind": self.kind,
            "elm_version": self.version,
            "identity": self.identity,
            "stn": self.stn,
            "protocol": self.protocol,
            "protocol_name": self.protocol_name,
            "baud": self.baud,
            "forms": {f"{k:X}": v.label() for k, v in sorted(self.forms.items())},
            "form_notes": {f"{k:X}": v for k, v in sorted(self.form_notes.items())},
            "supported": {f"{k:X}": sorted(f"{p:02X}" for p in v) for k, v in sorted(self.supported.items())},
        }


@dataclass(frozen=True, slots=True)
class Polled:
    """One request of a burst (:meth:`Session.read_pids_burst`): what :meth:`Session.read_pids` would
    have returned for it (``readings``) or raised (``error``), and when it was written and answered
    (``time.monotonic()``)."""

    pids: tuple[int, ...]
    readings: list[Reading]
    error: GatewayError | None
    sent: float
    done: float


class Link(Protocol):
    """What a session needs of its transport to open and close it (byte streams and CAN buses alike)."""

    description: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...


class Session(abc.ABC):
    """One adapter session over one transport. Not re-entrant: one exchange at a time."""

    #: the transport the session owns (a byte stream for the ELM327, a CAN bus for raw CAN)
    transport: Link

    def __init__(self) -> None:
        self.info = LinkInfo()
        #: OBD requests sent so far (for requests/s)
        self.requests = 0
        #: error kind → count, as met by the session itself
        self.errors: dict[str, int] = {}

    # -- the link --------------------------------------------------------------------------------
    @property
    def heard(self) -> bool:
        """Whether any byte ever came back from the adapter (silence: nothing is there)."""
        return True

    @property
    def description(self) -> str:
        """The port, for logs and errors (``serial:/dev/ttyUSB0@38400``, ``can:socketcan:can0``)."""
        return self.transport.description

    async def open(self) -> None:
        """Open the transport (TransportError when it cannot be)."""
        await self.transport.open()

    async def close(self) -> None:
        """Close the transport; idempotent, never raises (a dying port must not hide why it died)."""
        with contextlib.suppress(Exception):
            await self.transport.close()

    @abc.abstractmethod
    async def initialize(self) -> LinkInfo:
        """Reset and set the adapter up, detect the protocol, discover PIDs, probe the request forms."""

    async def resume(self) -> LinkInfo:
        """Look for the car again on an adapter already set up (after ProtocolNotFound)."""
        return await self.initialize()

    @abc.abstractmethod
    async def detect_protocol(self) -> str:
        """Select (or search for) the bus protocol again; its number. ``ProtocolNotFound`` when no ECU
        answers (ignition off, wrong bus)."""

    @abc.abstractmethod
    async def resync(self) -> None:
        """Get back to a clean state after garbage or a time-out."""

    async def tune_timeout(self) -> float | None:
        """Adapt the adapter's answer time-out to the measured latency; the new value in ms, or None."""
        return None

    async def low_power(self) -> bool:
        """Put the adapter to sleep where it can; whether it did."""
        return False

    async def prepare(self) -> None:
        """Set the adapter up without a single request on the car's bus (ELM327: reset, format, identity);
        :meth:`resume` then finds the car. A no-op where setting up cannot be split from finding the car
        (raw CAN: :meth:`resume` initialises)."""
        return

    @property
    def remembered_protocol(self) -> str:
        """The protocol that worked last time ('' when none is remembered)."""
        return ""

    @property
    def bus_requests(self) -> int:
        """Requests the write guard let onto the car's bus so far (adapter commands not counted)."""
        return 0

    @property
    @abc.abstractmethod
    def latency_ms(self) -> float:
        """The median measured request round trip in ms (0 before any)."""

    @abc.abstractmethod
    def clear_permit(self, still_wanted: Callable[[], bool]) -> contextlib.AbstractContextManager[None]:
        """The write guard's one-shot permit for service 04 (see :mod:`gateway.obd.guard`)."""

    # -- requests --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def read_pids(self, ecu: int, pids: Sequence[int]) -> list[Reading]:
        """Mode 01 ``pids`` from ``ecu`` in the request form kept for it; readings of the PIDs that
        answered. ``NoDataError`` when none did."""

    async def read_pids_burst(self, ecu: int, requests: Sequence[Sequence[int]]) -> list[Polled] | None:
        """Several :meth:`read_pids` requests back to back, each of at most :meth:`LinkInfo.max_pids` PIDs,
        the event loop not woken between them where the link can (the ELM327 link pump, issue 19).

        One :class:`Polled` per request that was written, in order (fewer than asked when the burst ended
        early: an error answer, a time-out, :meth:`interrupt`); None when no burst can run now (nothing
        was written: the caller reads one request with :meth:`read_pids`). The default: never."""
        return None

    def interrupt(self) -> None:
        """Ask a burst in progress to stop before its next request (a caller's request is waiting)."""
        return

    @abc.abstractmethod
    async def query(self, service: int, data: Sequence[int] = (), ecu: int | None = None) -> list[Reading]:
        """One OBD request, functional unless ``ecu`` is given; readings from every ECU that answered.
        ``NoDataError`` when none did."""

    async def read_raw(self, header: int, response: int, extended: bool, request: bytes) -> bytes:
        """One physical request (service 01, 21 or 22) to the ECU at ``header``, answered from ``response``:
        the whole positive response message (``62 01 01 …``, up to 4095 bytes).

        ``NegativeResponse`` for ``7F sid nrc`` (response pending, 0x78, is waited for), ``NoDataError``
        when nothing answered; a frame lost from a multi-frame answer is a ``ParseError`` (never a value)."""
        raise UnsupportedCommand("this session cannot address an ECU by its own identifiers")

    async def read_voltage(self) -> float:
        """Battery voltage at the OBD port; ``UnsupportedCommand`` where the adapter cannot read it."""
        raise UnsupportedCommand("this adapter cannot read the battery voltage")

    async def read_vin(self) -> str:
        """The VIN (mode 09 PID 02), never cached."""
        for r in await self.query(0x09, [0x02]):
            if r.service == 0x09 and isinstance(r.value, str) and len(r.value.strip()) >= 11:
                return r.value.strip()
        raise NoDataError("no VIN in the answer")

    async def read_dtcs(self) -> DtcReport:
        """Stored (03), pending (07) and permanent (0A) DTCs and the MIL (0101, lit when any ECU lights it).

        ``NoDataError`` when no ECU answered any of them: the ECU is off, which is not "no codes"."""
        out = DtcReport(stored=[], pending=[], permanent=[], mil=False)
        answered = False
        for key, service in (("stored", 0x03), ("pending", 0x07), ("permanent", 0x0A)):
            try:
                readings = await self.query(service)
            except (NoDataError, UnsupportedCommand):
                continue
            answered = True
            codes: list[str] = []
            for r in readings:
                if isinstance(r.value, str):
                    codes.append(r.value)
                elif isinstance(r.value, tuple):
                    codes += [str(c) for c in r.value]
            out[key] = sorted(set(codes))  # type: ignore[literal-required]
        try:
            for r in await self.query(0x01, [0x01]):
                if r.pid == 0x01 and r.name == "mil":
                    answered = True
                    out["mil"] = out["mil"] or bool(r.value)
        except NoDataError:
            pass
        if not answered:
            raise NoDataError("no ECU answered the DTC requests (is the ignition on?)")
        return out

    async def clear_dtcs(self, still_wanted: Callable[[], bool]) -> None:
        """Service 04: clear DTCs and the MIL. Written only while ``still_wanted()`` holds (the confirmed
        caller still waits); ``NoDataError`` when no ECU confirmed."""
        with self.clear_permit(still_wanted):
            await self.query(0x04)

    def _count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1
