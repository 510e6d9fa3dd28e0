"""A DRUST-style reference server for tests: HTTPS with a trustme test CA, OAuth2, ingest and read endpoints.

It follows /work/shared/reference/drust-api.txt:

* ``POST /oauth/token`` (form): ``grant_type`` password or refresh_token, ``scope=global``,
  ``client_id``/``client_secret`` in the body; the documented error bodies
  (``{"error": "invalid client"}``, ``unauthorized``, ``invalid grant``, ``server error``,
  ``invalid scope``, ``unsupported grant type``, ``invalid request``).
* Read endpoints with ``limit`` (1-10000, default 1000) / ``offset`` (opaque string) / ``next``:
  ``/v2/devices``, ``/v2/cars``, ``/v2/trips``, ``/v2/devices/{id}/trips``, ``/v2/trips/{id}/events``,
  ``/v2/trips/{id}/timeseries``, ``/v2/devices/{id}/timeseries``, ``/v2/events``, ``/v2/timeseries``
  (``start_date``/``end_date`` mandatory where the reference says so).
* The ingest endpoints of docs/uplinks.md, de-duplicating by id.
* API errors as ``{"status": CODE, "description": TEXT}``.

Failure injection: ``fail_rate`` answers that share of API requests with 503/429 (``Retry-After``), some
of them *after* storing the data (a lost response: the client sends again, the server de-duplicates);
``reject`` is a predicate on an ingested item that makes the request a 400; ``expire_tokens()`` makes
every access token invalid (the client must refresh); ``revoke_refresh_tokens()`` forces a full login.

Run standalone: ``python -m tests.drust_server --port 8443`` prints the URL and the CA file.
"""

from __future__ import annotations

import argparse
import json
import random
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme


