"""The in-process bus: per-subscriber queues, drops counted, and the public read-only stats."""

from __future__ import annotations

import pytest

from gateway.bus import Bus, SubscriberStats
from gateway.model import Event, Sample


async def test_stats_report_each_subscriber_and_its_drops() -> None:
    bus = Bus()
    store = bus.subscribe("store", maxsize=10, lossless=True)
    diag = bus.subscribe("diag-1", maxsize=2, kinds=(Sample,))
    for i in range(5):
        await bus.publish(Sample(i, "speed", float(i)))
    await bus.publish(Event("e", "HARD_BRAKE", "notification:hard_brake", 9))
    assert bus.stats() == [
        SubscriberStats(name="store", lossless=True, queued=6, maxsize=10, dropped=0),
        SubscriberStats(name="diag-1", lossless=False, queued=2, maxsize=2, dropped=3),
    ]
    # the newest items were kept, the oldest dropped
    assert [s.value for s in diag.get_nowait_all()] == [3.0, 4.0]
    diag.close()
    assert [s.name for s in bus.stats()] == ["store"]
    assert len(store.get_nowait_all()) == 6


def test_stats_are_a_snapshot_not_the_subscriptions() -> None:
    bus = Bus()
    bus.subscribe("a")
    snap = bus.stats()
    with pytest.raises(AttributeError):
        snap[0].dropped = 5  # type: ignore[misc]
    bus.subscribe("b")
    assert len(snap) == 1 and len(bus.stats()) == 2
