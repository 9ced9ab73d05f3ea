"""Connected accounts: status transitions, the campaigns that pause and resume with them, reconnect emails.

Healthy statuses (ok, reconnected, sync_success, running, connected) let an account send. The
reconnect-required ones (credentials, disconnected, auth_required, sleeping) open an incident: the
account's campaign workers pause (a campaign with no worker left pauses), and one reconnect email is
sent per account per incident. When the account is healthy again, they resume.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from uuid import UUID

from leadstream_schemas import (
    HEALTHY_STATUSES,
    AccountConnected,
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

from . import lifecycle as lc
from .adapters import EmailMessage, EmailSender
from .emit import Emitter
from .store import accounts, campaign_workers, campaigns, reconnect_emails

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
