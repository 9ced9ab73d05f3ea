"""Connected accounts: status transitions, the campaigns that pause and resume with them, reconnect emails.

Healthy statuses (ok, reconnected, sync_success, running, connected) let an account send. The
reconnect-required ones (credentials, disconnected, auth_required, sleeping) open an incident: the
account's campaign workers pause (a campaign with no worker left pauses), and one reconnect email is
sent per account per incident. When the account is healthy again, they resume.

:class:`AccountCommands` are the account API's writes (connect, verify, confirm, the provider's callback and
status webhook, refresh, delete): the routes in ``api_accounts.py`` parse the request and shape the answer.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from leadstream_schemas import (
    HEALTHY_STATUSES,
    AccountConnected,
    AccountConnectionRequested,
    AccountDeleted,
    AccountStatusChanged,
    CampaignNeedsReview,
    CampaignPaused,
    CampaignResumed,
)
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.errors import Problem
from services.runtime.providers import ProviderError
from services.runtime.webhooks import VerifiedWebhook

from . import lifecycle as lc
from .adapters import EmailMessage, EmailSender, SenderVerification
from .domain.compliance import normalise_email
from .emit import Emitter, RootEmitter
from .models import AccountCallbackIn, AccountIn, AccountStatusHookIn, WebhookAck
from .problems import invalid, not_found
from .store import accounts, campaign_workers, campaigns, reconnect_emails

if TYPE_CHECKING:  # the context holds this module's AccountStatus
    from .context import OutreachContext

log = logging.getLogger(__name__)

RECONNECT_STATUSES = frozenset({"credentials", "disconnected", "auth_required", "sleeping"})
# Provider spellings (Unipile) of the same statuses.
ALIASES = {
    "creation_success": "connected",
    "error": "disconnected",
    "stopped": "disconnected",
    "sync": "sync_success",
    "validation_required": "auth_required",
    "checkpoint": "auth_required",
}
ACCOUNT_PAUSE = "account_reconnect_required"
# An email sender's statuses while the email provider verifies it (senders.py).
PENDING: Final = "pending"
CONNECTED: Final = "connected"
FAILED: Final = "verification_failed"
# Callback statuses: a hosted connection (or a sender verification) completed, or a sender verification failed.
CONNECTED_STATUSES = ("creation_success", "reconnected", "ok", "connected", "verified")
SENDER_FAILED_STATUSES = ("failed", "rejected", "expired", "verification_failed")


def normalise_status(raw: str) -> str | None:
    """A provider's status word -> one of ours (None when unknown)."""
    value = raw.strip().lower().replace("-", "_").replace(" ", "_")
    value = ALIASES.get(value, value)
    return value if value in HEALTHY_STATUSES or value in RECONNECT_STATUSES else None


async def lock_account(conn: AsyncConnection, account_id: UUID, workspace_id: str | None = None) -> Row[Any] | None:
    """The account row, locked (None when unknown, deleted, or of another workspace)."""
    return await account_row(conn, account_id, workspace_id, lock=True)


async def account_row(
    conn: AsyncConnection, account_id: UUID, workspace_id: str | None = None, *, lock: bool = False
) -> Row[Any] | None:
    """The account row, locked for update when ``lock`` (None when unknown, deleted, or of another workspace)."""
    stmt = select(accounts).where(accounts.c.account_id == account_id, accounts.c.deleted_at.is_(None))
    if workspace_id is not None:
        stmt = stmt.where(accounts.c.workspace_id == workspace_id)
    return (await conn.execute(stmt.with_for_update() if lock else stmt)).first()


async def find_account(conn: AsyncConnection, ident: str) -> Row[Any] | None:
    """Lock an account named by our id or by the provider's account id (webhooks use either)."""
    try:
        row = await lock_account(conn, UUID(ident))
        if row is not None:
            return row
    except ValueError:
        pass
    found = await conn.scalar(
        select(accounts.c.account_id).where(accounts.c.provider_account_id == ident, accounts.c.deleted_at.is_(None))
    )
    return await lock_account(conn, found) if found is not None else None


