"""Secret files, redaction in structures, text and log records, the TLS opt-out warning."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import secrets
from gateway.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    secrets.forget_secrets()
    yield
    secrets.forget_secrets()


def secret_file(tmp_path: Path, mode: int, text: str = "s3cr3t-pass\n") -> Path:
    p = tmp_path / "secret"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_private_secret_file_is_read_and_registered(tmp_path: Path) -> None:
    p = secret_file(tmp_path, 0o600, "  hunter2hunter2  \nsecond line ignored\n")
    assert secrets.read_secret(p, key="mqtt.password_file") == "hunter2hunter2"
    assert secrets.redact_text("connect failed for hunter2hunter2") == "connect failed for ***"


def test_world_readable_secret_file_is_refused(tmp_path: Path) -> None:
    p = secret_file(tmp_path, 0o644)
    with pytest.raises(ConfigError) as err:
        secrets.read_secret(p, key="mqtt.password_file")
    msg = str(err.value)
    assert msg.startswith("mqtt.password_file:")
    assert "readable by every user" in msg
    assert f"chmod o-rwx {p}" in msg
    assert "s3cr3t" not in msg
    assert secrets.read_secret(p, allow_world_readable=True) == "s3cr3t-pass"


def test_group_readable_secret_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = secret_file(tmp_path, 0o640)
    with caplog.at_level(logging.WARNING):
        assert secrets.read_secret(p, key="https.client_secret_file") == "s3cr3t-pass"
    assert any("readable by its group" in r.getMessage() for r in caplog.records)
    assert secrets.check_secret_file(secret_file(tmp_path, 0o600)) == []


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("missing", "not found"),
        ("empty", "is empty"),
        ("dir", "not a regular file"),
    ],
)
def test_bad_secret_files_raise_config_errors(tmp_path: Path, setup: str, needle: str) -> None:
    if setup == "missing":
        p = tmp_path / "nope"
    elif setup == "empty":
        p = secret_file(tmp_path, 0o600, "\n \n")
    else:
        p = tmp_path / "d"
        p.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=needle):
        secrets.read_secret(p, key="k")


def test_redact_masks_secret_keys_but_keeps_paths_and_structure() -> None:
    status = {
        "mqtt": {"username": "box", "password": "pw-123456", "password_file": "/etc/obd-gateway/mqtt.pw"},
        "https": {
            "client_secret": "abcdef",
            "access_token": "eyJhbGciOi",
            "token_file": "/var/lib/obd-gateway/oauth-token.json",
            "base_url": "https://user:hidden-pw@api.example.com/v1",
        },
        "uplinks": [{"name": "mqtt", "Authorization": "Bearer abc.def"}],
        "password": "",
        "queue": 12,
    }
    out = secrets.redact(status)
    assert out["mqtt"] == {"username": "box", "password": "***", "password_file": "/etc/obd-gateway/mqtt.pw"}
    assert out["https"]["client_secret"] == "***"
    assert out["https"]["access_token"] == "***"
    assert out["https"]["token_file"] == "/var/lib/obd-gateway/oauth-token.json"
    assert out["https"]["base_url"] == "https://user:***@api.example.com/v1"
    assert out["uplinks"] == [{"name": "mqtt", "Authorization": "***"}]
    assert out["password"] == ""  # nothing to hide
    assert out["queue"] == 12
    assert status["mqtt"]["password"] == "pw-123456", "redact must not modify its input"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJ0eXAi.abc-def", "Authorization: Bearer ***"),
        ("POST password=hunter2&grant_type=password", "POST password=***&grant_type=password"),
        ('{"client_secret": "xyz789"}', '{"client_secret": "***"}'),
        ("mqtts://box:pw@broker:8883", "mqtts://box:***@broker:8883"),
        ("nothing secret here: speed=42", "nothing secret here: speed=42"),
        ("mqtt.password_file=/etc/obd-gateway/pw", "mqtt.password_file=/etc/obd-gateway/pw"),
        ("token_url: https://auth.example.com/token", "token_url: https://auth.example.com/token"),
    ],
)
def test_redact_text_patterns(text: str, expected: str) -> None:
    assert secrets.redact_text(text) == expected


def test_log_filter_scrubs_messages_args_and_tracebacks() -> None:
    secrets.register_secret("tok-SECRET-value")
    secrets.register_secret("ab")  # too short to scrub from free text
    stream = io.StringIO()
    logger = logging.getLogger("test.secrets.filter")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        secrets.install_log_redaction(logger)
        secrets.install_log_redaction(logger)  # idempotent
        assert len(handler.filters) == 1
        logger.warning("token refresh with %s failed", "tok-SECRET-value")
        try:
            raise RuntimeError("server said: invalid tok-SECRET-value")
        except RuntimeError:
            logger.exception("upload failed")
        logger.warning("about ab")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "tok-SECRET-value" not in text
    assert "token refresh with *** failed" in text
    assert "invalid ***" in text
    assert "RuntimeError" in text  # the traceback is kept, only scrubbed
    assert "about ab" in text


def test_tls_verify_is_on_by_default_and_the_opt_out_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert secrets.tls_verify(False, what="mqtt") is True
        assert caplog.records == []
        assert secrets.tls_verify(True, what="https") is False
    (rec,) = caplog.records
    assert rec.levelno == logging.WARNING
    assert "TLS CERTIFICATE VERIFICATION IS OFF" in rec.getMessage()
    assert "https.tls_insecure_skip_verify" in rec.getMessage()


def test_secret_key_names() -> None:
    for key in ("password", "mqtt_password", "client_secret", "refresh_token", "Authorization", "api_key"):
        assert secrets.is_secret_key(key), key
    for key in ("password_file", "token_url", "username", "speed", "token_file"):
        assert not secrets.is_secret_key(key), key


def test_check_config_secrets_over_a_real_configuration(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from gateway import config

    pw = secret_file(tmp_path, 0o600, "mqtt-pw-1234\n")
    client_secret = tmp_path / "client_secret"
    client_secret.write_text("cs-5678-abcd\n")
    client_secret.chmod(0o640)
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o600)
    toml = tmp_path / "c.toml"
    toml.write_text(
        f'[mqtt]\nenabled = true\npassword_file = "{pw}"\nkey_file = "{key}"\n'
        f'[https]\nenabled = true\nclient_secret_file = "{client_secret}"\n'
        f'token_file = "{tmp_path}/not-yet-written.json"\n'
    )
    cfg = config.load(toml)
    with caplog.at_level(logging.WARNING):
        warnings = secrets.check_config_secrets(cfg)
    assert len(warnings) == 1 and warnings[0].startswith("https.client_secret_file:")
    # both values are now scrubbed from any log text
    assert secrets.redact_text("a mqtt-pw-1234 b cs-5678-abcd") == "a *** b ***"
    assert "BEGIN PRIVATE KEY" not in caplog.text

    key.chmod(0o644)
    with pytest.raises(ConfigError, match=r"^mqtt\.key_file: .*readable by every user"):
        secrets.check_config_secrets(cfg)
    key.chmod(0o600)
    pw.chmod(0o604)
    with pytest.raises(ConfigError, match=r"^mqtt\.password_file: "):
        secrets.check_config_secrets(cfg)
    pw.unlink()
    with pytest.raises(ConfigError, match="not found"):
        secrets.check_config_secrets(cfg)
    # disabled uplinks are not checked
    assert secrets.check_config_secrets(config.replace(cfg, "mqtt", enabled=False)) == warnings
