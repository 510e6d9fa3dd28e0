"""Helpers for the store and uplink tests: an MQTT collector (paho, persistent session)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho


class MqttCollector:
    """Subscribes to ``topic`` with QoS 1 and a persistent session; keeps every message.

    The session survives broker restarts (the broker persists it), so messages published while the
    collector is reconnecting are delivered afterwards.
    """

    def __init__(self, host: str, port: int, topic: str = "#", *, tls_ca: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.topic = topic
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("collector could not connect")

    def _on_connect(self, client: paho.Client, _ud: Any, _flags: Any, rc: Any, _props: Any = None) -> None:
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_message(self, _c: paho.Client, _ud: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        """Every message so far."""
        with self.lock:
            return list(self.messages)

    def json(self, suffix: str) -> list[dict[str, Any]]:
        """Payloads (JSON) of messages whose topic ends with ``suffix``."""
        return [json.loads(p) for t, p, _r in self.snapshot() if t.endswith(suffix)]

    def wait_for(self, pred: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float = 20.0) -> bool:
        """Wait until ``pred(messages)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.snapshot()):
                return True
            time.sleep(0.05)
        return pred(self.snapshot())

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def received_ids(messages: list[tuple[str, bytes, bool]]) -> set[str]:
    """De-duplicated record ids in MQTT messages (a timeseries record counts once all its parts came)."""
    parts: dict[str, set[int]] = {}
    totals: dict[str, int] = {}
    ids: set[str] = set()
    for topic, payload, _retain in messages:
        if topic.endswith(("/availability", "/state")) or topic.startswith("homeassistant/"):
            continue
        body = json.loads(payload)
        if topic.endswith("/timeseries"):
            parts.setdefault(body["id"], set()).add(body["part"])
            totals[body["id"]] = body["parts"]
        else:
            ids.add(body["id"])
    ids |= {i for i, p in parts.items() if len(p) == totals[i]}
    return ids
