"""An email sender over SMTP: send from the team's own mailbox (Google Workspace, Microsoft 365, any relay).

SMTP has no idempotency key and no way to ask whether a message was accepted, so outreach never
resends an email whose answer was lost (its outcome is recorded as unknown); the Message-ID is derived
from the step's request id all the same, so any copy can be recognised.

Replies map onto the shared provider errors (SMTP replies carry no Retry-After, so the wait is a setting):

- 421, 450, 451, 452, or any reply that speaks of a rate, quota or "too many" -> RateLimited
  (a daily-quota 5xx such as Gmail's ``550 5.4.5`` waits an hour instead: the quota comes back, the
  recipient was never the problem);
- other 4xx, connection refused or lost, timeouts -> transient ProviderError (a session lost after the
  connect may have lost the answer to DATA: ``maybe_performed``);
- AUTH refused with 5xx (530, 534, 535) -> SmtpAuthenticationFailed, permanent, naming the settings;
- other 5xx (550 mailbox unavailable, 553 bad address, 554 rejected) -> permanent ProviderError;
- a server that lacks what the settings require (STARTTLS, AUTH, SMTPUTF8), an unverifiable TLS
  certificate, or a message that cannot be built -> permanent ProviderError.
"""

from __future__ import annotations

import re
import ssl
import uuid
from datetime import timedelta
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING

import aiosmtplib
from pydantic import SecretStr

from services.runtime.clock import Clock, SystemClock
from services.runtime.providers import ProviderError, RateLimited

from . import EmailMessage, LookupUnsupported

if TYPE_CHECKING:
    from ..settings import OutreachSettings

RATE_LIMIT_CODES = frozenset({421, 450, 451, 452})
AUTH_HINT = (
    "check LEADSTREAM_SMTP_USERNAME and LEADSTREAM_SMTP_PASSWORD (Google Workspace and Microsoft 365 need "
    "an app password or SMTP AUTH enabled for the mailbox)"
)
QUOTA_RETRY = timedelta(hours=1)
# Gmail's "5.4.5 Daily user sending limit exceeded", Microsoft's "SubmissionQuotaExceeded", relays' "rate limit".
_THROTTLED = re.compile(r"\b[45]\.4\.5\b|quota|rate.?limit|sending limit|too many|throttl", re.IGNORECASE)


class SmtpAuthenticationFailed(ProviderError):
    """The SMTP server refused the login: the credentials are wrong (never worth retrying as they are)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, transient=False, status=code)


def message_id(request_id: str, sender: str) -> str:
    """The Message-ID of a send: the same for every retry of one request, in the sender's domain."""
    domain = sender.rpartition("@")[2] or "leadstream.invalid"
    return f"<{uuid.uuid5(uuid.NAMESPACE_URL, request_id)}@{domain}>"


def build_mime(message: EmailMessage, now_date: str) -> MimeMessage:
    """The RFC 5322 message: From, To, Subject, Date, a deterministic Message-ID, the given extra headers
    (List-Unsubscribe and List-Unsubscribe-Post for one-click unsubscribe) and a plain-text body."""
    mime = MimeMessage()
    mime["From"] = message.sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = now_date
    mime["Message-ID"] = message_id(message.request_id, envelope_address(mime, "From"))
    for name, value in message.headers.items():
        if not value:
            continue
        if name in mime:
            mime.replace_header(name, value)
        else:
            mime[name] = value
    mime.set_content(message.body)
    return mime


def envelope_address(mime: MimeMessage, header: str) -> str:
    """The bare address (``local@domain``) of a From/To header, for the SMTP envelope."""
    addresses: tuple[Address, ...] = getattr(mime[header], "addresses", ())
    if not addresses or not addresses[0].addr_spec or "@" not in addresses[0].addr_spec:
        raise ProviderError(f"email {header} has no usable address: {mime[header]!r}", transient=False)
    return addresses[0].addr_spec


