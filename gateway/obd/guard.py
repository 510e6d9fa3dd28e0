"""The write guard: the only bytes that may ever reach the car. Sans-I/O; the transports call it.

obd-gateway is read-only toward the vehicle *by construction*: every byte stream to an ELM327-family
adapter passes :meth:`ElmWriteGuard.check` inside ``Transport.write`` and every raw CAN frame passes
:meth:`CanWriteGuard.check` inside ``CanTransport.send`` — the lowest write points, below every session,
so no caller (a bug, a new feature, a recovery path) can get past it. What passes:

* AT/ST commands from an allow-list (the ELM327 datasheet's and the STN11xx reference's configuration and
  identification commands). Commands that would make the adapter itself send arbitrary bytes to the bus are
  refused: ``ATWM`` (the periodic wake-up message), ``ATPP`` (programmable parameters), ``STPX`` (send an
  arbitrary frame) and anything not listed.
* OBD requests of the read services 01, 02, 03, 07, 09, 0A (SAE J1979) and 21, 22 (KWP2000
  ReadDataByLocalIdentifier, UDS ReadDataByIdentifier), one line per write, at most 7 bytes (one ISO-TP
  single frame), optionally followed by the response-count digit.
* Service 04 (clear DTCs and the MIL) only under a one-shot permit (:meth:`ElmWriteGuard.permit_clear`)
  whose caller is still waiting at the moment the line is written.

And *when*: an ELM327 that receives a byte while it is answering prints ``STOPPED``, loses the character
that interrupted it, and runs the rest of the line (ELM327 datasheet, "Interrupting the ELM327"). A request
written before the ``>`` prompt can therefore turn ``010C1`` into ``10C1`` — service 0x10,
DiagnosticSessionControl. So an OBD request line is refused unless the adapter has printed its prompt since
the previous write; an AT/ST line (which, shortened by its first character, starts with ``T`` and is never
hex) may be written to get a silent chip back. A bare CR repeats the previous command on an ELM327, so it is
refused after a service 04 line.

A refusal raises :class:`~gateway.errors.DisallowedRequest` before any byte leaves: it is always a bug in
the caller, never the car's or the adapter's fault.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from gateway.errors import DisallowedRequest

#: services that only read (SAE J1979 modes 01 02 03 07 09 0A; KWP2000 0x21, UDS 0x22)
READ_SERVICES = frozenset({0x01, 0x02, 0x03, 0x07, 0x09, 0x0A, 0x21, 0x22})
CLEAR_DTCS = 0x04
#: an ISO-TP single frame carries the service byte and at most six more
MAX_REQUEST_BYTES = 7
MAX_LINE_CHARS = 48

_AT_COMMANDS = re.compile(
    r"^AT(?:"
    r"Z|WS|D|I|@1|@2|RV|DP|DPN|LP|PC|CS|AR|AL|NL|FI|SI|MA"
    r"|[ELSHRMV][01]|CAF[01]|CFC[01]|D[01]|KW[01]|AT[012]"
    r"|TP?A?[0-9A-C]|SPA?[0-9A-C]"
    r"|(?:ST|BRD|BRT|CP|SW|IIA|SR|RA)[0-9A-F]{2}"
    r"|IB(?:10|48|96)"
    r"|SH(?:[0-9A-F]{3}|[0-9A-F]{6}|[0-9A-F]{8})"
    r"|CRA(?:[0-9A-FX]{3}|[0-9A-FX]{8})?|CF[0-9A-F]{3,8}|CM[0-9A-F]{3,8}|CEA(?:[0-9A-F]{2})?"
    r"|FCSH(?:[0-9A-F]{3}|[0-9A-F]{6}|[0-9A-F]{8})|FCSD3[0-2][0-9A-F]{0,12}|FCSM[0-2]"
    r")$"
)
# STN11xx/STN2xxx (OBDLink) family reference: identification, baud rate, sleep and CAN segmentation settings.
_ST_COMMANDS = re.compile(
    r"^ST(?:I|DI|DIX|SN|MFR|SBR\d{4,7}|BR\d{4,7}|SLEEP\d{0,5}|SLU[01]?|SLX|SLCS|CSEG[RT][01])$"
)
_HEX = re.compile(r"^[0-9A-F]+$")


def _normalise(line: bytes) -> str:
    return line.decode("ascii", errors="replace").replace(" ", "").upper()


def request_service(body: str) -> tuple[int, int] | None:
    """(service, request bytes) of a hex OBD request line (without CR), None when not hex.

    An odd number of digits means the last one is the ELM327's response-count digit."""
    if not body or not _HEX.match(body):
        return None
    digits = body[:-1] if len(body) % 2 else body
    if len(digits) < 2:
        return None
    return int(digits[:2], 16), len(digits) // 2


