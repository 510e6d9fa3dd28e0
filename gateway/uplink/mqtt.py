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
import collections
import contextlib
import json
import logging
import math
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import __version__
from gateway.common import jsonout
from gateway.common.samplebatch import columns, pack_samples, unpack_samples
from gateway.config import MqttConfig
from gateway.errors import ConfigError, UplinkError
from gateway.model import now_ms
from gateway.secrets import read_secret, tls_verify
from gateway.uplink import payload
from gateway.uplink.base import Record, RetryLater, Uplink
from gateway.uplink.drust import timeseries_items, timeseries_items_of

log = logging.getLogger("gateway.uplink.mqtt")

#: DIMO status field ← catalogue name, and the factor applied. Every field is in every state payload
#: (``null`` while unknown), so a subscriber's template never meets a missing key.
DIMO_FIELDS: tuple[tuple[str, str, float], ...] = (
    ("fuelPercentRemaining", "fuel_level", 0.01),
    ("odometer", "odometer", 1.0),
    ("batteryVoltage", "battery_voltage", 1.0),
    ("ambientTemp", "ambient_air_temperature", 1.0),
    ("speed", "speed", 1.0),
    ("engineRpm", "engine_rpm", 1.0),
    ("coolantTemp", "coolant_temperature", 1.0),
    ("fuelUsed", "fuel_used_l", 1.0),
)
#: state fields that are true/false (or null): the MIL lamp, the ignition, whether the car moves
BOOL_FIELDS: tuple[tuple[str, str], ...] = (("mil", "mil"), ("ignition", "ignition"), ("moving", "moving"))
#: every key of the state payload, in order
STATE_KEYS: tuple[str, ...] = (
    *(f for f, _n, _k in DIMO_FIELDS),
    *(f for f, _n in BOOL_FIELDS),
    "latitude",
    "longitude",
    "gpsAccuracy",
    "vin",
    "recordUpdatedAt",
)


@dataclass(frozen=True, slots=True)
class HaSensor:
    """One Home Assistant entity announced by discovery (https://www.home-assistant.io/integrations/sensor.mqtt/
    and /integrations/binary_sensor.mqtt/; device and state classes from /integrations/sensor/#device-class)."""

    key: str
    name: str
    component: str = "sensor"
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    scale: float = 1.0
    icon: str | None = None


#: Home Assistant entities: ``total_increasing`` for the odometer and the fuel used (HA: "a monotonically
#: increasing value; a decrease is the start of a new cycle"), ``measurement`` for the rest.
HA_SENSORS: tuple[HaSensor, ...] = (
    HaSensor(
        "fuelPercentRemaining", "Fuel level", unit="%", state_class="measurement", scale=100.0, icon="mdi:gas-station"
    ),
    HaSensor("odometer", "Odometer", unit="km", device_class="distance", state_class="total_increasing"),
    HaSensor("batteryVoltage", "Battery voltage", unit="V", device_class="voltage", state_class="measurement"),
    HaSensor("ambientTemp", "Ambient temperature", unit="°C", device_class="temperature", state_class="measurement"),
    HaSensor("speed", "Speed", unit="km/h", device_class="speed", state_class="measurement"),
    HaSensor("engineRpm", "Engine speed", unit="rpm", state_class="measurement", icon="mdi:engine"),
    HaSensor("coolantTemp", "Coolant temperature", unit="°C", device_class="temperature", state_class="measurement"),
    HaSensor("fuelUsed", "Fuel used this trip", unit="L", device_class="volume", state_class="total_increasing"),
    HaSensor("mil", "Check engine lamp", component="binary_sensor", device_class="problem"),
    HaSensor("ignition", "Ignition", component="binary_sensor", device_class="power"),
    HaSensor("moving", "Moving", component="binary_sensor", device_class="moving"),
)

