"""``status``, ``watch``, ``values``, ``pids``, ``dtc``, ``trips``, ``query``: the CLI over the diagnostic socket.

Every command talks to a running daemon through its diagnostic socket (see :mod:`gateway.diag` and
``docs/operations.md``). The socket is ``--socket PATH`` (or ``tcp:HOST:PORT``), else
``$OBD_GATEWAY_SOCKET``, else ``diag.socket`` from ``--config FILE`` (default: the system
configuration if it exists, else ``/run/obd-gateway/diag.sock``). Output is a human-readable table,
or the answer's JSON with ``--json``. An unreachable daemon is one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from gateway import config, model
from gateway.common import diagwire, jsonout
from gateway.errors import GatewayError

DEFAULT_TIMEOUT_S = 40.0  # above the server's 30 s request timeout, so its answer wins


class DiagUnavailable(GatewayError):
    """The daemon's diagnostic socket cannot be reached."""


class DiagRequestFailed(GatewayError):
    """The daemon answered a request with an error object."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class DiagClient:
    """A blocking client for the line-delimited JSON protocol (one request at a time, plus streams)."""

    def __init__(self, address: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self._next_id = 1
        self.pending_stream: deque[dict[str, Any]] = deque()

    def connect(self) -> DiagClient:
        """Open the connection; :class:`DiagUnavailable` with a one-line reason when it fails."""
        try:
            if self.address.startswith("tcp:"):
                host, _, port = self.address[4:].rpartition(":")
                self.sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=self.timeout_s)
            else:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(self.timeout_s)
                self.sock.connect(self.address)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.close()
            raise DiagUnavailable(
                f"cannot reach the daemon at {self.address}: {reason} "
                "(is obd-gateway running? pick the socket with --socket or --config)"
            ) from None
        return self

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> DiagClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, obj: dict[str, Any]) -> None:
        """Send one request line."""
        assert self.sock is not None
        try:
            self.sock.sendall(diagwire.encode(obj))
        except OSError as exc:
            raise DiagUnavailable(f"connection to the daemon lost: {exc}") from None

    def read_message(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The next line from the daemon as a dict; None when ``timeout_s`` passes first."""
        assert self.sock is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                try:
                    msg = diagwire.decode(line)
                except ValueError:
                    raise DiagUnavailable("the daemon sent a line that is not JSON") from None
                if isinstance(msg, dict):
                    return msg
                continue
            wait = self.timeout_s if deadline is None else max(0.0, deadline - time.monotonic())
            self.sock.settimeout(wait if wait > 0 else 0.001)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                if deadline is not None:
                    return None
                raise DiagUnavailable(f"the daemon did not answer within {self.timeout_s:.0f} s") from None
            except OSError as exc:
                raise DiagUnavailable(f"connection to the daemon lost: {exc}") from None
            if not chunk:
                raise DiagUnavailable("the daemon closed the connection")
            self._buf += chunk

    def request(self, cmd: str, **args: Any) -> Any:
        """Send ``cmd`` and return the answer's ``data``; :class:`DiagRequestFailed` on an error answer."""
        req_id = self._next_id
        self._next_id += 1
        self.send({"cmd": cmd, "id": req_id, **args})
        while True:
            msg = self.read_message()
            assert msg is not None
            if "stream" in msg:
                self.pending_stream.append(msg)
                continue
            if msg.get("id") not in (req_id, None):
                continue
            if msg.get("ok"):
                return msg.get("data")
            err = msg.get("error") or {}
            raise DiagRequestFailed(str(err.get("code", "error")), str(err.get("message", "request failed")))


# -- socket resolution ----------------------------------------------------------------------------
def resolve_socket(args: argparse.Namespace) -> str:
    """``--socket``, else ``$OBD_GATEWAY_SOCKET``, else ``diag.socket`` of the configuration."""
    if getattr(args, "socket", None):
        return str(args.socket)
    env = os.environ.get("OBD_GATEWAY_SOCKET")
    if env:
        return env
    path = getattr(args, "config", None)
    if path:
        cfg = config.load(path)
    elif Path(config.SYSTEM_CONFIG_PATH).exists():
        try:
            cfg = config.load(config.SYSTEM_CONFIG_PATH)
        except GatewayError:
            cfg = config.Config()
    else:
        cfg = config.Config()
    if cfg.diag.tcp_port and not Path(cfg.diag.socket).exists():
        return f"tcp:127.0.0.1:{cfg.diag.tcp_port}"
    return cfg.diag.socket


