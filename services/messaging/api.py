"""Messaging's HTTP API: templates, strategy profiles, and the Messaging Lab (review queue of drafts).

Every route is scoped to the workspace of the bearer token; another workspace's campaign, draft or
template answers 404.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Path, Query
from leadstream_schemas import Channel, Hook, StepAction, Strategy
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.auth import ReadWorkspace, WriteWorkspace
from services.runtime.errors import Problem
from services.runtime.pagination import After, Limit, Page, cursor_int, decode_cursor, encode_cursor, invalid_cursor
from services.runtime.service import Service

from . import commands, domain
from .commands import LabCommands, check_template, limit_label
from .handlers import CampaignConfig, MessagingCore, load_campaign, resolve_template
from .previews import SampleLead, preview_workflow
from .previews import preview as previews_of
from .store import drafts, templates

Category = Literal["professional_introduction", "hiring_manager", "business_opportunity", "candidate_outreach"]


# -- bodies ---------------------------------------------------------------------------------------


class TemplateIn(BaseModel):
    """A template to save: its variables are checked now, not at send time."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    category: Category
    body: str = Field(min_length=1, max_length=2000)
    subject: str | None = Field(None, max_length=200)


class TemplateOut(BaseModel):
    """A saved or built-in template."""

    template_id: str
    name: str
    category: str
    body: str
    subject: str | None
    builtin: bool
    variables: list[str]


class StrategyIn(BaseModel):
    """A campaign's strategy profile."""

    model_config = ConfigDict(extra="forbid")

    offer: str = Field("", max_length=1000)
    proof: str = Field("", max_length=1000)
    tone: str = Field("friendly", max_length=50)
    call_to_action: str = Field("", max_length=300)
    template: str | None = Field(
        None, max_length=100, description="A built-in template name, or a template id or name."
    )
    review: bool = False
    invite_note: bool = True
    personalise: bool = Field(True, description="Light personalisation: rephrase each text slightly per recipient.")


class StrategyOut(StrategyIn):
    """A campaign's strategy profile and the steps it produces drafts for."""

    model_config = ConfigDict(extra="ignore")

    campaign_id: UUID
    steps: list[dict[str, Any]]
    video: bool


class DraftOut(BaseModel):
    """A draft in the Messaging Lab."""

    draft_id: UUID
    campaign_id: UUID
    lead_id: UUID
    step_id: str
    channel: str
    status: str
    text: str
    subject: str | None
    length: int
    hook: Hook
    template: str | None
    char_limit: int
    limit_label: str
    subject_limit: int | None
    needs_review: bool
    generator: str
    attempt: int
    replaces: UUID | None
    post_url: str | None
    reason: str | None
    created_at: datetime
    decided_at: datetime | None


class EditIn(BaseModel):
    """An edited text (re-checked against the channel's limit)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=10_000)
    subject: str | None = Field(None, min_length=1, max_length=1000)


class RejectIn(BaseModel):
    """Why a draft is rejected (passed to the writer of its replacement)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


class RejectOut(BaseModel):
    """The rejected draft and the new one written in its place."""

    rejected: DraftOut
    replacement: DraftOut | None


class BulkApproveIn(BaseModel):
    """Which pending drafts of the campaign to approve: these ids, or every pending one when omitted."""

    model_config = ConfigDict(extra="forbid")

    draft_ids: list[UUID] | None = Field(None, min_length=1, max_length=500)


class BulkApproveOut(BaseModel):
    """The drafts approved, and how many of those named were already decided (left as they were)."""

    approved: list[DraftOut]
    skipped: int


Text300 = Annotated[str, Field(max_length=300)]
CommentMode = Literal["auto", "draft"]
"""A comment step's review (the contract's ``Step.mode``)."""


class PreviewStepIn(BaseModel):
    """A workflow step (as outreach's graph lists it); the steps that carry a text are previewed."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=100)
    action: StepAction
    needs_text: bool | None = Field(None, description="Whether the step sends a text (outreach's graph says).")
    channel: Channel | None = Field(None, description="The text's channel (outreach's graph says).")
    note: bool | None = None
    mode: CommentMode | None = Field(None, description="A comment's review: draft (in the Messaging Lab) or auto.")
    template: str | None = Field(None, max_length=100)
    subject: str | None = Field(None, max_length=200)
    body: str | None = Field(None, max_length=2000)


class PreviewTemplateIn(BaseModel):
    """A template body (and email subject) not saved yet: the builder's editor."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=2000)
    subject: str | None = Field(None, max_length=200)


