"""The SMTP email sender against a real local SMTP server (aiosmtpd): the message as it arrives, AUTH,
and how refusals map onto the shared provider errors (451 -> RateLimited, 550 -> permanent, 535 -> wrong
credentials, nobody listening -> transient). Also: the app picks this sender for ``email_provider=smtp``."""

from __future__ import annotations

import email
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage as MimeMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr, ValidationError

from services.outreach.adapters import EmailMessage
from services.outreach.adapters.smtp import SmtpAuthenticationFailed, SmtpEmailSender, message_id
from services.outreach.app import build, context_of
from services.outreach.settings import OutreachSettings
from services.runtime.clock import FakeClock
from services.runtime.providers import ProviderError, RateLimited
from tests.support.probe.process import free_port

NOW = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
USER, PASSWORD = "sam@ours.example", "app-password-123"
UNSUBSCRIBE = "https://outreach.example/v1/unsubscribe/ws-a/lead-1?t=abc"


@dataclass
class Received:
    """One accepted message: the envelope, the login it came with, the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    login: str | None
    message: MimeMessage


@dataclass
class Mailbox:
    """The test server's handler: records deliveries and AUTH attempts, refuses recipients as told."""

    refuse: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        auth = session.auth_data
        message = email.message_from_bytes(envelope.original_content, policy=default_policy)
        assert isinstance(message, MimeMessage)
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), auth.login.decode() if auth else None, message)
        )
        return "250 2.0.0 queued"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == (USER, PASSWORD)
        self.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "?", ok))
        # handled=False: the server answers the refusal itself (535 5.7.8).
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server on 127.0.0.1 (its own thread) with AUTH PLAIN/LOGIN over plain TCP."""
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def sender_for(port: int, *, password: str = PASSWORD, **kwargs: Any) -> SmtpEmailSender:
    values: dict[str, Any] = {"username": USER, "starttls": False, "timeout_s": 5.0, "retry_after_s": 120.0}
    values.update(kwargs)
    return SmtpEmailSender("127.0.0.1", port, password=SecretStr(password), clock=FakeClock(NOW), **values)


def outreach_email(to: str, request_id: str = "req-1") -> EmailMessage:
    """An email as steps.py builds it (body with the footer, RFC 8058 headers)."""
    return EmailMessage(
        request_id=request_id,
        sender="Sam Seller <sam@ours.example>",
        to=to,
        subject="Quick question, Ada",
        body=f"Hi Ada, grüße from Berlin.\n\n--\nNot interested? Unsubscribe with one click: {UNSUBSCRIBE}\n",
        headers={"List-Unsubscribe": f"<{UNSUBSCRIBE}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )


async def test_message_arrives_with_headers_and_authenticated(smtp_server: tuple[int, Mailbox]) -> None:
    port, mailbox = smtp_server
    sender = sender_for(port)
    first = await sender.send(outreach_email("ada@lead.example"))
    assert first == message_id("req-1", "ours.example")
    assert mailbox.logins == [(USER, True)]
    [got] = mailbox.received
    assert (got.mail_from, got.rcpt_tos, got.login) == ("sam@ours.example", ["ada@lead.example"], USER)
    msg = got.message
    assert str(msg["From"]) == "Sam Seller <sam@ours.example>"
    assert (str(msg["To"]), str(msg["Subject"])) == ("ada@lead.example", "Quick question, Ada")
    assert str(msg["Message-ID"]) == first and first.endswith("@ours.example>")
    assert str(msg["List-Unsubscribe"]) == f"<{UNSUBSCRIBE}>"
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert str(msg["Date"]) == format_datetime(NOW)
    assert not msg.is_multipart() and msg.get_content_type() == "text/plain"
    assert "grüße from Berlin" in msg.get_content() and UNSUBSCRIBE in msg.get_content()
    # A retry of the same step (same request id) carries the same Message-ID; another step does not.
    assert await sender.send(outreach_email("ada@lead.example")) == first
    other = await sender.send(outreach_email("ada@lead.example", request_id="req-2"))
    assert other != first
    assert [str(r.message["Message-ID"]) for r in mailbox.received] == [first, first, other]


async def test_wrong_credentials_are_a_clear_permanent_error(smtp_server: tuple[int, Mailbox]) -> None:
    port, mailbox = smtp_server
    with pytest.raises(SmtpAuthenticationFailed) as failed:
        await sender_for(port, password="wrong-secret").send(outreach_email("ada@lead.example"))
    assert not failed.value.transient and failed.value.status == 535
    assert "credentials are wrong" in str(failed.value) and "LEADSTREAM_SMTP_PASSWORD" in str(failed.value)
    assert "wrong-secret" not in str(failed.value)
    assert mailbox.logins and not any(ok for _, ok in mailbox.logins)
    assert mailbox.received == []


async def test_451_is_rate_limited_and_retried(smtp_server: tuple[int, Mailbox]) -> None:
    port, mailbox = smtp_server
    mailbox.refuse["busy@lead.example"] = "451 4.7.1 Try again later"
    with pytest.raises(RateLimited) as limited:
        await sender_for(port).send(outreach_email("busy@lead.example"))
    assert limited.value.transient and limited.value.retry_after_s == 120.0
    assert "451" in str(limited.value)
    assert mailbox.received == []


async def test_550_is_permanent_for_that_recipient(smtp_server: tuple[int, Mailbox]) -> None:
    port, mailbox = smtp_server
    mailbox.refuse["gone@lead.example"] = "550 5.1.1 Mailbox unavailable"
    sender = sender_for(port)
    with pytest.raises(ProviderError) as refused:
        await sender.send(outreach_email("gone@lead.example"))
    assert not isinstance(refused.value, RateLimited)
    assert not refused.value.transient and refused.value.status == 550
    assert "gone@lead.example" in str(refused.value)
    # Only that recipient: the next email goes out.
    await sender.send(outreach_email("ada@lead.example", request_id="req-2"))
    assert [r.rcpt_tos for r in mailbox.received] == [["ada@lead.example"]]


async def test_a_daily_quota_5xx_waits_instead_of_failing_the_lead(smtp_server: tuple[int, Mailbox]) -> None:
    port, mailbox = smtp_server
    mailbox.refuse["ada@lead.example"] = "550 5.4.5 Daily user sending limit exceeded"
    with pytest.raises(RateLimited) as limited:
        await sender_for(port).send(outreach_email("ada@lead.example"))
    assert limited.value.retry_after_s == 3600.0


async def test_nobody_listening_is_transient() -> None:
    with pytest.raises(ProviderError) as down:
        await sender_for(free_port()).send(outreach_email("ada@lead.example"))
    assert down.value.transient and not isinstance(down.value, RateLimited)
    assert "unreachable" in str(down.value)


async def test_required_starttls_missing_fails_before_any_credentials(smtp_server: tuple[int, Mailbox]) -> None:
    port, mailbox = smtp_server
    with pytest.raises(ProviderError) as plain:
        await sender_for(port, starttls=True).send(outreach_email("ada@lead.example"))
    assert not plain.value.transient and "STARTTLS" in str(plain.value)
    assert mailbox.logins == [] and mailbox.received == []


async def test_app_picks_the_smtp_sender(make_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_SMTP_PASSWORD", PASSWORD)
    settings = make_settings(
        "outreach", OutreachSettings, email_provider="smtp", smtp_host="smtp.ours.example", smtp_username=USER
    )
    assert settings.smtp_password.get_secret_value() == PASSWORD and PASSWORD not in repr(settings)
    service = build(settings, FakeClock(NOW))
    try:
        sender = context_of(service).email
        assert isinstance(sender, SmtpEmailSender)
        assert (sender.host, sender.port, sender.username, sender.starttls, sender.use_tls) == (
            "smtp.ours.example",
            587,
            USER,
            True,
            False,
        )
        assert PASSWORD not in repr(sender)
        # The service's own emails leave from the mailbox it logs in to: providers refuse other senders.
        assert context_of(service).account_status.sender == USER
    finally:
        await service.engine.dispose()


def test_an_unknown_email_provider_is_refused_at_start(make_settings: Any) -> None:
    with pytest.raises(ValidationError, match="email_provider"):
        make_settings("outreach", OutreachSettings, email_provider="smpt")
