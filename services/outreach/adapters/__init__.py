"""The providers outreach talks to, behind Protocols: a LinkedIn provider and an email sender.

Every sending call carries a deterministic ``request_id`` (uuid5 of campaign, lead and step), the id
of the send intent committed before the call: the provider's idempotency key. ``lookup(request_id)``
asks the provider whether a request with that key was performed, so a send whose answer was lost (a
crash, a timeout) is settled from the provider's word, never resent blindly; a provider that cannot say
(SMTP) raises :class:`LookupUnsupported` and the send's outcome is recorded as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal, Protocol, runtime_checkable

from services.runtime.providers import ProviderError


class LimitReached(ProviderError):
    """The provider refused because the account reached one of LinkedIn's limits: the account waits for its
    next window (its status ``status`` says which limit), leads wait, nothing fails."""

    status_word: ClassVar[str] = "limit_reached"
    what: ClassVar[str] = "limit"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or f"{self.what} reached", transient=False, status=422)


class InvitationLimitReached(LimitReached):
    """The provider refused an invite because the account reached its invitation limit."""

    status_word = "limit_reached"
    what = "invitation limit"


class MessageLimitReached(LimitReached):
    """The provider refused a message because the account reached its (weekly) message limit."""

    status_word = "message_limit_reached"
    what = "message limit"


class LookupUnsupported(ProviderError):
    """The provider cannot say whether a request was performed (SMTP has no such query)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


@dataclass(frozen=True)
class LeadTarget:
    """Who an action is aimed at."""

    lead_id: str
    linkedin_url: str | None = None
    full_name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class SendRequest:
    """One LinkedIn action: from ``account_id`` to ``lead`` (text, post and video as the action needs)."""

    request_id: str
    workspace_id: str
    campaign_id: str
    step_id: str
    account_id: str
    provider_account_id: str | None
    lead: LeadTarget
    text: str | None = None
    post_url: str | None = None
    video_url: str | None = None


@dataclass(frozen=True)
class FollowUp:
    """Something the lead will do later, as a simulated provider foresees it (accept, reply)."""

    kind: Literal["accepted", "replied"]
    at: datetime
    channel: str = "message"
    text: str | None = None
    out_of_office: bool = False


@dataclass(frozen=True)
class SendResult:
    """The provider's answer: its id for the action, and (simulated only) what the lead will do next."""

    provider_ref: str | None = None
    followups: tuple[FollowUp, ...] = field(default_factory=tuple)


class LinkedInProvider(Protocol):
    """Sends LinkedIn actions from a connected account (Unipile-style API)."""

    name: str

    async def send_invite(self, req: SendRequest, now: datetime) -> SendResult: ...

    async def send_message(self, req: SendRequest, now: datetime) -> SendResult: ...

    async def like_post(self, req: SendRequest, now: datetime) -> SendResult: ...

    async def comment_post(self, req: SendRequest, now: datetime) -> SendResult: ...

    async def lookup(self, request_id: str) -> SendResult | None:
        """The answer to the request sent with this idempotency key; None when the provider never performed it."""
        ...

    async def is_connected(self, account_id: str, provider_account_id: str | None, lead: LeadTarget) -> bool: ...

    async def hosted_auth_link(
        self,
        account_id: str,
        notify_url: str,
        now: datetime,
        *,
        return_url: str | None = None,
        reconnect: str | None = None,
    ) -> str:
        """A hosted page where the user connects (or, with ``reconnect`` = the provider's account id,
        reconnects) LinkedIn; the provider then calls ``notify_url`` and sends the user to ``return_url``."""
        ...

    async def account_status(self, account_id: str, provider_account_id: str | None) -> str: ...


@dataclass(frozen=True)
class InboundMessage:
    """A message a lead sent to a LinkedIn account (read from the provider's inbox)."""

    message_id: str
    profile_url: str | None
    text: str
    sent_at: datetime


@runtime_checkable
class LinkedInInbox(Protocol):
    """A LinkedIn provider whose inbox can be read (for accounts whose replies come without webhooks)."""

    async def inbox(
        self, account_id: str, provider_account_id: str | None, since: datetime, now: datetime, limit: int
    ) -> list[InboundMessage]:
        """Messages leads sent to the account after ``since`` (and by ``now``), oldest first, ``limit`` at most."""
        ...


@dataclass(frozen=True)
class EmailMessage:
    """A complete email (body already carries the unsubscribe footer)."""

    request_id: str
    sender: str
    to: str
    subject: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SenderVerification:
    """What an email provider says of a sender address: ``pending`` until its owner confirms it (the provider
    sent them a confirmation email), ``verified``, or ``failed`` (refused, expired; ``detail`` says why).
    ``sender_id`` is the provider's id of the sender, to ask about it later."""

    status: Literal["pending", "verified", "failed"]
    sender_id: str | None = None
    detail: str | None = None


@runtime_checkable
class SenderVerifier(Protocol):
    """An email provider that verifies sender addresses itself (a sender signature, a verified identity). A
    sender without one (an SMTP mailbox) is confirmed by outreach's own link instead (``senders.py``)."""

    async def request_verification(
        self, account_id: str, sender_email: str, notify_url: str, now: datetime
    ) -> SenderVerification:
        """Ask the provider to verify ``sender_email`` (idempotent per account); it calls ``notify_url`` back
        (signed) when the owner confirmed, and answers :meth:`verification_status` meanwhile."""
        ...

    async def verification_status(self, sender_id: str, sender_email: str, now: datetime) -> SenderVerification:
        """The provider's word on a sender it was asked to verify."""
        ...


class EmailSender(Protocol):
    """Sends emails (HTTP email API or SMTP relay)."""

    name: str

    async def send(self, message: EmailMessage) -> str: ...

    async def lookup(self, request_id: str) -> str | None:
        """The message id of the email sent with this idempotency key; None when it was never sent
        (:class:`LookupUnsupported` when the sender cannot say)."""
        ...
