"""Discovery's write commands that the routes call (one transaction each)."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from leadstream_schemas import SearchStarted
from sqlalchemy import select

from services.runtime import idempotency
from services.runtime.service import Service

from .handlers import SearchRunner, search_envelope
from .settings import DiscoverySettings
from .store import idempotency_keys, searches, source_groups


async def create_search(
    service: Service,
    settings: DiscoverySettings,
    runner: SearchRunner,
    workspace_id: str,
    *,
    name: str,
    kind: str,
    criteria: dict[str, Any],
    target_count: int,
    schedule: Any | None,
    idempotency_key: str | None = None,
) -> tuple[UUID, UUID, bool]:
    """Save a search (and its source group) and start it in the background: ``SearchStarted`` now.

    Returns (search id, source group id, created). The same request sent again with its
    ``idempotency_key`` returns the first one's search and starts nothing (created False).
    """
    search_id, group_id, started_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = service.clock.now()
    async with service.engine.begin() as conn:
        if idempotency_key is not None:
            request = {"name": name, "kind": kind, "criteria": criteria, "target_count": target_count}
            if schedule is not None:
                request["schedule"] = schedule.model_dump(mode="json")
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
                created_at=now,
                updated_at=now,
            )
        )
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
    runner.wake()
    return search_id, group_id, True
