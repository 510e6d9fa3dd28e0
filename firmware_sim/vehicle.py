"""The simulated vehicle: a physically consistent state stepped through a drive script.

Speed follows the drive's phases; everything else is derived from it step by step, so the values hang
together: the odometer and trip distance integrate speed, RPM follows speed through the gear ratios
(idle when stopped, fast idle while cold), load/throttle/MAF follow RPM and acceleration, fuel flow is
MAF / 14.7 and drains the tank, coolant warms up towards the thermostat and cools when parked, the
battery reads its resting voltage off (12.4 V at first; it drains while parked and recovers while the
alternator charges: see "Battery" below), dips about 2.1 V while cranking and reads about 14.1 V with the
alternator running (a car without that rise: ``alternator = False``, the hybrid-like case).

Battery (public sources; the figures are typical, not one car's):

* resting (open-circuit) voltage of a 12 V lead-acid battery against its state of charge, linear between
  11.9 V (empty) and 12.7 V (full) — the usual state-of-charge charts: 12.7 V 100 %, 12.4 V 75 %,
  12.2 V 50 %, 12.0 V 25 %;
* capacity 60 Ah (a mid-size car's battery, 45-75 Ah: assumption);
* parked drain ``parasitic_ma`` 40 mA by default (modern cars are commonly quoted at 20-50 mA once
  asleep); the issue's report of a car kept awake: about 2 A;
* while the engine runs the alternator puts about 10 A back (assumption) and holds the system at 14.1 V
  (alternator guides: 13.5-14.7 V with the engine running);
* cranking: the starter pulls a healthy battery to about 10 V (battery load tests expect no lower than
  9.6 V): modelled as the resting voltage minus 2.1 V.

Ground truth (:class:`Truth`) records a sample every second of simulated time and the events a
telematics box is expected to detect (hard brake / acceleration > 11 km/h per second, speeding past
70/75/80 mph with 5 mph hysteresis, ignition on/off with the trip distance, MIL on/off).

All randomness comes from one ``random.Random(seed)``, and time is simulated (``advance``), so a drive
is reproducible whatever the wall clock does.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from firmware_sim.drive import MPH, Drive, Phase, VehicleSetup

STEP_S = 0.1
BATTERY_AH = 60.0
BATTERY_EMPTY_V = 11.9
BATTERY_FULL_V = 12.7
CHARGE_A = 10.0
KEY_ON_A = 5.0  # ignition on, engine off: ECUs, fuel pump, lights (assumption)
IDLE_RPM = 760.0
HARD_KMH_PER_S = 11.0
SPEEDING_MPH = (70, 75, 80)
SPEEDING_HYSTERESIS_MPH = 5
GEARS: tuple[tuple[float, float], ...] = ((18, 105.0), (34, 62.0), (55, 42.0), (75, 31.0), (95, 25.0), (999, 20.5))
"""(upper speed km/h, rpm per km/h) per gear."""


@dataclass
class VehicleState:
    """Everything the ECUs report; units as in the field names."""

    ignition: bool = False
    engine_running: bool = False
    cranking: bool = False
    speed_kmh: float = 0.0
    accel_kmh_s: float = 0.0
    rpm: float = 0.0
    gear: int = 0
    load_pct: float = 0.0
    throttle_pct: float = 0.0
    pedal_pct: float = 0.0
    maf_gs: float = 0.0
    map_kpa: float = 101.0
    baro_kpa: float = 101.0
    coolant_c: float = 18.0
    oil_c: float = 18.0
    intake_c: float = 18.0
    ambient_c: float = 18.0
    catalyst_c: float = 18.0
    timing_deg: float = 0.0
    stft_pct: float = 0.0
    ltft_pct: float = 1.6
    o2_volts: float = 0.45
    lambda_: float = 1.0
    fuel_pressure_kpa: float = 0.0
    rail_pressure_kpa: float = 0.0
    fuel_level_pct: float = 62.0
    fuel_rate_lph: float = 0.0
    tank_l: float = 55.0
    ethanol_pct: float = 10.0
    egr_pct: float = 0.0
    evap_purge_pct: float = 0.0
    evap_pa: float = 0.0
    torque_pct: float = 0.0
    reference_torque_nm: float = 320.0
    battery_v: float = 12.4
    battery_rest_v: float = 12.4  # open-circuit voltage: the state of charge (drains parked, charges running)
    parasitic_ma: float = 40.0  # what the parked car draws
    alternator: bool = True  # False: the 12 V does not rise when the engine runs (no crank dip either)
    odometer_km: float = 48211.0
    trip_m: float = 0.0
    run_time_s: float = 0.0
    total_run_s: float = 0.0
    dist_mil_km: float = 0.0
    dist_since_clear_km: float = 0.0
    mil_time_min: float = 0.0
    time_since_clear_min: float = 0.0
    warmups_since_clear: int = 0
    warm: bool = False
    mil: bool = False
    dtcs: list[str] = field(default_factory=list)
    pending_dtcs: list[str] = field(default_factory=list)
    permanent_dtcs: list[str] = field(default_factory=list)
    freeze_dtc: str | None = None
    freeze_frame: VehicleState | None = None
    vin: str = "JHMCM56557C404453"


class Truth:
    """Ground-truth log: JSON-serialisable records kept in memory and optionally written as JSON lines."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._file: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def add(self, record: dict[str, Any]) -> None:
        """Append a record (and write it out as one line when a file is attached)."""
        with self._lock:
            self.records.append(record)
            if self._file is not None:
                self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
                self._file.flush()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Event records, optionally only those named ``name``."""
        with self._lock:
            return [r for r in self.records if r["type"] == "event" and (name is None or r["event"] == name)]

    def samples(self) -> list[dict[str, Any]]:
        """Periodic sample records."""
        with self._lock:
            return [r for r in self.records if r["type"] == "sample"]

    def close(self) -> None:
        """Close the file, if any."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class Vehicle:
    """The car: state + drive-script executor + truth recorder. Thread-safe (one lock around everything)."""

    def __init__(self, drive: Drive, *, seed: int = 1, start_ms: int = 0, truth: Truth | None = None,
                 sample_period_s: float = 1.0) -> None:
        self.drive = drive
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.truth = truth if truth is not None else Truth()
        self.state = VehicleState()
        self.sim_ms: float = float(start_ms)
        self._start_ms = float(start_ms)
        self._target_ms = float(start_ms)
        self._steps = 0
        self.sample_period_s = sample_period_s
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._setup(drive.vehicle)
        self._phase_index = 0
        self._phase_elapsed = 0.0
        self._phase_started = False
        self._cruise_speed = 0.0
        self._crank_left = 0.0
        self._hold = False  # when true the drive script is paused (tests steering the car by hand)
        self._speed_hist: list[tuple[float, float]] = []
        self._hard_brake_active = False
        self._hard_accel_active = False
        self._speeding_armed = dict.fromkeys(SPEEDING_MPH, True)
        self._since_sample = self.sample_period_s  # first step records a sample
        self._warm_counted = False
        self.finished = False
        # Instant phases at t = 0 (typically the key turning) take effect at once, not one step later.
        self._run_script(0.0)

    # ----------------------------------------------------------------- setup and control
    def _setup(self, setup: VehicleSetup) -> None:
        s = self.state
        s.vin = setup.vin
        s.odometer_km = setup.odometer_km
        s.fuel_level_pct = setup.fuel_level_pct
        s.tank_l = setup.tank_l
        s.ambient_c = setup.ambient_c
        s.coolant_c = setup.coolant_c if setup.coolant_c is not None else setup.ambient_c
        s.oil_c = s.coolant_c
        s.intake_c = setup.ambient_c
        s.catalyst_c = setup.ambient_c
        s.warm = s.coolant_c >= 70
        s.dtcs = list(setup.dtcs)
        s.mil = bool(setup.dtcs)
        s.permanent_dtcs = list(setup.dtcs)
        if setup.dtcs:
            s.freeze_dtc = setup.dtcs[0]

    def _event(self, name: str, **extra: Any) -> None:
        rec = {"type": "event", "event": name, "t": int(self.sim_ms), **extra}
        self.truth.add(rec)
        for cb in list(self.listeners):
            cb(rec)

    def set_ignition(self, on: bool) -> None:
        """Turn the key (on: crank and start the engine; off: stop and end the trip)."""
        with self.lock:
            self._set_ignition(on)

    def _set_ignition(self, on: bool, crank_s: float = 1.2) -> None:
        s = self.state
        if on and not s.ignition:
            s.ignition = True
            s.trip_m = 0.0
            s.run_time_s = 0.0
            self._crank_left = crank_s
            s.cranking = crank_s > 0
            s.engine_running = crank_s <= 0
            self._warm_counted = s.coolant_c >= 70
            self._event("ignition_on", odometer_km=round(s.odometer_km, 3))
        elif not on and s.ignition:
            s.ignition = False
            s.engine_running = False
            s.cranking = False
            s.speed_kmh = 0.0
            self._speed_hist.clear()
            self._event("ignition_off", distance_m=round(s.trip_m, 1), odometer_km=round(s.odometer_km, 3))
        self._derive(0.0)

    def set_dtcs(self, codes: list[str], *, mil: bool | None = None, pending: list[str] | None = None) -> None:
        """Store DTCs (mode 03); MIL follows (on when any) unless ``mil`` says otherwise; snapshot a freeze frame."""
        with self.lock:
            self._set_dtcs(codes, mil=mil, pending=pending)

    def _set_dtcs(self, codes: list[str] | tuple[str, ...], *, mil: bool | None = None,
                  pending: list[str] | tuple[str, ...] | None = None) -> None:
        s = self.state
        s.dtcs = [c.upper() for c in codes]
        if pending is not None:
            s.pending_dtcs = [c.upper() for c in pending]
        for c in s.dtcs:
            if c not in s.permanent_dtcs:
                s.permanent_dtcs.append(c)
        if s.dtcs and s.freeze_dtc is None:
            s.freeze_dtc = s.dtcs[0]
            snap = VehicleState(**{k: getattr(s, k) for k in s.__dataclass_fields__})
            snap.freeze_frame = None
            snap.dtcs = list(s.dtcs)
            s.freeze_frame = snap
        new_mil = bool(s.dtcs) if mil is None else mil
        self._set_mil(new_mil)

    def _set_mil(self, on: bool) -> None:
        s = self.state
        if on != s.mil:
            s.mil = on
            if on:
                self._event("mil_on", dtcs=list(s.dtcs))
            else:
                self._event("mil_off")

    def clear_dtcs(self) -> None:
        """Mode 04: clear stored and pending codes, MIL off, freeze frame reset, counters since clear reset."""
        with self.lock:
            s = self.state
            s.dtcs = []
            s.pending_dtcs = []
            s.freeze_dtc = None
            s.freeze_frame = None
            s.dist_since_clear_km = 0.0
            s.time_since_clear_min = 0.0
            s.warmups_since_clear = 0
            s.dist_mil_km = 0.0
            s.mil_time_min = 0.0
            self._set_mil(False)

    def hold(self, speed_kmh: float | None = None) -> None:
        """Pause the drive script (and optionally set a speed held until :meth:`release`)."""
        with self.lock:
            self._hold = True
            if speed_kmh is not None:
                self.state.speed_kmh = max(0.0, min(255.0, speed_kmh))
                self._derive(0.0)

    def release(self) -> None:
        """Resume the drive script where it was paused."""
        with self.lock:
            self._hold = False

    # ----------------------------------------------------------------- time
    def advance(self, seconds: float) -> None:
        """Run the simulation ``seconds`` of simulated time forward.

        The car moves in whole 0.1 s steps whatever the callers' step sizes (a remainder waits for the
        next call), so the state and the truth log depend only on the seed and the simulated time.
        """
        with self.lock:
            self.advance_to(self._target_ms + seconds * 1000.0)

    def advance_to(self, sim_ms: float) -> None:
        """Advance until the simulated clock reads ``sim_ms`` (to the 0.1 s step at or before it)."""
        with self.lock:
            self._target_ms = max(self._target_ms, sim_ms)
            step_ms = STEP_S * 1000.0
            while self._start_ms + (self._steps + 1) * step_ms <= self._target_ms + 1e-6:
                self._steps += 1
                self._step(STEP_S)

    def _current_phase(self) -> Phase | None:
        phases = self.drive.phases
        if self._phase_index >= len(phases):
            if self.drive.repeat:
                self._phase_index = 0
            else:
                self.finished = True
                return None
        return phases[self._phase_index]

    def _next_phase(self) -> None:
        self._phase_index += 1
        self._phase_elapsed = 0.0
        self._phase_started = False

    def _run_script(self, dt: float) -> float:
        """Apply the current phase for ``dt``; returns the target speed change for this step."""
        s = self.state
        for _ in range(len(self.drive.phases) + 1):  # instant phases chain within one step
            ph = self._current_phase()
            if ph is None:
                return 0.0
            if not self._phase_started:
                self._phase_started = True
                self._cruise_speed = s.speed_kmh
                if ph.kind == "ignition_on":
                    self._set_ignition(True, ph.crank_s)
                elif ph.kind == "ignition_off":
                    self._set_ignition(False)
                elif ph.kind == "set_dtcs":
                    self._set_dtcs(ph.dtcs, mil=ph.mil, pending=ph.pending)
                elif ph.kind == "clear_dtcs":
                    self.clear_dtcs()
            if ph.kind in {"ignition_on", "ignition_off", "set_dtcs", "clear_dtcs"}:
                if ph.kind == "ignition_on" and (self._crank_left > 0):
                    return 0.0  # wait for the engine to start before the next phase
                self._next_phase()
                continue
            self._phase_elapsed += dt
            if ph.kind in {"idle", "park"}:
                if self._phase_elapsed >= ph.duration:
                    self._next_phase()
                return -s.speed_kmh if ph.kind == "park" else -min(s.speed_kmh, 3.0 * dt)
            if ph.kind == "cruise":
                if self._phase_elapsed >= ph.duration:
                    self._next_phase()
                target = self._cruise_speed
                if ph.wobble:
                    target += self.rng.uniform(-ph.wobble, ph.wobble) * 0.3
                return max(-1.5 * dt, min(1.5 * dt, target - s.speed_kmh))
            # accelerate / brake / speeding: move towards `to` at `rate`
            if not s.engine_running:
                self._next_phase()  # a car with its engine off cannot follow the script's driving phases
                continue
            gap = ph.to - s.speed_kmh
            step = ph.rate * dt
            if abs(gap) <= step:
                if ph.kind == "speeding":
                    if self._phase_elapsed >= ph.duration + abs(ph.to - self._cruise_speed) / ph.rate:
                        self._next_phase()
                    return gap
                self._next_phase()
                return gap
            return step if gap > 0 else -step
        return 0.0

    def _step(self, dt: float) -> None:
        s = self.state
        self.sim_ms = self._start_ms + self._steps * STEP_S * 1000.0
        if self._crank_left > 0:
            self._crank_left -= dt
            if self._crank_left <= 0:
                s.cranking = False
                s.engine_running = True
        delta = 0.0 if self._hold else self._run_script(dt)
        if not s.engine_running:
            delta = -s.speed_kmh  # no engine, no motion in this model (parked)
        new_speed = max(0.0, min(255.0, s.speed_kmh + delta))
        s.accel_kmh_s = (new_speed - s.speed_kmh) / dt if dt > 0 else 0.0
        dist_km = (s.speed_kmh + new_speed) / 2 * dt / 3600.0
        s.speed_kmh = new_speed
        s.odometer_km += dist_km
        s.trip_m += dist_km * 1000.0
        s.dist_since_clear_km += dist_km
        if s.mil:
            s.dist_mil_km += dist_km
            if s.engine_running:
                s.mil_time_min += dt / 60.0
        if s.engine_running:
            s.run_time_s += dt
            s.total_run_s += dt
            s.time_since_clear_min += dt / 60.0
        self._thermal(dt)
        self._fuel(dt)
        self._battery(dt)
        self._derive(dt)
        self._detect()
        self._since_sample += dt
        if self._since_sample >= self.sample_period_s - 1e-9:
            self._since_sample = 0.0
            self.truth.add(self.sample())

    def _thermal(self, dt: float) -> None:
        s = self.state
        if s.engine_running:
            heat = 0.12 + 0.004 * s.load_pct  # °C/s while below the thermostat
            if s.coolant_c < 90.0:
                s.coolant_c = min(90.0, s.coolant_c + heat * dt)
            else:
                s.coolant_c = 90.0 + 2.0 * (s.load_pct / 100.0)
            s.oil_c += (s.coolant_c + 5 - s.oil_c) * min(1.0, dt / 240.0)
            s.catalyst_c += (320 + 4.0 * s.load_pct - s.catalyst_c) * min(1.0, dt / 60.0)
            if not self._warm_counted and s.coolant_c >= 70:
                self._warm_counted = True
                s.warmups_since_clear = min(255, s.warmups_since_clear + 1)
            if s.coolant_c >= 70:
                s.warm = True
        else:
            k = min(1.0, dt / 1800.0)
            s.coolant_c += (s.ambient_c - s.coolant_c) * k
            s.oil_c += (s.ambient_c - s.oil_c) * k
            s.catalyst_c += (s.ambient_c - s.catalyst_c) * min(1.0, dt / 600.0)
        s.intake_c = s.ambient_c + (6.0 if s.engine_running else 2.0) + max(0.0, (s.coolant_c - s.ambient_c) * 0.05) \
            - min(4.0, s.speed_kmh / 30.0)

    def _battery(self, dt: float) -> None:
        """The resting voltage follows the charge: drawn down by the parked car, refilled by the alternator."""
        s = self.state
        if s.engine_running and s.alternator:
            amps = -CHARGE_A
        else:
            amps = s.parasitic_ma / 1000.0 + (KEY_ON_A if s.ignition else 0.0)
        volts_per_ah = (BATTERY_FULL_V - BATTERY_EMPTY_V) / BATTERY_AH
        s.battery_rest_v -= amps * dt / 3600.0 * volts_per_ah
        s.battery_rest_v = max(BATTERY_EMPTY_V - 0.9, min(BATTERY_FULL_V, s.battery_rest_v))

    def _fuel(self, dt: float) -> None:
        s = self.state
        litres = s.fuel_rate_lph * dt / 3600.0
        s.fuel_level_pct = max(0.0, s.fuel_level_pct - litres / s.tank_l * 100.0)

    def _derive(self, dt: float) -> None:
        """Recompute the engine quantities that follow from speed, acceleration and temperatures."""
        s = self.state
        if not s.ignition:
            s.rpm = 0.0
            s.gear = 0
            s.load_pct = s.throttle_pct = s.pedal_pct = s.maf_gs = s.fuel_rate_lph = 0.0
            s.map_kpa = s.baro_kpa
            s.fuel_pressure_kpa = s.rail_pressure_kpa = 0.0
            s.timing_deg = 0.0
            s.torque_pct = 0.0
            s.battery_v = s.battery_rest_v + self.rng.uniform(-0.02, 0.02)
            s.o2_volts = 0.0
            return
        if not s.engine_running:
            s.rpm = 220.0 if s.cranking else 0.0
            s.gear = 0
            s.load_pct = s.throttle_pct = s.pedal_pct = 0.0
            s.maf_gs = 0.8 if s.cranking else 0.0
            s.fuel_rate_lph = 0.0
            s.map_kpa = s.baro_kpa - (5 if s.cranking else 0)
            dip = 2.1 if s.cranking and s.alternator else 0.1  # a hybrid-like car has no 12 V starter
            s.battery_v = s.battery_rest_v - dip + self.rng.uniform(-0.05, 0.05)
            s.fuel_pressure_kpa = 350.0 if s.cranking else 0.0
            s.rail_pressure_kpa = s.fuel_pressure_kpa
            s.torque_pct = 0.0
            return
        v, a = s.speed_kmh, s.accel_kmh_s
        idle = IDLE_RPM + max(0.0, (60.0 - s.coolant_c) * 7.0)  # fast idle while cold
        if v < 3.0:
            s.gear = 0 if a <= 0 else 1
            s.rpm = idle + (450.0 if a > 0 else 0.0)
        else:
            gear = next(i for i, (top, _) in enumerate(GEARS) if v < top)
            s.gear = gear + 1
            s.rpm = max(idle, v * GEARS[gear][1])
            if gear == 0 and a > 0:
                s.rpm = max(s.rpm, idle + 450.0)  # pulling away: the clutch slips above idle
        s.rpm += self.rng.uniform(-8, 8)
        # On overrun the throttle is closed; otherwise load = rolling + aero + acceleration demand.
        load = 12.0 if a < -1.0 else 19.0 + 0.0022 * v * v + 5.5 * max(a, 0.0) + 0.05 * v
        s.load_pct = max(10.0, min(100.0, load + self.rng.uniform(-0.5, 0.5)))
        s.throttle_pct = min(100.0, 11.8 + 0.85 * (s.load_pct - 19.0)) if a >= -1.0 else 11.8
        s.pedal_pct = max(0.0, min(100.0, (s.load_pct - 19.0) * 1.1)) if a >= -1.0 else 0.0
        s.maf_gs = 2.0 * s.rpm / 120.0 * 1.2 * s.load_pct / 100.0
        s.map_kpa = min(s.baro_kpa, 22.0 + 0.78 * s.load_pct)
        fuel_cut = a < -3.0 and s.rpm > 1200
        s.lambda_ = 1.0 if not fuel_cut else 1.99
        s.fuel_rate_lph = 0.0 if fuel_cut else s.maf_gs / 14.7 / 745.0 * 3600.0 * 1000.0 / 1000.0
        s.fuel_pressure_kpa = 380.0
        s.rail_pressure_kpa = 5000.0 + 40.0 * s.load_pct
        s.timing_deg = max(-10.0, min(45.0, 8.0 + s.rpm / 250.0 - s.load_pct / 8.0))
        s.stft_pct = self.rng.uniform(-3.0, 3.0)
        s.o2_volts = 0.45 + self.rng.uniform(-0.35, 0.35)
        s.battery_v = (14.1 if s.alternator else s.battery_rest_v) + self.rng.uniform(-0.05, 0.05)
        s.egr_pct = 0.0 if v < 20 else min(20.0, s.load_pct / 5)
        s.evap_purge_pct = 0.0 if not s.warm else 8.0
        s.evap_pa = -120.0 + self.rng.uniform(-10, 10)
        s.torque_pct = max(0.0, s.load_pct - 8.0)

    def _detect(self) -> None:
        s = self.state
        t = self.sim_ms
        self._speed_hist.append((t, s.speed_kmh))
        while self._speed_hist and self._speed_hist[0][0] < t - 1000.0 - 1e-6:
            self._speed_hist.pop(0)
        if self._speed_hist and t - self._speed_hist[0][0] >= 999.0:
            change = s.speed_kmh - self._speed_hist[0][1]
            if change < -HARD_KMH_PER_S:
                if not self._hard_brake_active:
                    self._hard_brake_active = True
                    self._event("hard_brake", speed_kmh=round(s.speed_kmh, 2), delta_kmh_per_s=round(change, 2))
            elif change > -HARD_KMH_PER_S / 2:
                self._hard_brake_active = False
            if change > HARD_KMH_PER_S:
                if not self._hard_accel_active:
                    self._hard_accel_active = True
                    self._event("hard_accel", speed_kmh=round(s.speed_kmh, 2), delta_kmh_per_s=round(change, 2))
            elif change < HARD_KMH_PER_S / 2:
                self._hard_accel_active = False
        mph = s.speed_kmh / MPH
        for threshold in SPEEDING_MPH:
            if self._speeding_armed[threshold] and mph > threshold:
                self._speeding_armed[threshold] = False
                self._event("speeding", threshold_mph=threshold, speed_kmh=round(s.speed_kmh, 2))
            elif not self._speeding_armed[threshold] and mph < threshold - SPEEDING_HYSTERESIS_MPH:
                self._speeding_armed[threshold] = True

    def sample(self) -> dict[str, Any]:
        """The current state as a truth sample record (DRUST names and units)."""
        s = self.state
        return {
            "type": "sample",
            "t": int(self.sim_ms),
            "ignition": s.ignition,
            "engine_running": s.engine_running,
            "speed": round(s.speed_kmh, 3),
            "engine_rpm": round(s.rpm, 1),
            "engine_coolant_temperature": round(s.coolant_c, 2),
            "fuel_level": round(s.fuel_level_pct, 3),
            "maf": round(s.maf_gs, 3),
            "throttle": round(s.throttle_pct, 2),
            "engine_load": round(s.load_pct, 2),
            "intake_air_temperature": round(s.intake_c, 2),
            "battery_voltage": round(s.battery_v, 3),
            "odometer_km": round(s.odometer_km, 4),
            "trip_m": round(s.trip_m, 2),
            "mil": s.mil,
            "dtcs": list(s.dtcs),
        }