class ElmWriteGuard:
    """Checks every write to an ELM327-family adapter; fed every chunk read so it sees the prompts."""

    def __init__(self) -> None:
        # None: nothing known yet (just opened) — treated like "answering": only AT/ST lines until a prompt
        self._prompt_seen: bool | None = None
        self._clear_wanted: Callable[[], bool] | None = None
        self._last_was_clear = False
        #: refusals so far, and the last one's reason (status shows them; any refusal is a bug)
        self.refused = 0
        self.last_refusal = ""
        #: OBD request lines let through (each one goes on the car's bus); AT/ST lines stay in the adapter
        self.requests = 0

    # -- what the transport tells the guard --------------------------------------------------------
    def saw_input(self, chunk: bytes) -> None:
        """Bytes arrived from the adapter; a ``>`` means it waits for the next command."""
        if b">" in chunk:
            self._prompt_seen = True

    def reset(self) -> None:
        """The link was (re)opened: the adapter's state is unknown again."""
        self._prompt_seen = None
        self._last_was_clear = False

    # -- the clear-DTC permit ----------------------------------------------------------------------
    @contextlib.contextmanager
    def permit_clear(self, still_wanted: Callable[[], bool]) -> Iterator[None]:
        """Allow one service 04 line while the block runs, and only while ``still_wanted()`` is true
        at the moment it is written (the technician who confirmed it is still waiting)."""
        self._clear_wanted = still_wanted
        try:
            yield
        finally:
            self._clear_wanted = None

    # -- the check ---------------------------------------------------------------------------------
    def check(self, data: bytes) -> None:
        """Raise DisallowedRequest unless ``data`` may be written now; note it as written otherwise."""
        if data == b"\r":
            self._bare_cr()
            return
        if not data.endswith(b"\r") or b"\r" in data[:-1] or b"\n" in data:
            self._refuse(f"one command line ending in CR per write, got {data[:MAX_LINE_CHARS]!r}")
        if len(data) > MAX_LINE_CHARS + 1:
            self._refuse(f"a {len(data)}-byte line is longer than any command we send")
        body = _normalise(data[:-1])
        if body.startswith(("AT", "ST")):
            if not (_AT_COMMANDS.match(body) or _ST_COMMANDS.match(body)):
                self._refuse(f"{body!r} is not an allowed adapter command")
            self._written(clear=False)
            return
        clear = self._request(body)
        self.requests += 1
        self._written(clear=clear)

    def check_burst(self, lines: Sequence[bytes]) -> None:
        """Check a link-pump burst before any of it is written (see :mod:`gateway.transport.pump`).

        Only OBD read-service request lines (no AT/ST line, never service 04, no bare CR), each passing
        :meth:`check` as if written at a prompt, and the first one at a prompt the guard saw: the pump
        writes each following line only after the previous answer's prompt. Nothing is noted as written
        here; :meth:`burst_written` does that after the burst."""
        if self._prompt_seen is not True:
            self._refuse("a burst must start at the adapter's prompt")
        for data in lines:
            if not data.endswith(b"\r") or b"\r" in data[:-1] or b"\n" in data or len(data) > MAX_LINE_CHARS + 1:
                self._refuse(f"one request line ending in CR per burst line, got {data[:MAX_LINE_CHARS]!r}")
            body = _normalise(data[:-1])
            parsed = request_service(body)
            if parsed is None or body.startswith(("AT", "ST")):
                self._refuse(f"{body!r}: a burst carries OBD requests only")
            service, size = parsed
            if service not in READ_SERVICES or size > MAX_REQUEST_BYTES:
                self._refuse(f"{body!r}: a burst carries read-service requests of at most {MAX_REQUEST_BYTES} bytes")

    def burst_written(self, sent: int, answered: int) -> None:
        """A burst wrote ``sent`` lines and read ``answered`` prompts (each after its own line)."""
        self.requests += sent
        if sent:
            self._prompt_seen = answered >= sent
            self._last_was_clear = False

    def _bare_cr(self) -> None:
        # ATBRD's handshake answer; on a chip at its prompt a bare CR repeats the last command
        if self._last_was_clear:
            self._refuse("a bare CR would repeat the previous service 04 request")
        if self._prompt_seen:
            self.requests += 1  # at a prompt a bare CR repeats the last request (ATBRD's CR comes without one)
        self._prompt_seen = False

    def _request(self, body: str) -> bool:
        """Check an OBD request line; whether it is the (permitted) clear."""
        parsed = request_service(body)
        if parsed is None:
            self._refuse(f"{body!r} is neither an adapter command nor a hex OBD request")
        service, size = parsed
        if size > MAX_REQUEST_BYTES:
            self._refuse(f"{body!r}: an OBD request is at most {MAX_REQUEST_BYTES} bytes")
        if self._prompt_seen is not True:
            self._refuse(f"{body!r} written before the adapter's prompt: a busy ELM327 would run it shortened")
        if service == CLEAR_DTCS:
            wanted = self._clear_wanted
            if wanted is None or not wanted():
                self._refuse("service 04 (clear DTCs) without a confirmed request whose caller is still waiting")
            self._clear_wanted = None  # one line per permit
            return True
        if service not in READ_SERVICES:
            self._refuse(f"service {service:02X} is not a read service")
        return False

    def _written(self, *, clear: bool) -> None:
        self._prompt_seen = False
        self._last_was_clear = clear

    def _refuse(self, why: str) -> NoReturn:
        self.refused += 1
        self.last_refusal = why
        raise DisallowedRequest(f"write guard: {why}")


