"""The token API, served by every service (``/v1/tokens``): create, list, show and revoke the workspace's tokens.

Why every service and not one: tokens live in the runtime's ``identity`` schema, which every service already
migrates and reads to authenticate; no service owns them. Serving the same router everywhere means a
deployment that runs only some services (an analyst's projection, a webhooks-only integration) can still
manage its tokens, an outage of one service does not stop a revocation, and the console can use any backend
it already talks to. It is one implementation (this module), so the copies cannot drift. Every route needs
the ``admin`` scope; another workspace's token answers 404.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncEngine

from . import auth
from .auth import AdminPrincipal, Scope
from .clock import Clock, SystemClock
from .errors import Problem, problems
from .pagination import After, Limit, Page, decode_cursor, encode_cursor

Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


class TokenIn(BaseModel):
    """A new token: its scopes (each includes the lower ones: admin > write > read) and how long it lives."""

    model_config = ConfigDict(extra="forbid")

    label: Label = ""
    scopes: list[Scope] = Field(min_length=1, max_length=3, examples=[["read"]])
    expires_in_days: int = Field(90, ge=1, le=365, description="The token stops working after this many days.")


class TokenOut(BaseModel):
    """A token as lists show it: never the token itself, only its first characters (``prefix``)."""

    token_id: UUID
    label: str
    scopes: list[Scope]
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    """A new token: ``token`` is shown here only (the service keeps its hash)."""

    token: str


def _out(info: auth.TokenInfo) -> TokenOut:
    return TokenOut(
        token_id=info.token_id,
        label=info.label,
        scopes=info.scopes,
        prefix=info.prefix,
        created_at=info.created_at,
        expires_at=info.expires_at,
        revoked_at=info.revoked_at,
    )


def tokens_router(clock: Clock | None = None) -> APIRouter:
    """The ``/v1/tokens`` routes; tokens expire on the real clock (``clock``: tests)."""
    router = APIRouter(prefix="/v1/tokens", tags=["tokens"])
    wall = clock or SystemClock()

    def engine(request: Request) -> AsyncEngine:
        resolver: auth.TokenResolver = request.app.state.tokens
        return resolver.engine

    @router.post("", status_code=201, response_model=TokenCreated, responses=problems(401, 403, 422, 429))
    async def create(body: TokenIn, who: AdminPrincipal, request: Request) -> TokenCreated:
        """Create a token for the caller's workspace. The answer is the only time the token is shown."""
        made = await auth.issue_token(
            engine(request),
            who.workspace_id,
            scopes=body.scopes,
            label=body.label,
            expires_at=wall.now() + timedelta(days=body.expires_in_days),
        )
        return TokenCreated(**_out(made.info).model_dump(), token=made.token)

    @router.get("", response_model=Page[TokenOut], responses=problems(401, 403, 422, 429))
    async def list_tokens(
        who: AdminPrincipal,
        request: Request,
        limit: Limit = 50,
        after: After = None,
        include_revoked: bool = False,
    ) -> Page[TokenOut]:
        """The workspace's tokens (revoked ones with ``include_revoked``), by id."""
        start = decode_cursor(after, 1, [UUID])[0] if after else None
        rows = await auth.list_tokens(
            engine(request), who.workspace_id, include_revoked=include_revoked, after=start, limit=limit + 1
        )
        return Page.of([_out(r) for r in rows], limit, lambda t: encode_cursor([str(t.token_id)]))

    @router.get("/{token_id}", response_model=TokenOut, responses=problems(401, 403, 404, 422, 429))
    async def get_token(token_id: UUID, who: AdminPrincipal, request: Request) -> TokenOut:
        """One token of the workspace."""
        found = await auth.get_token(engine(request), token_id, who.workspace_id)
        if found is None:
            raise Problem(404, "not_found", f"token {token_id} not found")
        return _out(found)

    @router.delete("/{token_id}", status_code=204, responses=problems(401, 403, 404, 422, 429))
    async def revoke(token_id: UUID, who: AdminPrincipal, request: Request) -> Response:
        """Revoke a token of the workspace: every service refuses it within a second (idempotent)."""
        found = await auth.revoke_token(engine(request), token_id, wall.now(), who.workspace_id)
        if found is None:
            raise Problem(404, "not_found", f"token {token_id} not found")
        return Response(status_code=204)

    return router