class DrustState:
    """Everything the server knows; guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.access: dict[str, float] = {}  # access token → expiry (epoch s)
        self.refresh: set[str] = set()
        self.timeseries: dict[str, list[dict[str, Any]]] = {}  # batch id → items
        self.trips: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.cars: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.requests = 0
        self.post_times: list[float] = []  # monotonic time of each authorised ingest request
        self.injected = 0
        self.rejected = 0
        self.logins = 0
        self.refreshes = 0


class DrustServer:
    """The server in a background thread; ``url``, ``ca_file``, ``stop()``."""

    def __init__(
        self,
        workdir: Path,
        *,
        client_id: str = "myclientid",
        client_secret: str = "myclientsecret",
        users: dict[str, str] | None = None,
        token_ttl_s: int = 899,
        fail_rate: float = 0.0,
        seed: int = 0,
        reject: Callable[[str, dict[str, Any]], bool] | None = None,
        port: int = 0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.users = users if users is not None else {"myemail@example.com": "myPassw0rd"}
        self.token_ttl_s = token_ttl_s
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        self.reject = reject
        #: (status, Retry-After) answers for the next ingest requests, before anything else
        self.script: list[tuple[int, str]] = []
        self.state = DrustState()
        workdir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = str(workdir / "drust-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        server = self

        class Handler(_Handler):
            drust = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="drust-server", daemon=True)

    def start(self) -> DrustServer:
        """Serve in the background."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def expire_tokens(self) -> None:
        """Every access token becomes invalid (the next call gets 401)."""
        with self.state.lock:
            self.state.access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Refresh tokens stop working (the client must log in again)."""
        with self.state.lock:
            self.state.refresh.clear()


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    try:
        limit = int(query.get("limit", "1000"))
        offset = int(query.get("offset", "0") or "0")
    except ValueError:
        return 400, {"status": "INVALID_PARAMETER", "description": "limit and offset must be integers"}
    if not 1 <= limit <= 10000 or offset < 0:
        return 400, {"status": "INVALID_PARAMETER", "description": "limit must be between 1 and 10000"}
    page: dict[str, Any] = {"limit": limit, "offset": str(offset), "items": items[offset : offset + limit]}
    if offset + limit < len(items):
        page["next"] = {"offset": str(offset + limit)}
    return 200, page


def _date_range(query: dict[str, str]) -> tuple[int, int] | None:
    try:
        return int(query["start_date"]), int(query["end_date"])
    except (KeyError, ValueError):
        return None


class _Handler(BaseHTTPRequestHandler):
    drust: DrustServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # -- OAuth -----------------------------------------------------------------------------------
    def _token(self) -> None:
        srv, st = self.drust, self.drust.state
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self._body().decode(), keep_blank_values=True).items()}
        if not form.get("client_id") or not form.get("client_secret"):
            return self._send(401, {"error": "unauthorized", "error_description": "client_id or client_secret missing"})
        if form["client_id"] != srv.client_id or form["client_secret"] != srv.client_secret:
            return self._send(401, {"error": "invalid client", "error_description": "unknown client"})
        grant = form.get("grant_type")
        if grant not in ("password", "refresh_token"):
            return self._send(400, {"error": "unsupported grant type", "error_description": f"{grant!r}"})
        if form.get("scope") != "global":
            return self._send(400, {"error": "invalid scope", "error_description": "scope must be global"})
        with st.lock:
            if grant == "password":
                user, pw = form.get("username"), form.get("password")
                if not user or not pw:
                    return self._send(400, {"error": "server error", "error_description": "username/password missing"})
                if srv.users.get(user) != pw:
                    return self._send(400, {"error": "invalid grant", "error_description": "bad username or password"})
                st.logins += 1
            else:
                rt = form.get("refresh_token")
                if not rt:
                    return self._send(400, {"error": "invalid request", "error_description": "refresh_token missing"})
                if rt not in st.refresh:
                    return self._send(400, {"error": "invalid grant", "error_description": "unknown refresh token"})
                st.refresh.discard(rt)
                st.refreshes += 1
            access, refresh = str(uuid.uuid4()), str(uuid.uuid4())
            st.access[access] = time.time() + srv.token_ttl_s
            st.refresh.add(refresh)
        return self._send(200, {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
                                "expires_in": srv.token_ttl_s, "scope": "global"})

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        with self.drust.state.lock:
            exp = self.drust.state.access.get(token)
        if exp is None or exp < time.time():
            self._send(401, {"status": "UNAUTHORIZED", "description": "missing, unknown or expired access token"})
            return False
        return True

    # -- dispatch --------------------------------------------------------------------------------
    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/oauth/token":
            return self._token()
        body_bytes = self._body()
        if not self._authorized():
            return None
        srv, st = self.drust, self.drust.state
        with st.lock:
            st.requests += 1
            st.post_times.append(time.monotonic())
            roll = srv.rng.random()
            scripted = srv.script.pop(0) if srv.script else None
        if scripted is not None:
            code, after = scripted
            return self._send(code, {"status": "TRY_LATER", "description": "scripted"}, {"Retry-After": after})
        if roll < srv.fail_rate / 2:
            return self._fail()
        try:
            body = json.loads(body_bytes)
            items = body["items"]
            assert isinstance(items, list)
        except (ValueError, KeyError, AssertionError, TypeError):
            return self._send(400, {"status": "INVALID_BODY", "description": "a JSON object with items is expected"})
        parts = url.path.strip("/").split("/")
        kind = None
        if len(parts) == 4 and parts[:2] == ["v2", "devices"] and parts[3] == "timeseries":
            kind = "timeseries"
        elif parts == ["v2", "trips"]:
            kind = "trip"
        elif (len(parts) == 4 and parts[:2] == ["v2", "trips"] and parts[3] == "events") or parts == ["v2", "events"]:
            kind = "event"
        if kind is None:
            return self._send(404, {"status": "NOT_FOUND", "description": url.path})
        for it in items:
            if not isinstance(it, dict) or (kind != "timeseries" and "id" not in it) or (
                kind == "timeseries" and not isinstance(it.get("date"), int)
            ) or (srv.reject is not None and srv.reject(kind, it)):
                with st.lock:
                    st.rejected += 1
                return self._send(400, {"status": "INVALID_ITEM", "description": f"malformed {kind} item"})
        with st.lock:
            if kind == "timeseries":
                bid = body.get("id") or str(uuid.uuid4())
                if bid in st.timeseries:
                    st.duplicates += 1
                st.timeseries[bid] = items
                st.devices.setdefault(parts[2], {"id": parts[2]})
            else:
                table = st.trips if kind == "trip" else st.events
                for it in items:
                    if it["id"] in table:
                        st.duplicates += 1
                    table[it["id"]] = it
                    dev = (it.get("device") or {}).get("id")
                    if dev:
                        st.devices.setdefault(dev, {"id": dev})
                    car = (it.get("car") or {}).get("id") if kind == "trip" else None
                    if car:
                        st.cars.setdefault(car, {"id": car})
        if roll < srv.fail_rate:
            return self._fail()  # stored, but the answer is lost: the client sends it again
        return self._send(200, {"items": [{"id": it.get("id", body.get("id")), "status": "ok"} for it in items]})

    def _fail(self) -> None:
        st = self.drust.state
        with st.lock:
            st.injected += 1
            code = self.drust.rng.choice((429, 500, 503))
        self._send(code, {"status": "TRY_LATER", "description": "injected failure"}, {"Retry-After": "0"})

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if not self._authorized():
            return None
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        st = self.drust.state
        with st.lock:
            trips = sorted(st.trips.values(), key=lambda t: (_date(t, "start"), t["id"]))
            events = sorted(st.events.values(), key=lambda e: (e.get("date", 0), e["id"]))
            series = sorted((it for b in st.timeseries.values() for it in b), key=lambda i: i["date"])
            devices, cars = list(st.devices.values()), list(st.cars.values())
        need_range = parts in (["v2", "trips"], ["v2", "events"], ["v2", "timeseries"]) or (
            len(parts) == 4 and parts[:2] == ["v2", "devices"] and parts[3] in ("trips", "timeseries")
        )
        rng = _date_range(q)
        if need_range and rng is None:
            msg = "start_date and end_date are mandatory"
            return self._send(400, {"status": "INVALID_PARAMETER", "description": msg})
        lo, hi = rng or (0, 2**63)
        items: list[dict[str, Any]]
        if parts == ["v2", "devices"]:
            items = devices
        elif parts == ["v2", "cars"]:
            items = cars
        elif parts == ["v2", "trips"]:
            items = [t for t in trips if lo <= _date(t, "start") <= hi]
        elif parts == ["v2", "events"]:
            items = [e for e in events if lo <= e.get("date", 0) <= hi]
        elif parts == ["v2", "timeseries"]:
            items = [s for s in series if lo <= s["date"] <= hi]
        elif len(parts) == 4 and parts[:2] == ["v2", "devices"] and parts[3] == "trips":
            items = [t for t in trips
                     if (t.get("device") or {}).get("id") == parts[2] and lo <= _date(t, "start") <= hi]
        elif len(parts) == 4 and parts[:2] == ["v2", "devices"] and parts[3] == "timeseries":
            items = [s for s in series if s["device"]["id"] == parts[2] and lo <= s["date"] <= hi]
        elif len(parts) == 4 and parts[:2] == ["v2", "trips"] and parts[3] in ("events", "timeseries"):
            trip = next((t for t in trips if t["id"] == parts[2]), None)
            if trip is None:
                return self._send(404, {"status": "NOT_FOUND", "description": f"trip {parts[2]}"})
            if parts[3] == "events":
                items = [e for e in events if e.get("trip") in (parts[2], {"id": parts[2]})]
            else:
                dev = (trip.get("device") or {}).get("id")
                a, b = _date(trip, "start"), _date(trip, "stop")
                items = [s for s in series if s["device"]["id"] == dev and a <= s["date"] <= b]
        else:
            return self._send(404, {"status": "NOT_FOUND", "description": url.path})
        code, page = _page(items, q)
        return self._send(code, page)


def _date(trip: dict[str, Any], key: str) -> int:
    v = trip.get(key)
    if isinstance(v, dict):
        return int(v.get("date", 0))
    return int(trip.get(f"{key}_date", 0))


def main() -> None:
    """Serve until interrupted (for trying the uplink by hand)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fail-rate", type=float, default=0.0)
    args = ap.parse_args()
    srv = DrustServer(Path(tempfile.mkdtemp()), port=args.port, fail_rate=args.fail_rate).start()
    print(f"{srv.url} ca={srv.ca_file}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
