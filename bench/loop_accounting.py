"""Run a Python program (``-m module`` or a script) with its asyncio loop's CPU accounted per component.

    python bench/loop_accounting.py OUT.jsonl -m gateway run --config gateway.toml

Every callback the event loop runs (``asyncio.events.Handle._run``) is timed with ``time.thread_time()``
and charged to its owner: the coroutine of the task it steps (``Poller.run``, ``Daemon.detection_loop``,
``Forwarder.run``...) or, for a plain callback, the callback's name. Once a second a thread appends one
JSON line to OUT.jsonl: ``t`` (``time.monotonic()``, the same clock as the caller's), ``handles`` {owner:
CPU seconds so far}, ``calls`` {owner: callbacks so far} and ``threads`` {thread name: CPU seconds so far,
from ``/proc/self/task/*/stat``: the loop's own thread, the link pump, aiosqlite's...}. The difference
between two lines is where the CPU went in between (``bench/daemon.py --components``).

A measuring tool, not part of the product: it wraps one stdlib method for the life of the process (two
``thread_time()`` calls per callback, about 1 µs each here). cProfile and py-spy were tried first
(docs/performance.md): cProfile multiplies small calls' cost, and py-spy's samples of a thread waiting for
the GIL land on the line it waits at.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import collections
import json
import os
import runpy
import sys
import threading
import time
from pathlib import Path
from typing import Any

_cpu: collections.Counter[str] = collections.Counter()
_calls: collections.Counter[str] = collections.Counter()
_original = asyncio.events.Handle._run
_TICK = os.sysconf("SC_CLK_TCK")


def _owner(handle: asyncio.events.Handle) -> str:
    callback = handle._callback  # type: ignore[attr-defined]
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        return str(task.get_coro().__qualname__)  # type: ignore[union-attr]
    return str(getattr(callback, "__qualname__", type(callback).__name__))


def _timed_run(self: asyncio.events.Handle) -> None:
    start = time.thread_time()
    try:
        _original(self)  # type: ignore[arg-type]
    finally:
        key = _owner(self)
        _cpu[key] += time.thread_time() - start
        _calls[key] += 1


def _threads() -> dict[str, float]:
    # Python 3.11 does not name OS threads: the names come from threading (a pool's are "link-pump_0"...)
    names = {t.native_id: t.name.split(" ")[0] for t in threading.enumerate()}
    out: dict[str, float] = collections.defaultdict(float)
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        name = names.get(int(task.name)) or stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return out


def _writer(path: str) -> None:
    with open(path, "a") as f:
        while True:
            time.sleep(1.0)
            line: dict[str, Any] = {"t": time.monotonic(), "handles": dict(_cpu), "calls": dict(_calls),
                                    "threads": _threads()}
            f.write(json.dumps(line) + "\n")
            f.flush()


def main() -> None:
    """``loop_accounting.py OUT -m module args...`` or ``loop_accounting.py OUT script.py args...``."""
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out, rest = sys.argv[1], sys.argv[2:]
    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
    threading.Thread(target=_writer, args=(out,), name="loop-accounting", daemon=True).start()
    if rest[0] == "-m":
        sys.argv = [rest[1], *rest[2:]]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = rest
        runpy.run_path(rest[0], run_name="__main__")


if __name__ == "__main__":
    main()
