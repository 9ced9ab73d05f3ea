"""What the HTTP routes of outreach share: the service, settings, providers and command objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

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

    def signed_route(self, path: str) -> str:
        """``path``, with the body cap of a signed webhook route (``webhook_max_bytes``) registered at the edge."""
        self.service.limit_body(path, self.settings.webhook_max_bytes)
        return path

    async def verified_webhook(
        self, request: Request, *providers: Literal["linkedin", "email"]
    ) -> tuple[webhooks.VerifiedWebhook, bytes, str]:
        """The request's raw body (capped at the edge: :meth:`signed_route`) once its Standard Webhooks signature
        checked out with the key of one of ``providers`` (401 otherwise), and which provider that was.

        Signatures carry wall-clock timestamps from the sender, so they are checked against real time,
        not the (possibly scaled) campaign clock.
        """
        rings = {p: self.settings.keys(f"{p}_webhook_secret") for p in providers}
        hook, body = await webhooks.verified_request(
            request,
            list(rings.values()),
            now=datetime.now(UTC),
            tolerance_s=self.settings.webhook_tolerance_s,
        )
        provider = next(p for p, ring in rings.items() if ring.purpose == hook.purpose)
        return hook, body, provider

    async def first_delivery(self, conn: AsyncConnection, hook: webhooks.VerifiedWebhook) -> bool:
        """Record the webhook id in the caller's transaction; False for a replay."""
        return await webhooks.remember(conn, seen_webhooks, hook, datetime.now(UTC))
