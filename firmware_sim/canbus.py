"""Raw CAN: the simulated ECUs answering OBD over ISO-TP (ISO 15765-2/-4) on a CAN bus.

:class:`IsoTpEcus` is the sans-I/O core: feed it received frames (``on_frame``), it sends answers
through the ``send`` callable, honouring the tester's flow control (block size, STmin, wait frames)
for multi-frame answers, and sending its own flow control for multi-frame requests. Two transports:

- :class:`CanResponder` on a python-can bus (``interface="virtual"`` for in-process tests);
- :class:`SlcanServer`, an SLCAN (Lawicel ASCII) adapter on a pseudo-terminal, for tests across
  processes (``can.Bus(interface="slcan", channel=path, bitrate=500000, sleep_after_open=0)``).

Identifiers: 11-bit functional 7DF, physical 7E0/7E1 → answers from 7E8/7E9; 29-bit functional
18DB33F1, physical 18DA10F1/18DA18F1 → answers from 18DAF110/18DAF118. Which length is live follows
the car's protocol (6/8: 11-bit, 7/9: 29-bit).
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import shutil
import tempfile
import termios
import threading
import time
import tty
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from firmware_sim import audit
from firmware_sim.ecu import CAN_PROTOCOLS, Ecu, is_29bit, isotp_frames

if TYPE_CHECKING:
    from firmware_sim.simulator import Simulator

SendFn = Callable[[int, bytes, bool], None]
N_BS_S = 1.0  # how long an ECU waits for the tester's flow control


def _stmin_seconds(st: int) -> float:
    if st <= 0x7F:
        return st / 1000.0
    if 0xF1 <= st <= 0xF9:
        return (st - 0xF0) / 10000.0
    return 0.127


class IsoTpEcus:
    """The car's ECUs speaking ISO-TP; thread-safe, one sender thread per answer in flight."""

    def __init__(self, sim: Simulator, send: SendFn) -> None:
        self.sim = sim
        self.send = send
        self._fc: dict[int, queue.Queue[bytes]] = {}
        self._rx: dict[int, tuple[bytearray, int, int]] = {}  # ecu address → (data, expected length, next sn)
        self.frames_out = 0

    @property
    def extended(self) -> bool:
        """Whether the car's CAN bus uses 29-bit identifiers."""
        return is_29bit(self.sim.bus.protocol)

    def _ids(self, ecu: Ecu) -> tuple[int, int]:
        if self.extended:
            return ecu.request_id_29, ecu.can_id_29
        return ecu.request_id_11, ecu.can_id_11

    def on_frame(self, arb_id: int, data: bytes, extended: bool) -> None:
        """Handle one frame seen on the bus."""
        if self.sim.bus.protocol not in CAN_PROTOCOLS or extended != self.extended or not data:
            return
        functional = arb_id == (0x18DB33F1 if self.extended else 0x7DF)
        targets = [(e, False) for e in self.sim.ecus] if functional else [
            (e, True) for e in self.sim.ecus if self._ids(e)[0] == arb_id]
        if not targets:
            return
        pci = data[0] >> 4
        if pci == 3:  # flow control from the tester, for an answer in flight
            for ecu, _ in targets:
                q = self._fc.get(ecu.address)
                if q is not None:
                    q.put(bytes(data))
            return
        if pci == 0:
            length = data[0] & 0x0F
            if not 1 <= length <= 7 or len(data) < length + 1:
                return
            request = bytes(data[1:1 + length])
        elif pci == 1 and not functional:  # multi-frame request: physical only
            ecu = targets[0][0]
            total = ((data[0] & 0x0F) << 8) | data[1]
            self._rx[ecu.address] = (bytearray(data[2:8]), total, 1)
            self.send(self._ids(ecu)[1], bytes([0x30, 0x00, 0x00]) + b"\x00" * 5, self.extended)
            return
        elif pci == 2 and not functional:
            ecu = targets[0][0]
            pending = self._rx.get(ecu.address)
            if pending is None or (data[0] & 0x0F) != pending[2] & 0x0F:
                self._rx.pop(ecu.address, None)
                return
            buf, total, sn = pending
            buf += data[1:]
            if len(buf) < total:
                self._rx[ecu.address] = (buf, total, sn + 1)
                return
            del self._rx[ecu.address]
            request = bytes(buf[:total])
        else:
            return
        rec = audit.observe_request(request)  # raw CAN reaches the ECUs directly: audit what they were asked
        if rec is not None:
            self.sim.nonread.append(rec)
        for ecu, physical in targets:
            threading.Thread(target=self._answer, args=(ecu, request, physical), daemon=True,
                             name=f"isotp-{ecu.name}").start()

    def _answer(self, ecu: Ecu, request: bytes, physical: bool) -> None:
        self.sim.sync()
        msgs = ecu.handle(self.sim.vehicle, request, can=True, physical=physical)
        if not msgs:
            return
        if not self.sim.fast:
            time.sleep(self.sim.timing.ecu_latency + ecu.latency_offset)
        tx = self._ids(ecu)[1]
        for msg in msgs:
            frames = isotp_frames(msg)
            if len(frames) == 1:
                self._send(tx, frames[0])
                continue
            q: queue.Queue[bytes] = queue.Queue()
            self._fc[ecu.address] = q
            try:
                self._send(tx, frames[0])
                self._send_consecutive(tx, frames[1:], q)
            finally:
                self._fc.pop(ecu.address, None)

    def _send_consecutive(self, tx: int, frames: list[bytes], q: queue.Queue[bytes]) -> None:
        i = 0
        while i < len(frames):
            try:
                fc = q.get(timeout=N_BS_S)
            except queue.Empty:
                return  # N_Bs timeout: the tester never sent flow control; abort like a real ECU
            status = fc[0] & 0x0F
            if status == 1:
                continue  # wait
            if status != 0:
                return  # overflow / invalid
            block = fc[1] if len(fc) > 1 else 0
            stmin = _stmin_seconds(fc[2]) if len(fc) > 2 else 0.0
            sent = 0
            while i < len(frames) and (block == 0 or sent < block):
                if stmin and not self.sim.fast:
                    time.sleep(stmin)
                if self.sim.faults.strikes("lost_frame"):
                    i += 1  # a consecutive frame lost on the bus (raw CAN only): the tester sees a gap
                    sent += 1
                    continue
                self._send(tx, frames[i])
                i += 1
                sent += 1

    def _send(self, arb_id: int, frame: bytes) -> None:
        self.frames_out += 1
        self.send(arb_id, frame, self.extended)


