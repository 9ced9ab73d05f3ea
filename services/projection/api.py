"""The projection's HTTP API: timelines, lead state, campaign list, summaries, result tables, home and activity.

Every route is scoped to the workspace of the bearer token; another workspace's lead or campaign
answers 404. Lists use keyset pagination: ``next`` is an opaque cursor to pass as ``after``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, overload
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Header, Query, Request, Response
from leadstream_schemas import LIMIT_STATUSES, EmailSent, InviteAccepted, InviteSent, MessageSent, Replied
from leadstream_schemas.personal import TOKEN_PREFIX
from pydantic import BaseModel, Field
from sqlalchemy import and_, bindparam, case, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.runtime.auth import ReadWorkspace
from services.runtime.clock import Clock
from services.runtime.db import read
from services.runtime.errors import Problem, problems
from services.runtime.pagination import SMALLINT_MAX, bounded, cursor_int, decode_cursor, encode_cursor
from services.runtime.personal import Person, PersonalReader, keys_on

from . import domain
from .live import ChangeHub
from .store import SUMMARY_COUNTS, Views

# -- response models ----------------------------------------------------------------------------


class TimelineItem(BaseModel):
    """One event of a lead's timeline."""

    event_id: UUID
    type: str
    time: datetime
    summary: str
    campaign_id: UUID | None
    campaign_name: str | None
    account_id: UUID | None
    account_name: str | None
    step_id: str | None


class Timeline(BaseModel):
    """A lead's events in the order they happened (time, then lifecycle order)."""

    lead_id: UUID
    items: list[TimelineItem]
    next: str | None = Field(None, description="Cursor for the following page (pass as `after`).")


class LeadCampaign(BaseModel):
    """A lead's standing in one campaign."""

    campaign_id: UUID
    campaign_name: str | None
    status: str
    workflow_stage: str | None
    workflow_stage_label: str | None
    video_url: str | None
    last_event_at: datetime | None


class Post(BaseModel):
    """A recent post or article of the lead."""

    text: str = Field(max_length=20_000)
    topic: str | None = Field(None, max_length=500)
    posted_on: date | None = None
    url: str | None = Field(None, max_length=2000)
    kind: str = Field("post", max_length=20)


class Position(BaseModel):
    """A position of the lead's work history."""

    title: str = Field(max_length=500)
    company: str = Field(max_length=500)
    started_on: date | None = None
    ended_on: date | None = None


class Milestone(BaseModel):
    """A company milestone (funding, hiring, ...)."""

    kind: str = Field(max_length=50)
    detail: str = Field(max_length=2000)
    occurred_on: date | None = None


class LeadProfile(BaseModel):
    """What enrichment found beyond the lead row: role, company size and industry, posts, history, skills."""

    first_name: str | None = Field(None, max_length=500)
    last_name: str | None = Field(None, max_length=500)
    headline: str | None = Field(None, max_length=2000)
    role: str | None = Field(None, max_length=500)
    company_name: str | None = Field(None, max_length=500)
    company_size: str | None = Field(None, max_length=100)
    company_industry: str | None = Field(None, max_length=500)
    city: str | None = Field(None, max_length=500)
    recent_posts: list[Post] = Field(default_factory=list, max_length=200)
    work_history: list[Position] = Field(default_factory=list, max_length=200)
    skills: list[str] = Field(default_factory=list, max_length=500)
    company_milestones: list[Milestone] = Field(default_factory=list, max_length=200)


class Hook(BaseModel):
    """What a draft's opening refers to, and why it was chosen."""

    kind: str | None = Field(None, max_length=50)
    detail: str | None = Field(None, max_length=2000)
    reason: str | None = Field(None, max_length=2000)
    fallback: bool = False


class OutreachStep(BaseModel):
    """The current draft of one step of the lead in a campaign: text, hook and review state."""

    campaign_id: UUID | None
    campaign_name: str | None = Field(max_length=1000)
    step_id: str = Field(max_length=200)
    channel: str | None = Field(max_length=20)
    draft_id: str | None = Field(max_length=64)
    text: str = Field(max_length=20_000)
    subject: str | None = Field(max_length=2000)
    hook: Hook
    template: str | None = Field(max_length=200)
    char_limit: int | None
    needs_review: bool
    review_state: str = Field(
        max_length=20,
        description="pending_review, generated, auto_approved, approved, edited (approved with the reviewer's "
        "text) or rejected (a new draft is being written).",
    )
    generated_at: datetime
    reviewed_at: datetime | None
    rejection_reason: str | None = Field(max_length=2000)
    drafts: int = Field(description="Drafts written for this step (more than one after rejections).")


class Lead(BaseModel):
    """A lead's state: who it is, its pipeline stage and its workflow stage (overall and per campaign),
    what enrichment found (``profile``) and what messaging wrote for it (``outreach``)."""

    lead_id: UUID
    name: str | None
    headline: str | None
    company: str | None
    linkedin_url: str | None
    location: str | None
    email: str | None
    email_status: str | None
    signal: str | None
    source: str | None
    pipeline_stage: str
    pipeline_rank: int
    workflow_stage: str | None
    workflow_stage_label: str | None
    video_url: str | None
    first_event_at: datetime | None
    last_event_at: datetime | None
    events: int
    campaigns: list[LeadCampaign]
    profile: LeadProfile | None = None
    outreach: list[OutreachStep] = Field(default_factory=list, max_length=1000)


class Summary(BaseModel):
    """A campaign's counts and rates."""

    campaign_id: UUID
    name: str | None
    state: str
    leads: int = 0
    queued: int = 0
    in_progress: int = 0
    queued_or_in_progress: int = 0
    resolved: int = 0
    invited_leads: int = 0
    invites_sent: int = 0
    accepted: int = 0
    waiting_acceptance: int = 0
    messages_sent: int = 0
    emails_sent: int = 0
    comments_posted: int = 0
    likes: int = 0
    contacted: int = 0
    failed_actions: int = 0
    skipped_actions: int = 0
    replied: int = 0
    completed: int = 0
    unsubscribed: int = 0
    videos_generated: int = 0
    drafts_pending: int = Field(0, description="Drafts waiting for a reviewer in the Messaging Lab.")
    acceptance_rate: float = Field(0.0, description="Accepted invites / leads invited.")
    reply_rate: float = Field(0.0, description="Leads who replied / leads contacted.")


class Campaign(BaseModel):
    """A campaign in the list: its set-up, state and counts."""

    campaign_id: UUID
    name: str | None
    audience_type: str | None
    audience_ref: str | None
    workflow: str | None
    pace: str | None
    video: bool
    state: str
    state_detail: str | None
    next_run_at: datetime | None
    created_at: datetime | None
    launched_at: datetime | None
    summary: Summary


class CampaignPage(BaseModel):
    """A page of campaigns, newest first."""

    items: list[Campaign]
    next: str | None = None


