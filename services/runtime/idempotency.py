"""Idempotency keys for create-like commands (``Idempotency-Key`` header): a retried or doubled request makes
its resource once.

A command that accepts a key records ``(workspace, operation, key)`` with a fingerprint of the request and
the id of what it made, in the transaction that makes it. A second request with the same key finds the
row and answers with the first one's resource instead of making another; while the first transaction is
still open, the second waits on the row's unique index and then sees it. A key reused for a different
request (another body) is refused with a 422 naming the header. A request that failed recorded nothing,
so its key may be used again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import Header
from sqlalchemy import Column, DateTime, MetaData, PrimaryKeyConstraint, Table, Text, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .errors import Problem

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="A client-chosen key (printable ASCII, at most 200 characters): the same request sent again "
        "with the same key answers with what the first one made instead of doing it twice.",
    ),
]
"""The header as a FastAPI parameter type."""


def idempotency_table(metadata: MetaData) -> Table:
    """A service's table of idempotency keys already used (``metadata`` is the service's schema)."""
    return Table(
        "idempotency_keys",
        metadata,
        Column("workspace_id", Text, nullable=False),
        Column("operation", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("fingerprint", Text, nullable=False),
        Column("resource_id", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("workspace_id", "operation", "key"),
    )


def fingerprint(*parts: Any) -> str:
    """A digest of a request (its path ids and body as JSON data): the same request gives the same digest."""
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def claim(
    conn: AsyncConnection,
    table: Table,
    *,
    workspace_id: str,
    operation: str,
    key: str,
    fingerprint: str,
    resource_id: str,
    now: datetime,
) -> str | None:
    """Record ``key`` for ``resource_id`` in the caller's transaction.

    Returns None when this request is the first with the key (go on and make the resource), else the
    resource id the first request recorded (answer with it, make nothing). A key first used for another
    request is a 422 problem naming the ``Idempotency-Key`` header.
    """
    inserted = await conn.execute(
        insert(table)
        .values(
            workspace_id=workspace_id,
            operation=operation,
            key=key,
            fingerprint=fingerprint,
            resource_id=resource_id,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    if inserted.rowcount:
        return None
    row = (
        await conn.execute(
            select(table.c.fingerprint, table.c.resource_id).where(
                table.c.workspace_id == workspace_id, table.c.operation == operation, table.c.key == key
            )
        )
    ).one()
    if row.fingerprint != fingerprint:
        message = f"this key was already used for a different {operation.replace('_', ' ')} request: use a new key"
        raise Problem(
            422,
            "idempotency_key_reused",
            f"{HEADER}: {message}",
            field=HEADER,
            errors=[{"field": HEADER, "message": message}],
        )
    return str(row.resource_id)
