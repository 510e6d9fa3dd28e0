"""Hard braking and hard acceleration as episodes, with every episode checked for data faults first.

The reference's rule is a speed change of more than 11 km/h per second, with later events within five
seconds of the original disregarded (Automatic, "notification:hard_brake"/"hard_accel", see
/work/shared/reference). A real drive turns that into an *episode*:

* the rate (:mod:`gateway.detectors.rate`: least-squares slope over ``rate_window_s``) crossing the
  threshold opens an episode; it grows while the rate stays beyond it and ends at the first sample
  where it does not (or at a gap longer than ``max_gap_s``, a silent ECU, the trip's end). Samples
  after that still belong to it while the speed keeps going the same way faster than half the threshold
  (an emergency stop reaching 0 km/h in its last, gentler second), so ``speed_to_kph`` is where the
  manoeuvre ended;
* the payload carries the episode's **peak** ``g_force`` (Automatic's field) and signed
  ``rate_kmh_per_s``, ``speed_from_kph``/``speed_to_kph`` (before and after), ``start_time``,
  ``end_time``, ``duration_s`` and ``peak_time``; the event's ``date`` is when the threshold was crossed;
* a new crossing while the episode waits to be classified continues it (its growth is never lost); a new
  episode starting within ``refractory_s`` of the previous event's date is disregarded, as the reference
  says;
* it is classified :data:`~gateway.detectors.plausibility.LOOKAHEAD_SAMPLES` (2) speed samples after it
  ended (a snap-back shows only then) or ``max_gap_s`` later by :meth:`tick`, and published then: a
  driving event, or a ``DATA_QUALITY`` event (:mod:`gateway.detectors.plausibility`), never both.

Everything an episode in flight needs is in :meth:`to_state`; :attr:`HarshDetector.changed` tells the
engine to save at once when an episode opens, grows or ends, so a SIGKILL cannot lose it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from gateway.detectors import plausibility as pl
from gateway.detectors.base import IdFactory, as_float, make_event, uuid4_str
from gateway.detectors.rate import RateWindow
from gateway.model import Event, LinkState, Sample

BRAKE, ACCEL = -1, 1
EVENT_TYPES = {BRAKE: "HARD_BRAKE", ACCEL: "HARD_ACCELERATION"}


@dataclass(slots=True)
class Episode:
    """One harsh episode in one direction."""

    sign: int
    start_ms: int  # the first sample of the window that crossed: the speed before
    cross_ms: int  # the sample at which the rate first crossed: the event's date
    before_kph: float
    peak_rate: float
    peak_ms: int
    end_ms: int
    after_kph: float
    ended: bool = False
    absorbed: bool = False  # the reversal of a fault already reported: no event of its own
    later: list[list[float]] = field(default_factory=list)  # [ts, km/h] after the end (look-ahead)
    rpm_per_kph: float | None = None  # the gear before the episode (engine rpm per km/h)
    rpm_ratio_max: float | None = None  # max of rpm / (rpm_per_kph · speed) during the episode
    held_s: float = 0.0  # how long the speed before had not changed (a stale value catching up)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Episode:
        """Rebuild from ``asdict``."""
        ep = cls(**{k: state[k] for k in ("sign", "start_ms", "cross_ms", "before_kph", "peak_rate", "peak_ms",
                                          "end_ms", "after_kph")})
        ep.sign = int(ep.sign)
        ep.ended = bool(state.get("ended", False))
        ep.absorbed = bool(state.get("absorbed", False))
        ep.later = [[float(t), float(v)] for t, v in state.get("later", [])]
        ep.rpm_per_kph = None if state.get("rpm_per_kph") is None else float(state["rpm_per_kph"])
        ep.rpm_ratio_max = None if state.get("rpm_ratio_max") is None else float(state["rpm_ratio_max"])
        ep.held_s = float(state.get("held_s", 0.0))
        return ep


class HarshDetector:
    """``HARD_BRAKE``, ``HARD_ACCELERATION`` and the ``DATA_QUALITY`` events of speed (module docstring)."""

    #: the only sample names ``feed`` reads; any other sample changes nothing
    SAMPLE_NAMES: ClassVar[frozenset[str]] = frozenset({"speed", "engine_rpm"})

    def __init__(
        self,
        *,
        brake_kmh_per_s: float = 11.0,
        accel_kmh_per_s: float = 11.0,
        refractory_s: float = 5.0,
        max_gap_s: float = 2.0,
        rate_window_s: float = 0.8,
        max_brake_g: float = pl.MAX_BRAKE_G,
        max_accel_g: float = pl.MAX_ACCEL_G,
        new_id: IdFactory = uuid4_str,
    ) -> None:
        self.threshold = {BRAKE: brake_kmh_per_s, ACCEL: accel_kmh_per_s}
        self.bound = {BRAKE: pl.kmh_per_s_of(max_brake_g), ACCEL: pl.kmh_per_s_of(max_accel_g)}
        self.refractory_ms = round(refractory_s * 1000)
        self.max_gap_ms = round(max_gap_s * 1000)
        self._new_id = new_id
        self.window = RateWindow(window_ms=round(rate_window_s * 1000), max_gap_ms=self.max_gap_ms)
        self.episodes: dict[int, Episode] = {}
        self.last_event_ms: dict[int, int | None] = {BRAKE: None, ACCEL: None}
        self._last: tuple[int, float] | None = None  # the latest speed sample
        self._unchanged_since: int | None = None  # when the latest speed value first appeared
        self._rpm: tuple[int, float] | None = None  # the latest engine rpm
        self.changed = False  # an episode opened, grew or ended since the engine last saved

    # -- the detector protocol -------------------------------------------------------------------------

    def feed(self, item: Sample | LinkState) -> list[Event]:
        """Events completed by ``item`` (``speed`` and ``engine_rpm`` samples, lost links)."""
        if isinstance(item, LinkState):
            if item.adapter_connected and item.ecu_responding:
                return []
            self.window.clear()  # a speed from before a silence says nothing about the rate after it
            return self._close_all()
        value = as_float(item.value)
        if value is None:
            return []
        if item.name == "engine_rpm":
            self._rpm = (item.ts_ms, value)
            self._note_rpm()
            return []
        if item.name != "speed":
            return []
        return self._speed(item.ts_ms, value)

    def tick(self, now_ms: int) -> list[Event]:
        """Episodes whose samples stopped more than ``max_gap_s`` ago are classified and published."""
        if self.episodes and self._last is not None and now_ms - self._last[0] > self.max_gap_ms:
            return self._close_all()
        return []

    def flush(self) -> list[Event]:
        """The trip is over: classify and publish whatever is in flight."""
        return self._close_all()

    # -- samples ---------------------------------------------------------------------------------------

    def _speed(self, now: int, v: float) -> list[Event]:
        out: list[Event] = []
        prev = self._last
        if prev is not None and now < prev[0]:
            self.window.clear()  # time went backwards (clock step): start over rather than invent a rate
        elif prev is not None and now - prev[0] > self.max_gap_ms:
            out.extend(self._close_all())
            self.window.clear()
            out.extend(self._gap(prev, now, v))
        held_from = self._unchanged_since
        if prev is None or v != prev[1]:
            self._unchanged_since = now
        self._last = (now, v)
        est = self.window.add(now, v)
        for sign in (BRAKE, ACCEL):
            self._step(sign, now, v, est, prev=prev, held_from=held_from)
        self._note_rpm()
        # after both directions moved: a reversal that opened the other direction's episode is seen
        for sign in (BRAKE, ACCEL):
            ep = self.episodes.get(sign)
            if ep is not None and ep.ended:
                out.extend(self._classify(sign, final=False))
        return out

    def _step(self, sign: int, now: int, v: float, est: tuple[float, int, float] | None, *,
              prev: tuple[int, float] | None, held_from: int | None) -> None:
        beyond = est is not None and sign * est[0] > self.threshold[sign]
        ep = self.episodes.get(sign)
        if ep is None:
            if beyond and est is not None:
                held_s = 0.0
                if prev is not None and held_from is not None and est[2] == prev[1] and held_from <= est[1]:
                    held_s = (est[1] - held_from) / 1000.0  # the value before had been stuck this long
                self._open(sign, now, v, est, held_s)
            return
        if beyond and est is not None:
            if ep.ended:  # crossed again before it was classified: the same episode goes on
                ep.ended = False
                ep.later = []
            self._grow(ep, now, v, est[0])
            return
        ep.ended = True
        self.changed = True
        dt = (now - ep.end_ms) / 1000.0
        if not ep.later and dt > 0 and sign * (v - ep.after_kph) / dt > self.threshold[sign] / 2:
            # still going the same way at more than half the threshold: the manoeuvre's tail (an emergency
            # stop's last, gentler second to 0 km/h) belongs to it, as in the simulator's truth
            ep.end_ms, ep.after_kph = now, v
            return
        ep.later.append([now, v])

    def _open(self, sign: int, now: int, v: float, est: tuple[float, int, float], held_s: float) -> None:
        rate, start_ms, before = est
        # the speed before is where the window's change began: its highest value for a brake (lowest for
        # an acceleration) at or after the window's start
        for ts, value in self.window.samples:
            if start_ms <= ts < now and sign * (before - value) > 0:
                start_ms, before = ts, value
        ep = Episode(sign=sign, start_ms=start_ms, cross_ms=now, before_kph=before, peak_rate=rate, peak_ms=now,
                     end_ms=now, after_kph=v, held_s=held_s)
        if (self._rpm is not None and before >= pl.SLIP_MIN_KPH
                and 0 <= start_ms - self._rpm[0] <= self.max_gap_ms):  # the gear as it was before
            ep.rpm_per_kph = self._rpm[1] / before
        self.episodes[sign] = ep
        self.changed = True

    def _grow(self, ep: Episode, now: int, v: float, rate: float) -> None:
        if abs(rate) > abs(ep.peak_rate):
            ep.peak_rate, ep.peak_ms = rate, now
        ep.end_ms, ep.after_kph = now, v
        self.changed = True

    def _note_rpm(self) -> None:
        """While an acceleration is open, how much faster the engine turns than its gear predicts."""
        ep = self.episodes.get(ACCEL)
        if ep is None or ep.rpm_per_kph is None or self._rpm is None or self._last is None:
            return
        (t_rpm, rpm), (t_v, v) = self._rpm, self._last
        if v < pl.SLIP_MIN_KPH or abs(t_rpm - t_v) > 1000 or t_rpm < ep.start_ms:
            return
        ratio = rpm / (ep.rpm_per_kph * v)
        if ep.rpm_ratio_max is None or ratio > ep.rpm_ratio_max:
            ep.rpm_ratio_max = ratio

    def _gap(self, prev: tuple[int, float], now: int, v: float) -> list[Event]:
        dt = (now - prev[0]) / 1000.0
        rate = (v - prev[1]) / dt
        sign = BRAKE if rate < 0 else ACCEL
        if sign * rate <= self.threshold[sign]:
            return []  # a gap of minutes averages any change out: nothing to say
        payload = {"gap_s": round(dt, 3), "speed_from_kph": prev[1], "speed_to_kph": v,
                   "rate_kmh_per_s": round(rate, 2), "implied_g": round(pl.g_of(rate), 3),
                   "start_time": prev[0], "end_time": now}
        return [pl.data_quality_event(self._new_id, now, "gap", payload)]

    # -- classification --------------------------------------------------------------------------------

    def _close_all(self) -> list[Event]:
        out: list[Event] = []
        for sign in (BRAKE, ACCEL):
            if sign in self.episodes:
                out.extend(self._classify(sign, final=True))
        return out

    def _classify(self, sign: int, *, final: bool) -> list[Event]:
        """Publish the episode once its look-ahead is complete (or ``final``): a fault or a driving event."""
        ep = self.episodes[sign]
        later = [(int(t), v) for t, v in ep.later]
        undone_at = pl.is_snap_back(sign, ep.before_kph, ep.after_kph, end_ms=ep.end_ms, later=later,
                                    opposite_kmh_per_s=self.threshold[-sign])
        if undone_at is None and not final and len(later) < pl.LOOKAHEAD_SAMPLES:
            return []  # a snap-back may still show
        del self.episodes[sign]
        self.changed = True
        if ep.absorbed or sign * (ep.after_kph - ep.before_kph) <= 0:
            return []  # the reversal of a fault already reported, or noise with no net change
        raced = sign == ACCEL and pl.engine_raced(ep.rpm_ratio_max)
        if undone_at is not None and not (ep.cross_ms == ep.end_ms or raced or sign * ep.peak_rate > self.bound[sign]):
            # undone, but the change took more than one step at a rate a car can do: driving (hard one way,
            # then hard back) as far as the data can tell
            undone_at = None
        if undone_at is not None:
            other = self.episodes.get(-sign)
            if other is not None and other.cross_ms <= undone_at:
                other.absorbed = True  # the reversal is this same fault
            reason = "wheel_slip" if raced else "snap_back"
            return [self._fault(ep, reason, undone_at)]
        if sign * ep.peak_rate > self.bound[sign]:
            return [self._fault(ep, "implausible_rate", None)]
        last = self.last_event_ms[sign]
        if last is not None and 0 <= ep.cross_ms - last < self.refractory_ms:
            return []  # within five seconds of the original: disregarded, as the reference says
        self.last_event_ms[sign] = ep.cross_ms
        return [make_event(self._new_id, EVENT_TYPES[sign], ep.cross_ms, self._figures(ep, "g_force"))]

    def _figures(self, ep: Episode, g_name: str) -> dict[str, Any]:
        return {
            g_name: round(pl.g_of(ep.peak_rate), 3),
            "rate_kmh_per_s": round(ep.peak_rate, 2),
            "speed_from_kph": ep.before_kph,
            "speed_to_kph": ep.after_kph,
            "start_time": ep.start_ms,
            "end_time": ep.end_ms,
            "duration_s": round((ep.end_ms - ep.start_ms) / 1000.0, 3),
            "peak_time": ep.peak_ms,
        }

    def _fault(self, ep: Episode, reason: str, undone_at: int | None) -> Event:
        payload = self._figures(ep, "implied_g")
        payload["direction"] = "down" if ep.sign == BRAKE else "up"
        if undone_at is not None:
            payload["undone_time"] = undone_at
        if ep.held_s >= pl.STALE_MIN_S:
            payload["held_s"] = round(ep.held_s, 3)
        if ep.rpm_ratio_max is not None:
            payload["rpm_over_gear"] = round(ep.rpm_ratio_max, 2)
        return pl.data_quality_event(self._new_id, ep.cross_ms, reason, payload)

    # -- state -----------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The rate window, the episodes in flight and the refractory clocks."""
        return {
            "window": self.window.to_state(),
            "episodes": [asdict(ep) for ep in self.episodes.values()],
            "last_event_ms": [self.last_event_ms[BRAKE], self.last_event_ms[ACCEL]],
            "last": list(self._last) if self._last else None,
            "unchanged_since": self._unchanged_since,
            "rpm": list(self._rpm) if self._rpm else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`to_state` (an empty dict: a fresh detector)."""
        self.window.load_state(state.get("window"))
        self.episodes = {}
        for raw in state.get("episodes", []):
            ep = Episode.from_state(raw)
            self.episodes[ep.sign] = ep
        brake, accel = state.get("last_event_ms") or [None, None]
        self.last_event_ms = {BRAKE: None if brake is None else int(brake),
                              ACCEL: None if accel is None else int(accel)}
        last, rpm = state.get("last"), state.get("rpm")
        self._last = (int(last[0]), float(last[1])) if last else None
        self._rpm = (int(rpm[0]), float(rpm[1])) if rpm else None
        since = state.get("unchanged_since")
        self._unchanged_since = None if since is None else int(since)
