"""The HTTPS uplink to a DRUST-style API: OAuth2 (authlib over httpx), ingest endpoints, backoff.

Authentication follows drust-api.txt: the *password* grant (``scope=global``, client id and secret in
the form body) gives an access and a refresh token; when the access token expires (or a request gets
401) the *refresh_token* grant gets new ones; when that fails, a full login again. Tokens are kept in
``https.token_file`` (mode 0600) so a restart does not log in again.

Ingest endpoints (defined by this project in DRUST style; see docs/uplinks.md)::

    POST /v2/devices/{device}/timeseries   {"id": batch id, "items": [Timeseries ...]}
    POST /v2/trips                         {"items": [Trip ...]}
    POST /v2/trips/{trip}/events           {"items": [Event ...]}   (events of a trip)
    POST /v2/events                        {"items": [Event ...]}   (events outside a trip)

Any 2xx acknowledges every id of the request (the server de-duplicates by id). 401: refresh and retry
once. 429 and 5xx: :class:`RetryLater` with ``Retry-After``. Other 4xx: :class:`RejectedBatch`.
Certificate verification is on (``https.ca_file`` adds a private CA).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
import warnings
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import authlib.deprecate  # type: ignore[import-untyped]  # installs its "always" filter; ours must come after
import httpx

from gateway.common import jsonout
from gateway.config import HttpsConfig
from gateway.errors import AuthError, ConfigError, RejectedBatch, UplinkError
from gateway.secrets import read_secret, tls_verify
from gateway.uplink.base import Record, RetryLater, Uplink

with warnings.catch_warnings():
    # authlib prefers the httpx2 fork and warns when it falls back to httpx, which we use on purpose
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.common.errors import AuthlibBaseError  # type: ignore[import-untyped]
    from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]

log = logging.getLogger("gateway.uplink.https")


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def save_token(path: Path, token: dict[str, Any]) -> None:
    """Write ``token`` to ``path`` readable by the owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(dict(token)).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_token(path: Path) -> dict[str, Any] | None:
    """The saved token, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "access_token" in data else None


class HttpsUplink(Uplink):
    """Posts records to a DRUST-style API."""

    name = "https"

    def __init__(
        self,
        cfg: HttpsConfig,
        *,
        device_id: str,
        car_id: str = "",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.car_id = car_id
        self.base_url = cfg.base_url.rstrip("/")
        self.token_url = cfg.token_url or f"{self.base_url}/oauth/token"
        self.token_path = Path(cfg.token_file)
        self.lease_samples = cfg.batch_samples
        self._client_secret = _secret_or_empty(cfg.client_secret_file, "https.client_secret_file")
        self._password = _secret_or_empty(cfg.password_file, "https.password_file")
        self._verify: ssl.SSLContext | bool
        if ssl_context is not None:
            self._verify = ssl_context
        elif not tls_verify(cfg.tls_insecure_skip_verify, what="https", logger=log):
            self._verify = False
        else:
            try:
                self._verify = ssl.create_default_context(cafile=cfg.ca_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"https.ca_file: cannot load {cfg.ca_file}: {exc}") from None
        self._client: AsyncOAuth2Client | None = None
        self._connected = False
        self.logins = 0
        self.refreshes = 0

    @property
    def connected(self) -> bool:
        """True once logged in and until a request fails to reach the server."""
        return self._connected

    async def _save(self, token: dict[str, Any], refresh_token: str | None = None, access_token: str | None = None,
                    ) -> None:
        # authlib calls this after each refresh-token grant
        self.refreshes += 1
        save_token(self.token_path, token)

    def _new_client(self, token: dict[str, Any] | None) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.cfg.client_id,
            client_secret=self._client_secret,
            token_endpoint_auth_method="client_secret_post",
            scope="global",
            token=token,
            token_endpoint=self.token_url,
            update_token=self._save,
            leeway=30,
            verify=self._verify,
            timeout=self.cfg.timeout_s,
        )

    async def connect(self) -> None:
        """Open the HTTP client; log in unless a saved token can be used (or refreshed)."""
        await self.close()
        token = load_token(self.token_path)
        self._client = self._new_client(token)
        if token is None:
            await self._login()
        self._connected = True

    async def _login(self) -> None:
        """The password grant (a full login)."""
        assert self._client is not None
        try:
            token = await self._client.fetch_token(
                self.token_url, grant_type="password", username=self.cfg.username, password=self._password
            )
        except AuthlibBaseError as exc:
            raise AuthError(f"https: login refused: {exc}") from exc
        except httpx.HTTPError as exc:
            raise UplinkError(f"https: cannot reach {self.token_url}: {exc}") from exc
        self.logins += 1
        save_token(self.token_path, dict(token))

    async def _refresh_or_login(self) -> None:
        assert self._client is not None
        refresh = (self._client.token or {}).get("refresh_token")
        if refresh:
            try:
                await self._client.refresh_token(self.token_url, refresh_token=refresh)
                return
            except AuthlibBaseError as exc:
                log.info("https: refresh refused (%s); logging in again", exc)
            except httpx.HTTPError as exc:
                raise UplinkError(f"https: cannot reach {self.token_url}: {exc}") from exc
        await self._login()

    async def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One API call with the token handling and error mapping of this module; returns the JSON."""
        if self._client is None:
            raise UplinkError("https: not connected")
        url = f"{self.base_url}{path}"
        # strict JSON (httpx's json= would write NaN and Infinity, which receivers reject)
        content: dict[str, Any] = (
            {} if body is None else {"content": jsonout.dumpb(body), "headers": {"Content-Type": "application/json"}}
        )
        for attempt in range(2):
            try:
                if self._client.token is None:
                    await self._login()
                try:
                    resp = await self._client.request(method, url, params=params, **content)
                except AuthlibBaseError:
                    # the automatic refresh of an expired token failed: log in from scratch
                    await self._login()
                    resp = await self._client.request(method, url, params=params, **content)
            except httpx.HTTPError as exc:
                self._connected = False
                raise UplinkError(f"https: {method} {path} failed: {exc}") from exc
            if resp.status_code == 401 and attempt == 0:
                await self._refresh_or_login()
                continue
            return self._result(method, path, resp)
        raise AuthError(f"https: {method} {path}: still unauthorized after a new login")

    @staticmethod
    def _result(method: str, path: str, resp: httpx.Response) -> Any:
        code = resp.status_code
        if 200 <= code < 300:
            try:
                return resp.json() if resp.content else None
            except ValueError:
                return None
        detail = resp.text[:200]
        if code == 429 or code >= 500:
            raise RetryLater(f"https: {method} {path}: {code} {detail}", retry_after_s(resp.headers.get("Retry-After")))
        if code in (401, 403):
            raise AuthError(f"https: {method} {path}: {code} {detail}")
        raise RejectedBatch(f"https: {method} {path}: {code} {detail}")

    def _with_refs(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        out = dict(body)
        out.setdefault("device", {"id": self.device_id})
        if kind == "trip" and self.car_id:
            out.setdefault("car", {"id": self.car_id})
        return out

    def requests_for(self, batch: Sequence[Record]) -> list[tuple[str, dict[str, Any], list[str]]]:
        """Group ``batch`` (order kept) into (path, body, ids) requests."""
        out: list[tuple[str, dict[str, Any], list[str]]] = []
        for rec in batch:
            if rec.kind == "timeseries":
                dev = {"id": self.device_id}
                items = [{"device": dev, **it} for it in rec.body]
                out.append((f"/v2/devices/{self.device_id}/timeseries", {"id": rec.id, "items": items}, [rec.id]))
                continue
            if rec.kind == "trip":
                path = "/v2/trips"
            else:
                trip = rec.body.get("trip")
                path = f"/v2/trips/{trip}/events" if trip else "/v2/events"
            item = self._with_refs(rec.body, rec.kind)
            if out and out[-1][0] == path and not path.endswith("/timeseries"):
                out[-1][1]["items"].append(item)
                out[-1][2].append(rec.id)
            else:
                out.append((path, {"items": [item]}, [rec.id]))
        return out

    async def send(self, batch: Sequence[Record]) -> list[str]:
        """POST the batch in order; return the ids acknowledged before any failure."""
        acked: list[str] = []
        for path, body, ids in self.requests_for(batch):
            try:
                await self.request("POST", path, body)
            except UplinkError:
                if acked:
                    return acked
                raise
            acked += ids
        return acked

    async def close(self) -> None:
        """Close the HTTP client (idempotent)."""
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            await client.aclose()


def _secret_or_empty(path: str, key: str) -> str:
    """A secret through :func:`gateway.secrets.read_secret` (permission check, redaction); '' when unset."""
    return read_secret(path, key=key) if path else ""
