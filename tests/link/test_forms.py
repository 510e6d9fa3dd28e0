"""Request forms: probed fastest first, demoted on repeated failure, retried upward with hysteresis."""

from __future__ import annotations

from firmware_sim import Simulator
from gateway.commands.poll import run_poll
from gateway.config import AdapterConfig, PollingConfig
from gateway.link.base import RequestForm
from gateway.link.forms import CONFIRM, RETRY_UP_S, STRIKES, FormKeeper, probe_order

F = RequestForm


def test_probe_order_is_fastest_first_and_fits_the_ecu() -> None:
    assert probe_order(multi=True, count=True, usable=10)[:4] == [F(6, True), F(6, False), F(4, True), F(4, False)]
    assert probe_order(multi=True, count=True, usable=3) == [
        F(3, True), F(3, False), F(2, True), F(2, False), F(1, True), F(1, False)
    ]
    assert probe_order(multi=False, count=True, usable=10) == [F(1, True), F(1, False)]
    assert probe_order(multi=True, count=False, usable=0) == [F(1, False)]
    assert sorted(probe_order(multi=True, count=True, usable=6), reverse=True) == probe_order(
        multi=True, count=True, usable=6
    )


def test_demotion_after_strikes_then_one_retry_up_with_doubling_wait() -> None:
    k = FormKeeper()
    ladder = probe_order(multi=True, count=True, usable=6)
    k.keep(0x7E8, ladder, F(6, True))
    assert k.failure(0x7E8, 0.0) is None  # one failure: a glitch, keep the form
    assert k.success(0x7E8, 0.1) is None
    for i in range(STRIKES - 1):
        assert k.failure(0x7E8, 1.0 + i) is None
    assert k.failure(0x7E8, 2.0) == F(6, False)  # demoted after STRIKES in a row
    assert k.current(0x7E8) == F(6, False)
    assert k.success(0x7E8, 3.0) is None  # not yet time to try upward
    assert k.success(0x7E8, 2.0 + RETRY_UP_S) == F(6, True)  # one try of the faster form
    assert k.failure(0x7E8, 2.0 + RETRY_UP_S + 0.1) == F(6, False)  # fails once: back at once
    # the next try waits twice as long
    assert k.success(0x7E8, 2.0 + 2 * RETRY_UP_S) is None
    again = 2.0 + RETRY_UP_S + 0.1 + 2 * RETRY_UP_S
    assert k.success(0x7E8, again) == F(6, True)
    for i in range(CONFIRM):
        assert k.success(0x7E8, again + 1 + i) is None
    assert k.current(0x7E8) == F(6, True)  # confirmed: it stays


def test_never_above_the_probed_form_and_never_below_the_slowest() -> None:
    k = FormKeeper()
    ladder = probe_order(multi=True, count=True, usable=6)
    k.keep(0x7E8, ladder, F(3, False))
    for t in range(1000):
        assert k.success(0x7E8, float(t) * 1000) is None  # the probe found 3 without count: no higher
    for t in range(100):
        k.failure(0x7E8, float(t))
    assert k.current(0x7E8) == F(1, False)
    assert k.current(0x7E9) == F(1, False)  # an ECU never probed: the plainest form


async def test_clone_that_rejects_six_pids_with_count_gets_three_without() -> None:
    """Issue 12 failure 2: a clone taking 3 PIDs without the count digit and 1 PID with it, answering ``?``
    to 6 PIDs + count, got that same request ~400 times in 10 s (0 values/s). Now the probe keeps the exact
    form that works, values flow at once, and ``?`` is met only during the probe."""
    sim = Simulator(seed=4, fast=True, adapter="clone-3pid")
    sim.advance(3.0)
    try:
        with sim.serve_pty() as port:
            report = await run_poll(AdapterConfig(port=port, protocol="6", timeout_s=2.0),
                                    PollingConfig(pids=["0C", "0D", "05", "04", "10", "11"]), 2.0)
        unknown = [e for e in list(sim.log) if e.answer.strip().rstrip(">").strip() == "?" and e.command[:2] == "01"]
    finally:
        sim.stop()
    assert report["forms"]["7E8"] == "3 PIDs", report
    assert report["values_per_s"] > 0 and len(report["per_pid"]) == 6, report
    assert len(unknown) <= 6, [e.command for e in unknown]  # the probe's refused forms, no more
    assert not report["errors"].get("UnsupportedCommand"), report
