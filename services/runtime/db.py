"""Database access: the async engine, and the tables every service has (processed events, outbox).

Each service owns one Postgres schema (named after the service). Its handler transactions write its
own state, the id of the event they processed and the events they emit, together.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """An async engine for ``url`` (``postgresql+asyncpg://...``); connections are checked before use."""
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return create_async_engine(url, pool_size=pool_size, max_overflow=5, pool_pre_ping=True)


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database does not answer."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


class RuntimeTables:
    """The runtime's tables inside one service schema: ``processed_events`` and ``outbox``."""

    def __init__(self, metadata: MetaData) -> None:
        self.processed_events = Table(
            "processed_events",
            metadata,
            Column("event_id", UUID(as_uuid=True), primary_key=True),
            Column("event_type", Text, nullable=False),
            Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        )
        self.outbox = Table(
            "outbox",
            metadata,
            Column("id", BigInteger, Identity(always=True), primary_key=True),
            Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
            Column("topic", Text, nullable=False),
            Column("key", LargeBinary, nullable=False),
            Column("value", LargeBinary, nullable=False),
            Column("headers", JSONB, nullable=False),
            Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        )


def service_metadata(schema: str) -> tuple[MetaData, RuntimeTables]:
    """A MetaData bound to a service's schema, with the runtime tables already in it."""
    metadata = MetaData(schema=schema)
    return metadata, RuntimeTables(metadata)