# -- rendering ------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) or "-"
    if isinstance(value, dict):
        return jsonout.dumps(value)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    """Print ``rows`` as an aligned text table with the given columns."""
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=out)


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


_MAX_CELL = 72


def render_status(data: dict[str, Any], out: TextIO, verbose: bool = False) -> None:
    """Key/value lines (long values shortened unless ``verbose``), then the components as a table."""
    rest = {k: v for k, v in data.items() if k != "components"}
    pairs = list(_flatten(rest))
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        text = _fmt(value)
        if len(text) > _MAX_CELL and not verbose:
            count = f" ({len(value)} items)" if isinstance(value, (list, tuple)) else ""
            text = text[: _MAX_CELL - 1] + "…" + count
        print(f"{key.ljust(width)}  {text}", file=out)
    comps = data.get("components")
    if isinstance(comps, dict) and comps:
        print(file=out)
        rows = [{"component": name, **(v if isinstance(v, dict) else {})} for name, v in comps.items()]
        table(rows, ["component", "state", "restarts", "last_error"], out)


VALUE_COLUMNS = ["name", "value", "unit", "pid", "ecu", "age_s"]


def is_readiness(name: str) -> bool:
    """A PID 01 readiness flag (``*_monitor_available`` / ``*_monitor_incomplete``): 26 rows of yes/no."""
    return "_monitor_" in name and name.endswith(("_available", "_incomplete"))


def readiness_line(rows: Sequence[dict[str, Any]]) -> str | None:
    """The readiness flags folded into one line: how many monitors exist, which are incomplete."""
    flags = {str(r.get("name")): r.get("value") for r in rows if is_readiness(str(r.get("name")))}
    if not flags:
        return None
    available = sorted(n.removesuffix("_monitor_available") for n, v in flags.items()
                       if n.endswith("_available") and v)
    incomplete = sorted(n.removesuffix("_monitor_incomplete") for n, v in flags.items()
                        if n.endswith("_incomplete") and v and n.removesuffix("_incomplete") + "_available" in flags
                        and flags[n.removesuffix("_incomplete") + "_available"])
    text = f"readiness: {len(available)} monitors supported, {len(incomplete)} incomplete"
    return text + (f" ({', '.join(incomplete)})" if incomplete else "") + f" [{len(flags)} flags, --json for all]"


def render_values(rows: list[dict[str, Any]], out: TextIO) -> None:
    """The cache as a table (PIDs and ECUs in hex); readiness flags folded into one line."""
    folded = readiness_line(rows)
    rows = [r for r in rows if not is_readiness(str(r.get("name")))]
    shown = []
    for row in rows:
        r = dict(row)
        if isinstance(r.get("pid"), int):
            r["pid"] = f"{r['pid']:02X}"
        if isinstance(r.get("ecu"), int):
            r["ecu"] = f"{r['ecu']:X}" if r["ecu"] else "-"
        shown.append(r)
    table(shown, VALUE_COLUMNS, out)
    if folded:
        print(folded, file=out)


def _period(hz: Any) -> str | None:
    """A target rate as a period a person reads: ``0.2 s``, ``5 min``; None when unknown."""
    if not isinstance(hz, (int, float)) or hz <= 0:
        return None
    seconds = 1.0 / hz
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def render_pids(rows: list[dict[str, Any]], out: TextIO) -> None:
    """PIDs with their target as a period; slow ones (below once a minute) explained under the table."""
    shown = [dict(r, every=_period(r.get("target_hz"))) for r in rows]
    table(shown, ["pid", "name", "supported", "polled", "target_hz", "every", "achieved_hz"], out)
    slow = [r for r in rows if isinstance(r.get("target_hz"), (int, float)) and 0 < r["target_hz"] < 1 / 60]
    if slow:
        print(f"{len(slow)} PID(s) are read less than once a minute on purpose: values that change slowly "
              "(VIN-era data, distances since codes were cleared, ...) at the reference refresh-rate table's "
              "rate; polling.rates overrides it", file=out)


