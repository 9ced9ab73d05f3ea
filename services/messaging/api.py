"""Messaging's HTTP API: templates, strategy profiles, and the Messaging Lab (review queue of drafts).

Every route is scoped to the workspace of the bearer token; another workspace's campaign, draft or
template answers 404.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path
from leadstream_schemas import Channel, Envelope, MessageApproved, MessageEdited, MessageRejected, Strategy
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.auth import ReadWorkspace, WriteWorkspace
from services.runtime.consumer import RetryLater
from services.runtime.errors import Problem
from services.runtime.pagination import After, Limit, Page, decode_cursor, encode_cursor
from services.runtime.providers import ProviderError
from services.runtime.service import Service

from . import domain
from .handlers import (
    CampaignConfig,
    Emission,
    MessagingCore,
    lead_variant,
    load_campaign,
    load_profile,
    resolve_template,
)
from .store import campaigns, drafts, templates

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
    hook: dict[str, Any]
    template: str | None
    char_limit: int
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


# -- helpers --------------------------------------------------------------------------------------


def _draft_out(row: Row[Any]) -> DraftOut:
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


def _check_template(field: str, text: str) -> None:
    try:
        domain.parse_template(text)
    except domain.TemplateError as exc:
        raise Problem(
            422,
            "unknown_template_variable" if exc.variable is not None else "invalid_template",
            f"{field}: {exc}",
            field=field,
            variable=exc.variable,
            allowed=list(domain.VARIABLES),
        ) from None


async def _campaign(conn: AsyncConnection, ws: str, campaign_id: UUID) -> CampaignConfig:
    campaign = await load_campaign(conn, campaign_id)
    if campaign is None or campaign.workspace_id != ws:
        raise Problem(404, "campaign_not_found", f"no campaign {campaign_id} in this workspace")
    return campaign


async def _pending_draft(conn: AsyncConnection, ws: str, draft_id: UUID) -> Row[Any]:
    row = (
        await conn.execute(
            select(drafts).where(drafts.c.draft_id == draft_id, drafts.c.workspace_id == ws).with_for_update()
        )
    ).first()
    if row is None:
        raise Problem(404, "draft_not_found", f"no draft {draft_id} in this workspace")
    if row.status != "pending":
        raise Problem(409, "draft_not_pending", f"draft {draft_id} is already {row.status}", status_now=row.status)
    return row


async def _draft(conn: AsyncConnection, draft_id: UUID) -> Row[Any]:
    row = (await conn.execute(select(drafts).where(drafts.c.draft_id == draft_id))).first()
    assert row is not None
    return row


def build_router(core: MessagingCore, service: Service, *, generation_attempts: int = 3) -> APIRouter:
    """The messaging routes, bound to the service (engine, clock, outbox) and the draft writer."""
    router = APIRouter(prefix="/v1", tags=["messaging"])

    async def commit_events(conn: AsyncConnection, envelopes: list[Envelope[Any]]) -> None:
        await service.emit(conn, envelopes)

    # -- templates ----------------------------------------------------------------------------

    @router.post("/templates", status_code=201, response_model=TemplateOut)
    async def create_template(body: TemplateIn, ws: WriteWorkspace) -> TemplateOut:
        """Save a template; an unknown variable is a 422 naming it."""
        _check_template("body", body.body)
        if body.subject is not None:
            _check_template("subject", body.subject)
        if body.name in domain.BUILTIN_TEMPLATES:
            raise Problem(409, "template_exists", f"{body.name!r} is a built-in template name")
        template_id = uuid.uuid4()
        async with service.engine.begin() as conn:
            result = await conn.execute(
                insert(templates)
                .values(
                    template_id=template_id,
                    workspace_id=ws,
                    name=body.name,
                    category=body.category,
                    body=body.body,
                    subject=body.subject,
                    created_at=service.clock.now(),
                )
                .on_conflict_do_nothing()
            )
            if not result.rowcount:
                raise Problem(409, "template_exists", f"a template named {body.name!r} already exists")
        return _template_out(
            domain.Template(body.name, body.category, body.body, body.subject, str(template_id)), builtin=False
        )

    @router.get("/templates", response_model=Page[TemplateOut])
    async def list_templates(ws: ReadWorkspace, limit: Limit = 50, after: After = None) -> Page[TemplateOut]:
        """Built-in templates, then this workspace's, each by name."""
        # The order is (0 built-in | 1 workspace, name, id); the cursor is the last item's key.
        start = decode_cursor(after, 3, [int, str, str]) if after else None
        keyed: list[tuple[int, str, str, TemplateOut]] = []
        if start is None or start[0] == 0:
            builtins = sorted(domain.BUILTIN_TEMPLATES.values(), key=lambda t: t.name)
            keyed = [
                (0, t.name, "", _template_out(t, builtin=True)) for t in builtins if not start or t.name > start[1]
            ]
        if len(keyed) <= limit:
            q = select(templates).where(templates.c.workspace_id == ws)
            if start is not None and start[0] == 1:
                q = q.where(tuple_(templates.c.name, templates.c.template_id) > tuple_(start[1], UUID(start[2])))
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
        async with service.engine.begin() as conn:
            row = (
                await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id).with_for_update())
            ).first()
            if row is None or row.workspace_id != ws:
                raise Problem(404, "campaign_not_found", f"no campaign {campaign_id} in this workspace")
            if body.template and await resolve_template(conn, ws, body.template) is None:
                raise Problem(
                    422,
                    "unknown_template",
                    f"template: no template {body.template!r} in this workspace",
                    field="template",
                )
            # The steps needing a text are the workflow's (outreach decided them, invite notes included): a new
            # strategy changes how drafts are written and reviewed, not which steps have one.
            strategy = Strategy(**body.model_dump())
            await conn.execute(
                update(campaigns)
                .where(campaigns.c.campaign_id == campaign_id)
                .values(strategy=strategy.model_dump(mode="json"), updated_at=service.clock.now())
            )
            campaign = await load_campaign(conn, campaign_id)
            assert campaign is not None
            return strategy_out(campaign)

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
        now = service.clock.now()
        async with service.engine.begin() as conn:
            row = await _pending_draft(conn, ws, draft_id)
            event = MessageApproved(
                lead_id=row.lead_id,
                campaign_id=row.campaign_id,
                step_id=row.step_id,
                draft_id=row.draft_id,
                channel=Channel(row.channel),
                text=row.text,
                subject=row.subject,
                auto=False,
            )
            await conn.execute(
                update(drafts).where(drafts.c.draft_id == draft_id).values(status="approved", decided_at=now)
            )
            await commit_events(conn, [service.new_envelope(event, workspace_id=ws)])
            out = _draft_out(await _draft(conn, draft_id))
        service.wake_relay()
        return out

    @router.post("/drafts/{draft_id}/edit", response_model=DraftOut)
    async def edit(draft_id: UUID, body: EditIn, ws: WriteWorkspace) -> DraftOut:
        """Replace a pending draft's text (checked against its limit) -> ``MessageEdited``."""
        now = service.clock.now()
        async with service.engine.begin() as conn:
            row = await _pending_draft(conn, ws, draft_id)
            channel = Channel(row.channel)
            if body.subject is not None and channel != Channel.email:
                raise Problem(422, "subject_not_allowed", "subject: only email drafts have a subject", field="subject")
            text, subject = body.text.strip(), (body.subject.strip() if body.subject else row.subject)
            if "{" in text or "}" in text or (subject and ("{" in subject or "}" in subject)):
                # Variables in an edit are filled for this lead now, so nothing unrendered is ever sent.
                _check_template("text", text)
                _check_template("subject", subject or "")
                _, profile = await load_profile(conn, row.lead_id)
                values = domain.lead_variables(profile)
                text = domain.render(text, values)
                subject = domain.render(subject, values) if subject else subject
            limit = domain.Limit(row.char_limit, row.subject_limit, _label(channel, row.char_limit))
            violations = domain.check_limits(text, subject, limit)
            if violations:
                v = violations[0]
                raise Problem(
                    422,
                    "over_limit",
                    v.message(),
                    field=v.field,
                    length=v.length,
                    limit=v.limit,
                    errors=[{"field": x.field, "message": x.message()} for x in violations],
                )
            event = MessageEdited(
                lead_id=row.lead_id,
                campaign_id=row.campaign_id,
                step_id=row.step_id,
                draft_id=row.draft_id,
                channel=channel,
                text=text,
                subject=subject,
            )
            await conn.execute(
                update(drafts)
                .where(drafts.c.draft_id == draft_id)
                .values(status="edited", text=text, subject=subject, decided_at=now)
            )
            await commit_events(conn, [service.new_envelope(event, workspace_id=ws)])
            out = _draft_out(await _draft(conn, draft_id))
        service.wake_relay()
        return out

    @router.post("/drafts/{draft_id}/reject", response_model=RejectOut)
    async def reject(draft_id: UUID, body: RejectIn, ws: WriteWorkspace) -> RejectOut:
        """Reject a pending draft -> ``MessageRejected``, and write a new draft in its place (``MessageGenerated``)."""
        for attempt in range(1, generation_attempts + 1):
            try:
                return await _reject_once(draft_id, body.reason, ws)
            except (ProviderError, RetryLater) as exc:
                transient = isinstance(exc, RetryLater) or exc.transient
                if not transient or attempt == generation_attempts:
                    raise Problem(
                        503,
                        "generator_unavailable",
                        f"the draft could not be rewritten now ({exc}); nothing was changed, try again",
                    ) from None
                delay = exc.delay_s if isinstance(exc, RetryLater) else 0.2 * attempt
                await asyncio.sleep(min(delay, 2.0))
        raise AssertionError("unreachable")

    async def _reject_once(draft_id: UUID, reason: str, ws: str) -> RejectOut:
        now = service.clock.now()
        async with service.engine.begin() as conn:
            row = await _pending_draft(conn, ws, draft_id)
            campaign = await load_campaign(conn, row.campaign_id)
            assert campaign is not None
            _, profile = await load_profile(conn, row.lead_id)
            step = next(
                (s for s in campaign.steps if s.step_id == row.step_id),
                domain.StepSpec(row.step_id, Channel(row.channel)),
            ).for_variant(await lead_variant(conn, row.campaign_id, row.lead_id, row.step_id))
            rejected_env = service.new_envelope(
                MessageRejected(
                    lead_id=row.lead_id,
                    campaign_id=row.campaign_id,
                    step_id=row.step_id,
                    draft_id=row.draft_id,
                    channel=Channel(row.channel),
                    reason=reason,
                ),
                workspace_id=ws,
            )
            emissions: list[Emission] = await core.make_draft(
                conn,
                campaign,
                row.lead_id,
                profile,
                step,
                now,
                cause=rejected_env.id,
                attempt=row.attempt + 1,
                feedback=reason,
                replaces=row.draft_id,
            )
            await conn.execute(
                update(drafts)
                .where(drafts.c.draft_id == draft_id)
                .values(status="rejected", reason=reason, decided_at=now)
            )
            envs: list[Envelope[Any]] = [rejected_env]
            envs += [
                rejected_env.caused(em.event, source=service.source, time=now, discriminator=em.discriminator)
                for em in emissions
            ]
            await commit_events(conn, envs)
            rejected = _draft_out(await _draft(conn, draft_id))
            new_row = (
                await conn.execute(
                    select(drafts).where(drafts.c.replaces == draft_id).order_by(drafts.c.attempt.desc())
                )
            ).first()
        service.wake_relay()
        return RejectOut(rejected=rejected, replacement=_draft_out(new_row) if new_row else None)

    return router


def _label(channel: Channel, limit: int) -> str:
    if channel == Channel.invite:
        suffix = " (a personalised video is attached)" if limit == domain.INVITE_NOTE_VIDEO_LIMIT else ""
        return f"invite note limit of {limit} characters{suffix}"
    if channel == Channel.email:
        return f"email body limit of {limit} characters"
    return f"{channel.value} limit of {limit} characters"
