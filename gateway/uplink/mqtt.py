"""The MQTT uplink (aiomqtt 2.x over paho-mqtt): MQTT 3.1.1 or 5, TLS verified by default, QoS 1.

Topics (``P`` = ``mqtt.topic_prefix``, ``D`` = ``device.id``; payloads JSON, or msgpack with
``mqtt.payload_format = "msgpack"``; see docs/uplinks.md)::

    P/D/availability      retained "online"; the last will publishes a retained "offline"
    P/D/timeseries        {"id", "part", "parts", "device": {"id"}, "items": [DRUST Timeseries items]}
    P/D/events/<TYPE>     DRUST Event + "automatic_type" + "device"
    P/D/trips             DRUST Trip (+ Automatic extras) + "device"
    P/D/state             retained DIMO-like status: fuelPercentRemaining, odometer, batteryVoltage,
                          ambientTemp, speed, latitude/longitude when known, recordUpdatedAt

A stored timeseries batch is published as ``parts`` messages of at most ``mqtt.batch_samples`` items;
receivers de-duplicate by ``(id, part)``, events and trips by ``id``. A record counts as delivered once
every one of its messages has been acknowledged by the broker (PUBACK).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import msgpack

from gateway.common import jsonout
from gateway.config import MqttConfig
from gateway.errors import ConfigError, UplinkError
from gateway.model import now_ms
from gateway.secrets import read_secret, tls_verify
from gateway.uplink.base import Record, Uplink

log = logging.getLogger("gateway.uplink.mqtt")

#: DIMO status field ← catalogue name, and the factor applied.
DIMO_FIELDS: tuple[tuple[str, str, float], ...] = (
    ("fuelPercentRemaining", "fuel_level", 0.01),
    ("odometer", "odometer", 1.0),
    ("batteryVoltage", "battery_voltage", 1.0),
    ("ambientTemp", "ambient_air_temperature", 1.0),
    ("speed", "speed", 1.0),
    ("latitude", "latitude", 1.0),
    ("longitude", "longitude", 1.0),
)

#: Home Assistant sensors announced by discovery: (DIMO field, name, unit, device_class).
HA_SENSORS: tuple[tuple[str, str, str, str | None], ...] = (
    ("fuelPercentRemaining", "Fuel level", "%", None),
    ("odometer", "Odometer", "km", "distance"),
    ("batteryVoltage", "Battery voltage", "V", "voltage"),
    ("ambientTemp", "Ambient temperature", "°C", "temperature"),
    ("speed", "Speed", "km/h", "speed"),
)


def iso_utc(ms: int) -> str:
    """Milliseconds since the epoch → ``2024-01-25T13:22:45Z`` (DIMO's ``recordUpdatedAt``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dimo_state(values: Mapping[str, Any], updated_ms: int | None) -> dict[str, Any]:
    """Latest values by catalogue name → a DIMO-like vehicle status (only fields that are known)."""
    out: dict[str, Any] = {}
    for field, name, factor in DIMO_FIELDS:
        v = values.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[field] = round(v * factor, 6) if factor != 1.0 else v
    loc = values.get("location")
    if isinstance(loc, Mapping) and "lat" in loc and "lon" in loc:
        out["latitude"], out["longitude"] = loc["lat"], loc["lon"]
        if isinstance(loc.get("accuracy_m"), (int, float)):
            out["gpsAccuracy"] = loc["accuracy_m"]
    if updated_ms is not None:
        out["recordUpdatedAt"] = iso_utc(updated_ms)
    return out


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for ``cfg`` (None when TLS is off); CA verification is on unless disabled."""
    if not cfg.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
        if cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt.ca_file/cert_file/key_file: cannot load: {exc}") from None
    if not tls_verify(cfg.tls_insecure_skip_verify, what="mqtt", logger=log):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class MqttUplink(Uplink):
    """Publishes records to an MQTT broker with QoS 1."""

    name = "mqtt"

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        device_id: str,
        state: Callable[[], Mapping[str, Any]] | None = None,
        state_interval_s: float = 5.0,
        publish_timeout_s: float = 15.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.state = state
        self.state_interval_s = state_interval_s
        self.publish_timeout_s = publish_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.base = f"{cfg.topic_prefix}/{device_id}"
        # a backlog drains at the speed of PUBACK round trips: keep many messages in flight per lease
        self.lease_samples = max(cfg.batch_samples * 200, 20_000)
        self._client: aiomqtt.Client | None = None
        self._latest: dict[str, Any] = {}
        self._latest_ms: int | None = None
        self._last_state = 0.0
        self._ctx = tls_context(cfg)
        self._password = read_secret(cfg.password_file, key="mqtt.password_file") if cfg.password_file else None
        self._encode: Callable[[Any], bytes] = (
            (lambda o: msgpack.packb(o, use_bin_type=True))
            if cfg.payload_format == "msgpack"
            else jsonout.dumpb  # strict JSON: a NaN or infinite value goes out as null
        )
        self._session: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def connected(self) -> bool:
        """True while the session with the broker is up (its task ends when the connection drops)."""
        return self._client is not None and self._session is not None and not self._session.done()

    async def connect(self) -> None:
        """Connect, publish the retained ``online`` (and Home Assistant discovery).

        The connection lives in a session task that holds ``async with client:`` (aiomqtt's documented
        lifecycle: a client is an async context manager, reconnection is the caller's loop, here the
        forwarder's). The task ends when the broker connection drops or :meth:`close` asks it to.
        """
        await self.close()
        avail = f"{self.base}/availability"
        client = aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            username=self.cfg.username or None,
            password=self._password,
            identifier=f"obd-gateway-{self.device_id}-{uuid.uuid4().hex[:8]}",
            protocol=aiomqtt.ProtocolVersion.V5 if self.cfg.protocol == "5" else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(avail, b"offline", qos=1, retain=True),
            tls_context=self._ctx,
            timeout=self.connect_timeout_s,
            keepalive=30,
            max_inflight_messages=1000,
        )
        # many publishes in flight at once is how a backlog drains fast, not a concern to log
        client.pending_calls_threshold = 1_000_000
        up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._client = client
        self._session = asyncio.create_task(self._run_session(client, up), name="mqtt-session")
        try:
            await asyncio.shield(up)
        except aiomqtt.MqttError as exc:
            await self.close()
            raise UplinkError(f"mqtt: cannot connect to {self.cfg.host}:{self.cfg.port}: {exc}") from exc
        try:
            await client.publish(avail, b"online", qos=1, retain=True)
            if self.cfg.home_assistant_discovery:
                await self._discovery(client)
        except aiomqtt.MqttError as exc:
            await self.close()
            raise UplinkError(f"mqtt: publish after connect failed: {exc}") from exc

    async def _run_session(self, client: aiomqtt.Client, up: asyncio.Future[None]) -> None:
        """Hold the connection until :meth:`close` (graceful, "offline" first) or until it drops."""
        try:
            async with client:
                up.set_result(None)
                stop = asyncio.ensure_future(self._stop.wait())
                # the message iterator raises MqttError when the connection drops: aiomqtt's public signal
                # of a lost session (we subscribe to nothing, so no message ever arrives)
                lost = asyncio.ensure_future(self._until_lost(client))
                try:
                    await asyncio.wait([stop, lost], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    lost.cancel()
                dropped = lost.exception() if lost.done() and not lost.cancelled() else None
                if dropped is not None:
                    raise dropped
                # a clean disconnect does not fire the will: say "offline" ourselves (short bound: a
                # half-dead connection must not delay the reconnect)
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(f"{self.base}/availability", b"offline", qos=1, retain=True, timeout=1)
        except aiomqtt.MqttError as exc:
            if not up.done():
                up.set_exception(exc)
            else:
                log.info("mqtt: connection to %s:%d lost: %s", self.cfg.host, self.cfg.port, exc)
        finally:
            if not up.done():  # ended some other way before the CONNACK: connect() must not wait forever
                up.set_exception(aiomqtt.MqttError("the session ended before it was connected"))

    @staticmethod
    async def _until_lost(client: aiomqtt.Client) -> None:
        async for _message in client.messages:
            pass

    async def _discovery(self, client: aiomqtt.Client) -> None:
        dev = {"identifiers": [self.device_id], "name": f"OBD gateway {self.device_id}", "manufacturer": "obd-gateway"}
        # The car on the Home Assistant map: an MQTT device_tracker reading latitude/longitude from the state
        # topic through json_attributes (https://www.home-assistant.io/integrations/device_tracker.mqtt/).
        tracker = {
            "name": "Location",
            "unique_id": f"{self.device_id}_location",
            "json_attributes_topic": f"{self.base}/state",
            "json_attributes_template": "{{ {'latitude': value_json.latitude, 'longitude': value_json.longitude,"
            " 'gps_accuracy': value_json.gpsAccuracy | default(0)} | tojson if value_json.latitude is defined"
            " else '{}' }}",
            "source_type": "gps",
            "availability_topic": f"{self.base}/availability",
            "device": dev,
        }
        await client.publish(
            f"homeassistant/device_tracker/{self.device_id}/location/config", jsonout.dumpb(tracker), qos=1, retain=True
        )
        for key, title, unit, dclass in HA_SENSORS:
            conf: dict[str, Any] = {
                "name": title,
                "unique_id": f"{self.device_id}_{key}",
                "state_topic": f"{self.base}/state",
                "value_template": f"{{{{ value_json.{key} }}}}"
                if key != "fuelPercentRemaining"
                else "{{ (value_json.fuelPercentRemaining * 100) | round(1) }}",
                "unit_of_measurement": unit,
                "availability_topic": f"{self.base}/availability",
                "device": dev,
            }
            if dclass:
                conf["device_class"] = dclass
            topic = f"homeassistant/sensor/{self.device_id}/{key}/config"
            await client.publish(topic, jsonout.dumpb(conf), qos=1, retain=True)

    def messages(self, rec: Record) -> list[tuple[str, bytes]]:
        """The (topic, payload) pairs that deliver ``rec``."""
        dev = {"id": self.device_id}
        if rec.kind == "timeseries":
            items: list[dict[str, Any]] = rec.body
            n = self.cfg.batch_samples
            chunks = [items[i : i + n] for i in range(0, len(items), n)] or [[]]
            return [
                (
                    f"{self.base}/timeseries",
                    self._encode({"id": rec.id, "part": i, "parts": len(chunks), "device": dev, "items": chunk}),
                )
                for i, chunk in enumerate(chunks)
            ]
        body = dict(rec.body)
        body.setdefault("device", dev)
        if rec.kind == "event":
            etype = str(body.get("type") or "UNKNOWN").replace("/", "_").replace("+", "_").replace("#", "_")
            return [(f"{self.base}/events/{etype}", self._encode(body))]
        return [(f"{self.base}/trips", self._encode(body))]

    async def send(self, batch: Sequence[Record]) -> list[str]:
        """Publish every record's messages with QoS 1; return the ids whose messages were all acked."""
        client = self._client
        if client is None or not self.connected:
            raise UplinkError("mqtt: not connected")
        plan = [(rec, self.messages(rec)) for rec in batch]
        pub = client.publish
        tmo = self.publish_timeout_s
        jobs = [asyncio.ensure_future(pub(t, p, qos=1, timeout=tmo)) for _rec, msgs in plan for t, p in msgs]
        all_jobs: asyncio.Future[Any] = asyncio.gather(*jobs, return_exceptions=True)
        gone = self._session
        assert gone is not None
        try:
            # stop waiting as soon as the session drops: unacknowledged messages are sent again later
            await asyncio.wait(
                [all_jobs, gone], timeout=self.publish_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not all_jobs.done():
                all_jobs.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await all_jobs
        acked: list[str] = []
        it = iter(jobs)
        for rec, msgs in plan:
            ok = True
            for _ in msgs:
                j = next(it)
                if not (j.done() and not j.cancelled() and j.exception() is None):
                    ok = False
            if not ok:
                break
            acked.append(rec.id)
            if rec.kind == "timeseries" and self.state is None:
                self._note_values(rec.body[-64:])
        if len(acked) < len(batch):
            await self.close()
            if not acked:
                raise UplinkError("mqtt: publish failed (connection lost or no PUBACK in time)")
        await self._maybe_state()
        return acked

    def _note_values(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            d = item.get("date")
            if isinstance(d, int) and (self._latest_ms is None or d >= self._latest_ms):
                self._latest_ms = d
                self._latest.update(item)

    async def _maybe_state(self) -> None:
        now = time.monotonic()
        if now - self._last_state < self.state_interval_s or self._client is None:
            return
        self._last_state = now
        if self.state is not None:
            values = dict(self.state())
            updated = values.get("recordUpdatedAt")
            updated_ms = updated if isinstance(updated, int) else now_ms()
            # live values first; values seen in delivered data fill the gaps
            merged = {**self._latest, **values}
        else:
            merged = self._latest
            updated_ms = self._latest_ms if self._latest_ms is not None else now_ms()
        if not merged:
            return
        payload = dimo_state(merged, updated_ms)
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.publish(f"{self.base}/state", self._encode(payload), qos=1, retain=True)

    async def close(self) -> None:
        """Disconnect gracefully ("offline", then DISCONNECT) within a few seconds (idempotent)."""
        session, self._session, self._client = self._session, None, None
        if session is None:
            return
        self._stop.set()
        try:
            async with asyncio.timeout(3):
                await asyncio.shield(session)
        except TimeoutError:
            # the broker does not answer: give up on the graceful goodbye (the broker sends the will)
            session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session
