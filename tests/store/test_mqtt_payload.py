"""Payload formats (change filter, columnar layout, compression) and Home Assistant discovery."""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest

from gateway.common import vocabulary
from gateway.common.samplebatch import pack_samples
from gateway.config import MqttConfig
from gateway.model import Sample
from gateway.uplink import payload
from gateway.uplink.base import Record
from gateway.uplink.drust import timeseries_items
from gateway.uplink.mqtt import HA_SENSORS, STATE_KEYS, MqttUplink
from tests.fixtures.broker import Broker
from tests.store.helpers import MqttCollector

T0 = 1_700_000_000_000


def drive(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        ts = T0 + i * 1000
        out += [
            Sample(ts, "speed", float(i // 3), "km/h", 0x0D, 0x7E8),
            Sample(ts, "engine_rpm", 800.25 + i, "rpm", 0x0C, 0x7E8),
            Sample(ts, "dtc_count", 1 if i >= 7 else 0, "", 0x01, 0x7E8),
            Sample(ts, "mil", i >= 7, "", 0x01, 0x7E8),
        ]
    return out


def test_change_filter_keeps_every_change_and_refreshes() -> None:
    f = payload.ChangeFilter("status", {}, refresh_s=5.0)
    kept, state = f.filter(drive(12))
    names = [(s.name, s.ts_ms - T0) for s in kept if s.name in ("dtc_count", "mil")]
    # first values, the change at 7 s, the refresh 5 s after each send
    assert names == [("dtc_count", 0), ("mil", 0), ("dtc_count", 5000), ("mil", 5000),
                     ("dtc_count", 7000), ("mil", 7000)]
    assert sum(s.name == "speed" for s in kept) == 12  # not status-like: all sent
    f.commit(state)
    later = [Sample(T0 + 8000, "dtc_count", 1, "", 0x01, 0x7E8), Sample(T0 + 9000, "dtc_count", 0, "", 0x01, 0x7E8)]
    again, _ = f.filter(later)  # against the committed state: the unchanged 1 is left out, the change kept
    assert [(s.ts_ms - T0, s.value) for s in again] == [(9000, 0)]
    allf = payload.ChangeFilter("all", {"engine_rpm": 5.0}, refresh_s=300.0)
    kept, _ = allf.filter(drive(12))
    assert [s.ts_ms - T0 for s in kept if s.name == "speed"] == [0, 3000, 6000, 9000]  # exact: each change
    assert [s.value for s in kept if s.name == "engine_rpm"] == [800.25, 806.25]  # moves over 5 rpm only
    # a bool and an int that compare equal are still a change of type (True == 1 in Python)
    assert allf._changed("x", 1, True)


def test_columnar_round_trip_and_compression() -> None:
    # throttle: 100/255 per step, polled every ~250 ms with a few ms of jitter (as a real adapter answers)
    throttle = [Sample(T0 + 40 + i * 250 + (7, 0, 12)[i % 3], "throttle_position", 100 / 255 * (i % 40), "%", 0x11,
                       0x7E8) for i in range(120)]
    samples = drive(30) + throttle
    obj = payload.columnar_batch(samples, batch_ids=["ts-1"], device_id="box")
    assert obj["v"] == 2
    rows = payload.decode_columnar(msgpack.unpackb(msgpack.packb(obj), raw=False))
    # values at the PID's resolution (fuel-level-like 100/255 steps: two decimals), times exact
    want = sorted((s.ts_ms, s.name, vocabulary.value(s.name, s.value)) for s in samples)
    assert sorted((r["ts"], r["name"], r["value"]) for r in rows) == want
    assert [v for ts, n, v in want if n == "throttle_position"][:3] == [0.0, 0.39, 0.78]
    speed = next(c for c in obj["series"] if c["n"] == "speed")
    # t: offset to t0, the first interval, then the intervals' changes (second differences)
    assert speed["pid"] == "0D" and speed["ecu"] == "7E8" and speed["u"] == "km/h"
    assert speed["t"] == [0, 1000] + [0] * 28
    thr = next(c for c in obj["series"] if c["n"] == "throttle_position")
    assert thr["t"][:5] == [47, 243, 19, -17, -2] and thr["s"] == 100 and thr["v"][:3] == [0, 39, 39]
    rpm = next(c for c in obj["series"] if c["n"] == "engine_rpm")
    # engine speed: raw / 4, two decimals: the catalogue's scale 100; 800.25 × 100, then +1 rpm steps
    assert (speed["s"], rpm["s"]) == (1, 100) and rpm["v"][:3] == [80025, 100, 100]
    assert "s" not in next(c for c in obj["series"] if c["n"] == "mil")  # booleans stay as they are
    odd = payload.columnar_batch([Sample(T0, "x", 1 / 3, "", None, 0)], batch_ids=["b"], device_id="d")
    assert "s" not in odd["series"][0] and payload.decode_columnar(odd)[0]["value"] == 1 / 3
    raw = payload.encode_object(obj, "columnar")
    for comp in ("zlib", "zstd"):
        pytest.importorskip("zstandard") if comp == "zstd" else None
        packed = payload.Compressor(comp)(raw)
        assert len(packed) < len(raw)
        assert payload.decode_payload(packed, f"columnar-{comp}") == obj
    assert zlib.decompress(payload.Compressor("zlib")(raw)) == raw  # plain RFC 1950: any zlib decodes it


HA_COMPONENT_OPTIONS = {
    # https://www.home-assistant.io/integrations/sensor/#device-class and /binary_sensor/#device-class
    "sensor": {"device_class": {"distance", "voltage", "temperature", "speed", "volume", None},
               "state_class": {"measurement", "total", "total_increasing", None}},
    "binary_sensor": {"device_class": {"problem", "power", "moving"}, "state_class": {None}},
}
_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def check_ha_config(topic: str, conf: dict[str, Any], prefix: str) -> None:
    """Home Assistant's MQTT discovery rules (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
    topic <prefix>/<component>/[<node_id>/]<object_id>/config, ids from [a-zA-Z0-9_-]; a unique_id for the
    entity registry; a device block needs identifiers (or connections); unit/state_class for sensors only."""
    parts = topic.split("/")
    assert topic.startswith(prefix + "/") and parts[-1] == "config"
    component, *ids = parts[len(prefix.split("/")) : -1]
    assert component in ("sensor", "binary_sensor", "device_tracker") and 1 <= len(ids) <= 2
    assert all(_ID.match(i) for i in ids)
    assert conf["unique_id"] and conf["name"]
    dev = conf["device"]
    assert dev["identifiers"] and {"manufacturer", "model", "sw_version", "name"} <= set(dev)
    assert conf["availability_topic"].endswith("/availability")
    if component == "device_tracker":
        assert conf["source_type"] == "gps" and conf["json_attributes_topic"].endswith("/state")
        return
    opts = HA_COMPONENT_OPTIONS[component]
    assert conf.get("device_class") in opts["device_class"]
    assert conf.get("state_class") in opts["state_class"]
    if component == "binary_sensor":
        assert "unit_of_measurement" not in conf and conf["payload_on"] == "ON"
    if conf.get("state_class") == "total_increasing":
        assert conf["unit_of_measurement"]


def render(template: str, state: dict[str, Any]) -> str:
    """Our templates' jinja subset, evaluated like Home Assistant would (a null must not raise)."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    return str(env.from_string(template).render(value_json=state))


def test_discovery_configs_follow_home_assistant_rules() -> None:
    cfg = MqttConfig(enabled=True, home_assistant_discovery=True, discovery_prefix="ha/test")
    up = MqttUplink(cfg, device_id="box-1", device_info=lambda: {"vin": "1HGCM82633A004352"})
    configs = up.discovery_configs()
    assert len(configs) == len(HA_SENSORS) + 1
    for topic, conf in configs.items():
        check_ha_config(topic, conf, "ha/test")
        assert conf["device"]["serial_number"] == "1HGCM82633A004352"
    by_key = {c["unique_id"]: c for c in configs.values()}
    assert by_key["box-1_odometer"]["state_class"] == "total_increasing"
    assert by_key["box-1_fuelUsed"]["state_class"] == "total_increasing"
    assert by_key["box-1_speed"]["state_class"] == "measurement"
    # templates tolerate null (every state key is always present)
    empty = dict.fromkeys(STATE_KEYS)
    for conf in configs.values():
        if "value_template" in conf:
            assert render(conf["value_template"], empty) == "None"
    assert render(by_key["box-1_fuelPercentRemaining"]["value_template"], {**empty, "fuelPercentRemaining": 0.518}) \
        == "51.8"
    assert render(by_key["box-1_mil"]["value_template"], {**empty, "mil": True}) == "ON"
    assert render(by_key["box-1_location"]["json_attributes_template"], empty) == "{}"


async def test_restart_without_a_sensor_removes_it(mosquitto: Broker, tmp_path: Path) -> None:
    remembered = tmp_path / "ha.json"
    cfg = MqttConfig(enabled=True, host=mosquitto.host, port=mosquitto.port, tls=False, home_assistant_discovery=True)
    values: dict[str, Any] = {"odometer": 1000.0, "speed": 0, "ambient_air_temperature": 20}
    up = MqttUplink(cfg, device_id="car", state=lambda: values, discovery_state_path=remembered)
    await up.connect()
    await up.close()
    del values["odometer"]  # the next start: the car no longer answers PID A6
    up = MqttUplink(cfg, device_id="car", state=lambda: values, discovery_state_path=remembered)
    await up.connect()
    await up.close()
    col = MqttCollector(mosquitto.host, mosquitto.port, "homeassistant/#")
    try:
        assert await asyncio.to_thread(col.wait_for, lambda m: any("speed" in t for t, _p, _r in m), 10)
        await asyncio.sleep(0.3)
        retained = {t for t, p, r in col.snapshot() if r and p}
    finally:
        col.close()
    assert "homeassistant/sensor/car/speed/config" in retained
    assert "homeassistant/sensor/car/odometer/config" not in retained  # emptied: HA deletes the entity
    assert "homeassistant/sensor/car/batteryVoltage/config" not in retained  # never reported


async def test_columnar_zlib_on_the_wire(mosquitto: Broker) -> None:
    cfg = MqttConfig(enabled=True, host=mosquitto.host, port=mosquitto.port, tls=False,
                     payload_format="columnar", compression="zlib")
    col = MqttCollector(mosquitto.host, mosquitto.port, "obd/z/#")
    up = MqttUplink(cfg, device_id="z")
    try:
        await up.connect()
        assert up.protocol == "5"
        raw = pack_samples(drive(20))
        assert await up.send([Record("ts-a", "timeseries", T0, 80, [], raw=raw)]) == ["ts-a"]
        assert await asyncio.to_thread(col.wait_for, lambda m: any(t.endswith("columnar-zlib") for t, _p, _r in m))
        (body,) = [p for t, p, _r in col.snapshot() if t == "obd/z/timeseries/columnar-zlib"]
        rows = payload.decode_columnar(payload.decode_payload(body, "columnar-zlib"))
        # status-like values: only first and changed ones; the rest complete
        count = {n: sum(r["name"] == n for r in rows) for n in ("mil", "dtc_count", "speed", "engine_rpm")}
        assert count == {"mil": 2, "dtc_count": 2, "speed": 20, "engine_rpm": 20}
        assert up.status()["suppressed_unchanged"] == 36
    finally:
        await up.close()
        col.close()


def test_docs_subscriber_example_decodes_every_format() -> None:
    """The decoder in docs/uplinks.md, run as written, on every encoding the box can send."""
    src = (Path(__file__).resolve().parents[2] / "docs" / "uplinks.md").read_text()
    code = re.search(r"```python\n(.*?)```", src, re.S)
    assert code is not None
    ns: dict[str, Any] = {}
    exec(code.group(1).split("c = mqtt.Client")[0], ns)
    samples = [s for s in drive(5) if s.name == "speed"]
    # a series on a fixed-point scale other than 1, with jittered times (second differences other than 0)
    samples += [Sample(T0 + i * 250 + (7, 0, 12)[i % 3], "engine_rpm", 800.25 + i, "rpm", 0x0C, 0x7E8)
                for i in range(9)]
    want = sorted((s.ts_ms, s.name, s.value) for s in samples)
    items = {"id": "x", "part": 0, "parts": 1, "items": [{"date": s.ts_ms, s.name: s.value} for s in samples]}
    for fmt in payload.FORMATS:
        for comp in payload.COMPRESSIONS:
            if comp == "zstd":
                pytest.importorskip("zstandard")
            obj = payload.columnar_batch(samples, batch_ids=["a"], device_id="d") if fmt == "columnar" else items
            body = payload.Compressor(comp)(payload.encode_object(obj, fmt))
            name = payload.encoding_name(fmt, comp)
            topic = "obd/d/timeseries" if name in ("json", "msgpack") else f"obd/d/timeseries/{name}"
            assert sorted(ns["decode"](topic, body)) == want, name


@pytest.mark.parametrize("with_status", [False, True])
def test_a_stored_batch_gives_the_same_json_as_its_samples(with_status: bool) -> None:
    """The stored body converts straight to DRUST items when nothing in it is sent on change only; the
    messages are the same bytes as those built from the samples one by one (and, with a status PID in the
    batch, the change filter still drops its repeats)."""
    samples = [s for s in drive(60) if s.name in ("speed", "engine_rpm")]
    if with_status:
        samples += [Sample(T0 + i * 100, "mil", False, "", 0x01, 0x7E8) for i in range(5)]
    raw = pack_samples(samples)
    up = MqttUplink(MqttConfig(enabled=True, tls=False), device_id="box")
    from_raw = up.messages(Record("ts-1", "timeseries", T0, len(samples), raw=raw))
    kept, _ = up._filter.filter(samples)
    from_items = up.messages(Record("ts-1", "timeseries", T0, len(samples), timeseries_items(pack_samples(kept))))
    assert from_raw == from_items
    sent = [v for _t, p in from_raw for it in json.loads(p)["items"] for k, v in it.items() if k == "mil"]
    assert sent == ([False] if with_status else [])
    assert sum(len(json.loads(p)["items"]) for _t, p in from_raw) == 60 + (1 if with_status else 0)
