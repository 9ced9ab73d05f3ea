"""Outreach settings (``LEADSTREAM_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from services.runtime.secrets import SecretSpec
from services.runtime.settings import RuntimeSettings


class OutreachSettings(RuntimeSettings):
    """Settings of the outreach service."""

    service_name: str = "outreach"
    http_port: int = 8104

    linkedin_provider: Literal["simulated", "http"] = Field(
        "simulated", description="simulated | http (Unipile-style REST API)"
    )
    unipile_base_url: str = Field("http://127.0.0.1:9999", description="Base URL of the LinkedIn provider API.")
    unipile_api_key: SecretStr = Field(
        SecretStr(""), description="API key of the LinkedIn provider (from the environment)."
    )
    email_provider: Literal["simulated", "http", "smtp"] = Field(
        "simulated", description="simulated | http (HTTP email API) | smtp (your own mailbox over SMTP)"
    )
    notification_sender: str = Field(
        "",
        description="From address of the service's own emails (account reconnect requests); empty: the SMTP "
        "login with the smtp provider (mailbox providers refuse other senders), else no-reply@leadstream.invalid.",
    )
    email_api_url: str = Field("http://127.0.0.1:9998", description="Base URL of the HTTP email API.")
    email_api_key: SecretStr = Field(SecretStr(""), description="API key of the email API (from the environment).")
    smtp_host: str = Field("127.0.0.1", description="SMTP server (smtp.gmail.com, smtp.office365.com, a relay).")
    smtp_port: int = Field(587, ge=1, le=65535, description="587 (submission with STARTTLS) or 465 (implicit TLS).")
    smtp_username: str = Field("", description="SMTP login (usually the mailbox address); empty: no AUTH.")
    smtp_password: SecretStr = Field(
        SecretStr(""), description="SMTP password or app password (from the environment only; never logged)."
    )
    smtp_starttls: bool = Field(True, description="Upgrade the connection with STARTTLS (required when true).")
    smtp_use_tls: bool = Field(False, description="Implicit TLS from the first byte (port 465); wins over STARTTLS.")
    smtp_timeout_s: float = Field(20.0, gt=0, description="Timeout of each SMTP connect and command.")
    smtp_retry_after_s: float = Field(
        300.0, gt=0, description="Wait before retrying after a 421/450/451/452 reply (SMTP replies carry no delay)."
    )
    reply_inbox: Literal["none", "imap"] = Field(
        "none",
        description="Read replies from the SMTP mailbox: none | imap (IDLE, and polling every inbox_poll_interval_s).",
    )
    imap_host: str = Field(
        "", description="IMAP server of the mailbox replies arrive in (imap.gmail.com, ...); empty: smtp_host."
    )
    imap_port: int = Field(993, ge=1, le=65535, description="993 (implicit TLS) or 143 (plain, loopback only).")
    imap_username: str = Field("", description="IMAP login; empty: the SMTP login.")
    imap_password: SecretStr = Field(SecretStr(""), description="IMAP password; empty: the SMTP password.")
    imap_mailbox: str = Field("INBOX", description="The folder replies arrive in.")
    imap_use_tls: bool = Field(True, description="Implicit TLS (port 993); false only for a server on loopback.")
    imap_idle: bool = Field(
        True, description="Keep an IMAP IDLE session so new mail is read at once, not at the next poll."
    )
    imap_timeout_s: float = Field(20.0, gt=0, description="Timeout of the IMAP connect and of each command.")
    linkedin_inbox_poll: bool = Field(
        False, description="Poll every LinkedIn account's provider inbox for replies (providers without webhooks)."
    )
    inbox_poll_interval_s: float = Field(
        60.0, gt=0, description="Seconds (campaign time) between two polls of an inbox."
    )
    inbox_batch: int = Field(100, ge=1, le=1000, description="Messages read from an inbox per poll at most.")
    inbox_first_lookback_h: float = Field(
        24.0,
        gt=0,
        description="A new inbox (or a rebuilt IMAP mailbox) is read back this many hours, not from its start.",
    )
    email_real_sends: bool = Field(
        False, description="Send emails for real. Off by default: emails are dry-run (ActionSkipped dry_run)."
    )
    public_base_url: str | None = Field(
        None,
        max_length=500,
        description="Public https URL of this service, where unsubscribe links and provider callbacks point "
        "(required outside development; development: http://127.0.0.1:<http port>).",
    )
    linkedin_webhook_secret: SecretStr | None = Field(
        None,
        description="Standard Webhooks secret(s) (whsec_...) of the LinkedIn provider: its webhooks, account "
        "status and connect callbacks. Comma-separated to rotate: the first signs, all verify.",
    )
    email_webhook_secret: SecretStr | None = Field(
        None,
        description="Standard Webhooks secret(s) (whsec_...) of the email provider: replies, bounces, complaints "
        "and sender verifications. Comma-separated to rotate.",
    )
    unsubscribe_secret: SecretStr | None = Field(
        None,
        description="Key(s) of the HMAC in unsubscribe links and sender confirmation links (at least 32 "
        "characters). Comma-separated to rotate: the first signs new links, all open old ones (keep an old key as "
        "long as its emails may be clicked).",
    )
    reconnect_email_to: str = Field("owner@leadstream.invalid", description="Default recipient of reconnect emails.")
    sender_check_interval_s: float = Field(
        300.0,
        gt=0,
        description="Seconds (campaign time) between two questions to the email provider about a sender address "
        "waiting for verification (its callback may come first).",
    )
    sender_verification_timeout_h: float = Field(
        72.0,
        gt=0,
        description="A sender address not confirmed within this many hours is marked verification_failed "
        "(POST /v1/accounts/{id}/verify asks again).",
    )

    timer_loop_enabled: bool = Field(True, description="Run the durable timer loop in this process.")
    timer_poll_interval_s: float = Field(
        0.2,
        gt=0,
        description="The most often the timer loops look for due rows (real seconds; "
        "idle, it sleeps until the next is due, at most timer_idle_max_s).",
    )
    timer_max_attempts: int = Field(5, ge=1, description="Provider attempts of one step before ActionFailed.")
    rate_limited_give_up_h: float = Field(
        24.0,
        gt=0,
        description="A step the provider keeps rate-limiting for this many hours fails (ActionFailed "
        "rate_limited) instead of waiting for ever.",
    )
    send_reconcile_after_s: float = Field(
        60.0,
        ge=0,
        description="Wall-clock seconds after which a send intent without a recorded answer (a crash, a lost "
        "answer) is reconciled: the provider is asked by its idempotency key. Must exceed any provider call "
        "(provider_timeout_s), so a call still under way is never taken for a lost one.",
    )
    send_reconcile_max_attempts: int = Field(
        8, ge=1, description="Lookups of one send intent that may fail before its outcome is recorded as unknown."
    )
    video_wait_minutes: int = Field(
        60, ge=1, description="Failsafe: invites and messages wait this long (from enrolment) for the video."
    )
    provider_timeout_s: float = Field(15.0, gt=0)

    sim_accept_rate: float = Field(0.6, ge=0, le=1, description="Simulated share of invites accepted.")
    sim_reply_rate: float = Field(0.3, ge=0, le=1, description="Simulated share of messages answered.")
    sim_out_of_office_rate: float = Field(0.05, ge=0, le=1, description="Simulated share of out-of-office replies.")
    sim_connected_rate: float = Field(0.25, ge=0, le=1, description="Simulated share of leads already connected.")
    sim_invite_limit_per_week: int = Field(200, ge=1, description="Simulated provider's weekly invitation limit.")
    sim_message_limit_per_week: int = Field(1000, ge=1, description="Simulated provider's weekly message limit.")
    sim_sender_verify_after_s: float = Field(
        0.0,
        ge=0,
        le=7 * 86400,
        description="When the simulated email provider's sender owner confirms the address (campaign time after "
        "the request; 0: at once, the sender is verified when added).",
    )
    sim_transient_error_rate: float = Field(0.03, ge=0, le=1)

    def secret_specs(self) -> list[SecretSpec]:
        """The provider webhook keys, the unsubscribe key, and the API keys of the providers switched to http."""
        specs = [
            *super().secret_specs(),
            self.secret("linkedin_webhook_secret", "LinkedIn provider webhooks", "whsec"),
            self.secret("email_webhook_secret", "email provider webhooks", "whsec"),
            self.secret("unsubscribe_secret", "unsubscribe links", "key"),
        ]
        if self.linkedin_provider == "http":
            specs.append(self.secret("unipile_api_key", "LinkedIn provider API", "credential"))
        if self.email_provider == "http":
            specs.append(self.secret("email_api_key", "email API", "credential"))
        return specs

    def production_problems(self) -> list[str]:
        """Unsubscribe links must reach people: a public https base URL."""
        problems = super().production_problems()
        if not self.public_base_url:
            problems.append("LEADSTREAM_PUBLIC_BASE_URL is not set (unsubscribe links and provider callbacks)")
        elif not self.public_base_url.startswith("https://"):
            problems.append("LEADSTREAM_PUBLIC_BASE_URL must be an https URL (unsubscribe links)")
        return problems

    def base_url(self) -> str:
        """Where unsubscribe links and provider callbacks point (no trailing slash)."""
        return (self.public_base_url or f"http://127.0.0.1:{self.http_port}").rstrip("/")
