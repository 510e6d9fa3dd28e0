"""``obd-gateway poll``: connect to an adapter, poll PIDs as fast as the scheduler can, report rates.

A user's first check of a new adapter::

    obd-gateway poll --port /dev/ttyUSB0 --pids 0C,0D,05,04,10,11 --duration 10 [--json]

prints the protocol, the achieved values per second in total and per PID, requests per second,
the last value of each PID, and the errors met. ``--json`` prints one JSON object with
``values_per_s``, ``requests_per_s``, ``protocol``, ``per_pid`` (PID → values/s) and ``last``
(PID → last value), plus ``errors``, ``elm_version``, ``baud`` and ``duration_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from gateway import config
from gateway.common import jsonout
from gateway.errors import ConfigError, TransportError
from gateway.model import LinkState, Sample

DEFAULT_PIDS = "0C,0D,05,04,10,11"
NEVER_OPENED_S = 8.0
# An ELM327 prints its banner within ~1 s of ATZ (a few seconds over BLE); a port that opened but has
# said nothing an ELM327 would say after this long has no adapter behind it, or one at another baud rate.
NO_ANSWER_S = 9.0
# ... and one that has not sent back a single byte (an ELM327 echoes ATZ at once) after this long.
SILENT_S = 4.0


def register(sub: Any) -> None:
    """Add the ``poll`` subcommand."""
    p = sub.add_parser(
        "poll",
        help="poll PIDs from an adapter as fast as possible and report the rates",
        description="Connect to an adapter, initialise it, poll the PIDs as fast as the scheduler can "
        "for the duration, and print the protocol, values/s in total and per PID, requests/s and errors.",
    )
    p.add_argument(
        "--port",
        required=True,
        help="serial device (/dev/ttyUSB0), tcp:HOST:PORT, ble:NAME_OR_ADDRESS or can:INTERFACE:CHANNEL",
    )
    p.add_argument("--baud", type=int, default=38400, help="serial baud rate of the adapter (default 38400)")
    p.add_argument(
        "--fast-baud",
        type=int,
        default=0,
        metavar="N",
        help="switch the adapter to N baud with ATBRD after initialising (serial only; 0 = stay)",
    )
    p.add_argument("--protocol", default="auto", help="ELM327 protocol 1-C or auto (default)")
    p.add_argument("--pids", default=DEFAULT_PIDS, help=f"mode 01 PIDs in hex, comma-separated ({DEFAULT_PIDS})")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds of polling (default 10)")
    p.add_argument("--no-multi-pid", action="store_true", help="one PID per request (for comparison)")
    p.add_argument("--state-dir", metavar="DIR", help="remember the detected protocol in DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the session does (to stderr)")
    p.set_defaults(handler=_handler)


def _pids(text: str) -> list[str]:
    pids = [p.strip().upper() for p in text.split(",") if p.strip()]
    if not pids:
        raise ConfigError("--pids: give at least one PID")
    for p in pids:
        if len(p) != 2 or any(c not in "0123456789ABCDEF" for c in p):
            raise ConfigError(f"--pids: {p!r} is not a two-digit hex PID (example: --pids 0C,0D,05)")
    return pids


def _handler(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("gateway")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    # retries and reconnects are routine; the report says what matters
    logger.setLevel(logging.INFO if args.verbose else logging.ERROR)
    logger.propagate = False
    try:
        return _poll(args)
    finally:  # called in-process too (tests, embedding): leave logging as it was
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _poll(args: argparse.Namespace) -> int:
    if args.duration <= 0:
        raise ConfigError(f"--duration: must be greater than 0 (got {args.duration})")
    adapter = config.AdapterConfig(
        port=args.port, baud=args.baud, protocol=args.protocol, fast_baud=args.fast_baud
    )
    adapter.validate()
    from gateway.transport import parse_port

    parse_port(adapter.port)  # a malformed port is a configuration error before anything starts
    polling = dataclasses.replace(config.PollingConfig(), pids=_pids(args.pids), multi_pid=not args.no_multi_pid)
    polling.validate()
    state_dir = Path(args.state_dir) if args.state_dir else None
    try:
        report = asyncio.run(run_poll(adapter, polling, args.duration, state_dir))
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(jsonout.dumps(report))
    else:
        _print_text(report)
    return 0 if report["values"] > 0 else 1


async def run_poll(
    adapter: config.AdapterConfig, polling: config.PollingConfig, duration_s: float, state_dir: Path | None = None
) -> dict[str, Any]:
    """Poll for ``duration_s`` seconds after the first value; return the report (see the module doc)."""
    from gateway.poller import Poller

    first: list[float] = []
    first_requests: list[int] = []
    counts: dict[str, int] = {}
    last: dict[str, Any] = {}
    units: dict[str, str] = {}
    link: list[LinkState] = []
    poller: Poller | None = None
    done = asyncio.Event()

    async def publish(item: Any) -> None:
        if isinstance(item, LinkState):
            link.append(item)
            return
        if not isinstance(item, Sample) or item.pid is None:
            return
        assert poller is not None and poller.session is not None
        if not first:
            first.append(time.monotonic())
            first_requests.append(poller.session.requests)
        key = f"{item.pid:02X}"
        if key not in last or item.name == _first_name(item.pid, item.name):
            # The window opens when the first answer is in: values of that first answer are not
            # counted in the rates (they were read before the window), only shown as last values.
            if poller.session.requests != first_requests[0]:
                counts[key] = counts.get(key, 0) + 1
            last[key] = item.value
            units[key] = item.unit
        if time.monotonic() - first[0] >= duration_s:
            done.set()

    poller = Poller(adapter, polling, publish=publish, state_dir=state_dir, as_fast_as_possible=True)
    task = asyncio.create_task(poller.run(), name="poller")
    # initialisation may take a protocol search (several seconds) plus a reconnect or two
    budget = duration_s + max(30.0, adapter.timeout_s * 6)
    waiter = asyncio.create_task(done.wait())
    # an adapter that cannot even be opened is reported after a few tries, not after the budget
    opened = asyncio.create_task(_wait_opened(poller, NEVER_OPENED_S))
    # nor one that opens but never answers like an ELM327 (nothing there, or another baud rate)
    is_elm = _port_kind(adapter.port) != "can"
    opened_once: list[bool] = []
    silent = asyncio.create_task(
        _wait_no_answer(poller, NO_ANSWER_S, opened_once) if is_elm else asyncio.Event().wait()
    )
    await asyncio.wait({waiter, task, opened, silent}, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    opened.cancel()
    silent.cancel()
    # the port opened but nothing identified itself: say so, even if the poller is between retries now
    if not first and is_elm and opened_once and not _elm_answered(poller):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise TransportError(f"no ELM327 answer on {adapter.port} at {adapter.baud} baud")
    if not first and not poller.connected and poller.reconnects and poller.last_error:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise TransportError(f"cannot reach the adapter: {poller.last_error}")
    if task.done() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    end = time.monotonic()
    requests_now = poller.session.requests if poller.session is not None else 0
    status = poller.status()
    unsupported = sorted(str(r["pid"]) for r in poller.pid_stats() if not r["supported"])
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    window = (end - first[0]) if first else 0.0
    values = sum(counts.values())
    requests = requests_now - (first_requests[0] if first_requests else 0)
    per_pid = {pid: round(n / window, 2) if window > 0 else 0.0 for pid, n in sorted(counts.items())}
    info = status.get("adapter_info", {})
    return {
        "port": adapter.port,
        "protocol": status.get("protocol", ""),
        "elm_version": status.get("elm_version", ""),
        "baud": info.get("baud"),
        "pipelining": bool(info.get("pipelining", False)),
        "duration_s": round(window, 3),
        "values": values,
        "values_per_s": round(values / window, 2) if window > 0 else 0.0,
        "requests_per_s": round(requests / window, 2) if window > 0 else 0.0,
        "per_pid": per_pid,
        "last": {pid: _jsonable(v) for pid, v in sorted(last.items())},
        "units": {pid: units[pid] for pid in sorted(units)},
        "errors": status.get("errors", {}),
        "unsupported": unsupported,
        # opened AND answering: a port with nothing (or garbage) behind it is not "connected"
        "connected": bool(status.get("connected", False)) and (values > 0 or bool(status.get("elm_version"))),
    }


def _port_kind(port: str) -> str:
    from gateway.transport import parse_port

    return str(parse_port(port).kind)


def _elm_answered(poller: Any) -> bool:
    """Whether an ELM327 has identified itself (its banner or ATI gave a version)."""
    info = getattr(poller.session, "info", None)
    return bool(getattr(info, "version", "") or getattr(info, "stn", ""))


async def _wait_no_answer(poller: Any, limit_s: float, opened_once: list[bool]) -> None:
    """Return once the port has been open ``limit_s`` without an ELM327 identifying itself, a first
    initialisation failed without one (the adapter's banner is the first thing it says), or nothing
    at all came back for :data:`SILENT_S`."""
    opened_at: float | None = None
    while True:
        if _elm_answered(poller):
            await asyncio.Event().wait()  # an adapter answered: never finish (the other waits decide)
        now = time.monotonic()
        if poller.connected and opened_at is None:
            opened_at = now
            opened_once.append(True)
        if opened_at is not None and (now - opened_at >= limit_s or poller.last_error):
            return
        heard = getattr(poller.session, "heard", True)
        if opened_at is not None and not heard and now - opened_at >= min(SILENT_S, limit_s):
            return
        await asyncio.sleep(0.1)


async def _wait_opened(poller: Any, limit_s: float) -> None:
    """Return once ``limit_s`` passed without the adapter ever being opened."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if poller.connected:
            await asyncio.Event().wait()  # opened: never finish (the other waits decide)
        await asyncio.sleep(0.1)


def _first_name(pid: int, fallback: str) -> str:
    from gateway.poller import pid_name

    return pid_name(pid) or fallback


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, tuple):
        return list(v)
    return v


