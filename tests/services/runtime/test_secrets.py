"""The secrets policy: outside development every service refuses to start with a missing, default or short secret
and names it; keys are separate per purpose, rotate as lists, and never show in logs or reprs."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import SecretStr

from services.outreach.settings import OutreachSettings
from services.runtime import personal
from services.runtime.links import allowed_hosts, link_refusal
from services.runtime.secrets import InsecureConfiguration, SecretSpec, development_key, split_keys
from services.runtime.settings import RuntimeSettings
from services.video.settings import VideoSettings
from tests.support.keys import signing_key

GOOD_OUTREACH: dict[str, Any] = {
    "linkedin_webhook_secret": signing_key("prod-linkedin"),
    "email_webhook_secret": signing_key("prod-email"),
    "unsubscribe_secret": "u" * 40,
    "public_base_url": "https://outreach.example.com",
}
GOOD_KEK = "k" * 40


@pytest.fixture(autouse=True)
def _keep_the_process_kek() -> Any:
    """A service built here configures the process's key-encryption key: the tests after it keep the one they had."""
    previous = personal.configure(None)
    yield
    personal.configure(previous)


SERVICES = ("discovery", "enrichment", "messaging", "outreach", "video", "projection", "webhooks", "console")


def _build(name: str, **settings: Any) -> Any:
    module = importlib.import_module(f"services.{name}.app")
    cls = next(
        v
        for k, v in vars(importlib.import_module(f"services.{name}.settings")).items()
        if k.endswith("Settings") and k != "RuntimeSettings"
    )
    return module.build(cls(**settings))


def _refusal(name: str, **settings: Any) -> str:
    with pytest.raises(InsecureConfiguration) as err:
        _build(name, env="production", **settings)
    return str(err.value)


def test_outreach_refuses_production_without_its_secrets_and_names_each() -> None:
    message = _refusal("outreach")
    for setting in (
        "LEADSTREAM_LINKEDIN_WEBHOOK_SECRET",
        "LEADSTREAM_EMAIL_WEBHOOK_SECRET",
        "LEADSTREAM_UNSUBSCRIBE_SECRET",
        "LEADSTREAM_PUBLIC_BASE_URL",
    ):
        assert setting in message, message
    assert "is not set" in message


def test_console_refuses_production_without_a_real_session_key() -> None:
    assert "LEADSTREAM_CONSOLE_SESSION_SECRET (console sessions) is not set" in _refusal("console")
    old_default = _refusal("console", console_session_secret="dev-console-session-secret-change-me")
    assert "LEADSTREAM_CONSOLE_SESSION_SECRET (console sessions) is a development default" in old_default


def test_video_refuses_production_without_its_callback_key() -> None:
    assert "LEADSTREAM_VIDEO_WEBHOOK_SECRET (video studio callbacks) is not set" in _refusal("video")
    http = _refusal("video", video_webhook_secret=signing_key("v"), video_provider="http")
    assert "LEADSTREAM_STUDIO_API_KEY" in http and "LEADSTREAM_LINK_ALLOWED_HOSTS" in http


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (development_key("LinkedIn provider webhooks"), "is a development default"),
        ("dev-webhook-secret-change-me", "is a development default"),
        ("whsec_" + "QUJD", "too short (3 bytes; at least 24)"),
        ("not-a-whsec-secret-but-long-enough-0123456789", "is not a Standard Webhooks secret"),
        ("whsec_not!base64", "is not a Standard Webhooks secret"),
        (f"{signing_key('new')},whsec_QUJD", "key 2 of 2"),  # every key of a rotation list is checked
    ],
)
def test_default_short_or_malformed_keys_are_refused(value: str, why: str) -> None:
    message = _refusal("outreach", **{**GOOD_OUTREACH, "linkedin_webhook_secret": value})
    assert "LEADSTREAM_LINKEDIN_WEBHOOK_SECRET" in message and why in message, message


def test_short_unsubscribe_key_and_http_base_url_are_refused() -> None:
    message = _refusal(
        "outreach", **{**GOOD_OUTREACH, "unsubscribe_secret": "short", "public_base_url": "http://x.example"}
    )
    assert "LEADSTREAM_UNSUBSCRIBE_SECRET (unsubscribe links) is too short (5 characters; at least 32)" in message
    assert "LEADSTREAM_PUBLIC_BASE_URL must be an https URL" in message


def test_provider_credentials_are_required_when_the_provider_is_real() -> None:
    message = _refusal("outreach", **GOOD_OUTREACH, linkedin_provider="http", email_provider="http")
    assert "LEADSTREAM_UNIPILE_API_KEY (LinkedIn provider API) is not set" in message
    assert "LEADSTREAM_EMAIL_API_KEY (email API) is not set" in message
    sasl = _refusal(
        "projection",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password=" ",
    )
    assert "LEADSTREAM_KAFKA_SASL_PASSWORD (Kafka SASL login) is not set" in sasl


