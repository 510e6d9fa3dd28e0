"""Pure builders of ELM327 command lines (bytes ending in ``\\r``); no I/O, no state.

AT commands follow the ELM327 datasheet; OBD requests are hex service + PID bytes, optionally
followed by the response-count digit (``010C1``: expect one answer, so the chip need not wait
for the ST time-out before printing the prompt).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.obd.protocols import MAX_PIDS_PER_REQUEST

CR = b"\r"
PROMPT = b">"
#: the ELM327's own clock: ATBRD's argument divides it
BRD_CLOCK_HZ = 4_000_000


def at(body: str) -> bytes:
    """``AT<body>\\r``."""
    return f"AT{body}".encode("ascii") + CR


def reset() -> bytes:
    """ATZ: full reset (the chip prints its banner, about 1 s)."""
    return at("Z")


def warm_start() -> bytes:
    """ATWS: warm start, quicker than ATZ and answered by clones that hang on ATZ."""
    return at("WS")


def defaults() -> bytes:
    """ATD: all settings to defaults."""
    return at("D")


def echo(on: bool) -> bytes:
    """ATE0 / ATE1."""
    return at("E1" if on else "E0")


def linefeeds(on: bool) -> bytes:
    """ATL0 / ATL1."""
    return at("L1" if on else "L0")


def spaces(on: bool) -> bytes:
    """ATS0 / ATS1."""
    return at("S1" if on else "S0")


def headers(on: bool) -> bytes:
    """ATH0 / ATH1."""
    return at("H1" if on else "H0")


def identify() -> bytes:
    """ATI: the version string (``ELM327 v1.5``)."""
    return at("I")


def stn_identify() -> bytes:
    """STI: the STN chip's identity (OBDLink); ``?`` on a plain ELM327."""
    return b"STI" + CR


def describe_protocol_number() -> bytes:
    """ATDPN: the protocol in use (``A6`` when chosen automatically)."""
    return at("DPN")


def set_protocol(protocol: str, auto_fallback: bool = False) -> bytes:
    """ATSP<p> (``0`` is automatic); ``auto_fallback`` gives ATSPA<p>: try ``p`` first, then search."""
    p = protocol.upper()
    if p in ("AUTO", "0"):
        return at("SP0")
    if not (len(p) == 1 and p in "123456789ABC"):
        raise ValueError(f"not an ELM327 protocol number: {protocol!r}")
    return at(f"SPA{p}" if auto_fallback else f"SP{p}")


def read_voltage() -> bytes:
    """ATRV: the voltage at the OBD connector's pin 16 (battery)."""
    return at("RV")


def adaptive_timing(mode: int) -> bytes:
    """ATAT0 (off), ATAT1 (normal, default), ATAT2 (aggressive)."""
    if mode not in (0, 1, 2):
        raise ValueError("adaptive timing mode must be 0, 1 or 2")
    return at(f"AT{mode}")


def set_timeout(ms: float) -> bytes:
    """ATST hh: how long to wait for an answer, in units of 4.096 ms (1-255)."""
    units = max(1, min(255, round(ms / 4.096)))
    return at(f"ST{units:02X}")


def set_header(header: int, protocol_is_can: bool = True, extended: bool = False) -> bytes:
    """ATSH: the request's header (``7E0`` physical to the engine, ``7DF`` functional).

    29-bit identifiers are given as their low three bytes (``DA10F1``), the form every ELM327
    version takes; the priority byte is the chip's default 18 (ATCP).
    """
    if protocol_is_can and not extended:
        return at(f"SH{header:03X}")
    return at(f"SH{header & 0xFFFFFF:06X}")


def can_receive_address(address: int | None, extended: bool = False) -> bytes:
    """ATCRA xxx filters answers to one ECU; ATCRA alone resets the filter."""
    if address is None:
        return at("CRA")
    return at(f"CRA{address:08X}" if extended else f"CRA{address:03X}")


def flow_control_header(header: int, extended: bool = False) -> bytes:
    """ATFCSH: the identifier of the flow-control frames the chip sends (used with ATFCSM1)."""
    return at(f"FCSH{header:08X}" if extended else f"FCSH{header:03X}")


def flow_control_data(stmin_ms: int = 0, block_size: int = 0) -> bytes:
    """ATFCSD 30 BS ST: clear to send, ``block_size`` frames per flow control (0: all), ``stmin_ms``
    between consecutive frames (ISO 15765-2; 0-127 ms)."""
    if not 0 <= stmin_ms <= 0x7F or not 0 <= block_size <= 0xFF:
        raise ValueError("STmin 0-127 ms, block size 0-255")
    return at(f"FCSD30{block_size:02X}{stmin_ms:02X}")


def stn_sleep() -> bytes:
    """STSLEEP: an STN chip's sleep (OBDLink STN11xx reference); UART activity wakes it."""
    return b"STSLEEP\r"


def low_power() -> bytes:
    """ATLP: the chip's low-power mode (ELM327 v2.0 and later); any byte wakes it."""
    return at("LP")


def baud_rate_divisor(baud: int) -> bytes:
    """ATBRD hh: ask for ``4 MHz / hh`` baud (the chip answers OK, then switches, see the session)."""
    divisor = round(BRD_CLOCK_HZ / baud)
    if not 8 <= divisor <= 0xFF:
        raise ValueError(f"{baud} baud cannot be reached with ATBRD")
    return at(f"BRD{divisor:02X}")


def obd(service: int, data: Sequence[int] = (), count: int | None = None) -> bytes:
    """An OBD request: ``service`` then data bytes, then the optional response-count digit (1-F)."""
    body = f"{service:02X}" + "".join(f"{b:02X}" for b in data)
    if count is not None:
        if not 1 <= count <= 15:
            raise ValueError("the response count must be 1-15")
        body += f"{count:X}"
    return body.encode("ascii") + CR


def mode01(pids: Sequence[int], count: int | None = None) -> bytes:
    """Service 01 for one PID or up to six (the multi-PID form, CAN only)."""
    if not 1 <= len(pids) <= MAX_PIDS_PER_REQUEST:
        raise ValueError(f"a mode 01 request carries 1-{MAX_PIDS_PER_REQUEST} PIDs (got {len(pids)})")
    return obd(0x01, pids, count)


def mode09(pid: int) -> bytes:
    """Service 09 (vehicle information: 02 VIN, 04 calibration ID, 06 CVN, 0A ECU name)."""
    return obd(0x09, [pid])


def read_dtcs(service: int) -> bytes:
    """03 stored, 07 pending, 0A permanent DTCs."""
    if service not in (0x03, 0x07, 0x0A):
        raise ValueError("DTC services are 03, 07 and 0A")
    return obd(service)


def clear_dtcs() -> bytes:
    """Service 04: clear DTCs and turn the MIL off (a write to the vehicle: guarded by the caller)."""
    return obd(0x04)
