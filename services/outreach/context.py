"""What the HTTP routes of outreach share: the service, settings, providers and command objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime import webhooks
from services.runtime.service import Service

from .accounts import AccountStatus
from .adapters import EmailSender, LinkedInProvider
from .campaigns import CampaignCommands
from .runner import Runner
from .senders import Senders
from .settings import OutreachSettings
from .store import seen_webhooks


@dataclass
class OutreachContext:
    """Dependencies of the outreach routes."""

    service: Service
    settings: OutreachSettings
    linkedin: LinkedInProvider
    email: EmailSender
    runner: Runner
    campaigns: CampaignCommands
    account_status: AccountStatus
    senders: Senders

    @property
    def simulated(self) -> bool:
        """True when LinkedIn is simulated (accounts may connect at once)."""
        return self.settings.linkedin_provider == "simulated"

    async def verified_webhook(self, request: Request) -> tuple[webhooks.VerifiedWebhook, bytes]:
        """The request's raw body once its Standard-Webhooks signature checked out (401 otherwise).

        Signatures carry wall-clock timestamps from the sender, so they are checked against real time,
        not the (possibly scaled) campaign clock.
        """
        body = await request.body()
        hook = webhooks.verify(
            self.settings.webhook_secret,
            dict(request.headers),
            body,
            datetime.now(UTC),
            self.settings.webhook_tolerance_s,
        )
        return hook, body

    async def first_delivery(self, conn: AsyncConnection, hook: webhooks.VerifiedWebhook) -> bool:
        """Record the webhook id in the caller's transaction; False for a replay."""
        return await webhooks.remember(conn, seen_webhooks, hook, datetime.now(UTC))
