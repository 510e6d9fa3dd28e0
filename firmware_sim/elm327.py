"""The ELM327 firmware: a sans-I/O command interpreter.

:meth:`Elm327.execute` takes one command line (the bytes before the CR) and returns a :class:`Reply`:
the bytes the chip prints, each with the time (seconds after the CR arrived) at which its last byte
has left the chip's UART, computed with :mod:`firmware_sim.timing`. The port servers
(:mod:`firmware_sim.server`) play a reply out in real time, abort it with ``STOPPED`` when the host
sends a byte before the prompt (queued behind the request's CR or arriving while it is answered;
``pipelining=True`` models a line-buffering adapter instead), run ATMA monitors and the ATBRD handshake.

Output conventions, as on a real v1.5 chip (and common clones):
- every line ends with CR (CR LF with ATL1); after an answer comes one blank line and the ``>`` prompt,
  so a reply ends ``\\r\\r>`` (``\\r\\n\\r\\n>`` with ATL1);
- echo is on after reset (ATE1): the command comes back followed by CR;
- with spaces on (ATS1) each byte is printed followed by a space, the last one too (``41 0C 1A F8 ``);
- ATZ prints a blank line, ``ELM327 v1.5``, then the prompt; ATL0 is the power-up default.
"""

from __future__ import annotations

import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from firmware_sim import audit
from firmware_sim.adapters import GENUINE, Personality
from firmware_sim.ecu import (
    CAN_PROTOCOLS,
    PROTOCOL_NAMES,
    Ecu,
    can_bitrate,
    is_29bit,
    isotp_frames,
    legacy_check,
    legacy_header,
)
from firmware_sim.faults import Faults
from firmware_sim.timing import LEGACY_LATENCY_S, TimingModel, brd_baud, serial_time
from firmware_sim.vehicle import Vehicle

VERSION = "ELM327 v1.5"
DEVICE_DESCRIPTION = "OBDII to RS232 Interpreter"
SEARCH_ORDER = "123456789"
SEARCH_COST_S = {"1": 0.30, "2": 0.30, "3": 2.50, "4": 2.50, "5": 0.40, "6": 0.12, "7": 0.12, "8": 0.12, "9": 0.12,
                 "A": 0.12, "B": 0.12, "C": 0.12}
"""Seconds the chip spends trying each protocol during a search (slow inits dominate)."""
BUS_INIT_S = 2.5
RESET_S = 0.8
CF_INTERVAL_S = 0.001  # ECU consecutive-frame spacing after the chip's flow control (STmin 0)


@dataclass
class Chunk:
    """Bytes the chip has finished sending ``at`` seconds after the command's CR arrived."""

    at: float
    data: bytes


@dataclass
class Reply:
    """Everything the chip does in answer to one command line."""

    chunks: list[Chunk] = field(default_factory=list)
    interruptible: bool = False  # an OBD request: input before the prompt makes the chip print STOPPED
    monitor: Monitor | None = None  # ATMA: stream frames until any byte arrives
    brd_baud: int | None = None  # ATBRD: the handshake at this baud rate follows "OK"
    after_baud: int | None = None  # STSBR: the UART switches to this rate once the reply has left
    ended_at: float = 0.0

    def data(self) -> bytes:
        """All bytes of the reply, concatenated (for sans-I/O tests)."""
        return b"".join(c.data for c in self.chunks)


@dataclass(frozen=True)
class LogEntry:
    """One command line the chip executed and what it printed (before the port plays it out)."""

    at: float  # time.monotonic() when the chip took the line
    command: str  # upper case, spaces and control characters removed ("" for a bare CR)
    answer: str  # everything printed, echo and prompt included


@dataclass
class Settings:
    """The chip's volatile settings (restored by ATZ / ATWS / ATD)."""

    echo: bool = True
    linefeeds: bool = False
    spaces: bool = True
    headers: bool = False
    dlc: bool = False
    caf: bool = True
    cfc: bool = True
    responses: bool = True
    st: int = 0x32
    adaptive: int = 1
    header: int | None = None  # ATSH; None = the protocol's functional default
    cra: int | None = None
    memory: bool = True
    brt: int = 0x0F  # ATBRT hh, × 5 ms = 75 ms


