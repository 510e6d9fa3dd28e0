"""Run the daemon's long-running components in one event loop and keep them running.

A component is a name and an async callable that runs until cancelled (the poller, the detection
loop, the store loop, one forwarder per uplink, the diagnostic server). When one raises, only that
one is restarted, after an exponential backoff with jitter; the others never notice, so a crashing
uplink never stops polling. A ``critical`` component (the store) that fails ``max_failures`` times
in a row stops the whole daemon with exit code 1, and systemd's ``Restart=on-failure`` takes over.

Public API (used by :mod:`gateway.daemon`)::

    sup = Supervisor(backoff_initial_s=0.5, backoff_max_s=30.0)
    sup.add("store", store_loop, critical=True)       # in start order
    sup.add("poller", poller.run)
    sup.add("uplink:mqtt", forwarder.run)
    sup.install_signal_handlers(reload=daemon.reload)  # SIGTERM/SIGINT → stop, SIGHUP → reload
    sup.start()                                        # creates the tasks (inside the running loop)
    reason = await sup.wait()                          # until a signal, request_stop() or a fatal failure
    await sup.stop(deadline_s=4.0)                     # cancel in reverse start order, bounded
    return sup.exit_code                               # 0, or 1 after a critical failure

    sup.status()         # {"uplink:mqtt": {"state": "restarting", "restarts": 2, "last_error": "...", ...}}
    sup.summary()        # one line for sd_notify STATUS=
    sup.kill("uplink:mqtt")   # fail a component on purpose (tests): restarted like a crash
    sup.restart("uplink:mqtt")   # an operator's restart: not a failure, never for a critical component

Restart policy: the n-th consecutive failure waits what :class:`gateway.common.backoff.Backoff` gives for n
failures (a delay drawn from ``[cap/2, cap]`` with ``cap = min(backoff_max_s, backoff_initial_s * 2**(n-1))``,
the one jitter rule of the project), so many boxes restarting after a shared outage do not hammer a
back-end in lock-step. A run that lasted ``healthy_after_s`` resets the count.

:class:`ConfigReloader` is the SIGHUP half: it loads the file, refuses an invalid one with one log
line and keeps the running configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from gateway.common.backoff import Backoff
from gateway.errors import ForbiddenRequest, GatewayError
from gateway.model import now_ms
from gateway.secrets import redact_text

log = logging.getLogger("gateway.supervisor")

ComponentFn = Callable[[], Awaitable[Any]]

# Component states as shown by ``obd-gateway status``.
STARTING = "starting"
RUNNING = "running"
RESTARTING = "restarting"
FINISHED = "finished"
FAILED = "failed"
STOPPED = "stopped"

# After the stop deadline, what is left gets this long to unwind once cancelled.
_STOP_GRACE_S = 0.1


class ComponentKilled(GatewayError):
    """Raised inside a component by :meth:`Supervisor.kill` (an operator or a test asked for it)."""


@dataclass(slots=True)
class ComponentState:
    """What the supervisor knows about one component (read-only for everyone else)."""

    name: str
    critical: bool
    state: str = STARTING
    restarts: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None
    started_ms: int | None = None
    next_restart_in_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by the diagnostic ``status`` answer."""
        return {
            "state": self.state,
            "critical": self.critical,
            "restarts": self.restarts,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "started_ms": self.started_ms,
            "next_restart_in_s": self.next_restart_in_s,
        }


@dataclass(slots=True)
class _Component:
    fn: ComponentFn
    state: ComponentState
    restart_on_exit: bool
    max_failures: int | None
    task: asyncio.Task[None] | None = None
    run_task: asyncio.Task[Any] | None = None
    kill_reason: str | None = None
    requested: bool = False  # the kill is an operator's restart, not a failure
    last_requested: float = -1e18  # time.monotonic() of the last requested restart
    killed: asyncio.Event = field(default_factory=asyncio.Event)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact_text(text)[:500]


