"""The diagnostic socket: line-delimited JSON over a Unix socket, for the CLI and for technicians.

The server depends only on the read-only :class:`StatusSource` protocol below (the daemon
implements it with the poller, the detection engine, the store and the supervisor), never on
those modules themselves.

Wire format (:mod:`gateway.common.diagwire`, shared with the CLI client; examples in
``docs/operations.md``): one JSON object per line in each direction, UTF-8, ``\\n``-terminated, at most
:data:`MAX_LINE` bytes per request line. A request
is ``{"cmd": NAME, ...}`` with an optional ``"id"`` echoed in the answer. Answers are
``{"id": ..., "ok": true, "cmd": NAME, "data": ...}`` or
``{"id": ..., "ok": false, "cmd": NAME, "error": {"code": CODE, "message": TEXT}}``.
After ``subscribe`` the server also sends stream lines ``{"stream": KIND, "data": ...}`` (KIND is
``sample``, ``event``, ``trip``, ``link``, or ``dropped`` with the count of items this client lost).

Robustness: malformed JSON, unknown commands, bad arguments and oversized lines get an error
answer and the connection stays usable. Each client has a bounded output queue: stream items that
do not fit are dropped and counted; a client so stuck that even answers do not fit, or that does
not read for ``write_timeout_s``, is disconnected. The daemon never waits for a client.

Security: the socket is created with mode 0660 (group ``diag.group``); TCP is only opened when
``diag.tcp_port`` is set, and then only on 127.0.0.1. ``clear_dtc`` (the one request that writes to
the vehicle) needs ``diag.allow_clear_dtc = true`` AND ``"confirm": true`` in the request. Status
answers pass through :func:`gateway.secrets.redact`.

Public API (used by :mod:`gateway.daemon`)::

    server = DiagServer(source, socket_path="/run/obd-gateway/diag.sock", group="obd",
                        tcp_port=0, allow_clear_dtc=False, max_clients=32)
    await server.start(); ...; await server.close()
    await server.run()      # start, serve until cancelled, close: a supervisor component
    server.stats()          # clients, requests, errors, dropped, disconnected_stuck
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from gateway.common import vocabulary
from gateway.common.aio import wait_for
from gateway.common.diagwire import (
    MAX_LINE,
    PROTOCOL_VERSION,
    STREAM_DROPPED,
    STREAM_EVENT,
    STREAM_KINDS,
    STREAM_LINK,
    STREAM_SAMPLE,
    STREAM_TRIP,
    decode,
    encode,
)
from gateway.common.ratelog import RateLimitedLog
from gateway.errors import ConfigError, ForbiddenRequest, GatewayError
from gateway.model import Event, LinkState, Sample, TripRecord, now_ms
from gateway.secrets import redact, redact_text

log = logging.getLogger("gateway.diag")
#: client trouble (stuck readers, failing requests) is logged once, then counted: a hostile local user
#: must not be able to fill the journal
_errors = RateLimitedLog(log)

_DROP_REPORT_RETRY_S = 0.2
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes including the terminating NUL
_REMOTE_OK = "\x00remote_unsafe_ok"  # set by answer() only, for a remote caller allowed to clear/restart
COMMANDS = (
    "ping",
    "help",
    "status",
    "values",
    "pids",
    "dtc",
    "clear_dtc",
    "trips",
    "query",
    "subscribe",
    "unsubscribe",
    "restart",
)
_KIND_TYPES: dict[str, type] = {
    STREAM_SAMPLE: Sample,
    STREAM_EVENT: Event,
    STREAM_TRIP: TripRecord,
    STREAM_LINK: LinkState,
}


@runtime_checkable
class Feed(Protocol):
    """A stream of bus items for one subscriber (``gateway.bus.Subscription`` is one)."""

    dropped: int

    async def get(self) -> Any:
        """The next item (Sample, Event, TripRecord, LinkState, or anything with ``to_dict``)."""
        ...

    def close(self) -> None:
        """Stop receiving."""
        ...


class StatusSource(Protocol):
    """What the diagnostic server may ask of the daemon: reads, plus the two guarded actions.

    Methods may raise :class:`~gateway.errors.GatewayError`; the message goes to the client as an
    error answer (``code: "failed"``, or ``"forbidden"`` for ForbiddenRequest).
    """

    def status(self) -> dict[str, Any]:
        """Adapter, protocol, VIN, ignition, current trip, uplink queues, components, parser build…"""
        ...

    def values(self) -> list[dict[str, Any]]:
        """The cache: latest value per (ecu, name), each with ``name, value, unit, pid, ecu, ts_ms, age_s``."""
        ...

    def pids(self) -> list[dict[str, Any]]:
        """Per PID: ``pid, name, supported, polled, target_hz, achieved_hz``."""
        ...

    def trips(self, limit: int) -> list[dict[str, Any]]:
        """The most recent finished trips (newest first), at most ``limit``."""
        ...

    async def dtc(self) -> dict[str, Any]:
        """Read trouble codes: ``{"stored": [...], "pending": [...], "permanent": [...], "mil": bool}``."""
        ...

    async def clear_dtc(self) -> dict[str, Any]:
        """Clear trouble codes (mode 04). Only called after the server's two checks passed."""
        ...

    async def query(self, pid: str) -> list[dict[str, Any]]:
        """Ask the car for one mode 01 PID now (``"0C"``); the decoded values."""
        ...

    def subscribe(self, name: str, maxsize: int, kinds: tuple[type, ...]) -> Feed:
        """A new non-blocking feed of bus items of these types.

        The daemon returns ``bus.subscribe(name, maxsize=maxsize, kinds=kinds)`` (not lossless: a
        full queue drops its oldest item and counts it in ``dropped``).
        """
        ...

    def restart(self, component: str) -> dict[str, Any]:
        """Restart one supervised component (as if it had crashed); KeyError when unknown."""
        ...


