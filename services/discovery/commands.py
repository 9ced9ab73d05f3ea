"""Discovery's write commands the routes call (one transaction each): saving a search (once per Idempotency-Key),
cancelling one, adding a lead by hand, a group's enrichment setting, and enriching the leads someone selected.

A group that enriches ``on_selection`` discovers its leads without enriching them (``LeadDiscovered`` says so);
selecting some of them emits ``LeadEnrichmentRequested`` once per lead, and enrichment then enriches them as
if just discovered. Switching a group to ``automatic`` requests every lead of it still waiting.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from leadstream_schemas import LeadSource, SearchStarted
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime import idempotency
from services.runtime.errors import Problem
from services.runtime.service import Service
from services.runtime.telemetry import current_traceparent

from . import domain
from .handlers import finish, group_enrichment, lead_events, search_envelope
from .settings import DiscoverySettings
from .store import add_lead, idempotency_keys, leads, searches, source_group_members, source_groups
from .watch import create_watch, stop_watch

REQUEST_BATCH = 1000


@dataclass
class Selection:
    """What a selection did, lead by lead: enrichment requested now, already enriched or requested before,
    or not a member of the group."""

    requested: list[UUID] = field(default_factory=list)
    already: list[UUID] = field(default_factory=list)
    not_members: list[UUID] = field(default_factory=list)


@dataclass(frozen=True)
class ManualAdd:
    """What a manual add did: the lead, the group it joined, and whether the person was new to the workspace."""

    lead_id: UUID
    source_group_id: UUID
    created: bool


async def source_group(conn: AsyncConnection, workspace_id: str, group_id: UUID, *, lock: bool = False) -> str:
    """The group's enrichment setting; 404 when the workspace has no such group (the one place that answers it:
    the write commands here and the routes that read a group, ``api.group_leads``). ``lock``: FOR UPDATE."""
    stmt = select(source_groups.c.enrichment).where(
        source_groups.c.source_group_id == group_id, source_groups.c.workspace_id == workspace_id
    )
    mode = await conn.scalar(stmt.with_for_update() if lock else stmt)
    if mode is None:
        raise Problem(404, "not_found", f"source group {group_id} not found")
    return str(mode)


async def _request(
    service: Service, conn: AsyncConnection, workspace_id: str, group_id: UUID, lead_ids: list[UUID], reason: str
) -> list[UUID]:
    """Mark the pending leads among ``lead_ids`` requested and emit their ``LeadEnrichmentRequested``."""
    flipped = sorted(
        await conn.scalars(
            update(leads)
            .where(
                leads.c.workspace_id == workspace_id,
                leads.c.lead_id.in_(lead_ids),
                leads.c.enrichment == "pending",
            )
            .values(enrichment="requested")
            .returning(leads.c.lead_id)
        ),
        key=str,
    )
    envelopes = []
    for lead_id in flipped:
        event = domain.enrichment_request_event(lead_id, group_id, "selected" if reason == "selected" else "automatic")
        # One request per lead ever (the row flips once), so the id may be derived from the lead alone.
        event_id = uuid.uuid5(domain.LEAD_NAMESPACE, f"{workspace_id}|enrich|{lead_id}")
        envelopes.append(
            replace(service.new_envelope(event, workspace_id=workspace_id), id=event_id, correlation_id=event_id)
        )
    await service.emit(conn, envelopes)
    return flipped


async def enrich_selected(service: Service, workspace_id: str, group_id: UUID, lead_ids: list[UUID]) -> Selection:
    """Enrich the selected leads of a group (each lead at most once, whatever the group's setting)."""
    wanted = list(dict.fromkeys(lead_ids))
    async with service.engine.begin() as conn:
        await source_group(conn, workspace_id, group_id)
        members = set(
            await conn.scalars(
                select(source_group_members.c.lead_id).where(
                    source_group_members.c.source_group_id == group_id,
                    source_group_members.c.workspace_id == workspace_id,
                    source_group_members.c.lead_id.in_(wanted),
                )
            )
        )
        requested = set(await _request(service, conn, workspace_id, group_id, sorted(members, key=str), "selected"))
    service.wake_relay()
    out = Selection()
    for lead_id in wanted:
        if lead_id not in members:
            out.not_members.append(lead_id)
        elif lead_id in requested:
            out.requested.append(lead_id)
        else:
            out.already.append(lead_id)
    return out


async def set_enrichment(service: Service, workspace_id: str, group_id: UUID, mode: domain.EnrichmentMode) -> int:
    """Change a group's enrichment setting; switching to automatic requests its waiting leads (in batches of
    :data:`REQUEST_BATCH`, one transaction each). Returns how many leads were requested."""
    async with service.engine.begin() as conn:
        await source_group(conn, workspace_id, group_id, lock=True)
        await conn.execute(
            update(source_groups).where(source_groups.c.source_group_id == group_id).values(enrichment=mode)
        )
    total = 0
    while mode == "automatic":
        async with service.engine.begin() as conn:
            m, lt = source_group_members, leads
            batch = list(
                await conn.scalars(
                    select(m.c.lead_id)
                    .select_from(m.join(lt, (lt.c.workspace_id == m.c.workspace_id) & (lt.c.lead_id == m.c.lead_id)))
                    .where(m.c.source_group_id == group_id, m.c.workspace_id == workspace_id)
                    .where(lt.c.enrichment == "pending")
                    .order_by(m.c.seq)
                    .limit(REQUEST_BATCH)
                )
            )
            if not batch:
                break
            total += len(await _request(service, conn, workspace_id, group_id, batch, "automatic"))
        service.wake_relay()
    return total


async def create_search(
    service: Service,
    settings: DiscoverySettings,
    wake: Callable[[], None],
    workspace_id: str,
    *,
    name: str,
    kind: str,
    criteria: dict[str, Any],
    target_count: int,
    schedule: Any | None,
    enrichment: str = "automatic",
    watch_minutes: int | None = None,
    watch: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> tuple[UUID, UUID, bool]:
    """Save a search (and its source group) and start it in the background: ``SearchStarted`` now; a posts
    search with ``watch_minutes`` keeps watching new posts.

    Returns (search id, source group id, created). The same request sent again with its
    ``idempotency_key`` returns the first one's search and starts nothing (created False).
    """
    search_id, group_id, started_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = service.clock.now()
    async with service.engine.begin() as conn:
        if idempotency_key is not None:
            request: dict[str, Any] = {
                "name": name,
                "kind": kind,
                "criteria": criteria,
                "target_count": target_count,
                "enrichment": enrichment,
            }
            if schedule is not None:
                request["schedule"] = schedule.model_dump(mode="json")
            if watch is not None:
                request["watch"] = watch
            earlier = await idempotency.claim(
                conn,
                idempotency_keys,
                workspace_id=workspace_id,
                operation="create_search",
                key=idempotency_key,
                fingerprint=idempotency.fingerprint(request),
                resource_id=str(search_id),
                now=now,
            )
            if earlier is not None:
                group = await conn.scalar(
                    select(searches.c.source_group_id).where(searches.c.search_id == UUID(earlier))
                )
                return UUID(earlier), UUID(str(group)), False
        await conn.execute(
            source_groups.insert().values(
                source_group_id=group_id,
                workspace_id=workspace_id,
                name=name,
                kind=kind,
                search_id=search_id,
                enrichment=enrichment,
                created_at=now,
            )
        )
        await conn.execute(
            searches.insert().values(
                search_id=search_id,
                workspace_id=workspace_id,
                source_group_id=group_id,
                name=name,
                kind=kind,
                criteria=criteria,
                target_count=target_count,
                recurring=schedule is not None,
                per_run=schedule.per_run if schedule else None,
                interval_minutes=(schedule.interval_minutes or settings.recurring_interval_minutes)
                if schedule
                else None,
                status="running",
                started_event_id=started_id,
                traceparent=current_traceparent(),
                created_at=now,
                updated_at=now,
            )
        )
        if watch_minutes is not None:
            await create_watch(conn, search_id, workspace_id, watch_minutes, now)
        event = SearchStarted(
            search_id=search_id,
            source_group_id=group_id,
            kind=kind,
            name=name,
            criteria=criteria,
            target_count=target_count,
        )
        await service.emit(
            conn,
            [
                search_envelope(
                    service,
                    event,
                    workspace_id=workspace_id,
                    search_id=search_id,
                    what="started",
                    started_id=started_id,
                )
            ],
        )
    service.wake_relay()
    wake()
    return search_id, group_id, True


async def cancel_search(service: Service, workspace_id: str, search_id: UUID) -> None:
    """Stop a running or scheduled search and its posts watch -> ``SearchFinished`` (reason cancelled).

    404 when the workspace has no such search; 409 when it already finished."""
    async with service.engine.begin() as conn:
        # Locked: the search worker holds the row while it runs a page (FOR UPDATE SKIP LOCKED), so a cancel waits
        # for that page to end instead of finishing a search the worker is still writing to.
        row = (
            await conn.execute(
                select(searches)
                .where(searches.c.search_id == search_id, searches.c.workspace_id == workspace_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            raise Problem(404, "not_found", f"search {search_id} not found")
        if row.status == "finished":
            raise Problem(409, "search_finished", f"search {search_id} already finished ({row.finish_reason})")
        now = service.clock.now()
        await stop_watch(conn, search_id, "search cancelled", now)
        await finish(service, conn, row, "cancelled", now)
    service.wake_relay()


async def add_manual(
    service: Service, workspace_id: str, lead: domain.LeadInput, source_group_id: UUID | None
) -> ManualAdd:
    """Add one person by hand to ``source_group_id`` (404 when the workspace has no such group), else to the
    workspace's "Manual" group (made on first use). A new person -> ``LeadDiscovered``; a known one is not
    re-emitted (only ``LeadAddedToSourceGroup`` when new to the group)."""
    now = service.clock.now()
    full, first, last = domain.split_name(lead.full_name, lead.first_name, lead.last_name)
    lead = replace(lead, full_name=full, first_name=first, last_name=last)
    # The Manual group's id is derived from the workspace, so every replica finds (or makes) the same one.
    group_id = (
        source_group_id
        if source_group_id is not None
        else uuid.uuid5(domain.LEAD_NAMESPACE, f"{workspace_id}|manual-group")
    )
    async with service.engine.begin() as conn:
        if source_group_id is not None:
            await source_group(conn, workspace_id, source_group_id)
        await conn.execute(
            insert(source_groups)
            .values(source_group_id=group_id, workspace_id=workspace_id, name="Manual", kind="manual", created_at=now)
            .on_conflict_do_nothing()
        )
        enrichment = await group_enrichment(conn, group_id)
        added = await add_lead(
            conn,
            workspace_id,
            lead,
            source=LeadSource.manual.value,
            source_group_id=group_id,
            search_id=None,
            fit_signals=[],
            now=now,
            enrichment=enrichment,
        )
        events = lead_events(
            added, lead, LeadSource.manual, search_id=None, source_group_id=group_id, fit=[], enrichment=enrichment
        )
        await service.emit(conn, [service.new_envelope(event, workspace_id=workspace_id) for _, event in events])
    service.wake_relay()
    return ManualAdd(added.lead_id, group_id, added.new_lead)
