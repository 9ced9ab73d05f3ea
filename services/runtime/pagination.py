"""Pagination of list routes: ``limit`` (at most 200) and ``after`` in, ``{"items": [...], "next": ...}`` out.

Every list route takes :data:`Limit` and :data:`After` query parameters and answers a page whose ``next`` is an
opaque cursor to pass as ``after`` (null on the last page). Where the data has a stable order the cursor
is a keyset (the sort key of the last item: :func:`encode_cursor` / :func:`decode_cursor`), so pages stay
right while rows are added and the query stays an index range. A test walks the OpenAPI document of every
service and fails on a list route without these parameters.

A new list route::

    @router.get("/things", response_model=Page[ThingOut])
    async def things(ws: ReadWorkspace, limit: Limit = 50, after: After = None) -> Page[ThingOut]:
        key = decode_cursor(after, 2) if after else None       # [created_at, id] of the last item seen
        rows = ...  .where(tuple_(t.created_at, t.id) > tuple_(*key)) ... .limit(limit + 1)
        return Page.of(rows, limit, lambda r: encode_cursor([r.created_at.isoformat(), str(r.id)]))
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from .errors import Problem

MAX_PAGE = 200
"""The largest page any list route returns."""

BOUNDED_EXTENSION = "x-leadstream-bounded"
"""OpenAPI extension of a list route whose length the code fixes (a catalogue, not data): it needs no pages."""

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Items per page (at most {MAX_PAGE}).")]
After = Annotated[str | None, Query(max_length=500, description="`next` of the previous page.")]


def bounded(reason: str) -> dict[str, Any]:
    """``openapi_extra`` of a list route that needs no pagination, saying why (e.g. "the contract's event types")."""
    return {BOUNDED_EXTENSION: reason}


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next`` as ``after`` for the following one (null: this is the last)."""

    items: list[T]
    next: str | None = Field(None, description="Cursor of the following page (pass as `after`); null on the last.")

    @classmethod
    def of(cls, rows: Sequence[T], limit: int, cursor: Callable[[T], str]) -> Page[T]:
        """A page from up to ``limit + 1`` rows (fetch one more than the page to know whether another follows)."""
        items = list(rows[:limit])
        more = len(rows) > limit and bool(items)
        return cls(items=items, next=cursor(items[-1]) if more else None)


def encode_cursor(values: Sequence[Any]) -> str:
    """An opaque cursor holding ``values`` (the sort key of the last item of a page)."""
    return base64.urlsafe_b64encode(json.dumps(list(values), default=str).encode()).decode().rstrip("=")


def invalid_cursor() -> Problem:
    """The 422 problem of an ``after`` this API did not make."""
    return Problem(
        422,
        "invalid_cursor",
        "after: the cursor is not one this API returned",
        errors=[{"field": "after", "message": "the cursor is not one this API returned"}],
    )


BIGINT_MAX = 2**63 - 1
"""The largest value of a Postgres ``bigint`` (a sequence): an integer parameter or cursor value past it is a 422,
not a query the database refuses (a 500)."""
SMALLINT_MAX = 2**15 - 1
"""The largest value of a Postgres ``smallint``."""


def cursor_int(low: int, high: int) -> Callable[[Any], int]:
    """A parser of :func:`decode_cursor` for an integer of a cursor: from ``low`` to ``high`` (the range of the
    column it is compared with), else the cursor is not one this API made. Without the range, a cursor holding
    10**30 reached the database, which refused the query (a 500)."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"not an integer from {low} to {high}")
        return value

    return parse


def decode_cursor(cursor: str, size: int, parsers: Sequence[Callable[[Any], Any]] = ()) -> list[Any]:
    """The values of a cursor made by :func:`encode_cursor`, each through its parser (``UUID``,
    ``datetime.fromisoformat``...) when given; a 422 problem naming ``after`` when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != size:
        raise invalid_cursor()
    try:
        return [parse(v) for parse, v in zip(parsers, values, strict=True)] if parsers else values
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise invalid_cursor() from None
