"""The MQTT uplink and forwarder against a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from gateway.config import MqttConfig, StoreConfig
from gateway.errors import UplinkError
from gateway.model import Event, Sample, TripRecord
from gateway.store import Store
from gateway.uplink.forwarder import Forwarder
from gateway.uplink.mqtt import STATE_KEYS, MqttUplink, dimo_state
from tests.fixtures.broker import Broker
from tests.store.helpers import MqttCollector, received_ids

T0 = 1_700_000_000_000


def mqtt_cfg(broker: Broker, **kw: object) -> MqttConfig:
    base: dict[str, object] = {"enabled": True, "host": broker.host, "port": broker.port, "tls": False,
                               "batch_samples": 50}
    base.update(kw)
    return MqttConfig(**base)  # type: ignore[arg-type]


def drive(n: int, t0: int = T0) -> list[Sample]:
    out = []
    for i in range(n):
        ts = t0 + i * 100
        out += [Sample(ts, "speed", float(i % 120), "km/h", 0x0D, 0x7E8),
                Sample(ts, "engine_rpm", 800.0 + i, "rpm", 0x0C, 0x7E8)]
    return out


async def wait_until(pred: object, timeout: float = 20.0) -> None:
    assert callable(pred)
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.05)


async def test_forwarder_publishes_drust_payloads_and_state(mosquitto: Broker, tmp_path: Path) -> None:
    col = MqttCollector(mosquitto.host, mosquitto.port)
    store = Store(StoreConfig(path=str(tmp_path / "b.sqlite"), commit_interval_s=0.05, batch_samples=200),
                  uplinks=["mqtt"])
    await store.open()
    up = MqttUplink(mqtt_cfg(mosquitto, protocol="3.1.1", home_assistant_discovery=True), device_id="dev1",
                    state_interval_s=0.0)
    fwd = Forwarder(store, up, "mqtt")
    task = asyncio.create_task(fwd.run())
    try:
        ev = Event("ev-1", "HARD_BRAKE", "notification:hard_brake", T0 + 500, "trip-1", {"speed_drop": 12})
        trip = TripRecord("trip-1", T0, T0 + 60_000, {"distance": 1200.0})
        await store.append([*drive(150), ev, trip, Sample(T0 + 20_000, "fuel_level", 51.8, "%", 0x2F),
                            Sample(T0 + 20_000, "battery_voltage", 12.7, "V", None)])
        await store.flush()
        await wait_until(lambda: store.stats()["queue"]["mqtt"]["records"] == 0)
        assert await asyncio.to_thread(col.wait_for, lambda m: {"ev-1", "trip-1"} <= received_ids(m) and any(
            t.endswith("/state") for t, _p, _r in m))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
    msgs = col.snapshot()
    col.close()
    ts = [json.loads(p) for t, p, _ in msgs if t == "obd/dev1/timeseries"]
    # one stored batch of 200 samples = 100 items (two values per timestamp), 50 items per message
    first = [m for m in ts if m["items"][0]["date"] == T0]
    assert first and first[0]["parts"] == 2 and first[0]["device"] == {"id": "dev1"}
    assert first[0]["items"][0] == {"date": T0, "speed": 0, "engine_rpm": 800}
    items = [it for m in sorted(ts, key=lambda m: (m["items"][0]["date"], m["part"])) for it in m["items"]]
    assert sum(len(it) - 1 for it in items) == 302
    (e,) = [json.loads(p) for t, p, _ in msgs if t == "obd/dev1/events/HARD_BRAKE"]
    assert e == {**ev.to_dict(), "device": {"id": "dev1"}}
    (tr,) = [json.loads(p) for t, p, _ in msgs if t == "obd/dev1/trips"]
    assert tr["id"] == "trip-1" and tr["distance"] == 1200.0 and tr["start"] == {"date": T0}
    avail = [p for t, p, _ in msgs if t == "obd/dev1/availability"]
    assert avail[0] == b"online" and avail[-1] == b"offline"  # clean close says offline itself
    state = [json.loads(p) for t, p, _ in msgs if t == "obd/dev1/state"][-1]
    assert state["fuelPercentRemaining"] == pytest.approx(0.518)
    assert state["batteryVoltage"] == 12.7 and state["recordUpdatedAt"] == "2023-11-14T22:13:40Z"
    disc = [json.loads(p) for t, p, _ in msgs if t.startswith("homeassistant/sensor/dev1/")]
    assert {d["unique_id"] for d in disc} >= {"dev1_fuelPercentRemaining", "dev1_batteryVoltage"}
    binary = {json.loads(p)["unique_id"] for t, p, _ in msgs if t.startswith("homeassistant/binary_sensor/dev1/")}
    assert binary == {"dev1_mil", "dev1_ignition", "dev1_moving"}


async def test_retained_state_and_will(mosquitto: Broker, tmp_path: Path) -> None:
    up = MqttUplink(mqtt_cfg(mosquitto), device_id="dev2",
                    state=lambda: {"odometer": 50414.2, "ambient_air_temperature": 29, "recordUpdatedAt": T0},
                    state_interval_s=0.0)
    await up.connect()
    await up.send([])
    # a late subscriber gets the retained status and availability
    col = MqttCollector(mosquitto.host, mosquitto.port, "obd/dev2/#")
    assert await asyncio.to_thread(col.wait_for, lambda m: len(m) >= 2)
    got = {t: (p, r) for t, p, r in col.snapshot()}
    assert got["obd/dev2/availability"] == (b"online", True)
    # every key present, null while unknown (Home Assistant templates must not meet a missing key)
    assert json.loads(got["obd/dev2/state"][0]) == {**dict.fromkeys(STATE_KEYS), "odometer": 50414.2,
                                                    "ambientTemp": 29, "recordUpdatedAt": "2023-11-14T22:13:20Z"}
    # the connection dies without a DISCONNECT: the broker publishes the last will
    assert up._client is not None
    sock = up._client._client.socket()
    assert sock is not None
    sock.close()
    assert await asyncio.to_thread(col.wait_for, lambda m: (("obd/dev2/availability", b"offline", False) in m))
    col.close()
    await up.close()


def test_dimo_state_mapping() -> None:
    st = dimo_state({"fuel_level": 51.8, "odometer": 50414.2, "battery_voltage": 12.709, "ambient_air_temperature": 29,
                     "location": {"lat": 37.69, "lon": -121.78}, "engine_rpm": 900, "mil": 0,
                     "vin": "1HGCM82633A004352"}, 1706189365000)
    assert st == {**dict.fromkeys(STATE_KEYS), "fuelPercentRemaining": 0.518, "odometer": 50414.2,
                  "batteryVoltage": 12.709, "ambientTemp": 29, "engineRpm": 900, "mil": False,
                  "latitude": 37.69, "longitude": -121.78, "vin": "1HGCM82633A004352",
                  "recordUpdatedAt": "2024-01-25T13:29:25Z"}
    assert dimo_state({"speed": float("nan")}, None) == dict.fromkeys(STATE_KEYS)


async def test_tls_verifies_the_broker(mosquitto_tls: Broker, tmp_path: Path) -> None:
    good = MqttUplink(mqtt_cfg(mosquitto_tls, tls=True, ca_file=mosquitto_tls.ca_file, protocol="5"), device_id="d")
    await good.connect()
    assert good.connected
    await good.close()
    # without our CA the system trust store does not know the test CA: refused
    bad = MqttUplink(mqtt_cfg(mosquitto_tls, tls=True), device_id="d")
    with pytest.raises(UplinkError):
        await bad.connect()
    await bad.close()


async def test_broker_restarts_lose_nothing(mosquitto: Broker, tmp_path: Path) -> None:
    col = MqttCollector(mosquitto.host, mosquitto.port, "obd/#")
    store = Store(StoreConfig(path=str(tmp_path / "b.sqlite"), commit_interval_s=0.05, batch_samples=100),
                  uplinks=["mqtt"])
    await store.open()
    up = MqttUplink(mqtt_cfg(mosquitto, protocol="5"), device_id="dev3", connect_timeout_s=1.0)
    fwd = Forwarder(store, up, "mqtt", max_backoff_s=0.5)
    task = asyncio.create_task(fwd.run())
    try:
        for k in range(6):
            await store.append(drive(500, T0 + k * 100_000))
            if k % 2 == 0:
                await asyncio.to_thread(mosquitto.restart)
            await asyncio.sleep(0.3)
        await store.flush()
        await wait_until(lambda: store.stats()["queue"]["mqtt"]["records"] == 0, 60)
        stored = {r.id for r in await store.lease("mqtt", 10_000)}
        assert stored == set()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
    assert await asyncio.to_thread(col.wait_for, lambda m: sum(
        len(json.loads(p)["items"]) for t, p, _ in {(t, p, False) for t, p, _ in m} if t.endswith("timeseries")
    ) >= 3000, 30)
    items = {(it["date"], it["speed"]) for t, p, _ in col.snapshot() if t.endswith("timeseries")
             for it in json.loads(p)["items"]}
    assert len(items) == 3000
    col.close()


async def test_unreachable_broker_is_an_uplink_error(tmp_path: Path) -> None:
    from tests.fixtures.broker import free_port

    up = MqttUplink(MqttConfig(enabled=True, host="127.0.0.1", port=free_port(), tls=False), device_id="d")
    with pytest.raises(UplinkError):
        await up.connect()
    assert not up.connected
    with pytest.raises(UplinkError):
        await up.send([])


async def test_client_certificate(mosquitto_mtls: Broker) -> None:
    base = {"tls": True, "ca_file": mosquitto_mtls.ca_file, "protocol": "3.1.1"}
    up = MqttUplink(mqtt_cfg(mosquitto_mtls, **base, cert_file=mosquitto_mtls.client_cert,
                             key_file=mosquitto_mtls.client_key), device_id="d", connect_timeout_s=3.0)
    await up.connect()
    assert up.connected
    await up.close()
    anonymous = MqttUplink(mqtt_cfg(mosquitto_mtls, **base), device_id="d", connect_timeout_s=3.0)
    with pytest.raises(UplinkError):
        await anonymous.connect()
    await anonymous.close()


async def test_non_finite_values_reach_the_broker_as_null(mosquitto: Broker, tmp_path: Path) -> None:
    """A NaN or infinite value (a sensor glitch, a division in a detector) is sent as strict JSON ``null``."""
    col = MqttCollector(mosquitto.host, mosquitto.port)
    store = Store(StoreConfig(path=str(tmp_path / "b.sqlite"), commit_interval_s=0.05, batch_samples=10),
                  uplinks=["mqtt"])
    await store.open()
    up = MqttUplink(mqtt_cfg(mosquitto), device_id="dev1", state_interval_s=0.0)
    task = asyncio.create_task(Forwarder(store, up, "mqtt").run())
    try:
        ev = Event("ev-nan", "HARD_BRAKE", "notification:hard_brake", T0 + 5, None, {"g": float("-inf")})
        await store.append([Sample(T0, "speed", float("nan"), "km/h", 0x0D), Sample(T0, "engine_rpm", 900.0),
                            Sample(T0 + 100, "maf", float("inf"), "g/s", 0x10), ev])
        await store.flush()
        assert await asyncio.to_thread(col.wait_for, lambda m: "ev-nan" in received_ids(m) and any(
            t == "obd/dev1/timeseries" for t, _p, _r in m))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
    msgs = col.snapshot()
    col.close()

    def strict(raw: bytes) -> object:
        def refuse(token: str) -> object:
            raise AssertionError(f"not JSON: {token} in {raw!r}")
        return json.loads(raw, parse_constant=refuse)

    (ts,) = [strict(p) for t, p, _ in msgs if t == "obd/dev1/timeseries"]
    assert ts["items"] == [{"date": T0, "speed": None, "engine_rpm": 900}, {"date": T0 + 100, "maf": None}]
    (e,) = [strict(p) for t, p, _ in msgs if t == "obd/dev1/events/HARD_BRAKE"]
    assert e["payload"] == {"g": None}


def test_msgpack_payloads_and_event_topic_sanitised() -> None:
    import msgpack

    from gateway.uplink.base import Record

    up = MqttUplink(MqttConfig(enabled=True, tls=False, payload_format="msgpack", batch_samples=2), device_id="d")
    items = [{"date": T0 + i, "speed": i} for i in range(5)]
    msgs = up.messages(Record("ts-1", "timeseries", T0, 5, items))
    assert [t for t, _ in msgs] == ["obd/d/timeseries"] * 3
    bodies = [msgpack.unpackb(p) for _, p in msgs]
    assert [b["part"] for b in bodies] == [0, 1, 2] and all(b["parts"] == 3 for b in bodies)
    assert [it for b in bodies for it in b["items"]] == items
    ((topic, payload),) = up.messages(Record("e", "event", T0, 1, {"id": "e", "type": "A/B#+"}))
    assert topic == "obd/d/events/A_B__" and msgpack.unpackb(payload) == {"id": "e", "type": "A/B#+",
                                                                          "device": {"id": "d"}}


def test_backoff_is_jittered_and_capped() -> None:
    from gateway.common.backoff import Backoff

    b = Backoff(first_s=0.5, max_s=4.0)
    delays = [b.next() for _ in range(20)]
    assert all(0.25 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 10  # jittered, not a fixed ladder
    assert max(delays[5:]) > 1.0  # it grows
    b.reset()
    assert b.next() <= 0.5
