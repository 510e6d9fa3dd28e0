"""Process-wide audit of OBD requests outside the read-only set, for every simulator in the process.

The gateway must be read-only toward the car (docs/link.md, issue #12): it may write AT/ST commands and
requests of the read services 01 02 03 07 09 0A 21 22, and mode 04 only through the confirmed clear path.
Every simulated chip (:class:`firmware_sim.elm327.Elm327`) and the raw-CAN ECUs
(:mod:`firmware_sim.canbus`) report each request whose service is outside the read set here — mode 04
included, since only the test that sends it knows whether it was confirmed. Records are kept in memory
(bounded) and, when the environment variable ``OBD_SIM_AUDIT_DIR`` names a directory, appended as JSON
lines to ``<dir>/sim-audit-<pid>.jsonl`` — so an ``obd-gateway-sim`` subprocess started by a daemon test
reports to the test that started it. tests/conftest.py fails any test whose audit holds a service other
than 04.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

ALLOWED_SERVICES = frozenset({0x01, 0x02, 0x03, 0x07, 0x09, 0x0A, 0x21, 0x22})
"""Read services the gateway may send at any time."""
CLEAR_SERVICE = 0x04
"""Mode 04 (clear DTCs): recorded, allowed only through the confirmed clear path (checked by its tests)."""
ENV_DIR = "OBD_SIM_AUDIT_DIR"
MAX_RECORDS = 1000
"""Records kept in memory and lines written per process: a runaway loop cannot fill memory or disk."""


@dataclass(frozen=True)
class AuditRecord:
    """One request outside the read set, as the simulated car saw it."""

    at: float  # time.time()
    pid: int  # process that saw it
    via: str  # "elm327" (a command line) or "can" (an ISO-TP request)
    line: str  # the command line (upper case, no spaces) or the request bytes in hex
    service: int


_lock = threading.Lock()
_records: deque[AuditRecord] = deque(maxlen=MAX_RECORDS)
_written = 0


def service_of_line(line: str, *, caf: bool = True) -> int | None:
    """The service byte of an OBD command line (``010C1`` → 0x01, ``1011`` → 0x10); None if not a request.

    A trailing odd digit is the response-count digit. With CAN auto-formatting off (ATCAF0) the first
    byte is the ISO-TP PCI and the service is the second.
    """
    text = line.strip().upper()
    if not text or any(ch not in "0123456789ABCDEF" for ch in text):
        return None
    if len(text) % 2 == 1:
        text = text[:-1]
    data = bytes.fromhex(text)
    if not caf:
        data = data[1:]
    return data[0] if data else None


def is_nonread(service: int) -> bool:
    """Whether ``service`` is outside the read set (mode 04 included)."""
    return service not in ALLOWED_SERVICES


def observe_line(line: str, *, caf: bool = True) -> AuditRecord | None:
    """Audit one ELM327 command line; returns the record when its service is outside the read set."""
    service = service_of_line(line, caf=caf)
    if service is None or not is_nonread(service):
        return None
    return _record(AuditRecord(time.time(), os.getpid(), "elm327", line, service))


def observe_request(request: bytes, *, via: str = "can") -> AuditRecord | None:
    """Audit one request message (service byte first) that reached the ECUs over raw CAN."""
    if not request or not is_nonread(request[0]):
        return None
    return _record(AuditRecord(time.time(), os.getpid(), via, request.hex().upper(), request[0]))


def _record(rec: AuditRecord) -> AuditRecord:
    global _written
    with _lock:
        _records.append(rec)
        directory = os.environ.get(ENV_DIR)
        if directory and _written < MAX_RECORDS:
            _written += 1
            try:
                with open(Path(directory) / f"sim-audit-{rec.pid}.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(asdict(rec)) + "\n")
            except OSError:
                pass  # the directory went away (test over): the in-memory record remains
    return rec


def records() -> list[AuditRecord]:
    """Every record of this process since the last :func:`clear` (at most MAX_RECORDS, newest kept)."""
    with _lock:
        return list(_records)


def clear() -> None:
    """Forget this process's records (the audit fixture calls it before each test)."""
    global _written
    with _lock:
        _records.clear()
        _written = 0


def read_dir(directory: str | Path, *, exclude_pid: int | None = None) -> list[AuditRecord]:
    """Records written to ``directory`` by any process (optionally not by ``exclude_pid``)."""
    out: list[AuditRecord] = []
    for path in sorted(Path(directory).glob("sim-audit-*.jsonl")):
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = AuditRecord(**json.loads(raw))
            except (ValueError, TypeError):
                continue  # a line cut short by a killed process
            if rec.pid != exclude_pid:
                out.append(rec)
    return out


def violations(recs: list[AuditRecord]) -> list[AuditRecord]:
    """The records no test may produce: every non-read service except mode 04."""
    return [r for r in recs if r.service != CLEAR_SERVICE]
