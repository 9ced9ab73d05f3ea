"""Lead and campaign lifecycle shared by handlers, webhooks, the API and the timer loop.

Replies, acceptances, lead endings, campaign start and finish, and account leases. Every function
works in the caller's transaction and emits through an :class:`~services.outreach.emit.Emitter`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from leadstream_schemas import (
    AccountLeaseAcquired,
    AccountLeaseReleased,
    Action,
    ActionSkipped,
    CampaignFinished,
    CampaignLaunched,
    Channel,
    InviteAccepted,
    LeadCompleted,
    LeadPaused,
    LeadResumed,
    Replied,
    SkipReason,
)
from leadstream_schemas.bounds import DETAIL_MAX, scrub
from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from . import audience
from . import timers as tm
from .domain import replies
from .domain.schedule import Schedule
from .domain.timezones import timezone_of
from .domain.workflow import Edge, Graph
from .emit import Emitter
from .enrollment import OPEN, audience_still_growing, enroll, start_prepared, unenrolled_members
from .store import campaign_workers, campaigns, enrollments, lead_locks, leads, leases, suppressions, timers
from .versions import graph_of

TERMINAL = ("duplicate", "replied", "completed", "blocked", "suppressed", "failed", "stopped")


# -- leases --------------------------------------------------------------------------------------


async def acquire_leases(
    conn: AsyncConnection, em: Emitter, campaign_id: UUID, workspace_id: str, now: datetime
) -> None:
    """Take a lease on every active worker's account."""
    rows = await conn.execute(
        select(campaign_workers.c.account_id).where(
            campaign_workers.c.campaign_id == campaign_id, campaign_workers.c.state == "active"
        )
    )
    for r in sorted(rows, key=lambda r: str(r.account_id)):
        got = await conn.execute(
            insert(leases)
            .values(account_id=r.account_id, campaign_id=campaign_id, workspace_id=workspace_id, acquired_at=now)
            .on_conflict_do_nothing()
        )
        if got.rowcount:
            em.emit(AccountLeaseAcquired(account_id=r.account_id, campaign_id=campaign_id))


async def release_leases(conn: AsyncConnection, em: Emitter, campaign_id: UUID, account_id: UUID | None = None) -> None:
    """Release the campaign's leases (on one account, or all)."""
    stmt = delete(leases).where(leases.c.campaign_id == campaign_id)
    if account_id is not None:
        stmt = stmt.where(leases.c.account_id == account_id)
    for r in sorted(await conn.execute(stmt.returning(leases.c.account_id)), key=lambda r: str(r.account_id)):
        em.emit(AccountLeaseReleased(account_id=r.account_id, campaign_id=campaign_id))


# -- campaign ------------------------------------------------------------------------------------


async def start_running(conn: AsyncConnection, em: Emitter, campaign: Row[Any], now: datetime) -> int:
    """Move a launched campaign to running: CampaignLaunched, leases, the sequences of the leads it prepared for
    review, and the first audience run."""
    active = [
        str(r.account_id)
        for r in await conn.execute(
            select(campaign_workers.c.account_id).where(
                campaign_workers.c.campaign_id == campaign.campaign_id, campaign_workers.c.state == "active"
            )
        )
    ]
    await conn.execute(
        update(campaigns)
        .where(campaigns.c.campaign_id == campaign.campaign_id)
        .values(state="running", started_at=now, next_run_at=None, updated_at=now)
    )
    em.emit(
        CampaignLaunched(
            campaign_id=campaign.campaign_id,
            account_ids=[UUID(a) for a in sorted(active)],
            skipped_accounts=dict(campaign.skipped_accounts or {}),
        )
    )
    await acquire_leases(conn, em, campaign.campaign_id, campaign.workspace_id, now)
    started = await start_prepared(conn, campaign, now)
    fresh = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign.campaign_id))).one()
    enrolled = await enroll(conn, em, fresh, now)
    await audience.start_runs(conn, em, fresh, now)  # its audience runs now, then before each window
    return started + enrolled


