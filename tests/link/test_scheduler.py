"""The scheduler policy with plain numbers for time."""

import math
from collections.abc import Callable

from gateway.scheduler import Batch, SchedulerPolicy


def drive(policy: SchedulerPolicy, seconds: float, request_s: float, answer_all: bool = True) -> int:
    """Run the policy as a link that takes ``request_s`` per request; returns the number of requests."""
    now, n = 0.0, 0
    while now < seconds:
        batch = policy.next_batch(now)
        if batch is None:
            now += min(policy.next_due_in(now), 0.01) or 0.001
            continue
        now += request_s
        policy.record(batch, now, batch.pids if answer_all else ())
        n += 1
    return n


def test_packs_up_to_six_pids_of_one_ecu_when_multi_pid_works() -> None:
    p = SchedulerPolicy()
    for pid in (0x0C, 0x0D, 0x05, 0x04, 0x10, 0x11, 0x2F):
        p.set_pid(pid, 0x7E8, 5.0)
    p.set_max_pids(0x7E8, 6)
    batch = p.next_batch(0.0)
    assert batch is not None and batch.ecu == 0x7E8 and len(batch.pids) == 6


def test_single_pid_fallback_per_ecu() -> None:
    p = SchedulerPolicy()
    p.set_pid(0x0C, 0x7E8, 5.0)
    p.set_pid(0x0D, 0x7E8, 5.0)
    p.set_pid(0x0D, 0x7E9, 5.0)
    p.set_max_pids(0x7E8, 6)
    p.set_max_pids(0x7E9, 1)
    seen = set()
    for _ in range(2):
        b = p.next_batch(0.0)
        assert b is not None
        seen.add(b)
        p.record(b, 0.0, b.pids)
    assert Batch(0x7E9, (0x0D,)) in seen
    assert any(b.ecu == 0x7E8 and len(b.pids) == 2 for b in seen)
    assert p.next_batch(0.0) is None  # everything polled at t=0: nothing due yet


def test_rates_are_met_when_the_link_has_room() -> None:
    p = SchedulerPolicy(piggyback=1.0)
    p.set_pid(0x0C, 0x7E8, 5.0)
    p.set_pid(0x2F, 0x7E8, 0.5)
    drive(p, 20.0, 0.02)
    rates = {r["pid"]: r["achieved_hz"] for r in p.stats(20.0)}
    assert 4.5 <= rates["0C"] <= 5.1
    assert 0.4 <= rates["2F"] <= 0.6


def test_overload_degrades_fairly_and_nothing_starves() -> None:
    p = SchedulerPolicy(piggyback=1.0)
    # demand: 4 × 10 Hz single-PID requests = 40 requests/s on a link that carries 10
    for pid in (0x0C, 0x0D, 0x05, 0x04):
        p.set_pid(pid, 0x7E8, 10.0, priority=1 if pid == 0x0D else 0)
    drive(p, 30.0, 0.1)
    rates = {r["pid"]: r["achieved_hz"] for r in p.stats(30.0)}
    assert all(r > 1.0 for r in rates.values()), rates  # every PID keeps a share
    assert rates["0D"] > rates["0C"] * 1.5  # priority 1 weighs twice
    assert abs(rates["0C"] - rates["05"]) < 0.5  # equal PIDs share equally
    assert sum(rates.values()) <= 10.5


def test_nodata_streak_backs_off_and_answer_resets() -> None:
    p = SchedulerPolicy(nodata_threshold=3, backoff_base_s=2.0)
    e = p.set_pid(0x0C, 0x7E8, 100.0)
    now = 0.0
    for _ in range(3):
        b = p.next_batch(now)
        assert b is not None
        p.record(b, now, ())
        now += 0.05
    assert e.nodata_streak == 3
    assert p.next_batch(now) is None  # backed off
    assert 1.0 < p.next_due_in(now) <= 2.0
    now = e.backoff_until
    b = p.next_batch(now)
    assert b is not None
    p.record(b, now, b.pids)
    assert e.nodata_streak == 0