def render_dtc(data: dict[str, Any], out: TextIO) -> None:
    """MIL state and the codes of each kind."""
    print(f"MIL (check engine light): {'ON' if data.get('mil') else 'off'}", file=out)
    for kind in ("stored", "pending", "permanent"):
        codes = data.get(kind) or []
        texts = [c if isinstance(c, str) else _fmt(c.get("code", c)) if isinstance(c, dict) else str(c) for c in codes]
        print(f"{kind:<10} {', '.join(texts) if texts else 'none'}", file=out)


def render_trips(rows: list[dict[str, Any]], out: TextIO) -> None:
    """Recent trips: start time, duration, distance."""
    shown = []
    for trip in rows:
        start = trip.get("start", {})
        start_ms = start.get("date") if isinstance(start, dict) else None
        shown.append(
            {
                "id": trip.get("id"),
                "start": time.strftime("%Y-%m-%d %H:%M", time.localtime(start_ms / 1000)) if start_ms else None,
                "duration_min": round(trip["duration"] / 60000, 1) if isinstance(trip.get("duration"), int) else None,
                "distance_km": round(trip["distance"] / 1000, 2)
                if isinstance(trip.get("distance"), (int, float))
                else None,
            }
        )
    table(shown, ["id", "start", "duration_min", "distance_km"], out)


# -- commands -------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", metavar="PATH", help="diagnostic socket (a path, or tcp:HOST:PORT)")
    p.add_argument("--config", metavar="FILE", help="read diag.socket from this configuration file")
    p.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help=argparse.SUPPRESS)


def register(sub: Any) -> None:
    """Add the diagnostic-socket subcommands."""
    p = sub.add_parser("status", help="the running daemon's state (adapter, trip, uplinks, components)")
    _common(p)
    p.add_argument("-v", "--verbose", action="store_true", help="do not shorten long values")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("watch", help="live view of values and events (Ctrl-C to quit)")
    _common(p)
    p.add_argument("--interval", type=float, default=0.5, help="redraw at most this often, seconds")
    p.set_defaults(handler=cmd_watch)

    p = sub.add_parser("values", help="the latest value of every polled PID")
    _common(p)
    p.set_defaults(handler=cmd_values)

    p = sub.add_parser("pids", help="supported and polled PIDs, target and achieved rates")
    _common(p)
    p.set_defaults(handler=cmd_pids)

    p = sub.add_parser("dtc", help="read diagnostic trouble codes (or clear them with --clear)")
    _common(p)
    p.add_argument(
        "--clear",
        action="store_true",
        help="clear the codes and the MIL (needs allow_clear_dtc = true in the daemon's [diag] section)",
    )
    p.add_argument("--yes", action="store_true", help="with --clear: do not ask for confirmation")
    p.set_defaults(handler=cmd_dtc)

    p = sub.add_parser("trips", help="recent trips")
    _common(p)
    p.add_argument("--limit", type=int, default=10, help="how many (default 10)")
    p.set_defaults(handler=cmd_trips)

    p = sub.add_parser("query", help="ask the car for one PID now")
    _common(p)
    p.add_argument("pid", metavar="PID", type=_pid_arg, help="a mode 01 PID in hex, such as 0C")
    p.set_defaults(handler=cmd_query)


def _pid_arg(text: str) -> str:
    """argparse type: a bad PID is a usage error (exit 2) before anything is asked of the daemon."""
    from gateway.diag import RequestError, normalise_pid

    try:
        return normalise_pid(text)
    except RequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ask(args: argparse.Namespace, cmd: str, **kw: Any) -> Any:
    with DiagClient(resolve_socket(args), timeout_s=args.timeout) as client:
        return client.request(cmd, **kw)


def _print_json(data: Any) -> None:
    print(jsonout.dumps(data, indent=2))


def _answer(args: argparse.Namespace, cmd: str, **kw: Any) -> tuple[Any, int]:
    """The answer's data and 0, or None and 1 after printing the daemon's refusal."""
    try:
        return _ask(args, cmd, **kw), 0
    except DiagRequestFailed as exc:
        if args.json:
            _print_json({"ok": False, "error": {"code": exc.code, "message": str(exc)}})
        print(f"obd-gateway: {cmd}: {exc}", file=sys.stderr)
        return None, 1


def cmd_status(args: argparse.Namespace) -> int:
    """``obd-gateway status``."""
    data, code = _answer(args, "status")
    if code == 0:
        _print_json(data) if args.json else render_status(data, sys.stdout, verbose=args.verbose)
    return code


