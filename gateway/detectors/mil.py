"""The malfunction indicator lamp (check-engine light): ``mil:on`` and ``mil:off``.

The lamp's state comes from PID 01 (``mil`` samples), the trouble codes from mode 03 reads (``dtcs``
samples whose value is a tuple of codes). The two arrive separately, usually the lamp first, so a
``mil:on`` waits up to ``dtc_wait_s`` for a code read before it is sent (with whatever codes are known
by then). While the lamp is lit, a code read that shows codes not yet reported sends another
``mil:on`` (the reference allows several before a ``mil:off``). ``mil:off`` lists the codes that were
reported and carries ``user_cleared`` when the gateway itself cleared them
(:meth:`MilDetector.note_user_cleared_dtcs`, or a ``dtcs_cleared`` sample with a true value: the
marker a recording carries so that a replay knows about the clearing too).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from gateway.detectors.base import IdFactory, make_event, uuid4_str
from gateway.model import Event, LinkState, Sample

_SPLIT = re.compile(r"[\s,;|]+")
CLEARED_MARKER = "dtcs_cleared"  # sample name: the gateway cleared the codes (mode 04) at ts_ms


def parse_dtcs(value: object) -> tuple[str, ...] | None:
    """A ``dtcs`` sample value as a tuple of codes; ``None`` when it is not a code list.

    Accepts a tuple or list of strings (live), or a string of codes separated by spaces, commas or
    semicolons (a recorded CSV), where ``none`` or ``[]`` mean "read, and no codes".
    """
    if isinstance(value, (tuple, list)):
        if all(isinstance(c, str) for c in value):
            return tuple(c.strip().upper() for c in value if c.strip())
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("none", "[]", "-"):
            return ()
        return tuple(c.upper() for c in _SPLIT.split(text) if c)
    return None


class MilDetector:
    """``MIL_ON`` / ``MIL_OFF`` from ``mil`` and ``dtcs`` samples."""

    #: the only sample names ``feed`` reads (any other sample only moves time on: :meth:`tick`)
    SAMPLE_NAMES: ClassVar[frozenset[str]] = frozenset({CLEARED_MARKER, "dtcs", "mil"})

    def __init__(self, *, dtc_wait_s: float = 10.0, new_id: IdFactory = uuid4_str) -> None:
        self.dtc_wait_ms = round(dtc_wait_s * 1000)
        self._new_id = new_id
        self.lit: bool | None = None  # None until the first lamp reading
        self.pending_since: int | None = None  # lamp lit, mil:on waiting for a code read
        self.codes: dict[str, int] = {}  # latest known codes → first seen (ms)
        self.reported: dict[str, int] = {}  # codes already sent in a mil:on while lit
        self.user_cleared = False

    def note_user_cleared_dtcs(self) -> None:
        """The gateway has cleared the codes: the next ``mil:off`` carries ``user_cleared: true``."""
        self.user_cleared = True

    def feed(self, item: Sample | LinkState) -> list[Event]:
        """Events completed by ``item``."""
        if isinstance(item, LinkState):
            return self.tick(item.ts_ms)
        out = self.tick(item.ts_ms)
        if item.name == CLEARED_MARKER:
            if item.value is True or item.value == 1:
                self.note_user_cleared_dtcs()
        elif item.name == "dtcs":
            out += self._codes(item)
        elif item.name == "mil" and isinstance(item.value, (bool, int)):
            out += self._lamp(bool(item.value), item.ts_ms)
        return out

    def _codes(self, item: Sample) -> list[Event]:
        """A DTC read: a mil:on waiting for codes goes out; new codes while lit make another."""
        codes = parse_dtcs(item.value)
        if codes is None:
            return []
        self.codes = {c: self.codes.get(c, item.ts_ms) for c in codes}
        if self.lit and self.pending_since is not None:
            return [self._on(item.ts_ms)] if codes else []
        if self.lit and any(c not in self.reported for c in codes):
            return [self._on(item.ts_ms)]
        return []

    def _lamp(self, lit: bool, ts_ms: int) -> list[Event]:
        """The lamp's state from PID 01: on (with the codes, or waiting for them) or off."""
        if lit and not self.lit:
            self.lit = True
            self.reported = {}
            if self.codes:
                return [self._on(ts_ms)]
            self.pending_since = ts_ms
        elif not lit and self.lit:
            return [self._off(ts_ms)]
        elif not lit:
            self.lit = False
        return []

    def tick(self, now_ms: int) -> list[Event]:
        """Send a waiting ``mil:on`` once no code read has come for ``dtc_wait_s``."""
        if self.pending_since is not None and now_ms - self.pending_since >= self.dtc_wait_ms:
            return [self._on(self.pending_since)]
        return []

    def _dtc_list(self, codes: dict[str, int]) -> list[dict[str, Any]]:
        return [{"code": c, "start": ts} for c, ts in sorted(codes.items())]

    def _on(self, date_ms: int) -> Event:
        new = sorted(c for c in self.codes if c not in self.reported)
        date = self.pending_since if self.pending_since is not None else date_ms
        self.pending_since = None
        self.reported.update({c: self.codes[c] for c in new})
        payload = {"dtcs": self._dtc_list(self.codes), "new_dtcs": new}
        return make_event(self._new_id, "MIL_ON", date, payload)

    def _off(self, date_ms: int) -> Event:
        payload = {"dtcs": self._dtc_list(self.reported), "user_cleared": self.user_cleared}
        self.lit = False
        self.pending_since = None
        self.reported = {}
        self.user_cleared = False
        return make_event(self._new_id, "MIL_OFF", date_ms, payload)

    def to_state(self) -> dict[str, Any]:
        """Lamp state and codes, so a restart neither repeats nor loses a ``mil:on``."""
        return {
            "lit": self.lit,
            "pending_since": self.pending_since,
            "codes": self.codes,
            "reported": self.reported,
            "user_cleared": self.user_cleared,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`to_state`."""
        lit = state.get("lit")
        self.lit = None if lit is None else bool(lit)
        pending = state.get("pending_since")
        self.pending_since = int(pending) if pending is not None else None
        self.codes = {str(k): int(v) for k, v in state.get("codes", {}).items()}
        self.reported = {str(k): int(v) for k, v in state.get("reported", {}).items()}
        self.user_cleared = bool(state.get("user_cleared", False))