class CanResponder:
    """The ECUs on a python-can bus, answered from a background thread."""

    def __init__(self, sim: Simulator, bus: Any) -> None:
        self.sim = sim
        self.bus = bus
        self._stopping = False
        self.ecus = IsoTpEcus(sim, self._send)
        self._thread = threading.Thread(target=self._run, name="sim-can", daemon=True)
        self._thread.start()

    @classmethod
    def on_python_can(cls, sim: Simulator, *, channel: str, interface: str = "virtual") -> CanResponder:
        """Open ``can.Bus(interface=..., channel=...)`` and answer on it."""
        import can

        bus = can.Bus(interface=interface, channel=channel, receive_own_messages=False)
        return cls(sim, bus)

    def _send(self, arb_id: int, data: bytes, extended: bool) -> None:
        import can

        with contextlib.suppress(can.CanError):
            self.bus.send(can.Message(arbitration_id=arb_id, data=data, is_extended_id=extended))

    def _run(self) -> None:
        while not self._stopping:
            try:
                msg = self.bus.recv(timeout=0.1)
            except Exception:
                return
            if msg is None or msg.is_remote_frame or msg.is_error_frame:
                continue
            self.ecus.on_frame(msg.arbitration_id, bytes(msg.data), msg.is_extended_id)

    def stop(self) -> None:
        """Stop answering and shut the bus down."""
        self._stopping = True
        self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self.bus.shutdown()


