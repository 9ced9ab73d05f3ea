"""An isolated world per test: a fresh database and a fresh topic prefix (the views are global per database).

Import the fixture into a test module (``from tests.services.projection.fixtures import isolated``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.engine import make_url

from services.projection.checksum import dsn
from services.projection.settings import ProjectionSettings
from services.runtime.kafka import all_topics, apply_topics
from tests.support.infra import Infra, drop_database
from tests.support.personal import register

PARTITIONS = 3

StartService = Callable[[Any], Awaitable[Any]]
"""The ``start_service`` fixture of tests/conftest.py."""


@dataclass
class Isolated:
    """Where one test's projection lives: its database and its topics."""

    kafka: str
    database_url: str
    prefix: str

    def settings(self, **overrides: Any) -> ProjectionSettings:
        """Projection settings on this test's database and topics."""
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.kafka,
            "database_url": self.database_url,
            "topic_prefix": self.prefix,
            "topic_partitions": PARTITIONS,
            "consumer_backoff_initial_s": 0.05,
            "consumer_backoff_max_s": 0.5,
            "projection_resync_interval_s": 0.2,
            "log_json": False,
        }
        values.update(overrides)
        return ProjectionSettings(**values)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """Environment for processes (services, the CLI) working on this test's database and topics."""
        return {
            **base,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "DATABASE_URL": self.database_url,
            "LEADSTREAM_TOPIC_PREFIX": self.prefix,
            "LEADSTREAM_TOPIC_PARTITIONS": str(PARTITIONS),
        }


@pytest.fixture
async def isolated(infra: Infra) -> AsyncIterator[Isolated]:
    """A fresh database and topic prefix (with every contract topic created), removed afterwards."""
    name = f"leadstream_proj_{uuid.uuid4().hex[:10]}"
    admin_dsn = dsn(infra.database_url)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    world = Isolated(
        kafka=infra.kafka_bootstrap_servers,
        database_url=make_url(infra.database_url).set(database=name).render_as_string(hide_password=False),
        prefix=f"p{uuid.uuid4().hex[:8]}.",
    )
    register(world.database_url)
    settings = world.settings()
    await apply_topics(settings, partitions=PARTITIONS)
    yield world
    await drop_database(admin_dsn, name)
    admin = AIOKafkaAdminClient(bootstrap_servers=world.kafka)
    with contextlib.suppress(Exception):
        await admin.start()
        await admin.delete_topics([n for n, _, _ in all_topics(settings)])
    with contextlib.suppress(Exception):
        await admin.close()
