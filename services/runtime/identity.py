"""Workspace API tokens, the store: scoped, expiring, revocable; stored as SHA-256 hashes in the shared ``identity``
schema. Its tables (the tokens, the workspaces' plans), its migrations, and issuing, listing, revoking and resolving
tokens, with the failed-attempt limiter.

What the HTTP services need on top (FastAPI's bearer dependency, the scope declarations of the routes) is
:mod:`services.runtime.auth`, which re-exports this module; the CLI's ``tokens`` and ``migrate`` commands import
this one alone, so they start without FastAPI.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy import (
    ARRAY,
    Column,
    DateTime,
    MetaData,
    Table,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from .clock import Clock, SystemClock

IDENTITY_SCHEMA = "identity"
MIGRATIONS_DIR = Path(__file__).parent / "identity_migrations"

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
"""The scopes, lowest first: each includes the ones before it."""

PUBLIC_EXTENSION = "x-leadstream-public"
"""OpenAPI extension a route without a bearer token carries, saying what authenticates it instead."""

identity_metadata = MetaData(schema=IDENTITY_SCHEMA)
api_tokens = Table(
    "api_tokens",
    identity_metadata,
    Column("token_hash", Text, primary_key=True),
    Column("workspace_id", Text, nullable=False, index=True),
    Column("label", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("token_id", UUID(as_uuid=True), nullable=False, unique=True, server_default=text("gen_random_uuid()")),
    Column("scopes", ARRAY(Text), nullable=False, server_default=text("'{read,write,admin}'")),
    Column("prefix", Text, nullable=False, server_default=""),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

workspace_plans = Table(
    "workspace_plans",
    identity_metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("plan", Text, nullable=False),
    Column("add_ons", JSONB, nullable=False, server_default="[]"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
"""A workspace's plan and add-ons (no row: the default plan); read and written by :mod:`.plans`."""


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_scopes(scopes: Iterable[str]) -> list[Scope]:
    """Scopes as stored: each one given and every lower one, lowest first (``admin`` -> read, write, admin)."""
    given = set(scopes)
    unknown = given - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {sorted(unknown)}; one of {', '.join(SCOPES)}")
    top = max((SCOPES.index(s) for s in given), default=-1)
    return list(SCOPES[: top + 1])


def grants(held: Sequence[str], needed: Scope) -> bool:
    """True when a token holding ``held`` may do what needs ``needed``."""
    return any(s in SCOPES and SCOPES.index(s) >= SCOPES.index(needed) for s in held)


@dataclass(frozen=True)
class TokenInfo:
    """A token as lists show it (never the token itself)."""

    token_id: uuid.UUID
    workspace_id: str
    label: str
    scopes: list[Scope]
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``token`` is its only appearance in clear."""

    token: str
    info: TokenInfo


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        token_id=row.token_id,
        workspace_id=row.workspace_id,
        label=row.label,
        scopes=[s for s in SCOPES if s in row.scopes],
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


async def issue_token(
    engine: AsyncEngine,
    workspace_id: str,
    *,
    scopes: Iterable[str],
    label: str = "",
    expires_at: datetime | None = None,
    token: str | None = None,
) -> NewToken:
    """Create a token for a workspace with ``scopes`` (each implies the lower ones) and return it in clear."""
    token = token or "ls_" + secrets.token_urlsafe(24)
    values = {
        "token_hash": hash_token(token),
        "workspace_id": workspace_id,
        "label": label,
        "token_id": uuid.uuid4(),
        "scopes": normalise_scopes(scopes),
        "prefix": token[:7],
        "expires_at": expires_at,
    }
    async with engine.begin() as conn:
        await conn.execute(insert(api_tokens).values(**values).on_conflict_do_nothing())
        row = (await conn.execute(select(api_tokens).where(api_tokens.c.token_hash == values["token_hash"]))).one()
    return NewToken(token, _info(row))


async def create_token(
    engine: AsyncEngine,
    workspace_id: str,
    label: str = "",
    token: str | None = None,
    *,
    scopes: Iterable[str] = ("admin",),
    expires_at: datetime | None = None,
) -> str:
    """Create a token (all scopes unless ``scopes`` says otherwise) and return it in clear: the demo and tests."""
    made = await issue_token(engine, workspace_id, scopes=scopes, label=label, expires_at=expires_at, token=token)
    return made.token


async def list_tokens(
    engine: AsyncEngine,
    workspace_id: str,
    *,
    include_revoked: bool = False,
    after: uuid.UUID | None = None,
    limit: int = 200,
) -> list[TokenInfo]:
    """The workspace's tokens, by id (keyset: ``after`` the last id of the previous page)."""
    q = select(api_tokens).where(api_tokens.c.workspace_id == workspace_id)
    if not include_revoked:
        q = q.where(api_tokens.c.revoked_at.is_(None))
    if after is not None:
        q = q.where(api_tokens.c.token_id > after)
    async with engine.connect() as conn:
        rows = (await conn.execute(q.order_by(api_tokens.c.token_id).limit(limit))).all()
    return [_info(r) for r in rows]


