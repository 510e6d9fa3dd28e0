"""A tiny ``sd_notify`` client: tell systemd we are ready, what we are doing, and that we are alive.

The protocol (``man sd_notify``) is one datagram per message, ``KEY=VALUE`` lines, sent to the Unix
socket named by ``$NOTIFY_SOCKET``; a name starting with ``@`` lives in the abstract namespace. When
the variable is unset (not started by systemd, or ``Type=simple``), every call is a no-op, so the
daemon can notify unconditionally.

Public API (used by :mod:`gateway.daemon`)::

    notifier = Notifier.from_env()            # reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID
    notifier.ready(status="polling")          # READY=1 (+ STATUS=)
    notifier.status("adapter connected")      # STATUS=...
    notifier.watchdog()                       # WATCHDOG=1
    notifier.stopping()                       # STOPPING=1
    notifier.watchdog_interval_s              # half of WATCHDOG_USEC, or None
    await notifier.watchdog_loop()            # WATCHDOG=1 every watchdog_interval_s, forever

``watchdog_loop`` must run in the daemon's main event loop: if that loop stalls, the pings stop and
systemd restarts the service, which is the point of the watchdog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("gateway.sdnotify")


class Notifier:
    """Send ``sd_notify`` messages to ``address`` (a path, or ``@name`` for the abstract namespace)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._warned = False
        self.dropped = 0  # messages not sent because the receiver's queue was full

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier configured from ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` (``WATCHDOG_PID`` honoured)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process systemd expects pings from; another process (a child) must not ping.
        if raw and (not pid or pid == str(os.getpid())):
            try:
                usec = int(raw)
            except ValueError:
                log.warning("WATCHDOG_USEC=%r is not an integer; watchdog pings disabled", raw)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to talk to."""
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half the watchdog timeout, as systemd recommends."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def _target(self) -> str:
        assert self.address is not None
        # Abstract-namespace sockets are named with a leading NUL byte on the wire.
        return "\0" + self.address[1:] if self.address.startswith("@") else self.address

    def notify(self, **fields: str | int) -> bool:
        """Send one message made of ``KEY=VALUE`` lines; returns False when not sent (never raises)."""
        if self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # a newline would start a new (bogus) assignment
            lines.append(f"{key}={text}")
        payload = "\n".join(lines).encode("utf-8")
        try:
            if self._sock is None:
                # Non-blocking: a datagram socket whose reader is behind (its queue holds only a
                # few messages) would otherwise block the whole event loop in sendto().
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(payload, self._target())
        except BlockingIOError:
            self.dropped += 1
            return False
        except OSError as exc:
            # systemd gone or socket unusable: the daemon keeps working; say it once, not every ping.
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is complete (systemd's ``Type=notify`` waits for this)."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """``STATUS=``: one line shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the main loop is alive."""
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        if status is None:
            return self.notify(STOPPING=1)
        return self.notify(STOPPING=1, STATUS=status)

    def reloading(self) -> bool:
        """``RELOADING=1`` (follow with :meth:`ready` once the reload is done)."""
        return self.notify(RELOADING=1)

    async def watchdog_loop(self) -> None:
        """Send ``WATCHDOG=1`` every :attr:`watchdog_interval_s` until cancelled; returns at once if off."""
        interval = self.watchdog_interval_s
        if interval is None or not self.enabled:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Close the datagram socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
