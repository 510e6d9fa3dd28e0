"""The ELM327 session: owns one transport, speaks the adapter's command language.

Responsibilities, in the order :meth:`Elm327Session.initialize` runs them:

* **reset** that copes with clones: ATZ with a time-out, ATWS when ATZ hangs, a plain ATI probe as
  the last resort; echo is switched off and any echo still seen is stripped (some clones ignore ATE0);
* **format**: linefeeds and spaces off (``?`` from a clone that lacks a command is tolerated);
* **capabilities**: ELM version (ATI), STN chip (STI), adaptive timing;
* **protocol**: the configured one, else automatic search starting from the protocol remembered in
  the state file (ATSPA<p>), read back with ATDPN and remembered again;
* **discovery**: supported mode 01 PIDs per ECU (0100, 0120 … with headers on);
* **fast paths**: multi-PID requests per ECU, the response-count suffix, and pipelining, each
  kept only when a probe shows the adapter answers them correctly; ATST from measured latency;
  a higher baud rate through the ATBRD handshake (serial only).

Every exchange is one command line and the answer up to the ``>`` prompt, classified by
:mod:`gateway.elm327.responses`. Errors are the :mod:`gateway.errors` tree plus two local leaves of
AdapterError (:class:`AdapterReset`, :class:`Stopped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import obd
from gateway.elm327 import commands as cmd
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
    GatewayError,
    NoDataError,
    ParseError,
    ProtocolNotFound,
    TransportError,
    TransportTimeout,
    UnsupportedCommand,
)
from gateway.transport.base import Transport

log = logging.getLogger("gateway.elm327")

PROTOCOL_NAMES = {
    "1": "SAE J1850 PWM",
    "2": "SAE J1850 VPW",
    "3": "ISO 9141-2",
    "4": "ISO 14230-4 KWP (5 baud init)",
    "5": "ISO 14230-4 KWP (fast init)",
    "6": "ISO 15765-4 CAN (11 bit, 500 kbaud)",
    "7": "ISO 15765-4 CAN (29 bit, 500 kbaud)",
    "8": "ISO 15765-4 CAN (11 bit, 250 kbaud)",
    "9": "ISO 15765-4 CAN (29 bit, 250 kbaud)",
    "A": "SAE J1939 CAN (29 bit, 250 kbaud)",
    "B": "USER1 CAN (11 bit, 125 kbaud)",
    "C": "USER2 CAN (11 bit, 50 kbaud)",
}
CAN_PROTOCOLS = frozenset("6789ABC")
EXTENDED_PROTOCOLS = frozenset("79A")
ENGINE_ECU = 0x7E8
# AT commands whose answer is a text rather than OK
_TEXT_COMMANDS = frozenset({b"ATI", b"ATRV", b"ATDPN", b"ATDP", b"STI", b"AT@1", b"ATZ", b"ATWS", b"ATLP"})
INIT_ATTEMPTS = 4
# the ST time-out (204.8 ms) bounds an answer's wait; a search in progress extends it (see _read_prompt)
REQUEST_TIMEOUT_S = 0.6
BRT_WINDOW = 0x28  # ATBRT 28: 200 ms to confirm a new baud rate (default 75 ms)


@dataclass
class AdapterInfo:
    """What the session learned about the adapter and the car (``status()`` shows it)."""

    version: str = ""
    identity: str = ""
    stn: str = ""
    protocol: str = ""
    protocol_auto: bool = False
    echo: bool = True
    spaces: bool = True
    baud: int | None = None
    count_suffix: bool = False
    pipelining: bool = False
    #: ECU → whether it answered a multi-PID request correctly
    multi_pid: dict[int, bool] = field(default_factory=dict)
    #: ECU → supported mode 01 PIDs
    supported: dict[int, set[int]] = field(default_factory=dict)
    st_ms: float = 0.0

    @property
    def protocol_name(self) -> str:
        """The protocol's name (``ISO 15765-4 CAN (11 bit, 500 kbaud)``), '' before detection."""
        return PROTOCOL_NAMES.get(self.protocol, "")

    @property
    def is_can(self) -> bool:
        """Whether the detected protocol is a CAN one."""
        return self.protocol in CAN_PROTOCOLS

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "elm_version": self.version,
            "identity": self.identity,
            "stn": self.stn,
            "protocol": self.protocol,
            "protocol_name": self.protocol_name,
            "baud": self.baud,
            "count_suffix": self.count_suffix,
            "pipelining": self.pipelining,
            "multi_pid": {f"{k:X}": v for k, v in self.multi_pid.items()},
            "supported": {f"{k:X}": sorted(f"{p:02X}" for p in v) for k, v in self.supported.items()},
        }


