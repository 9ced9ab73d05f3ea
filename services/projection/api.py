"""The projection's HTTP API: timelines, lead state, campaign list, summaries, result tables, home and activity.

Every route is scoped to the workspace of the bearer token; another workspace's lead or campaign
answers 404. Lists use keyset pagination: ``next`` is an opaque cursor to pass as ``after``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import and_, case, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.runtime.auth import ReadWorkspace
from services.runtime.clock import Clock
from services.runtime.errors import Problem
from services.runtime.pagination import decode_cursor, encode_cursor

from . import domain
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


class Lead(BaseModel):
    """A lead's state: who it is, its pipeline stage and its workflow stage (overall and per campaign)."""

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


class Home(BaseModel):
    """The home page: totals, recent and active campaigns, and the activity feed."""

    campaigns_total: int
    active_campaigns: int
    leads_total: int
    recent_campaigns: list[Campaign]
    active: list[Campaign]
    activity: Activity


# -- helpers ------------------------------------------------------------------------------------


def _cursor(values: list[Any]) -> str:
    return encode_cursor(values)


def _uncursor(cursor: str, size: int) -> list[Any]:
    return decode_cursor(cursor, size)


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
    """The read queries, over the views of one schema."""

    def __init__(self, views: Views) -> None:
        self.v = views

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

    async def timeline(self, conn: AsyncConnection, ws: str, lead_id: UUID, after: str | None, limit: int) -> Timeline:
        t, a, c, ls = self.v.timeline, self.v.accounts, self.v.campaigns, self.v.lead_state
        exists = await conn.scalar(select(literal(1)).where(ls.c.workspace_id == ws, ls.c.lead_id == lead_id))
        if not exists:
            raise Problem(404, "not_found", f"lead {lead_id} not found")
        stmt = (
            select(t, a.c.display_name, c.c.name.label("campaign_name"))
            .select_from(
                t.outerjoin(a, and_(a.c.workspace_id == t.c.workspace_id, a.c.account_id == t.c.account_id)).outerjoin(
                    c, and_(c.c.workspace_id == t.c.workspace_id, c.c.campaign_id == t.c.campaign_id)
                )
            )
            .where(t.c.workspace_id == ws, t.c.lead_id == lead_id)
            .order_by(t.c.event_time, t.c.type_rank, t.c.event_id)
            .limit(limit + 1)
        )
        if after:
            when, rank, eid = _uncursor(after, 3)
            try:
                key = (datetime.fromisoformat(when), int(rank), UUID(eid))
            except (TypeError, ValueError):
                raise Problem(422, "invalid_cursor", "the `after` cursor is not one this API returned") from None
            stmt = stmt.where(tuple_(t.c.event_time, t.c.type_rank, t.c.event_id) > tuple_(*map(literal, key)))
        rows = (await conn.execute(stmt)).all()
        items = [
            TimelineItem(
                event_id=r.event_id,
                type=r.event_type,
                time=r.event_time,
                summary=domain.render_summary(r.summary, r.display_name, r.account_id),
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
        r = row._mapping
        return Lead(
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
        self, conn: AsyncConnection, ws: str, state: str | None, after: str | None, limit: int
    ) -> CampaignPage:
        c = self.v.campaigns
        order_time = func.coalesce(c.c.created_at, c.c.last_event_at)
        stmt = self._campaign_select().where(c.c.workspace_id == ws)
        if state:
            stmt = stmt.where(c.c.effective_state == state)
        if after:
            when, cid = _uncursor(after, 2)
            try:
                key_time, key_id = datetime.fromisoformat(when), UUID(cid)
            except (TypeError, ValueError):
                raise Problem(422, "invalid_cursor", "the `after` cursor is not one this API returned") from None
            stmt = stmt.where(or_(order_time < key_time, and_(order_time == key_time, c.c.campaign_id < key_id)))
        rows = (await conn.execute(stmt.order_by(order_time.desc(), c.c.campaign_id.desc()).limit(limit + 1))).all()
        items = [self._campaign(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]._mapping
            nxt = _cursor([(last["created_at"] or last["last_event_at"]).isoformat(), str(last["campaign_id"])])
        return CampaignPage(items=items, next=nxt)

    async def summary(self, conn: AsyncConnection, ws: str, campaign_id: UUID) -> Summary:
        c, s = self.v.campaigns, self.v.campaign_summary
        row = (
            await conn.execute(self._campaign_select().where(c.c.workspace_id == ws, c.c.campaign_id == campaign_id))
        ).first()
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
        lc, ls, c, s = self.v.lead_campaign, self.v.lead_state, self.v.campaigns, self.v.campaign_summary
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
        stage_expr = self._stage_expr().label("workflow_stage")
        stmt = (
            select(lc, ls.c.name, ls.c.linkedin_url, ls.c.headline, ls.c.company, ls.c.sort_name, stage_expr)
            .select_from(lc.join(ls, and_(ls.c.workspace_id == lc.c.workspace_id, ls.c.lead_id == lc.c.lead_id)))
            .where(lc.c.workspace_id == ws, lc.c.campaign_id == campaign_id)
        )
        if q:
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = stmt.where(or_(ls.c.name.ilike(pattern), ls.c.company.ilike(pattern), ls.c.headline.ilike(pattern)))
        if stage:
            stmt = stmt.where(self._stage_expr() == stage)
        if status:
            stmt = stmt.where(lc.c.status == status)
        if after:
            name, lead = _uncursor(after, 2)
            try:
                key = (str(name), UUID(lead))
            except (TypeError, ValueError):
                raise Problem(422, "invalid_cursor", "the `after` cursor is not one this API returned") from None
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
        )


# -- routes -------------------------------------------------------------------------------------

Workspace = ReadWorkspace  # every projection route reads
Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
After = Annotated[str | None, Query(description="Cursor from a previous page's `next`.")]


def build_router(views: Views, engine: AsyncEngine, clock: Clock, waiting_after: timedelta) -> APIRouter:
    """The routes, reading the views of ``views`` through ``engine``."""
    router = APIRouter(prefix="/v1", tags=["views"])
    reads = Reads(views)

    @router.get("/leads/{lead_id}/timeline", response_model=Timeline)
    async def lead_timeline(lead_id: UUID, ws: Workspace, after: After = None, limit: Limit = 200) -> Timeline:
        """Every event of a lead, oldest first, with a human summary."""
        async with engine.connect() as conn:
            return await reads.timeline(conn, ws, lead_id, after, limit)

    @router.get("/leads/{lead_id}", response_model=Lead)
    async def lead_state(lead_id: UUID, ws: Workspace) -> Lead:
        """A lead's pipeline stage, workflow stage and campaigns."""
        async with engine.connect() as conn:
            return await reads.lead(conn, ws, lead_id)

    @router.get("/campaigns", response_model=CampaignPage)
    async def list_campaigns(
        ws: Workspace,
        state: Annotated[
            str | None, Query(description=f"Only campaigns in this state: {', '.join(domain.CAMPAIGN_STATES)}.")
        ] = None,
        after: After = None,
        limit: Limit = 50,
    ) -> CampaignPage:
        """Campaigns, newest first, with audience, state, next run, pace and counts."""
        if state is not None and state not in domain.CAMPAIGN_STATES:
            raise Problem(422, "invalid_request", f"state: must be one of {', '.join(domain.CAMPAIGN_STATES)}")
        async with engine.connect() as conn:
            return await reads.campaigns(conn, ws, state, after, limit)

    @router.get("/campaigns/{campaign_id}/summary", response_model=Summary)
    async def campaign_summary(campaign_id: UUID, ws: Workspace) -> Summary:
        """A campaign's counts (failed actions, invites, messages, emails, ...) and rates."""
        async with engine.connect() as conn:
            return await reads.summary(conn, ws, campaign_id)

    @router.get("/campaigns/{campaign_id}/results", response_model=ResultPage)
    async def campaign_results(
        campaign_id: UUID,
        ws: Workspace,
        q: Annotated[str | None, Query(max_length=200, description="Text search in name, company, headline.")] = None,
        stage: Annotated[str | None, Query(description="Workflow stage code, e.g. invite_sent.")] = None,
        status: Annotated[str | None, Query(description=f"One of: {', '.join(domain.STATUSES)}.")] = None,
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
            raise Problem(422, "invalid_request", f"status: must be one of {', '.join(domain.STATUSES)}")
        async with engine.connect() as conn:
            return await reads.results(conn, ws, campaign_id, q, stage, status, after, limit)

    @router.get("/home", response_model=Home)
    async def home(ws: Workspace) -> Home:
        """Totals, recent and active campaigns with their summaries, and the lead activity feed."""
        async with engine.connect() as conn:
            return await reads.home(conn, ws, clock.now(), waiting_after)

    @router.get("/activity", response_model=Activity)
    async def activity(ws: Workspace, limit: Limit = 50, after: After = None) -> Activity:
        """Recent lead rows summarised as matched, engaged, invite sent, message sent, waiting, skipped, processing."""
        async with engine.connect() as conn:
            return await reads.activity(conn, ws, limit, clock.now(), waiting_after, after)

    return router