class CarBus:
    """What the adapter's OBD port is wired to: the vehicle, its ECUs and its bus protocol."""

    def __init__(self, vehicle: Vehicle, ecus: list[Ecu], protocol: str = "6", *,
                 sync: Callable[[], None] | None = None) -> None:
        if protocol not in PROTOCOL_NAMES or protocol in {"A", "B", "C"}:
            raise ValueError(f"vehicle protocol must be one of 1-9, got {protocol!r}")
        self.vehicle = vehicle
        self.ecus = ecus
        self.protocol = protocol
        self.sync = sync or (lambda: None)
        #: simulated times (ms) of the OBD requests that reached the bus while the car slept (bounded)
        self.wakeups: deque[float] = deque(maxlen=100_000)

    def note_request(self) -> None:
        """An OBD request reaches the bus: while the car sleeps (ignition off) it is a bus wake-up.

        On a real car every such request wakes the CAN bus and its gateway modules again (owners report
        about 2 A instead of 150 mA while "asleep"); the gateway must send none once parked."""
        self.sync()
        with self.vehicle.lock:
            if not self.vehicle.state.ignition:
                self.wakeups.append(self.vehicle.sim_ms)

    def alive(self) -> bool:
        """Whether the ECUs are on the bus (ignition on)."""
        self.sync()
        with self.vehicle.lock:
            return self.vehicle.state.ignition

    def broadcast(self) -> list[tuple[int, float, Callable[[], bytes]]]:
        """Periodic CAN traffic seen by ATMA: (identifier, period s, payload builder)."""
        v = self.vehicle

        def speed() -> bytes:
            return int(v.state.speed_kmh * 100).to_bytes(2, "big") + bytes([v.state.gear, 0, 0, 0, 0, 0])

        def rpm() -> bytes:
            return int(v.state.rpm * 4).to_bytes(2, "big") + bytes([int(v.state.throttle_pct * 2.55), 0, 0, 0, 0, 0])

        def body() -> bytes:
            return bytes([int(v.state.coolant_c + 40), int(v.state.fuel_level_pct * 2.55), 0x80 if v.state.mil else 0,
                          0, 0, 0, 0, 0])

        if not v.state.ignition:
            return []
        if is_29bit(self.protocol):  # 29-bit cars broadcast with J1939-style identifiers
            return [(0x18FEF100, 0.05, speed), (0x0CF00400, 0.05, rpm), (0x18FEEE00, 1.0, body)]
        return [(0x130, 0.05, speed), (0x1A0, 0.05, rpm), (0x3F0, 1.0, body)]


@dataclass
class _Answer:
    ecu: Ecu
    arrival: float  # seconds after the request left the chip
    message: bytes


class Monitor:
    """The ATMA stream: yields (delay before the next line, line bytes) until the host interrupts."""

    def __init__(self, elm: Elm327, bus: CarBus) -> None:
        self.elm = elm
        self.bus = bus

    def frames(self) -> Iterator[tuple[float, bytes]]:
        """An endless schedule of formatted monitor lines (nothing on a silent or legacy bus)."""
        elm = self.elm
        proto = elm.active or self.bus.protocol
        next_due: dict[int, float] = {}
        t = 0.0
        while True:
            self.bus.sync()
            traffic = self.bus.broadcast() if proto in CAN_PROTOCOLS and proto == self.bus.protocol else []
            if not traffic:
                yield 0.1, b""
                t += 0.1
                next_due.clear()
                continue
            for ident, period, _ in traffic:
                next_due.setdefault(ident, t + period)
            ident = min(next_due, key=lambda i: next_due[i])
            due = next_due[ident]
            period, build = next((p, b) for i, p, b in traffic if i == ident)
            next_due[ident] = due + period
            delay, t = due - t, due
            if elm.settings.cra is not None and elm.settings.cra != ident:
                yield delay, b""
                continue
            yield delay, elm.line(elm.format_can_frame(ident, build(), False, raw=True))


