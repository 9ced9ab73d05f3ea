"""The projection's stored offsets belong to one Kafka cluster: against another cluster it applies nothing."""

from __future__ import annotations

import json

import asyncpg
import httpx

from services.projection.app import build
from services.projection.checksum import dsn
from services.projection.store import CLUSTER_KEY
from services.projection.workload import generate
from services.runtime.kafka import cluster_id
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.support.kafka import wait_for

from .helpers import produce_all


async def stored_cluster(database_url: str) -> str | None:
    conn = await asyncpg.connect(dsn(database_url))
    try:
        value = await conn.fetchval("SELECT value FROM projection.replay_info WHERE key = $1", CLUSTER_KEY)
        return None if value is None else str(json.loads(value))
    finally:
        await conn.close()


async def test_views_of_another_cluster_stay_untouched_and_not_ready(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    settings = isolated.settings()
    first = build(settings)
    await start_service(first)
    current = await cluster_id(settings)
    # The first start records which cluster the (still empty) stored offsets belong to.
    await wait_for(lambda: stored_cluster(settings.database_url), timeout_s=30, what="the recorded cluster id")
    assert await stored_cluster(settings.database_url) == current
    await first.stop()

    # As if the database had been restored next to another broker with the same topic names.
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        await conn.execute(
            "UPDATE projection.replay_info SET value = $2::jsonb WHERE key = $1", CLUSTER_KEY, json.dumps("elsewhere")
        )
    finally:
        await conn.close()
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, generate(leads=5, campaigns=1).envelopes)

    second = build(settings)
    consumer = second.app.state.projection
    await start_service(second)
    await wait_for(lambda: consumer.blocked, timeout_s=30, what="the projection refusing the other cluster")
    assert "belong to Kafka cluster elsewhere" in consumer.blocked and current in consumer.blocked
    assert consumer.applied == 0  # it never consumed: nothing was applied from the wrong offsets
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second.app), base_url="http://t") as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503 and "leadstream replay --from-beginning" in ready.json()["detail"]
