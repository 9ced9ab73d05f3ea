"""Bounded input at the HTTP edge: every request body is capped before it is read in full, and text that
Postgres cannot store is refused before any route sees it.

:class:`InputGuard` is an ASGI middleware every service's app gets (:class:`services.runtime.service.Service`):

- a body larger than the route's cap is a 413 problem (``payload_too_large``): a ``Content-Length`` above
  it is refused before anything is read, and a body sent without one (chunked) is counted while it
  streams and refused as soon as it passes the cap. The cap is ``http_max_body_bytes`` (1 MiB by
  default); a route may have its own (discovery's CSV upload);
- a JSON body, a form body or a query string holding a NUL or a lone surrogate (escaped in JSON as
  ``\\u0000`` / ``\\ud800``, in a URL as ``%00``) is a 422 problem (``invalid_request``) naming each such
  field, shaped like every other 422 (:mod:`services.runtime.errors`). Without it one such value would
  reach a ``text`` column and fail there (or, on the log, every consumer behind it).

The request models bound each field's length themselves (``leadstream_schemas.bounds``, ``max_length``);
a test walks every service's OpenAPI document so that none is left without.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from leadstream_schemas.bounds import find_unstorable, may_hold_unstorable, unstorable
from starlette.exceptions import HTTPException

from .errors import problem_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_READ_WHOLE = ("application/json", "application/x-www-form-urlencoded")


class BodyTooLarge(HTTPException):
    """A streamed body passed its cap while the app was reading it: an HTTPException, so that FastAPI lets it
    through its body parsing and the app's problem handler answers 413 (``payload_too_large``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")


def too_large(limit: int) -> Any:
    """The 413 problem for a body above ``limit`` bytes."""
    return problem_response(
        413, "payload_too_large", f"the request body is larger than {limit:,} bytes", max_bytes=limit
    )


def unstorable_problem(fields: list[tuple[str, str]]) -> Any:
    """The 422 problem naming each field that holds text Postgres cannot store."""
    errors = [{"field": field, "message": message} for field, message in fields]
    return problem_response(
        422, "invalid_request", "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
    )


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path) or "body"


def unstorable_fields(query: bytes, body: bytes | None, content_type: str) -> list[tuple[str, str]]:
    """(field, reason) for the query parameters and the body fields that hold a NUL or a lone surrogate."""
    found: list[tuple[str, str]] = []
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        reason = unstorable(value) or unstorable(name)
        if reason is not None:
            found.append((name, reason))
    if not body:
        return found
    if content_type.startswith("application/json") and may_hold_unstorable(body):
        try:
            document = json.loads(body)
        except ValueError:  # not JSON: the route's own validation says so
            return found
        hit = find_unstorable(document)
        if hit is not None:
            found.append((_dotted(hit[0]), hit[1]))
    elif content_type.startswith("application/x-www-form-urlencoded"):
        for name, value in parse_qsl(body.decode("utf-8", "surrogateescape"), keep_blank_values=True):
            reason = unstorable(value)
            if reason is not None:
                found.append((name, reason))
    return found


class InputGuard:
    """The ASGI middleware of the module docstring. ``limits`` maps a path to its own cap (exact match)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limits = limits if limits is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.max_body_bytes)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await too_large(limit)(scope, receive, send)
            return
        content_type = headers.get("content-type", "").lower()
        if "\x00" in scope.get("path", ""):
            await unstorable_problem([("path", unstorable("\x00") or "")])(scope, receive, send)
            return
        if content_type.startswith(_READ_WHOLE):
            body = await self._read(receive, limit)
            if body is None:
                await too_large(limit)(scope, receive, send)
                return
            fields = unstorable_fields(scope.get("query_string", b""), body, content_type)
            if fields:
                await unstorable_problem(fields)(scope, receive, send)
                return
            await self.app(scope, _replay(body, receive), send)
            return
        fields = unstorable_fields(scope.get("query_string", b""), None, content_type)
        if fields:
            await unstorable_problem(fields)(scope, receive, send)
            return
        await self._streamed(scope, receive, send, limit)

    @staticmethod
    async def _read(receive: Receive, limit: int) -> bytes | None:
        """The whole body, or None as soon as it passes ``limit``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Pass the body through as the app reads it (uploads are not held in memory), counting it."""
        size = 0
        started = False

        async def counting() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, watching)
        except BodyTooLarge:
            if started:
                raise
            await too_large(limit)(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever comes next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
