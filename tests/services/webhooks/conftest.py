"""Every webhooks test starts and ends with no subscription in the database: the session shares one database, and
a test's worker would otherwise keep delivering (and counting failures, and disabling endpoints) for another test's
endpoints; among them those the end-to-end tests made through their webhooks process (tests/e2e), whose events
the session's topics still hold after that process stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest


async def _delete_subscriptions(database_url: str) -> None:
    """Delete every subscription with its queue and log (nothing when the schema is not there yet)."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        if await conn.fetchval("SELECT to_regclass('webhooks.subscriptions') IS NOT NULL"):
            await conn.execute("DELETE FROM webhooks.subscriptions")
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
async def no_leftover_subscriptions(database_url: str) -> AsyncIterator[None]:
    """Before the test (another file's, e.g. tests/e2e's, may be left) and after it, once its services stopped."""
    await _delete_subscriptions(database_url)
    yield
    await _delete_subscriptions(database_url)
