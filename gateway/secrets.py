"""Secrets: reading them from files safely, and keeping them out of logs and status answers.

The MQTT password, the OAuth client secret and the user password live in files named by the
configuration (``mqtt.password_file``, ``https.client_secret_file``…), never inline. Rules:

* :func:`read_secret` refuses a file that any user may read (``o+r``) with a
  :class:`~gateway.errors.ConfigError` naming the file and the ``chmod`` that fixes it, and warns
  about a group-readable one (the service's own group may legitimately need it, so not an error).
  Every value read is registered for redaction.
* :func:`redact` replaces the values of secret-looking keys in a dict/list tree (for ``status`` and
  ``check-config``); :func:`redact_text` scrubs registered values, ``user:pass@`` in URLs and
  ``Bearer`` tokens from a string; :class:`RedactingFilter` does the same to every log record, and
  :func:`install_log_redaction` puts it on the root logger's handlers.
* :func:`check_config_secrets` runs those checks over every secret file the enabled uplinks name,
  at start-up, so a bad file stops the daemon with one clear line before anything connects.
* :func:`tls_verify` is what every uplink calls to decide on certificate verification: on unless
  the operator opted out, and an opt-out is logged as a loud warning every time a connection is set up.
"""

from __future__ import annotations

import logging
import re
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

log = logging.getLogger("gateway.secrets")

MASK = "***"