class ResultRow(BaseModel):
    """One lead of a campaign's result table."""

    lead_id: UUID
    name: str | None
    linkedin_url: str | None
    headline: str | None
    company: str | None
    status: str
    workflow_stage: str
    workflow_stage_label: str
    video_url: str | None
    last_event_at: datetime | None


class ResultPage(BaseModel):
    """A page of a campaign's result table, ordered by lead name."""

    items: list[ResultRow]
    next: str | None = None


class ActivityItem(BaseModel):
    """A recent lead row summarised for the activity feed."""

    lead_id: UUID
    name: str | None
    campaign_id: UUID
    campaign_name: str | None
    category: str
    workflow_stage: str
    at: datetime | None


class Activity(BaseModel):
    """The most recent lead rows (newest first) and how many of them fall in each category."""

    counts: dict[str, int]
    items: list[ActivityItem]
    next: str | None = Field(None, description="Cursor for the following page (pass as `after`).")


class SeriesDay(BaseModel):
    """One day of a campaign's activity (a local day of the requested time zone)."""

    day: date
    invites: int = 0
    acceptances: int = 0
    messages: int = 0
    emails: int = 0
    replies: int = 0


class Series(BaseModel):
    """A campaign's invites, acceptances, messages, emails and replies per day, oldest first, no day missing."""

    campaign_id: UUID
    timezone: str = Field(max_length=64)
    days: list[SeriesDay] = Field(max_length=366)


class StageCount(BaseModel):
    """How many of a campaign's leads are at one workflow stage."""

    stage: str = Field(max_length=50)
    label: str = Field(max_length=100)
    count: int


class Stages(BaseModel):
    """A campaign's leads per workflow stage (the result table's stage filter), most first."""

    campaign_id: UUID
    stages: list[StageCount] = Field(max_length=100)


class VariantStats(BaseModel):
    """How one A/B variant of a step did: the leads that got it, and how many accepted (an invite's variant) and
    replied; the rates are their shares of ``leads`` (None without leads, or for acceptance after a message)."""

    step_id: str = Field(max_length=200)
    variant: str = Field(max_length=100)
    leads: int
    accepted: int
    replied: int
    acceptance_rate: float | None
    reply_rate: float | None


class Variants(BaseModel):
    """A campaign's A/B variants with their acceptance and reply rates, by step then variant."""

    campaign_id: UUID
    variants: list[VariantStats] = Field(max_length=500)


class AccountCampaign(BaseModel):
    """A campaign that uses an account."""

    campaign_id: UUID
    name: str | None = Field(max_length=1000)
    state: str = Field(max_length=20)
    leased: bool = Field(description="The campaign holds the account's lease now (it is sending from it).")


class Account(BaseModel):
    """A connected account: its health, why, since when, and the campaigns that use it."""

    account_id: UUID
    name: str = Field(max_length=1000)
    provider: str | None = Field(max_length=50)
    status: str | None = Field(max_length=50)
    health: str = Field(max_length=20, description="healthy, reconnect_required, limited, pending or deleted")
    reason: str | None = Field(max_length=500)
    status_changed_at: datetime | None
    connected_at: datetime | None
    campaigns: list[AccountCampaign] = Field(max_length=1000)


class Accounts(BaseModel):
    """The workspace's accounts, reconnect-required ones first (then by name)."""

    items: list[Account] = Field(max_length=200)
    next: str | None = Field(None, description="Cursor for the following page (pass as `after`).")


class OnboardingStep(BaseModel):
    """One step of the onboarding checklist."""

    key: str = Field(max_length=50)
    label: str = Field(max_length=200)
    done: bool
    done_at: datetime | None


class Onboarding(BaseModel):
    """Workspace ready -> a LinkedIn account connected -> first campaign launched, derived from the events."""

    workspace_id: str = Field(max_length=200)
    steps: list[OnboardingStep] = Field(max_length=10)
    complete: bool
    next_step: str | None = Field(max_length=50, description="Key of the first step not done yet.")


class InboxItem(BaseModel):
    """An operational next step (``kind`` says what resolves it; the ids say where)."""

    kind: str = Field(max_length=50, description=f"One of: {', '.join(domain.INBOX_KINDS)}.")
    severity: str = Field(max_length=20, description="critical, warning or action")
    title: str = Field(max_length=1000)
    detail: str | None = Field(max_length=5000)
    campaign_id: UUID | None
    account_id: UUID | None
    count: int


class Inbox(BaseModel):
    """The action inbox, most urgent first."""

    items: list[InboxItem] = Field(max_length=2000)


class ChangeOut(BaseModel):
    """One view change of the change stream (the data of a ``change`` event)."""

    seq: int
    kind: str = Field(max_length=20, description="lead, campaign, account or search")
    lead_id: UUID | None
    campaign_id: UUID | None
    account_id: UUID | None
    search_id: UUID | None
    at: datetime


class Home(BaseModel):
    """The home page: totals, onboarding, action inbox, recent and active campaigns, and the activity feed."""

    campaigns_total: int
    active_campaigns: int
    leads_total: int
    recent_campaigns: list[Campaign]
    active: list[Campaign]
    activity: Activity
    onboarding: Onboarding | None = None
    inbox: Inbox | None = None


# -- helpers ------------------------------------------------------------------------------------


def _cursor(values: list[Any]) -> str:
    return encode_cursor(values)


