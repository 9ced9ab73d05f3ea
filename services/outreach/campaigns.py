"""Campaign commands and views: create, prepare, launch (with its guard), pause, resume, delete, list, details.

States: pending -> (prepare) prepared -> (launch) scheduled | running -> paused <-> running -> finished (a
pending campaign may also launch at once); needs_review when something needs a person (with the message);
deleted. *Prepare, review, launch*: ``prepared`` enrolls the audience's ready leads without starting their
sequences, so their drafts are written and reviewed in the Messaging Lab before anything is sent; the launch
starts them with the drafts approved by then (a step still waits for its approved text). Every transition
emits its Campaign* event in the transaction that makes it.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from leadstream_schemas import (
    Audience,
    CampaignCreated,
    CampaignDeleted,
    CampaignPaused,
    CampaignPrepared,
    CampaignResumed,
    CampaignScheduled,
    CampaignUpdated,
    Delivery,
    Strategy,
    VideoSegment,
    VideoSettings,
)
from sqlalchemy import and_, delete, exists, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime import idempotency
from services.runtime.errors import Problem
from services.runtime.pagination import MAX_PAGE, Page, decode_cursor, encode_cursor
from services.runtime.service import Service

from . import lifecycle as lc
from . import timers as tm
from .audience import AudienceCommands
from .domain.compliance import assign_account, normalise_email
from .domain.pacing import PacingError, channel_limits, launch_delivery, pace_from
from .domain.schedule import DAY_NAMES, Schedule, ScheduleError
from .domain.workflow import Graph, GraphError, resolve_workflow
from .emit import RootEmitter
from .enrollment import OPEN, audience_still_growing, enroll, unenrolled_members
from .models import (
    AccountsIn,
    AudienceOut,
    CampaignDetailOut,
    CampaignEditIn,
    CampaignIn,
    CampaignOut,
    DraftCountsOut,
    EmailFallbackIn,
    GraphOut,
    LaunchIn,
    LaunchPlanOut,
    LeadCountsOut,
    PlanAccountOut,
    PlanCountsOut,
    PlanLeadOut,
    VideoIn,
    WorkerOut,
)
from .problems import invalid
from .store import (
    accounts,
    campaign_workers,
    campaigns,
    enrollments,
    idempotency_keys,
    lead_locks,
    leads,
    sends,
    texts,
    timers,
)
from .versions import move_unstarted, record_version

WORKER_NAMESPACE = uuid.UUID("9c1e2f3a-4b5d-5e6f-8a9b-0c1d2e3f4a5b")
VISIBLE = campaigns.c.state != "deleted"


def video_settings(body: CampaignIn) -> VideoSettings | None:
    """The contract's form of the campaign's video (its template and segments; a segment's name defaults to
    its field)."""
    if body.video is None:
        return None
    return VideoSettings(
        template_id=body.video.template_id,
        segments=[
            VideoSegment(name=s.name or s.field, field=s.field, fallback=s.fallback) for s in body.video.segments
        ],
    )


async def _add_workers(conn: AsyncConnection, campaign_id: UUID, account_ids: list[UUID]) -> None:
    """A worker per account the campaign runs on (its leads are assigned to them); already there: kept."""
    for account_id in account_ids:
        await conn.execute(
            insert(campaign_workers)
            .values(
                campaign_id=campaign_id,
                account_id=account_id,
                state="active",
                worker_id=uuid.uuid5(WORKER_NAMESPACE, f"{campaign_id}|{account_id}"),
            )
            .on_conflict_do_nothing()
        )


def _email_steps(graph: Graph) -> list[str]:
    return [s for s in graph.reachable() if graph.step(s).action == "email"]


class CampaignCommands:
    """The campaign API's behaviour, one transaction per command."""

    def __init__(self, service: Service, *, dry_run: bool, wake: Any) -> None:
        self.service = service
        self.dry_run = dry_run
        self.wake = wake
        self.audiences = AudienceCommands(service, wake)

    @property
    def now(self) -> datetime:
        """The injected clock's time."""
        return self.service.clock.now()

    # -- create ----------------------------------------------------------------------------------

    async def create(
        self, workspace_id: str, body: CampaignIn, idempotency_key: str | None = None
    ) -> tuple[CampaignDetailOut, bool]:
        """Validate and store a campaign (state pending); emits CampaignCreated with everything others need.

        Returns (details, created): with an ``idempotency_key`` already used for the same request, the
        campaign that request made, and False."""
        delivery_in = body.delivery.model_dump()
        try:
            pace = pace_from(delivery_in)
            limits = channel_limits(delivery_in, pace.name)
            schedule = Schedule.from_delivery(delivery_in)
            fallback = body.delivery.email_fallback
            graph = resolve_workflow(
                body.workflow, default_note=body.strategy.invite_note, email_fallback=fallback is not None
            )
        except (GraphError, PacingError, ScheduleError) as exc:
            raise invalid(exc.field, exc.message) from None
        now = self.now
        campaign_id = uuid.uuid4()
        async with self.service.engine.begin() as conn:
            if idempotency_key is not None:
                earlier = await idempotency.claim(
                    conn,
                    idempotency_keys,
                    workspace_id=workspace_id,
                    operation="create_campaign",
                    key=idempotency_key,
                    fingerprint=idempotency.fingerprint(body.model_dump(mode="json")),
                    resource_id=str(campaign_id),
                    now=now,
                )
                if earlier is not None:
                    return await self.details(workspace_id, UUID(earlier)), False
            graph = await self._check_email(conn, workspace_id, graph, body.delivery.email_fallback)
            await self._check_accounts(conn, workspace_id, body.account_ids)
            delivery = {
                "pace": pace.name,
                "pace_label": pace.describe(),
                "daily_limit": body.delivery.daily_limit,
                "daily_cap": pace.daily_cap(schedule.active_days_per_week()),
                "weekly_limit": pace.weekly_limit,
                **limits,
                "active_days": [DAY_NAMES[d] for d in sorted(schedule.days)],
                "start_hour": schedule.start_hour,
                "end_hour": schedule.end_hour,
                "timezone": schedule.timezone,
                "email_fallback": fallback.model_dump() if fallback else None,
                "dry_run": self.dry_run,
                "lead_timezones": body.delivery.lead_timezones,
                "stop_company_on_reply": body.delivery.stop_company_on_reply,
            }
            video = body.video.model_dump() if body.video else None
            strategy = body.strategy.model_dump()
            await conn.execute(
                insert(campaigns).values(
                    campaign_id=campaign_id,
                    workspace_id=workspace_id,
                    name=body.name,
                    audience_type=body.audience.type,
                    audience_ref=body.audience.ref,
                    workflow=graph.to_dict(),
                    strategy=strategy,
                    delivery=delivery,
                    account_ids=[str(a) for a in body.account_ids],
                    video_template=video,
                    state="pending",
                    created_at=now,
                    updated_at=now,
                )
            )
            await record_version(conn, campaign_id, 1, graph, now)
            em = RootEmitter(self.service, workspace_id)
            em.emit(
                CampaignCreated(
                    campaign_id=campaign_id,
                    name=body.name,
                    audience=Audience(type=body.audience.type, ref=body.audience.ref),
                    workflow=graph.to_model(),
                    strategy=body.strategy,
                    delivery=Delivery.model_validate(delivery),
                    account_ids=body.account_ids,
                    video=video_settings(body),
                )
            )
            await em.flush(conn)
        self.service.wake_relay()
        return await self.details(workspace_id, campaign_id), True

    async def _check_email(
        self, conn: AsyncConnection, workspace_id: str, graph: Graph, fallback: EmailFallbackIn | None
    ) -> Graph:
        """Email steps need a verified sender, a subject and a body (filled from the fallback settings)."""
        steps = _email_steps(graph)
        if not steps:
            return graph
        if fallback is None:
            raise invalid(
                "delivery.email_fallback",
                "an email step needs delivery.email_fallback with a verified sender_email, a subject and a body",
            )
        sender = normalise_email(fallback.sender_email)
        verified = await conn.scalar(
            select(accounts.c.account_id)
            .where(
                accounts.c.workspace_id == workspace_id,
                accounts.c.provider == "email",
                accounts.c.sender_email == sender,
                accounts.c.sender_email_verified.is_(True),
                accounts.c.deleted_at.is_(None),
            )
            .limit(1)
        )
        if verified is None:
            raise invalid(
                "delivery.email_fallback.sender_email",
                f"{fallback.sender_email} is not a verified sender of this workspace (connect it with "
                "POST /v1/accounts provider=email)",
            )
        new_steps = dict(graph.steps)
        for sid in steps:
            step = graph.step(sid)
            subject, text = step.subject or fallback.subject, step.body or fallback.body
            if not subject.strip():
                raise invalid("delivery.email_fallback.subject", f"email step {sid!r} needs a subject")
            if not text.strip():
                raise invalid("delivery.email_fallback.body", f"email step {sid!r} needs a body")
            new_steps[sid] = replace(step, subject=subject, body=text)
        return replace(graph, steps=new_steps)

    async def _check_accounts(self, conn: AsyncConnection, workspace_id: str, account_ids: list[UUID]) -> None:
        rows = await conn.execute(
            select(accounts.c.account_id).where(
                accounts.c.workspace_id == workspace_id,
                accounts.c.account_id.in_(account_ids),
                accounts.c.provider == "linkedin",
                accounts.c.deleted_at.is_(None),
            )
        )
        known = {r.account_id for r in rows}
        for i, a in enumerate(account_ids):
            if a not in known:
                raise invalid(f"account_ids.{i}", f"{a} is not a LinkedIn account of this workspace")
        if len(set(account_ids)) != len(account_ids):
            raise invalid("account_ids", "an account is listed twice")

    # -- transitions -----------------------------------------------------------------------------

    async def _locked(self, conn: AsyncConnection, workspace_id: str, campaign_id: UUID) -> Row[Any]:
        return await self._visible(conn, workspace_id, campaign_id, lock=True)

    @staticmethod
    async def _visible(conn: AsyncConnection, workspace_id: str, campaign_id: UUID, *, lock: bool = False) -> Row[Any]:
        """The workspace's campaign (not deleted), locked for update when ``lock``; else a 404."""
        stmt = select(campaigns).where(
            campaigns.c.campaign_id == campaign_id, campaigns.c.workspace_id == workspace_id, VISIBLE
        )
        row = (await conn.execute(stmt.with_for_update() if lock else stmt)).first()
        if row is None:
            raise Problem(404, "not_found", f"campaign {campaign_id} not found")
        return row

    async def launch(
        self, workspace_id: str, campaign_id: UUID, body: LaunchIn, idempotency_key: str | None = None
    ) -> CampaignDetailOut:
        """Launch a pending campaign on its active accounts (inactive ones are skipped with a message).

        A launch sent again with the same ``idempotency_key`` (a double click, a retry) answers with the
        campaign as the first launch left it and launches nothing."""
        now = self.now
        async with self.service.engine.begin() as conn:
            if idempotency_key is not None:
                earlier = await idempotency.claim(
                    conn,
                    idempotency_keys,
                    workspace_id=workspace_id,
                    operation="launch_campaign",
                    key=idempotency_key,
                    fingerprint=idempotency.fingerprint(str(campaign_id), body.model_dump(mode="json")),
                    resource_id=str(campaign_id),
                    now=now,
                )
                if earlier is not None:
                    return await self.details(workspace_id, campaign_id)
            campaign = await self._locked(conn, workspace_id, campaign_id)
            if campaign.state not in ("pending", "prepared"):
                raise Problem(
                    409, "invalid_state", f"campaign is {campaign.state}; only a pending or prepared campaign launches"
                )
            graph = Graph.from_dict(campaign.workflow)
            if _email_steps(graph) and not body.confirm_email_fallback:
                raise Problem(
                    422,
                    "confirmation_required",
                    "this workflow sends emails (email fallback): launch with confirm_email_fallback=true to confirm",
                    errors=[{"field": "confirm_email_fallback", "message": "must be true to launch"}],
                )
            try:
                delivery = launch_delivery(
                    campaign.delivery,
                    daily_limit=body.daily_limit,
                    daily_message_limit=body.daily_message_limit,
                    daily_email_limit=body.daily_email_limit,
                )
            except PacingError as exc:
                raise invalid(exc.field, exc.message) from None
            _, skipped = await self._workers(conn, workspace_id, campaign)
            await conn.execute(
                update(campaigns)
                .where(campaigns.c.campaign_id == campaign_id)
                .values(delivery=delivery, skipped_accounts=skipped, launched_at=now, message=None, updated_at=now)
            )
            em = RootEmitter(self.service, workspace_id)
            await self._start_or_schedule(conn, em, campaign_id, now)
            await em.flush(conn)
        self.service.wake_relay()
        self.wake()
        return await self.details(workspace_id, campaign_id)

    async def edit(self, workspace_id: str, campaign_id: UUID, body: CampaignEditIn) -> CampaignDetailOut:
        """A new version of the campaign's workflow (CampaignUpdated). Leads enrolled from now on run it; leads that
        have not started their sequence move to it at that safe point; the others finish on their version
        (:mod:`services.outreach.versions`)."""
        now = self.now
        async with self.service.engine.begin() as conn:
            campaign = await self._locked(conn, workspace_id, campaign_id)
            if campaign.state == "finished":
                raise Problem(409, "invalid_state", "campaign is finished; its workflow can no longer change")
            strategy = Strategy.model_validate(campaign.strategy)
            stored = campaign.delivery.get("email_fallback")
            fallback = EmailFallbackIn.model_validate(stored) if stored else None
            try:
                graph = resolve_workflow(
                    body.workflow, default_note=strategy.invite_note, email_fallback=fallback is not None
                )
            except GraphError as exc:
                raise invalid(exc.field, exc.message) from None
            graph = await self._check_email(conn, workspace_id, graph, fallback)
            adds_email = bool(_email_steps(graph)) and not _email_steps(Graph.from_dict(campaign.workflow))
            if adds_email and campaign.state != "pending" and not body.confirm_email_fallback:
                raise Problem(
                    422,
                    "confirmation_required",
                    "this edit adds an email step to a launched campaign: send confirm_email_fallback=true to confirm",
                    errors=[{"field": "confirm_email_fallback", "message": "must be true to add an email step"}],
                )
            version = int(campaign.workflow_version) + 1
            await conn.execute(
                update(campaigns)
                .where(campaigns.c.campaign_id == campaign_id)
                .values(workflow=graph.to_dict(), workflow_version=version, updated_at=now)
            )
            await record_version(conn, campaign_id, version, graph, now)
        # The leads move in a transaction of their own, locking each lead's timers before its enrollment (the
        # step executor's order): a lead whose step is being decided right now is seen after that step.
        async with self.service.engine.begin() as conn:
            em = RootEmitter(self.service, workspace_id)
            moved, staying = await move_unstarted(conn, em, campaign_id, now)
            em.emit(
                CampaignUpdated(
                    campaign_id=campaign_id,
                    workflow=graph.to_model().model_copy(update={"version": version}),
                    moved_leads=moved,
                    staying_leads=staying,
                ),
                f"updated:{campaign_id}:{version}",
            )
            await em.flush(conn)
        self.service.wake_relay()
        self.wake()
        return await self.details(workspace_id, campaign_id)

    async def prepare(self, workspace_id: str, campaign_id: UUID) -> CampaignDetailOut:
        """Prepare a pending campaign for review before launch: resolve its audience and enroll its ready leads in
        the ``prepared`` state on its active accounts (CampaignPrepared, LeadEnrolled prepared=true), so messaging
        writes their drafts for the Messaging Lab. Leads that become ready meanwhile are prepared too. Nothing is
        sent until :meth:`launch`, which starts the prepared leads' sequences with the drafts approved by then."""
        now = self.now
        async with self.service.engine.begin() as conn:
            campaign = await self._locked(conn, workspace_id, campaign_id)
            if campaign.state != "pending":
                raise Problem(
                    409, "invalid_state", f"campaign is {campaign.state}; only a pending campaign is prepared"
                )
            active, skipped = await self._workers(conn, workspace_id, campaign)
            await conn.execute(
                update(campaigns)
                .where(campaigns.c.campaign_id == campaign_id)
                .values(state="prepared", skipped_accounts=skipped, message=None, updated_at=now)
            )
            em = RootEmitter(self.service, workspace_id)
            fresh = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id))).one()
            leads = await enroll(conn, em, fresh, now)
            em.emit(
                CampaignPrepared(campaign_id=campaign_id, account_ids=active, skipped_accounts=skipped, leads=leads)
            )
            await em.flush(conn)
        self.service.wake_relay()
        return await self.details(workspace_id, campaign_id)

    async def _workers(
        self, conn: AsyncConnection, workspace_id: str, campaign: Row[Any]
    ) -> tuple[list[UUID], dict[str, str]]:
        """A worker per active account of the campaign (409 when none can send); (active, skipped with why)."""
        active, skipped = await self._account_check(conn, workspace_id, campaign.account_ids)
        if not active:
            raise Problem(
                409,
                "no_active_account",
                "none of the campaign's accounts can send: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
                skipped_accounts=skipped,
            )
        await _add_workers(conn, campaign.campaign_id, active)
        return active, skipped

    async def _account_check(
        self, conn: AsyncConnection, workspace_id: str, account_ids: list[str]
    ) -> tuple[list[UUID], dict[str, str]]:
        rows = {
            r.account_id: r
            for r in await conn.execute(
                select(accounts).where(
                    accounts.c.workspace_id == workspace_id, accounts.c.account_id.in_([UUID(a) for a in account_ids])
                )
            )
        }
        active: list[UUID] = []
        skipped: dict[str, str] = {}
        for a in account_ids:
            row = rows.get(UUID(a))
            if row is None or row.deleted_at is not None:
                skipped[a] = "account was deleted"
            elif not row.healthy:
                skipped[a] = f"account is not active (status {row.status}): reconnect it first"
            else:
                active.append(UUID(a))
        return active, skipped

    async def _start_or_schedule(
        self, conn: AsyncConnection, em: RootEmitter, campaign_id: UUID, now: datetime
    ) -> None:
        """Run now when the audience run time (two hours before the window) has come, else schedule it."""
        campaign = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id))).one()
        run_at = Schedule.from_delivery(campaign.delivery).audience_run_at(now)
        if run_at <= now:
            await lc.start_running(conn, em, campaign, now)
            return
        await conn.execute(
            update(campaigns)
            .where(campaigns.c.campaign_id == campaign_id)
            .values(state="scheduled", next_run_at=run_at, updated_at=now)
        )
        await tm.schedule(
            conn,
            key=f"start:{campaign_id}:{run_at.isoformat()}",
            workspace_id=campaign.workspace_id,
            kind="campaign_start",
            due_at=run_at,
            now=now,
            campaign_id=campaign_id,
        )
        em.emit(CampaignScheduled(campaign_id=campaign_id, next_run_at=run_at))

    async def pause(self, workspace_id: str, campaign_id: UUID) -> CampaignDetailOut:
        """Pause a scheduled or running campaign (its leases are released)."""
        now = self.now
        async with self.service.engine.begin() as conn:
            campaign = await self._locked(conn, workspace_id, campaign_id)
            if campaign.state not in ("running", "scheduled"):
                raise Problem(
                    409,
                    "invalid_state",
                    f"campaign is {campaign.state}; only a running or scheduled campaign can be paused",
                )
            await conn.execute(
                update(campaigns)
                .where(campaigns.c.campaign_id == campaign_id)
                .values(state="paused", pause_reason="user", next_run_at=None, updated_at=now)
            )
            em = RootEmitter(self.service, workspace_id)
            em.emit(CampaignPaused(campaign_id=campaign_id, reason="user"))
            await lc.release_leases(conn, em, campaign_id)
            await em.flush(conn)
        self.service.wake_relay()
        return await self.details(workspace_id, campaign_id)

    async def resume(self, workspace_id: str, campaign_id: UUID) -> CampaignDetailOut:
        """Resume a paused campaign (needs at least one account that can send); a finished one runs again and
        takes on its audience's late joiners (``audience.py``)."""
        if await self.audiences.resume_finished(workspace_id, campaign_id):
            return await self.details(workspace_id, campaign_id)
        now = self.now
        async with self.service.engine.begin() as conn:
            campaign = await self._locked(conn, workspace_id, campaign_id)
            if campaign.state != "paused":
                raise Problem(
                    409, "invalid_state", f"campaign is {campaign.state}; only a paused or finished campaign resumes"
                )
            active = await conn.scalar(
                select(func.count()).where(
                    campaign_workers.c.campaign_id == campaign_id, campaign_workers.c.state == "active"
                )
            )
            if not active:
                raise Problem(409, "no_active_account", "every account of the campaign needs reconnecting first")
            em = RootEmitter(self.service, workspace_id)
            if campaign.started_at is None:
                await self._start_or_schedule(conn, em, campaign_id, now)
            else:
                await conn.execute(
                    update(campaigns)
                    .where(campaigns.c.campaign_id == campaign_id)
                    .values(state="running", pause_reason=None, updated_at=now)
                )
                em.emit(CampaignResumed(campaign_id=campaign_id, reason="user"))
                await lc.acquire_leases(conn, em, campaign_id, workspace_id, now)
                fresh = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id))).one()
                await enroll(conn, em, fresh, now)
            await em.flush(conn)
        self.service.wake_relay()
        self.wake()
        return await self.details(workspace_id, campaign_id)

    async def delete(self, workspace_id: str, campaign_id: UUID) -> None:
        """Delete a campaign: CampaignDeleted, its leases released, its pending steps cancelled."""
        now = self.now
        async with self.service.engine.begin() as conn:
            await self._locked(conn, workspace_id, campaign_id)
            await conn.execute(
                update(campaigns)
                .where(campaigns.c.campaign_id == campaign_id)
                .values(state="deleted", next_run_at=None, updated_at=now)
            )
            em = RootEmitter(self.service, workspace_id)
            em.emit(CampaignDeleted(campaign_id=campaign_id))
            await lc.release_leases(conn, em, campaign_id)
            await em.flush(conn)
        self.service.wake_relay()
        # Separately, in the timers-first lock order: nothing of a deleted campaign is claimable any more.
        async with self.service.engine.begin() as conn:
            await conn.execute(
                update(timers)
                .where(timers.c.campaign_id == campaign_id, timers.c.state.in_(tm.LIVE))
                .values(state="cancelled", outcome="campaign deleted", updated_at=now)
            )
            await conn.execute(
                update(enrollments)
                .where(enrollments.c.campaign_id == campaign_id, enrollments.c.state.in_(OPEN))
                .values(state="stopped", finished_at=now)
            )
            await conn.execute(delete(lead_locks).where(lead_locks.c.campaign_id == campaign_id))

    async def replace_accounts(self, workspace_id: str, campaign_id: UUID, body: AccountsIn) -> CampaignDetailOut:
        """Send from other LinkedIn accounts: what resolves a campaign that needs review because its account
        was deleted. Enrolled leads of accounts no longer used move to the new ones (rendezvous hashing over
        the active ones, with their pending steps); a campaign that needs review runs again
        (``CampaignResumed(accounts_replaced)``, or scheduled when it never started). Inactive accounts are
        skipped as at launch; with none active left the answer is 409."""
        now = self.now
        wanted = [str(a) for a in body.account_ids]
        async with self.service.engine.begin() as conn:
            await self._visible(conn, workspace_id, campaign_id)
            await self._check_accounts(conn, workspace_id, list(body.account_ids))
            active, skipped = await self._account_check(conn, workspace_id, wanted)
            if not active:
                raise Problem(
                    409,
                    "no_active_account",
                    "none of these accounts can send: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
                    skipped_accounts=skipped,
                    errors=[{"field": "account_ids", "message": "choose at least one connected, healthy account"}],
                )
            moving = ~enrollments.c.account_id.in_(active)
            # The lock order: timers, then enrollments, then the campaign.
            await conn.execute(
                select(timers.c.id)
                .where(
                    timers.c.campaign_id == campaign_id,
                    timers.c.state.in_(tm.LIVE),
                    ~timers.c.account_id.in_(active),
                )
                .order_by(timers.c.id)
                .with_for_update()
            )
            movers = (
                await conn.execute(
                    select(enrollments.c.lead_id)
                    .where(enrollments.c.campaign_id == campaign_id, enrollments.c.state == "active", moving)
                    .order_by(enrollments.c.lead_id)
                    .with_for_update()
                )
            ).all()
            campaign = await self._locked(conn, workspace_id, campaign_id)
            if campaign.state not in ("needs_review", "paused", "running", "scheduled", "pending"):
                raise Problem(409, "invalid_state", f"campaign is {campaign.state}; its accounts cannot change")
            targets = [str(a) for a in active]
            for m in movers:
                account_id = UUID(assign_account(str(m.lead_id), targets))
                await conn.execute(
                    update(enrollments)
                    .where(enrollments.c.campaign_id == campaign_id, enrollments.c.lead_id == m.lead_id)
                    .values(account_id=account_id)
                )
                await conn.execute(
                    update(timers)
                    .where(
                        timers.c.campaign_id == campaign_id,
                        timers.c.lead_id == m.lead_id,
                        timers.c.state.in_(tm.LIVE),
                    )
                    .values(account_id=account_id, updated_at=now)
                )
            em = RootEmitter(self.service, workspace_id)
            launched = campaign.state != "pending"
            if launched:
                for account_id in active:
                    await conn.execute(
                        insert(campaign_workers)
                        .values(
                            campaign_id=campaign_id,
                            account_id=account_id,
                            state="active",
                            worker_id=uuid.uuid5(WORKER_NAMESPACE, f"{campaign_id}|{account_id}"),
                        )
                        .on_conflict_do_update(
                            index_elements=[campaign_workers.c.campaign_id, campaign_workers.c.account_id],
                            set_={"state": "active"},
                        )
                    )
                gone = (
                    await conn.execute(
                        update(campaign_workers)
                        .where(
                            campaign_workers.c.campaign_id == campaign_id,
                            ~campaign_workers.c.account_id.in_(active),
                        )
                        .values(state="stopped")
                        .returning(campaign_workers.c.account_id)
                    )
                ).all()
                for g in sorted(gone, key=lambda g: str(g.account_id)):
                    await lc.release_leases(conn, em, campaign_id, g.account_id)
            await conn.execute(
                update(campaigns)
                .where(campaigns.c.campaign_id == campaign_id)
                .values(account_ids=wanted, skipped_accounts=skipped, message=None, updated_at=now)
            )
            if campaign.state == "needs_review":
                if campaign.started_at is None:
                    await self._start_or_schedule(conn, em, campaign_id, now)
                else:
                    await conn.execute(
                        update(campaigns)
                        .where(campaigns.c.campaign_id == campaign_id)
                        .values(state="running", pause_reason=None, updated_at=now)
                    )
                    em.emit(CampaignResumed(campaign_id=campaign_id, reason="accounts_replaced"))
            fresh = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id))).one()
            if fresh.state == "running":
                await lc.acquire_leases(conn, em, campaign_id, workspace_id, now)
                await enroll(conn, em, fresh, now)
            await em.flush(conn)
        self.service.wake_relay()
        self.wake()
        return await self.details(workspace_id, campaign_id)

    async def launch_plan(self, workspace_id: str, campaign_id: UUID, sample: int = 50) -> LaunchPlanOut:
        """Where each lead of the audience will go if the campaign is launched now: the accounts that will
        send (and those skipped, with why), and per lead its account, or why it waits or is skipped."""
        async with self.service.engine.connect() as conn:
            row = await self._visible(conn, workspace_id, campaign_id)
            active, skipped = await self._account_check(conn, workspace_id, list(row.account_ids))
            names = {
                str(r.account_id): r.display_name or f"Account {str(r.account_id)[:8]}"
                for r in await conn.execute(
                    select(accounts.c.account_id, accounts.c.display_name).where(
                        accounts.c.workspace_id == workspace_id,
                        accounts.c.account_id.in_([UUID(a) for a in row.account_ids]),
                    )
                )
            }
            members = await unenrolled_members(conn, row, ready_only=False)
            people = {
                r.lead_id: r
                for r in await conn.execute(
                    select(leads.c.lead_id, leads.c.full_name, leads.c.company, leads.c.ready).where(
                        leads.c.workspace_id == workspace_id, leads.c.lead_id.in_(members)
                    )
                )
            }
            held = {
                r.lead_id: r.campaign_id
                for r in await conn.execute(
                    select(lead_locks.c.lead_id, lead_locks.c.campaign_id).where(
                        lead_locks.c.workspace_id == workspace_id,
                        lead_locks.c.lead_id.in_(members),
                        lead_locks.c.campaign_id != campaign_id,
                    )
                )
            }
            growing = await audience_still_growing(conn, row)
        targets = [str(a) for a in active]
        per_account = dict.fromkeys(targets, 0)
        counts = PlanCountsOut(total=len(members), ready=0, waiting_enrichment=0, duplicates=0)
        items: list[PlanLeadOut] = []
        for lead_id in members:
            person = people.get(lead_id)
            account = assign_account(str(lead_id), targets) if targets else None
            status: Literal["ready", "waiting", "duplicate"]
            if lead_id in held:
                status, detail = "duplicate", f"active in another campaign ({held[lead_id]}): skipped"
                counts.duplicates += 1
            elif person is None or not person.ready:
                status, detail = "waiting", "enrolled once enrichment has answered"
                counts.waiting_enrichment += 1
            else:
                status, detail = "ready", None
                counts.ready += 1
            if account is not None and status != "duplicate":
                per_account[account] += 1
            items.append(
                PlanLeadOut(
                    lead_id=lead_id,
                    name=person.full_name if person else None,
                    company=person.company if person else None,
                    account_id=UUID(account) if account is not None and status != "duplicate" else None,
                    status=status,
                    detail=detail,
                )
            )
        items.sort(key=lambda i: ((i.name or "~").lower(), str(i.lead_id)))
        return LaunchPlanOut(
            campaign_id=campaign_id,
            state=row.state,
            accounts=[
                PlanAccountOut(
                    account_id=UUID(a),
                    name=names.get(a),
                    active=a in per_account,
                    reason=skipped.get(a),
                    leads=per_account.get(a, 0),
                )
                for a in row.account_ids
            ],
            leads=counts,
            assignments=items[:sample],
            audience_growing=growing,
        )

    # -- views -----------------------------------------------------------------------------------

    @staticmethod
    def _summary(row: Row[Any], next_step: datetime | None) -> CampaignOut:
        next_run = row.next_run_at if row.state == "scheduled" else next_step if row.state == "running" else None
        return CampaignOut(
            campaign_id=row.campaign_id,
            name=row.name,
            state=row.state,
            message=row.message,
            pause_reason=row.pause_reason,
            audience=AudienceOut(type=row.audience_type, ref=row.audience_ref),
            audience_type=row.audience_type,
            pace=row.delivery.get("pace_label"),
            next_run_at=next_run,
            account_ids=[UUID(a) for a in row.account_ids],
            created_at=row.created_at,
        )

    async def list(
        self,
        workspace_id: str,
        q: str | None = None,
        state: str | None = None,
        *,
        after: str | None = None,
        limit: int = MAX_PAGE,
    ) -> Page[CampaignOut]:
        """A page of the workspace's campaigns, newest first; ``q`` searches names; ``after`` is a cursor."""
        nxt = (
            select(func.min(timers.c.due_at))
            .where(
                and_(
                    timers.c.campaign_id == campaigns.c.campaign_id,
                    timers.c.kind == "step",
                    timers.c.state == "pending",
                )
            )
            .scalar_subquery()
        )
        stmt = select(campaigns, nxt.label("next_step")).where(campaigns.c.workspace_id == workspace_id, VISIBLE)
        if q:
            stmt = stmt.where(campaigns.c.name.ilike(f"%{q.replace('%', '').replace('_', '')}%"))
        if state:
            stmt = stmt.where(campaigns.c.state == state)
        if after:
            created, campaign_id = decode_cursor(after, 2, [datetime.fromisoformat, UUID])
            stmt = stmt.where(tuple_(campaigns.c.created_at, campaigns.c.campaign_id) < tuple_(created, campaign_id))
        order = (campaigns.c.created_at.desc(), campaigns.c.campaign_id.desc())
        async with self.service.engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(*order).limit(limit + 1))).all()
        page = Page.of(rows, limit, lambda r: encode_cursor([r.created_at.isoformat(), str(r.campaign_id)]))
        return Page[CampaignOut](items=[self._summary(r, r.next_step) for r in page.items], next=page.next)

    async def details(self, workspace_id: str, campaign_id: UUID) -> CampaignDetailOut:
        """A campaign with its workflow (and warnings), delivery, workers and counts."""
        async with self.service.engine.connect() as conn:
            row = await self._visible(conn, workspace_id, campaign_id)
            next_step = await conn.scalar(
                select(func.min(timers.c.due_at)).where(
                    timers.c.campaign_id == campaign_id, timers.c.kind == "step", timers.c.state == "pending"
                )
            )
            workers = (
                await conn.execute(
                    select(campaign_workers)
                    .where(campaign_workers.c.campaign_id == campaign_id)
                    .order_by(campaign_workers.c.account_id)
                )
            ).all()
            states = await conn.execute(
                select(enrollments.c.state, func.count())
                .where(enrollments.c.campaign_id == campaign_id)
                .group_by(enrollments.c.state)
            )
            by_state: dict[str, int] = {r[0]: r[1] for r in states}
            actions = await conn.execute(
                select(sends.c.action, func.count())
                .where(sends.c.campaign_id == campaign_id, sends.c.dry_run.is_(False), sends.c.state == "sent")
                .group_by(sends.c.action)
            )
            by_action: dict[str, int] = {r[0]: r[1] for r in actions}
            drafts = await conn.execute(
                select(texts.c.status, func.count())
                .where(
                    texts.c.campaign_id == campaign_id,
                    exists().where(
                        enrollments.c.campaign_id == texts.c.campaign_id,
                        enrollments.c.lead_id == texts.c.lead_id,
                        enrollments.c.state.in_(OPEN),
                    ),
                )
                .group_by(texts.c.status)
            )
            by_status: dict[str, int] = {r[0]: r[1] for r in drafts}
        return CampaignDetailOut(
            **dict(self._summary(row, next_step)),
            workflow=GraphOut.model_validate(row.workflow),
            workflow_version=row.workflow_version,
            warnings=row.workflow.get("warnings", []),
            strategy=Strategy.model_validate(row.strategy),
            delivery=Delivery.model_validate(row.delivery),
            video=VideoIn.model_validate(row.video_template) if row.video_template is not None else None,
            skipped_accounts=row.skipped_accounts,
            workers=[WorkerOut(worker_id=w.worker_id, account_id=w.account_id, state=w.state) for w in workers],
            leads=LeadCountsOut.model_validate({"enrolled": sum(by_state.values()), **by_state}),
            # The review before (and during) the run: drafts of the leads still in the sequence, by state
            # (``generated``: waiting in the Messaging Lab; ``approved``: what the steps will send).
            drafts=DraftCountsOut(generated=by_status.get("generated", 0), approved=by_status.get("approved", 0)),
            sent=by_action,
            launched_at=row.launched_at,
        )