class CanWriteGuard:
    """Checks every raw CAN frame: ISO-TP single frames of read services to diagnostic identifiers,
    and flow-control frames; service 04 only under a permit, as for the ELM327."""

    def __init__(self) -> None:
        self._clear_wanted: Callable[[], bool] | None = None
        self.refused = 0
        self.last_refusal = ""
        #: request frames let through (flow control not counted: it only continues an answer)
        self.requests = 0

    @contextlib.contextmanager
    def permit_clear(self, still_wanted: Callable[[], bool]) -> Iterator[None]:
        """See :meth:`ElmWriteGuard.permit_clear`."""
        self._clear_wanted = still_wanted
        try:
            yield
        finally:
            self._clear_wanted = None

    def check(self, arb_id: int, data: bytes, extended: bool) -> None:
        """Raise DisallowedRequest unless the frame may be sent."""
        # 29-bit: functional 18DB33F1 or physical 18DAxxF1; 11-bit: the OBD/UDS diagnostic range
        ok_id = (arb_id == 0x18DB33F1 or arb_id & 0xFFFF00FF == 0x18DA00F1) if extended else 0x700 <= arb_id <= 0x7FF
        if not ok_id:
            self._refuse(f"identifier {arb_id:X} is not a diagnostic request identifier")
        if not 1 <= len(data) <= 8:
            self._refuse(f"a CAN frame carries 1-8 bytes, got {len(data)}")
        kind = data[0] >> 4
        if kind == 0x3:  # ISO 15765-2 flow control: carries no service
            return
        if kind != 0x0:
            self._refuse("only single-frame requests are sent (a request never needs more)")
        size = data[0] & 0x0F
        if not 1 <= size <= min(MAX_REQUEST_BYTES, len(data) - 1):
            self._refuse(f"single frame with length {size}")
        service = data[1]
        if service == CLEAR_DTCS:
            wanted = self._clear_wanted
            if wanted is None or not wanted():
                self._refuse("service 04 (clear DTCs) without a confirmed request whose caller is still waiting")
            self._clear_wanted = None
        elif service not in READ_SERVICES:
            self._refuse(f"service {service:02X} is not a read service")
        self.requests += 1

    def _refuse(self, why: str) -> NoReturn:
        self.refused += 1
        self.last_refusal = why
        raise DisallowedRequest(f"write guard: {why}")