async def maybe_finish_campaign(conn: AsyncConnection, em: Emitter, campaign_id: UUID, now: datetime) -> bool:
    """Finish a running campaign whose leads are all done and whose audience has nothing left to enroll."""
    campaign = (
        await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id).with_for_update())
    ).first()
    if campaign is None or campaign.state != "running":
        return False
    e = enrollments
    has_any = await conn.scalar(select(exists().where(e.c.campaign_id == campaign_id)))
    open_leads = await conn.scalar(select(exists().where(e.c.campaign_id == campaign_id, e.c.state == "active")))
    if not has_any or open_leads:
        return False
    if await unenrolled_members(conn, campaign, ready_only=False) or await audience_still_growing(conn, campaign):
        return False
    await conn.execute(
        update(campaigns)
        .where(campaigns.c.campaign_id == campaign_id)
        .values(state="finished", next_run_at=None, updated_at=now)
    )
    em.emit(CampaignFinished(campaign_id=campaign_id), f"finished:{campaign_id}")
    await release_leases(conn, em, campaign_id)
    return True


# -- leads ---------------------------------------------------------------------------------------


async def end_lead(
    conn: AsyncConnection, campaign_id: UUID, lead_id: UUID, workspace_id: str, state: str, now: datetime
) -> None:
    """Close the lead's enrollment (state is terminal) and release its lock so another campaign may take it."""
    await conn.execute(
        update(enrollments)
        .where(enrollments.c.campaign_id == campaign_id, enrollments.c.lead_id == lead_id)
        .values(state=state, finished_at=now)
    )
    await conn.execute(
        delete(lead_locks).where(
            lead_locks.c.workspace_id == workspace_id,
            lead_locks.c.lead_id == lead_id,
            lead_locks.c.campaign_id == campaign_id,
        )
    )


async def complete_if_done(conn: AsyncConnection, em: Emitter, enrollment: Row[Any], now: datetime) -> bool:
    """When the lead has no live step left, it completed the campaign: LeadCompleted (then maybe the campaign)."""
    if await tm.live_for_lead(conn, enrollment.campaign_id, enrollment.lead_id):
        return False
    steps_done = int(
        await conn.scalar(
            select(enrollments.c.steps_done).where(
                enrollments.c.campaign_id == enrollment.campaign_id, enrollments.c.lead_id == enrollment.lead_id
            )
        )
        or 0
    )
    await end_lead(conn, enrollment.campaign_id, enrollment.lead_id, enrollment.workspace_id, "completed", now)
    em.emit(
        LeadCompleted(lead_id=enrollment.lead_id, campaign_id=enrollment.campaign_id, steps_done=steps_done),
        f"completed:{enrollment.campaign_id}:{enrollment.lead_id}",
    )
    await maybe_finish_campaign(conn, em, enrollment.campaign_id, now)
    return True


async def schedule_children(
    conn: AsyncConnection, enrollment: Row[Any], edges: list[Edge], after: datetime, now: datetime
) -> None:
    """Schedule each edge's child step ``delay_minutes`` after ``after`` (a step runs at most once per lead)."""
    for edge in edges:
        await tm.schedule(
            conn,
            key=tm.step_key(enrollment.campaign_id, enrollment.lead_id, edge.target),
            workspace_id=enrollment.workspace_id,
            kind="step",
            due_at=after + timedelta(minutes=edge.delay_minutes),
            now=now,
            campaign_id=enrollment.campaign_id,
            lead_id=enrollment.lead_id,
            account_id=enrollment.account_id,
            step_id=edge.target,
        )


