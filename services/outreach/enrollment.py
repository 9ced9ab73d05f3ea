"""Audience membership and enrollment: which ready leads a running campaign takes, on which account.

A campaign's audience is a source group, a saved search (its id, or its source group) or a LinkedIn
search URL (the leads of searches started with that URL). A lead is ready once enrichment answered
(an email outcome, or a failure). Each ready member of a running campaign is enrolled once, on the
account chosen by rendezvous hashing over the campaign's workers (never two accounts); a lead
already active in another campaign of the workspace is recorded as a duplicate and skipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from leadstream_schemas import Action, ActionSkipped, LeadEnrolled, SkipReason
from sqlalchemy import exists, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from . import timers as tm
from .domain.compliance import assign_account, normalise_profile_url
from .domain.workflow import Graph
from .emit import Emitter
from .store import audience_members, campaign_workers, campaigns, enrollments, lead_locks, leads, searches

STARTABLE = ("pending", "prepared", "scheduled", "running", "paused")
ENROLLING = ("prepared", "running")
"""Campaign states that enroll ready audience members: ``running`` into the sequence, ``prepared`` in the
``prepared`` state (drafts written for review, nothing sent until launch)."""
OPEN = ("active", "prepared")
"""Enrollment states of a lead still in a campaign's sequence (or waiting for its launch)."""


async def audience_keys(
    conn: AsyncConnection, workspace_id: str, audience_type: str, ref: str
) -> list[tuple[str, str]]:
    """The (kind, ref) membership pairs that make up an audience."""
    if audience_type == "source_group":
        return [("source_group", ref)]
    if audience_type == "saved_search":
        keys = [("search", ref)]
        try:
            rows = await conn.execute(
                select(searches.c.source_group_id).where(
                    searches.c.workspace_id == workspace_id, searches.c.search_id == UUID(ref)
                )
            )
        except ValueError:
            return keys
        keys.extend(("source_group", str(r.source_group_id)) for r in rows if r.source_group_id)
        return keys
    url = normalise_profile_url(ref)
    rows = await conn.execute(
        select(searches.c.search_id, searches.c.source_group_id).where(
            searches.c.workspace_id == workspace_id, searches.c.url == url
        )
    )
    keys = []
    for r in rows:
        keys.append(("search", str(r.search_id)))
        if r.source_group_id:
            keys.append(("source_group", str(r.source_group_id)))
    return keys


async def audience_still_growing(conn: AsyncConnection, campaign: Row[Any]) -> bool:
    """True while a search feeding the campaign's audience has not finished."""
    keys = await audience_keys(conn, campaign.workspace_id, campaign.audience_type, campaign.audience_ref)
    groups = [UUID(r) for k, r in keys if k == "source_group"]
    ids = [UUID(r) for k, r in keys if k == "search"]
    if not groups and not ids:
        return False
    cond = searches.c.source_group_id.in_(groups) | searches.c.search_id.in_(ids)
    return bool(
        await conn.scalar(
            select(
                exists().where(searches.c.workspace_id == campaign.workspace_id, searches.c.finished.is_(False), cond)
            )
        )
    )


async def unenrolled_members(
    conn: AsyncConnection, campaign: Row[Any], *, ready_only: bool, lead_ids: list[UUID] | None = None
) -> list[UUID]:
    """Audience members not enrolled in the campaign yet (only ready ones when ``ready_only``)."""
    keys = await audience_keys(conn, campaign.workspace_id, campaign.audience_type, campaign.audience_ref)
    if not keys:
        return []
    m, e, ld = audience_members, enrollments, leads
    stmt = (
        select(m.c.lead_id)
        .distinct()
        .where(m.c.workspace_id == campaign.workspace_id, tuple_(m.c.kind, m.c.ref).in_(keys))
        .where(~exists().where(e.c.campaign_id == campaign.campaign_id, e.c.lead_id == m.c.lead_id))
        .order_by(m.c.lead_id)
    )
    if ready_only:
        stmt = stmt.where(
            exists().where(ld.c.workspace_id == m.c.workspace_id, ld.c.lead_id == m.c.lead_id, ld.c.ready.is_(True))
        )
    if lead_ids is not None:
        stmt = stmt.where(m.c.lead_id.in_(lead_ids))
    return [r.lead_id for r in await conn.execute(stmt)]


async def worker_accounts(conn: AsyncConnection, campaign_id: UUID) -> list[str]:
    """The accounts the campaign was launched on (its workers), as strings."""
    rows = await conn.execute(
        select(campaign_workers.c.account_id).where(campaign_workers.c.campaign_id == campaign_id)
    )
    return sorted(str(r.account_id) for r in rows)