class Elm327Session:
    """One ELM327 adapter over one transport. Not re-entrant: one exchange at a time."""

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
        pipelining: bool = True,
    ) -> None:
        self.transport = transport
        self.protocol_setting = protocol.upper()
        self.timeout_s = timeout_s
        self.state_path = state_path
        self.default_baud = baud
        self.fast_baud = fast_baud
        self.allow_multi_pid = multi_pid
        self.allow_pipelining = pipelining
        self.info = AdapterInfo()
        self.headers = False
        self._header: int | None = None  # the request header set with ATSH, None = adapter default
        self._latency: deque[float] = deque(maxlen=64)
        self._lock = asyncio.Lock()
        self.requests = 0
        self.errors: dict[str, int] = {}
        #: whether any byte ever came back (an ELM327 echoes ATZ at once: silence means nothing is there)
        self.heard = False
        # An OBD answer never takes longer than the ST time-out plus its bytes; a lost prompt
        # (truncated output) must not stall polling for the whole adapter time-out.
        self.request_timeout_s = min(timeout_s, REQUEST_TIMEOUT_S)
        self._search_from = ""

    # -- low level --------------------------------------------------------------------------------
    async def exchange(self, line: bytes, wait_s: float | None = None) -> Answer:
        """Send one command line, read to the prompt, classify (no error raised for error kinds)."""
        async with self._lock:
            return await self._exchange(line, wait_s)

    async def _exchange(self, line: bytes, wait_s: float | None = None) -> Answer:
        t0 = time.monotonic()
        if self.transport.discard_pending():
            # bytes left from an earlier answer (a stray '>' in line noise): never read them as ours
            self._count("stale_bytes")
        await self.transport.write(line)
        block = await self._read_prompt(self.timeout_s if wait_s is None else wait_s)
        self.heard = True
        self._latency.append(time.monotonic() - t0)
        answer = classify(block[:-1], line)
        if answer.echo:
            self.info.echo = True
        if answer.kind is Kind.RESET:
            self._count("reset")
        return answer

    async def _read_prompt(self, wait_s: float) -> bytes:
        """Read to the prompt; a protocol search in progress extends the wait to the adapter time-out."""
        try:
            return await self.transport.read_until(cmd.PROMPT, wait_s)
        except TransportTimeout:
            pending = self.transport.peek().upper()
            self.heard = self.heard or bool(pending)
            if wait_s < self.timeout_s and (b"SEARCHING" in pending or b"BUS INIT" in pending):
                try:
                    return await self.transport.read_until(cmd.PROMPT, self.timeout_s)
                except TransportTimeout:
                    pass
            self._count("timeout")
            raise

    async def _exchange_many(self, lines: Sequence[bytes], wait_s: float | None = None) -> list[Answer]:
        """Pipelined: every line written at once, then one answer per line, in order."""
        t0 = time.monotonic()
        self.transport.discard_pending()
        await self.transport.write(b"".join(lines))
        out = []
        for line in lines:
            block = await self._read_prompt(self.timeout_s if wait_s is None else wait_s)
            out.append(classify(block[:-1], line))
        self._latency.append((time.monotonic() - t0) / max(1, len(lines)))
        return out

    def _count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    async def at(self, line: bytes, wait_s: float | None = None, *, required: bool = False) -> Answer:
        """An AT command; a reset or STOPPED raises, ``?`` raises only when ``required``.

        A lost prompt or a garbled ``OK`` (line noise, dropped bytes) is retried twice: AT commands
        are idempotent, and a chip that lost our bytes is back at its prompt.
        """
        wants_ok = line.strip().upper() not in _TEXT_COMMANDS
        answer: Answer | None = None
        for attempt in range(3):
            try:
                answer = await self.exchange(line, wait_s if wait_s is not None else min(self.timeout_s, 1.0))
            except TransportTimeout:
                if attempt == 2:
                    raise
                await self.transport.drain_input(0.05, 0.3)
                continue
            if answer.kind is Kind.UNKNOWN_COMMAND:
                if required:
                    raise UnsupportedCommand(f"the adapter does not know {line.decode().strip()}")
                log.debug("adapter lacks %s", line.decode().strip())
                return answer
            if answer.kind in (Kind.RESET, Kind.STOPPED):
                raise_for(answer)
            if wants_ok and answer.kind is not Kind.OK and attempt < 2:
                await self.transport.drain_input(0.02, 0.2)
                continue
            return answer
        assert answer is not None
        return answer

    async def resync(self) -> None:
        """Get back to a clean prompt after garbage or a time-out: drain, then a harmless ATI."""
        await self.transport.drain_input(0.05, 0.5)
        for _ in range(3):
            try:
                await self.transport.write(cmd.identify())
                await self.transport.read_until(cmd.PROMPT, 1.0)
                await self.transport.drain_input(0.02, 0.2)
                return
            except TransportTimeout:
                await self.transport.drain_input(0.05, 0.5)
        raise TransportTimeout("the adapter does not come back to its prompt")

    # -- initialisation ---------------------------------------------------------------------------
    async def initialize(self) -> AdapterInfo:
        """Reset and set the adapter up; detect the protocol; probe what the adapter and car support."""
        for attempt in range(1, INIT_ATTEMPTS + 1):
            self.info = AdapterInfo(baud=self.transport.baud)
            self._header = None
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
        if self.fast_baud and self.transport.baud is not None and self.fast_baud != self.transport.baud:
            await self.switch_baud(self.fast_baud)
        return self.info

    async def _find_car(self) -> None:
        await self.detect_protocol()
        await self.discover()
        await self._probe_fast_paths()

    async def resume(self) -> AdapterInfo:
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
        if self.fast_baud and self.transport.baud is not None and self.fast_baud != self.transport.baud:
            await self.switch_baud(self.fast_baud)
        return self.info

    async def _reset(self) -> None:
        if self.transport.baud is not None and self.transport.baud != self.default_baud:
            # after a reset the chip is back at its default rate
            await self.transport.set_baud(self.default_baud)
            self.info.baud = self.default_baud
        await self.transport.drain_input(0.05, 0.3)
        banner: Answer | None = None
        for line, wait_s in ((cmd.reset(), 2.5), (cmd.warm_start(), 2.5), (cmd.identify(), 1.5)):
            try:
                answer = await self.exchange(line, wait_s)
            except TransportTimeout:
                log.info("adapter did not answer %s; trying the next reset form", line.decode().strip())
                await self.transport.drain_input(0.1, 1.0)
                continue
            if answer.kind is Kind.UNKNOWN_COMMAND:
                continue
            banner = answer
            break
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

    async def _setup_format(self) -> None:
        answer = await self.at(cmd.echo(False))
        if answer.kind is Kind.OK:
            self.info.echo = False
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
        if self.protocol_setting not in ("", "AUTO", "0"):
            await self.at(cmd.set_protocol(self.protocol_setting), required=True)
        else:
            remembered = self._load_state().get("protocol", "")
            if remembered in PROTOCOL_NAMES:
                await self.at(cmd.set_protocol(remembered, auto_fallback=True))
            else:
                await self.at(cmd.set_protocol("0"))
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
            self._save_state({"protocol": self.info.protocol})
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
        pending: set[int | None] = {None}
        while base <= 0xE0 and pending:
            try:
                messages = await self._request_messages([0x01, base])
            except NoDataError:
                break
            answered: set[int | None] = set()
            for msg in messages:
                if msg.service != 0x01 or msg.pid != base or len(msg.payload) < 4:
                    continue
                bits = int.from_bytes(msg.payload[:4], "big")
                pids = {base + i + 1 for i in range(32) if bits & (1 << (31 - i))}
                supported.setdefault(msg.ecu, set()).update(pids)
                if base + 0x20 in pids:
                    answered.add(msg.ecu)
            pending = answered
            base += 0x20
        self.info.supported = supported
        await self.set_headers(False)
        return supported

    async def _request_messages(self, data: Sequence[int]) -> list[Any]:
        """One OBD request with headers on, parsed to messages (ecu, service, pid, payload)."""
        line = cmd.obd(data[0], data[1:])
        answer = await self.exchange(line, self.request_timeout_s)
        raise_for(answer)
        if answer.noise:
            raise ParseError(f"noise in the answer: {answer.noise[0][:20]!r}")
        self.requests += 1
        if answer.kind is not Kind.DATA:
            raise ParseError(f"expected data, got {answer.kind.value}: {answer.text[:40]!r}")
        messages: list[Any] = obd.parser.parse(answer.data, headers=True, protocol=int(self.info.protocol or "6", 16))
        return messages

    async def _probe_fast_paths(self) -> None:
        """Keep multi-PID, count suffix and pipelining only where a probe shows they work."""
        for ecu, pids in self.info.supported.items():
            usable = sorted(p for p in pids if p not in (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0, 0x01))[:3]
            ok = False
            if self.allow_multi_pid and self.info.is_can and len(usable) >= 2:
                try:
                    readings = await self.read_pids(ecu, usable, multi=True, count=False)
                    # every requested PID back, from this ECU, in one answer
                    ok = {r.pid for r in readings if r.service == 0x01} >= set(usable)
                except (AdapterError, ParseError) as exc:
                    log.info("ECU %X does not take multi-PID requests: %s", ecu, exc)
                    await self.resync()
            self.info.multi_pid[ecu] = ok
        engine = self._main_ecu()
        if engine is None:
            return
        probe = sorted(p for p in self.info.supported[engine] if p not in (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0))[:1]
        if probe:
            try:
                await self._select_ecu(engine)
                answer = await self.exchange(cmd.mode01(probe, count=1))
                readings = self._decode_answer(answer, probe, engine)
                self.info.count_suffix = any(r.pid == probe[0] for r in readings)
            except (AdapterError, ParseError) as exc:
                log.info("the response-count suffix does not work: %s", exc)
                await self.resync()
            if self.allow_pipelining and self.info.count_suffix:
                self.info.pipelining = await self._probe_pipelining(engine, probe)

    async def _probe_pipelining(self, ecu: int, probe: list[int]) -> bool:
        lines = [cmd.mode01(probe, count=1)] * 3
        try:
            async with self._lock:
                answers = await self._exchange_many(lines, wait_s=2.0)
            for a in answers:
                self._decode_answer(a, probe, ecu)
            return True
        except (AdapterError, ParseError, TransportTimeout) as exc:
            log.info("pipelining not kept: %s", exc)
            await self.resync()
            return False

    def _main_ecu(self) -> int | None:
        if not self.info.supported:
            return None
        if ENGINE_ECU in self.info.supported:
            return ENGINE_ECU
        return max(self.info.supported, key=lambda e: (len(self.info.supported[e]), -e))

    async def switch_baud(self, baud: int) -> bool:
        """The ATBRD handshake: the chip says OK, switches, sends its ID at the new rate and waits for a
        CR from us; without the CR it falls back. Returns whether the new rate is in use."""
        try:
            line = cmd.baud_rate_divisor(baud)
        except ValueError as exc:
            log.warning("%s", exc)
            return False
        old = self.transport.baud or self.default_baud
        # a longer handshake window (ATBRT, ×5 ms) so that a busy host still answers in time
        await self.at(cmd.at(f"BRT{BRT_WINDOW:02X}"))
        async with self._lock:
            self.transport.discard_pending()
            await self.transport.write(line)
            try:
                first = await self.transport.read_until(b"\r", 1.0)
            except TransportTimeout:
                await self.transport.drain_input(0.1, 0.5)
                return False
            answer = classify(first, line)
            if answer.kind is Kind.EMPTY or (answer.kind is Kind.TEXT and not answer.text):
                with contextlib.suppress(TransportTimeout):
                    first = await self.transport.read_until(b"\r", 1.0)
                answer = classify(first, line)
            if answer.kind is not Kind.OK:
                with contextlib.suppress(TransportTimeout):
                    await self.transport.read_until(cmd.PROMPT, 1.0)
                log.info("ATBRD refused (%s)", answer.text)
                return False
            await self.transport.set_baud(baud)
            try:
                ident = await self.transport.read_until(b"\r", 1.0)
            except TransportTimeout:
                ident = b""
            if b"ELM" in ident.upper() or b"STN" in ident.upper() or b"V" in ident.upper():
                await self.transport.write(b"\r")
                try:
                    await self.transport.read_until(cmd.PROMPT, 1.0)
                    self.info.baud = baud
                    log.info("switched to %d baud", baud)
                    return True
                except TransportTimeout:
                    pass
            await self.transport.set_baud(old)
            await self.transport.drain_input(0.2, 1.0)
            log.info("ATBRD handshake failed; staying at %d baud", old)
            return False

    # -- requests ---------------------------------------------------------------------------------
    async def _select_ecu(self, ecu: int | None) -> None:
        """Address requests to one ECU (ATSH to its request id) or back to functional (None)."""
        if not self.info.is_can:
            return
        extended = self.info.protocol in EXTENDED_PROTOCOLS
        if ecu is None:
            header = 0x18DB33F1 if extended else 0x7DF
        elif extended:
            header = 0x18DA00F1 | ((ecu & 0xFF) << 8)
        else:
            header = ecu - 8
        if header != self._header:
            await self.at(cmd.set_header(header, extended=extended), required=True)
            self._header = header

    async def _request(self, data: Sequence[int], headers: bool | None = None, count: int | None = None) -> list[Any]:
        """Send one OBD request and decode the answer; error answers raise."""
        line = cmd.obd(data[0], data[1:], count)
        answer = await self.exchange(line)
        raise_for(answer)
        self.requests += 1
        return self._decode(answer, self.headers if headers is None else headers)

    def _decode(self, answer: Answer, headers: bool) -> list[Any]:
        if answer.kind is not Kind.DATA:
            raise ParseError(f"expected data, got {answer.kind.value}: {answer.text[:40]!r}")
        proto = int(self.info.protocol or "6", 16)
        result: list[Any] = obd.parser.decode(answer.data, headers=headers, protocol=proto)
        return result

    def _decode_answer(self, answer: Answer, pids: Sequence[int], ecu: int) -> list[Any]:
        raise_for(answer)
        if answer.noise:
            # garbage on the line may also have landed inside a data line: trust nothing of it
            self._count("noise")
            raise ParseError(f"noise in the answer: {answer.noise[0][:20]!r}")
        messages = self._parse(answer, self.headers)
        wanted = set(pids)
        seen: list[int | None] = [m.pid for m in messages if m.service == 0x01]
        if len(seen) != len(set(seen)) and self.info.count_suffix:
            raise ParseError("the same PID answered twice to one physical request")
        readings = self._decode(answer, self.headers)
        got = {r.pid for r in readings if r.service == 0x01}
        if not got:
            raise NoDataError("no requested PID in the answer")
        if not got <= wanted:
            # a corrupted line can shift bytes into another PID's place: drop the whole answer
            raise ParseError(f"answer carries PIDs that were not asked for: {sorted(got - wanted)}")
        names = [(r.pid, r.name) for r in readings if r.service == 0x01]
        if len(names) != len(set(names)):
            raise ParseError("a PID appears twice in one answer")
        return [self._with_ecu(r, ecu) for r in readings]

    def _parse(self, answer: Answer, headers: bool) -> list[Any]:
        proto = int(self.info.protocol or "6", 16)
        messages: list[Any] = obd.parser.parse(answer.data, headers=headers, protocol=proto)
        return messages

    @staticmethod
    def _with_ecu(reading: Any, ecu: int) -> Any:
        # with headers off the parser cannot know the ECU; we addressed it, so we do
        if getattr(reading, "ecu", 0):
            return reading
        return reading._replace(ecu=ecu)

    def pid_lines(
        self, ecu: int, pids: Sequence[int], *, multi: bool | None = None, count: bool = True
    ) -> list[tuple[list[int], bytes]]:
        """(PIDs, request line) pairs that read ``pids`` from ``ecu`` in the fastest form known to work.

        ``multi``: None uses what the probe found for this ECU; True/False force the form.
        """
        use_multi = self.info.multi_pid.get(ecu, False) if multi is None else multi
        if use_multi:
            groups = [list(pids[i : i + cmd.MAX_PIDS_PER_REQUEST]) for i in range(0, len(pids), 6)]
        else:
            groups = [[p] for p in pids]
        n = 1 if (count and self.info.count_suffix) else None
        return [(g, cmd.mode01(g, count=n)) for g in groups]

    async def read_pids(
        self, ecu: int, pids: Sequence[int], *, multi: bool | None = None, count: bool = True
    ) -> list[Any]:
        """Read mode 01 ``pids`` from ``ecu``: one multi-PID request where it works, else one each.

        Raises NoDataError when nothing came back; PIDs missing from a multi-PID answer are simply
        absent from the result (the scheduler counts them as NO DATA).
        """
        await self._select_ecu(ecu)
        plan = self.pid_lines(ecu, pids, multi=multi, count=count)
        groups = [g for g, _ in plan]
        lines = [line for _, line in plan]
        if len(lines) > 1 and self.info.pipelining:
            async with self._lock:
                answers = await self._exchange_many(lines, self.request_timeout_s)
        else:
            answers = [await self.exchange(line, self.request_timeout_s) for line in lines]
        out: list[Any] = []
        first_error: GatewayError | None = None
        for group, answer in zip(groups, answers, strict=True):
            self.requests += 1
            try:
                out += self._decode_answer(answer, group, ecu)
            except NoDataError:
                pass  # a NO DATA group: its PIDs are absent from the result
            except AdapterReset:
                raise  # the settings are gone: the caller must initialise again
            except (AdapterError, ParseError) as exc:
                first_error = first_error or exc
        if first_error is not None and not out:
            raise first_error
        if not out:
            raise NoDataError("NO DATA")
        return out

    async def pipeline_pids(self, ecu: int, batches: Sequence[Sequence[int]]) -> list[list[Any] | GatewayError]:
        """Several multi-PID requests written back to back (only when pipelining was probed OK).

        One result per batch: its readings, or the error for that batch.
        """
        await self._select_ecu(ecu)
        lines = [self.pid_lines(ecu, list(b), multi=len(b) > 1)[0][1] for b in batches]
        async with self._lock:
            answers = await self._exchange_many(lines, self.request_timeout_s)
        out: list[list[Any] | GatewayError] = []
        for batch, answer in zip(batches, answers, strict=True):
            self.requests += 1
            try:
                out.append(self._decode_answer(answer, batch, ecu))
            except (AdapterError, ParseError) as exc:
                out.append(exc)
        return out

    async def query(self, service: int, data: Sequence[int] = (), ecu: int | None = None) -> list[Any]:
        """Any OBD request (on-demand): functional unless ``ecu`` is given; headers on to tell ECUs apart."""
        await self._select_ecu(ecu)
        await self.set_headers(True)
        try:
            return await self._request([service, *data], headers=True)
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

    async def read_vin(self) -> str:
        """The VIN (mode 09 PID 02); never cached."""
        readings = await self.query(0x09, [0x02])
        for r in readings:
            if r.service == 0x09 and isinstance(r.value, str) and len(r.value.strip()) >= 11:
                return r.value.strip()
        raise NoDataError("no VIN in the answer")

    async def read_dtcs(self) -> dict[str, Any]:
        """Stored (03), pending (07) and permanent (0A) DTCs, and the MIL from 0101."""
        out: dict[str, Any] = {"stored": [], "pending": [], "permanent": [], "mil": False}
        for key, service in (("stored", 0x03), ("pending", 0x07), ("permanent", 0x0A)):
            try:
                readings = await self.query(service)
            except NoDataError:
                continue
            except UnsupportedCommand:
                continue
            codes: list[str] = []
            for r in readings:
                v = r.value
                if isinstance(v, str):
                    codes.append(v)
                elif isinstance(v, (list, tuple)):
                    codes += [str(c) for c in v]
            out[key] = sorted(set(codes))
        with contextlib.suppress(NoDataError):
            for r in await self.query(0x01, [0x01]):
                if r.pid == 0x01 and r.name == "mil":
                    out["mil"] = out["mil"] or bool(r.value)  # lit when any ECU lights it
        return out

    async def clear_dtcs(self) -> None:
        """Service 04 (the caller checks that clearing is allowed)."""
        await self.query(0x04)

    async def low_power(self) -> bool:
        """ATLP where the chip has it (v2.0 and later); returns whether it went to sleep."""
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

        With the count suffix the chip rarely waits at all; ST then bounds only the wait for a PID
        that gets no answer, which is where the default 205 ms hurts.
        """
        if len(self._latency) < 8 or not self.info.count_suffix:
            return None
        median_ms = statistics.median(self._latency) * 1000
        st = max(50.0, min(200.0, 4 * median_ms))
        if abs(st - self.info.st_ms) < 8:
            return None
        answer = await self.at(cmd.set_timeout(st))
        if answer.kind is Kind.OK:
            self.info.st_ms = st
            return st
        return None

    @property
    def latency_ms(self) -> float:
        """The median measured round trip, ms (0 before any)."""
        return statistics.median(self._latency) * 1000 if self._latency else 0.0

    # -- state ------------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        if self.state_path is None:
            return {}
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self, changes: dict[str, Any]) -> None:
        if self.state_path is None:
            return
        data = self._load_state() | changes
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.state_path)
        except OSError as exc:
            log.warning("cannot remember the protocol in %s: %s", self.state_path, exc)


__all__ = ["AdapterInfo", "Elm327Session"]
