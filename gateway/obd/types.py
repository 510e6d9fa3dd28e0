"""Value types shared by both parser builds, so that their results compare equal.

Both ``gateway._native`` and ``gateway.obd.pyparser`` import these two classes; a test can then
compare the two builds' outputs with ``==``.
"""

from __future__ import annotations

from typing import NamedTuple

#: What a decoded value can be: a number, a flag, a text (VIN, enumerations), or a tuple of
#: codes/numbers (DTCs, supported PIDs, CVNs).
Value = float | int | bool | str | tuple[str, ...] | tuple[int, ...]


class Reading(NamedTuple):
    """One decoded value.

    ``ecu`` is the answering ECU's address (the CAN arbitration id such as 0x7E8 or 0x18DAF110, or
    the source byte of a legacy header), 0 when headers are off. ``service`` is the request mode
    (1, 2, 3, 7, 9, 0x0A ...), ``pid`` the PID (None for DTC services), ``name`` the catalogue's
    stable name, ``unit`` the catalogue's unit ("" for flags, texts and counts).
    """

    ecu: int
    service: int
    pid: int | None
    name: str
    value: Value
    unit: str


class ObdMessage(NamedTuple):
    """One complete OBD response message (after ISO-TP reassembly), the level below decoding.

    ``service`` is the request mode (response service byte − 0x40), or 0x7F for a negative
    response. ``pid`` is the first PID byte for the PID-carrying services (01, 02, 05, 06, 08, 09),
    else None. ``payload`` is everything after the PID (after the service byte when ``pid`` is
    None); for a multi-PID answer it holds the first PID's data followed by the next PIDs.
    """

    ecu: int
    service: int
    pid: int | None
    payload: bytes