async def apply_reply(
    conn: AsyncConnection,
    em: Emitter,
    workspace_id: str,
    lead_id: UUID,
    *,
    channel: str,
    received_at: datetime,
    now: datetime,
    key: str,
    excerpt: str | None = None,
    out_of_office: bool = False,
    emit_events: bool = True,
    text: str | None = None,
) -> list[UUID]:
    """A reply stops the lead everywhere at once: every live step (even a due one) is cancelled before its
    enrollment is closed, so the step executor, which locks the timer first and then re-reads the
    enrollment, can never send after this commits. Returns the campaigns the lead was active in.

    ``excerpt`` is the reply's text as the provider gave it: kept to the contract's bound, with characters
    Postgres cannot store replaced (a reply is a fact to record, not input to refuse).

    An out-of-office answer (ours to act on: ``emit_events``) does not stop the lead: it pauses it until the
    return date it states (:func:`pause_out_of_office`). A real reply also stops the lead's colleagues in
    campaigns that ask for it (``delivery.stop_company_on_reply``)."""
    if excerpt is not None:
        excerpt = scrub(excerpt)[:DETAIL_MAX]
    if text is not None:
        text = scrub(text)
    if out_of_office and emit_events:
        return await pause_out_of_office(
            conn,
            em,
            workspace_id,
            lead_id,
            channel=channel,
            received_at=received_at,
            now=now,
            key=key,
            text=text or excerpt,
        )
    await tm.cancel_lead(conn, workspace_id, lead_id, now, "replied")
    lead = {"ws": workspace_id, "lead": lead_id}
    rows = (await conn.execute(_CLOSE_REPLIED, {**lead, "now": now})).all()
    await conn.execute(_UNLOCK_LEAD, lead)
    if emit_events:
        targets: list[tuple[UUID | None, UUID | None]] = [(r.campaign_id, r.account_id) for r in rows]
        if not targets:
            # A late reply (the lead already completed): it still belongs to the campaign that wrote to the lead.
            last = (
                await conn.execute(
                    select(enrollments.c.campaign_id, enrollments.c.account_id)
                    .where(
                        enrollments.c.workspace_id == workspace_id,
                        enrollments.c.lead_id == lead_id,
                        enrollments.c.state != "duplicate",
                    )
                    .order_by(enrollments.c.enrolled_at.desc())
                    .limit(1)
                )
            ).first()
            targets = [(last.campaign_id, last.account_id) if last else (None, None)]
        for campaign_id, account_id in sorted(targets, key=str):
            em.emit(
                Replied(
                    lead_id=lead_id,
                    campaign_id=campaign_id,
                    account_id=account_id,
                    channel=Channel(channel),
                    received_at=received_at,
                    excerpt=excerpt,
                    out_of_office=out_of_office,
                ),
                f"{key}:{campaign_id}",
            )
    if emit_events:
        await stop_colleagues(conn, em, workspace_id, lead_id, [r.campaign_id for r in rows], now)
    for r in sorted(rows, key=lambda r: str(r.campaign_id)):
        await maybe_finish_campaign(conn, em, r.campaign_id, now)
    return [r.campaign_id for r in rows]


# Built once, as cancel_lead's: every reply (read back too) runs them.
_CLOSE_REPLIED = (
    update(enrollments)
    .where(
        enrollments.c.workspace_id == bindparam("ws"),
        enrollments.c.lead_id == bindparam("lead"),
        enrollments.c.state.in_(OPEN),
    )
    .values(state="replied", finished_at=bindparam("now"))
    .returning(enrollments.c.campaign_id, enrollments.c.account_id)
)
_UNLOCK_LEAD = delete(lead_locks).where(
    lead_locks.c.workspace_id == bindparam("ws"), lead_locks.c.lead_id == bindparam("lead")
)


# -- out of office ---------------------------------------------------------------------------------------------

LEAD_RESUME = "lead_resume"


