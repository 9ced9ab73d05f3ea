"""Erasing a lead's personal data (the command behind ``POST /v1/leads/{lead_id}/erasure``).

One transaction: the person's data key is destroyed in the runtime's key store (crypto-shredding: every
personal field of every event about them on the log becomes unreadable), outreach blanks its own copy of the
lead and suppresses the lead on every channel (nobody contacts an erased person again), and ``LeadErased``
goes to the outbox so that every other copy (the projection's views) is blanked too.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select, update

from services.runtime import personal

from . import lifecycle as lc
from .context import OutreachContext
from .problems import not_found
from .store import leads

PERSONAL_COLUMNS = (
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
        await conn.execute(
            update(leads)
            .where(leads.c.workspace_id == workspace_id, leads.c.lead_id == lead_id)
            .values(**dict.fromkeys(PERSONAL_COLUMNS), updated_at=now)
        )
        await lc.suppress(conn, workspace_id, "lead", str(lead_id), "erased", now)
        if first:
            env = personal.erasure_envelope(workspace_id, lead_id, source=service.source, via="api", time=now)
            await service.emit(conn, [env])
    service.wake_relay()
    return first