async def enroll(
    conn: AsyncConnection, em: Emitter, campaign: Row[Any], now: datetime, lead_ids: list[UUID] | None = None
) -> int:
    """Enroll the campaign's ready, not yet enrolled audience members (all, or those of ``lead_ids``): into the
    sequence when it runs, in the ``prepared`` state (no step scheduled) when it was prepared for review."""
    workers = await worker_accounts(conn, campaign.campaign_id)
    if not workers:
        return 0
    prepared = campaign.state == "prepared"
    graph = Graph.from_dict(campaign.workflow)
    start = graph.step(graph.start)
    video_id = (campaign.video_template or {}).get("template_id") if campaign.video_template else None
    enrolled = 0
    for lead_id in await unenrolled_members(conn, campaign, ready_only=True, lead_ids=lead_ids):
        account_id = UUID(assign_account(str(lead_id), workers))
        ws = campaign.workspace_id
        # The lead lock row serialises enrollments of one lead across campaigns (and replicas).
        await conn.execute(
            insert(lead_locks)
            .values(workspace_id=ws, lead_id=lead_id, campaign_id=campaign.campaign_id)
            .on_conflict_do_nothing()
        )
        holder = await conn.scalar(
            select(lead_locks.c.campaign_id)
            .where(lead_locks.c.workspace_id == ws, lead_locks.c.lead_id == lead_id)
            .with_for_update()
        )
        state = ("prepared" if prepared else "active") if holder == campaign.campaign_id else "duplicate"
        inserted = await conn.execute(
            insert(enrollments)
            .values(
                campaign_id=campaign.campaign_id,
                lead_id=lead_id,
                workspace_id=ws,
                account_id=account_id,
                state=state,
                workflow_version=campaign.workflow_version,
                enrolled_at=now,
                finished_at=None if state in OPEN else now,
            )
            .on_conflict_do_nothing()
        )
        if not inserted.rowcount:
            continue
        key = f"enroll:{campaign.campaign_id}:{lead_id}"
        if state == "duplicate":
            em.emit(
                ActionSkipped(
                    lead_id=lead_id,
                    campaign_id=campaign.campaign_id,
                    account_id=account_id,
                    step_id=start.id,
                    action=Action(start.action),
                    reason=SkipReason.duplicate,
                    detail=f"lead is active in campaign {holder}",
                    workflow_version=campaign.workflow_version,
                ),
                key,
            )
            continue
        em.emit(
            LeadEnrolled(
                lead_id=lead_id,
                campaign_id=campaign.campaign_id,
                account_id=account_id,
                workflow_preset=graph.preset,
                video_template_id=video_id,
                prepared=prepared,
                workflow_version=campaign.workflow_version,
                variants=graph.variants_for(str(lead_id)),
            ),
            key,
        )
        enrolled += 1
        if not prepared:
            await schedule_start(conn, campaign.campaign_id, ws, lead_id, account_id, start.id, now)
    return enrolled


async def schedule_start(
    conn: AsyncConnection,
    campaign_id: UUID,
    workspace_id: str,
    lead_id: UUID,
    account_id: UUID,
    step_id: str,
    now: datetime,
) -> None:
    """The lead's first step, due now (its checks then wait for the window, the video, the text and the pace)."""
    await tm.schedule(
        conn,
        key=tm.step_key(campaign_id, lead_id, step_id),
        workspace_id=workspace_id,
        kind="step",
        due_at=now,
        now=now,
        campaign_id=campaign_id,
        lead_id=lead_id,
        account_id=account_id,
        step_id=step_id,
    )


async def start_prepared(conn: AsyncConnection, campaign: Row[Any], now: datetime) -> int:
    """Launch the sequence of the leads a prepared campaign enrolled for review: they become active and their
    first step is scheduled (it sends the drafts approved meanwhile). Returns how many started."""
    graph = Graph.from_dict(campaign.workflow)
    rows = (
        await conn.execute(
            update(enrollments)
            .where(enrollments.c.campaign_id == campaign.campaign_id, enrollments.c.state == "prepared")
            .values(state="active")
            .returning(enrollments.c.lead_id, enrollments.c.account_id)
        )
    ).all()
    for r in sorted(rows, key=lambda r: r.lead_id):
        await schedule_start(
            conn, campaign.campaign_id, campaign.workspace_id, r.lead_id, r.account_id, graph.start, now
        )
    return len(rows)


async def enroll_everywhere(conn: AsyncConnection, em: Emitter, workspace_id: str, lead_id: UUID, now: datetime) -> int:
    """Enroll a lead that just became ready (or joined an audience) in every running or prepared campaign it
    belongs to.

    Campaigns that may start running are share-locked: a launch, start or resume (which lock the campaign for
    update and then sweep the audience) either commits first, and is seen here as running, or waits for this
    transaction, and then its sweep sees the lead ready. Either way the lead is not missed.
    """
    rows = (
        await conn.execute(
            select(campaigns)
            .where(campaigns.c.workspace_id == workspace_id, campaigns.c.state.in_(STARTABLE))
            .order_by(campaigns.c.campaign_id)
            .with_for_update(read=True)
        )
    ).all()
    total = 0
    for campaign in rows:
        if campaign.state in ENROLLING:
            total += await enroll(conn, em, campaign, now, lead_ids=[lead_id])
    return total
