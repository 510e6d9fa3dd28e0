"""Read-only toward the car (issue 12): the write guard, no pipelining, requests owned by their caller.

Regression tests for what real adapters showed: a genuine chip's STOPPED turned a pipelined write into a
service 0x10 request; a timed-out clear ran ~40 s later when the ignition came back; `dtc` said "no codes"
when no ECU answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from firmware_sim import Simulator
from gateway.errors import DisallowedRequest, NoDataError
from gateway.obd.guard import READ_SERVICES, CanWriteGuard, ElmWriteGuard, request_service
from tests.link.helpers import make_poller, run_until


def services_sent(sim: Simulator) -> list[tuple[str, int]]:
    """(line, service) of every OBD request line the simulated chip received."""
    out = []
    for entry in list(sim.log):
        line = entry.command.strip().replace(" ", "").upper()
        if line.startswith(("AT", "ST")) or not line:
            continue
        parsed = request_service(line)
        assert parsed is not None, f"the chip received a line that is neither AT/ST nor hex: {line!r}"
        out.append((line, parsed[0]))
    return out


# -- the guard, sans-I/O ------------------------------------------------------------------------------
def test_guard_lets_reads_and_adapter_commands_through_after_the_prompt() -> None:
    g = ElmWriteGuard()
    g.check(b"ATZ\r")  # allowed before any prompt: it cannot reach the car
    g.saw_input(b"ELM327 v1.5\r\r>")
    for line in (b"010C0D1\r", b"0100\r", b"03\r", b"07\r", b"0A\r", b"0902\r", b"2101\r", b"220101\r"):
        g.check(line)
        g.saw_input(b"NO DATA\r\r>")
    for line in (b"ATSH7E0\r", b"ATSPA6\r", b"ATBRD23\r", b"STSBR115200\r", b"STI\r", b"ATFCSD300000\r"):
        g.check(line)
    assert g.refused == 0


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"010C1\r010C1\r010C1\r", "one command line"),  # pipelined: STOPPED would shorten the later ones
        (b"1003\r", "service 10"),  # DiagnosticSessionControl
        (b"2E01020304\r", "service 2E"),  # WriteDataByIdentifier
        (b"3101FF00\r", "service 31"),  # RoutineControl
        (b"04\r", "service 04"),  # clear DTCs without a permit
        (b"ATWM8110F101\r", "not an allowed adapter command"),  # the chip would send it periodically
        (b"STPX H:7E0, D:1003\r", "not an allowed adapter command"),  # an arbitrary frame
        (b"01020304050607080910\r", "at most 7 bytes"),
        (b"hello\r", "neither"),
        (b"ATI", "one command line"),  # no CR
    ],
)
def test_guard_refuses_what_could_write_to_the_car(line: bytes, why: str) -> None:
    g = ElmWriteGuard()
    g.saw_input(b">")
    with pytest.raises(DisallowedRequest, match=why):
        g.check(line)
    assert g.refused == 1


def test_guard_refuses_a_request_before_the_prompt() -> None:
    g = ElmWriteGuard()
    with pytest.raises(DisallowedRequest, match="before the adapter's prompt"):
        g.check(b"010C\r")  # just opened: the chip's state is unknown
    g.saw_input(b"OK\r\r>")
    g.check(b"010C\r")
    with pytest.raises(DisallowedRequest, match="before the adapter's prompt"):
        g.check(b"010D\r")  # the chip is still answering 010C
    g.check(b"ATI\r")  # an AT line may interrupt a silent chip (resync): shortened it is never hex
    g.saw_input(b"41 0C 1A F8\r\r>")
    g.check(b"010D\r")


def test_clear_needs_a_permit_whose_caller_still_waits() -> None:
    g = ElmWriteGuard()
    g.saw_input(b">")
    waiting = [True]
    with g.permit_clear(lambda: waiting[0]):
        waiting[0] = False  # the technician's request timed out before the line was written
        with pytest.raises(DisallowedRequest, match="service 04"):
            g.check(b"04\r")
        waiting[0] = True
        g.check(b"04\r")
        g.saw_input(b"44\r\r>")
        with pytest.raises(DisallowedRequest, match="service 04"):
            g.check(b"04\r")  # one line per permit
        with pytest.raises(DisallowedRequest, match="repeat"):
            g.check(b"\r")  # a bare CR repeats the last command on an ELM327
    with pytest.raises(DisallowedRequest):
        g.check(b"04\r")


def test_can_guard() -> None:
    g = CanWriteGuard()
    g.check(0x7DF, bytes([2, 0x01, 0x0C, 0, 0, 0, 0, 0]), False)
    g.check(0x7E0, bytes([0x30, 0, 0, 0, 0, 0, 0, 0]), False)  # flow control
    g.check(0x18DA10F1, bytes([3, 0x22, 0x01, 0x01, 0, 0, 0, 0]), True)
    for arb, data, ext in (
        (0x7E0, bytes([2, 0x10, 0x03, 0, 0, 0, 0, 0]), False),  # DiagnosticSessionControl
        (0x7E0, bytes([1, 0x04, 0, 0, 0, 0, 0, 0]), False),  # clear without permit
        (0x123, bytes([2, 0x01, 0x0C, 0, 0, 0, 0, 0]), False),  # not a diagnostic identifier
        (0x7E0, bytes([0x10, 0x14, 0x2E, 0, 0, 0, 0, 0]), False),  # a first frame: multi-frame request
    ):
        with pytest.raises(DisallowedRequest):
            g.check(arb, data, ext)


# -- against the simulated genuine chip ---------------------------------------------------------------
async def test_a_genuine_chip_only_ever_receives_read_services() -> None:
    """Issue 12 failure 1: the pipelining probe wrote 01011 three times at once; the chip's STOPPED made
    the rest 1011 (service 0x10). One line per prompt now: the chip's log holds only read services.
    Real-time chip (its STOPPED needs input to arrive while it answers), every start path (reset, probe,
    polling as fast as the link allows)."""
    sim = Simulator(seed=1, fast=False)
    sim.advance(3.0)
    try:
        with sim.serve_pty() as port:
            poller, got = make_poller(port, fast=True, protocol="6")
            assert await run_until(poller, lambda: len(got.named("speed")) >= 50, 30)
    finally:
        sim.stop()
    sent = services_sent(sim)
    assert len(sent) > 50
    assert {s for _, s in sent} <= READ_SERVICES, sorted({line for line, s in sent if s not in READ_SERVICES})
    assert not [e for e in list(sim.log) if "STOPPED" in e.answer], "a request interrupted the chip"
    assert poller.session is None or poller.session.info.forms  # forms were probed


async def test_an_abandoned_clear_never_reaches_the_car(sim: Simulator, sim_pty: str) -> None:
    """Issue 12 failure 3: a clear whose caller gave up must never be sent; the poller survives it."""
    sim.command({"set_dtcs": ["P0301"], "mil": True})
    poller, got = make_poller(sim_pty)
    poller.allow_clear_dtc = True
    task = asyncio.create_task(poller.run())
    try:
        deadline = time.monotonic() + 20
        while not (poller.ecu_responding and got.named("engine_rpm")):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.02)
        caller = asyncio.create_task(poller.clear_dtcs())
        await asyncio.sleep(0)  # queued, not yet served
        caller.cancel()  # the technician's time-out
        with contextlib.suppress(asyncio.CancelledError):
            await caller
        n = len(got.named("engine_rpm"))
        while len(got.named("engine_rpm")) < n + 5:  # the poller goes on polling
            assert time.monotonic() < deadline + 10 and not task.done(), "the poller stopped"
            await asyncio.sleep(0.02)
        assert poller.requests.abandoned == 1
        assert not [line for line, s in services_sent(sim) if s == 0x04], "an abandoned clear reached the car"
        assert sim.vehicle.state.dtcs  # still set
        # a clear whose caller waits goes through
        await asyncio.wait_for(poller.clear_dtcs(), 10)
        assert [line for line, s in services_sent(sim) if s == 0x04] == ["04"]
        assert not sim.vehicle.state.dtcs
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_dtc_requests_fail_at_once_while_the_ecu_sleeps_and_never_run_later(
    sim: Simulator, sim_pty: str
) -> None:
    """Issue 12 failures 3 and 4: with the ignition off `dtc` and `clear` say the ECU does not answer
    (no wrong "no codes", no clear queued for later)."""
    sim.command({"set_dtcs": ["P0301"], "mil": True})
    poller, _ = make_poller(sim_pty)
    poller.allow_clear_dtc = True
    task = asyncio.create_task(poller.run())
    try:
        deadline = time.monotonic() + 20
        while not poller.ecu_responding:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.02)
        sim.command({"ignition": False})
        while poller.ecu_responding:
            assert time.monotonic() < deadline + 10 and not task.done()
            await asyncio.sleep(0.02)
        t0 = time.monotonic()
        with pytest.raises(NoDataError, match="not answering"):
            await poller.read_dtcs()
        with pytest.raises(NoDataError, match="not answering"):
            await poller.clear_dtcs()
        assert time.monotonic() - t0 < 1.0  # at once, not after the caller's time-out
        sim.command({"ignition": True})
        while not poller.ecu_responding:
            assert time.monotonic() < deadline + 40 and not task.done()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert not [line for line, s in services_sent(sim) if s == 0x04]
        assert sim.vehicle.state.dtcs == ["P0301"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_read_dtcs_says_when_no_ecu_answered(sim: Simulator, sim_pty: str) -> None:
    """The session's read_dtcs: NO DATA to every DTC service is NoDataError, never an empty list."""
    from gateway.daemon import session_factory
    from tests.link.helpers import AdapterConfig, PollingConfig

    adapter, polling = AdapterConfig(port=sim_pty, timeout_s=2.0), PollingConfig()
    session = session_factory(adapter, polling, None)()
    await session.open()
    try:
        await session.initialize()
        report = await session.read_dtcs()
        assert report["mil"] is False and report["stored"] == []
        sim.command({"ignition": False})
        with pytest.raises(NoDataError, match="no ECU answered"):
            await session.read_dtcs()
    finally:
        await session.close()
