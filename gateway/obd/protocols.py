"""OBD-II bus protocols and addressing: one table for the ELM327 session, the raw CAN session and status.

Protocol numbers are the ELM327's (datasheet, "ATSP h"); CAN identifiers follow ISO 15765-4: functional
requests go to 7DF (11-bit) or 18DB33F1 (29-bit), ECU ``n`` answers on 7E8+n / 18DAF1xx and is asked
physically on 7E0+n / 18DAxxF1. SAE J1979 allows at most six PIDs in one mode 01 request.
"""

from __future__ import annotations

PROTOCOL_NAMES: dict[str, str] = {
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
EXTENDED_PROTOCOLS = frozenset("79A")  # 29-bit identifiers

#: SAE J1979 / ISO 15765-4: a mode 01 request names at most six PIDs
MAX_PIDS_PER_REQUEST = 6

FUNCTIONAL_11 = 0x7DF
FUNCTIONAL_29 = 0x18DB33F1
ENGINE_ECU = 0x7E8


def protocol_name(number: str) -> str:
    """``6`` → ``ISO 15765-4 CAN (11 bit, 500 kbaud)``; '' for an unknown number."""
    return PROTOCOL_NAMES.get(number.upper(), "")


def is_extended(number: str) -> bool:
    """Whether protocol ``number`` uses 29-bit identifiers."""
    return number.upper() in EXTENDED_PROTOCOLS


def functional_id(extended: bool) -> int:
    """The functional (broadcast) request identifier."""
    return FUNCTIONAL_29 if extended else FUNCTIONAL_11


def request_id(ecu: int, extended: bool) -> int:
    """The physical request identifier of the ECU answering on ``ecu`` (7E8 → 7E0, 18DAF110 → 18DA10F1)."""
    if extended:
        return 0x18DA00F1 | ((ecu & 0xFF) << 8)
    return ecu - 8


def is_response_id(arb_id: int, extended: bool) -> bool:
    """Whether ``arb_id`` is an OBD response identifier (7E8-7EF, 18DAF1xx)."""
    if extended:
        return arb_id & 0xFFFFFF00 == 0x18DAF100
    return 0x7E8 <= arb_id <= 0x7EF