def test_every_service_but_the_console_needs_a_key_encryption_key_in_production() -> None:
    for name in SERVICES:
        if name == "console":  # no events, no data keys
            assert "LEADSTREAM_KEY_ENCRYPTION_KEY" not in _refusal("console")
            continue
        message = _refusal(name)
        assert "LEADSTREAM_KEY_ENCRYPTION_KEY (personal data keys) is not set" in message, (name, message)
        dev = development_key("personal data keys", "key")
        for weak, why in (("short", "too short"), (dev, "development default")):
            assert why in _refusal(name, key_encryption_key=weak)


def test_every_service_starts_in_production_with_good_settings() -> None:
    for name in SERVICES:
        extra: dict[str, Any] = {"key_encryption_key": GOOD_KEK}
        if name == "outreach":
            extra |= GOOD_OUTREACH
        if name == "video":
            extra |= {"video_webhook_secret": signing_key("prod-video")}
        if name == "console":
            extra = {"console_session_secret": "c" * 40}
        service = _build(name, env="production", **extra)
        assert service.settings.env == "production"
        if name != "console":  # the service's data keys are wrapped with its KEK
            assert personal.current_wrapper().current_id == personal.KeyWrapper([GOOD_KEK]).current_id
        # Production serves no API documents by default.
        assert service.app.openapi_url is None and service.app.docs_url is None


def test_development_gives_every_purpose_its_own_key() -> None:
    settings = OutreachSettings(env="development")
    keys = {settings.keys(f).signing for f in ("linkedin_webhook_secret", "email_webhook_secret", "unsubscribe_secret")}
    keys.add(VideoSettings(env="development").keys("video_webhook_secret").signing)
    assert len(keys) == 4
    assert settings.base_url() == "http://127.0.0.1:8104"
    # Outside development an unset key has no value at all (and the service does not start).
    assert OutreachSettings(env="production").keys("unsubscribe_secret").keys == ()


def test_rotation_lists_sign_with_the_first_and_verify_with_all() -> None:
    new, old = signing_key("new"), signing_key("old")
    ring = OutreachSettings(env="production", linkedin_webhook_secret=f" {new} , {old} ,").keys(
        "linkedin_webhook_secret"
    )
    assert ring.signing == new and ring.keys == (new, old)
    assert split_keys(SecretStr("")) == [] and split_keys(None) == []


def test_secrets_never_show_in_reprs() -> None:
    secret = signing_key("do-not-print")
    settings = OutreachSettings(**{**GOOD_OUTREACH, "linkedin_webhook_secret": secret}, smtp_password="hunter2-long")
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert secret not in shown and "hunter2" not in shown
    spec = SecretSpec("LEADSTREAM_X", SecretStr(secret), "x", "whsec")
    assert secret not in repr(spec)


def test_the_refusal_is_a_clear_exit_of_the_process(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_")}
    env["LEADSTREAM_ENV"] = "production"
    env["LEADSTREAM_VIDEO_WEBHOOK_SECRET"] = development_key("video studio callbacks")
    done = subprocess.run(
        [sys.executable, "-m", "services.video"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert "video refuses to start" in done.stderr
    assert "LEADSTREAM_VIDEO_WEBHOOK_SECRET (video studio callbacks) is a development default" in done.stderr
    assert "Traceback" not in done.stderr


def test_runtime_defaults_are_production() -> None:
    os_env = os.environ.pop("LEADSTREAM_ENV")
    try:
        assert RuntimeSettings().env == "production" and RuntimeSettings().docs is False
    finally:
        os.environ["LEADSTREAM_ENV"] = os_env
    assert RuntimeSettings(env="development").docs is True
    assert RuntimeSettings(env="production", docs_enabled=True).docs is True


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://videos.example/v.mp4", True),
        ("https://cdn.videos.example/v.mp4", True),  # ".videos.example" allows subdomains
        ("https://videos.example:443/v.mp4", True),
        ("http://videos.example/v.mp4", False),
        ("https://videos.example.evil.example/v.mp4", False),
        ("https://evilvideos.example/v.mp4", False),
        ("https://a@videos.example/v.mp4", False),
        ("https://videos.example:8443/v.mp4", False),
        ("https://videos.example/v.mp4\n<script>", False),
        ("https://videos.example/" + "a" * 3000, False),
        ("javascript:alert(1)", False),
        ("https://[::1/", False),
    ],
)
def test_links_sent_to_leads(url: str, ok: bool) -> None:
    hosts = allowed_hosts("videos.example, .videos.example")
    assert (link_refusal(url, hosts) is None) is ok
