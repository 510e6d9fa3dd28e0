"""Bursts of the link pump through the session and the poller (issue 19), against the simulated chip on a pty.

What a burst must keep from requests sent one by one: the same answers, each error handled as if it had come
alone, no line written before the chip's prompt (the simulator answers STOPPED to any byte that interrupts
it and logs every line it ran), the write guard never refusing, and a caller's request or a cancellation
never leaving the link in an unknown state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

from firmware_sim import Simulator
from gateway.errors import NoDataError, Stopped, TransportTimeout
from gateway.obd.types import Reading
from tests.link.helpers import make_poller, sim_session

PIDS = [0x0C, 0x0D, 0x05, 0x04, 0x10, 0x11]


def _pids(readings: list[Reading]) -> list[int | None]:
    return sorted(r.pid for r in readings)  # type: ignore[type-var]


async def test_a_burst_answers_as_requests_one_by_one_do() -> None:
    async with sim_session(seed=1) as (sim, _server, transport, session):
        alone = [await session.read_pids(0x7E8, PIDS) for _ in range(10)]  # also measures the round trip
        mark = len(sim.log)
        polled = await session.read_pids_burst(0x7E8, [PIDS] * 8)
        log = list(sim.log)[mark:]
        after = await session.read_pids(0x7E8, PIDS)  # the ordinary path goes on after a burst
    assert polled is not None and len(polled) == 8
    for got in polled:
        assert got.error is None and got.pids == tuple(PIDS)
        assert _pids(got.readings) == _pids(alone[0]) == _pids(after)
        assert {r.ecu for r in got.readings} == {0x7E8}
        assert got.sent < got.done
    assert all(a.done <= b.sent for a, b in itertools.pairwise(polled))  # one line per prompt
    assert len(log) == 8 and len({e.command for e in log}) == 1
    assert not any("STOPPED" in e.answer for e in log)
    assert transport.guard.refused == 0 and transport.bursts == 1
    assert session.requests >= 19


async def test_no_data_ends_the_burst_and_is_the_answer_of_that_request() -> None:
    async with sim_session(seed=2) as (sim, _server, _transport, session):
        await session.read_pids(0x7E8, PIDS)
        mark = len(sim.log)
        sim.faults.set("no_data", True)
        polled = await session.read_pids_burst(0x7E8, [PIDS] * 6)
        sim.faults.clear()
        log = list(sim.log)[mark:]
        again = await session.read_pids_burst(0x7E8, [PIDS] * 3)
    assert polled is not None and len(polled) == 1  # nothing written after the NO DATA
    assert isinstance(polled[0].error, NoDataError) and polled[0].readings == []
    assert len(log) == 1
    assert again is not None and len(again) == 3 and all(g.error is None for g in again)


async def test_stopped_ends_the_burst_and_the_session_recovers_as_from_one_request() -> None:
    async with sim_session(seed=3) as (sim, _server, transport, session):
        await session.read_pids(0x7E8, PIDS)
        sim.faults.set("stopped", True)
        polled = await session.read_pids_burst(0x7E8, [PIDS] * 6)
        sim.faults.clear()
        await session.resync()
        again = await session.read_pids_burst(0x7E8, [PIDS] * 3)
    assert polled is not None and len(polled) == 1
    assert isinstance(polled[0].error, Stopped)
    assert again is not None and [g.error for g in again] == [None, None, None]
    assert transport.guard.refused == 0


async def test_a_lost_prompt_times_out_the_burst_on_that_request() -> None:
    async with sim_session(seed=4) as (sim, _server, transport, session):
        await session.read_pids(0x7E8, PIDS)
        sim.faults.set("truncate", True)  # the answer cut short, its prompt lost on the line
        mark = len(sim.log)
        polled = await session.read_pids_burst(0x7E8, [PIDS] * 4)
        sim.faults.clear()
        await session.resync()
        log = list(sim.log)[mark:]
        after = await session.read_pids(0x7E8, PIDS)
    assert polled is not None and len(polled) == 1
    assert isinstance(polled[0].error, TransportTimeout)
    assert session.errors.get("timeout", 0) >= 1
    assert log[0].command.startswith("01") and not any(e.command.startswith("01") for e in log[1:])
    assert _pids(after) == sorted(PIDS)
    assert transport.guard.refused == 0


async def test_the_poller_polls_in_bursts_and_a_query_still_gets_through() -> None:
    sim = Simulator(seed=6, fast=False)
    sim.advance(3)
    server = sim.serve_pty()
    poller, got = make_poller(server.path, fast=True, protocol="6", timeout_s=2.0)
    task = asyncio.create_task(poller.run())
    try:
        deadline = time.monotonic() + 30
        while poller.session is None or poller.session.transport.bursts < 5:  # type: ignore[attr-defined]
            assert not task.done(), task
            assert time.monotonic() < deadline, "no bursts"
            await asyncio.sleep(0.05)
        answer = await asyncio.wait_for(poller.query(0x2F), 5)  # fuel level, not polled: on demand
        before = poller.values
        await asyncio.sleep(1.0)
        transport = poller.session.transport  # type: ignore[attr-defined]
    finally:
        task.cancel()  # in the middle of a burst, most likely: the transport finishes it, then closes
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # A line written just before the close may reach the simulator's thread after it (a loaded machine):
    # wait until it has executed everything it received, then every line it ran must be one the write
    # guard let through, and no more (nothing written after the close, nothing around the guard).
    quiet = time.monotonic() + 5
    mark = -1
    while len(sim.log) != mark and time.monotonic() < quiet:
        mark = len(sim.log)
        await asyncio.sleep(0.3)
    try:
        assert [s.name for s in answer] == ["fuel_level"]
        assert poller.values > before  # polling went on after the query
        assert transport.guard.refused == 0
        assert not transport.is_open
        assert len(sim.log) == mark
        ran = [e.command for e in sim.log if not e.command.startswith(("AT", "ST"))]
        assert len(ran) == transport.guard.requests, ran[-5:]
        assert not any("STOPPED" in e.answer for e in sim.log)
        names = {s.name for s in got.samples}
        assert {"engine_rpm", "speed", "engine_coolant_temperature"} <= names
        stamps = [s.ts_ms for s in got.named("engine_rpm")]
        assert stamps == sorted(stamps)  # a burst's rounds keep their own times, in order
    finally:
        sim.stop()
