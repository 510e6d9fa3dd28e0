"""Sans-I/O classifier of ELM327 output: one block (everything before the ``>`` prompt) → an Answer.

No I/O and no state: the session feeds it bytes and acts on the kind. :func:`raise_for` turns an
error kind into the matching exception of :mod:`gateway.errors`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from gateway.errors import AdapterReset, BusError, NoDataError, Stopped, UnsupportedCommand


class Kind(enum.Enum):
    """What one answer block is."""

    DATA = "data"  # hex lines (and possibly stray noise)
    OK = "ok"  # an AT command's OK
    TEXT = "text"  # other AT answers: ATI, ATRV, ATDPN ...
    NO_DATA = "no data"
    UNKNOWN_COMMAND = "?"
    BUS_ERROR = "bus error"  # CAN ERROR, BUS ERROR, UNABLE TO CONNECT, BUFFER FULL ...
    STOPPED = "stopped"
    RESET = "reset"  # the banner appeared: the chip reset
    EMPTY = "empty"


# Progress lines the chip prints before answers; they carry no data.
_PROGRESS = ("SEARCHING...", "BUS INIT", "BUSINIT")
_BUS_ERRORS = (
    "CAN ERROR",
    "BUS ERROR",
    "BUS BUSY",
    "BUSBUSY",
    "FB ERROR",
    "DATA ERROR",
    "<DATA ERROR",
    "<RX ERROR",
    "RX ERROR",
    "UNABLE TO CONNECT",
    "BUFFER FULL",
    "LV RESET",
    "ACT ALERT",
    "OUT OF MEMORY",
)
_ERR_CODE = re.compile(r"^ERR\d\d$")
_BANNER = re.compile(r"(ELM327|OBDII|OBDLINK|STN\d+|VGATE)[^\r\n]*v?\d", re.IGNORECASE)
_BANNER_EXPECTED = frozenset({"ATZ", "ATWS", "ATI", "AT@1", "STI", "STDI"})
_HEX_LINE = re.compile(r"^(?:[0-9A-F]{1,2}:)?(?: ?[0-9A-F])+ ?$")


@dataclass(frozen=True, slots=True)
class Answer:
    """One classified block.

    ``lines``: the meaningful lines (echo, progress and blank lines removed); ``data``: the hex
    lines of a DATA answer as bytes joined with ``\\r`` (what the parser reads); ``noise``: lines
    that were neither data nor a known message; ``error``: the error text when ``kind`` is an error.
    """

    kind: Kind
    lines: tuple[str, ...]
    data: bytes = b""
    noise: tuple[str, ...] = ()
    echo: bool = False
    error: str = ""

    @property
    def text(self) -> str:
        """The meaningful lines joined by a space (``ELM327 v1.5``, ``12.4V``)."""
        return " ".join(self.lines)


def split_lines(block: bytes) -> list[str]:
    """Lines of ``block`` without NULs, prompt and blank lines, stripped."""
    text = block.replace(b"\x00", b"").decode("ascii", errors="replace").replace(">", "")
    return [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]


def _is_echo(line: str, sent: str) -> bool:
    return bool(sent) and line.replace(" ", "").upper() == sent


def _meaningful(raw: list[str], sent_s: str) -> tuple[list[str], bool]:
    """The lines that carry an answer (echo of ``sent_s`` and progress lines removed), and whether an
    echo was seen."""
    echo = False
    lines: list[str] = []
    for ln in raw:
        if not echo and not lines and _is_echo(ln, sent_s):
            echo = True
            continue
        if ln.upper().startswith(_PROGRESS):
            continue
        lines.append(ln)
    return lines, echo


def _error(lines: list[str], upper: list[str], sent_s: str, echo: bool) -> Answer | None:
    """The answer when the block is one of the chip's messages (STOPPED, a reset banner, ``?``, a bus
    error, NO DATA without data), else None."""
    if any(ln.startswith("STOPPED") for ln in upper):
        return Answer(Kind.STOPPED, tuple(lines), echo=echo, error="STOPPED")
    if sent_s not in _BANNER_EXPECTED:
        for i, ln in enumerate(upper):
            if _BANNER.search(ln):  # a banner in answer to anything else: the chip reset on its own
                return Answer(Kind.RESET, tuple(lines[i:]), echo=echo, error=lines[i])
    if "?" in upper:
        return Answer(Kind.UNKNOWN_COMMAND, tuple(lines), echo=echo, error="?")
    for ln in upper:
        if ln.startswith(_BUS_ERRORS) or _ERR_CODE.match(ln):
            return Answer(Kind.BUS_ERROR, tuple(lines), echo=echo, error=ln)
    no_data = any(ln.replace(" ", "").startswith("NODATA") for ln in upper)
    if no_data and not any(_HEX_LINE.match(ln) for ln in upper):
        return Answer(Kind.NO_DATA, tuple(lines), echo=echo, error="NO DATA")
    return None


#: the bytes of plain hex data answers (digits, spaces, ``0:`` segment indices, line ends)
_PLAIN = frozenset(b"0123456789ABCDEFabcdef :\r\n")


def classify(block: bytes, sent: bytes = b"") -> Answer:
    """Classify the output for one command ``sent`` (without the prompt)."""
    sent_s = sent.decode("ascii", errors="replace").strip().replace(" ", "").upper()
    if _PLAIN.issuperset(block) and not sent_s.startswith(("AT", "ST")):
        return _classify_plain(block, sent_s)
    return _classify(block, sent_s)


def _classify_plain(block: bytes, sent_s: str) -> Answer:
    """:func:`classify` of a block of plain hex characters, the common case (issue 19: ~5× faster).

    Every message of the chip (STOPPED, NO DATA, ``?``, the bus errors, a banner, the progress lines)
    holds a letter beyond F, a ``?`` or a ``<``, so such a block holds none: only the echo, data lines
    and noise are left to tell apart. The result is the same Answer (tests/link/test_responses_plain.py)."""
    raw = [ln.strip() for ln in block.decode("ascii").replace("\n", "\r").split("\r")]
    lines = [ln for ln in raw if ln]
    echo = bool(lines) and _is_echo(lines[0], sent_s)
    if echo:
        del lines[0]
    if not lines:
        return Answer(Kind.EMPTY, (), echo=echo)
    data_lines: list[str] = []
    noise: list[str] = []
    for ln in lines:
        up = ln.upper()
        if _HEX_LINE.match(up):
            data_lines.append(up)
        else:
            noise.append(ln)
    if not data_lines:
        return Answer(Kind.TEXT, tuple(lines), noise=tuple(noise), echo=echo)
    return Answer(Kind.DATA, tuple(lines), data="\r".join(data_lines).encode("ascii"), noise=tuple(noise), echo=echo)


def _classify(block: bytes, sent_s: str) -> Answer:
    lines, echo = _meaningful(split_lines(block), sent_s)
    if not lines:
        return Answer(Kind.EMPTY, (), echo=echo)
    upper = [ln.upper() for ln in lines]
    error = _error(lines, upper, sent_s, echo)
    if error is not None:
        return error
    if sent_s.startswith(("AT", "ST")):
        kind = Kind.OK if upper == ["OK"] else Kind.TEXT
        return Answer(kind, tuple(lines), echo=echo)
    data_lines = [ln for ln in upper if _HEX_LINE.match(ln)]
    noise = tuple(ln for ln in lines if not _HEX_LINE.match(ln.upper()) and ln.upper() != "NO DATA")
    if not data_lines:
        return Answer(Kind.TEXT, tuple(lines), noise=noise, echo=echo)
    return Answer(Kind.DATA, tuple(lines), data="\r".join(data_lines).encode("ascii"), noise=noise, echo=echo)


def raise_for(answer: Answer) -> None:
    """Raise the :mod:`gateway.errors` exception for an error answer; return for the others."""
    kind = answer.kind
    if kind is Kind.NO_DATA:
        raise NoDataError("NO DATA")
    if kind is Kind.BUS_ERROR:
        raise BusError(answer.error)
    if kind is Kind.UNKNOWN_COMMAND:
        raise UnsupportedCommand("the adapter answered '?'")
    if kind is Kind.STOPPED:
        raise Stopped("STOPPED")
    if kind is Kind.RESET:
        raise AdapterReset(f"the adapter reset ({answer.error})")


def parse_version(text: str) -> str:
    """``ELM327 v1.5`` → ``1.5``; '' when absent."""
    m = re.search(r"v(\d+(?:\.\d+)*)", text, re.IGNORECASE)
    return m.group(1) if m else ""


def parse_voltage(text: str) -> float | None:
    """``12.4V`` → 12.4; None when unreadable."""
    m = re.search(r"(\d{1,2}(?:\.\d+)?)\s*V", text.upper())
    return float(m.group(1)) if m else None


def parse_protocol_number(text: str) -> tuple[str, bool] | None:
    """ATDPN's ``A6`` → (``6``, auto) ; ``6`` → (``6``, False); None when unreadable."""
    t = text.strip().upper()
    auto = t.startswith("A")
    if auto:
        t = t[1:]
    if len(t) == 1 and t in "0123456789ABC":
        return t, auto
    return None
