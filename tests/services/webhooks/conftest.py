"""Every webhooks test leaves no subscription behind: the session shares one database, and a later test's
worker would otherwise keep delivering (and counting failures) for an earlier test's endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest


@pytest.fixture(autouse=True)
async def no_leftover_subscriptions(database_url: str) -> AsyncIterator[None]:
    """After the test (and its services) stopped, delete every subscription with its queue and log."""
    yield
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        if await conn.fetchval("SELECT to_regclass('webhooks.subscriptions') IS NOT NULL"):
            await conn.execute("DELETE FROM webhooks.subscriptions")
    finally:
        await conn.close()
