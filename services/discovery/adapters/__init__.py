"""The search provider discovery talks to, behind a Protocol, and the plain data it answers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol


@dataclass(frozen=True)
class Evidence:
    """Something the provider observed about a person or their company (a hiring post, a funding round...)."""

    kind: str
    detail: str
    observed_on: date | None = None
    url: str | None = None  # where it can be seen (a post's URL)
    ref: str | None = None  # the provider's id of it (a post's id), when it has one


@dataclass(frozen=True)
class Candidate:
    """One person a provider returned for a query (before normalisation and dedupe)."""

    linkedin_url: str | None
    full_name: str
    first_name: str | None = None
    last_name: str | None = None
    headline: str | None = None
    title: str | None = None
    company: str | None = None
    location: str | None = None
    industry: str | None = None
    company_size: str | None = None
    provider_id: str | None = None
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class SearchQuery:
    """What to search for: the search kind and its validated criteria (as plain JSON data)."""

    kind: str
    criteria: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchPage:
    """One page of results; ``next_cursor`` is None when the result set is exhausted."""

    items: list[Candidate]
    next_cursor: str | None
    total: int | None = None


class SearchProvider(Protocol):
    """A people/posts search API (LinkedIn through a Unipile-style provider, or the simulation)."""

    name: str

    async def search(self, query: SearchQuery, cursor: str | None, limit: int) -> SearchPage:
        """One page of results after ``cursor`` (None = first page), at most ``limit`` items."""
        ...
