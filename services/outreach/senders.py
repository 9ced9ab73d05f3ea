"""Email sender verification: a campaign may only send from an address its owner confirmed.

``POST /v1/accounts {"provider": "email", "sender_email": ...}`` asks the email provider to verify the address
(:class:`~.adapters.SenderVerifier`: the provider emails its owner a confirmation link). The provider's answer
decides what the account is:

- ``verified`` at once (the simulated provider by default): the account is connected (``AccountConnected``);
- ``failed`` at once: a 422 naming ``sender_email`` with the provider's reason, nothing is stored;
- ``pending``: the account waits (``status: pending``). It is verified by whichever comes first: the provider's
  signed callback (``POST /v1/accounts/callback`` with ``status: verified``), or a ``sender_check`` timer that asks
  the provider every ``LEADSTREAM_SENDER_CHECK_INTERVAL_S`` (campaign time). The provider saying ``failed``, or no
  confirmation within ``LEADSTREAM_SENDER_VERIFICATION_TIMEOUT_H``, marks it ``verification_failed``
  (``AccountStatusChanged``, the reason in ``verification.detail``); ``POST /v1/accounts/{id}/verify`` asks again.

A provider without a verification API (an SMTP mailbox) gets outreach's own confirmation link instead: an email
to the address with a signed link to ``GET /v1/accounts/{id}/confirm?t=...`` (dry-run unless
``LEADSTREAM_EMAIL_REAL_SENDS``: then the link is shown in ``verification.detail``), and the same timeout.

The commands here run in the caller's transaction with the account row locked; the provider is asked before a
new account is stored (its answer decides whether it is) and inside the check's transaction (a short status
query, as the inbox polls do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from leadstream_schemas import AccountConnected, AccountStatusChanged
from sqlalchemy import update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.providers import ProviderError
from services.runtime.secrets import KeyRing
from services.runtime.webhooks import check_link_token, link_token

from . import timers as tm
from .accounts import CONNECTED, FAILED, PENDING, lock_account
from .adapters import EmailMessage, EmailSender, SenderVerification, SenderVerifier
from .emit import Emitter
from .models import VerificationOut
from .settings import OutreachSettings
from .store import accounts, timers

log = logging.getLogger(__name__)

SENDER_CHECK = "sender_check"


def check_key(account_id: UUID) -> str:
    """The unique key of an account's sender-check timer."""
    return f"sender:{account_id}"


def verification_view(row: Row[Any]) -> VerificationOut | None:
    """The API shape of an email account's verification (None for other accounts)."""
    if row.provider != "email":
        return None
    return VerificationOut(
        status="verified" if row.sender_email_verified else "failed" if row.status == FAILED else "pending",
        requested_at=row.verification_requested_at,
        checked_at=row.verification_checked_at,
        detail=row.verification_detail,
    )