def test_unrequested_pids_stop_and_interest_restarts_them() -> None:
    p = SchedulerPolicy(idle_unrequested_s=10.0)
    p.set_pid(0x0C, 0x7E8, 1.0, always=True)
    p.set_pid(0x5C, 0x7E8, 1.0, always=False)
    p.note_interest(0x5C, 0.0)
    assert set(p.next_batch(1.0).pids) == {0x0C}  # type: ignore[union-attr]
    p.set_max_pids(0x7E8, 6)
    assert set(p.next_batch(1.0).pids) == {0x0C, 0x5C}  # type: ignore[union-attr]
    b = p.next_batch(20.0)
    assert b is not None and b.pids == (0x0C,)  # 5C: nobody asked for 20 s
    p.note_interest(0x5C, 20.0)
    assert 0x5C in p.next_batch(20.0).pids  # type: ignore[union-attr]


def test_as_fast_as_possible_round_robins_all_pids() -> None:
    p = SchedulerPolicy()
    pids = list(range(0x01, 0x0D))  # 12 PIDs, two full requests
    for pid in pids:
        p.set_pid(pid, 0x7E8, math.inf)
    p.set_max_pids(0x7E8, 6)
    n = drive(p, 1.0, 0.01)
    counts = [e.values for e in p.entries.values()]
    assert max(counts) - min(counts) <= 1
    assert sum(counts) == 6 * n


def test_unsupported_pids_are_not_polled_but_listed() -> None:
    p = SchedulerPolicy()
    p.set_pid(0x0C, 0x7E8, 1.0, supported=False)
    assert p.next_batch(0.0) is None
    assert p.stats(0.0)[0]["supported"] is False


def test_forgive_clears_backoff() -> None:
    p = SchedulerPolicy(nodata_threshold=1)
    e = p.set_pid(0x0C, 0x7E8, 10.0)
    b = p.next_batch(0.0)
    assert b is not None
    p.record(b, 0.0, ())
    assert p.next_batch(0.2) is None  # backed off
    p.forgive(0x7E8)
    assert e.nodata_streak == 0 and p.next_batch(0.2) is not None


def test_default_rate_and_pid_name_from_the_catalogue() -> None:
    from gateway.obd.pids import PIDS
    from gateway.poller import DEFAULT_RATE_HZ, default_rate, pid_name

    assert default_rate(0x0C) == 5.0 and pid_name(0x0C) == "engine_rpm"
    on_demand = next(p for p, entry in PIDS.items() if entry.rate_hz is None)
    assert default_rate(on_demand) == DEFAULT_RATE_HZ
    unknown = next(p for p in range(0xFF, 0, -1) if p not in PIDS)
    assert default_rate(unknown) == DEFAULT_RATE_HZ and pid_name(unknown) == ""


def requests_sent(policy: SchedulerPolicy, seconds: float, request_s: float) -> int:
    """Requests in ``seconds`` on a link taking ``request_s`` each, recorded with the time they were sent."""
    now, n = 0.0, 0
    while now < seconds:
        batch = policy.next_batch(now)
        if batch is None:
            now += max(policy.next_due_in(now), 0.0005)
            continue
        sent, now = now, now + request_s
        policy.record(batch, now, batch.pids, sent=sent)
        n += 1
    return n


def test_a_pids_period_counts_from_the_request_not_the_answer() -> None:
    """6 PIDs at 100 Hz on a link that takes 22 ms per 6-PID request: the link never idles (45 requests/s).

    Counted from the answer, each PID would wait 10 ms after every 22 ms exchange (~31 requests/s)."""
    p = SchedulerPolicy()
    for pid in (0x0C, 0x0D, 0x05, 0x04, 0x10, 0x11):
        p.set_pid(pid, 0x7E8, 100.0)
    p.set_max_pids(0x7E8, 6)
    assert 450 <= requests_sent(p, 10.0, 0.022) <= 455
    # a 5 Hz PID on the same link: every 200 ms, not every 222 ms
    q = SchedulerPolicy()
    q.set_pid(0x05, 0x7E8, 5.0)
    assert 49 <= requests_sent(q, 10.0, 0.022) <= 51


