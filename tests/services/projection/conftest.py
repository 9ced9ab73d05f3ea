"""Fixtures for the projection tests: fresh view schemas in the session database and an asyncpg connection."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from services.projection.checksum import dsn
from services.projection.store import Views, views_for
from services.runtime.migrations import upgrade

MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "projection" / "migrations"


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the session database."""
    conn = await asyncpg.connect(dsn(database_url))
    yield conn
    await conn.close()


@pytest.fixture
def new_schema(database_url: str) -> Callable[[], Awaitable[Views]]:
    """``await new_schema()`` -> the views of a freshly migrated, uniquely named projection schema."""

    async def make() -> Views:
        schema = f"projection_t{uuid.uuid4().hex[:10]}"
        await upgrade(MIGRATIONS, database_url, schema)
        return views_for(schema)

    return make
