"""Workspace API tokens: stored as SHA-256 hashes in the shared ``identity`` schema.

Every HTTP request names its workspace only through its bearer token. A token is shown once, when
created; the database keeps its hash. Objects of another workspace answer 404, never 403, so their
existence does not leak.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Column, DateTime, MetaData, Table, Text, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from .errors import Problem

IDENTITY_SCHEMA = "identity"
MIGRATIONS_DIR = Path(__file__).parent / "identity_migrations"

identity_metadata = MetaData(schema=IDENTITY_SCHEMA)
api_tokens = Table(
    "api_tokens",
    identity_metadata,
    Column("token_hash", Text, primary_key=True),
    Column("workspace_id", Text, nullable=False, index=True),
    Column("label", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(engine: AsyncEngine, workspace_id: str, label: str = "", token: str | None = None) -> str:
    """Create a token for a workspace and return it in clear (the only time it is seen)."""
    token = token or "ls_" + secrets.token_urlsafe(24)
    async with engine.begin() as conn:
        await conn.execute(
            insert(api_tokens)
            .values(token_hash=hash_token(token), workspace_id=workspace_id, label=label)
            .on_conflict_do_nothing()
        )
    return token


class TokenResolver:
    """Resolves bearer tokens to workspaces, with a short cache so each request is not a query."""

    def __init__(self, engine: AsyncEngine, ttl_s: float = 30.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[str, float]] = {}

    async def workspace_for(self, token: str) -> str | None:
        h = hash_token(token)
        hit = self._cache.get(h)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        async with self.engine.connect() as conn:
            ws = await conn.scalar(select(api_tokens.c.workspace_id).where(api_tokens.c.token_hash == h))
        if ws is not None:
            self._cache[h] = (ws, time.monotonic() + self.ttl_s)
        return ws


_bearer = HTTPBearer(auto_error=False)


async def workspace_id(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """FastAPI dependency: the workspace of the request's bearer token, or a 401 problem."""
    if creds is None or not creds.credentials:
        raise Problem(401, "unauthenticated", "missing bearer token: send 'Authorization: Bearer <token>'")
    resolver: TokenResolver = request.app.state.tokens
    ws = await resolver.workspace_for(creds.credentials)
    if ws is None:
        raise Problem(401, "invalid_token", "the bearer token is not valid")
    return ws
