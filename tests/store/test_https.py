"""The HTTPS uplink and the forwarder against the DRUST-style reference server (real TLS, test CA)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import HttpsConfig, StoreConfig
from gateway.errors import AuthError, ConfigError, UplinkError
from gateway.model import Event, Sample, TripRecord
from gateway.store import Store
from gateway.uplink.base import Record
from gateway.uplink.forwarder import Forwarder
from gateway.uplink.https import HttpsUplink, load_token, retry_after_s
from tests.drust_server import DrustServer

T0 = 1_700_000_000_000


@pytest.fixture
def drust(tmp_path: Path) -> Iterator[DrustServer]:
    srv = DrustServer(tmp_path / "drust").start()
    try:
        yield srv
    finally:
        srv.stop()


def https_cfg(srv: DrustServer, tmp_path: Path, **kw: object) -> HttpsConfig:
    (tmp_path / "secret").write_text("myclientsecret\n")
    (tmp_path / "password").write_text("myPassw0rd\n")
    for name in ("secret", "password"):
        (tmp_path / name).chmod(0o600)  # the uplink refuses secrets every user can read
    base: dict[str, object] = {
        "enabled": True, "base_url": srv.url, "client_id": "myclientid", "client_secret_file": str(tmp_path / "secret"),
        "username": "myemail@example.com", "password_file": str(tmp_path / "password"),
        "token_file": str(tmp_path / "state" / "token.json"), "ca_file": srv.ca_file, "batch_samples": 1000,
    }
    base.update(kw)
    return HttpsConfig(**base)  # type: ignore[arg-type]


def get_all(srv: DrustServer, token: str, path: str, limit: int = 7, **params: Any) -> list[dict[str, Any]]:
    """Every item of a collection, following ``next`` with a small page size."""
    out: list[dict[str, Any]] = []
    q: dict[str, Any] = {"limit": limit, **params}
    with httpx.Client(verify=ssl.create_default_context(cafile=srv.ca_file)) as c:
        while True:
            r = c.get(srv.url + path, params=q, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["limit"] == limit and len(page["items"]) <= limit
            out += page["items"]
            if "next" not in page:
                return out
            q["offset"] = page["next"]["offset"]


def login(srv: DrustServer) -> str:
    with httpx.Client(verify=ssl.create_default_context(cafile=srv.ca_file)) as c:
        r = c.post(srv.url + "/oauth/token", data={"grant_type": "password", "scope": "global",
                   "username": "myemail@example.com", "password": "myPassw0rd", "client_id": "myclientid",
                   "client_secret": "myclientsecret"})
    assert r.status_code == 200
    return str(r.json()["access_token"])


@pytest.mark.parametrize(
    ("form", "code", "error"),
    [
        ({"client_secret": "myclientsecret"}, 401, "unauthorized"),
        ({"client_id": "nope", "client_secret": "x"}, 401, "invalid client"),
        ({"grant_type": "implicit"}, 400, "unsupported grant type"),
        ({"scope": "all"}, 400, "invalid scope"),
        ({"password": "wrong"}, 400, "invalid grant"),
        ({"password": ""}, 400, "server error"),
        ({"grant_type": "refresh_token"}, 400, "invalid request"),
        ({"grant_type": "refresh_token", "refresh_token": "unknown"}, 400, "invalid grant"),
    ],
)
def test_oauth_error_bodies(drust: DrustServer, form: dict[str, str], code: int, error: str) -> None:
    data = {"grant_type": "password", "scope": "global", "username": "myemail@example.com", "password": "myPassw0rd",
            "client_id": "myclientid", "client_secret": "myclientsecret"}
    data.update(form)
    if "client_id" not in form and "client_secret" in form and form["client_secret"] == "myclientsecret":
        del data["client_id"]
    with httpx.Client(verify=ssl.create_default_context(cafile=drust.ca_file)) as c:
        r = c.post(drust.url + "/oauth/token", data=data)
    assert r.status_code == code and r.json()["error"] == error


async def test_login_token_file_refresh_and_relogin(drust: DrustServer, tmp_path: Path) -> None:
    cfg = https_cfg(drust, tmp_path)
    up = HttpsUplink(cfg, device_id="dev-1", car_id="car-1")
    await up.connect()
    tok = Path(cfg.token_file)
    assert stat.S_IMODE(os.stat(tok).st_mode) == 0o600
    first = load_token(tok)
    assert first is not None and first["scope"] == "global" and up.logins == 1
    rec = Record("trip-1", "trip", T0, 1, TripRecord("trip-1", T0, T0 + 1000, {"distance": 5.0}).to_dict())
    assert await up.send([rec]) == ["trip-1"]
    # an access token the server forgot: 401 → refresh-token grant, and the request goes through
    drust.expire_tokens()
    assert await up.send([rec]) == ["trip-1"]
    assert up.refreshes == 1 and up.logins == 1
    second = load_token(tok)
    assert second is not None and second["access_token"] != first["access_token"]
    # refresh refused too: a full login
    drust.expire_tokens()
    drust.revoke_refresh_tokens()
    assert await up.send([rec]) == ["trip-1"]
    assert up.logins == 2
    await up.close()
    # a restart uses the saved token: no new login
    up2 = HttpsUplink(cfg, device_id="dev-1")
    await up2.connect()
    assert await up2.send([rec]) == ["trip-1"]
    assert up2.logins == 0 and drust.state.logins == 2
    await up2.close()
    assert drust.state.duplicates == 3


async def test_wrong_password_is_an_auth_error_and_bad_ca_refused(drust: DrustServer, tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("nope")
    (tmp_path / "bad").chmod(0o600)
    up = HttpsUplink(https_cfg(drust, tmp_path, password_file=str(tmp_path / "bad")), device_id="d")
    with pytest.raises(AuthError, match="invalid grant"):
        await up.connect()
    await up.close()
    # verification on: without the test CA the server's certificate is refused
    up2 = HttpsUplink(https_cfg(drust, tmp_path, ca_file=""), device_id="d")
    with pytest.raises(UplinkError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await up2.connect()
    await up2.close()


def test_retry_after_forms() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_forwarder_delivers_through_failures_and_reads_back(tmp_path: Path) -> None:
    srv = DrustServer(tmp_path / "drust", fail_rate=0.3, seed=7).start()
    store = Store(StoreConfig(path=str(tmp_path / "b.sqlite"), commit_interval_s=0.05, batch_samples=100),
                  uplinks=["https"])
    await store.open()
    fwd = Forwarder(store, HttpsUplink(https_cfg(srv, tmp_path), device_id="dev-1", car_id="car-1"), "https",
                    max_backoff_s=0.2)
    task = asyncio.create_task(fwd.run())
    trips, events = [], []
    try:
        for k in range(4):
            t = T0 + k * 3_600_000
            tid = f"trip-{k}"
            samples = [Sample(t + i * 250, "speed", float(i % 90), "km/h", 0x0D) for i in range(300)]
            ev = Event(f"ev-{k}", "HARD_BRAKE", "notification:hard_brake", t + 5000, tid, {"k": k})
            ev2 = Event(f"ev-x{k}", "MIL_ON", "notification:mil_on", t + 6000, None, {})
            trip = TripRecord(tid, t, t + 300 * 250, {"distance": 100.0 * k})
            await store.append([*samples, ev, ev2, trip])
            trips.append(trip)
            events += [ev, ev2]
        await store.flush()
        async with asyncio.timeout(60):
            while store.stats()["queue"]["https"]["records"]:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
    assert srv.state.injected > 0
    token = login(srv)
    got_trips = get_all(srv, token, "/v2/devices/dev-1/trips", start_date=0, end_date=2**62)
    assert got_trips == [{**t.to_dict(), "device": {"id": "dev-1"}, "car": {"id": "car-1"}} for t in trips]
    assert get_all(srv, token, "/v2/trips", start_date=0, end_date=2**62) == got_trips
    assert get_all(srv, token, "/v2/trips/trip-2/events") == [{**events[4].to_dict(), "device": {"id": "dev-1"}}]
    got_events = get_all(srv, token, "/v2/events", start_date=0, end_date=2**62)
    assert sorted(e["id"] for e in got_events) == sorted(e.id for e in events)
    series = get_all(srv, token, "/v2/devices/dev-1/timeseries", limit=250, start_date=0, end_date=2**62)
    assert len(series) == 1200 and series[0] == {"device": {"id": "dev-1"}, "date": T0, "speed": 0}
    in_trip = get_all(srv, token, "/v2/trips/trip-1/timeseries", limit=100)
    assert len(in_trip) == 300 and in_trip[-1]["date"] == T0 + 3_600_000 + 299 * 250
    assert [d["id"] for d in get_all(srv, token, "/v2/devices")] == ["dev-1"]
    assert [c["id"] for c in get_all(srv, token, "/v2/cars")] == ["car-1"]
    srv.stop()


async def test_rejected_record_is_dead_lettered_and_the_queue_moves_on(tmp_path: Path) -> None:
    srv = DrustServer(tmp_path / "drust", reject=lambda kind, it: it.get("payload", {}).get("bad") is True).start()
    store = Store(StoreConfig(path=str(tmp_path / "b.sqlite"), commit_interval_s=0.05, batch_samples=100,
                              dead_letter_after=3), uplinks=["https"])
    await store.open()
    up = HttpsUplink(https_cfg(srv, tmp_path), device_id="dev-1")
    fwd = Forwarder(store, up, "https", max_backoff_s=0.1)
    good1 = Event("ev-1", "HARD_BRAKE", "notification:hard_brake", T0, None, {})
    bad = Event("ev-bad", "HARD_BRAKE", "notification:hard_brake", T0 + 1, None, {"bad": True})
    good2 = Event("ev-2", "HARD_BRAKE", "notification:hard_brake", T0 + 2, None, {})
    trip = TripRecord("trip-9", T0, T0 + 10, {})
    await store.append([good1, bad, good2, trip])
    await store.flush()
    task = asyncio.create_task(fwd.run())
    try:
        async with asyncio.timeout(30):
            while store.stats()["queue"]["https"]["records"]:
                await asyncio.sleep(0.05)
        await store.flush()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert store.stats()["dead_letters"] == {"https": 1}
    (dl,) = await store.dead_letters()
    assert dl["id"] == "ev-bad" and dl["tries"] == 3 and "400" in dl["reason"]
    assert set(srv.state.events) == {"ev-1", "ev-2"} and set(srv.state.trips) == {"trip-9"}
    assert srv.state.rejected == 3 + 1  # the whole batch once, then the bad record alone three times
    await store.close()
    srv.stop()


async def test_retry_after_is_honoured(drust: DrustServer, tmp_path: Path) -> None:
    drust.script += [(429, "1"), (503, "1")]
    store = Store(StoreConfig(path=str(tmp_path / "b.sqlite"), commit_interval_s=0.05), uplinks=["https"])
    await store.open()
    await store.append([TripRecord("trip-r", T0, T0 + 5, {})])
    await store.flush()
    fwd = Forwarder(store, HttpsUplink(https_cfg(drust, tmp_path), device_id="d"), "https", max_backoff_s=0.1)
    task = asyncio.create_task(fwd.run())
    try:
        async with asyncio.timeout(30):
            while store.stats()["queue"]["https"]["records"]:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
    times = drust.state.post_times
    assert len(times) == 3 and set(drust.state.trips) == {"trip-r"}
    # each retry came no sooner than the server's Retry-After
    assert times[1] - times[0] >= 0.95 and times[2] - times[1] >= 0.95


def test_world_readable_secret_is_refused(drust: DrustServer, tmp_path: Path) -> None:
    (tmp_path / "open").write_text("pw\n")
    (tmp_path / "open").chmod(0o644)
    with pytest.raises(ConfigError, match=r"https.password_file: .* readable by every user"):
        HttpsUplink(https_cfg(drust, tmp_path, password_file=str(tmp_path / "open")), device_id="d")
