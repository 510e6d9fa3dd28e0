"""Supervisor: restarts with backoff, isolation of failures, critical components, ordered stop, reload."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import signal
from pathlib import Path

import pytest

from gateway import config
from gateway.errors import ConfigError
from gateway.supervisor import ConfigReloader, Supervisor


def fast(**kw: object) -> Supervisor:
    opts: dict[str, object] = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "rng": random.Random(1)}
    opts.update(kw)
    return Supervisor(**opts)  # type: ignore[arg-type]


async def wait_for(cond, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


async def test_crashing_component_is_restarted_while_the_others_keep_running() -> None:
    sup = fast()
    ticks = 0
    crashes = 0

    async def poller() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.002)

    async def uplink() -> None:
        nonlocal crashes
        crashes += 1
        await asyncio.sleep(0.005)
        raise ConnectionError("broker went away")

    sup.add("poller", poller)
    sup.add("uplink:mqtt", uplink)
    sup.start()
    await wait_for(lambda: crashes >= 4)
    before = ticks
    await asyncio.sleep(0.05)
    assert ticks > before, "the poller must keep running while the uplink crashes"
    st = sup.status()
    assert st["poller"]["state"] == "running"
    assert st["poller"]["restarts"] == 0
    assert st["uplink:mqtt"]["failures"] >= 4
    assert st["uplink:mqtt"]["restarts"] >= 3
    assert st["uplink:mqtt"]["last_error"] == "ConnectionError: broker went away"
    assert st["uplink:mqtt"]["state"] in ("running", "restarting")
    assert "uplink:mqtt" in sup.summary() or st["uplink:mqtt"]["state"] == "running"
    assert await sup.stop(1.0) == []
    assert sup.exit_code == 0
    assert all(v["state"] == "stopped" for v in sup.status().values())


def test_backoff_follows_the_common_rule() -> None:
    """Restart delays are gateway.common.backoff's: drawn from [cap/2, cap], cap doubling up to backoff_max_s."""
    sup = Supervisor(backoff_initial_s=0.5, backoff_max_s=30.0, rng=random.Random(7))
    assert [sup.backoff.cap(n) for n in (1, 2, 3, 4, 7, 8, 50)] == [0.5, 1.0, 2.0, 4.0, 30.0, 30.0, 30.0]
    for n, cap in ((1, 0.5), (3, 2.0), (50, 30.0)):
        delays = [sup.backoff.delay(n) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), (n, min(delays), max(delays))
        assert len({round(d, 6) for d in delays}) > 100  # really random, not a constant
    with pytest.raises(ValueError):
        Supervisor(backoff_initial_s=0)
    with pytest.raises(ValueError):
        Supervisor(backoff_initial_s=2.0, backoff_max_s=1.0)


async def test_backoff_grows_between_restarts() -> None:
    sup = Supervisor(backoff_initial_s=0.02, backoff_max_s=1.0)
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    async def flaky() -> None:
        starts.append(loop.time())
        raise RuntimeError("boom")

    sup.add("flaky", flaky)
    sup.start()
    await wait_for(lambda: len(starts) >= 4)
    await sup.stop(1.0)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # at least half of each cap (0.02, 0.04, 0.08 s): the delays grow
    assert gaps[0] >= 0.009
    assert gaps[1] >= 0.019
    assert gaps[2] >= 0.039


async def test_critical_component_stops_the_daemon_after_n_failures() -> None:
    sup = fast(critical_max_failures=3)
    calls = 0

    async def store() -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk I/O error")

    async def other() -> None:
        await asyncio.Event().wait()

    sup.add("store", store, critical=True)
    sup.add("poller", other)
    sup.start()
    reason = await asyncio.wait_for(sup.wait(), 3)
    assert calls == 3
    assert "store" in reason
    assert sup.exit_code == 1
    assert sup.status()["store"]["state"] == "failed"
    await sup.stop(1.0)


async def test_healthy_run_resets_the_consecutive_failure_count() -> None:
    sup = fast(critical_max_failures=3, healthy_after_s=0.05)
    calls = 0

    async def store() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.08 if calls % 2 == 0 else 0)  # every second run is a long, healthy one
        raise OSError("transient")

    sup.add("store", store, critical=True)
    sup.start()
    await wait_for(lambda: calls >= 6)
    assert sup.exit_code == 0, "failures separated by healthy runs must not count as consecutive"
    await sup.stop(1.0)


async def test_finished_component_is_not_restarted_unless_asked() -> None:
    sup = fast()
    once = 0
    again = 0

    async def one_shot() -> None:
        nonlocal once
        once += 1

    async def loop_returning() -> None:
        nonlocal again
        again += 1

    sup.add("one-shot", one_shot)
    sup.add("loop", loop_returning, restart_on_exit=True)
    sup.start()
    await wait_for(lambda: again >= 3)
    assert once == 1
    assert sup.status()["one-shot"]["state"] == "finished"
    await sup.stop(1.0)