class Supervisor:
    """Start, watch and restart named components; stop them in reverse order within a deadline."""

    def __init__(
        self,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        healthy_after_s: float = 60.0,
        critical_max_failures: int = 5,
        rng: random.Random | None = None,
    ) -> None:
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        #: per component, the delay for its n-th consecutive failure (``delay(n)``; no shared count)
        self.backoff = Backoff(backoff_initial_s, backoff_max_s, rng=rng)
        self.healthy_after_s = healthy_after_s
        self.critical_max_failures = critical_max_failures
        self._components: dict[str, _Component] = {}
        self._stop_event: asyncio.Event | None = None
        self.stop_reason: str | None = None
        self.exit_code = 0
        self._started = False

    # -- configuration ---------------------------------------------------------------------------
    def add(
        self,
        name: str,
        fn: ComponentFn,
        *,
        critical: bool = False,
        restart_on_exit: bool = False,
        max_failures: int | None = None,
    ) -> None:
        """Register a component; components start in the order they were added.

        ``fn`` is called afresh for every (re)start. ``critical`` components stop the daemon after
        ``max_failures`` (default ``critical_max_failures``) consecutive failures. A component that
        returns normally is ``finished`` unless ``restart_on_exit``. May be called after
        :meth:`start`, which starts the new component at once.
        """
        if name in self._components:
            raise ValueError(f"component {name!r} already added")
        comp = _Component(
            fn=fn,
            state=ComponentState(name=name, critical=critical),
            restart_on_exit=restart_on_exit,
            max_failures=(max_failures or self.critical_max_failures) if critical else max_failures,
        )
        self._components[name] = comp
        if self._started:
            self._launch(comp)

    @property
    def names(self) -> list[str]:
        """Component names in start order."""
        return list(self._components)

    # -- running ---------------------------------------------------------------------------------
    def _event(self) -> asyncio.Event:
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
        return self._stop_event

    def start(self) -> None:
        """Create one task per component (must be called inside the running event loop)."""
        self._event()
        self._started = True
        for comp in self._components.values():
            if comp.task is None:
                self._launch(comp)

    def _launch(self, comp: _Component) -> None:
        comp.task = asyncio.get_running_loop().create_task(self._keep_running(comp), name=comp.state.name)

    async def _run_once(self, comp: _Component) -> None:
        """One run of the component, interruptible by :meth:`kill` (which turns into a failure)."""
        comp.killed.clear()
        comp.kill_reason = None
        comp.requested = False
        comp.run_task = asyncio.ensure_future(comp.fn())
        killer = asyncio.ensure_future(comp.killed.wait())
        try:
            await asyncio.wait({comp.run_task, killer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            comp.run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await comp.run_task
            raise
        finally:
            killer.cancel()
        if comp.killed.is_set() and not comp.run_task.done():
            comp.run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await comp.run_task
            raise ComponentKilled(comp.kill_reason or "killed")
        if comp.run_task.cancelled():
            # Not our cancellation (we were not cancelled): something inside cancelled the run.
            raise ComponentKilled("the component was cancelled from inside")
        comp.run_task.result()

    async def _keep_running(self, comp: _Component) -> None:
        st = comp.state
        while True:
            st.state = RUNNING
            st.started_ms = now_ms()
            st.next_restart_in_s = None
            began = time.monotonic()
            try:
                await self._run_once(comp)
            except asyncio.CancelledError:
                st.state = STOPPED
                raise
            except ComponentKilled as exc:
                if comp.requested:
                    # An operator's restart is not a failure: it never counts toward a give-up or
                    # systemd's start limit, and it does not lengthen the next crash's backoff.
                    st.restarts += 1
                    st.state = RESTARTING
                    log.info("component %s restarting on request", st.name)
                    await asyncio.sleep(self.backoff_initial_s)
                    continue
                if await self._failed(comp, exc, began):
                    continue
                return
            except Exception as exc:
                if await self._failed(comp, exc, began):
                    continue
                return
            if comp.restart_on_exit:
                st.restarts += 1
                log.warning("component %s returned; restarting", st.name)
                await asyncio.sleep(self.backoff_initial_s)
                continue
            st.state = FINISHED
            return

    async def _failed(self, comp: _Component, exc: BaseException, began: float) -> bool:
        """Count a failure; wait the backoff and return True to restart, or False after giving up."""
        st = comp.state
        if time.monotonic() - began >= self.healthy_after_s:
            st.consecutive_failures = 0
        st.failures += 1
        st.consecutive_failures += 1
        st.last_error = _describe(exc)
        st.last_error_ms = now_ms()
        if comp.max_failures is not None and st.consecutive_failures >= comp.max_failures:
            st.state = FAILED
            log.error(
                "component %s failed %d times in a row (%s)%s",
                st.name,
                st.consecutive_failures,
                st.last_error,
                "; stopping the daemon" if st.critical else "; giving up on it",
            )
            if st.critical:
                self.exit_code = 1
                self.request_stop(f"critical component {st.name} failed")
            return False
        delay = self.backoff.delay(st.consecutive_failures)
        st.state = RESTARTING
        st.next_restart_in_s = round(delay, 3)
        # The traceback goes to the debug log; one line per failure keeps journald readable.
        log.error("component %s failed: %s; restarting in %.1f s", st.name, st.last_error, delay)
        log.debug("component %s traceback", st.name, exc_info=exc)
        await asyncio.sleep(delay)
        st.restarts += 1
        return True

    def kill(self, name: str, reason: str = "killed on request") -> None:
        """Make a running component fail now (it is then restarted like any crash)."""
        comp = self._components.get(name)
        if comp is None:
            raise KeyError(name)
        comp.kill_reason = reason
        comp.killed.set()

    def restart(self, name: str, *, min_interval_s: float = 5.0) -> None:
        """An operator's restart of one component: not counted as a failure.

        KeyError for an unknown name; :class:`~gateway.errors.ForbiddenRequest` for a critical component
        (the store: restarting it on request would risk what it holds in memory) and for a component
        restarted on request less than ``min_interval_s`` ago (a loop of requests must not keep it down).
        """
        comp = self._components.get(name)
        if comp is None:
            raise KeyError(name)
        if comp.state.critical:
            raise ForbiddenRequest(f"{name} is critical to the daemon and cannot be restarted on request")
        now = time.monotonic()
        if now - comp.last_requested < min_interval_s:
            raise ForbiddenRequest(f"{name} was restarted less than {min_interval_s:g} s ago; try again later")
        comp.last_requested = now
        comp.kill_reason = "restart requested"
        comp.requested = True
        comp.killed.set()

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask :meth:`wait` to return (idempotent; the first reason wins)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            log.info("stopping: %s", reason)
        self._event().set()

    async def wait(self) -> str:
        """Wait until a stop is requested (signal, :meth:`request_stop`, critical failure); return why."""
        await self._event().wait()
        return self.stop_reason or "stop requested"

    async def stop(self, deadline_s: float = 4.0) -> list[str]:
        """Cancel every component in reverse start order within ``deadline_s``; return those that hung.

        Each component gets what is left of the deadline to finish (the store, started first, is
        stopped last so that it can take what the others handed over). Once the deadline has passed,
        the remaining ones are cancelled together and given a short grace to unwind.
        """
        end = time.monotonic() + deadline_s
        hung: list[str] = []
        pending: list[tuple[str, asyncio.Task[None]]] = []
        for name in reversed(list(self._components)):
            comp = self._components[name]
            task = comp.task
            if task is None or task.done():
                if comp.state.state in (STARTING, RUNNING, RESTARTING):
                    comp.state.state = STOPPED
                continue
            task.cancel()
            remaining = end - time.monotonic()
            if remaining <= 0:
                pending.append((name, task))
                continue
            done, _ = await asyncio.wait({task}, timeout=remaining)
            if not done:
                hung.append(name)
            self._log_stopped(name, task)
        if pending:
            done, _ = await asyncio.wait({t for _, t in pending}, timeout=_STOP_GRACE_S)
            for name, task in pending:
                if task not in done:
                    hung.append(name)
                self._log_stopped(name, task)
        for name in hung:
            log.error("component %s did not stop within the deadline", name)
        return hung

    def _log_stopped(self, name: str, task: asyncio.Task[None]) -> None:
        comp = self._components[name]
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("component %s raised while stopping: %s", name, _describe(task.exception()))  # type: ignore[arg-type]
        comp.state.state = STOPPED

    # -- signals ---------------------------------------------------------------------------------
    def install_signal_handlers(self, reload: Callable[[], Any] | None = None) -> None:
        """SIGTERM and SIGINT request a stop; SIGHUP calls ``reload`` (a coroutine function is scheduled)."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        if reload is not None:
            loop.add_signal_handler(signal.SIGHUP, self._on_hup, reload)

    def _on_hup(self, reload: Callable[[], Any]) -> None:
        try:
            result = reload()
            if asyncio.iscoroutine(result):
                task = asyncio.get_running_loop().create_task(result, name="reload")
                task.add_done_callback(_log_reload_failure)
        except Exception as exc:
            log.error("SIGHUP: reload failed: %s", _describe(exc))

    @staticmethod
    def remove_signal_handlers() -> None:
        """Undo :meth:`install_signal_handlers`."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    # -- introspection ---------------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        """Per-component state, in start order (JSON-ready)."""
        return {name: comp.state.to_dict() for name, comp in self._components.items()}

    def state(self, name: str) -> ComponentState:
        """The live state object of one component."""
        return self._components[name].state

    def summary(self) -> str:
        """One line for ``STATUS=``: how many run, and which are not running."""
        running = [c.state for c in self._components.values() if c.state.state == RUNNING]
        others = [c.state for c in self._components.values() if c.state.state != RUNNING]
        parts = [f"{len(running)}/{len(self._components)} components running"]
        parts += [f"{s.name} {s.state} (restarts {s.restarts})" for s in others]
        return "; ".join(parts)


def _log_reload_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("SIGHUP: reload failed: %s", _describe(task.exception()))  # type: ignore[arg-type]


T = TypeVar("T")


class ConfigReloader(Generic[T]):
    """SIGHUP: load the configuration file again and hand it to ``apply``, or refuse it.

    ``load(path)`` must raise (a :class:`~gateway.errors.ConfigError` normally) for an invalid file;
    then one error line is logged and the running configuration stays. ``apply(new)`` is called
    only with a valid configuration; if it raises, the old configuration stays as well.
    """

    def __init__(
        self,
        path: str | Path | None,
        current: T,
        load: Callable[[str | Path], T],
        apply: Callable[[T], Any] | None = None,
    ) -> None:
        self.path = path
        self.current = current
        self._load = load
        self._apply = apply
        self.reloads = 0
        self.refused = 0

    def __call__(self) -> bool:
        """Reload now; True when the new configuration is in force."""
        if not self.path:
            log.warning("SIGHUP: no configuration file to reload")
            return False
        try:
            new = self._load(self.path)
        except Exception as exc:
            self.refused += 1
            log.error("SIGHUP: new configuration refused, keeping the running one: %s", _describe(exc))
            return False
        try:
            if self._apply is not None:
                self._apply(new)
        except Exception as exc:
            self.refused += 1
            log.error("SIGHUP: could not apply the new configuration, keeping the running one: %s", _describe(exc))
            return False
        self.current = new
        self.reloads += 1
        log.info("SIGHUP: configuration reloaded from %s", self.path)
        return True