SLCAN_BITRATES = {"S0": 10_000, "S1": 20_000, "S2": 50_000, "S3": 100_000, "S4": 125_000, "S5": 250_000,
                  "S6": 500_000, "S7": 800_000, "S8": 1_000_000}


class SlcanServer:
    """An SLCAN (Lawicel) USB-CAN adapter on a pseudo-terminal, wired to the car's CAN bus.

    ``path`` is a stable symlink to the pty. Frames are forwarded only while the channel is open (``O``)
    and at the car's bit rate (``S6`` for 500 kbit/s protocols 6/7, ``S5`` for 250 kbit/s 8/9).
    """

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        self._master, self._slave = master, slave
        self.device = os.ttyname(slave)
        self._dir = tempfile.mkdtemp(prefix="obd-sim-slcan-")
        self.path = os.path.join(self._dir, "slcan")
        os.symlink(self.device, self.path)
        self.open = False
        self.bitrate = 500_000
        self.timestamps = False
        self._lock = threading.Lock()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self.ecus = IsoTpEcus(sim, self._send)
        self._thread = threading.Thread(target=self._run, name="sim-slcan", daemon=True)
        self._thread.start()

    def _write(self, data: bytes) -> None:
        with self._lock, contextlib.suppress(OSError):
            os.write(self._master, data)

    def _send(self, arb_id: int, data: bytes, extended: bool) -> None:
        from firmware_sim.ecu import can_bitrate

        if not self.open or self.bitrate != can_bitrate(self.sim.bus.protocol):
            return
        head = f"T{arb_id:08X}" if extended else f"t{arb_id:03X}"
        line = f"{head}{len(data)}{data.hex().upper()}"
        if self.timestamps:
            line += f"{int(time.monotonic() * 1000) % 60000:04X}"
        self._write(line.encode() + b"\r")

    def _command(self, cmd: str) -> bytes:
        if not cmd:
            return b""
        c = cmd[0]
        if cmd in SLCAN_BITRATES:
            if self.open:
                return b"\a"
            self.bitrate = SLCAN_BITRATES[cmd]
            return b"\r"
        if c in {"s", "Y"}:
            return b"\r"
        if cmd in {"O", "L"}:
            self.open = True
            return b"\r"
        if cmd == "C":
            self.open = False
            return b"\r"
        if cmd == "V":
            return b"V1013\r"
        if cmd == "v":
            return b"vSIM1\r"
        if cmd == "N":
            return b"NSIM0\r"
        if cmd == "F":
            return b"F00\r"
        if c == "Z" and cmd[1:] in {"0", "1"}:
            self.timestamps = cmd[1:] == "1"
            return b"\r"
        if c in "tT":
            idlen = 3 if c == "t" else 8
            try:
                arb = int(cmd[1:1 + idlen], 16)
                dlc = int(cmd[1 + idlen])
                data = bytes.fromhex(cmd[2 + idlen:2 + idlen + dlc * 2])
            except (ValueError, IndexError):
                return b"\a"
            if not self.open or len(data) != dlc or dlc > 8:
                return b"\a"
            from firmware_sim.ecu import can_bitrate

            if self.bitrate == can_bitrate(self.sim.bus.protocol):
                self.ecus.on_frame(arb, data, c == "T")
            return b"z\r" if c == "t" else b"Z\r"
        if c in "rR":
            return b"z\r" if c == "r" else b"Z\r"
        return b"\a"

    def _run(self) -> None:
        buf = bytearray()
        while not self._stopping:
            r, _, _ = select.select([self._master, self._wake_r], [], [], None)
            if self._wake_r in r:
                return
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            buf += data
            while b"\r" in buf:
                idx = buf.index(b"\r")
                cmd = bytes(buf[:idx]).decode("ascii", "replace").strip()
                del buf[:idx + 1]
                out = self._command(cmd)
                if out:
                    self._write(out)

    def stop(self) -> None:
        """Stop serving and remove the pty."""
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.stop()
