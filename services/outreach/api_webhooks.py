"""Inbound provider webhooks (signed): LinkedIn acceptances and replies, email replies, bounces and complaints;
plus a workspace-scoped route to record a reply by hand.

A reply cancels every pending step of the lead in the same transaction that records it (even a step
already due), and emits ``Replied``; an out-of-office answer (flagged, or recognised by its words) pauses the
lead until the date it names instead (``LeadPaused``). These routes check the signature and read the body; the
writes are :class:`~.inbox.ProviderEvents`.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from services.runtime.auth import WriteWorkspace, public
from services.runtime.errors import problems

from .context import OutreachContext
from .inbox import ProviderEvents
from .models import EmailHookIn, LinkedInHookIn, ReplyOut, SimulatedReplyIn, WebhookAck
from .problems import webhook_body


def webhooks_router(ctx: OutreachContext) -> APIRouter:
    """The webhook routes bound to ``ctx``."""
    r = APIRouter(tags=["webhooks"])
    events = ProviderEvents(ctx)

    @r.post(
        ctx.signed_route("/v1/webhooks/linkedin"),
        openapi_extra=public("Standard Webhooks signature of the LinkedIn provider"),
        responses=problems(400, 401, 404, 413, 422),
    )
    async def linkedin_webhook(request: Request) -> WebhookAck:
        """Signed LinkedIn provider events: ``{"event": "new_relation" | "message_received", "account_id": ...,
        "lead_id" | "user_profile_url": ..., "text": ...}``."""
        hook, raw, _ = await ctx.verified_webhook(request, "linkedin")
        return await events.linkedin(hook, webhook_body(raw, LinkedInHookIn))

    @r.post(
        ctx.signed_route("/v1/webhooks/email"),
        openapi_extra=public("Standard Webhooks signature of the email provider"),
        responses=problems(400, 401, 404, 413, 422),
    )
    async def email_webhook(request: Request) -> WebhookAck:
        """Signed email events: ``{"type": "reply" | "bounce" | "complaint", "workspace_id": ..., "email": ...}``.
        A bounce suppresses the address for emails; a complaint unsubscribes it; a reply stops the lead."""
        hook, raw, _ = await ctx.verified_webhook(request, "email")
        return await events.email(hook, webhook_body(raw, EmailHookIn))

    @r.post("/v1/campaigns/{campaign_id}/leads/{lead_id}/reply")
    async def record_reply(campaign_id: UUID, lead_id: UUID, body: SimulatedReplyIn, ws: WriteWorkspace) -> ReplyOut:
        """Record a reply by hand (a demo, or an inbox the provider does not watch)."""
        return ReplyOut(status="replied", campaigns=await events.manual_reply(ws, campaign_id, lead_id, body))

    return r