async def pause_out_of_office(
    conn: AsyncConnection,
    em: Emitter,
    workspace_id: str,
    lead_id: UUID,
    *,
    channel: str,
    received_at: datetime,
    now: datetime,
    key: str,
    text: str | None,
) -> list[UUID]:
    """An out-of-office answer pauses the lead in every campaign it is active in until the start of the day it
    says it is back (in the campaign's time zone, or the lead's with ``lead_timezones``), else for
    :data:`~.domain.replies.DEFAULT_PAUSE_DAYS`: no step runs before then (the executor waits for
    ``paused_until``), an invite's acceptance deadline moves by the time away, and a ``lead_resume`` timer
    says ``LeadResumed`` when the time comes. ``LeadPaused`` says until when. Returns the paused campaigns."""
    rows = (
        await conn.execute(
            select(
                enrollments.c.campaign_id,
                enrollments.c.account_id,
                campaigns.c.delivery,
                leads.c.location,
                leads.c.city,
            )
            .select_from(
                enrollments.join(campaigns, campaigns.c.campaign_id == enrollments.c.campaign_id).join(
                    leads, (leads.c.workspace_id == enrollments.c.workspace_id) & (leads.c.lead_id == lead_id)
                )
            )
            .where(
                enrollments.c.workspace_id == workspace_id,
                enrollments.c.lead_id == lead_id,
                enrollments.c.state == "active",
            )
            .order_by(enrollments.c.campaign_id)
        )
    ).all()
    paused: list[UUID] = []
    for row in rows:
        schedule = Schedule.from_delivery(row.delivery)
        where = row.location or row.city
        if row.delivery.get("lead_timezones") and where:
            schedule = schedule.for_lead(await asyncio.to_thread(timezone_of, where))
        received_day = received_at.astimezone(schedule.tz).date()
        back = replies.return_date(text, received_day)
        until = replies.pause_until(
            back,
            received_at,
            schedule.tz,
            default_days=replies.DEFAULT_PAUSE_DAYS,
            max_days=replies.MAX_PAUSE_DAYS,
        )
        # Timers before the enrollment (store.py's lock order): the acceptance deadline moves by the time away.
        away = until - now
        if away > timedelta(0):
            await conn.execute(
                update(timers)
                .where(
                    timers.c.campaign_id == row.campaign_id,
                    timers.c.lead_id == lead_id,
                    timers.c.kind == "accept_wait",
                    timers.c.state.in_(tm.LIVE),
                )
                .values(due_at=timers.c.due_at + away, updated_at=now)
            )
        done = await conn.execute(
            update(enrollments)
            .where(
                enrollments.c.campaign_id == row.campaign_id,
                enrollments.c.lead_id == lead_id,
                enrollments.c.state == "active",
            )
            .values(paused_until=until)
        )
        if not done.rowcount:
            continue
        paused.append(row.campaign_id)
        em.emit(
            LeadPaused(
                lead_id=lead_id,
                campaign_id=row.campaign_id,
                account_id=row.account_id,
                until=until,
                return_on=back,
                channel=Channel(channel),
                excerpt=(text or "")[:280] or None,
            ),
            f"{key}:{row.campaign_id}",
        )
        await tm.schedule(
            conn,
            key=f"resume:{row.campaign_id}:{lead_id}:{until.isoformat()}",
            workspace_id=workspace_id,
            kind=LEAD_RESUME,
            due_at=until,
            now=now,
            campaign_id=row.campaign_id,
            lead_id=lead_id,
            account_id=row.account_id,
        )
    return paused


async def resume_lead(conn: AsyncConnection, em: Emitter, timer: Row[Any], now: datetime) -> None:
    """A ``lead_resume`` timer is due: the paused lead's sequence goes on (``LeadResumed``), unless a later
    out-of-office answer moved its return (its own timer says so then) or the lead stopped meanwhile."""
    enrollment = (
        await conn.execute(
            select(enrollments)
            .where(enrollments.c.campaign_id == timer.campaign_id, enrollments.c.lead_id == timer.lead_id)
            .with_for_update()
        )
    ).first()
    if enrollment is None or enrollment.state != "active" or enrollment.paused_until is None:
        await tm.finish(conn, timer.id, now, "lead not paused", state="cancelled")
        return
    if enrollment.paused_until > now:
        await tm.finish(conn, timer.id, now, "superseded by a later return date", state="cancelled")
        return
    await resume_paused(conn, em, enrollment)
    await tm.finish(conn, timer.id, now, "resumed")