class PreviewEmailIn(BaseModel):
    """The email fallback's subject and body (its email step)."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field("", max_length=200)
    body: str = Field("", max_length=2000)


class PreviewLeadIn(BaseModel):
    """A sample lead: its id (its stored profile is used when known) and fields standing in for a profile."""

    model_config = ConfigDict(extra="forbid")

    lead_id: UUID | None = None
    full_name: Text300 | None = None
    first_name: Text300 | None = None
    last_name: Text300 | None = None
    city: Text300 | None = None
    headline: Text300 | None = None
    company: Text300 | None = None


class PreviewIn(BaseModel):
    """What a campaign would write: its strategy, template, workflow steps and video, for sample leads."""

    model_config = ConfigDict(extra="forbid")

    strategy: StrategyIn = Field(default_factory=StrategyIn)
    template: PreviewTemplateIn | None = None
    steps: list[PreviewStepIn] = Field(
        default_factory=list, max_length=30, description="The workflow's steps; none: an invite and a message."
    )
    email_fallback: PreviewEmailIn | None = None
    video: bool = Field(False, description="A personalised video is attached (invite notes get 130 characters).")
    leads: list[PreviewLeadIn] = Field(min_length=1, max_length=5)


class PreviewText(BaseModel):
    """One step's text for one lead, with its length against the channel's limit."""

    step_id: str
    channel: str
    text: str
    subject: str | None
    length: int
    char_limit: int
    limit_label: str
    over_limit: bool
    hook: Hook
    template: str


class PreviewLead(BaseModel):
    """Every step's text for one sample lead; ``enriched``: its stored profile was used."""

    lead_id: UUID | None
    name: str | None
    enriched: bool
    steps: list[PreviewText]


class PreviewOut(BaseModel):
    """The previews (nothing was saved and no event emitted)."""

    leads: list[PreviewLead]


# -- helpers --------------------------------------------------------------------------------------


