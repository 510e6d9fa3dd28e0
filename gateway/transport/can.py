"""Raw CAN frames with python-can: the transport under the raw CAN session (``gateway.link.can``).

``can:INTERFACE:CHANNEL`` (``can:socketcan:can0``, ``can:slcan:/dev/ttyACM0``, ``can:virtual:test``;
append ``@250000`` to the channel for 250 kbit/s buses where the interface sets the bit rate).

:class:`CanTransport` opens the python-can bus (python-can is imported only here, when a ``can:`` port is
used), hands received frames to the event loop through a bounded queue, and sends frames through the write
guard (:class:`gateway.obd.guard.CanWriteGuard`): only single-frame read requests and flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gateway.errors import TransportError
from gateway.obd.guard import CanWriteGuard

#: frames kept between reads; a request's answer is a few dozen frames at most
MAX_QUEUED_FRAMES = 4096


class CanTransport:
    """A python-can bus; received frames are queued for the event loop."""

    def __init__(self, interface: str = "socketcan", channel: str = "can0", bitrate: int = 500_000) -> None:
        if "@" in channel:
            channel, _, rate = channel.rpartition("@")
            try:
                bitrate = int(rate)
            except ValueError:
                raise TransportError(f"can:{interface}:{channel}: bad bit rate {rate!r}") from None
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.description = f"can:{interface}:{channel}"
        self._bus: Any = None
        self._notifier: Any = None
        self.frames: asyncio.Queue[tuple[int, bytes, bool]] = asyncio.Queue(MAX_QUEUED_FRAMES)
        self._error: TransportError | None = None
        #: every frame sent passes it (read-only toward the car, see gateway.obd.guard)
        self.guard = CanWriteGuard()
        #: frames dropped because nobody consumed them (a busy bus between requests)
        self.dropped = 0

    @property
    def is_open(self) -> bool:
        """Whether the bus is open."""
        return self._bus is not None

    @property
    def baud(self) -> int | None:
        """None: there is no serial rate between us and the bus."""
        return None

    async def open(self) -> None:
        """Open the bus and start receiving."""
        try:
            import can
        except ImportError as exc:
            raise TransportError("raw CAN needs python-can (pip install python-can)") from exc
        kwargs: dict[str, Any] = {"interface": self.interface, "channel": self.channel}
        if self.interface not in ("socketcan", "virtual"):
            kwargs["bitrate"] = self.bitrate
        if self.interface == "slcan":
            kwargs["sleep_after_open"] = 0
        loop = asyncio.get_running_loop()
        self.frames = asyncio.Queue(MAX_QUEUED_FRAMES)
        self._error = None
        try:
            self._bus = await loop.run_in_executor(None, lambda: can.Bus(**kwargs))
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise TransportError(f"{self.description}: cannot open: {exc}") from exc

        def on_message(msg: Any) -> None:
            if msg.is_error_frame or msg.is_remote_frame:
                return
            loop.call_soon_threadsafe(self._queue, (msg.arbitration_id, bytes(msg.data), msg.is_extended_id))

        def on_error(exc: Exception) -> None:
            self._error = TransportError(f"{self.description}: receive failed: {exc}")
            loop.call_soon_threadsafe(self._queue, (-1, b"", False))

        class Forward(can.Listener):  # python-can calls it from its receive thread
            def on_message_received(self, msg: can.Message) -> None:
                on_message(msg)

            def on_error(self, exc: Exception) -> None:
                on_error(exc)

        self._notifier = can.Notifier(self._bus, [Forward()], timeout=0.1)

    async def close(self) -> None:
        """Stop receiving and shut the bus down (idempotent)."""
        notifier, self._notifier = self._notifier, None
        bus, self._bus = self._bus, None
        if notifier is not None:
            with contextlib.suppress(Exception):
                notifier.stop()
        if bus is not None:
            with contextlib.suppress(Exception):
                bus.shutdown()

    def _queue(self, frame: tuple[int, bytes, bool]) -> None:
        # a busy bus (a whole car's traffic on a sniffing interface) must not grow memory: drop the oldest
        if self.frames.full():
            self.frames.get_nowait()
            self.dropped += 1
        self.frames.put_nowait(frame)

    def send(self, arb_id: int, data: bytes, extended: bool) -> None:
        """Send one frame, if the write guard lets it (DisallowedRequest otherwise)."""
        if self._bus is None:
            raise TransportError(f"{self.description}: not open")
        self.guard.check(arb_id, data, extended)
        import can

        try:
            self._bus.send(can.Message(arbitration_id=arb_id, data=data, is_extended_id=extended), timeout=0.2)
        except (can.CanError, OSError) as exc:
            raise TransportError(f"{self.description}: send failed: {exc}") from exc

    async def next_frame(self, wait_s: float) -> tuple[int, bytes, bool] | None:
        """The next received frame, or None when none arrives within ``wait_s``."""
        try:
            async with asyncio.timeout(max(0.0, wait_s)):
                frame = await self.frames.get()
        except TimeoutError:
            return None
        if frame[0] == -1 and self._error is not None:
            raise self._error
        return frame

    def discard_pending(self) -> int:
        """Drop frames received but not consumed."""
        n = 0
        while not self.frames.empty():
            self.frames.get_nowait()
            n += 1
        return n


__all__ = ["CanTransport"]