class SmtpEmailSender:
    """Sends each email over its own SMTP connection (STARTTLS or implicit TLS, then AUTH if a user is set)."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        username: str = "",
        password: SecretStr | None = None,
        starttls: bool = True,
        use_tls: bool = False,
        timeout_s: float = 20.0,
        retry_after_s: float = 300.0,
        clock: Clock | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = password or SecretStr("")
        self.use_tls = use_tls
        # Implicit TLS already encrypts the session; aiosmtplib refuses both at once.
        self.starttls = starttls and not use_tls
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.clock = clock or SystemClock()
        self.tls_context = tls_context

    @classmethod
    def from_settings(cls, settings: OutreachSettings, clock: Clock | None = None) -> SmtpEmailSender:
        """The sender the ``smtp_*`` settings describe."""
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_use_tls,
            timeout_s=settings.smtp_timeout_s,
            retry_after_s=settings.smtp_retry_after_s,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"SmtpEmailSender({self.host}:{self.port}, user={self.username!r})"

    async def send(self, message: EmailMessage) -> str:
        """Send one email; returns its Message-ID (stable across retries of the same request)."""
        try:
            mime = build_mime(message, format_datetime(self.clock.now()))
            sender, recipient = envelope_address(mime, "From"), envelope_address(mime, "To")
        except (ValueError, TypeError, IndexError) as exc:
            raise ProviderError(f"cannot build the email: {exc}", transient=False) from exc
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username or None,
            password=self._password.get_secret_value() if self.username else None,
            use_tls=self.use_tls,
            start_tls=self.starttls,
            timeout=self.timeout_s,
            tls_context=self.tls_context,
        )
        try:
            async with client:
                await client.send_message(mime, sender=sender, recipients=[recipient])
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise self._translate(exc) from exc
        return str(mime["Message-ID"])

    async def lookup(self, request_id: str) -> str | None:
        """SMTP cannot be asked whether a message was accepted: a send whose answer was lost stays unknown."""
        raise LookupUnsupported(f"SMTP server {self.host}:{self.port} cannot say whether a message was sent")

    # -- errors ----------------------------------------------------------------------------------

    def _reply(self, code: int, text: str, what: str) -> ProviderError:
        """A refusal by SMTP reply code and text."""
        detail = f"{what}: SMTP server {self.host}:{self.port} answered {code} {text}".rstrip()
        if _THROTTLED.search(text) and 400 <= code < 600:
            wait = self.retry_after_s if code < 500 else QUOTA_RETRY.total_seconds()
            return RateLimited(wait, detail)
        if code in RATE_LIMIT_CODES:
            return RateLimited(self.retry_after_s, detail)
        return ProviderError(detail, transient=not 500 <= code < 600, status=code)

    def _translate(self, exc: aiosmtplib.SMTPException | OSError | ValueError) -> ProviderError:
        """An aiosmtplib (or socket) failure as the shared provider errors."""
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError) and 500 <= exc.code < 600:
            return SmtpAuthenticationFailed(
                f"SMTP authentication as {self.username!r} on {self.host}:{self.port} failed ({exc.code} "
                f"{exc.message}): the credentials are wrong; {AUTH_HINT}",
                exc.code,
            )
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
            first = exc.recipients[0]
            return self._reply(first.code, first.message, f"recipient {first.recipient} refused")
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            return self._reply(exc.code, exc.message, f"sender {exc.sender} refused (may this login send as it?)")
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return self._reply(exc.code, exc.message, type(exc).__name__)
        if _caused_by(exc, ssl.SSLCertVerificationError):
            return ProviderError(
                f"TLS certificate of {self.host}:{self.port} could not be verified: {exc}", transient=False
            )
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return ProviderError(f"SMTP server {self.host}:{self.port}: {exc}", transient=False)
        # Refused, reset, lost and timed-out connections (aiosmtplib's included) are all OSErrors. Only a
        # failed connect is sure to have sent nothing: a session lost later may have lost the answer to DATA.
        if isinstance(exc, OSError):
            return ProviderError(
                f"SMTP server {self.host}:{self.port} unreachable: {exc}",
                transient=True,
                maybe_performed=not isinstance(exc, aiosmtplib.SMTPConnectError),
            )
        if isinstance(exc, aiosmtplib.SMTPException):
            # What is left are configuration mismatches: STARTTLS or AUTH required but not offered.
            return ProviderError(f"SMTP server {self.host}:{self.port}: {exc}", transient=False)
        return ProviderError(f"cannot send the email: {exc}", transient=False)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or one of its causes is a ``kind``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