def _human(value: Any, unit: str) -> str:
    """A value as a person reads it: floats rounded (2 decimals below 10, else 1), then the unit."""
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, float):
        text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value) or "none"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip() if unit else text


def _print_text(r: dict[str, Any], out: Any = sys.stdout) -> None:
    print(f"port:      {r['port']}", file=out)
    print(f"protocol:  {r['protocol'] or '(none detected)'}", file=out)
    if r["elm_version"]:
        print(f"adapter:   ELM327 v{r['elm_version']}" + (f" at {r['baud']} baud" if r["baud"] else ""), file=out)
    print(f"polled:    {r['duration_s']:.1f} s", file=out)
    print(f"values/s:  {r['values_per_s']:.1f}", file=out)
    print(f"requests/s: {r['requests_per_s']:.1f}", file=out)
    units = r.get("units", {})
    for pid, rate in r["per_pid"].items():
        print(f"  {pid}  {rate:8.1f}/s  last {_human(r['last'].get(pid), units.get(pid, ''))}", file=out)
    if r["unsupported"]:
        print(f"not supported by the car: {', '.join(r['unsupported'])}", file=out)
    errors = {k: v for k, v in r["errors"].items() if v}
    print("errors:    " + (", ".join(f"{k}={v}" for k, v in sorted(errors.items())) or "none"), file=out)