class RequestError(GatewayError):
    """A request the server refuses; ``code`` goes on the wire."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def item_to_wire(item: Any) -> tuple[str, dict[str, Any]] | None:
    """A bus item as (stream kind, JSON-ready dict), or None for items the stream does not carry."""
    if isinstance(item, Sample):
        return STREAM_SAMPLE, vocabulary.sample(item)
    if isinstance(item, Event):
        return STREAM_EVENT, item.to_dict()
    if isinstance(item, TripRecord):
        return STREAM_TRIP, item.to_dict()
    if isinstance(item, LinkState):
        return STREAM_LINK, dataclasses.asdict(item)
    to_dict = getattr(item, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
        if isinstance(data, dict):
            return type(item).__name__.lower(), data
    return None


def normalise_pid(raw: Any) -> str:
    """A mode 01 PID as two upper-case hex digits; accepts ``"0C"``, ``"0x0c"``, ``"c"`` or ``12``."""
    if isinstance(raw, bool):
        raise RequestError("bad_request", "pid must be a hex string such as \"0C\"")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip().lower().removeprefix("0x")
        if not 1 <= len(text) <= 2 or any(c not in "0123456789abcdef" for c in text):
            raise RequestError("bad_request", f"pid must be one or two hex digits such as \"0C\" (got {raw!r})")
        value = int(text, 16)
    else:
        raise RequestError("bad_request", "pid must be a hex string such as \"0C\"")
    if not 0 <= value <= 0xFF:
        raise RequestError("bad_request", f"pid must be between 00 and FF (got {raw!r})")
    return f"{value:02X}"


class _Client:
    """One connection: a reader loop, a writer task fed by a bounded queue, maybe a subscription."""

    def __init__(self, server: DiagServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue(server.queue_size)
        self.dropped = 0
        self.reported_dropped = 0
        self.past_feed_drops = 0  # losses of earlier subscriptions, so the reported total never shrinks
        self.feed: Feed | None = None
        self.pump: asyncio.Task[None] | None = None
        self.writer_task: asyncio.Task[None] | None = None
        self.closing = False
        self.kinds: frozenset[str] = frozenset(STREAM_KINDS)
        #: came over the loopback TCP listener (any local user can reach that one)
        self.tcp = isinstance(writer.get_extra_info("peername"), tuple)
        self.logged_internal = False  # at most one log line per client for failing requests

    # -- output ----------------------------------------------------------------------------------
    def send(self, obj: dict[str, Any]) -> None:
        """Queue an answer; a client too stuck to take answers is disconnected."""
        if self.closing:
            return
        try:
            self.out.put_nowait(encode(obj))
        except asyncio.QueueFull:
            self.server.disconnected_stuck += 1
            _errors.warning("stuck", "diagnostic client not reading (output queue full); disconnecting it")
            self.abort()

    def send_stream(self, kind: str, data: Any) -> None:
        """Queue a stream line, or drop it (and count) when the client is behind."""
        if self.closing:
            return
        try:
            self.out.put_nowait(encode({"stream": kind, "data": data}))
        except asyncio.QueueFull:
            self.dropped += 1
            self.server.dropped += 1

    async def write_loop(self) -> None:
        """Write queued lines; a client that does not read for ``write_timeout_s`` is disconnected."""
        try:
            while True:
                line = await self.out.get()
                if line is None:
                    break
                self.writer.write(line)
                try:
                    await wait_for(self.writer.drain(), self.server.write_timeout_s)
                except TimeoutError:
                    self.server.disconnected_stuck += 1
                    _errors.warning("slow", "diagnostic client did not read for %.0f s; disconnecting it",
                                    self.server.write_timeout_s)
                    self.abort()
                    return
        except (ConnectionError, OSError):
            self.abort()

    def abort(self) -> None:
        """Drop the connection now, without waiting for buffered output."""
        self.closing = True
        transport = self.writer.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    # -- subscription ----------------------------------------------------------------------------
    async def pump_feed(self, feed: Feed) -> None:
        """Copy bus items to this client's queue; report losses as ``dropped`` stream lines."""
        seen_feed_drops = feed.dropped
        while True:
            if feed.dropped != seen_feed_drops:
                self.server.dropped += feed.dropped - seen_feed_drops  # lost before reaching our queue
                seen_feed_drops = feed.dropped
            lost = self.dropped + self.past_feed_drops + feed.dropped
            if lost != self.reported_dropped and not self.out.full():
                self.reported_dropped = lost
                self.send_stream(STREAM_DROPPED, {"dropped": lost})
            try:
                # While a loss is unreported, look again soon even if the bus is quiet.
                timeout = _DROP_REPORT_RETRY_S if lost != self.reported_dropped else None
                item = await wait_for(feed.get(), timeout)
            except TimeoutError:
                continue
            wire = item_to_wire(item)
            if wire is not None and wire[0] in self.kinds:
                self.send_stream(*wire)

    def unsubscribe(self) -> bool:
        """Stop the subscription; True when there was one."""
        had = self.feed is not None
        if self.pump is not None:
            self.pump.cancel()
            self.pump = None
        if self.feed is not None:
            self.past_feed_drops += self.feed.dropped
            self.feed.close()
            self.feed = None
        return had

    # -- input -----------------------------------------------------------------------------------
    async def read_loop(self) -> None:
        """Split input into lines; an oversized line is answered once and skipped to its end."""
        buf = bytearray()
        discarding = False
        limit = self.server.max_line
        idle = self.server.idle_timeout_s
        while not self.closing:
            try:
                # a subscriber may legitimately stay silent; anyone else holding a slot must ask something
                chunk = await wait_for(self.reader.read(65536), None if self.feed is not None else idle)
            except TimeoutError:
                self.server.disconnected_idle += 1
                self.send(_error(None, None, "idle", f"no request for {idle:.0f} s; closing the connection"))
                return
            if not chunk:
                return
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > limit:
                        if not discarding:
                            self.server.errors += 1
                            self.send(_error(None, None, "too_long", f"request line longer than {limit} bytes"))
                        discarding = True
                        buf.clear()
                    break
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                if discarding:
                    discarding = False  # the end of the oversized line: already answered
                    continue
                if len(line) > limit:
                    self.server.errors += 1
                    self.send(_error(None, None, "too_long", f"request line longer than {limit} bytes"))
                    continue
                if line.strip():
                    await self.server.handle_line(self, line)


