"""The write engine's connection check (services/runtime/db.py): a connection used a moment ago goes back to work
without one (a consumer's transaction per event paid three round trips for it), one that sat idle is checked, and
one found dead is replaced before the caller gets it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.db import create_engine
from tests.support.infra import plain_dsn
from tests.support.kafka import wait_for


def sent_by(engine: AsyncEngine) -> list[str]:
    """Every statement ``engine``'s connections send (asyncpg's query logger: also the check's ``;``)."""
    sent: list[str] = []

    @event.listens_for(engine.sync_engine, "connect")
    def connected(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.driver_connection.add_query_logger(lambda q: sent.append(q.query))

    return sent


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_dsn(database_url))
    yield conn
    await conn.close()


async def one_transaction(engine: AsyncEngine) -> int:
    """A write transaction's worth of work; the server pid that did it."""
    async with engine.begin() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_used_a_moment_ago_is_not_checked(database_url: str) -> None:
    engine = create_engine(database_url, check_idle_s=3600)
    sent = sent_by(engine)
    try:
        pid = await one_transaction(engine)
        sent.clear()
        assert await one_transaction(engine) == pid  # the pooled connection again
        assert ";" not in sent and sent.count("BEGIN;") <= 1, sent
    finally:
        await engine.dispose()


async def test_an_idle_connection_is_checked_and_a_dead_one_replaced(
    database_url: str, admin: asyncpg.Connection
) -> None:
    engine = create_engine(database_url, check_idle_s=0)  # every connection back in the pool counts as idle
    sent = sent_by(engine)
    try:
        pid = await one_transaction(engine)
        sent.clear()
        assert await one_transaction(engine) == pid
        assert ";" in sent, sent  # checked

        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)  # an operator, a restart, a timeout

        async def gone() -> bool:
            return not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)

        await wait_for(gone, timeout_s=30, what="the terminated backend to exit")
        assert await one_transaction(engine) != pid  # replaced at checkout: the transaction never saw it
    finally:
        await engine.dispose()
