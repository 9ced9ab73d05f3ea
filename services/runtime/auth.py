"""Workspace API tokens: scoped, expiring, revocable; stored as SHA-256 hashes in the shared ``identity`` schema.

Every HTTP request names its workspace only through its bearer token. A token is shown once, when created;
the database keeps its hash, an id (``token_id``, what lists and revocation use) and its first characters
(to recognise it by). Objects of another workspace answer 404, never 403, so their existence does not leak.

Scopes are levels: ``read`` < ``write`` < ``admin``; a token holds the levels it was given and a route needs
one. Every route declares its scope with :data:`ReadWorkspace`, :data:`WriteWorkspace` or
:data:`AdminWorkspace` (or :func:`public` for the few that authenticate otherwise: signed webhooks, the
unsubscribe link, health), and the OpenAPI document shows it (``security: [{"HTTPBearer": ["write"]}]``).
A route that asks for the workspace without a scope needs ``admin`` (it fails closed), and a test walks every
route of every service for a declaration.

Resolved tokens are cached for at most ``token_cache_s`` (1 s), so a revocation, an expiry or a new token
takes effect everywhere within a second. Failed attempts (no token, unknown, expired or revoked) are limited
per client address: past the budget a client gets 429 problems, valid token or not, until it refills.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from .errors import Problem
from .identity import (
    IDENTITY_SCHEMA,
    MIGRATIONS_DIR,
    PUBLIC_EXTENSION,
    SCOPES,
    FailureLimiter,
    NewToken,
    Principal,
    Scope,
    TokenInfo,
    TokenResolver,
    api_tokens,
    create_token,
    get_token,
    grants,
    hash_token,
    identity_metadata,
    issue_token,
    list_tokens,
    normalise_scopes,
    revoke_token,
)

# The store is re-exported: the services and tests import it from here with the HTTP parts.
__all__ = [
    "BROWSER_EXTENSION",
    "IDENTITY_SCHEMA",
    "MIGRATIONS_DIR",
    "PUBLIC_EXTENSION",
    "SCOPES",
    "AdminPrincipal",
    "AdminWorkspace",
    "FailureLimiter",
    "NewToken",
    "Principal",
    "ReadWorkspace",
    "Scope",
    "TokenInfo",
    "TokenResolver",
    "WriteWorkspace",
    "api_tokens",
    "browser",
    "create_token",
    "get_token",
    "grants",
    "hash_token",
    "identity_metadata",
    "issue_token",
    "list_tokens",
    "normalise_scopes",
    "principal",
    "public",
    "revoke_token",
    "workspace_id",
]


_bearer = HTTPBearer(auto_error=False, description="A workspace API token: `leadstream tokens create`.")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def principal(
    request: Request,
    security_scopes: SecurityScopes,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """FastAPI dependency: the request's :class:`Principal` if its token is valid and holds the route's scope.

    401 without a valid token, 403 when the token lacks the scope, 429 while the client has spent its
    budget of failed attempts. A route that declares no scope needs ``admin``.
    """
    limiter: FailureLimiter | None = getattr(request.app.state, "auth_failures", None)
    client = _client(request)
    if limiter is not None:
        wait = limiter.retry_after(client)
        if wait is not None:
            raise Problem(
                429,
                "too_many_failed_attempts",
                f"too many failed authentication attempts from this client; retry in {wait:.0f}s",
                retry_after_s=round(wait, 1),
                headers={"Retry-After": str(max(1, round(wait)))},
            )

    def fail(code: str, detail: str) -> Problem:
        if limiter is not None:
            limiter.failed(client)
        return Problem(401, code, detail, headers={"WWW-Authenticate": "Bearer"})

    if creds is None or not creds.credentials:
        raise fail("unauthenticated", "missing bearer token: send 'Authorization: Bearer <token>'")
    resolver: TokenResolver = request.app.state.tokens
    found, why = await resolver.resolve(creds.credentials)
    if found is None:
        raise fail(why, "the bearer token has expired" if why == "token_expired" else "the bearer token is not valid")
    needed: Scope = next((s for s in reversed(SCOPES) if s in security_scopes.scopes), "admin")
    if not grants(found.scopes, needed):
        raise Problem(
            403,
            "insufficient_scope",
            f"this route needs a token with the {needed!r} scope; the token has {', '.join(found.scopes) or 'none'}",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needed}"'},
        )
    request.state.principal = found
    return found


async def workspace_id(principal: Annotated[Principal, Security(principal)]) -> str:
    """FastAPI dependency: the workspace of the request's token (declare the scope: :data:`ReadWorkspace`...)."""
    return principal.workspace_id


ReadWorkspace = Annotated[str, Security(workspace_id, scopes=["read"])]
"""A route parameter: the caller's workspace; the route reads."""
WriteWorkspace = Annotated[str, Security(workspace_id, scopes=["write"])]
"""A route parameter: the caller's workspace; the route changes something."""
AdminWorkspace = Annotated[str, Security(workspace_id, scopes=["admin"])]
"""A route parameter: the caller's workspace; the route deletes accounts, manages tokens or webhooks."""
AdminPrincipal = Annotated[Principal, Security(principal, scopes=["admin"])]
"""A route parameter: the caller (workspace, token id) of an admin route."""


def public(reason: str) -> dict[str, Any]:
    """``openapi_extra`` of a route without a bearer token, saying what authenticates it instead."""
    return {PUBLIC_EXTENSION: reason}


BROWSER_EXTENSION = "x-leadstream-browser"
"""Extension (on the route, not in the document) of a browser route kept out of the OpenAPI document."""


def browser(reason: str) -> dict[str, Any]:
    """``openapi_extra`` of a route a browser uses (an HTML page or form, a live stream, a static file), kept out
    of the OpenAPI document with ``include_in_schema=False``: it is not an API and takes no bearer token (a browser
    holds none), so ``reason`` says what authenticates it instead (the console's session cookie, the CSRF token of
    its forms) or why it needs nothing. tests/services/test_routes.py holds every route the document leaves out to
    such a declaration."""
    return {BROWSER_EXTENSION: reason}