def test_below_the_full_rate_there_is_no_burst_plan_and_nothing_changes() -> None:
    p = SchedulerPolicy()
    rates = ((0x0C, 100.0), (0x0D, 100.0), (0x04, 20.0), (0x05, 1.0), (0x10, 50.0), (0x11, 10.0), (0x2F, 0.5))
    for pid, hz in rates:
        p.set_pid(pid, 0x7E8, hz)
    p.set_max_pids(0x7E8, 3)
    drive(p, 1.0, 0.022)
    before = {k: (e.last_polled, e.values) for k, e in p.entries.items()}
    assert p.steady_plan(1.0, 0.022, 9) is None  # the mix of rates: requests go one by one
    assert {k: (e.last_polled, e.values) for k, e in p.entries.items()} == before  # nothing changed
    q = SchedulerPolicy()
    q.set_pid(0x0C, 0x7E8, 10.0)
    q.set_max_pids(0x7E8, 6)
    assert q.steady_plan(0.0, 0.022, 9) is None  # due again only 100 ms later: the link would idle


def _stepwise(p: SchedulerPolicy, now: float, round_trip_s: float, count: int) -> list[Batch]:
    out = []
    for _ in range(count):
        batch = p.next_batch(now)
        assert batch is not None
        out.append(batch)
        p.record(batch, now + round_trip_s, batch.pids, sent=now)
        now += round_trip_s
    return out


def test_the_full_rate_plan_takes_the_short_cut_and_is_still_what_stepping_gives() -> None:
    def policy(asked: bool = False) -> SchedulerPolicy:
        p = SchedulerPolicy()
        for i, pid in enumerate((0x0C, 0x0D, 0x04, 0x10, 0x11, 0x05)):
            p.set_pid(pid, 0x7E8, 100.0 - i, priority=i % 3)  # different weights: the order inside a batch moves
        if asked:
            p.set_pid(0x2F, 0x7E8, 100.0, always=False)
            p.note_interest(0x2F, 0.0)
        p.set_max_pids(0x7E8, 6 if not asked else 7)
        return p

    for asked in (False, True):
        planned, stepped = policy(asked), policy(asked)
        drive(planned, 0.5, 0.022)
        drive(stepped, 0.5, 0.022)
        calls = 0

        def counting(now: float, next_batch: Callable[[float], Batch | None] = planned.next_batch) -> Batch | None:
            nonlocal calls
            calls += 1
            return next_batch(now)

        planned.next_batch = counting  # type: ignore[method-assign]
        plan = planned.steady_plan(1.0, 0.022, 20)
        if asked:
            assert plan is None  # an asked-for PID may lapse: no short cut, requests go one by one
        else:
            assert calls == 2  # the short cut: two calls, not twenty
            assert plan == _stepwise(stepped, 1.0, 0.022, 20)


def test_a_plan_leaves_the_policy_as_it_was_even_before_the_first_request() -> None:
    p = SchedulerPolicy()
    for pid in (0x0C, 0x0D):
        p.set_pid(pid, 0x7E8, 100.0)
    p.set_max_pids(0x7E8, 6)
    before = {k: (e.last_polled, e.values) for k, e in p.entries.items()}
    assert p.steady_plan(5.0, 0.022, 10) == [Batch(0x7E8, (0x0C, 0x0D))] * 10
    assert p.started is None  # the on-demand share's window starts with the first real request
    assert {k: (e.last_polled, e.values) for k, e in p.entries.items()} == before
