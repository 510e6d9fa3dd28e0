"""Remote commands over MQTT with per-box credentials and the documented ACL on a real mosquitto; protocol
"auto" against a second broker implementation (nats-server's MQTT listener, 3.1.1 only); refusals."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import MqttConfig
from gateway.diag import DiagServer
from gateway.errors import UplinkError
from gateway.uplink.base import Record, RetryLater
from gateway.uplink.mqtt import MqttUplink
from tests.fixtures.broker import Broker, NatsMqtt
from tests.ops.diagkit import TestSource
from tests.store.helpers import MqttCollector

ACL = Path(__file__).resolve().parents[2] / "docs" / "mosquitto" / "acl"
USERS = {"box1": "pw-box1", "box2": "pw-box2", "backend": "pw-backend"}


@pytest.fixture
def acl_broker(tmp_path: Path) -> Any:
    """mosquitto with per-box passwords and docs/mosquitto/acl."""
    d = tmp_path / "acl-broker"
    d.mkdir()
    pw = d / "passwd"
    pw.touch()
    for user, secret in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(pw), user, secret], check=True, capture_output=True)
    broker = Broker(d, password_file=str(pw), acl_file=str(ACL))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def secret_file(tmp_path: Path, user: str) -> str:
    p = tmp_path / f"{user}.pw"
    p.write_text(USERS[user])
    p.chmod(0o600)
    return str(p)


def box(broker: Any, tmp_path: Path, user: str, diag: DiagServer, **kw: Any) -> MqttUplink:
    cfg = MqttConfig(enabled=True, host=broker.host, port=broker.port, tls=False, username=user,
                     password_file=secret_file(tmp_path, user), remote_commands=True, **kw)

    async def run(req: dict[str, Any]) -> dict[str, Any]:
        return await diag.answer(req, remote_unsafe_ok=cfg.remote_allow_unsafe)

    return MqttUplink(cfg, device_id=user, commands=run, state_interval_s=3600)


class Backend:
    """A fleet back-end: paho, MQTT 5, asks with response topic + correlation data, collects answers."""

    def __init__(self, broker: Any, user: str = "backend", protocol: int = paho.MQTTv5) -> None:
        self.answers: dict[bytes | str, dict[str, Any]] = {}
        self.seen: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.protocol = protocol
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"be-{uuid.uuid4().hex[:6]}",
                             protocol=protocol)
        self.c.username_pw_set(user, USERS[user])
        self.c.on_message = self._on_message
        ready = threading.Event()
        self.c.on_connect = lambda *a: ready.set()
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert ready.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.seen.append((msg.topic, msg.payload))
        if not msg.topic.endswith(("/reply", "/result")):
            return  # our own requests, data
        body = json.loads(msg.payload)
        corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        with self.lock:
            self.answers[corr if corr is not None else msg.topic] = body

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(10)

    def ask(self, device: str, cmd: str, body: bytes, corr: bytes | None = None) -> None:
        props = None
        if self.protocol == paho.MQTTv5 and corr is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = f"obd/{device}/cmd/{cmd}/reply"
            props.CorrelationData = corr
        self.c.publish(f"obd/{device}/cmd/{cmd}", body, qos=1, properties=props).wait_for_publish(10)

    def wait(self, key: bytes | str, timeout: float = 10.0) -> dict[str, Any]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if key in self.answers:
                    return self.answers[key]
            time.sleep(0.02)
        raise AssertionError(f"no answer for {key!r}")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def test_remote_commands_with_acl(acl_broker: Broker, tmp_path: Path) -> None:
    src = TestSource()
    diag = DiagServer(src, socket_path=tmp_path / "unused.sock", allow_clear_dtc=True)
    up = box(acl_broker, tmp_path, "box1", diag, commands_per_minute=5)
    await up.connect()
    assert up.protocol == "5"
    be = await asyncio.to_thread(Backend, acl_broker)
    try:
        await asyncio.to_thread(be.subscribe, "obd/box1/#")
        # allowed: status and query, answered on the response topic with the correlation data
        await asyncio.to_thread(be.ask, "box1", "status", b"", b"c-1")
        ans = await asyncio.to_thread(be.wait, b"c-1")
        assert ans["ok"] is True and ans["cmd"] == "status" and ans["data"]["vin"] == "1HGCM82633A004352"
        assert ans["data"]["mqtt"]["password"] != "do-not-show"  # redacted like the socket's answer
        await asyncio.to_thread(be.ask, "box1", "query", b'{"pid": "0c", "id": 7}', b"c-2")
        ans = await asyncio.to_thread(be.wait, b"c-2")
        assert ans == {"id": 7, "ok": True, "cmd": "query",
                       "data": [{"name": "engine_rpm", "value": 800.0, "unit": "rpm", "pid": "0C", "ecu": "7E8"}]}
        assert src.queries == ["0C"]
        # refused: clear_dtc and restart never without mqtt.remote_allow_unsafe (even with the diag switch)
        await asyncio.to_thread(be.ask, "box1", "clear_dtc", b'{"confirm": true}', b"c-3")
        ans = await asyncio.to_thread(be.wait, b"c-3")
        assert ans["ok"] is False and ans["error"]["code"] == "forbidden" and src.cleared == 0
        # malformed: an error object, the box keeps serving
        await asyncio.to_thread(be.ask, "box1", "query", b"{not json", b"c-4")
        ans = await asyncio.to_thread(be.wait, b"c-4")
        assert ans["ok"] is False and ans["error"]["code"] == "bad_json"
        # flood: at most commands_per_minute (5) are served; the rest are answered rate_limited
        for i in range(8):
            await asyncio.to_thread(be.ask, "box1", "ping", b"", f"f-{i}".encode())
        flood = [await asyncio.to_thread(be.wait, f"f-{i}".encode()) for i in range(8)]
        codes = [a["ok"] if a["ok"] else a["error"]["code"] for a in flood]
        assert codes.count(True) == 1 and codes.count("rate_limited") == 7  # 4 used above, 1 left
    finally:
        await asyncio.to_thread(be.close)
        await up.close()


async def test_second_box_cannot_read_or_command_the_first(acl_broker: Broker, tmp_path: Path) -> None:
    src = TestSource()
    diag = DiagServer(src, socket_path=tmp_path / "unused.sock")
    up1 = box(acl_broker, tmp_path, "box1", diag)
    await up1.connect()
    # box2's credentials: subscribe to box1's data and publish box1 commands (a 3.1.1 client: /result)
    spy = await asyncio.to_thread(Backend, acl_broker, "box2", paho.MQTTv311)
    be = await asyncio.to_thread(Backend, acl_broker, "backend", paho.MQTTv311)
    try:
        await asyncio.to_thread(spy.subscribe, "obd/box1/#")
        await asyncio.to_thread(be.subscribe, "obd/box1/cmd/+/result")
        await asyncio.to_thread(spy.ask, "box1", "query", b'{"pid": "0D"}')
        await up1.send([Record("ts-x", "timeseries", 1, 1, [{"date": 1, "speed": 5}])])
        # the back-end's own request is answered (3.1.1: on /result), proving box1 was listening
        await asyncio.to_thread(be.ask, "box1", "ping", b"")
        ans = await asyncio.to_thread(be.wait, "obd/box1/cmd/ping/result")
        assert ans["ok"] is True
        await asyncio.sleep(0.5)
        assert src.queries == []  # box2's command never reached box1
        assert spy.seen == []  # and box2 read nothing of box1's (data, availability, answers)
    finally:
        await asyncio.to_thread(spy.close)
        await asyncio.to_thread(be.close)
        await up1.close()


async def test_bad_credentials_reported_once_and_retried_slowly(
    acl_broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "wrong.pw"
    p.write_text("wrong")
    p.chmod(0o600)
    cfg = MqttConfig(enabled=True, host=acl_broker.host, port=acl_broker.port, tls=False, username="box1",
                     password_file=str(p))
    up = MqttUplink(cfg, device_id="box1")
    for _ in range(2):
        with pytest.raises(RetryLater) as info:
            await up.connect()
        assert info.value.retry_after_s is not None and info.value.retry_after_s >= 300
    assert up.status()["refused"] and "refuses us" in up.status()["refused"]
    assert sum("refuses us" in r.getMessage() for r in caplog.records if r.levelname == "ERROR") == 1


async def test_auto_falls_back_to_311_on_nats(nats_mqtt: NatsMqtt) -> None:
    col = MqttCollector(nats_mqtt.host, nats_mqtt.port, "obd/n1/#")
    try:
        cfg = MqttConfig(enabled=True, host=nats_mqtt.host, port=nats_mqtt.port, tls=False)
        assert cfg.protocol == "auto"
        up = MqttUplink(cfg, device_id="n1")
        await up.connect()
        assert up.protocol == "3.1.1" and up.refused is None
        acked = await up.send([Record("ts-1", "timeseries", 1, 1, [{"date": 1, "speed": 5}])])
        assert acked == ["ts-1"]
        await up.close()
        await up.connect()  # remembered: straight to 3.1.1
        assert up.protocol == "3.1.1"
        await up.close()
        assert await asyncio.to_thread(col.wait_for, lambda m: any(t == "obd/n1/timeseries" for t, _p, _r in m))
    finally:
        col.close()


async def test_pinned_5_on_a_311_broker_is_an_unfixable_refusal(nats_mqtt: NatsMqtt) -> None:
    cfg = MqttConfig(enabled=True, host=nats_mqtt.host, port=nats_mqtt.port, tls=False, protocol="5")
    up = MqttUplink(cfg, device_id="n2")
    with pytest.raises(RetryLater) as info:
        await up.connect()
    assert "mqtt.protocol" in str(info.value) and up.status()["refused"]
    assert isinstance(info.value, UplinkError)