def _like(q: str) -> str:
    """An ILIKE pattern matching ``q`` anywhere, its wildcards taken literally."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _label(code: str | None) -> str | None:
    return domain.WORKFLOW_LABELS.get(code, code) if code else None


def _summary(campaign_id: UUID, name: str | None, state: str, counts: dict[str, Any]) -> Summary:
    c = {k: int(counts.get(k) or 0) for k in SUMMARY_COUNTS}
    return Summary(
        campaign_id=campaign_id,
        name=name,
        state=state,
        **c,
        queued_or_in_progress=c["queued"] + c["in_progress"],
        acceptance_rate=domain.rate(c["accepted"], c["invited_leads"]),
        reply_rate=domain.rate(c["replied"], c["contacted"]),
    )


class Reads:
    """The read queries, over the views of one schema; ``personal`` opens the personal texts the timeline keeps
    sealed (``EventProjection.opens_personal``), with the lead's key looked up on the read's connection."""

    def __init__(self, views: Views, personal: PersonalReader | None = None) -> None:
        self.v = views
        self.personal = personal or PersonalReader()  # keys looked up on the read's connection (keys_on)
        # A lead's timeline is read again on each live change of the lead (the console's lead page; the live
        # benchmark's probes): its statement is built once, with its values bound per call. Building it per call
        # cost ~0.2 ms, and SQLAlchemy's cache key of a new statement ~0.1 ms more; a kept statement memoizes its
        # key (bench/results/NOTES.md).
        t, a, c = views.timeline, views.accounts, views.campaigns
        timeline = (
            select(t, a.c.display_name, c.c.name.label("campaign_name"))
            .select_from(
                t.outerjoin(a, and_(a.c.workspace_id == t.c.workspace_id, a.c.account_id == t.c.account_id)).outerjoin(
                    c, and_(c.c.workspace_id == t.c.workspace_id, c.c.campaign_id == t.c.campaign_id)
                )
            )
            .where(t.c.workspace_id == bindparam("ws"), t.c.lead_id == bindparam("lead_id"))
            .order_by(t.c.event_time, t.c.type_rank, t.c.event_id)
            .limit(bindparam("limit"))
        )
        self._timeline = timeline
        self._timeline_after = timeline.where(
            tuple_(t.c.event_time, t.c.type_rank, t.c.event_id)
            > tuple_(bindparam("after_time"), bindparam("after_rank"), bindparam("after_id"))
        )
        # One campaign with its counts: read again on each live change of any of its leads (its page's summary).
        self._one_campaign = self._campaign_select().where(
            c.c.workspace_id == bindparam("ws"), c.c.campaign_id == bindparam("campaign_id")
        )

    async def _person(self, conn: AsyncConnection, ws: str, lead_id: UUID) -> Person:
        """The lead as a person whose key is loaded (looked up on ``conn``, or cached a few seconds)."""
        person = (ws, str(lead_id))
        await self.personal.load([person], keys_on(conn))
        return person

    async def _opener(self, conn: AsyncConnection, ws: str, lead_id: UUID, needed: bool) -> domain.Opener | None:
        """What opens the lead's sealed summary texts (None when no row holds one: no key lookup)."""
        if not needed:
            return None
        person = await self._person(conn, ws, lead_id)
        return lambda token: self.personal.text(person, token)

    def _campaign_select(self) -> Any:
        c, s = self.v.campaigns, self.v.campaign_summary
        cols = [s.c[k] for k in SUMMARY_COUNTS]
        return select(c, *cols).select_from(
            c.outerjoin(s, and_(s.c.workspace_id == c.c.workspace_id, s.c.campaign_id == c.c.campaign_id))
        )

    def _campaign(self, row: Any) -> Campaign:
        m = row._mapping
        state = m["effective_state"]
        return Campaign(
            campaign_id=m["campaign_id"],
            name=m["name"],
            audience_type=m["audience_type"],
            audience_ref=m["audience_ref"],
            workflow=m["workflow"],
            pace=m["pace"],
            video=bool(m["video"]),
            state=state,
            state_detail=m["state_detail"],
            next_run_at=m["next_run_at"],
            created_at=m["created_at"],
            launched_at=m["launched_at"],
            summary=_summary(m["campaign_id"], m["name"], state, dict(m)),
        )

    @overload
    async def timeline(
        self, conn: AsyncConnection, ws: str, lead_id: UUID, after: str | None, limit: int
    ) -> Timeline: ...

    @overload
    async def timeline(
        self, conn: AsyncConnection, ws: str, lead_id: UUID, after: str | None, limit: int, *, known: bool
    ) -> Timeline | None: ...

    async def timeline(
        self, conn: AsyncConnection, ws: str, lead_id: UUID, after: str | None, limit: int, *, known: bool = True
    ) -> Timeline | None:
        """A page of the lead's timeline; an unknown lead is a 404, or (``known=False``, a waiting read that only
        asks whether there is anything yet) an empty page is None, the lead's existence not asked."""
        ls = self.v.lead_state
        params: dict[str, Any] = {"ws": ws, "lead_id": lead_id, "limit": limit + 1}
        stmt = self._timeline
        if after:
            when, rank, eid = decode_cursor(after, 3, [datetime.fromisoformat, cursor_int(0, SMALLINT_MAX), UUID])
            params.update(after_time=when, after_rank=rank, after_id=eid)
            stmt = self._timeline_after
        rows = (await conn.execute(stmt, params)).all()
        open_token = await self._opener(conn, ws, lead_id, any(domain.SEALED_MARK in r.summary for r in rows))
        # One statement for a lead with events; the lead's existence is asked only when the page is empty (an
        # unknown lead, another workspace's, a known lead without events yet, or a cursor past the end). The
        # batch that writes a lead's first timeline row writes its lead_state row in the same transaction.
        if not rows:
            if not known:
                return None
            exists = await conn.scalar(select(literal(1)).where(ls.c.workspace_id == ws, ls.c.lead_id == lead_id))
            if not exists:
                raise Problem(404, "not_found", f"lead {lead_id} not found")
        items = [
            TimelineItem(
                event_id=r.event_id,
                type=r.event_type,
                time=r.event_time,
                summary=domain.render_summary(r.summary, r.display_name, r.account_id, open_token),
                campaign_id=r.campaign_id,
                campaign_name=r.campaign_name,
                account_id=r.account_id,
                account_name=r.display_name,
                step_id=r.step_id,
            )
            for r in rows[:limit]
        ]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = _cursor([last.event_time.isoformat(), last.type_rank, str(last.event_id)])
        return Timeline(lead_id=lead_id, items=items, next=nxt)

    async def lead(self, conn: AsyncConnection, ws: str, lead_id: UUID) -> Lead:
        ls, lc, c = self.v.lead_state, self.v.lead_campaign, self.v.campaigns
        row = (await conn.execute(select(ls).where(ls.c.workspace_id == ws, ls.c.lead_id == lead_id))).first()
        if row is None:
            raise Problem(404, "not_found", f"lead {lead_id} not found")
        camps = (
            await conn.execute(
                select(lc, c.c.name.label("campaign_name"))
                .select_from(
                    lc.outerjoin(c, and_(c.c.workspace_id == lc.c.workspace_id, c.c.campaign_id == lc.c.campaign_id))
                )
                .where(lc.c.workspace_id == ws, lc.c.lead_id == lead_id)
                .order_by(lc.c.first_event_at, lc.c.campaign_id)
            )
        ).all()
        t = self.v.timeline
        details = [
            domain.DetailRow(*d)
            for d in (
                await conn.execute(
                    select(t.c.event_type, t.c.event_time, t.c.campaign_id, t.c.step_id, t.c.detail)
                    .where(t.c.workspace_id == ws, t.c.lead_id == lead_id, t.c.event_type.in_(domain.DETAIL_TYPES))
                    .order_by(t.c.event_time, t.c.type_rank, t.c.event_id)
                )
            ).all()
        ]
        if any(d.detail and TOKEN_PREFIX in d.detail for d in details):
            person = await self._person(conn, ws, lead_id)
            details = [
                d._replace(detail=(self.personal.open(d.detail.encode(), None, person, d.event_type) or b"").decode())
                if d.detail
                else d
                for d in details
            ]
        names = {x.campaign_id: x.campaign_name for x in camps}
        profile = domain.lead_profile(details)
        r = row._mapping
        return Lead(
            profile=LeadProfile.model_validate(profile) if profile is not None else None,
            outreach=[
                OutreachStep(
                    campaign_id=o.campaign_id,
                    campaign_name=names.get(o.campaign_id),
                    step_id=o.step_id,
                    channel=o.channel,
                    draft_id=o.draft_id,
                    text=o.text,
                    subject=o.subject,
                    hook=Hook.model_validate(o.hook),
                    template=o.template,
                    char_limit=o.char_limit,
                    needs_review=o.needs_review,
                    review_state=o.review_state,
                    generated_at=o.generated_at,
                    reviewed_at=o.reviewed_at,
                    rejection_reason=o.rejection_reason,
                    drafts=o.drafts,
                )
                for o in domain.lead_outreach(details)
            ],
            lead_id=lead_id,
            name=r["name"],
            headline=r["headline"],
            company=r["company"],
            linkedin_url=r["linkedin_url"],
            location=r["prof_city"] or r["disc_location"],
            email=r["email"],
            email_status=r["email_status"],
            signal=r["signal"],
            source=r["source"],
            pipeline_stage=domain.stage_name(r["pipeline_rank"]),
            pipeline_rank=r["pipeline_rank"] or 1,
            workflow_stage=r["stage"],
            workflow_stage_label=_label(r["stage"]),
            video_url=r["video_url"],
            first_event_at=r["first_event_at"],
            last_event_at=r["last_event_at"],
            events=r["event_count"],
            campaigns=[
                LeadCampaign(
                    campaign_id=x.campaign_id,
                    campaign_name=x.campaign_name,
                    status=x.status,
                    workflow_stage=x.stage,
                    workflow_stage_label=_label(x.stage),
                    video_url=x.video_url,
                    last_event_at=x.last_event_at,
                )
                for x in camps
            ],
        )

    async def campaigns(
        self,
        conn: AsyncConnection,
        ws: str,
        state: str | None,
        after: str | None,
        limit: int,
        q: str | None = None,
    ) -> CampaignPage:
        c = self.v.campaigns
        order_time = func.coalesce(c.c.created_at, c.c.last_event_at)
        stmt = self._campaign_select().where(c.c.workspace_id == ws)
        if state:
            stmt = stmt.where(c.c.effective_state == state)
        else:
            stmt = stmt.where(c.c.effective_state != "deleted")
        if q:
            stmt = stmt.where(c.c.name.ilike(_like(q)))
        if after:
            key_time, key_id = decode_cursor(after, 2, [datetime.fromisoformat, UUID])
            stmt = stmt.where(or_(order_time < key_time, and_(order_time == key_time, c.c.campaign_id < key_id)))
        rows = (await conn.execute(stmt.order_by(order_time.desc(), c.c.campaign_id.desc()).limit(limit + 1))).all()
        items = [self._campaign(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]._mapping
            nxt = _cursor([(last["created_at"] or last["last_event_at"]).isoformat(), str(last["campaign_id"])])
        return CampaignPage(items=items, next=nxt)

    async def campaign(self, conn: AsyncConnection, ws: str, campaign_id: UUID) -> Campaign:
        """One campaign as the list shows it (404 when the workspace has no such campaign)."""
        row = (await conn.execute(self._one_campaign, {"ws": ws, "campaign_id": campaign_id})).first()
        if row is None:
            raise Problem(404, "not_found", f"campaign {campaign_id} not found")
        return self._campaign(row)

    async def summary(self, conn: AsyncConnection, ws: str, campaign_id: UUID) -> Summary:
        s = self.v.campaign_summary
        row = (await conn.execute(self._one_campaign, {"ws": ws, "campaign_id": campaign_id})).first()
        if row is not None:
            return self._campaign(row).summary
        # Lead events of a campaign can arrive before the campaign's own events (another topic).
        counts = (await conn.execute(select(s).where(s.c.workspace_id == ws, s.c.campaign_id == campaign_id))).first()
        if counts is None:
            raise Problem(404, "not_found", f"campaign {campaign_id} not found")
        return _summary(campaign_id, None, "pending", dict(counts._mapping))

    def _stage_expr(self) -> Any:
        lc, ls = self.v.lead_campaign, self.v.lead_state
        # A lead matched by the audience but not yet acted on in this campaign: its enrichment progress.
        before = case(
            (ls.c.email_key.is_not(None), "ready"), (ls.c.prof_key.is_not(None), "resolved"), else_="signal_matched"
        )
        return func.coalesce(lc.c.stage, before)

    async def results(
        self,
        conn: AsyncConnection,
        ws: str,
        campaign_id: UUID,
        q: str | None,
        stage: str | None,
        status: str | None,
        after: str | None,
        limit: int,
    ) -> ResultPage:
        lc, ls = self.v.lead_campaign, self.v.lead_state
        await self._campaign_known(conn, ws, campaign_id)
        stage_expr = self._stage_expr().label("workflow_stage")
        stmt = (
            select(lc, ls.c.name, ls.c.linkedin_url, ls.c.headline, ls.c.company, ls.c.sort_name, stage_expr)
            .select_from(lc.join(ls, and_(ls.c.workspace_id == lc.c.workspace_id, ls.c.lead_id == lc.c.lead_id)))
            .where(lc.c.workspace_id == ws, lc.c.campaign_id == campaign_id)
        )
        if q:
            pattern = _like(q)
            stmt = stmt.where(or_(ls.c.name.ilike(pattern), ls.c.company.ilike(pattern), ls.c.headline.ilike(pattern)))
        if stage:
            stmt = stmt.where(self._stage_expr() == stage)
        if status:
            stmt = stmt.where(lc.c.status == status)
        if after:
            key = tuple(decode_cursor(after, 2, [str, UUID]))
            stmt = stmt.where(tuple_(ls.c.sort_name, lc.c.lead_id) > tuple_(literal(key[0]), literal(key[1])))
        rows = (await conn.execute(stmt.order_by(ls.c.sort_name, lc.c.lead_id).limit(limit + 1))).all()
        items = [
            ResultRow(
                lead_id=r.lead_id,
                name=r.name,
                linkedin_url=r.linkedin_url,
                headline=r.headline,
                company=r.company,
                status=r.status,
                workflow_stage=r.workflow_stage,
                workflow_stage_label=_label(r.workflow_stage) or r.workflow_stage,
                video_url=r.video_url,
                last_event_at=r.last_event_at,
            )
            for r in rows[:limit]
        ]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = _cursor([last.sort_name, str(last.lead_id)])
        return ResultPage(items=items, next=nxt)

    async def activity(
        self,
        conn: AsyncConnection,
        ws: str,
        limit: int,
        now: datetime,
        waiting_after: timedelta,
        after: str | None = None,
    ) -> Activity:
        lc, ls, c = self.v.lead_campaign, self.v.lead_state, self.v.campaigns
        page_after = []
        if after:
            at, lead, campaign = decode_cursor(after, 3, [datetime.fromisoformat, UUID, UUID])
            page_after.append(
                or_(
                    lc.c.last_event_at < at,
                    and_(lc.c.last_event_at == at, tuple_(lc.c.lead_id, lc.c.campaign_id) > tuple_(lead, campaign)),
                )
            )
        stage_expr = self._stage_expr().label("workflow_stage")
        rows = (
            await conn.execute(
                select(
                    lc.c.lead_id,
                    lc.c.campaign_id,
                    lc.c.last_event_at,
                    lc.c.invite_accepted,
                    ls.c.name,
                    c.c.name.label("campaign_name"),
                    stage_expr,
                )
                .select_from(
                    lc.join(ls, and_(ls.c.workspace_id == lc.c.workspace_id, ls.c.lead_id == lc.c.lead_id)).outerjoin(
                        c, and_(c.c.workspace_id == lc.c.workspace_id, c.c.campaign_id == lc.c.campaign_id)
                    )
                )
                .where(lc.c.workspace_id == ws, lc.c.last_event_at.is_not(None), *page_after)
                .order_by(lc.c.last_event_at.desc(), lc.c.lead_id, lc.c.campaign_id)
                .limit(limit + 1)
            )
        ).all()
        more, rows = len(rows) > limit, rows[:limit]
        items = [
            ActivityItem(
                lead_id=r.lead_id,
                name=r.name,
                campaign_id=r.campaign_id,
                campaign_name=r.campaign_name,
                category=domain.activity_category(
                    r.workflow_stage, r.last_event_at, now, waiting_after, invite_accepted=r.invite_accepted
                ),
                workflow_stage=r.workflow_stage,
                at=r.last_event_at,
            )
            for r in rows
        ]
        nxt = None
        if more and rows:
            last = rows[-1]
            nxt = encode_cursor([last.last_event_at.isoformat(), str(last.lead_id), str(last.campaign_id)])
        return Activity(counts=domain.count_categories(i.category for i in items), items=items, next=nxt)

    async def home(self, conn: AsyncConnection, ws: str, now: datetime, waiting_after: timedelta) -> Home:
        c, ls = self.v.campaigns, self.v.lead_state
        order_time = func.coalesce(c.c.created_at, c.c.last_event_at)
        visible = and_(c.c.workspace_id == ws, c.c.effective_state != "deleted")
        recent = (
            await conn.execute(
                self._campaign_select().where(visible).order_by(order_time.desc(), c.c.campaign_id.desc()).limit(5)
            )
        ).all()
        active_states = ("running", "scheduled")
        active = (
            await conn.execute(
                self._campaign_select()
                .where(visible, c.c.effective_state.in_(active_states))
                .order_by(order_time.desc(), c.c.campaign_id.desc())
                .limit(20)
            )
        ).all()
        totals = (
            await conn.execute(
                select(
                    func.count().filter(c.c.effective_state != "deleted"),
                    func.count().filter(c.c.effective_state.in_(active_states)),
                ).where(c.c.workspace_id == ws)
            )
        ).one()
        leads_total = await conn.scalar(select(func.count()).select_from(ls).where(ls.c.workspace_id == ws))
        return Home(
            campaigns_total=totals[0],
            active_campaigns=totals[1],
            leads_total=int(leads_total or 0),
            recent_campaigns=[self._campaign(r) for r in recent],
            active=[self._campaign(r) for r in active],
            activity=await self.activity(conn, ws, 20, now, waiting_after),
            onboarding=await self.onboarding(conn, ws),
            inbox=await self.inbox(conn, ws),
        )

    async def _campaign_known(self, conn: AsyncConnection, ws: str, campaign_id: UUID) -> None:
        c, s = self.v.campaigns, self.v.campaign_summary
        known = await conn.scalar(
            select(literal(1)).where(
                or_(
                    select(c.c.campaign_id).where(c.c.workspace_id == ws, c.c.campaign_id == campaign_id).exists(),
                    select(s.c.campaign_id).where(s.c.workspace_id == ws, s.c.campaign_id == campaign_id).exists(),
                )
            )
        )
        if not known:
            raise Problem(404, "not_found", f"campaign {campaign_id} not found")

    async def series(
        self, conn: AsyncConnection, ws: str, campaign_id: UUID, days: int, tz: str, now: datetime
    ) -> Series:
        """Per local day of ``tz``: invites, acceptances, messages, emails and replies of the campaign's leads."""
        await self._campaign_known(conn, ws, campaign_id)
        zone = ZoneInfo(tz)
        last = now.astimezone(zone).date()
        first = last - timedelta(days=days - 1)
        since = datetime.combine(first, time(0), tzinfo=zone)
        t, lc = self.v.timeline, self.v.lead_campaign
        day = func.date_trunc("day", func.timezone(tz, t.c.event_time)).label("day")
        counted = {
            "invites": InviteSent.event_type,
            "acceptances": InviteAccepted.event_type,
            "messages": MessageSent.event_type,
            "emails": EmailSent.event_type,
            "replies": Replied.event_type,
        }
        # Through the campaign's leads: each lead's events are one index range of the timeline.
        rows = (
            await conn.execute(
                select(day, *[func.count().filter(t.c.event_type == et).label(k) for k, et in counted.items()])
                .select_from(lc.join(t, and_(t.c.workspace_id == lc.c.workspace_id, t.c.lead_id == lc.c.lead_id)))
                .where(
                    lc.c.workspace_id == ws,
                    lc.c.campaign_id == campaign_id,
                    t.c.campaign_id == campaign_id,
                    t.c.event_type.in_(list(counted.values())),
                    t.c.event_time >= since,
                )
                .group_by(day)
            )
        ).all()
        by_day = {r.day.date(): r for r in rows}
        out = []
        for i in range(days):
            d = first + timedelta(days=i)
            r = by_day.get(d)
            out.append(SeriesDay(day=d, **{k: int(getattr(r, k)) for k in counted}) if r else SeriesDay(day=d))
        return Series(campaign_id=campaign_id, timezone=tz, days=out)

    async def stages(self, conn: AsyncConnection, ws: str, campaign_id: UUID) -> Stages:
        """How many of the campaign's leads are at each workflow stage."""
        await self._campaign_known(conn, ws, campaign_id)
        lc, ls = self.v.lead_campaign, self.v.lead_state
        stage = self._stage_expr().label("stage")
        rows = (
            await conn.execute(
                select(stage, func.count().label("n"))
                .select_from(lc.join(ls, and_(ls.c.workspace_id == lc.c.workspace_id, ls.c.lead_id == lc.c.lead_id)))
                .where(lc.c.workspace_id == ws, lc.c.campaign_id == campaign_id)
                .group_by(stage)
                .order_by(func.count().desc(), stage)
            )
        ).all()
        return Stages(
            campaign_id=campaign_id,
            stages=[StageCount(stage=r.stage, label=_label(r.stage) or r.stage, count=r.n) for r in rows],
        )

    async def variants(self, conn: AsyncConnection, ws: str, campaign_id: UUID) -> Variants:
        """Each A/B variant's leads, acceptances and replies: invite variants by the leads they were sent to (their
        acceptance rate), message variants by the leads whose latest message had one (their reply rate)."""
        await self._campaign_known(conn, ws, campaign_id)
        lc = self.v.lead_campaign
        out: list[VariantStats] = []
        for slot in ("invite", "message"):
            step, variant = lc.c[f"{slot}_step"], lc.c[f"{slot}_variant"]
            rows = (
                await conn.execute(
                    select(
                        step.label("step_id"),
                        variant.label("variant"),
                        func.count().label("leads"),
                        func.count().filter(lc.c.invite_accepted).label("accepted"),
                        func.count().filter(lc.c.replied).label("replied"),
                    )
                    .where(lc.c.workspace_id == ws, lc.c.campaign_id == campaign_id, variant.is_not(None))
                    .group_by(step, variant)
                    .order_by(step, variant)
                    .limit(250)
                )
            ).all()
            for r in rows:
                out.append(
                    VariantStats(
                        step_id=r.step_id or "",
                        variant=r.variant,
                        leads=r.leads,
                        accepted=r.accepted,
                        replied=r.replied,
                        acceptance_rate=round(r.accepted / r.leads, 4) if slot == "invite" and r.leads else None,
                        reply_rate=round(r.replied / r.leads, 4) if r.leads else None,
                    )
                )
        return Variants(campaign_id=campaign_id, variants=out)

    async def accounts(self, conn: AsyncConnection, ws: str, limit: int = 200, after: str | None = None) -> Accounts:
        """Every account that is not deleted, with its health and the campaigns using it."""
        a, c = self.v.accounts, self.v.campaigns
        rows = (
            await conn.execute(
                select(a)
                .where(a.c.workspace_id == ws, a.c.deleted.is_(False))
                .order_by(a.c.display_name, a.c.account_id)
            )
        ).all()
        uses = await self._account_uses(conn, ws, c.c.effective_state != "deleted")
        by_account: dict[UUID, list[AccountCampaign]] = {}
        for u in uses:
            by_account.setdefault(u.account_id, []).append(
                AccountCampaign(campaign_id=u.campaign_id, name=u.name, state=u.effective_state, leased=bool(u.leased))
            )
        items = [
            Account(
                account_id=r.account_id,
                name=r.display_name or f"Account {str(r.account_id)[:8]}",
                provider=r.provider,
                status=r.status,
                health=domain.account_health(r.status, r.healthy, r.deleted),
                reason=domain.ACCOUNT_STATUS_REASONS.get(r.status or "", r.status),
                status_changed_at=r.status_changed_at,
                connected_at=r.connected_at,
                campaigns=by_account.get(r.account_id, []),
            )
            for r in rows
        ]
        urgency = {"reconnect_required": 0, "limited": 1, "pending": 2, "healthy": 3}

        def key(x: Account) -> tuple[int, str, str]:
            return (urgency.get(x.health, 4), x.name, str(x.account_id))

        items.sort(key=key)
        if after:
            start = tuple(decode_cursor(after, 3, [int, str, str]))
            items = [x for x in items if key(x) > start]
        page = items[: limit + 1]
        more = len(page) > limit
        page = page[:limit]
        return Accounts(items=page, next=encode_cursor(list(key(page[-1]))) if more and page else None)

    async def _account_uses(self, conn: AsyncConnection, ws: str, which: Any) -> list[Any]:
        """(account, campaign, leased, campaign name and state) of the workspace's campaigns matching ``which``."""
        ac, c = self.v.account_campaigns, self.v.campaigns
        return list(
            (
                await conn.execute(
                    select(ac.c.account_id, ac.c.campaign_id, ac.c.leased, c.c.name, c.c.effective_state)
                    .select_from(
                        ac.join(c, and_(c.c.workspace_id == ac.c.workspace_id, c.c.campaign_id == ac.c.campaign_id))
                    )
                    .where(ac.c.workspace_id == ws, which)
                    .order_by(c.c.name, ac.c.campaign_id)
                )
            ).all()
        )

    async def onboarding(self, conn: AsyncConnection, ws: str) -> Onboarding:
        """The checklist, from the accounts and campaigns the events made."""
        a, c = self.v.accounts, self.v.campaigns
        acc = (
            await conn.execute(
                select(
                    func.min(a.c.connected_at).filter(a.c.deleted.is_(False)).label("connected"),
                    func.min(a.c.status_changed_at).label("first"),
                ).where(a.c.workspace_id == ws)
            )
        ).one()
        camp = (
            await conn.execute(
                select(func.min(c.c.launched_at).label("launched"), func.min(c.c.created_at).label("first")).where(
                    c.c.workspace_id == ws
                )
            )
        ).one()
        firsts = [x for x in (acc.first, camp.first) if x is not None]
        steps = domain.onboarding(min(firsts) if firsts else None, acc.connected, camp.launched)
        pending = [s.key for s in steps if not s.done]
        return Onboarding(
            workspace_id=ws,
            steps=[OnboardingStep(key=s.key, label=s.label, done=s.done, done_at=s.done_at) for s in steps],
            complete=not pending,
            next_step=pending[0] if pending else None,
        )

    async def inbox(self, conn: AsyncConnection, ws: str) -> Inbox:
        """The action inbox (see ``domain.inbox``)."""
        a, c, lc = self.v.accounts, self.v.campaigns, self.v.lead_campaign
        s = self.v.campaign_summary
        accounts = (await conn.execute(select(a).where(a.c.workspace_id == ws))).all()
        names = {r.account_id: r.display_name or f"Account {str(r.account_id)[:8]}" for r in accounts}
        uses = await self._account_uses(conn, ws, c.c.effective_state.in_(("running", "scheduled", "paused")))
        limited = {r.account_id: r.status for r in accounts if r.status in LIMIT_STATUSES and not r.deleted}
        campaign_names: dict[UUID, list[str]] = {}
        limited_by_campaign: dict[UUID, list[str]] = {}
        for u in uses:
            campaign_names.setdefault(u.account_id, []).append(u.name or str(u.campaign_id)[:8])
            if u.account_id in limited:
                which = "message limit" if limited[u.account_id] == "message_limit_reached" else "invitation limit"
                limited_by_campaign.setdefault(u.campaign_id, []).append(f"{names[u.account_id]} ({which})")
        failed = {
            r.campaign_id: r.n
            for r in (
                await conn.execute(
                    select(lc.c.campaign_id, func.count().label("n"))
                    .where(lc.c.workspace_id == ws, lc.c.stage.like("%\\_failed"))
                    .group_by(lc.c.campaign_id)
                )
            ).all()
        }
        campaigns = (
            await conn.execute(
                select(c.c.campaign_id, c.c.name, c.c.effective_state, c.c.state_detail, s.c.drafts_pending)
                .select_from(
                    c.outerjoin(s, and_(s.c.workspace_id == c.c.workspace_id, s.c.campaign_id == c.c.campaign_id))
                )
                .where(c.c.workspace_id == ws, c.c.effective_state != "deleted")
                .order_by(func.coalesce(c.c.created_at, c.c.last_event_at).desc(), c.c.campaign_id)
            )
        ).all()
        items = domain.inbox(
            [
                domain.AccountFact(
                    r.account_id,
                    names[r.account_id],
                    r.status,
                    r.healthy,
                    r.deleted,
                    tuple(campaign_names.get(r.account_id, ())),
                )
                for r in accounts
            ],
            [
                domain.CampaignFact(
                    r.campaign_id,
                    r.name or f"Campaign {str(r.campaign_id)[:8]}",
                    r.effective_state,
                    r.state_detail,
                    int(r.drafts_pending or 0),
                    int(failed.get(r.campaign_id, 0)),
                    tuple(limited_by_campaign.get(r.campaign_id, ())),
                )
                for r in campaigns
            ],
        )
        return Inbox(
            items=[
                InboxItem(
                    kind=i.kind,
                    severity=i.severity,
                    title=i.title,
                    detail=i.detail,
                    campaign_id=i.campaign_id,
                    account_id=i.account_id,
                    count=i.count,
                )
                for i in items
            ]
        )


# -- routes -------------------------------------------------------------------------------------

Workspace = ReadWorkspace  # every projection route reads
Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
After = Annotated[str | None, Query(max_length=1000, description="Cursor from a previous page's `next`.")]


TimeZone = Annotated[
    str, Query(max_length=64, description="IANA time zone whose local days the series counts, e.g. Europe/Berlin.")
]


def _zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise Problem(
            422,
            "invalid_request",
            f"tz: unknown time zone {tz!r}",
            field="tz",
            errors=[{"field": "tz", "message": f"unknown time zone {tz!r}; an IANA name, e.g. Europe/Berlin"}],
        ) from None
    return tz


MAX_WAIT_S = 30.0
"""The longest a timeline read may wait for a change (``wait``): below the usual proxies' idle timeouts."""


@dataclass(frozen=True)
class TimelineAnswer:
    """What a timeline read answers (pure: see :func:`timeline_answer`)."""

    status: int
    body: bytes
    etag: str
    waits: bool
    """Whether a read with ``wait`` waits for a change before answering this (unknown lead, empty page,
    unchanged page)."""

    def response(self) -> Response:
        """The HTTP response (304 without a body)."""
        headers = {"ETag": self.etag} if self.etag else {}
        if self.status == 304:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type="application/json", headers=headers)


