"""Data quality: what a road car cannot do, and the ``DATA_QUALITY`` event that says so.

Logged OBD speed has faults that look like harsh driving: a value held (stale) for seconds and then
catching up at once, a single sample that drops to 0 and comes back, logging gaps, and wheel spin on
ice, where the wheel-speed-based vehicle speed races ahead of the car and falls back. Reporting those
as hard brakes teaches a fleet manager the wrong thing, so the harsh-driving detector
(:mod:`gateway.detectors.harsh`) classifies every episode before it reports it, with the rules here:

``implausible_rate``
    The episode's peak rate is beyond what a passenger car on road tyres can do. Braking: a car
    cannot decelerate faster than μ·g, and the tyre–road friction coefficient of dry asphalt is below
    about 1.0 for road tyres (sliding ≈ 0.65 in Noon, *Engineering Analysis of Vehicular Accidents*,
    CRC 1994; locked-wheel braking tests of economy, touring and performance tyres, Reed & Keskin,
    SAE 890736 and "Tire friction during locked-wheel braking"); the bound, :data:`MAX_BRAKE_G` = 1.2 g
    (42.4 km/h/s), leaves room for performance tyres and ±1 km/h of rounding. Acceleration: only the
    driven axle's share of the weight pushes (about 0.55–0.6 on a two-wheel-drive car, so ≈ 0.6 g on
    dry asphalt); :data:`MAX_ACCEL_G` = 0.8 g (28.2 km/h/s) is a 0–100 km/h in 3.5 s average and still
    admits most all-wheel-drive launches. Both are ``[detection]`` settings (``max_brake_g``,
    ``max_accel_g``) for fleets with faster cars.
``snap_back``
    Within :data:`LOOKAHEAD_SAMPLES` (2) speed samples after the episode, the speed goes back by at
    least :data:`SNAP_BACK_FRACTION` (half) of the episode's change, itself faster than the opposite
    threshold, and the episode was a single step (one sample off the line: a dropped or corrupted
    reading) or its rate was implausible. The reversal is part of the same fault and gives no event of
    its own. A change over two or more samples at a rate a car can do, reversed as hard, stays driving
    (hard one way, then hard back): at 1 Hz nothing tells it from a glitch.
``wheel_slip``
    A snap-back of an *acceleration* while the engine raced: in one gear the engine speed is
    proportional to road speed (rpm = v · gear ratio · final drive / tyre circumference), so the rpm per
    km/h seen just before the episode predicts the rpm during it; when the engine turns more than
    :data:`SLIP_RPM_TOLERANCE` (30 %) faster than that prediction while the speed jumps and falls back,
    the wheels spun (the speed the ECU reports comes from the wheels or the gearbox output). Limits:
    without RPM samples, or with RPM polled too rarely to see the race, the same episode is reported as
    ``snap_back``; a kick-down (a lower gear raises rpm/km/h by 25–45 % per gear) during a real hard
    acceleration is not slip because the speed does not fall back; slip without a fall-back (spinning
    for seconds and then gripping at the same speed) is not recognised.
``gap``
    A speed change across a gap longer than ``max_gap_s`` whose *average* rate over the gap already
    exceeds the hard threshold: a hard manoeuvre may have happened, but no rate can be measured. A gap of
    minutes averages out to nothing and gives no event.

The event: ``DATA_QUALITY`` / ``gateway:data_quality``, dated at the fault, with ``reason`` and the
implied figures (``implied_g``, not ``g_force``, so no consumer mistakes it for driving).
"""

from __future__ import annotations

from typing import Any

from gateway.detectors.base import STANDARD_GRAVITY, IdFactory, make_event
from gateway.model import Event

#: Beyond these the data is at fault, not the driver (sources in the module docstring).
MAX_BRAKE_G = 1.2
MAX_ACCEL_G = 0.8
#: Samples after an episode's end looked at for a snap-back (the bounded publication delay).
LOOKAHEAD_SAMPLES = 2
#: A snap-back undoes at least this fraction of the episode's speed change.
SNAP_BACK_FRACTION = 0.5
#: Engine speed above the rpm the pre-episode gear predicts by more than this: the engine raced.
SLIP_RPM_TOLERANCE = 0.3
#: A speed unchanged this long before a fault is named in the payload (``held_s``): a stale value catching up.
STALE_MIN_S = 5.0
#: Below this speed rpm/km/h is meaningless (clutch slipping, first-gear creep).
SLIP_MIN_KPH = 3.0

REASONS = ("implausible_rate", "snap_back", "wheel_slip", "gap")


def g_of(rate_kmh_per_s: float) -> float:
    """|rate| in km/h per second as g."""
    return abs(rate_kmh_per_s) / 3.6 / STANDARD_GRAVITY


def kmh_per_s_of(g: float) -> float:
    """g as km/h per second."""
    return g * STANDARD_GRAVITY * 3.6


def is_snap_back(
    sign: int, before_kph: float, after_kph: float, *, end_ms: int, later: list[tuple[int, float]],
    opposite_kmh_per_s: float,
) -> int | None:
    """The time of the sample that undoes the episode (``before`` → ``after``, direction ``sign``), or ``None``.

    ``later`` are the samples after the episode's end (at most :data:`LOOKAHEAD_SAMPLES` are looked at).
    """
    change = abs(after_kph - before_kph)
    if change <= 0:
        return None
    for ts, v in later[:LOOKAHEAD_SAMPLES]:
        back = sign * (after_kph - v)  # > 0 when the speed moves against the episode's direction
        dt = (ts - end_ms) / 1000.0
        if dt > 0 and back >= SNAP_BACK_FRACTION * change and back / dt > opposite_kmh_per_s:
            return ts
    return None


def engine_raced(rpm_ratio_max: float | None) -> bool:
    """Whether the engine turned faster than the pre-episode gear predicts by more than the tolerance."""
    return rpm_ratio_max is not None and rpm_ratio_max > 1.0 + SLIP_RPM_TOLERANCE


def data_quality_event(new_id: IdFactory, date_ms: int, reason: str, payload: dict[str, Any]) -> Event:
    """A ``DATA_QUALITY`` / ``gateway:data_quality`` event."""
    return make_event(new_id, "DATA_QUALITY", date_ms, {"reason": reason, **payload})
