"""Database access: the async engine, and the tables every service has (processed events, outbox,
parked outbox rows).

Each service owns one Postgres schema (named after the service). Its handler transactions write its
own state, the id of the event they processed and the events they emit, together.

``processed_events`` and ``outbox`` are created by each service's first migration
(:func:`services.runtime.migrations.create_runtime_tables`). Tables added since (``outbox_parked``) belong
to the runtime's own migration line (``services/runtime/runtime_migrations``), applied to every service
schema: they live in a MetaData of their own, so a service migration that creates its whole MetaData
(the projection's) does not create them too.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
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
    """The runtime's tables inside one service schema: ``processed_events``, ``outbox`` and ``outbox_parked``."""

    def __init__(self, metadata: MetaData) -> None:
        self.runtime_metadata = MetaData(schema=metadata.schema)
        """The tables of the runtime's own migration line (see the module docstring)."""
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
        # A row the broker refused for what it is (too large, invalid): moved here by the relay with the
        # error, so the rows behind it go on. ``leadstream outbox retry`` moves it back, ``drop`` deletes it.
        self.outbox_parked = Table(
            "outbox_parked",
            self.runtime_metadata,
            Column("id", BigInteger, Identity(always=True), primary_key=True),
            Column("outbox_id", BigInteger, nullable=False, comment="The row's id in the outbox when it was parked."),
            Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
            Column("topic", Text, nullable=False),
            Column("key", LargeBinary, nullable=False),
            Column("value", LargeBinary, nullable=False),
            Column("headers", JSONB, nullable=False),
            Column("size", Integer, nullable=False, comment="Estimated record size in bytes (key, value, headers)."),
            Column("error", Text, nullable=False, comment="The refusal's class, e.g. MessageSizeTooLargeError."),
            Column("error_message", Text, nullable=False),
            Column("created_at", DateTime(timezone=True), nullable=False, comment="When the event was written."),
            Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        )


def service_metadata(schema: str) -> tuple[MetaData, RuntimeTables]:
    """A MetaData bound to a service's schema, with the runtime tables already in it."""
    metadata = MetaData(schema=schema)
    return metadata, RuntimeTables(metadata)