def etag_of(body: bytes) -> str:
    """A weak ETag of a response body (the same page gives the same tag, whatever process serves it)."""
    return f'W/"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 13.1.2; ``*`` matches any)."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


def timeline_answer(page: Timeline | None, if_none_match: str | None) -> TimelineAnswer:
    """The answer to a timeline read of ``page`` (None: nothing yet, the lead may not even be known; a waiting read
    waits on it, and asks which it is at the end) under ``If-None-Match``."""
    if page is None:
        return TimelineAnswer(404, b"", "", waits=True)
    body = page.model_dump_json().encode()
    etag = etag_of(body)
    if etag_matches(if_none_match, etag):
        return TimelineAnswer(304, b"", etag, waits=True)
    return TimelineAnswer(200, body, etag, waits=not page.items)


def build_router(
    views: Views,
    engine: AsyncEngine,
    clock: Clock,
    waiting_after: timedelta,
    hub: ChangeHub | None = None,
    watches_max: int = 1000,
) -> APIRouter:
    """The routes, reading the views of ``views`` through ``engine`` (a ``reads=True`` engine: every read goes
    through :func:`services.runtime.db.read`); the change stream and waiting reads through ``hub`` (at most
    ``watches_max`` waiting at once)."""
    router = APIRouter(prefix="/v1", tags=["views"])
    reads = Reads(views)

    @router.get(
        "/leads/{lead_id}/timeline",
        response_model=Timeline,
        responses={304: {"description": "Not modified: the page still has the `If-None-Match` ETag"}, **problems(503)},
    )
    async def lead_timeline(
        lead_id: UUID,
        ws: Workspace,
        after: After = None,
        limit: Limit = 200,
        wait: Annotated[
            float,
            Query(
                ge=0,
                le=MAX_WAIT_S,
                description="Seconds to wait, when the lead is not known yet, the page is empty or it still has "
                "the `If-None-Match` ETag, for the lead's next change; then the answer is as it stands (404, an "
                "empty page, 304). 0: answer at once.",
            ),
        ] = 0,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=1000)] = None,
    ) -> Response:
        """Every event of a lead, oldest first, with a human summary; the page's ``ETag`` makes it a conditional
        read, and ``wait`` a long poll for the lead's next change (read-your-writes after adding a lead, a lead
        page kept current)."""

        if wait <= 0 or hub is None:
            page = await read(engine, lambda conn: reads.timeline(conn, ws, lead_id, after, limit))
            return timeline_answer(page, if_none_match).response()
        if hub.watches >= watches_max:
            raise Problem(
                503,
                "too_many_waiting",
                f"{hub.watches} timeline reads are waiting already: read again without `wait`, or later",
                headers={"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        with hub.watching(ws, lead_id) as changed:
            while True:
                changed.clear()  # before the read: a change committed during it wakes the wait below
                # An empty page is waited on whether the lead is known or not: which one it is, is asked only if it
                # is still empty at the end (one statement a look instead of two).
                found = await read(engine, lambda conn: reads.timeline(conn, ws, lead_id, after, limit, known=False))
                answer = timeline_answer(found, if_none_match)
                remaining = deadline - loop.time()
                if not answer.waits or remaining <= 0 or hub.stopping.is_set():
                    break
                with suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
        if found is None:  # still empty after the wait: a known lead's empty page, or 404
            found = await read(engine, lambda conn: reads.timeline(conn, ws, lead_id, after, limit))
            answer = timeline_answer(found, if_none_match)
        return answer.response()

    @router.get("/leads/{lead_id}", response_model=Lead)
    async def lead_state(lead_id: UUID, ws: Workspace) -> Lead:
        """A lead's pipeline stage, workflow stage and campaigns."""
        return await read(engine, lambda conn: reads.lead(conn, ws, lead_id))

    @router.get("/campaigns", response_model=CampaignPage)
    async def list_campaigns(
        ws: Workspace,
        state: Annotated[
            str | None,
            Query(
                max_length=20,
                description=f"Only campaigns in this state: {', '.join(domain.CAMPAIGN_STATES)} "
                "(without it: every campaign but deleted ones).",
            ),
        ] = None,
        q: Annotated[str | None, Query(max_length=200, description="Text search in the campaign name.")] = None,
        after: After = None,
        limit: Limit = 50,
    ) -> CampaignPage:
        """Campaigns, newest first, with audience, state, next run, pace and counts."""
        if state is not None and state not in domain.CAMPAIGN_STATES:
            raise Problem(
                422,
                "invalid_request",
                f"state: must be one of {', '.join(domain.CAMPAIGN_STATES)}",
                errors=[{"field": "state", "message": f"one of {', '.join(domain.CAMPAIGN_STATES)}"}],
            )
        return await read(engine, lambda conn: reads.campaigns(conn, ws, state, after, limit, q or None))

    @router.get("/campaigns/{campaign_id}", response_model=Campaign)
    async def campaign(campaign_id: UUID, ws: Workspace) -> Campaign:
        """One campaign: audience, workflow, pace, state (with its message), next run and counts."""
        return await read(engine, lambda conn: reads.campaign(conn, ws, campaign_id))

    @router.get("/campaigns/{campaign_id}/summary", response_model=Summary)
    async def campaign_summary(campaign_id: UUID, ws: Workspace) -> Summary:
        """A campaign's counts (failed actions, invites, messages, emails, ...) and rates."""
        return await read(engine, lambda conn: reads.summary(conn, ws, campaign_id))

    @router.get("/campaigns/{campaign_id}/results", response_model=ResultPage)
    async def campaign_results(
        campaign_id: UUID,
        ws: Workspace,
        q: Annotated[str | None, Query(max_length=200, description="Text search in name, company, headline.")] = None,
        stage: Annotated[
            str | None, Query(max_length=100, description="Workflow stage code, e.g. invite_sent.")
        ] = None,
        status: Annotated[
            str | None, Query(max_length=100, description=f"One of: {', '.join(domain.STATUSES)}.")
        ] = None,
        after: After = None,
        limit: Limit = 50,
    ) -> ResultPage:
        """The campaign's result table: lead, profile link, status, workflow stage, video URL."""
        if stage is not None and stage not in domain.WORKFLOW_LABELS:
            raise Problem(
                422,
                "invalid_request",
                f"stage: unknown workflow stage {stage!r}",
                errors=[{"field": "stage", "message": f"one of {', '.join(domain.WORKFLOW_LABELS)}"}],
            )
        if status is not None and status not in domain.STATUSES:
            raise Problem(
                422,
                "invalid_request",
                f"status: must be one of {', '.join(domain.STATUSES)}",
                errors=[{"field": "status", "message": f"one of {', '.join(domain.STATUSES)}"}],
            )
        return await read(engine, lambda conn: reads.results(conn, ws, campaign_id, q, stage, status, after, limit))

    @router.get("/campaigns/{campaign_id}/series", response_model=Series)
    async def campaign_series(
        campaign_id: UUID,
        ws: Workspace,
        days: Annotated[int, Query(ge=1, le=366, description="How many local days, ending today.")] = 14,
        tz: TimeZone = "UTC",
    ) -> Series:
        """Invites, acceptances, messages, emails and replies per local day of ``tz`` (the chart's data)."""
        zone = _zone(tz)
        return await read(engine, lambda conn: reads.series(conn, ws, campaign_id, days, zone, clock.now()))

    @router.get("/campaigns/{campaign_id}/stages", response_model=Stages)
    async def campaign_stages(campaign_id: UUID, ws: Workspace) -> Stages:
        """How many of the campaign's leads are at each workflow stage (the result table's stage filter)."""
        return await read(engine, lambda conn: reads.stages(conn, ws, campaign_id))

    @router.get("/campaigns/{campaign_id}/variants", response_model=Variants)
    async def campaign_variants(campaign_id: UUID, ws: Workspace) -> Variants:
        """The campaign's A/B variants with their acceptance rates (invite variants) and reply rates."""
        return await read(engine, lambda conn: reads.variants(conn, ws, campaign_id))

    @router.get("/accounts", response_model=Accounts)
    async def list_accounts(ws: Workspace, limit: Limit = 50, after: After = None) -> Accounts:
        """Connected accounts with health, reason, last status change and the campaigns using them."""
        return await read(engine, lambda conn: reads.accounts(conn, ws, limit, after))

    @router.get("/onboarding", response_model=Onboarding)
    async def onboarding(ws: Workspace) -> Onboarding:
        """The onboarding checklist: workspace ready, a LinkedIn account connected, first campaign launched."""
        return await read(engine, lambda conn: reads.onboarding(conn, ws))

    @router.get(
        "/inbox",
        response_model=Inbox,
        openapi_extra=bounded("a summary: one item per account, campaign or kind of work waiting, at most 2000"),
    )
    async def inbox(ws: Workspace) -> Inbox:
        """Operational next steps: connect or reconnect accounts, campaigns needing review or paused by a
        limit, drafts waiting in the Messaging Lab, failed actions (the 2000 most urgent)."""
        found = await read(engine, lambda conn: reads.inbox(conn, ws))
        return Inbox(items=found.items[:2000])

    if hub is not None:
        live = hub

        @router.get(
            "/changes/stream",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
        )
        async def change_stream(
            request: Request,
            ws: Workspace,
            last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=100)] = None,
            after: Annotated[
                str | None, Query(max_length=100, description="An event id to resume after (as Last-Event-ID).")
            ] = None,
        ) -> EventSourceResponse:
            """The workspace's view changes as Server-Sent Events, live.

            Each ``change`` event (id ``<epoch>-<seq>``) names what changed: ``{"kind": "lead" | "campaign" |
            "account" | "search", "lead_id", "campaign_id", "account_id", "search_id", "at"}``. Reconnecting
            with ``Last-Event-ID`` resumes without gaps; a ``reset`` event says the client must reload
            (its position is from before a promotion or was pruned).
            """
            start = await live.position(last_event_id or after)

            async def events() -> AsyncIterator[ServerSentEvent]:
                if start.reset:
                    yield ServerSentEvent(data="{}", event="reset", id=f"{start.epoch}-{start.seq}")
                async for pos, changes in live.follow(ws, start):
                    if await request.is_disconnected():
                        return
                    if not changes:
                        yield ServerSentEvent(data="{}", event="reset", id=f"{pos.epoch}-{pos.seq}")
                    for ch in changes:
                        body = ChangeOut(
                            seq=ch.seq,
                            kind=ch.kind,
                            lead_id=ch.lead_id,
                            campaign_id=ch.campaign_id,
                            account_id=ch.account_id,
                            search_id=ch.search_id,
                            at=ch.at,
                        )
                        yield ServerSentEvent(data=body.model_dump_json(), event="change", id=f"{pos.epoch}-{ch.seq}")

            return EventSourceResponse(events(), ping=15, send_timeout=30)

    @router.get("/home", response_model=Home)
    async def home(ws: Workspace) -> Home:
        """Totals, recent and active campaigns with their summaries, and the lead activity feed."""
        return await read(engine, lambda conn: reads.home(conn, ws, clock.now(), waiting_after))

    @router.get("/activity", response_model=Activity)
    async def activity(ws: Workspace, limit: Limit = 50, after: After = None) -> Activity:
        """Recent lead rows summarised as matched, engaged, invite sent, message sent, waiting, skipped, processing."""
        return await read(engine, lambda conn: reads.activity(conn, ws, limit, clock.now(), waiting_after, after))

    return router
