"""``obd-gateway poll``: connect to an adapter, poll PIDs as fast as the scheduler can, report rates.

A user's first check of a new adapter::

    obd-gateway poll --port /dev/ttyUSB0 --pids 0C,0D,05,04,10,11 --duration 10 [--json]

prints the protocol, the achieved values per second in total and per PID, requests per second,
the last value of each PID, and the errors met. ``--json`` prints one JSON object with
``values_per_s``, ``requests_per_s``, ``protocol``, ``per_pid`` (PID → values/s) and ``last``
(PID → last value), plus ``errors``, ``elm_version``, ``baud``, ``duration_s``, and ``forms`` / ``form_notes``
(ECU → the request form kept, and why). Progress lines (port opened, protocol search, request forms) go to
stderr while it connects. It uses the daemon's defaults, the fast baud rate included.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway import config
from gateway.common import jsonout
from gateway.errors import ConfigError, TransportError
from gateway.model import Sample, Samples
from gateway.obd.custom import CustomPid, resolve

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
        default=config.AdapterConfig().fast_baud,
        metavar="N",
        help="switch the adapter to N baud after initialising, with ATBRD or STSBR on STN chips (serial only; "
        f"0 = stay; default {config.AdapterConfig().fast_baud}, as the daemon)",
    )
    p.add_argument("--protocol", default="auto", help="ELM327 protocol 1-C or auto (default)")
    p.add_argument("--pids", default=DEFAULT_PIDS, help=f"mode 01 PIDs in hex, comma-separated ({DEFAULT_PIDS})")
    p.add_argument(
        "--profile",
        default="",
        metavar="NAME",
        help="also poll a vehicle profile's manufacturer-specific PIDs (obd-gateway profiles lists them)",
    )
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
    adapter.validate()  # a malformed port is a configuration error before anything starts
    polling = dataclasses.replace(config.PollingConfig(), pids=_pids(args.pids), multi_pid=not args.no_multi_pid)
    polling.validate()
    state_dir = Path(args.state_dir) if args.state_dir else None
    try:
        custom = resolve(args.profile, ())
    except ConfigError as exc:
        raise ConfigError(f"--profile: {exc}".replace("vehicle.profile: ", "")) from None
    try:
        report = asyncio.run(run_poll(adapter, polling, args.duration, state_dir, progress=_progress, custom=custom))
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(jsonout.dumps(report))
    else:
        _print_text(report)
    return 0 if report["values"] > 0 else 1


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _report_progress(poller: Any, say: Callable[[str], None]) -> None:
    """One line per step of the bring-up once the adapter answered, to stderr: a protocol search can take
    ten seconds or more."""
    said: set[str] = set()

    def once(key: str, text: str) -> None:
        if key not in said:
            said.add(key)
            say(text)

    started = time.monotonic()
    while True:
        info = poller.session.info if poller.session is not None else None
        # nothing before the adapter identified itself: a port with no ELM327 behind it stays one line
        if info is not None and (info.version or info.stn) and not info.protocol:
            once("search", f"adapter {info.stn or 'ELM327 v' + info.version}; looking for the car's protocol "
                           "(a search can take 10 s or more)...")
        if info is not None and info.protocol:
            once("proto", f"protocol {info.protocol_name or info.protocol} after {time.monotonic() - started:.1f} s")
        if info is not None and info.forms:
            forms = ", ".join(f"{ecu:X}: {form.label()}" for ecu, form in sorted(info.forms.items()))
            once("forms", f"request forms: {forms}")
            return
        await asyncio.sleep(0.1)


class _Tally:
    """What the poller published during the measuring window: counts, last values and units per PID."""

    def __init__(self, duration_s: float) -> None:
        self.duration_s = duration_s
        self.first_at: float | None = None
        self.first_requests = 0
        self.counts: dict[str, int] = {}
        self.last: dict[str, Any] = {}
        self.units: dict[str, str] = {}
        self.done = asyncio.Event()
        self.poller: Any = None
        self.custom_names: set[str] = set()

    async def publish(self, item: Any) -> None:
        """The poller's publish: a poll round (:class:`Samples`) counts as each of its samples."""
        if isinstance(item, Samples):
            for s in item:
                self._count(s)
        elif isinstance(item, Sample):
            self._count(item)

    def _count(self, item: Sample) -> None:
        if self.poller is None or self.poller.session is None:
            return
        if item.pid is None and item.name not in self.custom_names:
            return
        requests = self.poller.session.requests
        if self.first_at is None:
            self.first_at = time.monotonic()
            self.first_requests = requests
        key = f"{item.pid:02X}" if item.pid is not None else item.name  # a custom PID is known by its name
        if key not in self.last or item.pid is None or item.name == _first_name(item.pid, item.name):
            # The window opens when the first answer is in: values of that first answer are not
            # counted in the rates (they were read before the window), only shown as last values.
            if requests != self.first_requests:
                self.counts[key] = self.counts.get(key, 0) + 1
            self.last[key] = item.value
            self.units[key] = item.unit
        if time.monotonic() - self.first_at >= self.duration_s:
            self.done.set()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run_poll(
    adapter: config.AdapterConfig,
    polling: config.PollingConfig,
    duration_s: float,
    state_dir: Path | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    custom: Sequence[CustomPid] = (),
) -> dict[str, Any]:
    """Poll for ``duration_s`` seconds after the first value; return the report (see the module doc).
    ``progress`` gets one line per bring-up step (searching, protocol found, request forms)."""
    from gateway.daemon import session_factory
    from gateway.poller import Poller

    tally = _Tally(duration_s)
    sessions = session_factory(adapter, polling, state_dir)
    poller = Poller(
        adapter, polling, sessions=sessions, publish=tally.publish, as_fast_as_possible=True, custom=custom
    )
    tally.poller = poller
    tally.custom_names = {p.name for p in custom}
    task = asyncio.create_task(poller.run(), name="poller")
    is_elm = _port_kind(adapter.port) != "can"
    opened_once: list[bool] = []
    waits = [
        asyncio.create_task(tally.done.wait()),
        # an adapter that cannot even be opened is reported after a few tries, not after the budget
        asyncio.create_task(_wait_opened(poller, NEVER_OPENED_S)),
        # nor one that opens but never answers like an ELM327 (nothing there, or another baud rate)
        asyncio.create_task(_wait_no_answer(poller, NO_ANSWER_S, opened_once) if is_elm else asyncio.Event().wait()),
    ]
    if progress is not None:
        waits.append(asyncio.create_task(_report_progress(poller, progress)))
    # initialisation may take a protocol search (several seconds) plus a reconnect or two
    budget = duration_s + max(30.0, adapter.timeout_s * 6)
    await asyncio.wait({task, *waits[:3]}, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
    for w in waits:
        w.cancel()
    if tally.first_at is None:
        # the port opened but nothing identified itself: say so, even if the poller is between retries now
        if is_elm and opened_once and not _elm_answered(poller):
            await _stop(task)
            raise TransportError(f"no ELM327 answer on {adapter.port} at {adapter.baud} baud")
        if not poller.connected and poller.reconnects and poller.last_error:
            await _stop(task)
            raise TransportError(f"cannot reach the adapter: {poller.last_error}")
    if task.done() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    end = time.monotonic()
    requests = (poller.session.requests if poller.session is not None else 0) - tally.first_requests
    status = poller.status()
    unsupported = sorted(
        str(r["pid"] if r["pid"] != "custom" else r["name"]) for r in poller.pid_stats() if not r["supported"]
    )
    await _stop(task)
    return _report(adapter, tally, status, unsupported=unsupported, end=end, requests=requests)


def _report(
    adapter: config.AdapterConfig, tally: _Tally, status: dict[str, Any], *, unsupported: list[str], end: float,
    requests: int,
) -> dict[str, Any]:
    window = (end - tally.first_at) if tally.first_at is not None else 0.0
    values = sum(tally.counts.values())
    info = status.get("adapter_info", {})

    def per_s(n: float) -> float:
        return round(n / window, 2) if window > 0 else 0.0

    return {
        "port": adapter.port,
        "protocol": status.get("protocol", ""),
        "elm_version": status.get("elm_version", ""),
        "baud": info.get("baud"),
        "forms": info.get("forms", {}),
        "form_notes": info.get("form_notes", {}),
        "duration_s": round(window, 3),
        "values": values,
        "values_per_s": per_s(values),
        "requests_per_s": per_s(requests),
        "per_pid": {pid: per_s(n) for pid, n in sorted(tally.counts.items())},
        "last": {pid: _jsonable(v) for pid, v in sorted(tally.last.items())},
        "units": {pid: tally.units[pid] for pid in sorted(tally.units)},
        "errors": status.get("errors", {}),
        "unsupported": unsupported,
        "custom": status.get("custom", {}),
        # opened AND answering: a port with nothing (or garbage) behind it is not "connected"
        "connected": bool(status.get("connected", False)) and (values > 0 or bool(status.get("elm_version"))),
    }


def _port_kind(port: str) -> str:
    return config.parse_port(port).kind


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
    width = max((len(k) for k in r["per_pid"]), default=2)  # custom PIDs are shown by name
    for pid, rate in r["per_pid"].items():
        print(f"  {pid:<{width}}  {rate:8.1f}/s  last {_human(r['last'].get(pid), units.get(pid, ''))}", file=out)
    if r["unsupported"]:
        print(f"not supported by the car: {', '.join(r['unsupported'])}", file=out)
    notes = r.get("form_notes", {})
    for ecu, form in r.get("forms", {}).items():
        print(f"ECU {ecu}:  {form} per request ({notes.get(ecu, '')})", file=out)
    errors = {k: v for k, v in r["errors"].items() if v}
    print("errors:    " + (", ".join(f"{k}={v}" for k, v in sorted(errors.items())) or "none"), file=out)
