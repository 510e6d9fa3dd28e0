"""The in-process bus: per-subscriber queues, drops counted, and the public read-only stats."""

from __future__ import annotations

import pytest

from gateway.bus import Bus, SubscriberStats
from gateway.model import Event, LinkState, Sample, Samples


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


async def test_a_poll_round_is_one_item_only_for_subscribers_that_take_batches() -> None:
    bus = Bus()
    batched = bus.subscribe("detection", maxsize=3, lossless=True, kinds=(Sample, LinkState), batches=True)
    plain = bus.subscribe("plain", maxsize=10, lossless=True)
    diag = bus.subscribe("diag-1", maxsize=3, kinds=(Sample,))
    events = bus.subscribe("diag-2", maxsize=10, kinds=(Event,), batches=True)
    one = Samples([Sample(1, "speed", 1.0), Sample(1, "engine_rpm", 800.0)])
    two = Samples([Sample(2, "speed", 2.0), Sample(2, "engine_rpm", 900.0)])
    await bus.publish(one)
    bus.publish_nowait(two)
    await bus.publish(LinkState(3, True, True, "6"))
    # whole rounds: one queue item each (maxsize counts rounds), each the very tuple published
    got = batched.get_nowait_all()
    assert got == [one, two, LinkState(3, True, True, "6")]
    assert got[0] is one and type(got[1]) is Samples
    # every other subscriber sees the samples one by one, as if each had been published alone
    assert plain.get_nowait_all() == [*one, *two, LinkState(3, True, True, "6")]
    # a full dropping queue drops single samples, not whole rounds, and counts each
    assert [s.value for s in diag.get_nowait_all()] == [800.0, 2.0, 900.0]
    assert diag.dropped == 1
    # a batch subscriber that wants no samples gets no rounds
    assert events.get_nowait_all() == []