def cmd_values(args: argparse.Namespace) -> int:
    """``obd-gateway values``."""
    data, code = _answer(args, "values")
    if code == 0:
        _print_json(data) if args.json else render_values(data, sys.stdout)
    return code


def cmd_pids(args: argparse.Namespace) -> int:
    """``obd-gateway pids``."""
    data, code = _answer(args, "pids")
    if code == 0:
        if args.json:
            _print_json(data)
        else:
            render_pids(data, sys.stdout)
    return code


def cmd_dtc(args: argparse.Namespace) -> int:
    """``obd-gateway dtc [--clear]``."""
    if args.clear:
        if not args.yes:
            if not sys.stdin.isatty():
                print("obd-gateway: dtc --clear: add --yes to confirm (no terminal to ask on)", file=sys.stderr)
                return 1
            answer = input("Clear all trouble codes, freeze frames and readiness monitors? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("not cleared", file=sys.stderr)
                return 1
        data, code = _answer(args, "clear_dtc", confirm=True)
        if code == 0:
            _print_json(data) if args.json else print("trouble codes cleared")
        return code
    data, code = _answer(args, "dtc")
    if code == 0:
        _print_json(data) if args.json else render_dtc(data, sys.stdout)
    return code


def cmd_trips(args: argparse.Namespace) -> int:
    """``obd-gateway trips``."""
    data, code = _answer(args, "trips", limit=args.limit)
    if code == 0:
        _print_json(data) if args.json else render_trips(data, sys.stdout)
    return code


def cmd_query(args: argparse.Namespace) -> int:
    """``obd-gateway query PID``."""
    data, code = _answer(args, "query", pid=args.pid)
    if code == 0:
        if args.json:
            _print_json(data)
        elif not data:
            print(f"no answer for PID {args.pid.upper()} (NO DATA)")
        else:
            render_values(data, sys.stdout)
    return code


# -- watch ----------------------------------------------------------------------------------------
class WatchView:
    """The state behind ``watch``: latest values, recent events, the last status answer."""

    # (label, path in the status answer): the header line of the view
    STATUS_FIELDS = (
        ("adapter", ("adapter", "connected")),
        ("ecu", ("adapter", "ecu_responding")),
        ("protocol", ("adapter", "protocol")),
        ("vin", ("adapter", "vin")),
        ("vin", ("vin",)),
        ("ignition", ("ignition",)),
        ("trip", ("current_trip",)),
        ("trip", ("trip",)),
        ("parser", ("parser",)),
    )

    def __init__(self, max_events: int = 8) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.events: deque[str] = deque(maxlen=max_events)
        self.status: dict[str, Any] = {}
        self.dropped = 0

    def feed(self, msg: dict[str, Any]) -> None:
        """Take one stream line or status answer into the view."""
        kind = msg.get("stream")
        data = msg.get("data")
        if kind == diagwire.STREAM_SAMPLE and isinstance(data, dict):
            self.values[str(data.get("name"))] = data
        elif kind == diagwire.STREAM_EVENT and isinstance(data, dict):
            when = time.strftime("%H:%M:%S", time.localtime(int(data.get("date") or 0) / 1000))
            self.events.append(f"{when} {data.get('automatic_type') or data.get('type')}")
        elif kind == diagwire.STREAM_TRIP and isinstance(data, dict):
            self.events.append(f"trip {data.get('id')} ended, {_fmt(data.get('distance'))} m")
        elif kind == diagwire.STREAM_DROPPED and isinstance(data, dict):
            self.dropped = int(data.get("dropped") or 0)
        elif msg.get("cmd") == "status" and msg.get("ok") and isinstance(data, dict):
            self.status = data

    def render(self, title: str, width: int = 100, height: int = 44) -> str:
        """The whole screen as text (without the ANSI clear sequence), fitted to ``width`` × ``height``.

        The header's fields wrap instead of being cut; readiness flags are folded into one line; when the
        values do not fit, the table is cut with a ``… N more`` line and recent events keep their rows."""
        width = max(20, width)
        height = max(8, height)
        head = [f"{title}  {time.strftime('%H:%M:%S')}  (Ctrl-C to quit)"]
        if self.status:
            shown: dict[str, Any] = {}
            for label, path in self.STATUS_FIELDS:
                value: Any = self.status
                for part in path:
                    value = value.get(part) if isinstance(value, dict) else None
                if value not in (None, "") and label not in shown:
                    shown[label] = value
            head += _wrap([f"{k}={_fmt(v)}" for k, v in shown.items()], width)
            comps = self.status.get("components")
            if isinstance(comps, dict):
                bad = [
                    f"{n}:{c.get('state')}"
                    for n, c in comps.items()
                    if isinstance(c, dict) and c.get("state") not in ("running", "finished")
                ]
                items = bad or ["all running"]
                head += _wrap([f"components: {items[0]}", *items[1:]], width)
        now_ms = model.now_ms()
        rows = []
        for name in sorted(self.values):
            if is_readiness(name):
                continue
            v = self.values[name]
            ts = v.get("ts_ms")
            age = (now_ms - ts) / 1000 if isinstance(ts, (int, float)) else None
            rows.append({"name": name, "value": v.get("value"), "unit": v.get("unit"), "age_s": age})
        folded = readiness_line([{"name": n, "value": v.get("value")} for n, v in self.values.items()])
        tail = ["", "recent events:" + ("" if self.events else " none")]
        tail += [f"  {e}" for e in self.events]
        if self.dropped:
            tail.append(f"(this view missed {self.dropped} updates: the terminal is slower than the car)")
        if folded:
            tail.insert(0, folded)
        buf = io.StringIO()
        table(rows, ["name", "value", "unit", "age_s"], buf)
        body = buf.getvalue().splitlines()
        room = height - len(head) - 1 - len(tail)
        if room < 3:  # a tiny terminal: fewer events, the values first
            keep = max(0, len(tail) - (3 - room))
            tail = tail[:keep]
            room = height - len(head) - 1 - len(tail)
        if len(body) > room:
            cut = max(1, room - 1)
            body = [*body[:cut], f"… {len(body) - cut} more (a taller terminal, or `obd-gateway values`)"]
        lines = [*head, "", *body, *tail][:height]
        return "\n".join(line[:width] for line in lines)


def _wrap(fields: Sequence[str], width: int) -> list[str]:
    """Space-separated fields on as many lines as ``width`` needs (a field is never split)."""
    lines: list[str] = []
    current = ""
    for f in fields:
        if current and len(current) + 2 + len(f) > width:
            lines.append(current)
            current = f
        else:
            current = f"{current}  {f}" if current else f
    if current:
        lines.append(current)
    return lines


def _watch_message(msg: dict[str, Any], view: WatchView, *, as_json: bool) -> bool:
    """Take one message of the subscription; False when the daemon answered with an error."""
    if as_json:
        if "stream" in msg:
            print(jsonout.dumps(msg), flush=True)
    elif msg.get("ok") is False:
        err = msg.get("error") or {}
        print(f"obd-gateway: watch: {err.get('message')}", file=sys.stderr)
        return False
    view.feed(msg)
    return True


def cmd_watch(args: argparse.Namespace) -> int:
    """``obd-gateway watch``: redraw the view until Ctrl-C (exit 0) or the daemon goes away (exit 1)."""
    address = resolve_socket(args)
    client = DiagClient(address, timeout_s=args.timeout).connect()
    view = WatchView()
    tty = sys.stdout.isatty() and not args.json
    try:
        client.send({"cmd": "subscribe", "id": "watch"})
        client.send({"cmd": "status", "id": "status"})
        next_status = time.monotonic() + 2.0
        next_draw = 0.0
        if tty:
            sys.stdout.write("\x1b[?25l")  # hide the cursor while redrawing
        while True:
            msg = client.read_message(timeout_s=args.interval)
            if msg is not None and not _watch_message(msg, view, as_json=args.json):
                return 1
            now = time.monotonic()
            if now >= next_status:
                client.send({"cmd": "status", "id": "status"})
                next_status = now + 2.0
            if not args.json and now >= next_draw:
                size = shutil.get_terminal_size((100, 44)) if tty else os.terminal_size((100, 44))
                screen = view.render(f"obd-gateway watch {address}", width=size.columns, height=size.lines - 1)
                if tty:
                    sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
                else:
                    sys.stdout.write(screen + "\n\n")
                sys.stdout.flush()
                next_draw = now + args.interval
    except KeyboardInterrupt:
        return 0
    finally:
        if tty:
            with contextlib.suppress(Exception):
                sys.stdout.write("\x1b[?25h\n")
                sys.stdout.flush()
        client.close()