async def complete_connection(
    conn: AsyncConnection, em: Emitter, account: Row[Any], provider_account_id: str | None, now: datetime
) -> None:
    """A pending account finished its hosted authorisation (callback, or a refresh that found it done):
    it is connected and can send (``AccountConnected``)."""
    verified = account.provider == "email"
    await conn.execute(
        update(accounts)
        .where(accounts.c.account_id == account.account_id)
        .values(
            status="connected",
            healthy=True,
            sender_email_verified=verified,
            updated_at=now,
            provider_account_id=provider_account_id or account.provider_account_id or str(account.account_id),
        )
    )
    em.emit(
        AccountConnected(
            account_id=account.account_id,
            provider=account.provider,
            display_name=account.display_name,
            sender_email_verified=verified,
        )
    )


class AccountStatus:
    """Applies status changes (webhooks, refresh, callbacks) with the email sender for reconnect emails."""

    def __init__(self, email: EmailSender, *, real_sends: bool, default_to: str, sender: str) -> None:
        self.email = email
        self.real_sends = real_sends
        self.default_to = default_to
        self.sender = sender

    async def apply(self, conn: AsyncConnection, em: Emitter, account: Row[Any], status: str, now: datetime) -> bool:
        """Move a locked account to ``status``; False when nothing changed."""
        if status == account.status:
            return False
        healthy = status in HEALTHY_STATUSES
        incident = account.incident + (1 if account.healthy and not healthy else 0)
        await conn.execute(
            update(accounts)
            .where(accounts.c.account_id == account.account_id)
            .values(
                status=status,
                healthy=healthy,
                incident=incident,
                updated_at=now,
                limit_paused_until=account.limit_paused_until if healthy else None,
            )
        )
        em.emit(
            AccountStatusChanged(account_id=account.account_id, status=status, previous=account.status, healthy=healthy)
        )
        if account.healthy and not healthy:
            await self._pause_workers(conn, em, account.account_id, now)
            await self._reconnect_email(conn, account, incident, status, now)
        elif healthy and not account.healthy:
            await self._resume_workers(conn, em, account.account_id, now)
        return True

    async def _pause_workers(self, conn: AsyncConnection, em: Emitter, account_id: UUID, now: datetime) -> None:
        rows = (
            await conn.execute(
                update(campaign_workers)
                .where(campaign_workers.c.account_id == account_id, campaign_workers.c.state == "active")
                .values(state="paused_account")
                .returning(campaign_workers.c.campaign_id)
            )
        ).all()
        for r in sorted(rows, key=lambda r: str(r.campaign_id)):
            campaign = (
                await conn.execute(select(campaigns).where(campaigns.c.campaign_id == r.campaign_id).with_for_update())
            ).one()
            await lc.release_leases(conn, em, campaign.campaign_id, account_id)
            active_left = await conn.scalar(
                select(campaign_workers.c.account_id)
                .where(campaign_workers.c.campaign_id == campaign.campaign_id, campaign_workers.c.state == "active")
                .limit(1)
            )
            if campaign.state == "running" and active_left is None:
                await conn.execute(
                    update(campaigns)
                    .where(campaigns.c.campaign_id == campaign.campaign_id)
                    .values(state="paused", pause_reason="account", updated_at=now)
                )
                em.emit(CampaignPaused(campaign_id=campaign.campaign_id, reason=ACCOUNT_PAUSE))

    async def _resume_workers(self, conn: AsyncConnection, em: Emitter, account_id: UUID, now: datetime) -> None:
        rows = (
            await conn.execute(
                update(campaign_workers)
                .where(campaign_workers.c.account_id == account_id, campaign_workers.c.state == "paused_account")
                .values(state="active")
                .returning(campaign_workers.c.campaign_id)
            )
        ).all()
        for r in sorted(rows, key=lambda r: str(r.campaign_id)):
            campaign = (
                await conn.execute(select(campaigns).where(campaigns.c.campaign_id == r.campaign_id).with_for_update())
            ).one()
            state = campaign.state
            if state == "paused" and campaign.pause_reason == "account":
                await conn.execute(
                    update(campaigns)
                    .where(campaigns.c.campaign_id == campaign.campaign_id)
                    .values(state="running", pause_reason=None, updated_at=now)
                )
                em.emit(CampaignResumed(campaign_id=campaign.campaign_id, reason="account_reconnected"))
                state = "running"
            if state == "running":
                await lc.acquire_leases(conn, em, campaign.campaign_id, campaign.workspace_id, now)

    async def _reconnect_email(
        self, conn: AsyncConnection, account: Row[Any], incident: int, status: str, now: datetime
    ) -> None:
        """One email per account per incident: the (account, incident) row is the deduplication."""
        to = account.notify_email or self.default_to
        inserted = await conn.execute(
            insert(reconnect_emails)
            .values(
                account_id=account.account_id,
                incident=incident,
                workspace_id=account.workspace_id,
                to_address=to,
                status=f"{account.status}->{status}",
                dry_run=not self.real_sends,
                sent_at=now,
            )
            .on_conflict_do_nothing()
        )
        if not inserted.rowcount or not self.real_sends:
            return
        name = account.display_name or str(account.account_id)
        await self.email.send(
            EmailMessage(
                request_id=f"reconnect:{account.account_id}:{incident}",
                sender=self.sender,
                to=to,
                subject=f"Reconnect your LinkedIn account {name}",
                body=f"Your account {name} needs reconnecting (status: {status}). Its campaigns are paused until "
                "you reconnect it in leadstream.",
            )
        )

    async def delete(self, conn: AsyncConnection, em: Emitter, account: Row[Any], now: datetime) -> None:
        """Delete a locked account: its workers stop; campaigns left without a worker need review."""
        await conn.execute(
            update(accounts)
            .where(accounts.c.account_id == account.account_id)
            .values(status="deleted", healthy=False, deleted_at=now, updated_at=now)
        )
        em.emit(AccountDeleted(account_id=account.account_id))
        rows = (
            await conn.execute(
                update(campaign_workers)
                .where(campaign_workers.c.account_id == account.account_id, campaign_workers.c.state != "stopped")
                .values(state="stopped")
                .returning(campaign_workers.c.campaign_id)
            )
        ).all()
        for r in sorted(rows, key=lambda r: str(r.campaign_id)):
            campaign = (
                await conn.execute(select(campaigns).where(campaigns.c.campaign_id == r.campaign_id).with_for_update())
            ).one()
            await lc.release_leases(conn, em, campaign.campaign_id, account.account_id)
            left = await conn.scalar(
                select(campaign_workers.c.account_id)
                .where(campaign_workers.c.campaign_id == campaign.campaign_id, campaign_workers.c.state != "stopped")
                .limit(1)
            )
            if left is None and campaign.state in ("running", "paused", "scheduled"):
                message = (
                    f"account {account.display_name or account.account_id} was deleted; "
                    "the campaign has no account left to send from"
                )
                await conn.execute(
                    update(campaigns)
                    .where(campaigns.c.campaign_id == campaign.campaign_id)
                    .values(state="needs_review", message=message, updated_at=now)
                )
                em.emit(CampaignNeedsReview(campaign_id=campaign.campaign_id, message=message))


