"""The demo adopts views left by another Kafka cluster (a wiped local broker) instead of failing not-ready."""

from __future__ import annotations

import json

import asyncpg

from leadstream_cli.demo import views_from_this_cluster
from services.projection.checksum import dsn, schema_exists
from services.projection.replay import MIGRATIONS, replay_info
from services.projection.store import CLUSTER_KEY, SCHEMA
from services.runtime.kafka import cluster_id
from services.runtime.migrations import upgrade
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture


async def test_views_of_another_cluster_are_rebuilt_from_this_one_and_views_of_this_one_are_kept(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    settings = isolated.settings()
    await upgrade(MIGRATIONS, settings.database_url, SCHEMA)
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        await conn.execute(
            f'INSERT INTO "{SCHEMA}".replay_info (key, value) VALUES ($1, $2::jsonb)',
            CLUSTER_KEY,
            json.dumps("a-cluster-that-is-gone"),
        )
        name = await views_from_this_cluster(settings)
        assert name is not None
        current = await cluster_id(settings)
        assert (await replay_info(conn, SCHEMA))[CLUSTER_KEY] == current
        assert (await replay_info(conn, SCHEMA))["status"] == "promoted"
        retired = await conn.fetchval("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'projection\\_retired\\_%'")
        assert retired is not None and await schema_exists(conn, retired)
        # Views of this cluster are left alone.
        assert await views_from_this_cluster(settings) is None
    finally:
        await conn.close()
