"""Inbound provider webhooks (signed): LinkedIn acceptances and replies, email replies, bounces and complaints;
plus a workspace-scoped route to record a reply by hand.

A reply cancels every pending step of the lead in the same transaction that records it (even a step
already due), and emits ``Replied``; an out-of-office answer (flagged, or recognised by its words) pauses the
lead until the date it names instead (``LeadPaused``).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.auth import WriteWorkspace, public
from services.runtime.errors import problems

from . import lifecycle as lc
from .accounts import find_account
from .context import OutreachContext
from .domain.compliance import normalise_email, normalise_profile_url
from .domain.replies import is_out_of_office
from .emit import RootEmitter
from .models import EmailHookIn, LinkedInHookIn, ReplyOut, SimulatedReplyIn, WebhookAck
from .problems import invalid, not_found, webhook_body
from .store import campaigns, enrollments, leads

ACCEPT_EVENTS = {"new_relation", "invite_accepted", "invitation_accepted", "accepted"}
REPLY_EVENTS = {"message_received", "reply", "replied"}


async def _lead_of(
    conn: AsyncConnection, workspace: str, *, lead: str | None = None, url: str | None = None, email: str | None = None
) -> UUID | None:
    """The lead a webhook is about, in ``workspace`` only: by ``lead`` (its id), LinkedIn profile URL or email.

    A ``lead_id`` of another workspace is not found: a provider account of workspace A cannot stop, or mark
    as accepted, a lead of workspace B.
    """
    if lead:
        try:
            lead_id = UUID(lead)
        except ValueError:
            return None
        found = await conn.scalar(
            select(leads.c.lead_id).where(leads.c.workspace_id == workspace, leads.c.lead_id == lead_id)
        )
        return UUID(str(found)) if found is not None else None
    url = normalise_profile_url(url)
    email = normalise_email(email)
    if url:
        by_url = await conn.scalar(
            select(leads.c.lead_id).where(leads.c.workspace_id == workspace, leads.c.profile_key == url).limit(1)
        )
        if by_url is not None:
            return UUID(str(by_url))
    if email:
        by_email = await conn.scalar(
            select(leads.c.lead_id).where(leads.c.workspace_id == workspace, leads.c.email == email).limit(1)
        )
        if by_email is not None:
            return UUID(str(by_email))
    return None


def webhooks_router(ctx: OutreachContext) -> APIRouter:
    """The webhook routes bound to ``ctx``."""
    r = APIRouter(tags=["webhooks"])
    service = ctx.service

    async def reply(
        conn: AsyncConnection,
        ws: str,
        lead_id: UUID,
        channel: str,
        text: str | None,
        key: str,
        received_at: datetime,
        ooo: bool = False,
    ) -> list[UUID]:
        em = RootEmitter(service, ws)
        done = await lc.apply_reply(
            conn,
            em,
            ws,
            lead_id,
            channel=channel,
            received_at=received_at,
            now=service.clock.now(),
            key=key,
            excerpt=(text or "")[:280] or None,
            out_of_office=ooo or is_out_of_office(text),
            text=text,
        )
        await em.flush(conn)
        return done

    @r.post(
        ctx.signed_route("/v1/webhooks/linkedin"),
        openapi_extra=public("Standard Webhooks signature of the LinkedIn provider"),
        responses=problems(400, 401, 404, 413, 422),
    )
    async def linkedin_webhook(request: Request) -> WebhookAck:
        """Signed LinkedIn provider events: ``{"event": "new_relation" | "message_received", "account_id": ...,
        "lead_id" | "user_profile_url": ..., "text": ...}``."""
        hook, raw, _ = await ctx.verified_webhook(request, "linkedin")
        data = webhook_body(raw, LinkedInHookIn)
        event = data.event.lower()
        if event not in ACCEPT_EVENTS | REPLY_EVENTS:
            raise invalid("event", f"unknown event {data.event!r}; new_relation or message_received")
        profile = data.user_profile_url or data.profile_url or data.linkedin_url
        now = service.clock.now()
        async with service.engine.begin() as conn:
            if not await ctx.first_delivery(conn, hook):
                return WebhookAck(status="duplicate")
            account = await find_account(conn, data.account_id)
            if account is None or account.provider != "linkedin":
                raise not_found("LinkedIn account", data.account_id)
            lead_id = await _lead_of(
                conn, account.workspace_id, lead=data.lead_id, url=profile, email=data.email or data.sender
            )
            if lead_id is None:
                raise not_found("lead", data.lead_id or profile)
            if event in REPLY_EVENTS:
                done = await reply(
                    conn,
                    account.workspace_id,
                    lead_id,
                    "message",
                    data.text,
                    f"webhook:{hook.msg_id}",
                    now,
                    data.out_of_office,
                )
                result = WebhookAck(status="replied", campaigns=done)
            else:
                rows = (
                    await conn.execute(
                        select(enrollments.c.campaign_id)
                        .where(
                            enrollments.c.workspace_id == account.workspace_id,
                            enrollments.c.lead_id == lead_id,
                            enrollments.c.account_id == account.account_id,
                        )
                        .order_by(enrollments.c.campaign_id)
                    )
                ).all()
                em = RootEmitter(service, account.workspace_id)
                for row in rows:
                    await lc.apply_acceptance(
                        conn,
                        em,
                        campaign_id=row.campaign_id,
                        lead_id=lead_id,
                        workspace_id=account.workspace_id,
                        step_id=None,
                        account_id=account.account_id,
                        now=now,
                        key=f"webhook:{hook.msg_id}:{row.campaign_id}",
                    )
                await em.flush(conn)
                result = WebhookAck(status="accepted", campaigns=[x.campaign_id for x in rows])
        service.wake_relay()
        ctx.runner.wake()
        return result

    @r.post(
        ctx.signed_route("/v1/webhooks/email"),
        openapi_extra=public("Standard Webhooks signature of the email provider"),
        responses=problems(400, 401, 404, 413, 422),
    )
    async def email_webhook(request: Request) -> WebhookAck:
        """Signed email events: ``{"type": "reply" | "bounce" | "complaint", "workspace_id": ..., "email": ...}``.
        A bounce suppresses the address for emails; a complaint unsubscribes it; a reply stops the lead."""
        hook, raw, _ = await ctx.verified_webhook(request, "email")
        data = webhook_body(raw, EmailHookIn)
        kind, ws = data.type.lower(), data.workspace_id
        email = normalise_email(data.email)
        if kind not in ("reply", "bounce", "complaint"):
            raise invalid("type", f"unknown type {data.type!r}; reply, bounce or complaint")
        if not ws:
            raise invalid("workspace_id", "the workspace the address belongs to is required")
        if not email:
            raise invalid("email", "an email address is required")
        now = service.clock.now()
        async with service.engine.begin() as conn:
            if not await ctx.first_delivery(conn, hook):
                return WebhookAck(status="duplicate")
            if kind == "bounce":
                await lc.suppress(conn, ws, "email", email, "bounced", now)
                return WebhookAck(status="suppressed", reason="bounced")
            if kind == "complaint":
                await lc.suppress(conn, ws, "email", email, "unsubscribed", now)
                return WebhookAck(status="suppressed", reason="unsubscribed")
            lead_id = await _lead_of(conn, ws, email=email)
            if lead_id is None:
                raise not_found("lead with email", email)
            done = await reply(conn, ws, lead_id, "email", data.text, f"webhook:{hook.msg_id}", now)
        service.wake_relay()
        return WebhookAck(status="replied", campaigns=done)

    @r.post("/v1/campaigns/{campaign_id}/leads/{lead_id}/reply")
    async def record_reply(campaign_id: UUID, lead_id: UUID, body: SimulatedReplyIn, ws: WriteWorkspace) -> ReplyOut:
        """Record a reply by hand (a demo, or an inbox the provider does not watch)."""
        now = service.clock.now()
        async with service.engine.begin() as conn:
            found = await conn.scalar(
                select(enrollments.c.lead_id)
                .select_from(enrollments.join(campaigns, campaigns.c.campaign_id == enrollments.c.campaign_id))
                .where(
                    enrollments.c.campaign_id == campaign_id,
                    enrollments.c.lead_id == lead_id,
                    campaigns.c.workspace_id == ws,
                    campaigns.c.state != "deleted",
                )
            )
            if found is None:
                raise not_found("lead in campaign", lead_id)
            done = await reply(conn, ws, lead_id, body.channel, body.text, f"manual:{campaign_id}:{lead_id}:{now}", now)
        service.wake_relay()
        return ReplyOut(status="replied", campaigns=done)

    return r