def _draft_out(row: Any) -> DraftOut:
    return DraftOut(
        draft_id=row.draft_id,
        campaign_id=row.campaign_id,
        lead_id=row.lead_id,
        step_id=row.step_id,
        channel=row.channel,
        status=row.status,
        text=row.text,
        subject=row.subject,
        length=len(row.text),
        hook=row.hook,
        template=row.template,
        char_limit=row.char_limit,
        limit_label=limit_label(Channel(row.channel), row.char_limit),
        subject_limit=row.subject_limit,
        needs_review=row.needs_review,
        generator=row.generator,
        attempt=row.attempt,
        replaces=row.replaces,
        post_url=row.post_url,
        reason=row.reason,
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


def _template_out(t: domain.Template, builtin: bool) -> TemplateOut:
    names = {p.name for p in domain.parse_template(t.body + " " + (t.subject or ""))}
    return TemplateOut(
        template_id=t.template_id or t.name,
        name=t.name,
        category=t.category,
        body=t.body,
        subject=t.subject,
        builtin=builtin,
        variables=[v for v in domain.VARIABLES if v in names],
    )


async def _campaign(conn: AsyncConnection, ws: str, campaign_id: UUID) -> CampaignConfig:
    campaign = await load_campaign(conn, campaign_id)
    if campaign is None or campaign.workspace_id != ws:
        raise Problem(404, "campaign_not_found", f"no campaign {campaign_id} in this workspace")
    return campaign


def build_router(core: MessagingCore, service: Service, *, generation_attempts: int = 3) -> APIRouter:
    """The messaging routes, bound to the service (engine, clock, outbox) and the draft writer."""
    router = APIRouter(prefix="/v1", tags=["messaging"])
    lab = LabCommands(core, service, generation_attempts=generation_attempts)

    # -- templates ----------------------------------------------------------------------------

    @router.post("/templates", status_code=201, response_model=TemplateOut)
    async def create_template(body: TemplateIn, ws: WriteWorkspace) -> TemplateOut:
        """Save a template; an unknown variable is a 422 naming it."""
        saved = await commands.create_template(
            service, ws, name=body.name, category=body.category, body=body.body, subject=body.subject
        )
        return _template_out(saved, builtin=False)

    @router.get("/templates", response_model=Page[TemplateOut])
    async def list_templates(ws: ReadWorkspace, limit: Limit = 50, after: After = None) -> Page[TemplateOut]:
        """Built-in templates, then this workspace's, each by name."""
        # The order is (0 built-in | 1 workspace, name, id); the cursor is the last item's key.
        start = decode_cursor(after, 3, [cursor_int(0, 1), str, str]) if after else None
        if start is not None and start[0] == 1:
            # A workspace template's key ends with its id: a cursor whose id is not one was not made here.
            try:
                start[2] = UUID(start[2])
            except ValueError:
                raise invalid_cursor() from None
        keyed: list[tuple[int, str, str, TemplateOut]] = []
        if start is None or start[0] == 0:
            builtins = sorted(domain.BUILTIN_TEMPLATES.values(), key=lambda t: t.name)
            keyed = [
                (0, t.name, "", _template_out(t, builtin=True)) for t in builtins if not start or t.name > start[1]
            ]
        if len(keyed) <= limit:
            q = select(templates).where(templates.c.workspace_id == ws)
            if start is not None and start[0] == 1:
                q = q.where(tuple_(templates.c.name, templates.c.template_id) > tuple_(start[1], start[2]))
            async with service.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        q.order_by(templates.c.name, templates.c.template_id).limit(limit + 1 - len(keyed))
                    )
                ).all()
            keyed += [
                (
                    1,
                    r.name,
                    str(r.template_id),
                    _template_out(
                        domain.Template(r.name, r.category, r.body, r.subject, str(r.template_id)), builtin=False
                    ),
                )
                for r in rows
            ]
        page = Page.of(keyed, limit, lambda k: encode_cursor(list(k[:3])))
        return Page[TemplateOut](items=[k[3] for k in page.items], next=page.next)

    @router.get("/templates/{ref}", response_model=TemplateOut)
    async def get_template(ref: Annotated[str, Path(max_length=200)], ws: ReadWorkspace) -> TemplateOut:
        """One template by id (or built-in name)."""
        async with service.engine.connect() as conn:
            found = await resolve_template(conn, ws, ref)
        if found is None:
            raise Problem(404, "template_not_found", f"no template {ref!r} in this workspace")
        return _template_out(found, builtin=found.template_id is None)

    # -- strategy -----------------------------------------------------------------------------

    def strategy_out(c: CampaignConfig) -> StrategyOut:
        return StrategyOut(
            campaign_id=c.campaign_id,
            steps=[s.to_json() for s in c.steps],
            video=c.video,
            **c.strategy.model_dump(),
        )

    @router.get("/campaigns/{campaign_id}/strategy", response_model=StrategyOut)
    async def get_strategy(campaign_id: UUID, ws: ReadWorkspace) -> StrategyOut:
        """The campaign's strategy profile."""
        async with service.engine.connect() as conn:
            return strategy_out(await _campaign(conn, ws, campaign_id))

    @router.put("/campaigns/{campaign_id}/strategy", response_model=StrategyOut)
    async def put_strategy(campaign_id: UUID, body: StrategyIn, ws: WriteWorkspace) -> StrategyOut:
        """Replace the campaign's strategy profile; drafts written from now on use it."""
        return strategy_out(await commands.set_strategy(service, ws, campaign_id, Strategy(**body.model_dump())))

    # -- the Messaging Lab --------------------------------------------------------------------

    @router.get("/campaigns/{campaign_id}/drafts", response_model=Page[DraftOut])
    async def list_drafts(
        campaign_id: UUID,
        ws: ReadWorkspace,
        status: Literal["pending", "approved", "edited", "rejected", "all"] = "pending",
        lead_id: UUID | None = None,
        limit: Limit = 100,
        after: After = None,
    ) -> Page[DraftOut]:
        """A campaign's drafts, oldest first (pending ones by default: the review queue)."""
        async with service.engine.connect() as conn:
            await _campaign(conn, ws, campaign_id)
            cond = [drafts.c.workspace_id == ws, drafts.c.campaign_id == campaign_id]
            if status != "all":
                cond.append(drafts.c.status == status)
            if lead_id is not None:
                cond.append(drafts.c.lead_id == lead_id)
            if after:
                created, draft_id = decode_cursor(after, 2, [datetime.fromisoformat, UUID])
                cond.append(tuple_(drafts.c.created_at, drafts.c.draft_id) > tuple_(created, draft_id))
            rows = (
                await conn.execute(
                    select(drafts).where(and_(*cond)).order_by(drafts.c.created_at, drafts.c.draft_id).limit(limit + 1)
                )
            ).all()
        page = Page.of(rows, limit, lambda r: encode_cursor([r.created_at.isoformat(), str(r.draft_id)]))
        return Page[DraftOut](items=[_draft_out(r) for r in page.items], next=page.next)

    @router.get("/drafts/{draft_id}", response_model=DraftOut)
    async def get_draft(draft_id: UUID, ws: ReadWorkspace) -> DraftOut:
        """One draft."""
        async with service.engine.connect() as conn:
            row = (
                await conn.execute(select(drafts).where(drafts.c.draft_id == draft_id, drafts.c.workspace_id == ws))
            ).first()
        if row is None:
            raise Problem(404, "draft_not_found", f"no draft {draft_id} in this workspace")
        return _draft_out(row)

    @router.post("/drafts/{draft_id}/approve", response_model=DraftOut)
    async def approve(draft_id: UUID, ws: WriteWorkspace) -> DraftOut:
        """Approve a pending draft as written -> ``MessageApproved``."""
        return _draft_out(await lab.approve(ws, draft_id))

    @router.post("/campaigns/{campaign_id}/drafts/approve", response_model=BulkApproveOut)
    async def approve_many(
        campaign_id: UUID,
        ws: WriteWorkspace,
        body: BulkApproveIn = Body(default_factory=BulkApproveIn),  # noqa: B008
    ) -> BulkApproveOut:
        """Approve many pending drafts of the campaign at once (those named, or all) -> ``MessageApproved`` each."""
        async with service.engine.connect() as conn:
            await _campaign(conn, ws, campaign_id)
        approved, skipped = await lab.approve_many(ws, campaign_id, body.draft_ids)
        return BulkApproveOut(approved=[_draft_out(r) for r in approved], skipped=skipped)

    @router.post("/drafts/{draft_id}/edit", response_model=DraftOut)
    async def edit(
        draft_id: UUID,
        body: EditIn,
        ws: WriteWorkspace,
        dry_run: Annotated[bool, Query(description="Only check the edit (same 422s); change nothing.")] = False,
    ) -> DraftOut:
        """Replace a pending draft's text (checked against its limit) -> ``MessageEdited``; ``dry_run`` only checks."""
        return _draft_out(await lab.edit(ws, draft_id, body.text, body.subject, dry_run=dry_run))

    @router.post("/drafts/{draft_id}/reject", response_model=RejectOut)
    async def reject(draft_id: UUID, body: RejectIn, ws: WriteWorkspace) -> RejectOut:
        """Reject a pending draft -> ``MessageRejected``, and write a new draft in its place (``MessageGenerated``)."""
        done = await lab.reject(ws, draft_id, body.reason)
        return RejectOut(
            rejected=_draft_out(done.rejected),
            replacement=_draft_out(done.replacement) if done.replacement is not None else None,
        )

    # -- previews -----------------------------------------------------------------------------

    @router.post("/previews", response_model=PreviewOut)
    async def previews(body: PreviewIn, ws: WriteWorkspace) -> PreviewOut:
        """Each step's message for a few sample leads, written as the campaign would write it, before it exists:
        nothing is saved and no event is emitted (the campaign builder shows these before launch)."""
        template = None
        if body.template is not None:
            check_template("template.body", body.template.body)
            check_template("template.subject", body.template.subject or "")
            template = domain.Template("custom", "professional_introduction", body.template.body, body.template.subject)
        strategy = Strategy(**body.strategy.model_dump())
        delivery: dict[str, Any] = {}
        if body.email_fallback is not None:
            check_template("email_fallback.body", body.email_fallback.body)
            check_template("email_fallback.subject", body.email_fallback.subject)
            delivery["email_fallback"] = body.email_fallback.model_dump()
        workflow = preview_workflow(
            [s.model_dump(exclude_none=True) for s in body.steps],
            invite_note=strategy.invite_note,
            email_fallback=body.email_fallback is not None,
        )
        steps = domain.message_steps(workflow)
        if body.email_fallback is not None:
            steps = [
                replace(
                    s,
                    subject=s.subject or body.email_fallback.subject or None,
                    body=s.body or body.email_fallback.body or None,
                )
                if s.channel == Channel.email
                else s
                for s in steps
            ]
        async with service.engine.connect() as conn:
            if strategy.template and await resolve_template(conn, ws, strategy.template) is None:
                raise commands.unknown_template("strategy.template", strategy.template)
            for i, step in enumerate(body.steps):
                # A campaign's step falls back to the strategy's template when its own is unknown; a preview says so
                # instead, as it does for the strategy's: the builder shows the previews to check them.
                if step.template and await resolve_template(conn, ws, step.template) is None:
                    raise commands.unknown_template(f"steps.{i}.template", step.template)
            leads = [SampleLead(**lead.model_dump()) for lead in body.leads]
            found = await lab.writing(
                lambda: previews_of(
                    core,
                    conn,
                    ws,
                    strategy=strategy,
                    steps=steps,
                    video=body.video,
                    template=template,
                    leads=leads,
                    now=service.clock.now(),
                ),
                "the previews could not be written now",
            )
        return PreviewOut(
            leads=[
                PreviewLead(
                    lead_id=lp.lead_id,
                    name=lp.name,
                    enriched=lp.enriched,
                    steps=[PreviewText(**t.__dict__, over_limit=t.length > t.char_limit) for t in lp.steps],
                )
                for lp in found
            ]
        )

    return router
