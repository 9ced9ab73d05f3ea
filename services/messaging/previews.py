"""Message previews: each step's text for a few sample leads, written as the campaign would write it, saved nowhere.

The campaign builder shows them before launch. A lead's stored profile is used when messaging has one
for the workspace (so the hook is the real one); otherwise the fields the request carries (a lead just
found, not enriched yet) stand in, and the hook says it fell back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from leadstream_schemas import Channel, LeadProfileEnriched, Step, Strategy, Workflow
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from . import domain
from .commands import limit_label
from .handlers import CampaignConfig, MessagingCore
from .store import profiles

PREVIEW_CAMPAIGN = uuid.UUID(int=0)


@dataclass(frozen=True)
class SampleLead:
    """A lead to preview for: its id (when known) and the fields a request may carry for it."""

    lead_id: UUID | None
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    headline: str | None = None
    company: str | None = None


@dataclass(frozen=True)
class StepText:
    """One step's preview for one lead."""

    step_id: str
    channel: str
    text: str
    subject: str | None
    length: int
    char_limit: int
    limit_label: str
    hook: dict[str, Any]
    template: str


@dataclass(frozen=True)
class LeadPreview:
    """Every step's text for one sample lead; ``enriched`` says whether its stored profile was used."""

    lead_id: UUID | None
    name: str | None
    enriched: bool
    steps: list[StepText]


CHANNELS = {"invite": Channel.invite, "message": Channel.message, "email": Channel.email, "comment": Channel.comment}


def preview_workflow(steps: list[dict[str, Any]], *, invite_note: bool, email_fallback: bool) -> Workflow:
    """The typed workflow a preview writes for, from the steps the builder sends (as outreach's graph lists
    them; ``needs_text`` and ``channel`` when outreach said so). An invite has a text only with a note (its own
    ``note``, else the strategy's); a comment is drafted unless its mode says ``auto``. No steps: an invite and
    a message, and an email with the email fallback."""
    if not steps:
        steps = [{"id": "invite", "action": "invite"}, {"id": "message", "action": "message"}]
        if email_fallback:
            steps.append({"id": "email", "action": "email"})
    typed = []
    for raw in steps:
        action = str(raw["action"])
        channel = CHANNELS.get(action)
        note = bool(raw["note"]) if raw.get("note") is not None else invite_note
        needs = raw.get("needs_text")
        if needs is None:
            needs = channel is not None and (action != "invite" or note)
        typed.append(
            Step(
                id=raw["id"],
                action=action,
                needs_text=bool(needs and channel is not None),
                channel=channel if needs else None,
                note=note if action == "invite" else False,
                mode="auto" if raw.get("mode") == "auto" else "draft" if action == "comment" else "auto",
                template=raw.get("template"),
                subject=raw.get("subject"),
                body=raw.get("body"),
            )
        )
    return Workflow(start=typed[0].id, steps=typed)


async def _profile(conn: AsyncConnection, ws: str, lead: SampleLead) -> tuple[LeadProfileEnriched | None, bool]:
    if lead.lead_id is not None:
        row = (
            await conn.execute(
                select(profiles).where(profiles.c.lead_id == lead.lead_id, profiles.c.workspace_id == ws)
            )
        ).first()
        if row is not None and not row.failed:
            return LeadProfileEnriched.model_validate(row.profile), True
    name = lead.full_name or " ".join(p for p in (lead.first_name, lead.last_name) if p) or None
    if not (name or lead.headline or lead.company or lead.city):
        return None, False
    fallback = LeadProfileEnriched(
        lead_id=lead.lead_id or uuid.uuid4(),
        full_name=name or "",
        first_name=lead.first_name,
        last_name=lead.last_name,
        headline=lead.headline,
        company_name=lead.company,
        city=lead.city,
    )
    return fallback, False


async def preview(
    core: MessagingCore,
    conn: AsyncConnection,
    ws: str,
    *,
    strategy: Strategy,
    steps: list[domain.StepSpec],
    video: bool,
    template: domain.Template | None,
    leads: list[SampleLead],
    now: datetime,
) -> list[LeadPreview]:
    """Each step's text for each sample lead (the writer runs; nothing is stored, no event is emitted)."""
    campaign = CampaignConfig(PREVIEW_CAMPAIGN, ws, strategy, steps, video)
    out: list[LeadPreview] = []
    for lead in leads:
        profile, enriched = await _profile(conn, ws, lead)
        texts: list[StepText] = []
        for step in steps:
            key = lead.lead_id or uuid.uuid5(PREVIEW_CAMPAIGN, f"{lead.full_name}|{lead.headline}")
            use = None if step.body else template  # an email step's own body wins, as when drafting
            composed = await core.compose(conn, campaign, key, profile, step, now, template=use)
            if composed is None:
                continue
            texts.append(
                StepText(
                    step_id=step.step_id,
                    channel=step.channel.value,
                    text=composed.written.text,
                    subject=composed.written.subject,
                    length=len(composed.written.text),
                    char_limit=composed.limit.text,
                    limit_label=limit_label(step.channel, composed.limit.text),
                    hook=composed.hook.to_event().model_dump(mode="json"),
                    template=composed.template.name,
                )
            )
        name = profile.full_name if profile and profile.full_name else lead.full_name
        out.append(LeadPreview(lead.lead_id, name, enriched, texts))
    return out