@dataclass(frozen=True)
class Connection:
    """What connecting an account did: the stored row, the hosted authorisation link (a LinkedIn account not
    connected at once) and whether it waits for its owner (the user's hosted sign-in, or the sender's confirmation).
    """

    row: Row[Any]
    auth_url: str | None
    pending: bool


class AccountCommands:
    """The account API's writes, each in the one transaction its route had; the provider is asked outside it."""

    def __init__(self, ctx: OutreachContext) -> None:
        self.ctx = ctx
        self.service = ctx.service

    def callback_url(self) -> str:
        """Where the providers call back when a hosted connection or a sender verification finishes."""
        return f"{self.ctx.settings.base_url()}/v1/accounts/callback"

    def _wake(self) -> None:
        # The relay publishes the events just committed; the runner takes up campaigns a status change resumed.
        self.service.wake_relay()
        self.ctx.runner.wake()

    # -- connect and verify ---------------------------------------------------------------------------------------

    async def connect(self, workspace_id: str, body: AccountIn) -> Connection:
        """Connect an account: at once in simulated mode (unless ``hosted``), else pending behind a hosted
        authorisation link; an email sender as the email provider first answers (see :mod:`.senders`)."""
        ctx, service = self.ctx, self.service
        now = service.clock.now()
        account_id = uuid.uuid4()
        sender = normalise_email(body.sender_email) if body.provider == "email" else None
        verdict = None
        if sender is not None:
            verdict = await self._ask_provider(account_id, sender, now)
            immediate = verdict.status == "verified"
        else:
            immediate = ctx.simulated and not body.hosted
        auth_url = None
        if not immediate and body.provider == "linkedin":
            auth_url = await ctx.linkedin.hosted_auth_link(
                str(account_id), self.callback_url(), now, return_url=body.return_url
            )
        async with service.engine.begin() as conn:
            await conn.execute(
                insert(accounts).values(
                    account_id=account_id,
                    workspace_id=workspace_id,
                    provider=body.provider,
                    display_name=body.display_name,
                    status="connected" if immediate else "pending",
                    healthy=immediate,
                    sender_email=sender,
                    sender_email_verified=immediate and body.provider == "email",
                    notify_email=body.notify_email,
                    provider_account_id=f"sim-{account_id}" if immediate else None,
                    created_at=now,
                    updated_at=now,
                )
            )
            em = RootEmitter(service, workspace_id)
            em.emit(AccountConnectionRequested(account_id=account_id, provider=body.provider))
            if immediate:
                em.emit(
                    AccountConnected(
                        account_id=account_id,
                        provider=body.provider,
                        display_name=body.display_name,
                        sender_email_verified=body.provider == "email",
                    )
                )
            if verdict is not None and not immediate:
                await ctx.senders.started(conn, em, await _row(conn, account_id), verdict, now)
            elif verdict is not None:
                await _note_request(conn, account_id, verdict.sender_id, None, now)
            await em.flush(conn)
            row = await _row(conn, account_id)
        if sender is not None and not immediate:
            row = await self._link_sent(account_id, sender, row)
        self._wake()
        return Connection(row=row, auth_url=auth_url, pending=not immediate)

    async def verify_again(self, workspace_id: str, account_id: UUID) -> tuple[Row[Any], bool]:
        """Ask the email provider to verify a pending or failed sender again: its row, and whether the provider
        verified it at once (404 for no such sender, 409 for one in another state)."""
        ctx, service = self.ctx, self.service
        now = service.clock.now()
        async with service.engine.connect() as conn:
            row = await account_row(conn, account_id, workspace_id)
        if row is None or row.provider != "email":
            raise not_found("email sender", account_id)
        if row.status not in (PENDING, FAILED):
            raise Problem(
                409, "invalid_state", f"the sender is {row.status}; only a pending or failed one is asked again"
            )
        verdict = await self._ask_provider(account_id, row.sender_email, now)
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id, workspace_id)
            if account is None:
                raise not_found("email sender", account_id)
            await conn.execute(
                update(accounts).where(accounts.c.account_id == account_id).values(status=PENDING, updated_at=now)
            )
            em = RootEmitter(service, workspace_id)
            await ctx.senders.started(conn, em, await _row(conn, account_id), verdict, now)
            await em.flush(conn)
            row = await _row(conn, account_id)
        verified = verdict.status == "verified"
        if not verified:
            row = await self._link_sent(account_id, row.sender_email, row)
        self._wake()
        return row, verified

    async def confirm(self, account_id: UUID, token: str) -> Row[Any]:
        """Outreach's confirmation link opened by the sender address's owner: the sender is verified (403 for a
        link not made for it, 409 for a sender no longer waiting for it). The account row as it was locked."""
        ctx, service = self.ctx, self.service
        now = service.clock.now()
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id)
            if account is None or account.provider != "email" or not account.sender_email:
                raise not_found("email sender", account_id)
            if not ctx.senders.link_is_valid(account_id, account.sender_email, token):
                raise Problem(403, "invalid_link", "this confirmation link is not valid for this sender")
            if account.status not in (PENDING, "connected"):
                raise Problem(409, "invalid_state", f"the sender is {account.status}: ask for a new link")
            em = RootEmitter(service, account.workspace_id)
            await ctx.senders.verified(conn, em, account, now)
            await em.flush(conn)
        service.wake_relay()
        return account

    async def _ask_provider(self, account_id: UUID, sender: str, now: datetime) -> SenderVerification:
        """The email provider's first word on a new sender: a 422 naming sender_email when it refuses the address,
        a 503 when it cannot be asked now (nothing is stored either way)."""
        try:
            verdict = await self.ctx.senders.ask(account_id, sender, now)
        except ProviderError as exc:
            if not exc.transient:
                raise invalid("sender_email", f"the email provider refused to verify {sender}: {exc}") from None
            raise Problem(503, "provider_unavailable", f"the email provider cannot be asked now: {exc}") from None
        if verdict.status == "failed":
            raise invalid("sender_email", f"the email provider cannot verify {sender}: {verdict.detail or 'refused'}")
        return verdict

    async def _link_sent(self, account_id: UUID, sender: str, row: Row[Any]) -> Row[Any]:
        """Outreach's own confirmation link for a provider without verification (after the account is stored)."""
        detail = await self.ctx.senders.send_link(account_id, sender)
        if detail is None:
            return row
        async with self.service.engine.begin() as conn:
            await conn.execute(
                update(accounts).where(accounts.c.account_id == account_id).values(verification_detail=detail)
            )
            return await _row(conn, account_id)

    # -- the providers' callback and status webhook ---------------------------------------------------------------

    async def callback(self, hook: VerifiedWebhook, provider: str, body: AccountCallbackIn) -> WebhookAck:
        """A signed callback of ``provider``: a hosted connection finished (or a reconnect), or a sender's
        verification did. A replayed delivery changes nothing; each provider completes only its own accounts."""
        ctx, service = self.ctx, self.service
        ours = body.name or body.account_ref or ""
        now = service.clock.now()
        async with service.engine.begin() as conn:
            if not await ctx.first_delivery(conn, hook):
                return WebhookAck(status="duplicate")
            try:
                account = await lock_account(conn, UUID(ours))
            except ValueError:
                account = None
            if account is None or account.provider != provider:
                raise not_found("account", ours or "(no name)")
            status = (body.status or "").lower()
            if account.provider == "email":
                ack = await self._sender_callback(conn, account, status, body, now)
            else:
                if status not in CONNECTED_STATUSES:
                    raise invalid("status", f"{body.status!r} does not complete a connection")
                em = RootEmitter(service, account.workspace_id)
                if account.status == "pending":
                    await complete_connection(conn, em, account, body.account_id or None, now)
                else:  # a reconnect through the hosted page: the account is healthy again and its campaigns resume
                    await ctx.account_status.apply(conn, em, account, "reconnected", now)
                await em.flush(conn)
                ack = WebhookAck(status="connected", account_id=account.account_id)
        # Once committed (a sender's callback woke the relay before: it found nothing yet, and published later).
        if account.provider == "email":
            service.wake_relay()
        else:
            self._wake()
        return ack

    async def _sender_callback(
        self, conn: AsyncConnection, account: Row[Any], status: str, body: AccountCallbackIn, now: datetime
    ) -> WebhookAck:
        """The email provider's word on a sender it was asked to verify: verified, or failed (with its reason)."""
        em = RootEmitter(self.service, account.workspace_id)
        if status in CONNECTED_STATUSES:
            await self.ctx.senders.verified(conn, em, account, now)
            outcome = "verified"
        elif status in SENDER_FAILED_STATUSES:
            reason = (body.detail or body.reason or f"the provider answered {status}")[:300]
            await self.ctx.senders.failed(conn, em, account, reason, now)
            outcome = FAILED
        else:
            raise invalid("status", f"{body.status!r} neither verifies nor refuses a sender")
        await em.flush(conn)
        return WebhookAck(status=outcome, account_id=account.account_id)

    async def status_changed(self, hook: VerifiedWebhook, body: AccountStatusHookIn) -> WebhookAck:
        """The LinkedIn provider's signed word on an account's status, applied (a 422 for a status we do not
        know, a 404 for an account we do not; a replayed delivery changes nothing)."""
        ctx, service = self.ctx, self.service
        inner = body.inner
        raw_status = inner.status or inner.message or ""
        status = normalise_status(raw_status)
        if status is None:
            raise invalid(
                "status",
                f"unknown account status {raw_status!r}; one of ok, reconnected, sync_success, running, connected, "
                "credentials, disconnected, auth_required, sleeping",
            )
        async with service.engine.begin() as conn:
            if not await ctx.first_delivery(conn, hook):
                return WebhookAck(status="duplicate")
            account = await find_account(conn, inner.account_id)
            if account is None:
                raise not_found("account", inner.account_id)
            em = RootEmitter(service, account.workspace_id)
            changed = await ctx.account_status.apply(conn, em, account, status, service.clock.now())
            await em.flush(conn)
        self._wake()
        return WebhookAck(status=status, changed=changed, account_id=account.account_id)

    # -- refresh and delete ---------------------------------------------------------------------------------------

    async def refresh(self, workspace_id: str, account_id: UUID) -> Row[Any]:
        """Ask the provider for the account's status now and apply it: the account's row after (404 when none)."""
        ctx, service = self.ctx, self.service
        async with service.engine.connect() as conn:
            row = await account_row(conn, account_id, workspace_id)
        if row is None:
            raise not_found("account", account_id)
        if row.provider == "email":
            return await self._refresh_sender(workspace_id, account_id)
        raw = await ctx.linkedin.account_status(str(account_id), row.provider_account_id)
        status = normalise_status(raw)
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id, workspace_id)
            if account is None:
                raise not_found("account", account_id)
            em = RootEmitter(service, workspace_id)
            now = service.clock.now()
            if account.status == "pending":
                # "Check again": the provider finished the hosted connection but its callback has not come.
                if status in HEALTHY_STATUSES:
                    await complete_connection(conn, em, account, row.provider_account_id, now)
            elif status is not None:
                await ctx.account_status.apply(conn, em, account, status, now)
            await em.flush(conn)
            row = await _row(conn, account_id)
        self._wake()
        return row

    async def _refresh_sender(self, workspace_id: str, account_id: UUID) -> Row[Any]:
        """Ask the email provider about a pending sender now (the check timer would, later)."""
        service = self.service
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id, workspace_id)
            if account is None:
                raise not_found("account", account_id)
            if account.status == PENDING:
                em = RootEmitter(service, workspace_id)
                await self.ctx.senders.check(conn, em, account, service.clock.now())
                await em.flush(conn)
            row = await _row(conn, account_id)
        service.wake_relay()
        return row

    async def delete(self, workspace_id: str, account_id: UUID) -> None:
        """Delete an account (404 when none); campaigns left without an account need review."""
        service = self.service
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id, workspace_id)
            if account is None:
                raise not_found("account", account_id)
            em = RootEmitter(service, workspace_id)
            await self.ctx.account_status.delete(conn, em, account, service.clock.now())
            await em.flush(conn)
        service.wake_relay()


async def _row(conn: AsyncConnection, account_id: UUID) -> Row[Any]:
    return (await conn.execute(select(accounts).where(accounts.c.account_id == account_id))).one()


async def _note_request(
    conn: AsyncConnection, account_id: UUID, sender_id: str | None, detail: str | None, now: datetime
) -> None:
    """When a sender verified at once was asked for (and the provider's id of it)."""
    await conn.execute(
        update(accounts)
        .where(accounts.c.account_id == account_id)
        .values(
            provider_account_id=sender_id,
            verification_requested_at=now,
            verification_checked_at=now,
            verification_detail=detail,
        )
    )