@dataclass
class Senders:
    """Verifies email senders with the configured email provider (or outreach's own confirmation link)."""

    settings: OutreachSettings
    email: EmailSender
    notification_sender: str

    @property
    def interval(self) -> timedelta:
        """How long a pending sender waits between two questions to the provider."""
        return timedelta(seconds=self.settings.sender_check_interval_s)

    @property
    def timeout(self) -> timedelta:
        """How long an owner has to confirm the address."""
        return timedelta(hours=self.settings.sender_verification_timeout_h)

    def _base(self) -> str:
        return self.settings.base_url()

    def confirm_url(self, account_id: UUID, sender_email: str) -> str:
        """Outreach's own confirmation link for a provider without verification (signed, one account)."""
        token = link_token(self._link_keys(), "sender", str(account_id), sender_email)
        return f"{self._base()}/v1/accounts/{account_id}/confirm?t={token}"

    def link_is_valid(self, account_id: UUID, sender_email: str, token: str) -> bool:
        """Whether ``token`` is the confirmation link's for this account and address."""
        return check_link_token(self._link_keys(), token, "sender", str(account_id), sender_email)

    def _link_keys(self) -> KeyRing:
        # The key ring of outreach's one-click links (unsubscribe); a token binds "sender", the account and the
        # address, so it can never open an unsubscribe link (workspace, lead) or another account's confirmation.
        return self.settings.keys("unsubscribe_secret")

    async def ask(self, account_id: UUID, sender_email: str, now: datetime) -> SenderVerification:
        """Ask the provider to verify the address (before anything is stored). ProviderError when it cannot be
        asked now; a provider without verification gets the confirmation link (:meth:`send_link`)."""
        if isinstance(self.email, SenderVerifier):
            return await self.email.request_verification(
                str(account_id), sender_email, f"{self._base()}/v1/accounts/callback", now
            )
        return SenderVerification("pending")

    async def send_link(self, account_id: UUID, sender_email: str) -> str | None:
        """Email outreach's confirmation link to the address (a provider without verification); what to show
        as the verification's detail. Dry-run unless real sends are on: then the link itself is shown."""
        if isinstance(self.email, SenderVerifier):
            return None
        url = self.confirm_url(account_id, sender_email)
        if not self.settings.email_real_sends:
            return f"dry run (LEADSTREAM_EMAIL_REAL_SENDS is off): no confirmation email sent; confirm with {url}"
        try:
            await self.email.send(
                EmailMessage(
                    request_id=f"sender-confirm:{account_id}",
                    sender=sender_email,
                    to=sender_email,
                    subject="Confirm this address for sending from leadstream",
                    body=f"Someone added {sender_email} as a sending address in leadstream. If it was you, confirm "
                    f"it by opening this link:\n\n{url}\n\nIf it was not, ignore this email.",
                )
            )
        except ProviderError as exc:
            return f"the confirmation email could not be sent ({exc}); POST /v1/accounts/{account_id}/verify"
        return f"a confirmation link was emailed to {sender_email}"

    async def started(
        self, conn: AsyncConnection, em: Emitter, account: Row[Any], verdict: SenderVerification, now: datetime
    ) -> None:
        """Apply the provider's first answer to a (locked) account just asked for: verified, or pending with a
        check timer (a failed answer never gets here: the request is refused instead)."""
        await conn.execute(
            update(accounts)
            .where(accounts.c.account_id == account.account_id)
            .values(
                provider_account_id=verdict.sender_id or account.provider_account_id,
                verification_requested_at=now,
                verification_checked_at=now,
                verification_detail=verdict.detail,
                updated_at=now,
            )
        )
        if verdict.status == "verified":
            await self.verified(conn, em, account, now)
            return
        due = self._next_check(now, now)
        await tm.schedule(
            conn,
            key=check_key(account.account_id),
            workspace_id=account.workspace_id,
            kind=SENDER_CHECK,
            due_at=due,
            now=now,
            account_id=account.account_id,
        )
        await conn.execute(  # asked again: the check that ended starts over
            update(timers)
            .where(timers.c.key == check_key(account.account_id))
            .values(state="pending", due_at=due, attempts=0, outcome=None, updated_at=now)
        )

    async def verified(self, conn: AsyncConnection, em: Emitter, account: Row[Any], now: datetime) -> bool:
        """The owner confirmed the address: the account is connected and can send. False when it already was."""
        if account.sender_email_verified and account.status == CONNECTED:
            return False
        await conn.execute(
            update(accounts)
            .where(accounts.c.account_id == account.account_id)
            .values(
                status=CONNECTED,
                healthy=True,
                sender_email_verified=True,
                verification_checked_at=now,
                verification_detail=None,
                updated_at=now,
            )
        )
        await self._stop_checks(conn, account.account_id, now, "verified")
        em.emit(
            AccountConnected(
                account_id=account.account_id,
                provider="email",
                display_name=account.display_name,
                sender_email_verified=True,
            )
        )
        return True

    async def failed(self, conn: AsyncConnection, em: Emitter, account: Row[Any], detail: str, now: datetime) -> None:
        """The address cannot be verified (the provider refused, or nobody confirmed in time)."""
        await conn.execute(
            update(accounts)
            .where(accounts.c.account_id == account.account_id)
            .values(
                status=FAILED,
                healthy=False,
                sender_email_verified=False,
                verification_checked_at=now,
                verification_detail=detail[:500],
                updated_at=now,
            )
        )
        await self._stop_checks(conn, account.account_id, now, "verification failed")
        em.emit(
            AccountStatusChanged(account_id=account.account_id, status=FAILED, previous=account.status, healthy=False)
        )

    async def check(self, conn: AsyncConnection, em: Emitter, account: Row[Any], now: datetime) -> str:
        """Ask the provider about a (locked) pending sender and apply its word; past the timeout it failed.
        Returns the verification's status after the check."""
        verdict = SenderVerification("pending")
        if isinstance(self.email, SenderVerifier) and account.provider_account_id:
            try:
                verdict = await self.email.verification_status(account.provider_account_id, account.sender_email, now)
            except ProviderError as exc:  # asked again at the next check; the timeout still holds
                log.info("sender status not available", extra={"account_id": str(account.account_id)})
                verdict = SenderVerification("pending", None, f"the provider could not be asked: {exc}")
        if verdict.status == "verified":
            await self.verified(conn, em, account, now)
            return "verified"
        requested = account.verification_requested_at or account.created_at
        if verdict.status == "failed" or now - requested >= self.timeout:
            hours = self.settings.sender_verification_timeout_h
            why = verdict.detail or f"the address was not confirmed within {hours:g} hours"
            await self.failed(
                conn, em, account, f"{why}; POST /v1/accounts/{account.account_id}/verify asks again", now
            )
            return "failed"
        values: dict[str, Any] = {"verification_checked_at": now, "updated_at": now}
        if verdict.detail:
            values["verification_detail"] = verdict.detail[:500]
        await conn.execute(update(accounts).where(accounts.c.account_id == account.account_id).values(**values))
        return "pending"

    async def run_timer(self, conn: AsyncConnection, em: Emitter, timer: Row[Any], now: datetime) -> None:
        """A ``sender_check`` timer is due: check the sender, and again later while it is pending."""
        account = await _lock(conn, timer.account_id)
        if account is None or account.provider != "email" or account.status != PENDING:
            await tm.finish(conn, timer.id, now, "sender not pending", state="cancelled")
            return
        status = await self.check(conn, em, account, now)
        if status == "pending":
            requested = account.verification_requested_at or account.created_at
            await tm.postpone(conn, timer.id, self._next_check(requested, now), now)

    def _next_check(self, requested: datetime, now: datetime) -> datetime:
        """The provider is asked every interval until the deadline; outreach's own link has only the deadline."""
        deadline = requested + self.timeout
        return min(now + self.interval, deadline) if isinstance(self.email, SenderVerifier) else deadline

    async def _stop_checks(self, conn: AsyncConnection, account_id: UUID, now: datetime, outcome: str) -> None:
        await conn.execute(
            update(timers)
            .where(timers.c.key == check_key(account_id), timers.c.state.in_(tm.LIVE))
            .values(state="done", outcome=outcome, waiting_for=None, updated_at=now)
        )


async def _lock(conn: AsyncConnection, account_id: UUID | None) -> Row[Any] | None:
    return None if account_id is None else await lock_account(conn, account_id)