async def test_kill_makes_a_component_fail_and_restart() -> None:
    sup = fast()
    runs = 0

    async def uplink() -> None:
        nonlocal runs
        runs += 1
        await asyncio.Event().wait()

    sup.add("uplink:https", uplink)
    sup.start()
    await wait_for(lambda: runs == 1)
    sup.kill("uplink:https", "operator asked")
    await wait_for(lambda: runs == 2)
    st = sup.status()["uplink:https"]
    assert st["restarts"] == 1
    assert st["last_error"] == "ComponentKilled: operator asked"
    with pytest.raises(KeyError):
        sup.kill("nope")
    await sup.stop(1.0)


async def test_stop_cancels_in_reverse_order_and_reports_hung_components() -> None:
    sup = fast()
    order: list[str] = []

    def make(name: str, stubborn: bool = False):  # type: ignore[no-untyped-def]
        async def run() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                order.append(name)
                if stubborn:
                    # ignores cancellation for a while (a blocking flush, say)
                    await asyncio.shield(asyncio.sleep(0.5))
                raise

        return run

    sup.add("store", make("store"))
    sup.add("poller", make("poller", stubborn=True))
    sup.add("diag", make("diag"))
    sup.start()
    await asyncio.sleep(0.02)
    hung = await sup.stop(deadline_s=0.2)
    assert order == ["diag", "poller", "store"]
    # stop returned while the stubborn one was still unwinding (it needs 0.5 s): the deadline held
    assert hung == ["poller"]
    await asyncio.sleep(0.6)  # let the stubborn one finish before the loop closes


async def test_added_after_start_runs_at_once() -> None:
    sup = fast()
    ran = asyncio.Event()

    async def late() -> None:
        ran.set()
        await asyncio.Event().wait()

    sup.start()
    sup.add("late", late)
    await asyncio.wait_for(ran.wait(), 1)
    with pytest.raises(ValueError):
        sup.add("late", late)
    await sup.stop(1.0)


async def test_signals_stop_and_reload() -> None:
    sup = fast()
    reloads = 0

    def reload() -> None:
        nonlocal reloads
        reloads += 1

    sup.install_signal_handlers(reload=reload)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: reloads == 1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(sup.wait(), 2) == "SIGTERM"
    finally:
        sup.remove_signal_handlers()


async def test_async_reload_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    sup = fast()

    async def reload() -> None:
        raise RuntimeError("cannot reopen")

    sup.install_signal_handlers(reload=reload)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: any("reload failed" in r.getMessage() for r in caplog.records))
    finally:
        sup.remove_signal_handlers()


def test_config_reloader_refuses_an_invalid_file_and_keeps_the_old(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[device]\nid = "box-1"\n')
    applied: list[config.Config] = []
    r = ConfigReloader(path, config.load(path), config.load, applied.append)
    path.write_text('[device]\nid = "box-2"\n')
    assert r() is True
    assert r.current.device.id == "box-2"
    assert [c.device.id for c in applied] == ["box-2"]

    path.write_text("[mqtt]\nport = 99999\n")
    with caplog.at_level(logging.ERROR):
        assert r() is False
    assert r.current.device.id == "box-2"
    assert r.refused == 1
    assert any("mqtt.port" in rec.getMessage() and "keeping" in rec.getMessage() for rec in caplog.records)

    path.write_text("not toml [")
    assert r() is False
    assert r.current.device.id == "box-2"
    assert len(applied) == 1


def test_config_reloader_keeps_the_old_config_when_apply_fails(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[device]\nid = "box-1"\n')

    def apply(_: config.Config) -> None:
        raise ConfigError("adapter.port: cannot change while running")

    r = ConfigReloader(path, config.load(path), config.load, apply)
    path.write_text('[device]\nid = "box-2"\n')
    assert r() is False
    assert r.current.device.id == "box-1"
    assert ConfigReloader(None, r.current, config.load)() is False


async def test_a_component_cancelled_from_inside_counts_as_a_failure() -> None:
    sup = fast()
    runs = 0

    async def odd() -> None:
        nonlocal runs
        runs += 1
        raise asyncio.CancelledError  # e.g. an inner library cancelling its own task

    async def steady() -> None:
        await asyncio.Event().wait()

    sup.add("odd", odd)
    sup.add("steady", steady)
    sup.start()
    await wait_for(lambda: runs >= 3)
    st = sup.status()
    assert st["odd"]["failures"] >= 2 and "cancelled from inside" in st["odd"]["last_error"]
    assert st["steady"]["state"] == "running"
    await sup.stop(1.0)