async def resume_paused(conn: AsyncConnection, em: Emitter, enrollment: Row[Any]) -> None:
    """End a pause that is over (its ``lead_resume`` timer, or the lead's first step due after it, whichever runs
    first: both emit the same ``LeadResumed``)."""
    await conn.execute(
        update(enrollments)
        .where(enrollments.c.campaign_id == enrollment.campaign_id, enrollments.c.lead_id == enrollment.lead_id)
        .values(paused_until=None)
    )
    em.emit(
        LeadResumed(lead_id=enrollment.lead_id, campaign_id=enrollment.campaign_id, account_id=enrollment.account_id),
        f"resumed:{enrollment.campaign_id}:{enrollment.lead_id}:{enrollment.paused_until.isoformat()}",
    )


# -- colleagues ------------------------------------------------------------------------------------------------


async def stop_colleagues(
    conn: AsyncConnection, em: Emitter, workspace_id: str, lead_id: UUID, campaign_ids: list[UUID], now: datetime
) -> None:
    """A lead replied: in each of its campaigns that asks for it (``delivery.stop_company_on_reply``), the other
    active leads of the same company (:func:`~.domain.replies.company_key`) stop, each with
    ``ActionSkipped(company_replied)`` on the step it was waiting for."""
    me = (
        await conn.execute(
            select(leads.c.company, leads.c.email).where(
                leads.c.workspace_id == workspace_id, leads.c.lead_id == lead_id
            )
        )
    ).first()
    if me is None:
        return
    key = replies.company_key(me.company, me.email)
    if key is None:
        return
    company = me.company or key.split(":", 1)[1]
    for campaign_id in sorted(campaign_ids, key=str):
        campaign = (
            await conn.execute(
                select(campaigns.c.delivery, campaigns.c.workflow).where(campaigns.c.campaign_id == campaign_id)
            )
        ).one()
        if not campaign.delivery.get("stop_company_on_reply"):
            continue
        graph = Graph.from_dict(campaign.workflow)
        others = (
            await conn.execute(
                select(enrollments.c.lead_id, enrollments.c.account_id, leads.c.company, leads.c.email)
                .select_from(
                    enrollments.join(
                        leads,
                        (leads.c.workspace_id == enrollments.c.workspace_id)
                        & (leads.c.lead_id == enrollments.c.lead_id),
                    )
                )
                .where(
                    enrollments.c.campaign_id == campaign_id,
                    enrollments.c.state == "active",
                    enrollments.c.lead_id != lead_id,
                )
                .order_by(enrollments.c.lead_id)
            )
        ).all()
        for other in others:
            if replies.company_key(other.company, other.email) != key:
                continue
            waiting = (
                await conn.execute(
                    update(timers)
                    .where(
                        timers.c.campaign_id == campaign_id,
                        timers.c.lead_id == other.lead_id,
                        timers.c.kind.in_(tm.LEAD_KINDS),
                        timers.c.state.in_(tm.LIVE),
                    )
                    .values(state="cancelled", outcome="company_replied", updated_at=now)
                    .returning(timers.c.step_id, timers.c.kind, timers.c.due_at)
                )
            ).all()
            await end_lead(conn, campaign_id, other.lead_id, workspace_id, "stopped", now)
            steps = sorted((t.due_at, t.step_id) for t in waiting if t.kind == "step" and t.step_id)
            step_id = steps[0][1] if steps else graph.start
            em.emit(
                ActionSkipped(
                    lead_id=other.lead_id,
                    campaign_id=campaign_id,
                    account_id=other.account_id,
                    step_id=step_id,
                    action=Action(graph.step(step_id).action),
                    reason=SkipReason.company_replied,
                    detail=f"a colleague at {company} replied (lead {lead_id})",
                ),
                f"company_replied:{campaign_id}:{other.lead_id}",
            )


