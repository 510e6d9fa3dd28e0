"""The adapter zoo: personalities of the ELM327-family adapters people actually plug in.

Each personality is one :class:`Personality` value: a table of traits the chip
(:class:`firmware_sim.elm327.Elm327`) consults, never scattered ``if name == ...`` tests. Every trait
names the public source it models in :data:`PERSONALITIES` (``sources``) and in docs/simulator.md
("The adapter zoo"); where no public figure exists the doc says the value is an assumption.

Sources referred to below (public):

* ELM327 datasheet (ELM Electronics, ELM327DS, e.g. the copy in PowerBroker2/ELMduino ``reference/ELM327DS.pdf``):
  "Interrupting the ELM327" (STOPPED, the interrupting character is not kept), "Multiple PID requests"
  (up to 6 PIDs per mode-01 request on CAN), "Response count" digit (v1.3+), AT BRD / AT BRT, AT LP (v1.4+),
  AT command table by version (elmelectronics.com ``AT_Command_Table.pdf``, cited in brendan-w/python-OBD #90).
* ELMduino #241 (a cheap "ELM327 v2.1"): lines end ``\\r\\n`` and the prompt follows the last line with no
  blank line (``ATE0\\rOK\\r\\n>``, ``ATZ\\rELM327 v2.1\\r\\n>``).
* ELMduino #254: a clone answering ``?`` to ``010C1`` (the response-count digit rejected).
* brendan-w/python-OBD #150 and #227: fake "ELM327 v1.5" adapters whose answers still carry the echo after
  ATE0 ("ATH1 did not return 'OK', or echoing is still ON").
* cedricp/ddt4all #16 and uholeschak/ediabaslib #23: v1.5 Wi-Fi clones answering ``?`` to AT commands a
  genuine chip knows (``AT FC SH``, ``AT FC SM``, ``ATCSM0``, ``ATJE``); stanleyhuangyc/Freematics #128
  (``AT SP Ah``, ``AT TP``, ``AT D``, ``AT RD`` missing on an ELM327-compatible).
* OBDLink (STN11xx) — OBD Solutions "OBDLink Family Reference and Programming Manual" (FRPM): ST commands
  ``STI``, ``STDI``, ``STMFR``, ``STSN``, ``STSBR``; transcript of an OBDLink SX
  (gist JamesHagerman/18047979da6f4fd680eb):
  ``ATI`` → ``ELM327 v1.3a``, ``STDI`` → ``OBDLink SX r4.2``, ``STI`` → ``STN1130 v4.0.1``, default 115200 baud,
  ``ST SBR`` to change the UART rate; Ircama/ELM327-emulator #17 (an OBDLink SX needs 115200 8N1).
* espressif/ESP8266_AT wiki, CIPSEND: in transparent (UART↔TCP) mode the module sends "20ms interval
  between each packet" — the bridge most Wi-Fi clones are built on.
* Bluetooth Core Specification: LE connection interval 7.5 ms … 4 s (1.25 ms steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

COUNT_HONOURED = "honoured"  # the chip stops listening after that many answers (datasheet, v1.3+)
COUNT_IGNORED = "ignored"  # accepted, but the chip waits as if it were absent
COUNT_REJECTED = "rejected"  # any request with the digit answers "?"


@dataclass(frozen=True)
class Personality:
    """Traits of one adapter model, as data. The defaults are the genuine ELM327 (today's simulator)."""

    name: str
    summary: str
    version: str = "ELM327 v1.5"  # ATI / ATZ identification string
    max_pids: int = 6  # mode-01 PIDs per request on CAN; more answer "?"
    count_digit: str = COUNT_HONOURED
    count_digit_max_pids: int = 6  # the count digit is accepted with at most this many PIDs; more: "?"
    missing_at: tuple[str, ...] = ()  # AT commands (regex, without "AT") answered "?"
    crlf: bool = False  # lines end CR LF whatever ATL says
    blank_line: bool = True  # a blank line before the prompt (and around the ATZ banner)
    sticky_echo: bool = False  # ATE0 answers OK but the echo stays on
    lowercase_hex: bool = False  # hex digits of answers in lower case
    pipelining: bool = False  # lines queued behind an OBD request are answered in order (no STOPPED)
    st_commands: tuple[tuple[str, str], ...] = ()  # fixed answers of STN "ST" commands (command, answer)
    stsbr: bool = False  # STSBR <baud>: switch the UART rate (STN)
    baud: int = 38400  # power-up UART rate
    link_latency_s: float = 0.0  # added to every exchange by a Wi-Fi / BLE bridge (not in --fast)
    sources: tuple[str, ...] = field(default=())

    def accepts(self, service: int, pids: int, count: bool) -> bool:
        """Whether the chip takes a request of ``pids`` PIDs (mode 01; other services count as 1)."""
        n = pids if service == 0x01 else 1
        if n > self.max_pids:
            return False
        return not (count and (self.count_digit == COUNT_REJECTED or n > self.count_digit_max_pids))

    @property
    def count_usable(self) -> bool:
        """Whether the response-count digit can shorten an exchange at all."""
        return self.count_digit == COUNT_HONOURED


_CLONE_MISSING = (r"SPA[0-9A-C]", r"TPA[0-9A-C]", r"BRD[0-9A-F]{2}", r"BRT[0-9A-F]{2}", r"LP", r"AT[012]",
                  r"FCSH[0-9A-F]+", r"FCSM[0-2]", r"CSM[01]", r"JE", r"JS")
"""AT commands cheap clones answer ``?`` to (issue #12's list: ATSPA, ATBRD, ATLP, ATAT; ddt4all #16 and
ediabaslib #23 transcripts: AT FC SH, AT FC SM, ATCSM, ATJE)."""

GENUINE = Personality(
    name="genuine",
    summary="genuine ELM327 v1.5/v2.x semantics: STOPPED on input while answering, 6 PIDs per request, "
            "count digit honoured, ATBRD",
    sources=("ELM327 datasheet: Interrupting the ELM327; Multiple PID requests; response count digit; AT BRD",),
)

PERSONALITIES: dict[str, Personality] = {p.name: p for p in (
    GENUINE,
    Personality(
        name="clone-v15",
        summary="cheap 'ELM327 v1.5' clone: one PID per request, count digit ignored, ATSPA/ATBRD/ATLP/ATAT "
                "missing, echo stays on after ATE0",
        max_pids=1,
        count_digit=COUNT_IGNORED,
        missing_at=_CLONE_MISSING,
        sticky_echo=True,
        sources=("python-OBD #150/#227 (echo still on after ATE0, fake v1.5)", "ddt4all #16, ediabaslib #23 "
                 "(AT commands answered ?)", "issue #12 item 5 (no multi-PID, count digit ignored)"),
    ),
    Personality(
        name="clone-v21",
        summary="cheap 'ELM327 v2.1' clone: 3 PIDs at most, count digit rejected (?), CR LF line ends and no "
                "blank line before the prompt, lowercase hex, ATBRD/ATLP/ATAT missing",
        version="ELM327 v2.1",
        max_pids=3,
        count_digit=COUNT_REJECTED,
        missing_at=_CLONE_MISSING,
        crlf=True,
        blank_line=False,
        lowercase_hex=True,
        sources=("ELMduino #241 (v2.1 clone: \\r\\n endings, no blank line)", "ELMduino #254 (010C1 → ?)",
                 "issue #12 item 5 (3 PIDs at most, lowercase hex: no public transcript found, assumption)"),
    ),
    Personality(
        name="clone-3pid",
        summary="the clone of issue #12 failure 2: 3-PID requests without the count digit and 1-PID requests "
                "with it work; 6 PIDs (with or without count) and 2+ PIDs with count answer ?",
        max_pids=3,
        count_digit_max_pids=1,
        missing_at=_CLONE_MISSING,
        sources=("issue #12 failure 2 (observed adapter, transcript in the issue)",),
    ),
    Personality(
        name="stn",
        summary="OBDLink / STN11xx: ELM327 command set plus ST commands (STI, STDI, STSBR), 115200 baud at "
                "power-up, STOPPED like the ELM327",
        version="ELM327 v1.3a",
        st_commands=(("I", "STN1130 v4.0.1"), ("DI", "OBDLink SX r4.2"), ("MFR", "ScanTool.net LLC"),
                     ("SN", "113010745724"), ("SLEEP", "OK")),
        stsbr=True,
        baud=115200,
        sources=("OBDLink FRPM (STN11xx reference manual): STI, STDI, STMFR, STSN, STSBR",
                 "gist JamesHagerman/18047979da6f4fd680eb (OBDLink SX transcript, 115200 default)",
                 "Ircama/ELM327-emulator #17 (OBDLink SX at 115200 8N1)"),
    ),
    Personality(
        name="wifi-clone",
        summary="Wi-Fi v1.5 clone (ESP8266 UART-TCP bridge): clone-v15 traits plus 20 ms per exchange",
        max_pids=1,
        count_digit=COUNT_IGNORED,
        missing_at=_CLONE_MISSING,
        sticky_echo=True,
        link_latency_s=0.020,
        sources=("espressif/ESP8266_AT wiki CIPSEND: 20 ms between packets in transparent mode",
                 "ddt4all #16, ediabaslib #23 (Wi-Fi v1.5 clones, AT commands answered ?)"),
    ),
    Personality(
        name="ble-clone",
        summary="BLE v2.1 clone: clone-v21 traits plus 30 ms per exchange (two LE connection events at 15 ms; "
                "an assumption)",
        version="ELM327 v2.1",
        max_pids=3,
        count_digit=COUNT_REJECTED,
        missing_at=_CLONE_MISSING,
        crlf=True,
        blank_line=False,
        lowercase_hex=True,
        link_latency_s=0.030,
        sources=("Bluetooth Core Specification: LE connection interval 7.5 ms - 4 s; 2 x 15 ms is an assumption",
                 "ELMduino #241, #254 (v2.1 clone traits)"),
    ),
)}
"""Every personality by name; ``genuine`` is the default."""

LINE_BUFFERING = Personality(
    name="genuine-pipelining",
    summary="a line-buffering adapter (--pipelining): answers queued lines in order, no STOPPED",
    pipelining=True,
    sources=("Automatic adapter, reference streaming section (the existing --pipelining model)",),
)


def personality(name: str) -> Personality:
    """The personality called ``name``; ValueError listing the known names otherwise."""
    try:
        return PERSONALITIES[name]
    except KeyError:
        raise ValueError(f"unknown adapter {name!r}; known: {', '.join(PERSONALITIES)}") from None


@dataclass(frozen=True)
class Ceiling:
    """The theoretical ceiling of one personality for a PID set: the best request form and its rate."""

    values_per_s: float
    pids_per_request: int
    count_digit: bool
    baud: int


def ceiling(p: Personality, pids: list[int], *, baud: int | None = None) -> Ceiling:
    """Values/s of the fastest request form ``p`` accepts for ``pids``, one request at a time.

    Every form the personality allows (1 … ``max_pids`` PIDs per request, with the count digit where it
    is honoured and accepted) is tried; each exchange's duration comes from
    :func:`firmware_sim.timing.form_ceiling` with the exact bytes the personality's own chip prints
    (echo that stays on, CR LF, no blank line, …) and its bridge latency. Non-pipelined: a genuine ELM327
    answers STOPPED to a request written before its prompt, and clones are no better.
    """
    from firmware_sim.simulator import Simulator
    from firmware_sim.timing import TimingModel, form_ceiling

    rate = baud or p.baud
    sim = Simulator(seed=1, fast=True, adapter=p)
    sim.advance(5.0)  # engine running, as in a measured run
    best = Ceiling(0.0, 1, False, rate)
    try:
        for k in range(1, p.max_pids + 1):
            counts = [False] + ([True] if p.count_usable and k <= p.count_digit_max_pids else [])
            for count in counts:
                elm = sim.new_elm()
                for c in (b"ATE0", b"ATL0", b"ATS0", b"ATH0", b"ATSP6", b"ATSH7E0", b"0100"):
                    elm.execute(c)
                exchanges = []
                for i in range(0, len(pids), k):
                    group = pids[i:i + k]
                    line = ("01" + "".join(f"{x:02X}" for x in group) + ("1" if count else "")).encode()
                    out = elm.execute(line).data()
                    if b"?" in out or b"NO DATA" in out:
                        break
                    echo = len(line) + 1 if out.startswith(line) else 0
                    exchanges.append((len(group), len(line) + 1, len(out) - echo - len(elm.tail), echo))
                else:
                    per_s = form_ceiling(TimingModel(baud=rate), exchanges, prompt_bytes=len(elm.tail),
                                         count_satisfied=count, link_latency=p.link_latency_s)
                    if per_s > best.values_per_s:
                        best = Ceiling(per_s, k, count, rate)
    finally:
        sim.stop()
    return best