# Keys whose values are secrets. Keys naming a file or URL that holds/serves one are not secrets.
_SECRET_KEY = re.compile(r"(pass(word|wd)?|secret|token|authorization|api[_-]?key|private[_-]?key|credential)", re.I)
_NOT_SECRET_SUFFIX = ("_file", "_path", "_url", "_uri")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@", re.I)
_BEARER = re.compile(r"(?P<prefix>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.I)
_KV_IN_TEXT = re.compile(
    r"(?P<key>\b[\w-]*(?:password|secret|token)[\w-]*[\"']?\s*[=:]\s*[\"']?)(?P<val>[^\s\"',&}]+)", re.I
)
# Secrets shorter than this are not scrubbed from free text: replacing "1" everywhere helps nobody.
_MIN_REGISTERED_LEN = 4

_lock = threading.Lock()
_registered: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret value so :func:`redact_text` and the log filter scrub it from any text."""
    if value and len(value) >= _MIN_REGISTERED_LEN:
        with _lock:
            _registered.add(value)


def forget_secrets() -> None:
    """Forget every registered value (tests; a reload that replaces all credentials)."""
    with _lock:
        _registered.clear()


def is_secret_key(key: str) -> bool:
    """True when a configuration or status key names a secret value (not a file holding one)."""
    k = key.lower()
    return bool(_SECRET_KEY.search(k)) and not k.endswith(_NOT_SECRET_SUFFIX)


def check_secret_file(path: str | Path) -> list[str]:
    """Problems with a secret file's permissions, as warning lines (empty when it is private)."""
    p = Path(path)
    mode = p.stat().st_mode
    problems = []
    if mode & stat.S_IROTH:
        problems.append(f"{p} is readable by every user (mode {stat.filemode(mode)}); run: chmod o-rwx {p}")
    if mode & stat.S_IRGRP:
        problems.append(f"{p} is readable by its group (mode {stat.filemode(mode)}); consider: chmod g-rwx {p}")
    return problems


def read_secret(path: str | Path, *, key: str = "secret", allow_world_readable: bool = False) -> str:
    """Read one secret from a file: first line, surrounding whitespace stripped.

    Raises :class:`ConfigError` (naming ``key``) when the file is missing, unreadable, empty, or
    readable by every user (unless ``allow_world_readable``); logs a warning when group-readable.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"{key}: secret file {p} not found") from None
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read secret file {p}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{key}: secret file {p} is not a regular file")
    if st.st_mode & stat.S_IROTH and not allow_world_readable:
        raise ConfigError(
            f"{key}: secret file {p} is readable by every user (mode {stat.filemode(st.st_mode)}); "
            f"refusing to use it: run chmod o-rwx {p}"
        )
    for problem in check_secret_file(p):
        log.warning("%s: %s", key, problem)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read secret file {p}: {exc}") from None
    lines = text.strip().splitlines()
    value = lines[0].strip() if lines else ""
    if not value:
        raise ConfigError(f"{key}: secret file {p} is empty")
    register_secret(value)
    return value


# Configuration keys that name files holding secrets, per section. ``token_file`` is written by
# the daemon itself (it may not exist yet); ``key_file`` is a TLS private key (checked, never read).
SECRET_FILE_KEYS: dict[str, tuple[str, ...]] = {
    "mqtt": ("password_file", "key_file"),
    "https": ("client_secret_file", "password_file", "token_file"),
}
_READ_AT_START = {"password_file", "client_secret_file"}
_MAY_BE_MISSING = {"token_file"}


def check_config_secrets(cfg: Any) -> list[str]:
    """Check every secret file an enabled uplink names; call once at start-up (and on reload).

    Raises :class:`ConfigError` for a missing file or one readable by every user; returns (and
    logs) a warning line per group-readable file. Passwords and client secrets are read here so
    that they are registered for redaction before any uplink logs anything.
    """
    warnings: list[str] = []
    for section, keys in SECRET_FILE_KEYS.items():
        sec = getattr(cfg, section, None)
        if sec is None or not getattr(sec, "enabled", False):
            continue
        for key in keys:
            path = getattr(sec, key, "")
            if not path:
                continue
            name = f"{section}.{key}"
            p = Path(path)
            if not p.exists():
                if key in _MAY_BE_MISSING:
                    continue
                raise ConfigError(f"{name}: secret file {p} not found")
            if key in _READ_AT_START:
                read_secret(p, key=name)  # refuses o+r, logs g+r
                warnings += [f"{name}: {w}" for w in check_secret_file(p) if "group" in w]
                continue
            mode = p.stat().st_mode
            if mode & stat.S_IROTH:
                raise ConfigError(
                    f"{name}: {p} is readable by every user (mode {stat.filemode(mode)}); "
                    f"refusing to use it: run chmod o-rwx {p}"
                )
            for problem in check_secret_file(p):
                log.warning("%s: %s", name, problem)
                warnings.append(f"{name}: {problem}")
    return warnings


def config_warnings(cfg: Any) -> list[str]:
    """Settings that work but expose the box, one line each: shown by ``check-config`` and logged at start.

    A password sent over an unencrypted MQTT connection, and certificate verification turned off.
    """
    warnings: list[str] = []
    mqtt = getattr(cfg, "mqtt", None)
    if mqtt is not None and mqtt.enabled:
        if not mqtt.tls and mqtt.password_file:
            warnings.append(
                "mqtt.tls = false with mqtt.password_file set: the MQTT password crosses the network in clear "
                "(set mqtt.tls = true)"
            )
        if mqtt.tls and mqtt.tls_insecure_skip_verify:
            warnings.append(
                "mqtt.tls_insecure_skip_verify = true: the broker's certificate is not checked, anyone on the "
                "network path can read and alter the traffic (bench use only)"
            )
    https = getattr(cfg, "https", None)
    if https is not None and https.enabled:
        if https.tls_insecure_skip_verify:
            warnings.append(
                "https.tls_insecure_skip_verify = true: the server's certificate is not checked, anyone on the "
                "network path can read and alter the traffic (bench use only)"
            )
        if _URL_CREDENTIALS.search(https.base_url):
            warnings.append("https.base_url carries a password; use https.username and https.password_file")
    return warnings


def redact(obj: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like tree with secret values masked (by key name, registered value, or URL)."""
    extra_keys = {k.lower() for k in extra}
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            skey = str(key)
            if (is_secret_key(skey) or skey.lower() in extra_keys) and value not in (None, "", b""):
                out[key] = MASK
            else:
                out[key] = redact(value, extra_keys)
        return out
    if isinstance(obj, (list, tuple)):
        return [redact(v, extra_keys) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_text(text: str) -> str:
    """``text`` with registered secrets, URL passwords, bearer tokens and ``password=…`` masked."""
    with _lock:
        values = sorted(_registered, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _BEARER.sub(lambda m: f"{m['prefix']}{MASK}", text)
    return _KV_IN_TEXT.sub(_mask_kv, text)


def _mask_kv(m: re.Match[str]) -> str:
    name = m["key"].rstrip("\"' =:").lower()
    if name.endswith(_NOT_SECRET_SUFFIX):
        return m.group(0)  # password_file=/etc/... names where the secret is, not the secret
    return f"{m['key']}{MASK}"


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from the formatted message (and drops the raw args)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not lose the line
            message = str(record.msg)
        clean = redact_text(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception texts (an HTTP error quoting a request) can carry secrets too.
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add a :class:`RedactingFilter` to every handler of ``logger`` (the root logger by default)."""
    target = logger or logging.getLogger()
    filt = RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(filt)
    return filt


def tls_verify(insecure_skip_verify: bool, *, what: str, logger: logging.Logger | None = None) -> bool:
    """Whether to verify TLS certificates for ``what`` (``"mqtt"``, ``"https"``): True unless opted out.

    Turning verification off is allowed for bench set-ups only; it is logged as a warning each time
    it is applied so it cannot go unnoticed in the journal.
    """
    if insecure_skip_verify:
        (logger or log).warning(
            "!!! TLS CERTIFICATE VERIFICATION IS OFF for %s (%s.tls_insecure_skip_verify = true): "
            "anyone on the network path can read and alter this traffic. Never use this in the field. !!!",
            what,
            what,
        )
        return False
    return True
