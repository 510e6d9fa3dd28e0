"""What to ask the car next: a pure scheduling policy, and the thin loop that drives it.

The policy (:class:`SchedulerPolicy`) has no I/O and takes the time as an argument, so every rule is
tested with plain numbers:

* every PID has a target rate (Hz; ``math.inf`` = as fast as the link allows) and a priority;
* a PID is *due* once ``elapsed × target_hz ≥ 1``; its *urgency* is ``elapsed × target_hz × 2**priority``;
* the most urgent due PID picks the ECU; up to six due PIDs of that ECU (most urgent first) share one
  mode 01 request where the ECU takes multi-PID requests, else one PID per request; PIDs nearly due
  (urgency ≥ :attr:`SchedulerPolicy.piggyback`) fill free places, because an extra PID in a request
  costs a few bytes while a request costs a whole ECU round trip;
* when the link cannot carry the demand, urgency keeps growing for every PID that waits, so each keeps
  a share proportional to ``target × 2**priority`` (higher priority first, nothing starves);
* ``NO DATA`` streaks back a PID off exponentially; an answer resets the streak;
* a PID that no consumer asked for within ``idle_unrequested_s`` is not polled (``always`` PIDs —
  the daemon's configured set — count as asked for all the time), as the reference adapter does;
* the achieved rate per PID is measured over a sliding window;
* on-demand work (``query`` and other requests a caller waits for, and PIDs polled only because someone
  asked: ``always=False``) gets a bounded share of the link: while a configured PID is due, at most
  ``on_demand_share`` of the last ``share_window`` requests carry it (:meth:`SchedulerPolicy.on_demand_allowed`),
  and at most ``max_on_demand`` asked-for PIDs are kept (the least recently asked one is dropped), so a
  client querying all 256 PIDs in a loop cannot take the configured PIDs' rates. With the link idle,
  on-demand work goes at once.

The loop asks :meth:`SchedulerPolicy.on_demand_allowed` before serving a waiting request and reports it
with :meth:`SchedulerPolicy.note_request`; :meth:`SchedulerPolicy.next_batch` counts the batches it hands out.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.common import vocabulary
from gateway.obd.protocols import MAX_PIDS_PER_REQUEST

# what one request in the share window carried
_CONFIGURED, _ASKED, _EXPLICIT = 0, 1, 2

FAST_HZ = 1e6  # "as fast as possible": due again within 1 µs, i.e. at once after any round trip
DUE = 1.0 - 1e-6  # float rounding must not keep a PID short of due by a hair


@dataclass
class PidEntry:
    """The scheduling state of one PID on one ECU."""

    pid: int
    ecu: int
    target_hz: float
    priority: int = 0
    always: bool = True
    name: str = ""
    supported: bool = True
    last_polled: float = -math.inf
    last_requested: float = -math.inf
    nodata_streak: int = 0
    backoff_until: float = -math.inf
    values: int = 0
    nodata: int = 0
    answered_at: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    @property
    def rate(self) -> float:
        """The target rate used in the arithmetic (∞ is capped to a large finite number)."""
        return FAST_HZ if math.isinf(self.target_hz) else self.target_hz

    def weight(self) -> float:
        """``2 ** priority``, priority clamped to ±8."""
        return float(2.0 ** max(-8, min(8, self.priority)))


@dataclass(frozen=True, slots=True)
class Batch:
    """One mode 01 request the loop should send: PIDs of one ECU."""

    ecu: int
    pids: tuple[int, ...]


class SchedulerPolicy:
    """Pure scheduling policy; every method takes ``now`` (seconds, monotonic)."""

    def __init__(
        self,
        *,
        idle_unrequested_s: float = 60.0,
        window_s: float = 10.0,
        nodata_threshold: int = 3,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        piggyback: float = 0.7,
        max_pids: int = MAX_PIDS_PER_REQUEST,
        on_demand_share: float = 0.2,
        share_window: int = 20,
        max_on_demand: int = 8,
        idle_guard_s: float = 0.1,
    ) -> None:
        if not 0 < on_demand_share <= 1 or share_window < 1 or max_on_demand < 0:
            raise ValueError("need 0 < on_demand_share <= 1, share_window >= 1, max_on_demand >= 0")
        self.idle_unrequested_s = idle_unrequested_s
        self.window_s = window_s
        self.nodata_threshold = nodata_threshold
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.piggyback = piggyback
        self.max_pids = max_pids
        self.entries: dict[tuple[int, int], PidEntry] = {}
        #: ECU → PIDs per request in the request form the session keeps for it (1 when unknown)
        self.pids_per_request: dict[int, int] = {}
        self.started: float | None = None
        self.on_demand_share = on_demand_share
        self.max_on_demand = max_on_demand
        self.idle_guard_s = idle_guard_s
        #: the last requests on the link: True for on-demand work, False for configured polling
        self._recent: deque[int] = deque(maxlen=share_window)  # _CONFIGURED, _ASKED or _EXPLICIT per request

    # -- plan -------------------------------------------------------------------------------------
    def set_pid(
        self,
        pid: int,
        ecu: int,
        target_hz: float,
        *,
        priority: int = 0,
        always: bool = True,
        name: str = "",
        supported: bool = True,
    ) -> PidEntry:
        """Add or update a PID; its history (last poll, achieved rate) is kept across updates."""
        if target_hz <= 0:
            raise ValueError(f"target rate of PID {pid:02X} must be positive")
        entry = self.entries.get((ecu, pid))
        if entry is None:
            entry = PidEntry(pid, ecu, target_hz, priority, always, name, supported)
            if not always:
                self._make_room_for_on_demand()
            self.entries[(ecu, pid)] = entry
        else:
            entry.target_hz, entry.priority, entry.always = target_hz, priority, always
            entry.supported = supported
            entry.name = name or entry.name
        return entry

    def _make_room_for_on_demand(self) -> None:
        """Drop the least recently asked-for on-demand PIDs so one more fits under ``max_on_demand``."""
        asked = sorted((e for e in self.entries.values() if not e.always), key=lambda e: e.last_requested)
        for entry in asked[: max(0, len(asked) - self.max_on_demand + 1)]:
            del self.entries[(entry.ecu, entry.pid)]

    def on_demand_allowed(self, now: float, *, explicit: bool = False) -> bool:
        """Whether on-demand work may use the link now: it is idle, or on-demand work is under its share.

        ``explicit``: a request a caller waits for (a technician's query, a DTC read) is weighed against the
        share of such requests only, so one query still goes out at once while asked-for PIDs ride along in
        the polling batches; a flood of them is what the share bounds."""
        used = self._explicit_used() if explicit else self._on_demand_used()
        if not self._recent or used < self.on_demand_share:
            return True
        # over the share: only into a gap, when no configured PID falls due within one more round trip
        soon = now + self.idle_guard_s
        return not any(
            e.always and self.active(e, now) and self._due_ratio(e, soon) >= DUE for e in self.entries.values()
        )

    def _on_demand_used(self) -> float:
        return sum(1 for r in self._recent if r) / len(self._recent) if self._recent else 0.0

    def _explicit_used(self) -> float:
        return sum(1 for r in self._recent if r == _EXPLICIT) / len(self._recent) if self._recent else 0.0

    def _count_sent(self, batch: Batch) -> None:
        entries = [self.entries.get((batch.ecu, pid)) for pid in batch.pids]
        self._recent.append(_ASKED if any(e is not None and not e.always for e in entries) else _CONFIGURED)

    def note_request(self, *, on_demand: bool) -> None:
        """The loop sent a request outside :meth:`next_batch` (a query, a DTC read): count it."""
        self._recent.append(_EXPLICIT if on_demand else _CONFIGURED)

    def remove(self, pid: int, ecu: int) -> None:
        """Stop scheduling a PID."""
        self.entries.pop((ecu, pid), None)

    def set_max_pids(self, ecu: int, n: int) -> None:
        """How many PIDs one request to ``ecu`` carries (the session's request form; 1 = single PIDs)."""
        self.pids_per_request[ecu] = max(1, min(n, self.max_pids))

    def note_interest(self, pid: int, now: float, ecu: int | None = None) -> None:
        """A consumer asked for ``pid``: keep (or start) polling it."""
        for (e, p), entry in self.entries.items():
            if p == pid and (ecu is None or e == ecu):
                entry.last_requested = now

    # -- choosing ---------------------------------------------------------------------------------
    def active(self, entry: PidEntry, now: float) -> bool:
        """Whether ``entry`` is polled at all right now."""
        if not entry.supported or now < entry.backoff_until:
            return False
        return entry.always or now - entry.last_requested < self.idle_unrequested_s

    def urgency(self, entry: PidEntry, now: float) -> float:
        """How overdue ``entry`` is, in periods, weighted by priority (≥ 1 × weight means due)."""
        elapsed = now - entry.last_polled
        if math.isinf(elapsed):
            return math.inf
        return elapsed * entry.rate * entry.weight()

    def _due_ratio(self, entry: PidEntry, now: float) -> float:
        elapsed = now - entry.last_polled
        return math.inf if math.isinf(elapsed) else elapsed * entry.rate

    def next_batch(self, now: float) -> Batch | None:
        """The next request to send, or None when nothing is due."""
        if self.started is None:
            self.started = now
        # asked-for PIDs join only while on-demand work is under its share (or nothing configured is due)
        extra_ok = self.on_demand_allowed(now)
        due = [
            e
            for e in self.entries.values()
            if (e.always or extra_ok) and self.active(e, now) and self._due_ratio(e, now) >= DUE
        ]
        if not due:
            return None
        due.sort(key=lambda e: (-self.urgency(e, now), -e.priority, e.pid))
        ecu = due[0].ecu
        limit = self.pids_per_request.get(ecu, 1)
        chosen = [e for e in due if e.ecu == ecu][:limit]
        if len(chosen) < limit:
            extra = [
                e
                for e in self.entries.values()
                if e.ecu == ecu
                and e not in chosen
                and (e.always or extra_ok)
                and self.active(e, now)
                and self.piggyback <= self._due_ratio(e, now) < DUE
            ]
            extra.sort(key=lambda e: -self._due_ratio(e, now))
            chosen += extra[: limit - len(chosen)]
        return Batch(ecu, tuple(e.pid for e in chosen))

    def steady_plan(self, now: float, round_trip_s: float, count: int) -> list[Batch] | None:
        """The next ``count`` requests back to back (a burst of the link pump, issue 19) at the link's full rate:
        what :meth:`next_batch` would return at ``now``, ``now + round_trip_s``, … if every PID answered. None
        when the PIDs are not all due at every round trip (then requests go one by one). Changes nothing; the
        answers are recorded one by one with :meth:`record` as for any request.

        The first batch holds every PID there is, all configured (no asked-for PID that may lapse), and
        each one is due again after one round trip. Then every later step finds all of them polled at the
        same time and picks the same batch as the second step: two ``next_batch`` calls, not ``count``
        (tests/link/test_scheduler.py compares the plan with stepping)."""
        started = self.started  # next_batch notes the first request's time: a plan changes nothing
        entries = list(self.entries.values())
        saved = [(e, e.last_polled) for e in entries]
        try:
            first = self.next_batch(now)
            if first is None or len(first.pids) != len(self.entries):
                return None
            if not all(e.always and e.supported and e.rate * round_trip_s >= DUE for e in entries):
                return None
            for e in entries:
                e.last_polled = now
            second = self.next_batch(now + round_trip_s)
        finally:
            for e, last in saved:
                e.last_polled = last
            self.started = started
        return None if second is None else [first] + [second] * (count - 1)

    def next_due_in(self, now: float) -> float:
        """Seconds until some PID becomes due (0 if one is due now; ∞ if none is active)."""
        best = math.inf
        for e in self.entries.values():
            if not e.supported:
                continue
            if now < e.backoff_until:
                best = min(best, e.backoff_until - now)
                continue
            if not self.active(e, now):
                continue
            ratio = self._due_ratio(e, now)
            best = min(best, 0.0 if ratio >= DUE else max(1e-4, (1.0 - ratio) / e.rate))
        return best

    # -- feedback ---------------------------------------------------------------------------------
    def record(self, batch: Batch, now: float, answered: Iterable[int], *, sent: float | None = None) -> None:
        """The answer to ``batch`` arrived at ``now``: PIDs in ``answered`` had values, the others NO DATA.

        ``sent``: when the request went out. A PID's period counts from there, so a PID at r Hz is asked
        every 1/r s when the link allows it; counted from the answer it would be asked every 1/r s plus
        one round trip (a 100 Hz PID on a 22 ms link: 30 Hz, the link idle a third of the time).
        Counts the request toward the on-demand share when it carried an asked-for PID."""
        got = set(answered)
        self._count_sent(batch)
        polled = now if sent is None else sent
        for pid in batch.pids:
            entry = self.entries.get((batch.ecu, pid))
            if entry is None:
                continue
            entry.last_polled = polled
            if pid in got:
                entry.values += 1
                entry.nodata_streak = 0
                entry.answered_at.append(now)
            else:
                self._nodata(entry, now)

    def record_failure(self, batch: Batch, now: float) -> None:
        """The request failed as a whole (bus error, garbage): poll again soon, no backoff."""
        self._count_sent(batch)
        for pid in batch.pids:
            entry = self.entries.get((batch.ecu, pid))
            if entry is not None:
                entry.last_polled = now

    def forgive(self, ecu: int | None = None) -> None:
        """Clear NO DATA streaks and backoffs (of one ECU): the silence was the ECU's, not the PIDs'."""
        for entry in self.entries.values():
            if ecu is None or entry.ecu == ecu:
                entry.nodata_streak = 0
                entry.backoff_until = -math.inf

    def _nodata(self, entry: PidEntry, now: float) -> None:
        entry.nodata += 1
        entry.nodata_streak += 1
        if entry.nodata_streak >= self.nodata_threshold:
            steps = entry.nodata_streak - self.nodata_threshold
            entry.backoff_until = now + min(self.backoff_max_s, self.backoff_base_s * 2.0**steps)

    # -- reporting --------------------------------------------------------------------------------
    def achieved_hz(self, entry: PidEntry, now: float) -> float:
        """Values per second of ``entry`` over the sliding window."""
        horizon = now - self.window_s
        while entry.answered_at and entry.answered_at[0] < horizon:
            entry.answered_at.popleft()
        span = min(self.window_s, now - (self.started if self.started is not None else now))
        if span <= 0:
            return 0.0
        return len(entry.answered_at) / span

    def stats(self, now: float) -> list[dict[str, object]]:
        """One row per PID: pid, name, ecu, supported, polled, target_hz, achieved_hz, priority, counts."""
        rows: list[dict[str, object]] = []
        for e in sorted(self.entries.values(), key=lambda e: (e.ecu, e.pid)):
            rows.append(
                {
                    "pid": vocabulary.pid_hex(e.pid) if e.pid <= 0xFF else "custom",
                    "name": e.name,
                    "ecu": vocabulary.ecu_hex(e.ecu),
                    "supported": e.supported,
                    "polled": self.active(e, now),
                    "target_hz": None if math.isinf(e.target_hz) else e.target_hz,
                    "achieved_hz": round(self.achieved_hz(e, now), 3),
                    "priority": e.priority,
                    "values": e.values,
                    "nodata": e.nodata,
                    "nodata_streak": e.nodata_streak,
                }
            )
        return rows