async def get_token(engine: AsyncEngine, token_id: uuid.UUID, workspace_id: str | None = None) -> TokenInfo | None:
    """One token by id (in ``workspace_id`` when given)."""
    q = select(api_tokens).where(api_tokens.c.token_id == token_id)
    if workspace_id is not None:
        q = q.where(api_tokens.c.workspace_id == workspace_id)
    async with engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return _info(row) if row is not None else None


async def revoke_token(
    engine: AsyncEngine, token_id: uuid.UUID, now: datetime, workspace_id: str | None = None
) -> TokenInfo | None:
    """Revoke a token (idempotent: the first revocation time stays); None when there is no such token."""
    cond = api_tokens.c.token_id == token_id
    if workspace_id is not None:
        cond = cond & (api_tokens.c.workspace_id == workspace_id)
    async with engine.begin() as conn:
        await conn.execute(update(api_tokens).where(cond, api_tokens.c.revoked_at.is_(None)).values(revoked_at=now))
        row = (await conn.execute(select(api_tokens).where(cond))).first()
    return _info(row) if row is not None else None


@dataclass(frozen=True)
class Principal:
    """Who a request is: the workspace of its token, the token's id and scopes."""

    workspace_id: str
    token_id: uuid.UUID
    scopes: tuple[str, ...]
    expires_at: datetime | None


class TokenResolver:
    """Resolves bearer tokens, with a cache of at most ``ttl_s`` so a revocation takes effect within it."""

    def __init__(
        self,
        engine: AsyncEngine,
        ttl_s: float = 1.0,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self.clock: Clock = clock or SystemClock()
        """Expiry is checked against this clock (the real one; tests inject theirs)."""
        self.monotonic = monotonic
        """The cache ages on this clock."""
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def resolve(self, token: str) -> tuple[Principal | None, str]:
        """The token's principal, or None and why (``invalid_token``, ``token_expired``)."""
        h = hash_token(token)
        hit = self._cache.get(h)
        if hit and hit[1] > self.monotonic():
            principal: Principal | None = hit[0]
        else:
            self._cache.pop(h, None)
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(
                            api_tokens.c.workspace_id,
                            api_tokens.c.token_id,
                            api_tokens.c.scopes,
                            api_tokens.c.expires_at,
                        ).where(api_tokens.c.token_hash == h, api_tokens.c.revoked_at.is_(None))
                    )
                ).first()
            if row is None:
                return None, "invalid_token"
            principal = Principal(row.workspace_id, row.token_id, tuple(row.scopes), row.expires_at)
            if self.ttl_s > 0:
                self._cache[h] = (principal, self.monotonic() + self.ttl_s)
                while len(self._cache) > 10_000:
                    self._cache.popitem(last=False)
        assert principal is not None
        if principal.expires_at is not None and principal.expires_at <= self.clock.now():
            return None, "token_expired"
        return principal, ""

    async def workspace_for(self, token: str) -> str | None:
        """The workspace of a valid token (None when it is not valid)."""
        principal, _ = await self.resolve(token)
        return principal.workspace_id if principal else None


class FailureLimiter:
    """A token bucket of failed authentication attempts per client: ``burst`` at once, then ``per_minute``.

    Memory is bounded (the least recently seen clients are forgotten past ``max_clients``); ``now`` is
    injectable for tests.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_clients: int = 10_000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.now = now
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, client: str) -> float:
        level, at = self._buckets.get(client, (self.burst, self.now()))
        return min(self.burst, level + (self.now() - at) * self.rate)

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        level = self._level(client)
        if level >= 1.0:
            return None
        return (1.0 - level) / self.rate if self.rate > 0 else 3600.0

    def failed(self, client: str) -> None:
        """Count one failed attempt of ``client``."""
        self._buckets[client] = (max(self._level(client) - 1.0, 0.0), self.now())
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