def _over_tcp(client: _Client | None) -> bool:
    """Whether the client is not local: came over the loopback TCP listener (any local user can reach
    that one) or is a remote caller (``None``: a command over MQTT)."""
    return client is None or client.tcp


def _mask_vin(obj: Any) -> Any:
    """``obj`` with every ``vin`` value masked but its last 4 characters (for clients over TCP)."""
    if isinstance(obj, dict):
        return {
            k: ("*" * (len(v) - 4) + v[-4:] if k == "vin" and isinstance(v, str) and v else _mask_vin(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_mask_vin(v) for v in obj]
    return obj


def _error(req_id: Any, cmd: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": req_id, "ok": False, "cmd": cmd, "error": {"code": code, "message": message}}


class DiagServer:
    """Serve the diagnostic protocol on a Unix socket (and, if configured, on loopback TCP)."""

    def __init__(
        self,
        source: StatusSource,
        *,
        socket_path: str | Path,
        group: str = "",
        tcp_port: int = 0,
        allow_clear_dtc: bool = False,
        max_clients: int = 32,
        max_tcp_clients: int = 4,
        idle_timeout_s: float = 300.0,
        max_line: int = MAX_LINE,
        queue_size: int = 1000,
        write_timeout_s: float = 30.0,
        request_timeout_s: float = 30.0,
        socket_mode: int = 0o660,
    ) -> None:
        self.source = source
        self.socket_path = Path(socket_path)
        self.group = group
        self.tcp_port = tcp_port
        self.allow_clear_dtc = allow_clear_dtc
        self.max_clients = max_clients
        self.max_tcp_clients = max_tcp_clients
        self.idle_timeout_s = idle_timeout_s
        self.max_line = max_line
        self.queue_size = queue_size
        self.write_timeout_s = write_timeout_s
        self.request_timeout_s = request_timeout_s
        self.socket_mode = socket_mode
        self._servers: list[asyncio.Server] = []
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.tcp_address: tuple[str, int] | None = None
        self.requests = 0
        self.errors = 0
        self.dropped = 0
        self.refused_busy = 0
        self.disconnected_stuck = 0
        self.disconnected_idle = 0
        self.connections = 0
        self._handlers: dict[str, Callable[[_Client, dict[str, Any]], Awaitable[Any]]] = {
            "ping": self._ping,
            "help": self._help,
            "status": self._status,
            "values": self._values,
            "pids": self._pids,
            "dtc": self._dtc,
            "clear_dtc": self._clear_dtc,
            "trips": self._trips,
            "query": self._query,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "restart": self._restart,
        }

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the socket(s). Raises :class:`GatewayError` if another daemon is serving the path."""
        path = self.socket_path
        if len(os.fsencode(path)) > _MAX_UNIX_PATH:
            raise ConfigError(
                f"diag.socket: {path} is longer than the {_MAX_UNIX_PATH} bytes a Unix socket path may have"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale(path)
            server = await asyncio.start_unix_server(self._on_connect, path=str(path), limit=self.max_line)
        except OSError as exc:
            raise GatewayError(f"diag.socket: cannot listen on {path}: {exc.strerror or exc}") from exc
        self._servers.append(server)
        try:
            os.chmod(path, self.socket_mode)
            if self.group:
                try:
                    shutil.chown(path, group=self.group)
                except LookupError:
                    raise ConfigError(f"diag.group: no such group {self.group!r}") from None
                except PermissionError as exc:
                    raise ConfigError(f"diag.group: cannot give {path} to group {self.group!r}: {exc}") from None
            if self.tcp_port:
                try:
                    tcp = await asyncio.start_server(self._on_connect, host="127.0.0.1", port=self.tcp_port)
                except OSError as exc:
                    raise GatewayError(
                        f"diag.tcp_port: cannot listen on 127.0.0.1:{self.tcp_port}: {exc.strerror or exc}"
                    ) from exc
                self._servers.append(tcp)
                sockname = tcp.sockets[0].getsockname()
                self.tcp_address = (sockname[0], sockname[1])
                log.warning("diagnostic socket also on TCP %s:%d (loopback only)", *self.tcp_address)
        except BaseException:
            await self.close()
            raise
        log.info("diagnostic socket on %s", path)

    @staticmethod
    def _remove_stale(path: Path) -> None:
        """Remove a socket file left by a dead daemon; refuse to steal one a live daemon serves."""
        if not path.exists() and not path.is_symlink():
            return
        if not path.is_socket():
            raise GatewayError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                path.unlink(missing_ok=True)
                return
            raise GatewayError(f"cannot check the existing socket {path}: {exc}") from exc
        finally:
            probe.close()
        raise GatewayError(f"another process is serving {path}; is obd-gateway already running?")

    async def close(self) -> None:
        """Stop listening, disconnect every client, remove the socket file."""
        for server in self._servers:
            server.close()
        for client in list(self._clients):
            client.unsubscribe()
            client.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await wait_for(server.wait_closed(), 2.0)
        self._servers.clear()
        with contextlib.suppress(FileNotFoundError):
            if self.socket_path.is_socket():
                self.socket_path.unlink()

    async def run(self) -> None:
        """Start, serve until cancelled, then close: a component for the supervisor."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.close())

    def stats(self) -> dict[str, Any]:
        """Counters for ``status``."""
        return {
            "socket": str(self.socket_path),
            "tcp": f"{self.tcp_address[0]}:{self.tcp_address[1]}" if self.tcp_address else None,
            "clients": len(self._clients),
            "tcp_clients": sum(1 for c in self._clients if c.tcp),
            "max_clients": self.max_clients,
            "max_tcp_clients": self.max_tcp_clients,
            "connections": self.connections,
            "requests": self.requests,
            "errors": self.errors,
            "stream_dropped": self.dropped,
            "refused_busy": self.refused_busy,
            "disconnected_stuck": self.disconnected_stuck,
            "disconnected_idle": self.disconnected_idle,
            "allow_clear_dtc": self.allow_clear_dtc,
        }

    # -- connections -----------------------------------------------------------------------------
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        client = _Client(self, reader, writer)
        try:
            # Separate budgets: TCP clients (any local user) can never take a Unix socket slot, so the
            # technician in the socket's group always gets in.
            same_kind = sum(1 for c in self._clients if c.tcp == client.tcp)
            limit = self.max_tcp_clients if client.tcp else self.max_clients
            if same_kind >= limit:
                self.refused_busy += 1
                what = "TCP clients" if client.tcp else "clients on the Unix socket"
                writer.write(encode(_error(None, None, "busy", f"too many {what} (max {limit})")))
                with contextlib.suppress(Exception):
                    await wait_for(writer.drain(), 1.0)
                return
            self._clients.add(client)
            client.writer_task = asyncio.create_task(client.write_loop())
            await client.read_loop()
            # The slot is free as soon as the client is done asking (idle, gone, half-closed), not after
            # its last answers have drained: a waiting technician must not be refused meanwhile.
            self._clients.discard(client)
            # Let answers to the last requests go out before closing (a client may half-close).
            if not client.closing:
                if not client.out.full():
                    client.out.put_nowait(None)
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await wait_for(asyncio.shield(client.writer_task), 2.0)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            # Only close() cancels these tasks. Python 3.11's start_unix_server callback calls
            # task.exception() on the handler task, which raises for a cancelled task: end normally.
            pass
        finally:
            client.closing = True
            client.unsubscribe()
            if client.writer_task is not None:
                client.writer_task.cancel()
            self._clients.discard(client)
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def handle_line(self, client: _Client, line: bytes) -> None:
        """Answer one request line (errors included); never raises for client mistakes."""
        try:
            req = decode(line)
        except ValueError as exc:
            self.requests += 1
            self.errors += 1
            client.send(_error(None, None, "bad_json", str(exc)))
            return
        client.send(await self.answer(req, client))

    def _checked(self, req: Any, client: _Client | None, *, remote_unsafe_ok: bool) -> dict[str, Any]:
        """The request as a dict with a known ``cmd``, or RequestError; the remote-unsafe marker is never
        taken from the wire, only set here for a remote caller allowed to clear or restart."""
        if not isinstance(req, dict):
            raise RequestError("bad_request", "a request must be a JSON object such as {\"cmd\": \"status\"}")
        req = {k: v for k, v in req.items() if k != _REMOTE_OK}
        if client is None and remote_unsafe_ok:
            req[_REMOTE_OK] = True
        cmd = req.get("cmd")
        if not isinstance(cmd, str):
            raise RequestError("bad_request", "missing \"cmd\" (a string)")
        if cmd not in self._handlers:
            raise RequestError("unknown_cmd", f"unknown command {cmd!r} (known: {', '.join(COMMANDS)})")
        if client is None and cmd in ("subscribe", "unsubscribe"):
            raise RequestError("bad_request", f"{cmd} is only available on the diagnostic socket")
        checked: dict[str, Any] = req
        return checked

    async def answer(
        self, req: Any, client: _Client | None = None, *, remote_unsafe_ok: bool = False
    ) -> dict[str, Any]:
        """The answer object to one decoded request (the one entry point of every caller).

        ``client`` None: a remote caller (the MQTT uplink's commands) that cannot subscribe; ``clear_dtc``
        and ``restart`` treat it as not local unless ``remote_unsafe_ok`` (``mqtt.remote_allow_unsafe``);
        ``clear_dtc`` still needs ``diag.allow_clear_dtc`` and ``"confirm": true``."""
        self.requests += 1
        req_id: Any = None
        cmd: Any = None
        try:
            if isinstance(req, dict):  # known before any check: every error answer names them
                req_id, cmd = req.get("id"), req.get("cmd")
            req = self._checked(req, client, remote_unsafe_ok=remote_unsafe_ok)
            handler = self._handlers[cmd]
            try:
                data = await wait_for(handler(client, req), self.request_timeout_s)  # type: ignore[arg-type]
            except TimeoutError:
                raise RequestError("timeout", f"{cmd} took longer than {self.request_timeout_s:.0f} s") from None
            return {"id": req_id, "ok": True, "cmd": cmd, "data": data}
        except RequestError as exc:
            self.errors += 1
            return _error(req_id, cmd, exc.code, str(exc))
        except ForbiddenRequest as exc:
            self.errors += 1
            return _error(req_id, cmd, "forbidden", redact_text(str(exc)))
        except GatewayError as exc:
            self.errors += 1
            return _error(req_id, cmd, "failed", redact_text(str(exc)))
        except Exception as exc:
            # A bug in a status source must not take the socket down; the log keeps the details, once
            # per client (a client repeating the request must not fill the journal).
            self.errors += 1
            first = client is None or not client.logged_internal
            if client is not None:
                client.logged_internal = True
            # once per client (an MQTT caller is rate-limited upstream): a client repeating the request must
            # not fill the journal
            if first and _errors.error("internal", "diagnostic request %r failed: %s", cmd, redact_text(repr(exc))):
                log.debug("diagnostic request %r traceback", cmd, exc_info=exc)
            return _error(req_id, cmd, "internal", redact_text(f"{type(exc).__name__}: {exc}"))

    # -- commands --------------------------------------------------------------------------------
    async def _ping(self, client: _Client, req: dict[str, Any]) -> Any:
        return {"pong": True, "protocol": PROTOCOL_VERSION, "time_ms": now_ms()}

    async def _help(self, client: _Client, req: dict[str, Any]) -> Any:
        return {"commands": list(COMMANDS), "protocol": PROTOCOL_VERSION, "max_line": self.max_line}

    async def _status(self, client: _Client, req: dict[str, Any]) -> Any:
        data = dict(self.source.status())
        data["diag"] = self.stats()
        # the Unix socket is limited to its group; TCP is open to every local user: no VIN there
        # local TCP users (any account on the box) do not see the VIN; the back-end over MQTT owns the box
        return _mask_vin(redact(data)) if client is not None and client.tcp else redact(data)

    async def _values(self, client: _Client, req: dict[str, Any]) -> Any:
        return self.source.values()

    async def _pids(self, client: _Client, req: dict[str, Any]) -> Any:
        return self.source.pids()

    async def _dtc(self, client: _Client, req: dict[str, Any]) -> Any:
        return await self.source.dtc()

    async def _clear_dtc(self, client: _Client, req: dict[str, Any]) -> Any:
        missing = []
        if not self.allow_clear_dtc:
            missing.append("the configuration must set allow_clear_dtc = true in [diag]")
        if req.get("confirm") is not True:
            missing.append('the request must carry "confirm": true')
        if _over_tcp(client) and not req.get(_REMOTE_OK):
            missing.append("it must come over the Unix socket (TCP has no peer credentials or file permissions)")
        if missing:
            raise RequestError("forbidden", "clearing trouble codes is refused: " + "; ".join(missing))
        log.warning("clearing diagnostic trouble codes on request of a diagnostic client")
        return await self.source.clear_dtc()

    async def _trips(self, client: _Client, req: dict[str, Any]) -> Any:
        limit = req.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise RequestError("bad_request", "limit must be an integer from 1 to 1000")
        return self.source.trips(limit)

    async def _query(self, client: _Client, req: dict[str, Any]) -> Any:
        if "pid" not in req:
            raise RequestError("bad_request", 'query needs "pid", such as {"cmd": "query", "pid": "0C"}')
        return await self.source.query(normalise_pid(req["pid"]))

    async def _subscribe(self, client: _Client, req: dict[str, Any]) -> Any:
        kinds = req.get("kinds", list(STREAM_KINDS))
        if not isinstance(kinds, list) or not kinds or any(k not in STREAM_KINDS for k in kinds):
            raise RequestError("bad_request", f"kinds must be a non-empty list drawn from {list(STREAM_KINDS)}")
        client.unsubscribe()  # a second subscribe replaces the first (new kinds)
        client.kinds = frozenset(kinds)
        types = tuple(_KIND_TYPES[k] for k in STREAM_KINDS if k in client.kinds)
        client.feed = self.source.subscribe(f"diag-client-{id(client):x}", self.queue_size, types)
        client.pump = asyncio.create_task(client.pump_feed(client.feed))
        return {"subscribed": sorted(client.kinds)}

    async def _unsubscribe(self, client: _Client, req: dict[str, Any]) -> Any:
        return {"unsubscribed": client.unsubscribe()}

    async def _restart(self, client: _Client, req: dict[str, Any]) -> Any:
        if _over_tcp(client) and not req.get(_REMOTE_OK):
            raise RequestError("forbidden", "restart is only accepted over the Unix socket, not over TCP")
        component = req.get("component")
        if not isinstance(component, str) or not component:
            raise RequestError("bad_request", 'restart needs "component", such as "uplink:mqtt"')
        try:
            return self.source.restart(component)
        except KeyError:
            raise RequestError("bad_request", f"no component named {component!r}") from None
