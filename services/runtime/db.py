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

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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
    event,
    func,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

T = TypeVar("T")


CHECK_IDLE_S = 1.0
"""A pooled connection idle this long is checked before it is used again (:func:`check_when_idle`)."""


def create_engine(
    url: str,
    *,
    pool_size: int = 5,
    reads: bool = False,
    command_timeout_s: float | None = None,
    check_idle_s: float = CHECK_IDLE_S,
) -> AsyncEngine:
    """An async engine for ``url`` (``postgresql+asyncpg://...``); a connection that sat idle in the pool for
    ``check_idle_s`` is checked before use (:func:`check_when_idle`), except a read engine's.

    ``reads=True``: an engine for HTTP reads through :func:`read`, one round trip per statement. Its
    connections are not checked at checkout (the check, ``BEGIN; ; ROLLBACK`` on asyncpg, was three round
    trips before every read; :func:`read` replaces a connection found dead instead) and run in autocommit
    (no ``BEGIN`` before the first statement, no ``ROLLBACK`` at its return to the pool). Under the default
    READ COMMITTED a transaction gives each statement a snapshot of its own anyway, so a read of several
    statements is no less consistent without one; nothing may write through this engine.

    ``command_timeout_s``: the longest a statement may wait for its answer (asyncpg's ``command_timeout``; by
    default it waits for ever, also for the answer to a cancel request on a half-open connection, so a cancelled
    transaction could not even be returned to the pool).
    """
    connect_args = {} if command_timeout_s is None else {"command_timeout": command_timeout_s}
    mode: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if reads else {}
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=5, connect_args=connect_args, **mode)
    if not reads:
        check_when_idle(engine, check_idle_s)
    return engine


def check_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Check a pooled connection at checkout when it sat in the pool for ``idle_s`` or longer; one found dead is
    replaced before the caller gets it (SQLAlchemy's pessimistic disconnect handling).

    SQLAlchemy's ``pool_pre_ping`` checks every checkout, which on asyncpg is three round trips (``BEGIN; ;
    ROLLBACK``) before every transaction: a consumer's transaction per event paid them each time (at 1,000
    events a second, 7 % of outreach's samples were that check). A connection back in the pool a moment ago was
    alive then; a server that went away in that moment fails the statement instead, which is what a check
    cannot rule out either (the server may go between the check and the statement): the consumers, the relay and
    the timers retry such a failure by its cause, and the pool replaces every connection older than the one
    found dead."""

    @event.listens_for(engine.sync_engine, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return  # new, or used a moment ago
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool discards the connection and checks out another (a new one, if every pooled one is dead).
            raise sa_exc.DisconnectionError(f"a pooled connection idle for {idle_s:g} s or more is gone") from exc


async def read(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``await work(conn)`` on a connection of ``engine`` (made with ``reads=True``); once more on a fresh
    connection when the first is found dead (the server restarted or ended it while it sat in the pool).

    A dead connection is what SQLAlchemy flags ``connection_invalidated`` (its dialect's disconnect check;
    :func:`services.runtime.faults.classify` makes it TRANSIENT): it invalidates the pool's older connections
    with it, so the second attempt connects anew. Only a read may be retried so: ``work`` must not write.
    Any other error, and a second dead connection (the database is down), is raised.
    """
    try:
        async with engine.connect() as conn:
            return await work(conn)
    except sa_exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    async with engine.connect() as conn:
        return await work(conn)


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
