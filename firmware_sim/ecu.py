"""The simulated ECUs: OBD services on top of the vehicle state, plus message framing per bus.

An :class:`Ecu` answers one request (service bytes, e.g. ``01 0C``) with zero or more response
messages (``41 0C 1A F8``); :func:`isotp_frames` cuts a CAN message into ISO 15765-2 frames, and
:func:`legacy_header` / :func:`legacy_check` give the header and check byte of J1850 / ISO 9141 /
KWP2000 messages. Functional requests to unsupported services or PIDs get no answer (ISO 15765-4
suppresses negative responses there); physical requests to an unsupported service get ``7F sid 11``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware_sim import j1979
from firmware_sim.vehicle import Vehicle, VehicleState

CAN_PROTOCOLS = frozenset("6789ABC")
LEGACY_PROTOCOLS = frozenset("12345")

PROTOCOL_NAMES = {
    "1": "SAE J1850 PWM",
    "2": "SAE J1850 VPW",
    "3": "ISO 9141-2",
    "4": "ISO 14230-4 (KWP 5BAUD)",
    "5": "ISO 14230-4 (KWP FAST)",
    "6": "ISO 15765-4 (CAN 11/500)",
    "7": "ISO 15765-4 (CAN 29/500)",
    "8": "ISO 15765-4 (CAN 11/250)",
    "9": "ISO 15765-4 (CAN 29/250)",
    "A": "SAE J1939 (CAN 29/250)",
    "B": "USER1 CAN (11* /125)",
    "C": "USER2 CAN (11* /50)",
}


def is_29bit(protocol: str) -> bool:
    """Whether a CAN protocol uses 29-bit identifiers."""
    return protocol in {"7", "9", "A"}


def can_bitrate(protocol: str) -> int:
    """Bit rate of a CAN protocol number."""
    return {"6": 500_000, "7": 500_000, "8": 250_000, "9": 250_000, "A": 250_000, "B": 125_000,
            "C": 50_000}[protocol]


ENGINE_PIDS = frozenset(j1979.MODE01)
TRANSMISSION_PIDS = frozenset({0x01, 0x0D, 0x1C})
FREEZE_PIDS = frozenset({0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11})


@dataclass
class Ecu:
    """One control unit on the bus."""

    name: str
    address: int  # low byte of the response identifier: 0x10 engine (7E8 / 18DAF110), 0x18 transmission
    pids: frozenset[int]
    latency_offset: float = 0.0  # added to the bus latency, so the ECUs answer in a stable order
    ecu_name: str = "ECM-EngineControl"
    calibration_id: str = "JMB*36761500"
    cvn: bytes = b"\x17\x91\xbc\x82"
    has_vin: bool = True
    answered: set[int] = field(init=False)

    def __post_init__(self) -> None:
        self.answered = j1979.answered_pids(self.pids)

    @property
    def can_id_11(self) -> int:
        """11-bit response identifier (7E8 + index)."""
        return 0x7E8 + (self.address - 0x10) // 8 if self.address >= 0x10 else 0x7E8

    @property
    def request_id_11(self) -> int:
        """11-bit physical request identifier (response − 8)."""
        return self.can_id_11 - 8

    @property
    def can_id_29(self) -> int:
        """29-bit response identifier 18DAF1xx."""
        return 0x18DAF100 | self.address

    @property
    def request_id_29(self) -> int:
        """29-bit physical request identifier 18DAxxF1."""
        return 0x18DA00F1 | (self.address << 8)

    # ------------------------------------------------------------------ services
    def handle(self, vehicle: Vehicle, request: bytes, *, can: bool = True, physical: bool = False) -> list[bytes]:
        """Answer one OBD request; returns the response messages (empty: silence)."""
        if not request:
            return []
        with vehicle.lock:
            state = vehicle.state
            if not state.ignition:
                return []
            sid = request[0]
            if sid == 0x01:
                return self._mode01(state, request[1:], can)
            if sid == 0x02:
                return self._mode02(state, request[1:])
            if sid in (0x03, 0x07, 0x0A):
                codes = {0x03: state.dtcs, 0x07: state.pending_dtcs, 0x0A: state.permanent_dtcs}[sid]
                if self.name != "engine":
                    codes = []
                return self._dtc_messages(sid + 0x40, codes, can)
            if sid == 0x04:
                if self.name == "engine":
                    vehicle.clear_dtcs()
                return [b"\x44"]
            if sid == 0x09 and len(request) >= 2:
                return self._mode09(state, request[1], can)
            if physical:
                return [bytes([0x7F, sid, 0x11])]
            return []

    def _mode01(self, state: VehicleState, pids: bytes, can: bool) -> list[bytes]:
        if not pids or len(pids) > 6 or (not can and len(pids) > 1):
            return []
        out = bytearray([0x41])
        for pid in pids:
            if pid not in self.answered:
                continue
            if pid in j1979.SUPPORT_PIDS:
                out += bytes([pid]) + j1979.support_mask(pid, self.answered)
            elif pid == 0x01 and self.name != "engine":
                out += bytes([pid]) + bytes([0, 0x07, 0x00, 0x00])
            else:
                length, enc = j1979.MODE01[pid]
                data = enc(state)
                assert len(data) == length, f"PID {pid:02X} encoder gave {len(data)} bytes, table says {length}"
                out += bytes([pid]) + data
        return [bytes(out)] if len(out) > 1 else []

    def _mode02(self, state: VehicleState, args: bytes) -> list[bytes]:
        if not args or self.name != "engine":
            return []
        pid = args[0]
        frame = args[1] if len(args) > 1 else 0
        if frame != 0:
            return []
        ff = state.freeze_frame
        if pid == 0x00:
            pids = FREEZE_PIDS if ff is not None else frozenset({0x02})
            return [bytes([0x42, 0x00, 0x00]) + j1979.support_mask(0, pids)]
        if pid == 0x02:
            code = j1979.encode_dtc(state.freeze_dtc) if state.freeze_dtc else b"\x00\x00"
            return [bytes([0x42, 0x02, 0x00]) + code]
        if ff is None or pid not in FREEZE_PIDS:
            return []
        return [bytes([0x42, pid, 0x00]) + j1979.MODE01[pid][1](ff)]

    @staticmethod
    def _dtc_messages(rsid: int, codes: list[str], can: bool) -> list[bytes]:
        raw = b"".join(j1979.encode_dtc(c) for c in codes)
        if can:
            return [bytes([rsid, len(codes)]) + raw]
        # Legacy: three codes per message, padded with 00 00; an empty list still answers once.
        msgs = []
        for i in range(0, max(len(codes), 1), 3):
            chunk = raw[i * 2:(i + 3) * 2]
            msgs.append(bytes([rsid]) + chunk + b"\x00" * (6 - len(chunk)))
        return msgs

    def _mode09(self, state: VehicleState, pid: int, can: bool) -> list[bytes]:
        items: dict[int, bytes] = {}
        if self.has_vin:
            items[0x02] = state.vin.encode("ascii")
        items[0x04] = j1979.ascii_field(self.calibration_id, 16)
        items[0x06] = self.cvn
        items[0x0A] = j1979.ascii_field(self.ecu_name, 20)
        counts = {0x01: 0x02, 0x03: 0x04, 0x05: 0x06, 0x09: 0x0A}
        supported = set(items) | {k for k, v in counts.items() if v in items}
        if pid == 0x00:
            return [bytes([0x49, 0x00]) + j1979.support_mask(0, supported)[:4]]
        if pid in counts and counts[pid] in items:
            data = items[counts[pid]]
            n = 1 if can else (len(data) + 3) // 4
            return [bytes([0x49, pid, n])]
        if pid not in items:
            return []
        data = items[pid]
        if can:
            return [bytes([0x49, pid, 0x01]) + data]
        # Legacy: 4 data bytes per message, numbered; the VIN is left-padded to 20 bytes.
        if pid == 0x02:
            data = b"\x00" * 3 + data
        data += b"\x00" * (-len(data) % 4)
        return [bytes([0x49, pid, i // 4 + 1]) + data[i:i + 4] for i in range(0, len(data), 4)]


def default_ecus() -> list[Ecu]:
    """The engine (7E8) and transmission (7E9) control modules."""
    return [
        Ecu("engine", 0x10, ENGINE_PIDS),
        Ecu("transmission", 0x18, TRANSMISSION_PIDS, latency_offset=0.004, ecu_name="TCM-TransmissionCtl",
            calibration_id="TCM0A1B2C3", cvn=b"\x5a\x31\x00\x42", has_vin=False),
    ]


# ---------------------------------------------------------------------- framing
def isotp_frames(message: bytes, pad: int = 0x00) -> list[bytes]:
    """Split ``message`` into ISO 15765-2 frames of 8 bytes (single frame, or first + consecutive)."""
    if len(message) <= 7:
        frame = bytes([len(message)]) + message
        return [frame + bytes([pad]) * (8 - len(frame))]
    if len(message) > 0xFFF:
        raise ValueError("ISO-TP message longer than 4095 bytes")
    frames = [bytes([0x10 | (len(message) >> 8), len(message) & 0xFF]) + message[:6]]
    rest = message[6:]
    sn = 1
    while rest:
        chunk, rest = rest[:7], rest[7:]
        frame = bytes([0x20 | (sn & 0x0F)]) + chunk
        frames.append(frame + bytes([pad]) * (8 - len(frame)))
        sn += 1
    return frames


def crc8_j1850(data: bytes) -> int:
    """SAE J1850 CRC-8 (polynomial 0x1D, initial 0xFF, final inversion)."""
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1D) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0xFF


def legacy_header(protocol: str, source: int, length: int) -> bytes:
    """Response header bytes for a legacy protocol (priority/format, target tester, source ECU)."""
    if protocol == "1":
        return bytes([0x41, 0x6B, source])
    if protocol in ("2", "3"):
        return bytes([0x48, 0x6B, source])
    return bytes([0x80 | length, 0xF1, source])  # KWP2000: format byte carries the length


def legacy_check(protocol: str, frame: bytes) -> int:
    """The check byte ending a legacy message: CRC-8 on J1850, 8-bit sum on ISO 9141 / KWP."""
    if protocol in ("1", "2"):
        return crc8_j1850(frame)
    return sum(frame) & 0xFF