async def apply_acceptance(
    conn: AsyncConnection,
    em: Emitter,
    *,
    campaign_id: UUID,
    lead_id: UUID,
    workspace_id: str,
    step_id: str | None,
    account_id: UUID | None,
    now: datetime,
    key: str,
) -> None:
    """The lead accepted the invite: InviteAccepted, and the steps waiting for acceptance get scheduled.

    An acceptance after the deadline (the not-accepted branch already ran) is recorded but starts nothing.
    """
    waits = (
        await conn.execute(
            select(timers)
            .where(
                timers.c.campaign_id == campaign_id,
                timers.c.lead_id == lead_id,
                timers.c.kind == "accept_wait",
                timers.c.state.in_(tm.LIVE),
            )
            .order_by(timers.c.id)
            .with_for_update()
        )
    ).all()
    enrollment = (
        await conn.execute(
            select(enrollments)
            .where(enrollments.c.campaign_id == campaign_id, enrollments.c.lead_id == lead_id)
            .with_for_update()
        )
    ).first()
    version = enrollment.workflow_version if enrollment is not None else None
    em.emit(
        InviteAccepted(
            lead_id=lead_id, campaign_id=campaign_id, account_id=account_id, step_id=step_id, workflow_version=version
        ),
        key,
    )
    if enrollment is None:
        return
    await conn.execute(
        update(enrollments)
        .where(
            enrollments.c.campaign_id == campaign_id,
            enrollments.c.lead_id == lead_id,
            enrollments.c.accepted_at.is_(None),
        )
        .values(accepted_at=now)
    )
    if enrollment.state != "active":
        return
    campaign = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id))).one()
    graph = await graph_of(conn, campaign, enrollment.workflow_version)
    for wait in waits:
        if step_id is not None and wait.step_id != step_id:
            continue
        await tm.finish(conn, wait.id, now, "accepted")
        await schedule_children(conn, enrollment, graph.children(wait.step_id, ("accepted",)), now, now)


async def accept_deadline(
    conn: AsyncConnection, em: Emitter, enrollment: Row[Any], graph: Graph, invite_step: str, now: datetime
) -> None:
    """The invite was not accepted in time: the steps that needed acceptance are skipped (not_accepted) and the
    not-accepted branch (e.g. the email fallback) is scheduled."""
    for edge in graph.children(invite_step, ("accepted",)):
        em.emit(
            ActionSkipped(
                lead_id=enrollment.lead_id,
                campaign_id=enrollment.campaign_id,
                account_id=enrollment.account_id,
                step_id=edge.target,
                action=Action(graph.step(edge.target).action),
                reason=SkipReason.not_accepted,
                detail=f"invite not accepted within {graph.step(invite_step).accept_timeout_hours} h",
                workflow_version=enrollment.workflow_version,
            ),
            f"not_accepted:{enrollment.campaign_id}:{enrollment.lead_id}:{edge.target}",
        )
    await schedule_children(conn, enrollment, graph.children(invite_step, ("not_accepted",)), now, now)


# -- suppression ---------------------------------------------------------------------------------


async def suppress(conn: AsyncConnection, workspace_id: str, kind: str, value: str, reason: str, now: datetime) -> None:
    """Add a lead id or an address to the workspace's suppression list (idempotent)."""
    await conn.execute(
        insert(suppressions)
        .values(workspace_id=workspace_id, kind=kind, value=value, reason=reason, created_at=now)
        .on_conflict_do_nothing()
    )
