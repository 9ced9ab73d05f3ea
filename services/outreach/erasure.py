"""Erasing a lead's personal data (the command behind ``POST /v1/leads/{lead_id}/erasure``).

One transaction: the person's data key is destroyed in the runtime's key store (crypto-shredding: every
personal field of every event about them on the log becomes unreadable), outreach blanks its own copy of the
lead and suppresses the lead on every channel (nobody contacts an erased person again), and ``LeadErased``
goes to the outbox so that every other copy (the projection's views) is blanked too.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from leadstream_schemas import Envelope, LeadErased
from leadstream_schemas.personal import ERASED, personal_paths, redact
from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime import personal
from services.runtime.consumer import HandlerContext

from . import lifecycle as lc
from .context import OutreachContext
from .problems import not_found
from .store import campaigns, inbox_messages, leads, sends, texts, timers, videos

PERSONAL_COLUMNS = (  # of its leads table
    "linkedin_url",
    "profile_key",
    "email",
    "full_name",
    "first_name",
    "last_name",
    "city",
    "headline",
    "post_url",
)
"""Outreach's copy of the lead's personal fields (set to NULL: nothing can be sent without them)."""


async def blank_copy(conn: AsyncConnection, workspace_id: str, lead_id: UUID, now: datetime) -> None:
    """Blank outreach's copy of the lead and suppress it on every channel (idempotent): done by the API in the
    erasing transaction, and again when ``LeadErased`` arrives (an erasure through ``leadstream erase``)."""
    await conn.execute(
        update(leads)
        .where(leads.c.workspace_id == workspace_id, leads.c.lead_id == lead_id)
        .values(**dict.fromkeys(PERSONAL_COLUMNS), updated_at=now)
    )
    await lc.suppress(conn, workspace_id, "lead", str(lead_id), "erased", now)
    # The texts written for the lead, the action events of its sends (the contract's personal paths, the video
    # link included), what providers and inboxes said about it and its video's link; rows, states and counts stay.
    await conn.execute(
        update(texts)
        .where(texts.c.workspace_id == workspace_id, texts.c.lead_id == lead_id)
        .values(text=ERASED, subject=case((texts.c.subject.is_(None), None), else_=ERASED))
    )
    rows = await conn.execute(
        select(sends.c.request_id, sends.c.event).where(
            sends.c.workspace_id == workspace_id, sends.c.lead_id == lead_id
        )
    )
    for row in rows.all():
        event = dict(row.event) if row.event else None
        if event and isinstance(event.get("data"), dict):
            redact(event["data"], personal_paths(str(event.get("type"))))
        await conn.execute(update(sends).where(sends.c.request_id == row.request_id).values(event=event, detail=None))
    await conn.execute(
        update(timers)
        .where(timers.c.workspace_id == workspace_id, timers.c.lead_id == lead_id, timers.c.payload.has_key("text"))
        .values(payload=timers.c.payload.op("||")(func.jsonb_build_object("text", ERASED)))
    )
    await conn.execute(
        update(inbox_messages)
        .where(inbox_messages.c.workspace_id == workspace_id, inbox_messages.c.lead_id == lead_id)
        .values(detail=None)
    )
    # The link of the video rendered for the lead (VideoGenerated's personal video_url): the row and its status stay
    # (a step waiting for the video goes on as before; the lead is suppressed, so nothing carries the link again).
    await conn.execute(
        update(videos)
        .where(
            videos.c.lead_id == lead_id,
            videos.c.video_url.is_not(None),
            videos.c.campaign_id.in_(select(campaigns.c.campaign_id).where(campaigns.c.workspace_id == workspace_id)),
        )
        .values(video_url=ERASED)
    )


async def on_lead_erased(env: Envelope[LeadErased], ctx: HandlerContext) -> None:
    """``LeadErased`` (from the API or the CLI): outreach's copy blanked, the lead suppressed."""
    await blank_copy(ctx.conn, env.workspace_id, env.data.lead_id, ctx.clock.now())


async def erase_lead(ctx: OutreachContext, workspace_id: str, lead_id: UUID) -> bool:
    """Erase the lead's personal data; False when it was erased before. A 404 problem for a lead this workspace
    does not know (neither outreach nor the key store has it)."""
    service = ctx.service
    now = service.clock.now()
    async with service.engine.begin() as conn:
        known = await conn.scalar(
            select(leads.c.lead_id).where(leads.c.workspace_id == workspace_id, leads.c.lead_id == lead_id)
        )
        keys = await personal.fetch_keys(conn, [(workspace_id, lead_id)])
        if known is None and not keys:
            raise not_found("lead", lead_id)
        first = await personal.erase(conn, workspace_id, lead_id)
        await blank_copy(conn, workspace_id, lead_id, now)
        if first:
            env = personal.erasure_envelope(workspace_id, lead_id, source=service.source, via="api", time=now)
            await service.emit(conn, [env])
    service.wake_relay()
    return first
