"""Issue 18 item 12: on-demand PIDs get a bounded share of the link; configured PIDs keep their rates.

A simulated link with a fixed round trip drives the pure policy the way the poller's loop does: a
waiting request is served only when :meth:`SchedulerPolicy.on_demand_allowed` says so, every query adds
its PID as an asked-for (``always=False``) entry, and a hostile client always has the next query waiting.
"""

from __future__ import annotations

from gateway.scheduler import SchedulerPolicy

ECU = 0x7E8
ROUND_TRIP_S = 0.05  # 20 requests/s: an ELM327 on CAN at 38400 baud answers one PID in about that
CONFIGURED = {0x0C: 5.0, 0x0D: 5.0, 0x05: 1.0}  # 11 requests/s of demand: the link can carry it


def _drive(policy: SchedulerPolicy, seconds: float, *, hostile: bool) -> tuple[dict[int, int], int]:
    for pid, hz in CONFIGURED.items():
        policy.set_pid(pid, ECU, hz, always=True)
    policy.set_max_pids(ECU, 1)
    now = 0.0
    queries = 0
    next_query = 0
    start_values = {}
    while now < seconds:
        if now >= 10.0 and not start_values:  # measure after a warm-up, as achieved_hz does
            start_values = {pid: policy.entries[(ECU, pid)].values for pid in CONFIGURED}
        if hostile and policy.on_demand_allowed(now):
            pid = next_query % 256
            next_query += 1
            if pid not in CONFIGURED:
                policy.set_pid(pid, ECU, 1.0, always=False)
                policy.note_interest(pid, now)
            policy.note_request(on_demand=True)
            queries += 1
            now += ROUND_TRIP_S
            continue
        batch = policy.next_batch(now)
        if batch is None:
            now += max(1e-3, min(policy.next_due_in(now), 0.5))
            continue
        now += ROUND_TRIP_S
        policy.record(batch, now, batch.pids)
    got = {pid: policy.entries[(ECU, pid)].values - start_values[pid] for pid in CONFIGURED}
    return got, queries


def test_configured_pids_keep_their_rates_under_a_query_flood() -> None:
    # the rates the policy achieves on this link with nobody querying (round trips delay due PIDs a little)
    quiet, _ = _drive(SchedulerPolicy(), 70.0, hostile=False)
    assert quiet[0x0C] / 60.0 >= 0.7 * CONFIGURED[0x0C]
    policy = SchedulerPolicy()
    got, queries = _drive(policy, 70.0, hostile=True)
    for pid in CONFIGURED:
        assert got[pid] >= 0.95 * quiet[pid], f"PID {pid:02X}: {got[pid]} values under the flood, {quiet[pid]} without"
    # the flood still got the link's spare capacity and its share, not nothing
    assert queries > 0.2 * 70.0 / ROUND_TRIP_S * 0.5
    asked = [e for e in policy.entries.values() if not e.always]
    assert len(asked) <= policy.max_on_demand, "asked-for PIDs are bounded, the least recently asked dropped"
    assert all(e.always for (_, p), e in policy.entries.items() if p in CONFIGURED)


def test_without_the_bound_the_flood_halves_the_rates() -> None:
    """The control: the same flood with an unbounded share starves the configured PIDs (the bug)."""
    quiet, _ = _drive(SchedulerPolicy(), 70.0, hostile=False)
    policy = SchedulerPolicy(on_demand_share=1.0, max_on_demand=256)
    got, _ = _drive(policy, 70.0, hostile=True)
    assert got[0x0C] < 0.7 * quiet[0x0C]


def test_share_is_bounded_while_configured_pids_are_due() -> None:
    policy = SchedulerPolicy(on_demand_share=0.25, share_window=8)
    policy.set_pid(0x0C, ECU, 1e6, always=True)  # always due: the link is saturated by configured work
    used = []
    now = 0.0
    for _ in range(200):
        if policy.on_demand_allowed(now):
            policy.note_request(on_demand=True)
            used.append(True)
        else:
            batch = policy.next_batch(now)
            assert batch is not None and batch.pids == (0x0C,)
            policy.record(batch, now, batch.pids)
            used.append(False)
        now += 0.01
    assert 0.2 <= sum(used) / len(used) <= 0.3


def test_idle_link_serves_on_demand_at_once() -> None:
    policy = SchedulerPolicy()
    policy.set_pid(0x0C, ECU, 0.01, always=True)
    batch = policy.next_batch(0.0)
    assert batch is not None
    policy.record(batch, 0.0, batch.pids)
    for i in range(50):  # nothing configured is due: every query may go
        assert policy.on_demand_allowed(1.0 + i * 0.01)
        policy.note_request(on_demand=True)


def test_asked_for_pids_are_capped_least_recent_first() -> None:
    policy = SchedulerPolicy(max_on_demand=3)
    for i, pid in enumerate((0x10, 0x11, 0x12, 0x13)):
        policy.set_pid(pid, ECU, 1.0, always=False)
        policy.note_interest(pid, float(i))
    assert sorted(p for (_, p) in policy.entries) == [0x11, 0x12, 0x13]

