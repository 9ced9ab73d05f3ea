"""Versioned sequences: editing a running campaign's workflow, and which version each lead runs.

Every version of a campaign's workflow is kept (``workflow_versions``); the campaign row holds the newest.
A lead runs the version it was enrolled on, recorded on its enrollment and on every action event
(``workflow_version``). When the workflow is edited (``PATCH /v1/campaigns/{id}``), the rule is
:func:`~services.outreach.domain.workflow.moves_to_new_version`: a lead that has not started its sequence
(prepared, or enrolled with only its first step still ahead of it: no step performed or skipped, no send under
way, no acceptance) moves to the new version at that safe point; every other lead finishes on its version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from leadstream_schemas import LeadEnrolled
from sqlalchemy import exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from . import timers as tm
from .domain.workflow import Graph, LiveStep, moves_to_new_version
from .emit import Emitter
from .enrollment import OPEN, schedule_start
from .store import campaigns, enrollments, sends, timers, workflow_versions


async def record_version(conn: AsyncConnection, campaign_id: UUID, version: int, graph: Graph, now: datetime) -> None:
    """Keep ``graph`` as version ``version`` of the campaign's workflow."""
    await conn.execute(
        insert(workflow_versions)
        .values(campaign_id=campaign_id, version=version, workflow=graph.to_dict(), created_at=now)
        .on_conflict_do_nothing()
    )


async def graph_of(conn: AsyncConnection, campaign: Row[Any], version: int) -> Graph:
    """The graph of one version of the campaign's workflow (the campaign row's own when it is the newest)."""
    if version == campaign.workflow_version:
        return Graph.from_dict(campaign.workflow)
    stored = await conn.scalar(
        select(workflow_versions.c.workflow).where(
            workflow_versions.c.campaign_id == campaign.campaign_id, workflow_versions.c.version == version
        )
    )
    return Graph.from_dict(stored if stored is not None else campaign.workflow)


async def move_unstarted(conn: AsyncConnection, em: Emitter, campaign_id: UUID, now: datetime) -> tuple[int, int]:
    """Move the campaign's leads that have not started their sequence to its newest version (a new
    ``LeadEnrolled`` with the version, so messaging writes the drafts it needs). Runs in its own transaction,
    after the edit committed, locking each lead's timers before its enrollment (the executor's lock order).
    Returns (moved, staying on their version)."""
    campaign = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id))).one()
    graph = Graph.from_dict(campaign.workflow)
    version = int(campaign.workflow_version)
    candidates = (
        await conn.execute(
            select(enrollments.c.lead_id)
            .where(
                enrollments.c.campaign_id == campaign_id,
                enrollments.c.state.in_(OPEN),
                enrollments.c.workflow_version != version,
            )
            .order_by(enrollments.c.lead_id)
        )
    ).all()
    moved = staying = 0
    for (lead_id,) in candidates:
        live = (
            await conn.execute(
                select(timers)
                .where(
                    timers.c.campaign_id == campaign_id,
                    timers.c.lead_id == lead_id,
                    timers.c.kind.in_(tm.LEAD_KINDS),
                    timers.c.state.in_(tm.LIVE),
                )
                .order_by(timers.c.id)
                .with_for_update()
            )
        ).all()
        row = (
            await conn.execute(
                select(enrollments)
                .where(enrollments.c.campaign_id == campaign_id, enrollments.c.lead_id == lead_id)
                .with_for_update()
            )
        ).one()
        old = await graph_of(conn, campaign, int(row.workflow_version))
        sent = await conn.scalar(select(exists().where(sends.c.campaign_id == campaign_id, sends.c.lead_id == lead_id)))
        done = await conn.scalar(
            select(
                exists().where(
                    timers.c.campaign_id == campaign_id,
                    timers.c.lead_id == lead_id,
                    timers.c.kind == "step",
                    timers.c.state.not_in(tm.LIVE),
                    timers.c.outcome.is_distinct_from(tm.EDITED),
                )
            )
        )
        steps = [LiveStep(t.kind, t.step_id, t.waiting_for) for t in live]
        if row.state not in OPEN or not moves_to_new_version(
            row.state, row.steps_done, row.accepted_at is not None, bool(sent) or bool(done), steps, old.start
        ):
            staying += 1
            continue
        await conn.execute(
            update(enrollments)
            .where(enrollments.c.campaign_id == campaign_id, enrollments.c.lead_id == lead_id)
            .values(workflow_version=version)
        )
        if row.state == "active" and graph.start != old.start:
            for t in live:
                await tm.finish(conn, t.id, now, tm.EDITED, state="cancelled")
            await schedule_start(conn, campaign_id, row.workspace_id, lead_id, row.account_id, graph.start, now)
        em.emit(
            LeadEnrolled(
                lead_id=lead_id,
                campaign_id=campaign_id,
                account_id=row.account_id,
                workflow_preset=graph.preset,
                video_template_id=(campaign.video_template or {}).get("template_id"),
                prepared=row.state == "prepared",
                workflow_version=version,
                variants=graph.variants_for(str(lead_id)),
            ),
            f"enroll:{campaign_id}:{lead_id}:v{version}",
        )
        moved += 1
    return moved, staying
