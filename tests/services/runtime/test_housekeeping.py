"""Retention of the dedupe tables on the real database, driven by an injected clock: ids older than the retention
go (in batches, one replica at a time), newer ones stay, and the running service sweeps its own schema."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from services.outreach.store import seen_webhooks
from services.runtime import housekeeping
from services.runtime.clock import FakeClock
from services.runtime.housekeeping import Housekeeping
from tests.services.outreach.support import MakeSettings, StartService, start_outreach

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


async def test_old_ids_go_and_recent_ones_stay(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    service, settings = o.service, o.settings
    # The service sweeps its own schema, seen_webhooks included, with the configured retentions.
    assert service.housekeeping.seen_tables == [seen_webhooks]
    assert service.housekeeping.processed_events_retention == timedelta(days=settings.processed_events_retention_days)
    assert service.housekeeping.seen_webhooks_retention == timedelta(days=7)
    assert settings.processed_events_retention_days == 30 and settings.housekeeping_interval_s == 3600

    now = datetime.now(UTC)
    processed = service.tables.processed_events
    marker = uuid.uuid4().hex[:8]
    old_ids = [uuid.uuid4() for _ in range(7)]
    new_ids = [uuid.uuid4() for _ in range(3)]
    async with service.engine.begin() as conn:
        for i, event_id in enumerate(old_ids):
            at = now - timedelta(days=31, minutes=i)
            await conn.execute(insert(processed).values(event_id=event_id, event_type=marker, processed_at=at))
        for event_id in new_ids:
            at = now - timedelta(days=29)
            await conn.execute(insert(processed).values(event_id=event_id, event_type=marker, processed_at=at))
        await conn.execute(
            insert(seen_webhooks).values(
                [
                    {"msg_id": f"{marker}-old", "received_at": now - timedelta(days=8)},
                    {"msg_id": f"{marker}-new", "received_at": now - timedelta(days=6)},
                ]
            )
        )

    async def left() -> tuple[set[uuid.UUID], set[str]]:
        async with service.engine.connect() as conn:
            ids = set(await conn.scalars(select(processed.c.event_id).where(processed.c.event_type == marker)))
            seen = set(
                await conn.scalars(select(seen_webhooks.c.msg_id).where(seen_webhooks.c.msg_id.like(f"{marker}%")))
            )
        return ids, seen

    clock = FakeClock(now)
    sweep = Housekeeping(
        service.engine,
        service.tables,
        schema=settings.db_schema,
        processed_events_retention=timedelta(days=30),
        seen_webhooks_retention=timedelta(days=7),
        interval_s=3600,
        seen_tables=[seen_webhooks],
        clock=clock,
    )
    await sweep.sweep()
    assert await left() == (set(new_ids), {f"{marker}-new"})
    # Two days later the next ones are past their retention too.
    clock.advance(timedelta(days=2))
    await sweep.sweep()
    assert await left() == (set(), set())


async def test_batches_and_one_sweeper_per_schema(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    service = o.service
    processed = service.tables.processed_events
    marker = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    async with service.engine.begin() as conn:
        await conn.execute(
            insert(processed).values(
                [
                    {"event_id": uuid.uuid4(), "event_type": marker, "processed_at": now - timedelta(days=40)}
                    for _ in range(25)
                ]
            )
        )
    sweep = Housekeeping(
        service.engine,
        service.tables,
        schema=o.settings.db_schema,
        processed_events_retention=timedelta(days=30),
        seen_webhooks_retention=timedelta(days=7),
        interval_s=3600,
        clock=FakeClock(now),
    )

    async def count() -> int:
        async with service.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).where(processed.c.event_type == marker)) or 0)

    # While another replica holds the schema's sweep lock, this one deletes nothing.
    async with service.engine.connect() as holder:
        await holder.scalar(select(func.pg_advisory_xact_lock(sweep.lock_key)))
        assert (await sweep.sweep()).processed_events == 0
        assert await count() == 25
        await holder.rollback()
    # Small batches: every old row goes, in several transactions.
    batches: list[int] = []
    real = sweep._processed_batch

    async def counted(conn: Any, cut: datetime) -> int:
        batches.append(n := await real(conn, cut))
        return n

    monkeypatch.setattr(housekeeping, "BATCH", 4)
    monkeypatch.setattr(sweep, "_processed_batch", counted)
    await sweep.sweep()
    assert await count() == 0
    assert len(batches) >= 7 and max(batches) == 4


async def test_the_loop_sweeps_until_stopped(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    service = o.service
    processed = service.tables.processed_events
    marker = uuid.uuid4().hex[:8]
    async with service.engine.begin() as conn:
        await conn.execute(
            insert(processed).values(
                event_id=uuid.uuid4(), event_type=marker, processed_at=datetime.now(UTC) - timedelta(days=60)
            )
        )
    sweep = Housekeeping(
        service.engine,
        service.tables,
        schema=o.settings.db_schema,
        processed_events_retention=timedelta(days=30),
        seen_webhooks_retention=timedelta(days=7),
        interval_s=3600,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sweep.run(stop))

    async def gone() -> bool:
        async with service.engine.connect() as conn:
            return await conn.scalar(select(func.count()).where(processed.c.event_type == marker)) == 0

    from tests.support.kafka import wait_for

    await wait_for(gone, timeout_s=30, what="the loop's first sweep")
    stop.set()
    await asyncio.wait_for(task, timeout=10)  # it stops at once, not after its hour
    assert sweep.healthy


def test_a_service_that_handles_no_events_runs_no_sweep_of_a_table_it_does_not_have() -> None:
    """The console's schema has no processed_events (it consumes nothing): its sweep failed every time, a warning
    at each retry, for as long as it ran."""
    from services.console.app import build as console
    from services.webhooks.app import build as webhooks

    quiet = console()
    assert not quiet.uses_kafka and quiet.housekeeping.run not in quiet.tasks
    assert not quiet.housekeeping.processed_events
    busy = webhooks()  # handles events, and keeps a seen_webhooks table
    assert busy.housekeeping.run in busy.tasks and busy.housekeeping.processed_events
