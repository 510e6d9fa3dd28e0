"""The receive side of ISO 15765-2 (ISO-TP) for OBD answers, sans-I/O.

It tells when each ECU's answer is complete and which flow-control frame to send after a first frame
(clear to send, block size 0, STmin 0), so multi-frame answers (VIN, DTC lists, 6-PID answers) flow. The
parser's ``decode_can`` reassembles the payloads itself; this only decides completeness and flow control.
A stream of frames from a broken or hostile bus is bounded: past :data:`MAX_FRAMES` frames are dropped.
"""

from __future__ import annotations

FC_CTS = bytes([0x30, 0x00, 0x00, 0, 0, 0, 0, 0])  # flow control: clear to send, no blocks, no gap
#: an ISO-TP message carries at most 4095 bytes: 1 first frame + 585 consecutive frames; a few ECUs answer
MAX_FRAMES = 2048


def single_frame(payload: bytes) -> bytes:
    """An ISO-TP single frame, padded to 8 bytes (OBD requests always fit in one)."""
    if not 1 <= len(payload) <= 7:
        raise ValueError("an OBD request is 1-7 bytes")
    return (bytes([len(payload)]) + payload).ljust(8, b"\x00")


class IsoTpCollector:
    """Sans-I/O: which ECUs' answers are complete, and the flow control to send for first frames."""

    def __init__(self) -> None:
        self._need: dict[int, int] = {}
        self._have: dict[int, int] = {}
        self.complete: list[int] = []  # ECUs whose current message is complete, in order
        self.frames: list[tuple[int, bytes]] = []

    def feed(self, arb_id: int, data: bytes) -> bytes | None:
        """Take one response frame; returns a flow-control frame to send to the ECU, or None."""
        if not data or len(self.frames) >= MAX_FRAMES:
            return None
        self.frames.append((arb_id, data))
        kind = data[0] >> 4
        if kind == 0:
            self.complete.append(arb_id)
        elif kind == 1 and len(data) >= 2:
            self._need[arb_id] = ((data[0] & 0x0F) << 8) | data[1]
            self._have[arb_id] = len(data) - 2
            return FC_CTS
        elif kind == 2 and arb_id in self._need:
            self._have[arb_id] += len(data) - 1
            if self._have[arb_id] >= self._need[arb_id]:
                del self._need[arb_id]
                self.complete.append(arb_id)
        return None

    @property
    def in_progress(self) -> bool:
        """Whether a multi-frame answer is still arriving."""
        return bool(self._need)
