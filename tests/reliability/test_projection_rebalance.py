"""Two projection replicas in one group: one joins mid-stream, then leaves mid-stream.

Partitions move twice while batches are in flight; the views must still equal a clean rebuild:
no row lost, none doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncpg

from services.projection.checksum import dsn, views_checksum
from services.projection.consumer import ProjectionConsumer
from services.projection.replay import rebuild
from services.projection.store import SCHEMA, views
from services.projection.workload import generate
from services.runtime.debug import task_stacks
from services.runtime.migrations import upgrade
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.support.kafka import wait_for

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "projection" / "migrations"


async def test_rebalance_between_two_replicas_neither_loses_nor_doubles(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    log = generate(leads=60, campaigns=3, seed=23)
    half = len(log.envelopes) // 2
    settings = isolated.settings(projection_batch_max_records=5)  # the default session timeout: a loaded machine
    # starved 6 s heartbeats (rebalances without end, 'Heartbeat session expired'), which is load, not a finding
    await upgrade(MIGRATIONS, settings.database_url, SCHEMA)
    conn = await asyncpg.connect(dsn(settings.database_url))
    first, second = ProjectionConsumer(settings, views, None), ProjectionConsumer(settings, views, None)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def seen() -> int:
        return int(await conn.fetchval("SELECT count(*) FROM projection.seen_events"))

    try:
        await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log.envelopes[:half])
        tasks.append(asyncio.create_task(first.run(stop_first)))
        await wait_for(lambda: first.applied >= 20, timeout_s=60, what="the first replica to make progress")
        tasks.append(asyncio.create_task(second.run(stop_second)))
        await wait_for(
            lambda: second.consumer is not None and second.assigned_once and second.consumer.assignment(),
            timeout_s=60,
            what="the second replica to take partitions",
        )
        await wait_for(
            lambda: first.consumer is not None and 0 < len(first.consumer.assignment()) < 12,
            timeout_s=60,
            what="the partitions split between the replicas",
        )
        await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log.envelopes[half:])
        await wait_for(lambda: second.applied > 40, timeout_s=60, what="the second replica to work on the stream")
        assert await seen() < len(log.envelopes), "the second replica should leave mid-stream"
        stop_second.set()  # leaves the group with batches of its partitions unapplied
        await asyncio.wait_for(tasks[1], timeout=30)
        await wait_for(
            lambda: first.consumer is not None and len(first.consumer.assignment()) == 12,
            timeout_s=60,
            what="all partitions back on the first replica",
        )

        async def complete() -> bool:
            return await seen() >= len(log.envelopes)

        try:
            await wait_for(complete, timeout_s=240, what="every event applied")
        except AssertionError as stalled:
            raise AssertionError(f"{stalled}\nfirst: {first.not_ready()}, lag {first.lag()}\n{task_stacks()}") from None
        # Each event counted once across both replicas: re-delivered records were fenced or deduplicated.
        await wait_for(
            lambda: first.applied + second.applied >= len(log.envelopes), timeout_s=30, what="the last batch reported"
        )
        assert first.applied + second.applied == len(log.envelopes)
        # Partitions moved twice under the first replica (the second joined, then left), through its listener.
        assert first.revocations >= 2
        assert await seen() == len(log.envelopes)
        report = await rebuild(settings, "clean")
        assert report.applied == len(log.envelopes)
        live, clean = await views_checksum(conn, SCHEMA), await views_checksum(conn, "projection_clean")
        assert live.tables == clean.tables
    finally:
        stop_first.set()
        stop_second.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
        await conn.close()