class Elm327:
    """One ELM327 chip: settings, protocol state and the command interpreter."""

    def __init__(self, bus: CarBus, *, timing: TimingModel | None = None, faults: Faults | None = None,
                 fast: bool = False, seed: int = 1, linefeeds_default: bool = False, version: str = VERSION,
                 pipelining: bool = False, log: deque[LogEntry] | None = None,
                 personality: Personality = GENUINE,
                 on_nonread: Callable[[audit.AuditRecord], None] | None = None) -> None:
        self.bus = bus
        self.personality = personality  # the adapter model's traits (firmware_sim.adapters)
        self.on_nonread = on_nonread  # told of every request outside the read set (firmware_sim.audit)
        self.log = log  # every executed line, in order (tests check request order with it)
        # False: a genuine ELM327 (input behind an OBD request's CR interrupts it with STOPPED).
        # True: a line-buffering adapter (Automatic, STN-style) that answers queued lines in order.
        self.pipelining = pipelining or personality.pipelining
        self.version = version  # the ID string of ATI / ATZ (clones say v1.5; genuine chips v2.x)
        self.base_timing = timing or TimingModel()
        self.baud = self.base_timing.baud
        self.faults = faults or Faults()
        self.fast = fast
        self.rng = random.Random(seed)
        self.linefeeds_default = linefeeds_default
        self.settings = Settings(linefeeds=linefeeds_default)
        self.saved_protocol = "0"  # ATSP writes it to EEPROM; it survives resets
        self.last_good: str | None = None
        self.protocol_setting = "0"
        self.active: str | None = None
        self.last_command = b""

    # ------------------------------------------------------------------ helpers
    @property
    def eol(self) -> bytes:
        """The line ending (CR, or CR LF with ATL1)."""
        return b"\r\n" if self.settings.linefeeds or self.personality.crlf else b"\r"

    @property
    def tail(self) -> bytes:
        """What closes every reply: a blank line (unless the personality omits it) and the ``>`` prompt."""
        return (self.eol if self.personality.blank_line else b"") + b">"

    def line(self, text: str | bytes) -> bytes:
        """One output line with its ending."""
        raw = text.encode("ascii") if isinstance(text, str) else text
        return raw + self.eol

    @property
    def auto(self) -> bool:
        """Whether the protocol is chosen automatically (SP 0 or SP Ah)."""
        return self.protocol_setting == "0" or self.protocol_setting.startswith("A")

    @property
    def timing(self) -> TimingModel:
        """The live timing model (baud, ST and adaptive mode as set by the host)."""
        return self.base_timing.with_(baud=self.baud, st=self.settings.st, adaptive=self.settings.adaptive)

    def hexs(self, data: bytes) -> str:
        """Bytes as hex, each followed by a space when spaces are on."""
        text = "".join(f"{b:02X} " for b in data) if self.settings.spaces else data.hex().upper()
        return text.lower() if self.personality.lowercase_hex else text

    def _hexnum(self, value: int, width: int) -> str:
        text = f"{value:0{width}X}"
        return text.lower() if self.personality.lowercase_hex else text

    def _reset(self, *, keep_baud: bool = False) -> None:
        self.settings = Settings(linefeeds=self.linefeeds_default)
        self.protocol_setting = self.saved_protocol
        self.active = None
        if not keep_baud:  # ATZ restores the power-up baud rate; ATWS keeps one chosen with ATBRD
            self.baud = self.base_timing.baud

    def _simple(self, text: str | None, *, delay: float = 0.0, echo: bytes = b"") -> Reply:
        """A reply of zero or one line, then the prompt, timed at the current baud rate."""
        reply = Reply()
        body = echo + (self.line(text) if text is not None else b"")
        self._finish(reply, body, delay)
        return reply

    def _finish(self, reply: Reply, body: bytes, ready_at: float) -> None:
        t = 0.0 if self.fast else max(ready_at, 0.0) + serial_time(len(body), self.baud)
        reply.chunks.append(Chunk(t, body + self.tail))
        reply.ended_at = t

    # ------------------------------------------------------------------ entry point
    def execute(self, raw: bytes) -> Reply:
        """Interpret one command line (without its CR) and return the chip's reply (logged in ``log``)."""
        command = bytes(b for b in raw if b > 0x20 and b != 0x7F).upper().decode("ascii", "replace")
        # a bare CR repeats the last request: audit what it sends
        sent = command or self.last_command.decode("ascii", "replace")
        rec = audit.observe_line(sent, caf=self.settings.caf)
        if rec is not None and self.on_nonread is not None:
            self.on_nonread(rec)
        reply = self._execute(raw)
        lag = self.personality.link_latency_s
        if lag and not self.fast:  # a Wi-Fi / BLE bridge delays every byte of the exchange
            for chunk in reply.chunks:
                chunk.at += lag
            reply.ended_at += lag
        if self.log is not None:
            self.log.append(LogEntry(time.monotonic(), command, reply.data().decode("ascii", "replace")))
        return reply

    def _execute(self, raw: bytes) -> Reply:
        # A clone with CR LF line ends still echoes the command with the CR it received (ELMduino #241).
        echo = raw + (b"\r" if self.personality.crlf else self.eol) if self.settings.echo else b""
        t_in = 0.0 if self.fast else serial_time(len(raw) + 1, self.baud)
        cleaned = bytes(b for b in raw if b > 0x20 and b != 0x7F).upper()
        if not cleaned:
            if self.last_command:
                cleaned = self.last_command  # a bare CR repeats the previous command
            else:
                reply = Reply()
                self._finish(reply, echo, t_in)
                return reply
        if self.faults.strikes("reset"):
            return self._banner(echo, t_in, spontaneous=True)
        text = cleaned.decode("ascii", "replace")
        if text.startswith("AT"):
            reply = self._at(text[2:], echo, t_in)
            if text[2:] not in {"Z", "WS", "D"}:
                self.last_command = b""
        elif text.startswith("ST") and (self.personality.st_commands or self.personality.stsbr):
            reply = self._st(text[2:], echo, t_in)
        elif re.fullmatch(r"[0-9A-F]+", text):
            self.last_command = cleaned
            reply = self._obd(text, echo, t_in)
        else:
            reply = self._simple("?", delay=t_in, echo=echo)
        return self._apply_output_faults(reply)

    def _apply_output_faults(self, reply: Reply) -> Reply:
        if not reply.chunks:
            return reply
        if self.faults.strikes("noise"):
            c = reply.chunks[len(reply.chunks) // 2]
            pos = self.faults.randint(0, len(c.data))
            # Printable garbage, but never the prompt character: framing by '>' must stay reliable.
            junk = bytes(b if b != 0x3E else 0x3F for b in (self.faults.randint(0x21, 0x7E)
                                                            for _ in range(self.faults.randint(1, 4))))
            c.data = c.data[:pos] + junk + c.data[pos:]
        rate = self.faults.rate("drop_bytes")
        if rate > 0:
            for c in reply.chunks:
                kept = bytes(b for b in c.data if self.faults.uniform(0, 1) >= rate)
                self.faults.record_hit("drop_bytes", len(c.data) - len(kept))
                c.data = kept
        if self.faults.strikes("truncate"):
            last = reply.chunks[-1]
            keep = max(0, len(last.data) - 1 - self.faults.randint(1, max(1, len(last.data) // 2)))
            last.data = last.data[:keep]
        return reply

    def _banner(self, echo: bytes, t_in: float, *, spontaneous: bool = False, warm: bool = False) -> Reply:
        self._reset(keep_baud=warm)
        reply = Reply()
        blank = self.eol + self.eol if self.personality.blank_line else b""
        body = (b"" if spontaneous else echo) + blank + self.line(self.version)
        delay = 0.0 if self.fast else t_in + (0.05 if warm else RESET_S)
        self._finish(reply, body, delay)
        return reply

    # ------------------------------------------------------------------ AT commands
    def _at(self, cmd: str, echo: bytes, t_in: float) -> Reply:
        """Dispatch one AT command (``cmd`` without ``AT``) through the handler table; unknown: ``?``."""
        if any(re.fullmatch(p, cmd) for p in self.personality.missing_at):
            return self._simple("?", delay=t_in, echo=echo)
        for pattern, handler in _AT_TABLE:
            m = pattern.fullmatch(cmd)
            if m is not None:
                return handler(self, _AtCall(m, echo, t_in))
        return self._simple("?", delay=t_in, echo=echo)

    def _ok(self, c: _AtCall) -> Reply:
        return self._simple("OK", delay=c.t_in, echo=c.echo)

    def _text(self, c: _AtCall, text: str) -> Reply:
        return self._simple(text, delay=c.t_in, echo=c.echo)

    def _at_z(self, c: _AtCall) -> Reply:
        return self._banner(c.echo, c.t_in)

    def _at_ws(self, c: _AtCall) -> Reply:
        return self._banner(c.echo, c.t_in, warm=True)

    def _at_d(self, c: _AtCall) -> Reply:
        # Defaults as at power-up (echo back on, headers, filters and timers reset); the protocol
        # stored by ATSP is retrieved and any open one closed. The baud rate is untouched.
        self._reset(keep_baud=True)
        # Real chips print a blank line before this OK (seen in captures of v1.5 clones and v2.1).
        return self._simple("OK", delay=c.t_in, echo=c.echo + self.eol)

    def _at_i(self, c: _AtCall) -> Reply:
        return self._text(c, self.version)

    def _at_desc(self, c: _AtCall) -> Reply:
        return self._text(c, DEVICE_DESCRIPTION)

    def _at_rv(self, c: _AtCall) -> Reply:
        self.bus.sync()
        with self.bus.vehicle.lock:
            volts = self.bus.vehicle.state.battery_v - 0.1  # diode drop in the adapter
        return self._text(c, f"{volts:.1f}V")

    def _at_dp(self, c: _AtCall) -> Reply:
        if self.active is None:
            name = "AUTO" if self.auto else PROTOCOL_NAMES[self.protocol_setting.lstrip("A") or "6"]
        else:
            name = ("AUTO, " if self.auto else "") + PROTOCOL_NAMES[self.active]
        return self._text(c, name)

    def _at_dpn(self, c: _AtCall) -> Reply:
        digit = self.active or (self.protocol_setting.lstrip("A") or "0")
        return self._text(c, ("A" if self.auto and self.protocol_setting != digit else "") + digit)

    def _at_flag(self, c: _AtCall) -> Reply:
        attr = _FLAGS[c.m.group(1)]
        if not (attr == "echo" and self.personality.sticky_echo):  # that clone says OK and keeps echoing
            setattr(self.settings, attr, c.m.group(2) == "1")
        return self._ok(c)

    # ------------------------------------------------------------------ ST commands (STN chips)
    def _st(self, cmd: str, echo: bytes, t_in: float) -> Reply:
        """STN extensions (OBDLink FRPM): fixed identification answers and STSBR; others ``?``."""
        for name, answer in self.personality.st_commands:
            if cmd == name:
                return self._simple(answer, delay=t_in, echo=echo)
        m = re.fullmatch(r"SBR(\d{4,7})", cmd)
        if m and self.personality.stsbr:
            new = int(m.group(1))
            if not 9600 <= new <= 4_000_000:
                return self._simple("?", delay=t_in, echo=echo)
            # OK and the prompt at the old rate, then the UART switches (no ATBRD-style handshake).
            reply = self._simple("OK", delay=t_in, echo=echo)
            reply.after_baud = new
            return reply
        return self._simple("?", delay=t_in, echo=echo)

    def _at_adaptive(self, c: _AtCall) -> Reply:
        self.settings.adaptive = int(c.m.group(1))
        return self._ok(c)

    def _at_st(self, c: _AtCall) -> Reply:
        self.settings.st = int(c.m.group(1), 16) or 0x32
        return self._ok(c)

    def _at_sp(self, c: _AtCall) -> Reply:
        value = c.m.group(2)
        if value in {"00", "A0"}:
            value = "0"
        self.protocol_setting = value
        self.active = None
        if c.m.group(1) == "SP":
            self.saved_protocol = value
        return self._ok(c)

    def _at_sh(self, c: _AtCall) -> Reply:
        self.settings.header = int(c.m.group(1), 16)
        return self._ok(c)

    def _at_cra(self, c: _AtCall) -> Reply:
        self.settings.cra = int(c.m.group(1), 16) if c.m.group(1) else None
        return self._ok(c)

    def _at_pc(self, c: _AtCall) -> Reply:
        self.active = None if self.auto else self.active
        return self._ok(c)

    def _at_brd(self, c: _AtCall) -> Reply:
        try:
            new = brd_baud(int(c.m.group(1), 16))
        except ValueError:
            return self._text(c, "?")
        reply = Reply(brd_baud=new)
        body = c.echo + self.line("OK")
        t = 0.0 if self.fast else c.t_in + serial_time(len(body), self.baud)
        reply.chunks.append(Chunk(t, body))
        reply.ended_at = t
        return reply

    def _at_brt(self, c: _AtCall) -> Reply:
        self.settings.brt = int(c.m.group(1), 16) or 0x0F
        return self._ok(c)

    def _at_monitor(self, c: _AtCall) -> Reply:
        if self.faults.strikes("buffer_full"):
            return self._text(c, "BUFFER FULL")
        reply = Reply(monitor=Monitor(self, self.bus))
        out = _Out(self, reply, start=c.t_in)
        out.emit(c.echo, c.t_in)
        if self.active is None:  # like an OBD request, monitoring needs a protocol: search for one
            t = self._connect(out, c.t_in)
            if self.active is None:
                reply.monitor = None
                return out.done(t)
        return reply

    def _at_cs(self, c: _AtCall) -> Reply:
        return self._text(c, "T:00 R:00 ")

    def _at_pps(self, c: _AtCall) -> Reply:
        return self._text(c, "00:FF F  01:FF F  02:FF F  03:32 F  ")

    def _at_rd(self, c: _AtCall) -> Reply:
        return self._text(c, "FF ")

    # ------------------------------------------------------------------ OBD requests
    def _obd(self, text: str, echo: bytes, t_in: float) -> Reply:
        """One OBD request line: parse, strike faults, find the protocol, ask the bus, print the answers."""
        parsed = self._parse_request(text)
        if parsed is None:
            return self._simple("?", delay=t_in, echo=echo)
        payload, count = parsed
        p = self.personality
        request = payload if self.settings.caf else payload[1:]
        if request and not p.accepts(request[0], len(request) - 1, len(text) % 2 == 1):
            return self._simple("?", delay=t_in, echo=echo)
        self.bus.note_request()
        if not p.count_usable:
            count = None  # a clone that ignores the digit waits as if it were absent
        reply = Reply(interruptible=True)
        out = _Out(self, reply, start=t_in)
        out.emit(echo, t_in)
        early = self._early_fault(out, t_in)
        if early is not None:
            return early
        fail = self.faults.strikes("unable_to_connect")
        if self.faults.strikes("searching") or fail:
            self.active = None
        if self.faults.strikes("buffer_full"):
            return self._fail_line(out, "BUFFER FULL", t_in + 0.02)
        t = t_in
        if self.active is None:
            t = self._connect(out, t, fail=fail)
            if self.active is None:
                return out.done(t)
        assert self.active is not None
        proto = self.active
        silent = self._bus_trouble(out, proto, t)
        if silent is not None:
            return silent
        answers = self._collect(proto, payload)
        if not answers:
            return self._fail_line(out, "NO DATA", t + (0 if self.fast else self.timing.st_timeout))
        return self._emit_answers(out, proto, answers, count, t)

    def _parse_request(self, text: str) -> tuple[bytes, int | None] | None:
        """The request bytes and the response-count digit (None: absent or 0); None when the chip says ``?``."""
        count: int | None = None
        if len(text) % 2 == 1:
            count = int(text[-1], 16) or None
            text = text[:-1]
        payload = bytes.fromhex(text)
        proto_for_len = self.active or self.bus.protocol
        if not payload or (self.settings.caf and len(payload) > 7 and proto_for_len in CAN_PROTOCOLS):
            return None
        return payload, count

    def _fail_line(self, out: _Out, text: str, at: float) -> Reply:
        out.emit(self.line(text), at)
        return out.done(at)

    def _early_fault(self, out: _Out, t_in: float) -> Reply | None:
        if self.faults.strikes("stopped"):
            return self._fail_line(out, "STOPPED", t_in + 0.01)
        return None

    def _bus_trouble(self, out: _Out, proto: str, t: float) -> Reply | None:
        """``CAN ERROR`` / ``NO DATA`` when the bus cannot answer (fault, wrong protocol, ignition off)."""
        if self.faults.strikes("can_error") and proto in CAN_PROTOCOLS:
            return self._fail_line(out, "CAN ERROR", t + 0.05)
        if self.faults.strikes("no_data") or proto != self.bus.protocol or not self.bus.alive():
            if proto != self.bus.protocol and proto in CAN_PROTOCOLS and (
                    self.bus.protocol not in CAN_PROTOCOLS or can_bitrate(proto) != can_bitrate(self.bus.protocol)):
                return self._fail_line(out, "CAN ERROR", t + 0.05)
            return self._fail_line(out, "NO DATA", t + (0 if self.fast else self.timing.st_timeout))
        return None

    def _emit_answers(self, out: _Out, proto: str, answers: list[_Answer], count: int | None, t: float) -> Reply:
        """Print the answers as they arrive; the prompt follows the count digit or the adaptive wait."""
        shown = answers[:count] if count else answers
        last_arrival = t
        for ans in shown:
            arrival = t + (0.0 if self.fast else ans.arrival)
            if self.settings.responses:
                self._emit_answer(out, proto, ans, arrival)
            last_arrival = max(last_arrival, arrival)
        if count is not None and len(shown) >= count:
            end = last_arrival
        else:
            learned = max(a.arrival for a in answers)
            end = last_arrival + (0.0 if self.fast else self.timing.wait_after_last(learned))
        return out.done(end)

    def _connect(self, out: _Out, t: float, *, fail: bool = False) -> float:
        """Find or open the protocol before the first request; returns the time it took."""
        alive = self.bus.alive() and not fail
        if self.auto:
            out.emit(self.line("SEARCHING..."), t)
            first = self.protocol_setting[1:] if self.protocol_setting.startswith("A") else ""
            order = [p for p in (first, self.last_good if self.settings.memory else None) if p]
            order += [p for p in SEARCH_ORDER if p not in order]
            for p in order:
                t += 0.0 if self.fast else SEARCH_COST_S[p]
                if alive and p == self.bus.protocol:
                    self.active = p
                    self.last_good = p
                    return t
            out.emit(self.line("UNABLE TO CONNECT"), t)
            return t
        p = self.protocol_setting
        if fail:
            out.emit(self.line("UNABLE TO CONNECT"), t)
            return t
        if p in {"3", "4", "5"}:
            t += 0.0 if self.fast else (BUS_INIT_S if p != "5" else 0.3)
            good = alive and p == self.bus.protocol
            out.emit(self.line("BUS INIT: ...OK" if good else "BUS INIT: ...ERROR"), t)
            if good:
                self.active = p
            return t
        self.active = p
        return t

    def _collect(self, proto: str, payload: bytes) -> list[_Answer]:
        """Send the request on the bus and gather the ECUs' answers, ordered by arrival."""
        can = proto in CAN_PROTOCOLS
        header = self.settings.header
        targets: list[tuple[Ecu, bool]] = []
        request = payload
        if can and not self.settings.caf:
            if not payload or payload[0] > 7 or len(payload) < payload[0] + 1:
                return []
            request = payload[1:1 + payload[0]]
        for ecu in self.bus.ecus:
            if not can or header is None:
                targets.append((ecu, False))
            elif is_29bit(proto):
                if header in (0x18DB33F1, 0xDB33F1):
                    targets.append((ecu, False))
                elif header & 0xFFFF in (ecu.request_id_29 & 0xFFFF,):
                    targets.append((ecu, True))
            elif header == 0x7DF:
                targets.append((ecu, False))
            elif header == ecu.request_id_11:
                targets.append((ecu, True))
        base = self.base_timing.ecu_latency if can else max(self.base_timing.ecu_latency, LEGACY_LATENCY_S)
        answers = []
        self.bus.sync()
        for ecu, physical in targets:
            msgs = ecu.handle(self.bus.vehicle, request, can=can, physical=physical)
            for i, msg in enumerate(msgs):
                lat = base + ecu.latency_offset + i * (0.01 if not can else 0.0)
                if not self.fast:
                    lat += self.rng.uniform(-self.base_timing.jitter, self.base_timing.jitter)
                    if self.faults.strikes("latency"):
                        lat += self.faults.uniform(0.0, self.faults.extra_latency)
                if not self.fast and lat > self.timing.st_timeout:
                    continue  # the chip gave up listening before this ECU answered
                if self.settings.cra is not None and self.settings.cra not in (
                        ecu.can_id_11, ecu.can_id_29, ecu.can_id_29 & 0xFFFFFF):
                    continue
                answers.append(_Answer(ecu, lat, msg))
        answers.sort(key=lambda a: a.arrival)
        return answers

    def _emit_answer(self, out: _Out, proto: str, ans: _Answer, arrival: float) -> None:
        s = self.settings
        if proto in CAN_PROTOCOLS:
            ident = ans.ecu.can_id_29 if is_29bit(proto) else ans.ecu.can_id_11
            frames = isotp_frames(ans.message)
            if not s.cfc:
                frames = frames[:1]  # ATCFC0: the chip sends no flow control, so the ECU stops after its first frame
            if len(frames) == 1 and frames[0][0] >> 4 == 0:
                if s.caf and not s.headers:
                    out.emit(self.line(self.hexs(ans.message)), arrival)
                else:
                    out.emit(self.line(self.format_can_frame(ident, frames[0], s.caf)), arrival)
                return
            if s.caf and not s.headers:
                out.emit(self.line(self._hexnum(len(ans.message), 3)), arrival)
                out.emit(self.line(f"0: {self.hexs(frames[0][2:])}" if s.spaces else f"0:{self.hexs(frames[0][2:])}"),
                         arrival)
                for i, fr in enumerate(frames[1:], start=1):
                    sep = ": " if s.spaces else ":"
                    out.emit(self.line(f"{i & 0xF:X}{sep}{self.hexs(fr[1:])}"), arrival + i * CF_INTERVAL_S)
                return
            for i, fr in enumerate(frames):
                out.emit(self.line(self.format_can_frame(ident, fr, False)), arrival + i * CF_INTERVAL_S)
            return
        # legacy protocols: header + data + check byte with headers on, data alone with them off
        frame = legacy_header(proto, ans.ecu.address, len(ans.message)) + ans.message
        if s.headers:
            out.emit(self.line(self.hexs(frame + bytes([legacy_check(proto, frame)]))), arrival)
        else:
            out.emit(self.line(self.hexs(ans.message)), arrival)

    def format_can_frame(self, ident: int, frame: bytes, caf: bool, *, raw: bool = False) -> str:
        """One CAN frame as the chip prints it: header (H1), DLC (D1), then the bytes.

        With CAN auto-formatting a single frame is cut to its PCI length (padding hidden); raw frames
        (CAF0, ATMA) show all bytes.
        """
        s = self.settings
        data = frame
        if caf and not raw and frame and frame[0] >> 4 == 0:
            data = frame[:1 + (frame[0] & 0x0F)]
        parts = ""
        if s.headers or (raw and s.headers):
            if ident > 0x7FF:
                hb = ident.to_bytes(4, "big")
                parts += self.hexs(hb)
            else:
                parts += (f"{ident:03x}" if self.personality.lowercase_hex else f"{ident:03X}") + (
                    " " if s.spaces else "")
            if s.dlc:
                parts += f"{len(frame)}" + (" " if s.spaces else "")
        return parts + self.hexs(data)



@dataclass(frozen=True)
class _AtCall:
    """One AT command being executed: its match in the handler table, the echo and the CR's arrival."""

    m: re.Match[str]
    echo: bytes
    t_in: float


_FLAGS = {"E": "echo", "L": "linefeeds", "S": "spaces", "H": "headers", "D": "dlc", "CAF": "caf", "CFC": "cfc",
          "R": "responses", "M": "memory"}
"""On/off settings: ``AT<prefix>0`` / ``AT<prefix>1``."""

_OK_ONLY = (r"(AL|NL|AR|BI|SI|FI|KW[01]|V[01]|JE|JS|CEA([0-9A-F]{2})?|IB(10|48|96)|CP[0-9A-F]{2}|"
            r"CF[0-9A-F]{3}|CF[0-9A-F]{8}|CM[0-9A-F]{3}|CM[0-9A-F]{8}|FCSH[0-9A-F]{3}|"
            r"FCSH[0-9A-F]{8}|FCSD[0-9A-F]{2,10}|FCSM[0-2]|SW[0-9A-F]{2}|WM[0-9A-F]{6,12}|"
            r"SR[0-9A-F]{2}|RA[0-9A-F]{2}|TA[0-9A-F]{2}|CV[0-9]{4}|PP[0-9A-F]{2}(ON|OFF|SV[0-9A-F]{2})|"
            r"PPFFOFF|PPFFON|SD[0-9A-F]{2}|IIA[0-9A-F]{2}|CSM[01]|D0|D1|LP)")
"""Commands the chip accepts with a plain ``OK`` (their effect is not modelled; ATLP: low power, v1.4+)."""

_AT_TABLE: tuple[tuple[re.Pattern[str], Callable[[Elm327, _AtCall], Reply]], ...] = tuple(
    (re.compile(pattern), handler) for pattern, handler in (
        (r"Z", Elm327._at_z),
        (r"WS", Elm327._at_ws),
        (r"D", Elm327._at_d),
        (r"I", Elm327._at_i),
        (r"@1", Elm327._at_desc),
        (r"RV", Elm327._at_rv),
        (r"DP", Elm327._at_dp),
        (r"DPN", Elm327._at_dpn),
        (r"(E|L|S|H|D|CAF|CFC|R|M)([01])", Elm327._at_flag),
        (r"AT([012])", Elm327._at_adaptive),
        (r"ST([0-9A-F]{2})", Elm327._at_st),
        (r"(SP|TP)(A?[0-9A-C]|00)", Elm327._at_sp),
        (r"SH([0-9A-F]{3}|[0-9A-F]{6}|[0-9A-F]{8})", Elm327._at_sh),
        (r"CRA([0-9A-F]{3}|[0-9A-F]{8})?", Elm327._at_cra),
        (r"PC", Elm327._at_pc),
        (r"BRD([0-9A-F]{2})", Elm327._at_brd),
        (r"BRT([0-9A-F]{2})", Elm327._at_brt),
        (r"MA|MR|MT|M[RT][0-9A-F]{2}", Elm327._at_monitor),
        (r"CS", Elm327._at_cs),
        (_OK_ONLY, Elm327._ok),
        (r"PPS", Elm327._at_pps),
        (r"RD", Elm327._at_rd),
    ))
"""AT command (without ``AT``, upper case, no spaces) → handler; the first full match wins, so the order
matters only where patterns overlap (``D`` before the flag ``D0/D1``, both before the plain-OK list)."""


class _Out:
    """Schedules a reply's lines on the chip's UART: a line leaves when it is ready and the UART is free."""

    def __init__(self, elm: Elm327, reply: Reply, start: float) -> None:
        self.elm = elm
        self.reply = reply
        self.uart_free = start

    def emit(self, data: bytes, ready: float) -> None:
        """Queue ``data``, available at ``ready``; it leaves when the UART is free."""
        if not data:
            return
        if self.elm.fast:
            self.reply.chunks.append(Chunk(0.0, data))
            return
        begin = max(ready, self.uart_free)
        self.uart_free = begin + serial_time(len(data), self.elm.baud)
        self.reply.chunks.append(Chunk(self.uart_free, data))

    def done(self, ready: float) -> Reply:
        """Close the reply with the blank line and prompt, no earlier than ``ready``."""
        tail = self.elm.tail
        if self.elm.fast:
            self.reply.chunks.append(Chunk(0.0, tail))
            return self.reply
        begin = max(ready, self.uart_free)
        end = begin + serial_time(len(tail), self.elm.baud)
        self.reply.chunks.append(Chunk(end, tail))
        self.reply.ended_at = end
        return self.reply

