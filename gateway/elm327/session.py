"""The ELM327 session: owns one transport, speaks the adapter's command language.

Responsibilities, in the order :meth:`Elm327Session.initialize` runs them:

* **reset** that copes with clones: ATZ with a time-out, ATWS when ATZ hangs, a plain ATI probe as
  the last resort; echo is switched off and any echo still seen is stripped (some clones ignore ATE0);
* **format**: linefeeds and spaces off (``?`` from a clone that lacks a command is tolerated);
* **capabilities**: ELM version (ATI), STN chip (STI), adaptive timing;
* **protocol**: the configured one, else automatic search starting from the protocol remembered in
  the state file (ATSPA<p>), read back with ATDPN and remembered again (:mod:`gateway.elm327.memory`);
* **discovery**: supported mode 01 PIDs per ECU (0100, 0120 … with headers on);
* **request forms**: per ECU, the exact forms it will use (6/4/3/2/1 PIDs, with and without the count
  digit) are probed fastest first and the first that answers correctly is kept; at run time a failing form
  is demoted and later retried (:mod:`gateway.link.forms`);
* a higher baud rate: ATBRD's handshake, or STSBR on STN chips (serial only); ATST from measured latency.

Never more than one line in flight: a genuine ELM327 answers STOPPED to input that arrives while it works,
and runs what is left of the line, so pipelined writes could reach the car as another service. The
transport's write guard enforces this and the read-only rule (:mod:`gateway.obd.guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway import obd
from gateway.elm327 import bringup
from gateway.elm327 import commands as cmd
from gateway.elm327.lines import ElmLine, Exchanged
from gateway.elm327.memory import ProtocolMemory
from gateway.elm327.responses import (
    Answer,
    Kind,
    classify,
    parse_protocol_number,
    parse_version,
    parse_voltage,
    raise_for,
)
from gateway.errors import (
    AdapterError,
    AdapterReset,
    BusError,
    GatewayError,
    NoDataError,
    ParseError,
    ProtocolNotFound,
    TransportError,
    TransportTimeout,
    UnsupportedCommand,
)
from gateway.link.base import LinkInfo, Polled, RequestForm, Session, pick_answer, raw_message
from gateway.link.forms import FormKeeper, probe_order
from gateway.obd.protocols import PROTOCOL_NAMES, functional_id, is_extended, request_id
from gateway.obd.types import ObdMessage, Reading
from gateway.transport.base import Transport

log = logging.getLogger("gateway.elm327")

INIT_ATTEMPTS = 4
# the ST time-out (204.8 ms) bounds an answer's wait; a search in progress extends it (see ElmLine.read_prompt)
REQUEST_TIMEOUT_S = 0.6
MODE01_LINES_KEPT = 64  # request lines remembered for bursts (the PID sets of one plan)
BRT_WINDOW = 0x28  # ATBRT 28: 200 ms to confirm a new baud rate (default 75 ms)


class Elm327Session(Session):
    """One ELM327-family adapter over one transport. Not re-entrant: one exchange at a time."""

    transport: Transport

    def __init__(
        self,
        transport: Transport,
        *,
        protocol: str = "auto",
        timeout_s: float = 5.0,
        state_path: Path | None = None,
        baud: int = 38400,
        fast_baud: int = 0,
        multi_pid: bool = True,
    ) -> None:
        super().__init__()
        self.transport = transport
        self.protocol_setting = protocol.upper()
        self.timeout_s = timeout_s
        self.memory = ProtocolMemory(state_path)
        self.default_baud = baud
        self.fast_baud = fast_baud
        self.allow_multi_pid = multi_pid
        self.line = ElmLine(transport, timeout_s=timeout_s, errors=self.errors)
        self.forms = FormKeeper()
        self.headers = False
        self._header: int | None = None  # the request header set with ATSH, None = adapter default
        self._cra: int | None = None  # the receive filter set with ATCRA, None = the chip's default
        self._fc_header: int | None = None  # ATFCSH in use (ATFCSM1), None = the chip's own flow control
        self._fc_stmin = 0  # STmin of our flow control frame (ms), raised after BUFFER FULL
        self._fc_sent_stmin = -1
        #: ATSH/ATCRA/ATFCSx commands sent to switch between ECUs (``status`` shows it)
        self.switch_commands = 0
        #: BUFFER FULL answers to long reads, and reads that still overflowed with the slowest flow control
        self.buffer_full = 0
        # An OBD answer never takes longer than the ST time-out plus its bytes; a lost prompt
        # (truncated output) must not stall polling for the whole adapter time-out.
        self.request_timeout_s = min(timeout_s, REQUEST_TIMEOUT_S)
        self._search_from = ""
        self._lines: dict[tuple[tuple[int, ...], bool], bytes] = {}  # mode 01 request lines built (bounded)

    # -- the link ---------------------------------------------------------------------------------
    @property
    def heard(self) -> bool:
        """Whether any byte ever came back from the adapter (an ELM327 echoes ATZ at once)."""
        return self.line.heard

    @property
    def latency_ms(self) -> float:
        """The median measured round trip, ms (0 before any)."""
        return self.line.latency_ms

    def clear_permit(self, still_wanted: Callable[[], bool]) -> contextlib.AbstractContextManager[None]:
        """The transport guard's one-shot permit for service 04."""
        return self.transport.guard.permit_clear(still_wanted)

    async def exchange(self, line: bytes, wait_s: float | None = None) -> Answer:
        """One command line and its classified answer (error kinds are returned, not raised)."""
        return await self.line.exchange(line, wait_s)

    async def at(self, line: bytes, wait_s: float | None = None, *, required: bool = False) -> Answer:
        """An AT/ST command (see :meth:`ElmLine.at`)."""
        return await self.line.at(line, wait_s, required=required)

    async def resync(self) -> None:
        """Get back to a clean prompt after garbage or a time-out."""
        await self.line.resync()

    # -- initialisation ---------------------------------------------------------------------------
    async def initialize(self) -> LinkInfo:
        """Reset and set the adapter up; detect the protocol; probe what the adapter and car support."""
        for attempt in range(1, INIT_ATTEMPTS + 1):
            self.info = LinkInfo(kind="elm327", baud=self.transport.baud)
            self.forms = FormKeeper()
            self._header = None
            self._cra = None
            self._fc_header = None
            self.headers = False
            try:
                await self._reset()
                await self._setup_format()
                await self._probe_identity()
                await self._find_car()
                break
            except ProtocolNotFound:
                raise
            except (AdapterError, ParseError, TransportTimeout) as exc:
                # a fault on the line mid-initialisation (reset, noise, lost prompt): start over
                if attempt == INIT_ATTEMPTS:
                    raise
                log.info("initialisation attempt %d failed (%s); starting over", attempt, exc)
                await self.transport.drain_input(0.05, 0.5)
        await self._go_fast()
        return self.info

    async def prepare(self) -> None:
        """Reset and set the adapter up without a request on the car's bus; :meth:`resume` finds the car.

        A restart in a parked car must not search for the protocol (seconds of requests that wake the
        car's modules): the poller reads the voltage first and resumes only when the engine runs."""
        for attempt in range(1, INIT_ATTEMPTS + 1):
            self.info = LinkInfo(kind="elm327", baud=self.transport.baud)
            self.forms = FormKeeper()
            self._header = None
            self.headers = False
            try:
                await self._reset()
                await self._setup_format()
                await self._probe_identity()
                return
            except (AdapterError, ParseError, TransportTimeout) as exc:
                if attempt == INIT_ATTEMPTS:
                    raise
                log.info("initialisation attempt %d failed (%s); starting over", attempt, exc)
                await self.transport.drain_input(0.05, 0.5)

    @property
    def remembered_protocol(self) -> str:
        """The protocol remembered in the state file ('' when none)."""
        return self.memory.protocol

    @property
    def bus_requests(self) -> int:
        """OBD request lines the write guard let through (each one goes on the car's bus)."""
        return int(self.transport.guard.requests)

    async def resume(self) -> LinkInfo:
        """Look for the car again without resetting the adapter (after ProtocolNotFound: the
        ignition was off). A faulty line is retried; a reset adapter needs :meth:`initialize`."""
        for attempt in range(1, INIT_ATTEMPTS + 1):
            try:
                await self._find_car()
                break
            except (ProtocolNotFound, AdapterReset):
                raise
            except (AdapterError, ParseError, TransportTimeout) as exc:
                if attempt == INIT_ATTEMPTS:
                    raise
                log.info("looking for the car failed (%s); again", exc)
                await self.transport.drain_input(0.05, 0.5)
        await self._go_fast()
        return self.info

    async def _find_car(self) -> None:
        await self.detect_protocol()
        await self.discover()
        await self._probe_forms()

    async def _go_fast(self) -> None:
        if self.fast_baud and self.transport.baud is not None and self.fast_baud != self.transport.baud:
            await self.switch_baud(self.fast_baud)

    async def _reset(self) -> None:
        if self.transport.baud is not None and self.transport.baud != self.default_baud:
            # after a reset the chip is back at its default rate
            await self.transport.set_baud(self.default_baud)
            self.info.baud = self.default_baud
        await self.transport.drain_input(0.05, 0.3)
        banner = await self._first_answer()
        if banner is None and self.fast_baud and self.transport.baud != self.fast_baud:
            # the adapter may still run at the fast rate we switched it to before a restart
            await self.transport.set_baud(self.fast_baud)
            try:
                banner = await self.exchange(cmd.reset(), 2.5)
            except TransportTimeout:
                await self.transport.set_baud(self.default_baud)
            if banner is not None and banner.kind is not Kind.UNKNOWN_COMMAND:
                await self.transport.drain_input(0.3, 1.0)
                await self.transport.set_baud(self.default_baud)
        if banner is None:
            raise TransportTimeout("the adapter answers neither ATZ, ATWS nor ATI")
        await self.transport.drain_input(0.05, 0.3)
        self.info.identity = banner.text
        self.info.version = parse_version(banner.text)

    async def _first_answer(self) -> Answer | None:
        for line, wait_s in bringup.RESET_FORMS:
            try:
                answer = await self.exchange(line, wait_s)
            except TransportTimeout:
                log.info("adapter did not answer %s; trying the next reset form", line.decode().strip())
                await self.transport.drain_input(0.1, 1.0)
                continue
            if answer.kind is not Kind.UNKNOWN_COMMAND:
                return answer
        return None

    async def _setup_format(self) -> None:
        try:
            answer = await self.at(cmd.echo(False))
            self.info.echo = answer.kind is not Kind.OK
        except TransportTimeout:
            # some clones print no prompt after ATE0; the ATI below gets the prompt back
            await self.transport.drain_input(0.05, 0.3)
        # probe: some clones say OK to ATE0 and keep echoing; classify strips echo either way
        probe = await self.exchange(cmd.identify())
        self.info.echo = probe.echo
        await self.at(cmd.linefeeds(False))
        answer = await self.at(cmd.spaces(False))
        self.info.spaces = answer.kind is not Kind.OK
        await self.at(cmd.headers(False))
        self.headers = False
        await self.at(cmd.adaptive_timing(1))
        if not self.info.version:
            self.info.identity = probe.text
            self.info.version = parse_version(probe.text)

    async def _probe_identity(self) -> None:
        answer = await self.at(cmd.stn_identify())
        if answer.kind is Kind.TEXT and "STN" in answer.text.upper():
            self.info.stn = answer.text

    async def detect_protocol(self) -> str:
        """Select the protocol: the configured one, else search (starting from the remembered one)."""
        self._header = None
        if self._cra is not None:
            await self.at(cmd.can_receive_address(None))  # a filter left on would hide the search's answers
            self._cra = None
        remembered = self.memory.protocol
        line = bringup.protocol_command(self.protocol_setting, remembered)
        await self.at(line, required=self.protocol_setting not in ("", "AUTO", "0"))
        self._search_from = remembered
        # the first request makes the chip search; SEARCHING... can take several seconds
        answer = await self.exchange(cmd.obd(0x01, [0x00]), max(self.timeout_s, 15.0))
        if answer.kind in (Kind.NO_DATA, Kind.BUS_ERROR):
            raise ProtocolNotFound(f"no ECU answered ({answer.error or answer.text}): is the ignition on?")
        raise_for(answer)
        dpn = await self.at(cmd.describe_protocol_number())
        parsed = parse_protocol_number(dpn.text)
        if parsed is None:
            raise AdapterError(f"unreadable ATDPN answer {dpn.text!r}")
        self.info.protocol, self.info.protocol_auto = parsed
        if self.info.protocol in PROTOCOL_NAMES:
            self.memory.remember(protocol=self.info.protocol)
            if self.info.protocol_auto and self._search_from != self.info.protocol:
                # a later search (the chip may lose the bus) then starts with the protocol that works
                await self.at(cmd.set_protocol(self.info.protocol, auto_fallback=True))
                self._search_from = self.info.protocol
        log.info("protocol %s (%s)", self.info.protocol, self.info.protocol_name)
        return self.info.protocol

    async def set_headers(self, on: bool) -> None:
        """ATH1 / ATH0, skipped when already so."""
        if self.headers != on:
            answer = await self.at(cmd.headers(on))
            if answer.kind is Kind.OK:
                self.headers = on

    async def discover(self) -> dict[int, set[int]]:
        """Supported mode 01 PIDs per ECU, following the 00/20/40… chain while the bitmask says so."""
        await self.set_headers(True)
        await self._select_ecu(None)
        supported: dict[int, set[int]] = {}
        base = 0x00
        pending = True
        while base <= 0xE0 and pending:
            try:
                messages = await self._request_messages([0x01, base])
            except NoDataError:
                break
            found, more = bringup.supported_from(messages, base)
            for ecu, pids in found.items():
                supported.setdefault(ecu, set()).update(pids)
            pending = bool(more)
            base += 0x20
        self.info.supported = supported
        await self.set_headers(False)
        return supported

    async def _request_messages(self, data: Sequence[int]) -> list[ObdMessage]:
        """One OBD request with headers on, parsed to messages (ecu, service, pid, payload)."""
        answer = await self.exchange(cmd.obd(data[0], data[1:]), self.request_timeout_s)
        raise_for(answer)
        if answer.noise:
            raise ParseError(f"noise in the answer: {answer.noise[0][:20]!r}")
        self.requests += 1
        return self._parse(answer, headers=True)

    async def _probe_forms(self) -> None:
        """Per ECU, the fastest request form that answers correctly, probed in the exact form used."""
        for ecu in sorted(self.info.supported):
            usable = bringup.probe_pids(self.info.supported[ecu])
            multi = self.allow_multi_pid and self.info.is_can and len(usable) >= 2
            ladder = probe_order(multi=multi, count=True, usable=len(usable))
            kept: RequestForm | None = None
            notes: list[str] = []
            silent = 0
            for form in ladder if usable else []:
                outcome = await self._probe_form(ecu, usable[: form.pids], form)
                if outcome is None:
                    kept = form
                    break
                notes.append(f"{form.label()}: {outcome}")
                silent = silent + 1 if outcome == "NO DATA" else 0
                if silent >= 3:
                    break  # the ECU stopped answering: no point in trying slower forms now
            if kept is None:
                kept = ladder[-1] if ladder else RequestForm(1, False)
                why = "no form answered the probe; the slowest is used"
            else:
                why = "first probe answered" if not notes else f"kept after {'; '.join(notes[-4:])}"
            self.forms.keep(ecu, ladder or [kept], kept)
            self.info.forms[ecu] = kept
            self.info.form_notes[ecu] = why
            log.info("ECU %X: request form %s (%s)", ecu, kept.label(), why)

    async def _probe_form(self, ecu: int, pids: list[int], form: RequestForm) -> str | None:
        """None when one request in ``form`` brought every PID back from ``ecu``, else what went wrong."""
        try:
            readings = await self._read_group(ecu, pids, form)
        except AdapterReset:
            raise
        except NoDataError:
            return "NO DATA"
        except (UnsupportedCommand, BusError) as exc:
            return str(exc)[:60] or type(exc).__name__  # the chip answered and waits at its prompt
        except (AdapterError, ParseError, TransportTimeout) as exc:
            with contextlib.suppress(TransportTimeout):
                await self.resync()  # garbage, STOPPED or a lost prompt: get a clean prompt first
            return str(exc)[:60] or type(exc).__name__
        missing = set(pids) - {r.pid for r in readings}
        return f"PIDs {','.join(f'{p:02X}' for p in sorted(missing))} missing" if missing else None

    async def switch_baud(self, baud: int) -> bool:
        """A faster serial rate: STSBR on STN chips, else ATBRD's handshake. Whether it is in use."""
        if self.info.stn:
            return await self._switch_stsbr(baud)
        return await self._switch_atbrd(baud)

    async def _switch_atbrd(self, baud: int) -> bool:
        """The chip says OK, switches, sends its ID at the new rate and waits for a CR from us; without
        the CR it falls back (ELM327 datasheet, "Changing the baud rate")."""
        try:
            line = cmd.baud_rate_divisor(baud)
        except ValueError as exc:
            log.warning("%s", exc)
            return False
        old = self.transport.baud or self.default_baud
        # a longer handshake window (ATBRT, ×5 ms) so that a busy host still answers in time
        await self.at(cmd.at(f"BRT{BRT_WINDOW:02X}"))
        async with self.line.lock:
            if not await self._baud_command(line, "ATBRD"):
                return False
            await self.transport.set_baud(baud)
            try:
                ident = await self.transport.read_until(b"\r", 1.0)
            except TransportTimeout:
                ident = b""
            if bringup.is_identity(ident) or b"V" in ident.upper():
                await self.transport.write(b"\r")
                try:
                    await self.transport.read_until(cmd.PROMPT, 1.0)
                    self.info.baud = baud
                    log.info("switched to %d baud", baud)
                    return True
                except TransportTimeout:
                    pass
            return await self._revert_baud(old, "ATBRD handshake failed")

    async def _switch_stsbr(self, baud: int) -> bool:
        """STN chips: STSBR answers OK at the old rate and switches (STN11xx family reference manual,
        "STSBR"); an ATI at the new rate confirms, else we go back to the old one."""
        old = self.transport.baud or self.default_baud
        line = f"STSBR{baud}\r".encode("ascii")
        async with self.line.lock:
            if not await self._baud_command(line, "STSBR"):
                return False
            await self.transport.set_baud(baud)
            await self.transport.drain_input(0.05, 0.3)
        try:
            probe = await self.exchange(cmd.identify(), 1.0)
            if probe.kind is Kind.TEXT and bringup.is_identity(probe.text.encode()):
                self.info.baud = baud
                log.info("switched to %d baud (STSBR)", baud)
                return True
        except TransportTimeout:
            pass
        return await self._revert_baud(old, "STSBR switch not confirmed")

    async def _baud_command(self, line: bytes, name: str) -> bool:
        """Write a baud-rate command (the caller holds the line lock) and read the chip's OK at the old
        rate; a refusal is read to its prompt and logged. Whether the chip accepted."""
        self.transport.discard_pending()
        await self.transport.write(line)
        answer = await self._read_ok(line)
        if answer.kind is Kind.OK:
            return True
        with contextlib.suppress(TransportTimeout):
            await self.transport.read_until(cmd.PROMPT, 1.0)
        log.info("%s refused (%s)", name, answer.text)
        return False

    async def _revert_baud(self, old: int, what: str) -> bool:
        """Back to the old rate after a switch the chip did not confirm; always False."""
        await self.transport.set_baud(old)
        await self.transport.drain_input(0.2, 1.0)
        log.info("%s; staying at %d baud", what, old)
        return False

    async def _read_ok(self, line: bytes) -> Answer:
        """The chip's OK to a baud-rate command (the echo, if any, may come first)."""
        try:
            first = await self.transport.read_until(b"\r", 1.0)
        except TransportTimeout:
            await self.transport.drain_input(0.1, 0.5)
            return classify(b"", line)
        answer = classify(first, line)
        if answer.kind is Kind.EMPTY or (answer.kind is Kind.TEXT and not answer.text):
            with contextlib.suppress(TransportTimeout):
                first = await self.transport.read_until(b"\r", 1.0)
            answer = classify(first, line)
        return answer

    # -- requests ---------------------------------------------------------------------------------
    async def _select_ecu(self, ecu: int | None) -> None:
        """Address requests to one ECU (ATSH to its request id) or back to functional (None)."""
        if not self.info.is_can:
            return
        extended = is_extended(self.info.protocol)
        header = functional_id(extended) if ecu is None else request_id(ecu, extended)
        await self._address(header, None, None, extended)

    async def _address(self, header: int, cra: int | None, fc_header: int | None, extended: bool) -> None:
        """Only the AT commands that change something: ATSH, ATCRA (receive filter), and the flow-control
        header (ATFCSH + ATFCSD + ATFCSM1) for ECUs whose request id is not their answer's id − 8 (the chip's
        own flow control goes there: ELM327 datasheet, "CAN flow control" / ATFCSM)."""
        if header != self._header:
            await self.at(cmd.set_header(header, extended=extended), required=True)
            self._header = header
            self.switch_commands += 1
        if cra != self._cra:
            await self.at(cmd.can_receive_address(cra, extended=extended), required=True)
            self._cra = cra
            self.switch_commands += 1
        if fc_header is None:
            if self._fc_header is not None:
                await self.at(cmd.at("FCSM0"), required=True)
                self.switch_commands += 1
                self._fc_header = None
            return
        if fc_header != self._fc_header or self._fc_sent_stmin != self._fc_stmin:
            await self.at(cmd.flow_control_header(fc_header, extended=extended), required=True)
            await self.at(cmd.flow_control_data(self._fc_stmin), required=True)
            self.switch_commands += 2
            if self._fc_header is None:
                await self.at(cmd.at("FCSM1"), required=True)
                self.switch_commands += 1
            self._fc_header = fc_header
            self._fc_sent_stmin = self._fc_stmin

    async def read_raw(self, header: int, response: int, extended: bool, request: bytes) -> bytes:
        """A physical 01/21/22 request to ``header``, answers only from ``response`` (ATCRA); headers stay
        off (CAN auto-formatting reassembles the ISO-TP answer: ``03E`` then ``0:`` … ``F:`` ``0:`` lines).

        BUFFER FULL (the chip's 512-byte buffer overran: the serial link is slower than the ECU's frames)
        → the flow-control frame we make the chip send asks for a separation time (STmin 10 ms, then
        30 ms), and the request is sent again; still overflowing, it is a ``BusError``. Response pending
        (7F sid 78) with no answer yet: asked again, up to 3 times."""
        if not self.info.is_can:
            raise UnsupportedCommand("manufacturer-specific reads need a CAN protocol")
        standard = (header + 8 == response) if not extended else (
            (header & 0xFF) == ((response >> 8) & 0xFF) and ((header >> 8) & 0xFF) == (response & 0xFF))
        pending_rounds = 0
        while True:
            fc = None if standard and not self._fc_stmin else header
            await self._address(header, response, fc, extended)
            answer = await self.exchange(cmd.obd(request[0], request[1:]), self.request_timeout_s)
            self.requests += 1
            if answer.kind is Kind.BUS_ERROR and "BUFFER" in answer.error.upper():
                self.buffer_full += 1
                self.line.count("buffer_full")
                if self._fc_stmin >= 30:
                    raise BusError("BUFFER FULL with 30 ms between frames: raise the serial rate (adapter.fast_baud)")
                self._fc_stmin = 10 if not self._fc_stmin else 30
                log.warning("BUFFER FULL on a long answer: asking the ECU for %d ms between frames", self._fc_stmin)
                continue
            raise_for(answer)
            if answer.noise:
                self.line.count("noise")
                raise ParseError(f"noise in the answer: {answer.noise[0][:20]!r}")
            messages = [(m.ecu, raw_message(m)) for m in self._parse(answer, self.headers)]
            raw, pending = pick_answer(messages, request, response)
            if raw is not None:
                return raw
            if pending and pending_rounds < 3:
                pending_rounds += 1
                self.line.count("response_pending")
                await asyncio.sleep(0.05 * pending_rounds)
                continue
            raise NoDataError("no answer to the request" if not pending else "response pending, no answer came")

    def _parse(self, answer: Answer, headers: bool) -> list[ObdMessage]:
        if answer.kind is not Kind.DATA:
            raise ParseError(f"expected data, got {answer.kind.value}: {answer.text[:40]!r}")
        proto = int(self.info.protocol or "6", 16)
        messages: list[ObdMessage] = obd.parser.parse(answer.data, headers=headers, protocol=proto)
        return messages

    def _decode(self, answer: Answer, headers: bool) -> list[Reading]:
        if answer.kind is not Kind.DATA:
            raise ParseError(f"expected data, got {answer.kind.value}: {answer.text[:40]!r}")
        proto = int(self.info.protocol or "6", 16)
        result: list[Reading] = obd.parser.decode(answer.data, headers=headers, protocol=proto)
        return result

    def _decode_pids(self, answer: Answer, pids: Sequence[int], ecu: int, count: bool) -> list[Reading]:
        """The readings of a mode 01 answer, checked: only the PIDs asked for, each once."""
        raise_for(answer)
        if answer.noise:
            # garbage on the line may also have landed inside a data line: trust nothing of it
            self.line.count("noise")
            raise ParseError(f"noise in the answer: {answer.noise[0][:20]!r}")
        # one decode, no separate parse into messages: a PID answered twice (by two messages, or twice in
        # one) gives the same (PID, name) twice, which the check below refuses whatever the request form
        readings = self._decode(answer, self.headers)
        got = {r.pid for r in readings if r.service == 0x01}
        if not got:
            raise NoDataError("no requested PID in the answer")
        if not got <= set(pids):
            # a corrupted line can shift bytes into another PID's place: drop the whole answer
            raise ParseError(f"answer carries PIDs that were not asked for: {sorted(p for p in got - set(pids) if p)}")
        names = [(r.pid, r.name) for r in readings if r.service == 0x01]
        if len(names) != len(set(names)):
            raise ParseError("a PID appears twice in one answer" + (" to one physical request" if count else ""))
        # with headers off the parser cannot know the ECU; we addressed it, so we do (a new tuple: 5× faster
        # than namedtuple's _replace, measured)
        return [r if r.ecu else Reading(ecu, *r[1:]) for r in readings]

    async def _read_group(self, ecu: int, pids: Sequence[int], form: RequestForm) -> list[Reading]:
        """One mode 01 request of ``pids`` to ``ecu`` in ``form``."""
        await self._select_ecu(ecu)
        answer = await self.exchange(cmd.mode01(pids, count=1 if form.count else None), self.request_timeout_s)
        self.requests += 1
        return self._decode_pids(answer, pids, ecu, form.count)

    async def read_pids(self, ecu: int, pids: Sequence[int]) -> list[Reading]:
        """Read mode 01 ``pids`` from ``ecu`` in the form kept for it, one request per group.

        Raises NoDataError when nothing came back; PIDs missing from an answer are simply absent from the
        result (the scheduler counts them as NO DATA). A form that fails repeatedly is demoted."""
        out: list[Reading] = []
        first_error: GatewayError | None = None
        for group in bringup.groups(pids, self.forms.current(ecu).pids):
            form = self.forms.current(ecu)
            try:
                out += await self._read_group(ecu, group, form)
            except NoDataError:
                continue  # a NO DATA group: its PIDs are absent from the result
            except AdapterReset:
                raise  # the settings are gone: the caller must initialise again
            except (AdapterError, ParseError) as exc:
                first_error = first_error or exc
                if not isinstance(exc, ProtocolNotFound):
                    self._form_failed(ecu, form, exc)
                continue
            self._form_answered(ecu)
        if first_error is not None and not out:
            raise first_error
        if not out:
            raise NoDataError("NO DATA")
        return out

    async def read_pids_burst(self, ecu: int, requests: Sequence[Sequence[int]]) -> list[Polled] | None:
        """Mode 01 requests to ``ecu`` through the link pump, each handled as :meth:`read_pids` handles a
        one-group read (see :meth:`Session.read_pids_burst`). Only once the ECU is addressed and for
        requests that fit its request form; otherwise None (nothing written)."""
        form = self.forms.current(ecu)
        if not requests or any(not 0 < len(p) <= form.pids for p in requests):
            return None
        if self.info.is_can and self._header != request_id(ecu, is_extended(self.info.protocol)):
            return None  # the ordinary path addresses the ECU first
        lines = [self._mode01_line(tuple(p), form.count) for p in requests]
        exchanged = await self.line.burst(lines, self.request_timeout_s)
        if exchanged is None:
            return None
        out: list[Polled] = []
        for pids, ex in zip(requests, exchanged, strict=False):
            readings, error = self._burst_outcome(ecu, pids, form, ex)
            out.append(Polled(tuple(pids), readings, error, ex.written, ex.done))
        return out

    def _mode01_line(self, pids: tuple[int, ...], count: bool) -> bytes:
        """The request line of ``pids`` (kept: a burst at the link's full rate repeats a few lines)."""
        key = (pids, count)
        line = self._lines.get(key)
        if line is None:
            if len(self._lines) >= MODE01_LINES_KEPT:
                self._lines.clear()
            line = self._lines[key] = cmd.mode01(pids, count=1 if count else None)
        return line

    def _burst_outcome(
        self, ecu: int, pids: Sequence[int], form: RequestForm, ex: Exchanged
    ) -> tuple[list[Reading], GatewayError | None]:
        """What :meth:`read_pids` returns or raises for a one-group read whose exchange gave ``ex``."""
        try:
            if ex.error is not None:
                raise ex.error
            assert ex.answer is not None
            self.requests += 1
            readings = self._decode_pids(ex.answer, pids, ecu, form.count)
        except NoDataError:
            return [], NoDataError("NO DATA")
        except AdapterReset as exc:
            return [], exc
        except (AdapterError, ParseError) as exc:
            if not isinstance(exc, ProtocolNotFound):
                self._form_failed(ecu, form, exc)
            return [], exc
        except GatewayError as exc:
            return [], exc  # the link itself (a time-out, a closed device): read_pids raises these as they are
        self._form_answered(ecu)
        return readings, None

    def interrupt(self) -> None:
        """Halt a burst in progress before its next request."""
        self.transport.halt_burst()

    def _form_failed(self, ecu: int, form: RequestForm, exc: GatewayError) -> None:
        if form == RequestForm(1, False):
            return  # the plainest form: the trouble is elsewhere (the poller recovers the link)
        new = self.forms.failure(ecu, time.monotonic())
        if new is not None and new != form:
            self.line.count("form_demoted")
            self.info.forms[ecu] = new
            self.info.form_notes[ecu] = f"demoted from {form.label()}: {str(exc)[:40] or type(exc).__name__}"
            log.warning("ECU %X: %s failed (%s); using %s", ecu, form.label(), exc, new.label())

    def _form_answered(self, ecu: int) -> None:
        before = self.forms.current(ecu)
        new = self.forms.success(ecu, time.monotonic())
        if new is not None:
            self.info.forms[ecu] = new
            self.info.form_notes[ecu] = f"trying {new.label()} again"
            log.info("ECU %X: trying %s again (was %s)", ecu, new.label(), before.label())
        elif self.info.forms.get(ecu) != before:
            self.info.forms[ecu] = before

    async def query(self, service: int, data: Sequence[int] = (), ecu: int | None = None) -> list[Reading]:
        """Any OBD request (on-demand): functional unless ``ecu`` is given; headers on to tell ECUs apart."""
        await self._select_ecu(ecu)
        await self.set_headers(True)
        try:
            answer = await self.exchange(cmd.obd(service, data))
            raise_for(answer)
            self.requests += 1
            return self._decode(answer, headers=True)
        finally:
            with contextlib.suppress(AdapterError, TransportError):
                await self.set_headers(False)

    async def read_voltage(self) -> float:
        """Battery voltage (ATRV)."""
        answer = await self.at(cmd.read_voltage(), required=True)
        volts = parse_voltage(answer.text)
        if volts is None:
            raise ParseError(f"unreadable ATRV answer {answer.text!r}")
        return volts

    async def low_power(self) -> bool:
        """Put the chip to sleep where it can; returns whether it did.

        STN chips: ``STSLEEP`` (OBDLink STN11xx reference; the chip wakes on UART activity by default).
        ELM327 v2.0 and later: ``ATLP`` (datasheet, "Power Control": low power after a 1 s delay; a byte on
        its RS232 input wakes it with a warm start). Older chips and clones have neither: they stay awake
        (the caller keeps them quiet instead: ATRV only)."""
        if self.info.stn:
            answer = await self.exchange(cmd.stn_sleep())
            return answer.kind is Kind.OK
        try:
            major = float(self.info.version or "0")
        except ValueError:
            major = 0.0
        if major < 2.0:
            return False
        answer = await self.exchange(cmd.low_power())
        return answer.kind is Kind.OK

    async def tune_timeout(self) -> float | None:
        """ATST from measured latency: four times the median round trip, within 50-200 ms.

        With the count digit the chip rarely waits at all; ST then bounds only the wait for a PID that
        gets no answer, which is where the default 205 ms hurts.
        """
        if len(self.line.latency) < 8 or not any(f.count for f in self.info.forms.values()):
            return None
        median_ms = statistics.median(self.line.latency) * 1000
        st = max(50.0, min(200.0, 4 * median_ms))
        if abs(st - self.info.st_ms) < 8:
            return None
        answer = await self.at(cmd.set_timeout(st))
        if answer.kind is Kind.OK:
            self.info.st_ms = st
            return st
        return None


__all__ = ["Elm327Session"]
