"""The cache: latest value and age per (ECU, name)."""

from gateway.cache import Cache
from gateway.model import Sample


def test_latest_per_ecu_and_age() -> None:
    now = [10_000]
    c = Cache(clock_ms=lambda: now[0])
    c.put(Sample(9_000, "speed", 50, "km/h", 0x0D, 0x7E8))
    c.put(Sample(9_500, "speed", 51, "km/h", 0x0D, 0x7E9))
    c.put(Sample(8_000, "speed", 10, "km/h", 0x0D, 0x7E8))  # older: ignored
    got = c.get("speed", 0x7E8)
    assert got is not None and got.value == 50 and got.age_s == 1.0
    newest = c.get("speed")
    assert newest is not None and newest.sample.ecu == 0x7E9
    assert [v.value for v in c.by_pid(0x0D)] == [50, 51]
    assert c.get("engine_rpm") is None
    assert len(c) == 2
    row = c.snapshot()[0]
    assert row["pid"] == "0D" and row["ecu"] == "7E8" and row["age_s"] == 1.0
