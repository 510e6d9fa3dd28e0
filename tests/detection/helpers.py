"""Small builders shared by the detection tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from gateway.model import Event, LinkState, Sample, TripRecord

T0 = 1_700_000_000_000  # an arbitrary epoch in ms: the tests speak in seconds after it


def ms(t_s: float) -> int:
    """Seconds after T0 as an epoch in ms."""
    return T0 + round(t_s * 1000)


def s(t_s: float, name: str, value: Any) -> Sample:
    """A sample ``t_s`` seconds after T0."""
    return Sample(ms(t_s), name, value)


def link(t_s: float, ok: bool, connected: bool = True) -> LinkState:
    """A link state ``t_s`` seconds after T0."""
    return LinkState(ms(t_s), connected, ok, "6")


def speeds(points: Iterable[tuple[float, float]]) -> list[Sample]:
    """Speed samples from (seconds, km/h) pairs."""
    return [s(t, "speed", v) for t, v in points]


def counter_ids() -> Callable[[], str]:
    """Deterministic ids (id-1, id-2, ...) so two runs can be compared field by field."""
    n = itertools.count(1)
    return lambda: f"id-{next(n)}"


def types(out: Iterable[Event | TripRecord]) -> list[str]:
    """The DRUST types of the events (``TRIP`` for a trip record)."""
    return [x.type if isinstance(x, Event) else "TRIP" for x in out]


def feed_all(detector: Any, items: Iterable[Sample | LinkState]) -> list[Any]:
    """Feed every item, collecting the outputs."""
    out: list[Any] = []
    for item in items:
        out.extend(detector.feed(item))
    return out
