"""The detection engine: runs every detector and the trip accounting over one stream of samples.

``feed(item)`` takes samples and link states in time order and returns the events and finished
trips they complete; ``feed_many(items)`` does the same for a run of items (the poll rounds the bus
carries as :class:`~gateway.model.Samples`) in one call, with the same outputs as feeding them one by
one; ``tick(now_ms)`` lets time-outs (the ignition-off confirmation, a ``mil:on`` waiting for its codes)
fire while nothing arrives. The same code runs live (the daemon feeds the bus) and in replay
(``obd-gateway replay``): nothing here reads a clock, so a recorded drive gives the same events and
trips as the live run it was recorded from.

The state of the open trip and of every detector is written to ``state_path`` (JSON, atomically, with
fsync) on every transition and at most every ``state_save_interval_s`` of sample time otherwise, so a
restarted daemon continues the same trip with the same UUID.

Order of durability: once the state has moved on (a trip closed, a speeding episode ended, a lamp
reported), nothing would ever emit those outputs again. So every output is also kept in the state as
*unconfirmed* until the caller says the store has committed it (:meth:`DetectionEngine.confirm_durable`);
after a crash :meth:`DetectionEngine.unconfirmed` hands them back with their original ids, to be
published again (the store keeps one row per id, receivers de-duplicate by id).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.common.ratelog import RateLimitedLog
from gateway.config import DetectionConfig, LocationConfig
from gateway.detectors.base import Detector, IdFactory, make_event, uuid4_str
from gateway.detectors.battery import LowBatteryDetector
from gateway.detectors.harsh import HarshDetector
from gateway.detectors.ignition import IgnitionDetector
from gateway.detectors.mil import MilDetector
from gateway.detectors.motion import MotionDetector
from gateway.detectors.speeding import SpeedingDetector
from gateway.detectors.turn import HardTurnDetector
from gateway.location import geo
from gateway.model import Event, LinkState, Position, Sample, Samples, TripRecord
from gateway.trips import TripAccumulator

log = logging.getLogger(__name__)

STATE_VERSION = 1
Output = Event | TripRecord
#: Unconfirmed outputs kept in the state at most (a store that cannot commit for hours must not grow the
#: state file, rewritten with fsync at each event, without bound); beyond it the oldest are forgotten.
MAX_UNCONFIRMED = 256
Item = Sample | LinkState | Position
#: a fix this recent when the ignition comes on is where the trip starts (the car cannot have moved
#: without its ignition; the receiver may take a while to fix again after cranking)
START_FIX_MAX_AGE_MS = 300_000


class DetectionEngine:
    """Events and trips from samples; see the module docstring and docs/events-and-trips.md."""

    def __init__(
        self,
        cfg: DetectionConfig,
        *,
        device_id: str,
        car_id: str = "",
        state_path: Path | None = None,
        new_id: IdFactory = uuid4_str,
        location: LocationConfig | None = None,
    ) -> None:
        self.cfg = cfg
        self.loc_cfg = location or LocationConfig()
        self.last_fix: Position | None = None
        self._last_update_ms: int | None = None
        self.device_id = device_id
        self.car_id = car_id
        self.state_path = state_path
        self._new_id = new_id
        self._build()
        self._trip: TripAccumulator | None = None
        # The trip as it stood when the running evidence stopped: what it is if the off is confirmed.
        self._trip_at_off: TripAccumulator | None = None
        self._last_save_ms: int | None = None
        self._dirty = False
        # emitted, not yet confirmed committed by the store (kept only with a state file to keep them in)
        self._unconfirmed: list[Output] = []
        self.unconfirmed_dropped = 0
        self._drop_warned = False
        # a full or read-only disk fails the save at every sample: one line, then a count
        self._errors = RateLimitedLog(log)
        if state_path is not None:
            self._load(state_path)

    # -- the contract of docs/interfaces.md ---------------------------------------------------------

    @property
    def ignition_on(self) -> bool:
        """Whether the ignition is on (a trip is open)."""
        return self.ignition.on

    def ignition_on_at(self, now_ms: int) -> bool:
        """Whether the ignition is still on at ``now_ms`` (a pending off already confirmed by then counts
        as off); nothing changes. The daemon starts the poller in the parked plan when this is false."""
        ign = self.ignition
        if not ign.on:
            return False
        return ign.off_since is None or now_ms - ign.off_since < ign.confirm_ms

    @property
    def current_trip_fuel_l(self) -> float | None:
        """Fuel used so far in the open trip (None without a trip or a fuel estimate)."""
        return self._trip.fuel_volume_l if self._trip is not None else None

    @property
    def current_trip_id(self) -> str | None:
        """The UUID of the open trip, ``None`` while parked."""
        return self._trip.id if self._trip is not None else None

    def note_user_cleared_dtcs(self) -> None:
        """The gateway cleared the trouble codes: the next ``mil:off`` carries ``user_cleared``."""
        self.mil.note_user_cleared_dtcs()
        self._dirty = True
        self._maybe_save(None, force=True)

    def feed(self, item: Item) -> list[Output]:
        """Events and finished trips completed by ``item`` (items must come in time order)."""
        out: list[Output] = []
        self._feed(item, out, self._route_all)
        self._hold(out)
        # a fix changes no harsh episode: its flag waits for the next sample
        force = bool(out) if isinstance(item, Position) else bool(out) or self._harsh_changed()
        self._maybe_save(item.ts_ms, force=force)
        return out

    def feed_many(self, items: Iterable[Item | Samples]) -> list[Output]:
        """What feeding ``items`` (and the samples of each :class:`Samples`) one by one returns, in one call.

        The state-save check runs once for the run, and a sample of a name no detector or trip total reads
        only moves time on (the ignition-off and ``mil:on`` time-outs), once per run of such samples of
        one date: a poll round of 6 PIDs costs the detectors of its 2 or 3 relevant ones."""
        out: list[Output] = []
        used, all_ = self._used_names, self._route_all
        ticked: int | None = None  # date of the latest time-only step, while nothing has changed since
        now: int | None = None
        for item in items:
            for one in item if isinstance(item, Samples) else (item,):
                now = one.ts_ms
                if type(one) is Sample and one.name not in used:
                    if now != ticked:
                        self._pass_time(now, out)
                        ticked = now
                    for trip in (self._trip, self._trip_at_off):
                        if trip is not None:
                            trip.note_time(one)
                else:
                    route = self._routes.get(one.name, all_) if type(one) is Sample else all_
                    self._feed(one, out, route)
                    ticked = None
        if now is None:
            return out
        self._hold(out)
        self._maybe_save(now, force=bool(out) or self._harsh_changed())
        return out

    def _pass_time(self, now: int, out: list[Output]) -> None:
        """What :meth:`_feed` does for a sample no detector reads: the time-outs up to ``now``."""
        for ev in self.ignition.tick(now):
            out.extend(self._ignition_off(ev))
        if self.ignition.off_since is None:
            self._trip_at_off = None
        if evs := self.mil.tick(now):
            out.extend(self._stamp(evs))

    def _feed(self, item: Item, out: list[Output], route: _Route) -> None:
        """One item into the detectors and trip totals of ``route``; its outputs appended to ``out``.

        :meth:`feed` sends every item everywhere (the reference); :meth:`feed_many` sends a sample only where
        its name is read, which returns the same (tests/detection/test_feed_many.py compares the two)."""
        now = item.ts_ms
        for ev in self.ignition.tick(now):
            out.extend(self._ignition_off(ev))
        if isinstance(item, Position):
            out.extend(self._position(item))
            return
        off_before = self.ignition.off_since
        if route.ignition:
            for ev in self.ignition.feed(item):
                if ev.type == "IGNITION_ON":
                    out.extend(self._ignition_on(ev))
                else:  # an off confirmed inside feed (cannot happen after the tick above, kept for safety)
                    out.extend(self._ignition_off(ev))
        if isinstance(item, Sample) and self._trip is not None:
            self._to_trips(item, integrate=route.trip)
        if self.ignition.off_since is None:
            self._trip_at_off = None
        elif off_before is None and self._trip is not None:
            self._trip_at_off = self._trip.copy()
        for detector in route.detectors:
            if evs := detector.feed(item):
                out.extend(self._stamp(evs))

    def _to_trips(self, item: Sample, *, integrate: bool) -> None:
        """A sample into the open trip and the trip as it stood at the running evidence's end."""
        for trip in (self._trip, self._trip_at_off):
            if trip is not None:
                if integrate:
                    trip.feed(item)
                else:
                    trip.note_time(item)

    def _position(self, raw: Position) -> list[Output]:
        """A fix: the trip's places and path, hard turns, the location heartbeat while driving."""
        pos = geo.private(raw, self.loc_cfg.privacy_zones)
        self.last_fix = pos
        for trip in (self._trip, self._trip_at_off):
            if trip is not None:
                trip.feed_position(pos)
        out = self._stamp(self.hard_turn.feed(pos))
        interval_ms = self.loc_cfg.update_interval_s * 1000
        if self._trip is not None and interval_ms > 0 and self.ignition.off_since is None and (
            self._last_update_ms is None or pos.ts_ms - self._last_update_ms >= interval_ms
        ):
            self._last_update_ms = pos.ts_ms
            out.extend(self._stamp([make_event(self._new_id, "LOCATION_UPDATED", pos.ts_ms)]))
        return out

    def location_at(self, date_ms: int) -> dict[str, Any] | None:
        """Automatic's event location (``lat``, ``lon``, ``accuracy_m``, ``created_at``) from the latest fix,
        when it is no further than ``location.event_max_age_s`` from ``date_ms``."""
        fix = self.last_fix
        if fix is None or abs(date_ms - fix.ts_ms) > self.loc_cfg.event_max_age_s * 1000:
            return None
        return {"lat": fix.lat, "lon": fix.lon, "accuracy_m": fix.accuracy(), "created_at": fix.ts_ms}

    def tick(self, now_ms: int) -> list[Output]:
        """Time-outs up to ``now_ms``: a confirmed ignition-off, a ``mil:on`` that waited for codes."""
        out: list[Output] = []
        for ev in self.ignition.tick(now_ms):
            out.extend(self._ignition_off(ev))
        out.extend(self._stamp(self.mil.tick(now_ms)))
        out.extend(self._stamp(self.harsh.tick(now_ms)))
        self._hold(out)
        self._maybe_save(now_ms, force=bool(out) or self._harsh_changed())
        return out

    # -- extensions ----------------------------------------------------------------------------------

    @property
    def dtc_read_wanted(self) -> bool:
        """The MIL came on and its ``mil:on`` waits for the codes: read mode 03 and feed a ``dtcs`` sample.

        The poller reads PID 01 (the lamp) on its own but not the codes; the daemon calls
        ``poller.read_dtcs()`` while this is true and feeds ``Sample(ts, "dtcs", tuple(stored))``.
        """
        return self.mil.pending_since is not None

    def end_of_input(self, now_ms: int) -> list[Output]:
        """The recording ends at ``now_ms`` (replay): close what is open as if the ignition went off.

        A trip whose off was being confirmed ends when its running evidence stopped (as it would
        live); a trip still running ends at ``now_ms``.
        """
        out = self.tick(now_ms)
        more: list[Output] = []
        for ev in self.ignition.force_off(now_ms):
            more.extend(self._ignition_off(ev))
        self._hold(more)
        self._maybe_save(now_ms, force=bool(more))
        return out + more

    def save_state(self) -> None:
        """Write the state file now (no-op without ``state_path``)."""
        self._dirty = True
        self._maybe_save(None, force=True)

    def unconfirmed(self) -> list[Output]:
        """Outputs emitted but not yet confirmed durable, oldest first, with their original ids.

        After a restart these are the outputs of the previous run the store may never have committed
        (a SIGKILL or power cut within a commit interval): publish them again. Empty without ``state_path``.
        """
        return list(self._unconfirmed)

    def confirm_durable(self, ids: Iterable[str]) -> None:
        """The store committed the outputs with these ids: forget them, and rewrite the state file now.

        Rewriting at once keeps a restart from sending again what the uplinks may already have delivered.
        """
        done = set(ids)
        keep = [o for o in self._unconfirmed if o.id not in done]
        if len(keep) != len(self._unconfirmed):
            self._unconfirmed = keep
            self._drop_warned = False
            self._maybe_save(None, force=True)

    # -- internals -----------------------------------------------------------------------------------

    def _build(self) -> None:
        """Fresh detectors from the configuration."""
        cfg, new_id = self.cfg, self._new_id
        self.ignition = IgnitionDetector(
            confirm_s=cfg.ignition_off_confirm_s, charging_voltage_v=cfg.charging_voltage_v, new_id=new_id
        )
        self.harsh = HarshDetector(
            brake_kmh_per_s=cfg.hard_brake_kmh_per_s,
            accel_kmh_per_s=cfg.hard_accel_kmh_per_s,
            refractory_s=cfg.refractory_s,
            max_gap_s=cfg.max_gap_s,
            rate_window_s=cfg.rate_window_s,
            max_brake_g=cfg.max_brake_g,
            max_accel_g=cfg.max_accel_g,
            new_id=new_id,
        )
        self.speeding = SpeedingDetector(
            thresholds_mph=cfg.speeding_mph,
            rearm_mph=cfg.speeding_rearm_mph,
            max_gap_s=cfg.integrate_max_gap_s,
            new_id=new_id,
        )
        self.motion = MotionDetector(new_id=new_id)
        self.mil = MilDetector(dtc_wait_s=cfg.mil_dtc_wait_s, new_id=new_id)
        self.battery = LowBatteryDetector(new_id=new_id)
        loc = self.loc_cfg
        self.hard_turn = HardTurnDetector(
            threshold_g=loc.hard_turn_g,
            min_speed_kmh=loc.hard_turn_min_speed_kmh,
            refractory_s=loc.hard_turn_refractory_s,
            max_gap_s=loc.hard_turn_max_gap_s,
            new_id=new_id,
        )
        self._trip = None
        self._trip_at_off = None
        # in the order their events come out; the MIL detector sees every sample (its feed runs its time-out)
        detectors = (self.motion, self.harsh, self.speeding, self.mil, self.battery)
        self._route_all = _Route(True, True, detectors)
        # a sample of any other name changes no detector and no trip total (feed_many skips them)
        self._used_names = frozenset().union(
            self.ignition.SAMPLE_NAMES, TripAccumulator.SAMPLE_NAMES, *(d.SAMPLE_NAMES for d in detectors)
        )
        self._routes = {
            name: _Route(
                name in self.ignition.SAMPLE_NAMES,
                name in TripAccumulator.SAMPLE_NAMES,
                tuple(d for d in detectors if d is self.mil or name in d.SAMPLE_NAMES),
            )
            for name in self._used_names
        }

    def _harsh_changed(self) -> bool:
        """A harsh episode opened, grew or ended: save now, so that a SIGKILL cannot lose it."""
        changed, self.harsh.changed = self.harsh.changed, False
        return changed

    def _locate(self, ev: Event) -> Event:
        """The event with ``payload.location`` when a recent fix exists (already private in a zone)."""
        if "location" in ev.payload:
            return ev
        where = self.location_at(ev.date_ms)
        if where is None:
            return ev
        return Event(ev.id, ev.type, ev.automatic_type, ev.date_ms, ev.trip_id, {**ev.payload, "location": where})

    def _stamp(self, events: list[Event]) -> list[Output]:
        """Attach the open trip and the location to events and count the driving ones in the trip."""
        events = [self._locate(ev) for ev in events]
        if self._trip is None:
            return list(events)
        out: list[Output] = []
        for ev in events:
            stamped = Event(ev.id, ev.type, ev.automatic_type, ev.date_ms, self._trip.id, ev.payload)
            self._trip.note_event(stamped)
            if self._trip_at_off is not None:
                self._trip_at_off.note_event(stamped)
            out.append(stamped)
        return out

    def _hold(self, out: list[Output]) -> None:
        """Keep new outputs as unconfirmed: the save that follows makes them durable with the state."""
        if not out or self.state_path is None:
            return
        self._unconfirmed.extend(out)
        excess = len(self._unconfirmed) - MAX_UNCONFIRMED
        if excess > 0:
            if not self._drop_warned:  # once per stretch without commits, not once per event
                log.warning("more than %d outputs await the store's commit; forgetting the oldest "
                            "(a crash before the store commits them would lose them)", MAX_UNCONFIRMED)
                self._drop_warned = True
            self.unconfirmed_dropped += excess
            del self._unconfirmed[:excess]

    def _ignition_on(self, ev: Event) -> list[Output]:
        cfg = self.cfg
        self._trip = TripAccumulator(
            id=self._new_id(),
            start_ms=ev.date_ms,
            thresholds_mph=list(cfg.speeding_mph),
            max_gap_ms=round(cfg.integrate_max_gap_s * 1000),
            stoich_afr=cfg.stoich_afr,
            fuel_density_g_per_l=cfg.fuel_density_g_per_l,
            path_tolerance_m=self.loc_cfg.path_tolerance_m,
            path_max_points=self.loc_cfg.path_max_points,
        )
        fix = self.last_fix
        if fix is not None and 0 <= ev.date_ms - fix.ts_ms <= START_FIX_MAX_AGE_MS:
            self._trip.set_start_location(fix)
        self._trip_at_off = None
        self._last_update_ms = None
        return self._stamp([ev])

    def _ignition_off(self, ev: Event) -> list[Output]:
        out = self._stamp(self.speeding.flush())
        out.extend(self._stamp(self.harsh.flush()))
        trip = self._trip_at_off or self._trip
        stop = ev.date_ms
        out.extend(self._stamp([ev]))
        out.extend(self._stamp(self.motion.park(stop)))
        if trip is not None:
            summary = trip.summary(stop, device_id=self.device_id, car_id=self.car_id)
            if trip.effective_distance_m >= self.cfg.min_trip_distance_m:
                finished = Event(
                    self._new_id(), "TRIP_FINISHED", "trip:finished", stop, trip.id, {"trip": summary}
                )
                out.append(finished)
                out.append(TripRecord(id=trip.id, start_ms=trip.start_ms, stop_ms=stop, summary=summary))
            else:
                log.info(
                    "trip %s discarded: %.1f m < %.1f m",
                    trip.id,
                    trip.effective_distance_m,
                    self.cfg.min_trip_distance_m,
                )
        self._trip = None
        self._trip_at_off = None
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "device_id": self.device_id,
            "trip": self._trip.to_state() if self._trip else None,
            "trip_at_off": self._trip_at_off.to_state() if self._trip_at_off else None,
            "ignition": self.ignition.to_state(),
            "harsh": self.harsh.to_state(),
            "speeding": self.speeding.to_state(),
            "motion": self.motion.to_state(),
            "mil": self.mil.to_state(),
            "battery": self.battery.to_state(),
            "unconfirmed": [_output_to_state(o) for o in self._unconfirmed],
            "hard_turn": self.hard_turn.to_state(),
            "last_fix": _fix_state(self.last_fix),
            "last_update_ms": self._last_update_ms,
        }

    def _maybe_save(self, now_ms: int | None, *, force: bool) -> None:
        if self.state_path is None:
            return
        if force:
            self._dirty = True
        elif now_ms is not None:
            due = self._last_save_ms is None or now_ms - self._last_save_ms >= self.cfg.state_save_interval_s * 1000
            if not due:
                return
            self._dirty = True
        if not self._dirty:
            return
        try:
            _atomic_write_json(self.state_path, self._state())
        except OSError as exc:
            # Detection must go on with a full or read-only disk; the next save tries again.
            self._errors.warning("save", "cannot save detection state to %s: %s", self.state_path, exc)
            return
        self._errors.clear("save")
        self._dirty = False
        if now_ms is not None:
            self._last_save_ms = now_ms

    def _load(self, path: Path) -> None:
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read detection state %s: %s; starting afresh", path, exc)
            return
        try:
            state = json.loads(raw)
            if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {state.get('version') if isinstance(state, dict) else '?'}")
            self.ignition.load_state(state["ignition"])
            self.harsh.load_state(state.get("harsh") or {})  # absent before episodes: nothing in flight
            self.speeding.load_state(state["speeding"])
            self.motion.load_state(state["motion"])
            self.mil.load_state(state["mil"])
            self.battery.load_state(state.get("battery") or {})  # absent in files from before LOW_BATTERY
            # location keys are optional: a state file written before the GPS existed still loads
            self.hard_turn.load_state(state.get("hard_turn") or {})
            self.last_fix = _fix_from_state(state.get("last_fix"))
            upd = state.get("last_update_ms")
            self._last_update_ms = None if upd is None else int(upd)
            self._trip = TripAccumulator.from_state(state["trip"]) if state.get("trip") else None
            at_off = state.get("trip_at_off")
            self._trip_at_off = TripAccumulator.from_state(at_off) if at_off else None
            # absent in files written before the key existed: nothing was awaiting a commit
            self._unconfirmed = [_output_from_state(o) for o in state.get("unconfirmed") or []]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            # Keep the unreadable file for inspection instead of overwriting it on the next save.
            aside = path.with_name(path.name + ".corrupt")
            log.warning("detection state %s unreadable (%s); kept as %s, starting afresh", path, exc, aside)
            try:
                os.replace(path, aside)
            except OSError:
                pass
            self._build()
            self._unconfirmed = []
            return
        if self.ignition.on and self._trip is None:
            self.ignition.on = False  # an ignition without a trip cannot be continued
        if self._trip is not None and self.ignition.on and self._trip_at_off is None:
            # load_state starts confirming an off from the last running moment: keep the trip as it was.
            self._trip_at_off = self._trip.copy()


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a sample of one name goes: whether to the ignition and the trip totals, and which detectors."""

    ignition: bool
    trip: bool
    detectors: tuple[Detector, ...]


def _output_to_state(out: Output) -> dict[str, Any]:
    """An output as JSON-able state, every field kept so that it can be published again unchanged."""
    if isinstance(out, TripRecord):
        return {"trip_record": {"id": out.id, "start_ms": out.start_ms, "stop_ms": out.stop_ms,
                                "summary": out.summary}}
    return {"event": {"id": out.id, "type": out.type, "automatic_type": out.automatic_type,
                      "date_ms": out.date_ms, "trip_id": out.trip_id, "payload": out.payload}}


def _output_from_state(state: dict[str, Any]) -> Output:
    """The inverse of :func:`_output_to_state` (a malformed entry raises KeyError/TypeError/ValueError)."""
    if "trip_record" in state:
        t = state["trip_record"]
        return TripRecord(id=str(t["id"]), start_ms=int(t["start_ms"]), stop_ms=int(t["stop_ms"]),
                          summary=dict(t["summary"]))
    e = state["event"]
    trip_id = e.get("trip_id")
    return Event(id=str(e["id"]), type=str(e["type"]), automatic_type=str(e["automatic_type"]),
                 date_ms=int(e["date_ms"]), trip_id=None if trip_id is None else str(trip_id),
                 payload=dict(e.get("payload") or {}))
def _fix_state(fix: Position | None) -> dict[str, Any] | None:
    if fix is None:
        return None
    return {"ts_ms": fix.ts_ms, "lat": fix.lat, "lon": fix.lon, "mode": fix.mode, "accuracy_m": fix.accuracy()}


def _fix_from_state(raw: Any) -> Position | None:
    if not raw:
        return None
    acc = raw.get("accuracy_m")
    return Position(
        int(raw["ts_ms"]), float(raw["lat"]), float(raw["lon"]), int(raw.get("mode", 2)),
        accuracy_m=None if acc is None else float(acc),
    )


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` so that a crash leaves either the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # default=str: an odd payload value is kept as text rather than failing the save (as the store does)
            json.dump(data, f, separators=(",", ":"), default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
