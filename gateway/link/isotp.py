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


class IsoTpReceiver:
    """Sans-I/O receiver of one physical ISO 15765-2 answer, with our flow control.

    ``feed(data)`` takes each frame from the ECU's response id and returns a flow-control frame to send
    (after the first frame, and after every ``block_size`` consecutive frames when it is not 0), or None.
    Answers up to 4095 bytes (12-bit first-frame length). A consecutive frame out of sequence (one lost
    on the bus) ends the message as :attr:`lost` — a message with a hole is never returned. A single
    frame ``7F sid 78`` (response pending) sets :attr:`pending`; the caller waits longer (P2*) for the
    real answer."""

    def __init__(self, *, block_size: int = 0, stmin_ms: int = 0) -> None:
        if not 0 <= block_size <= 0xFF or not 0 <= stmin_ms <= 0x7F:
            raise ValueError("block size 0-255, STmin 0-127 ms")
        self.block_size = block_size
        self.stmin_ms = stmin_ms
        self.message: bytes | None = None
        self.pending = False
        self.lost = False
        self.flow_controls = 0
        self._need = 0
        self._buf = bytearray()
        self._sn = 0
        self._in_block = 0

    @property
    def in_progress(self) -> bool:
        """Whether a multi-frame answer is still arriving."""
        return bool(self._need) and not self.lost

    @property
    def done(self) -> bool:
        """Whether the answer is complete, or broken."""
        return self.message is not None or self.lost

    def _fc(self) -> bytes:
        self.flow_controls += 1
        self._in_block = 0
        return bytes([0x30, self.block_size, self.stmin_ms, 0, 0, 0, 0, 0])

    def feed(self, data: bytes) -> bytes | None:
        """One frame from the ECU; the flow control to send, or None."""
        if self.done or not data:
            return None
        kind = data[0] >> 4
        if kind == 0:
            n = data[0] & 0x0F
            payload = bytes(data[1 : 1 + n])
            if n == 0 or len(payload) < n or self._need:
                return None
            if len(payload) >= 3 and payload[0] == 0x7F and payload[2] == 0x78:
                self.pending = True
                return None
            self.message = payload
        elif kind == 1 and len(data) >= 8:
            n = ((data[0] & 0x0F) << 8) | data[1]
            if n < 8:  # 0: a length beyond 4095 (ISO 15765-2:2016 escape), not for OBD
                self.lost = True
                return None
            self._need, self._buf, self._sn = n, bytearray(data[2:8]), 1
            return self._fc()
        elif kind == 2 and self._need:
            if data[0] & 0x0F != self._sn:
                self.lost = True
                return None
            self._buf += data[1:8]
            self._sn = (self._sn + 1) & 0x0F
            self._in_block += 1
            if len(self._buf) >= self._need:
                self.message = bytes(self._buf[: self._need])
                self._need = 0
            elif self.block_size and self._in_block >= self.block_size:
                return self._fc()
        return None