#: MQTT 3.1.1 CONNACK return codes / MQTT 5 reason codes that retrying cannot fix (OASIS MQTT 3.1.1 §3.2.2.3,
#: MQTT 5.0 §3.2.2.2): bad user name or password, not authorised, banned, bad authentication method.
_AUTH_CODES = frozenset({4, 5, 0x86, 0x87, 0x8A, 0x8C})
#: unacceptable protocol level (3.1.1: 1; 5: 0x84 "Unsupported Protocol Version")
_VERSION_CODES = frozenset({1, 0x84})
#: how long an unfixable refusal waits before the next try (slow: a fleet's credentials get fixed by a human)
REFUSED_RETRY_S = 600.0
#: requests handled at most per window; the rest are answered with ``rate_limited``
COMMAND_WINDOW_S = 60.0
#: the largest command request accepted (bytes); larger ones get a ``too_long`` error
MAX_COMMAND_BYTES = 4096
#: commands answered over MQTT; ``clear_dtc`` and ``restart`` only with ``mqtt.remote_allow_unsafe``
REMOTE_COMMANDS = ("ping", "status", "values", "pids", "dtc", "trips", "query")
UNSAFE_COMMANDS = ("clear_dtc", "restart")

CommandRunner = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def iso_utc(ms: int) -> str:
    """Milliseconds since the epoch → ``2024-01-25T13:22:45Z`` (DIMO's ``recordUpdatedAt``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dimo_state(values: Mapping[str, Any], updated_ms: int | None) -> dict[str, Any]:
    """Latest values by catalogue name → a DIMO-like vehicle status; every key of :data:`STATE_KEYS`,
    ``None`` when unknown."""
    out: dict[str, Any] = dict.fromkeys(STATE_KEYS)
    for field, name, factor in DIMO_FIELDS:
        v = values.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[field] = round(v * factor, 6) if factor != 1.0 else v
    for field, name in BOOL_FIELDS:
        v = values.get(name)
        if v is not None:
            out[field] = bool(v)
    loc = values.get("location")
    if isinstance(loc, Mapping) and "lat" in loc and "lon" in loc:
        out["latitude"], out["longitude"] = loc["lat"], loc["lon"]
        if isinstance(loc.get("accuracy_m"), (int, float)):
            out["gpsAccuracy"] = loc["accuracy_m"]
    vin = values.get("vin")
    if isinstance(vin, str) and vin:
        out["vin"] = vin
    if updated_ms is not None:
        out["recordUpdatedAt"] = iso_utc(updated_ms)
    return out


def _rc_value(exc: BaseException) -> int | None:
    rc = getattr(exc, "rc", None)
    if rc is None:
        return None
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


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


#: one planned message group: the records it carries, its (topic, payload) messages, the filter state after it
#: and the count of values the filter dropped
_Planned = tuple[list[Record], list[tuple[str, bytes]], dict[tuple[str, int], tuple[Any, int]], int]


class MqttUplink(Uplink):
    """Publishes records to an MQTT broker with QoS 1; answers remote commands when enabled."""

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
        commands: CommandRunner | None = None,
        device_info: Callable[[], Mapping[str, Any]] | None = None,
        discovery_state_path: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.state = state
        self.state_interval_s = state_interval_s
        self.publish_timeout_s = publish_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.commands = commands
        self.device_info = device_info
        self.discovery_state_path = discovery_state_path
        self.base = f"{cfg.topic_prefix}/{device_id}"
        self.linger_s = cfg.linger_s  # read by the forwarder
        # a backlog drains at the speed of PUBACK round trips: keep many messages in flight per lease
        self.lease_samples = max(cfg.batch_samples * 200, 20_000)
        self._client: aiomqtt.Client | None = None
        self._latest: dict[str, Any] = {}
        self._latest_ms: int | None = None
        self._last_state = 0.0
        self._last_state_body: dict[str, Any] | None = None
        self._last_state_sent = 0.0
        self._ctx = tls_context(cfg)
        self._password = read_secret(cfg.password_file, key="mqtt.password_file") if cfg.password_file else None
        self._compress = payload.Compressor(cfg.compression)
        self.encoding = payload.encoding_name(cfg.payload_format, cfg.compression)
        self._filter = payload.ChangeFilter(cfg.on_change, cfg.deadband, cfg.refresh_s)
        self._session: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        # protocol = "auto": what the broker accepted, remembered for later connections
        self.protocol: str | None = None if cfg.protocol == "auto" else cfg.protocol
        self.refused: str | None = None  # an unfixable refusal, reported once, in status
        self.refused_count = 0
        self._cmd_times: collections.deque[float] = collections.deque()
        self._cmd_tasks: set[asyncio.Task[None]] = set()
        self.commands_answered = 0
        self.commands_refused = 0
        self.bytes_published = 0

    @property
    def connected(self) -> bool:
        """True while the session with the broker is up (its task ends when the connection drops)."""
        return self._client is not None and self._session is not None and not self._session.done()

    def status(self) -> dict[str, Any]:
        """For ``status``: negotiated protocol, encoding, a refusal that retrying cannot fix, counters."""
        return {
            "connected": self.connected,
            "protocol": self.protocol,
            "encoding": self.encoding,
            "refused": self.refused,
            "suppressed_unchanged": self._filter.suppressed,
            "bytes_published": self.bytes_published,
            "commands_answered": self.commands_answered,
            "commands_refused": self.commands_refused,
        }

    def _client_for(self, protocol: str) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            username=self.cfg.username or None,
            password=self._password,
            identifier=f"obd-gateway-{self.device_id}-{uuid.uuid4().hex[:8]}",
            protocol=aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(f"{self.base}/availability", b"offline", qos=1, retain=True),
            tls_context=self._ctx,
            timeout=self.connect_timeout_s,
            keepalive=30,
            max_inflight_messages=1000,
        )
        # many publishes in flight at once is how a backlog drains fast, not a concern to log
        client.pending_calls_threshold = 1_000_000
        return client

    async def connect(self) -> None:
        """Connect (``auto``: MQTT 5, else 3.1.1 when the broker refuses the version), publish the retained
        ``online``, Home Assistant discovery, and subscribe to commands.

        The connection lives in a session task that holds ``async with client:`` (aiomqtt's documented
        lifecycle: a client is an async context manager, reconnection is the caller's loop, here the
        forwarder's). The task ends when the broker connection drops or :meth:`close` asks it to.
        A refusal that retrying cannot fix raises :class:`~gateway.errors.RetryLater` with a long delay.
        """
        await self.close()
        tries = [self.protocol] if self.protocol else ["5", "3.1.1"]
        last: aiomqtt.MqttError | None = None
        for proto in tries:
            assert proto is not None
            client = self._client_for(proto)
            try:
                await self._open(client)
            except aiomqtt.MqttError as exc:
                last = exc
                rc = _rc_value(exc)
                if rc in _VERSION_CODES and self.cfg.protocol == "auto" and proto == "5":
                    log.info("mqtt: %s:%d refuses MQTT 5 (%s); trying 3.1.1", self.cfg.host, self.cfg.port, exc)
                    continue
                self._refusal(exc, rc)
                raise UplinkError(f"mqtt: cannot connect to {self.cfg.host}:{self.cfg.port}: {exc}") from exc
            if self.protocol is None:
                log.info("mqtt: %s:%d speaks MQTT %s; keeping it", self.cfg.host, self.cfg.port, proto)
            self.protocol = proto
            self.refused = None
            break
        else:
            raise UplinkError(f"mqtt: cannot connect to {self.cfg.host}:{self.cfg.port}: {last}")
        try:
            await client.publish(f"{self.base}/availability", b"online", qos=1, retain=True)
            if self.cfg.home_assistant_discovery:
                await self._discovery(client)
            if self.commands is not None and self.cfg.remote_commands:
                await client.subscribe(f"{self.base}/cmd/+", qos=1)
        except aiomqtt.MqttError as exc:
            await self.close()
            raise UplinkError(f"mqtt: publish after connect failed: {exc}") from exc

    def _refusal(self, exc: aiomqtt.MqttError, rc: int | None) -> None:
        """A refusal retrying cannot fix (pinned version, credentials, authorisation): log once, retry slowly."""
        if rc in _AUTH_CODES or (rc in _VERSION_CODES and self.cfg.protocol != "auto"):
            what = "refuses the protocol version set by mqtt.protocol" if rc in _VERSION_CODES else f"refuses us: {exc}"
            text = f"broker {self.cfg.host}:{self.cfg.port} {what} (rc {rc}); retrying every {REFUSED_RETRY_S:.0f} s"
            self.refused_count += 1
            if self.refused != text:
                log.error("mqtt: %s", text)
            self.refused = text
            raise RetryLater(f"mqtt: {text}", retry_after_s=REFUSED_RETRY_S) from exc

    async def _open(self, client: aiomqtt.Client) -> None:
        up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._client = client
        self._session = asyncio.create_task(self._run_session(client, up), name="mqtt-session")
        try:
            await asyncio.shield(up)
        except aiomqtt.MqttError:
            await self.close()
            raise

    async def _run_session(self, client: aiomqtt.Client, up: asyncio.Future[None]) -> None:
        """Hold the connection until :meth:`close` (graceful, "offline" first) or until it drops."""
        try:
            async with client:
                up.set_result(None)
                stop = asyncio.ensure_future(self._stop.wait())
                # the message iterator raises MqttError when the connection drops: aiomqtt's public signal
                # of a lost session; it also brings the command requests
                lost = asyncio.ensure_future(self._receive(client))
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
            for task in list(self._cmd_tasks):
                task.cancel()
            if not up.done():  # ended some other way before the CONNACK: connect() must not wait forever
                up.set_exception(aiomqtt.MqttError("the session ended before it was connected"))

    async def _receive(self, client: aiomqtt.Client) -> None:
        prefix = f"{self.base}/cmd/"
        async for message in client.messages:
            topic = str(message.topic)
            if not topic.startswith(prefix) or topic.endswith("/result"):
                continue
            if len(self._cmd_tasks) >= 8:  # bounded: a flood waits at the broker, not in our memory
                self.commands_refused += 1
                continue
            task = asyncio.create_task(self._command(client, topic[len(prefix) :], message))
            self._cmd_tasks.add(task)
            task.add_done_callback(self._cmd_tasks.discard)

    # -- remote commands ------------------------------------------------------------------------------
    async def _command(self, client: aiomqtt.Client, name: str, message: aiomqtt.Message) -> None:
        """Answer one request on ``P/D/cmd/<name>`` (docs/uplinks.md, "Remote commands")."""
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        raw = message.payload if isinstance(message.payload, (bytes, bytearray)) else str(message.payload).encode()
        req_id: Any = None
        answer: dict[str, Any]
        try:
            self._rate_check()  # first: a flood of bad requests costs as much as one of good ones
            req = self._parse_request(name, bytes(raw))
            req_id = req.get("id")
            assert self.commands is not None
            answer = await self.commands({**req, "cmd": name})
        except RequestRefused as exc:
            self.commands_refused += 1
            answer = {"id": req_id, "ok": False, "cmd": name, "error": {"code": exc.code, "message": str(exc)}}
        if answer.get("ok"):
            self.commands_answered += 1
        else:
            self.commands_refused += 1
        answer.setdefault("id", req_id)
        body = jsonout.dumpb(answer)
        if len(body) > 256 * 1024:  # bounded answers: a huge `values` is summarised, not sent
            body = jsonout.dumpb(
                {"id": req_id, "ok": False, "cmd": name,
                 "error": {"code": "too_large", "message": "answer over 256 KiB"}}
            )
        out_props = None
        if response_topic and self.protocol == "5":
            topic = str(response_topic)
            if not topic.startswith(f"{self.base}/"):  # ACLs allow answers below our own prefix only
                topic = f"{self.base}/cmd/{name}/result"
            out_props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if correlation is not None:
                out_props.CorrelationData = correlation
            out_props.ContentType = "application/json"
        else:
            topic = f"{self.base}/cmd/{name}/result"
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topic, body, qos=1, properties=out_props, timeout=self.publish_timeout_s)

    def _parse_request(self, name: str, raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_COMMAND_BYTES:
            raise RequestRefused("too_long", f"request longer than {MAX_COMMAND_BYTES} bytes")
        if name in UNSAFE_COMMANDS and not self.cfg.remote_allow_unsafe:
            raise RequestRefused("forbidden", f"{name} is not accepted over MQTT (mqtt.remote_allow_unsafe = false)")
        if name not in REMOTE_COMMANDS and name not in UNSAFE_COMMANDS:
            known = ", ".join(REMOTE_COMMANDS)
            raise RequestRefused("unknown_cmd", f"unknown command {name!r} (known over MQTT: {known})")
        if not raw.strip():
            return {}
        try:
            req = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise RequestRefused("bad_json", f"not valid JSON: {exc}") from None
        if not isinstance(req, dict):
            raise RequestRefused("bad_request", 'a request must be a JSON object such as {"pid": "0C"} (or empty)')
        return req

    def _rate_check(self) -> None:
        now = time.monotonic()
        times = self._cmd_times
        while times and now - times[0] > COMMAND_WINDOW_S:
            times.popleft()
        if len(times) >= self.cfg.commands_per_minute:
            raise RequestRefused(
                "rate_limited", f"more than {self.cfg.commands_per_minute} requests a minute; try again later"
            )
        times.append(now)

    # -- Home Assistant -------------------------------------------------------------------------------
    def _device_block(self) -> dict[str, Any]:
        info = dict(self.device_info()) if self.device_info is not None else {}
        dev: dict[str, Any] = {
            "identifiers": [f"obd_gateway_{self.device_id}"],
            "name": f"OBD gateway {self.device_id}",
            "manufacturer": "obd-gateway",
            "model": str(info.get("model") or "OBD-II telematics gateway"),
            "sw_version": str(info.get("sw_version") or __version__),
        }
        if info.get("vin"):
            dev["serial_number"] = str(info["vin"])
        return dev

    def discovery_configs(self, present: set[str] | None = None) -> dict[str, dict[str, Any]]:
        """Home Assistant discovery: config topic → payload (``present``: the state keys the car has;
        None = all). Rules from https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery."""
        dev = self._device_block()
        prefix = self.cfg.discovery_prefix
        node = _ha_id(self.device_id)
        avail = f"{self.base}/availability"
        state = f"{self.base}/state"
        out: dict[str, dict[str, Any]] = {}
        for s in HA_SENSORS:
            if present is not None and s.key not in present:
                continue
            scaled = f"(value_json.{s.key} * {s.scale:g}) | round(1)" if s.scale != 1.0 else f"value_json.{s.key}"
            conf: dict[str, Any] = {
                "name": s.name,
                "unique_id": f"{node}_{_ha_id(s.key)}",
                "object_id": f"{node}_{_ha_id(s.key)}",
                "state_topic": state,
                "availability_topic": avail,
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": dev,
            }
            if s.component == "binary_sensor":
                # HA: a binary sensor's state must equal payload_on/payload_off; anything else (our null)
                # is "unknown" when the template renders "None"
                conf["value_template"] = (
                    f"{{{{ 'None' if value_json.{s.key} is none else ('ON' if value_json.{s.key} else 'OFF') }}}}"
                )
                conf["payload_on"] = "ON"
                conf["payload_off"] = "OFF"
            else:
                # HA: a sensor template that renders "None" sets the state to unknown
                conf["value_template"] = f"{{{{ None if value_json.{s.key} is none else {scaled} }}}}"
                if s.unit:
                    conf["unit_of_measurement"] = s.unit
                if s.state_class:
                    conf["state_class"] = s.state_class
            if s.device_class:
                conf["device_class"] = s.device_class
            if s.icon:
                conf["icon"] = s.icon
            out[f"{prefix}/{s.component}/{node}/{_ha_id(s.key)}/config"] = conf
        # The car on the map: an MQTT device_tracker reading latitude/longitude from the state topic through
        # json_attributes (https://www.home-assistant.io/integrations/device_tracker.mqtt/).
        if present is None or "latitude" in present:
            out[f"{prefix}/device_tracker/{node}/location/config"] = {
                "name": "Location",
                "unique_id": f"{node}_location",
                "object_id": f"{node}_location",
                "json_attributes_topic": state,
                # tolerant of a state without the keys as well as with them null (no fix): no position then
                "json_attributes_template": "{{ {'latitude': value_json.latitude, 'longitude': value_json.longitude,"
                " 'gps_accuracy': value_json.gpsAccuracy or 0} | tojson"
                " if value_json.latitude is defined and value_json.latitude is not none else '{}' }}",
                "source_type": "gps",
                "availability_topic": avail,
                "device": dev,
            }
        return out

    def _present_keys(self) -> set[str] | None:
        """State keys the car reports (None until something is known: announce everything)."""
        if self.state is None:
            return None
        values = dict(self.state())
        known = {k for k, v in dimo_state(values, None).items() if v is not None}
        if not known - {"ignition", "moving"}:
            return None
        # a binary sensor or the tracker is useful even before its first value
        return known | {"mil", "ignition", "moving"} | ({"latitude"} if "location_source" in values else set())

    async def _discovery(self, client: aiomqtt.Client) -> None:
        configs = self.discovery_configs(self._present_keys())
        for topic, conf in configs.items():
            await client.publish(topic, jsonout.dumpb(conf), qos=1, retain=True)
        # stale entities: HA deletes an entity whose retained config becomes empty
        stale = self._announced() - set(configs)
        for topic in sorted(stale):
            await client.publish(topic, b"", qos=1, retain=True)
        if stale:
            log.info("mqtt: removed %d Home Assistant entities no longer reported", len(stale))
        self._remember(set(configs))

    def _announced(self) -> set[str]:
        path = self.discovery_state_path
        if path is None:
            return set()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return set()
        return {t for t in data if isinstance(t, str)} if isinstance(data, list) else set()

    def _remember(self, topics: set[str]) -> None:
        path = self.discovery_state_path
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(sorted(topics)))
            tmp.replace(path)
        except OSError as exc:
            log.warning("mqtt: cannot remember the Home Assistant entities in %s: %s", path, exc)

    # -- data -----------------------------------------------------------------------------------------
    def messages(self, rec: Record) -> list[tuple[str, bytes]]:
        """The (topic, payload) pairs that deliver ``rec`` (the change filter's current state, not kept)."""
        return self._plan(rec, self._filter.last)[0]

    def _plan(
        self, rec: Record, last: dict[tuple[str, int], tuple[Any, int]]
    ) -> tuple[list[tuple[str, bytes]], dict[tuple[str, int], tuple[Any, int]], int]:
        dev = {"id": self.device_id}
        fmt = self.cfg.payload_format
        if rec.kind == "timeseries":
            cols = columns(rec.raw) if rec.raw is not None and fmt != "columnar" else None
            if cols is not None and self._filter.passes_all(cols.names, cols.pids):
                # nothing in the batch is sent on change only (the usual case: driving values): the stored
                # body converts straight to DRUST items, without a Sample per value and a second encoding
                items: list[dict[str, Any]] = timeseries_items_of(cols)
                new_last, dropped = last, 0
            elif rec.raw is not None:
                samples = unpack_samples(rec.raw)
                kept, new_last = self._filter.filter(samples, last)
                dropped = len(samples) - len(kept)
                if fmt == "columnar":
                    obj = payload.columnar_batch(kept, batch_ids=[rec.id], device_id=self.device_id)
                    return [(self._ts_topic(), self._compress(payload.encode_object(obj, fmt)))], new_last, dropped
                items = timeseries_items(pack_samples(kept)) if kept else []
            else:
                items, new_last, dropped = rec.body, last, 0
            n = self.cfg.batch_samples
            chunks = [items[i : i + n] for i in range(0, len(items), n)] or [[]]
            return [
                (
                    self._ts_topic(),
                    self._compress(
                        payload.encode_object(
                            {"id": rec.id, "part": i, "parts": len(chunks), "device": dev, "items": chunk},
                            "msgpack" if fmt == "columnar" else fmt,
                        )
                    ),
                )
                for i, chunk in enumerate(chunks)
            ], new_last, dropped
        body = dict(rec.body)
        body.setdefault("device", dev)
        enc = "json" if fmt == "json" else "msgpack"
        if rec.kind == "event":
            etype = str(body.get("type") or "UNKNOWN").replace("/", "_").replace("+", "_").replace("#", "_")
            return [(f"{self.base}/events/{etype}", payload.encode_object(body, enc))], last, 0
        return [(f"{self.base}/trips", payload.encode_object(body, enc))], last, 0

    def _plan_columnar(
        self, recs: list[Record], last: dict[tuple[str, int], tuple[Any, int]]
    ) -> tuple[list[tuple[str, bytes]], dict[tuple[str, int], tuple[Any, int]], int]:
        samples = [s for r in recs if r.raw is not None for s in unpack_samples(r.raw)]
        kept, new_last = self._filter.filter(samples, last)
        obj = payload.columnar_batch(kept, batch_ids=[r.id for r in recs], device_id=self.device_id)
        body = self._compress(payload.encode_object(obj, "columnar"))
        return [(self._ts_topic(), body)], new_last, len(samples) - len(kept)

    def _ts_topic(self) -> str:
        if self.encoding in ("json", "msgpack"):
            return f"{self.base}/timeseries"  # unchanged for existing subscribers
        return f"{self.base}/timeseries/{self.encoding}"

    async def send(self, batch: Sequence[Record]) -> list[str]:
        """Publish every record's messages with QoS 1; return the ids whose messages were all acked."""
        client = self._client
        if client is None or not self.connected:
            raise UplinkError("mqtt: not connected")
        plan = self._plan_batch(batch)
        pub = client.publish
        tmo = self.publish_timeout_s
        props = None
        if self.protocol == "5":
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = payload.content_type(self.cfg.payload_format, self.cfg.compression)
        jobs = [
            asyncio.ensure_future(pub(t, p, qos=1, timeout=tmo, properties=props if "/timeseries" in t else None))
            for _recs, msgs, _l, _d in plan
            for t, p in msgs
        ]
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
        acked = self._acked(plan, jobs)
        if len(acked) < len(batch):
            await self.close()
            if not acked:
                raise UplinkError("mqtt: publish failed (connection lost or no PUBACK in time)")
        await self._maybe_state()
        return acked

    def _plan_batch(self, batch: Sequence[Record]) -> list[_Planned]:
        """The messages of a batch, in order, each with the records it carries and the filter state after it.

        Columnar: every timeseries record of the batch travels as one message (one PUBACK acks them all),
        events and trips in between as their own; the store acknowledges by id and moves its cursor over
        the leading acknowledged rows, so a lost message only means re-sending (receivers de-duplicate)."""
        plan: list[_Planned] = []
        last = self._filter.last
        group = [
            r for r in batch
            if self.cfg.payload_format == "columnar" and r.kind == "timeseries" and r.raw is not None
        ]
        in_group = {id(r) for r in group}
        for rec in batch:
            if id(rec) in in_group:
                if rec is group[0]:
                    msgs, last, dropped = self._plan_columnar(group, last)
                    plan.append((group, msgs, last, dropped))
                continue
            msgs, last, dropped = self._plan(rec, last)
            plan.append(([rec], msgs, last, dropped))
        return plan

    def _acked(self, plan: list[_Planned], jobs: Sequence[asyncio.Future[Any]]) -> list[str]:
        """Ids of the leading planned messages whose PUBACKs all came; the filter moves on with them."""
        acked: list[str] = []
        it = iter(jobs)
        for recs, msgs, state_after, dropped in plan:
            done = [next(it) for _ in msgs]
            if not all(j.done() and not j.cancelled() and j.exception() is None for j in done):
                break
            acked.extend(r.id for r in recs)
            # what the subscriber now has: the next batch is filtered against it
            self._filter.commit(state_after, dropped)
            self.bytes_published += sum(len(p) for _t, p in msgs)
            for rec in recs:
                if rec.kind == "timeseries" and self.state is None:
                    self._note_values(rec.body[-64:])
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
        body = dimo_state(merged, updated_ms)
        # always JSON: Home Assistant and dashboards read it; sent only when a value changed (a data plan
        # pays for every byte), and at least every refresh_s so a late subscriber's view is recent
        key = {k: v for k, v in body.items() if k != "recordUpdatedAt"}
        if key == self._last_state_body and now - self._last_state_sent < self.cfg.refresh_s:
            return
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.publish(f"{self.base}/state", jsonout.dumpb(body), qos=1, retain=True)
            self._last_state_body = key
            self._last_state_sent = now

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


class RequestRefused(UplinkError):
    """A remote command refused before it reached the handlers; ``code`` goes into the error object."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _ha_id(text: str) -> str:
    """An id for HA discovery topics/object ids: ``[a-zA-Z0-9_-]`` only (HA's discovery topic rule)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text)
