"""Helpers of the discovery tests: an API client per workspace, event filters, and a scripted provider whose
queries a test counts by its own workspace (the runner claims any due search of the session's shared database)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
from aiokafka import ConsumerRecord
from leadstream_schemas import Envelope

from services.discovery.adapters import Candidate, Evidence, SearchPage, SearchQuery
from services.discovery.handlers import claimable
from services.discovery.store import searches
from services.runtime.auth import create_token
from services.runtime.service import Service
from tests.support.kafka import read_until
from tests.support.personal import decode_opened


async def client_for(service: Service, workspace: str) -> httpx.AsyncClient:
    """An HTTP client of the service's app authenticated as ``workspace``."""
    token = await create_token(service.engine, workspace)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {token}"},
    )


def envelopes(records: list[ConsumerRecord[Any, Any]], workspace: str, type_suffix: str = "") -> list[Envelope[Any]]:
    """Decoded events of ``workspace`` whose type ends with ``type_suffix``."""
    out = []
    for r in records:
        env = decode_opened(r.value, r.headers)
        if env.workspace_id == workspace and env.type.endswith(type_suffix):
            out.append(env)
    return out


async def read_events(
    service: Service, done: Callable[[list[ConsumerRecord[Any, Any]]], bool], timeout_s: float = 60
) -> list[ConsumerRecord[Any, Any]]:
    """Read the lead and search topics from the start until ``done``."""
    s = service.settings
    topics = [s.topic_name("leadstream.lead.v1"), s.topic_name("leadstream.search.v1")]
    return await read_until(s.kafka_bootstrap_servers, topics, done, timeout_s=timeout_s)


def settled(workspace: str, *, finished: int, discovered: int) -> Callable[[list[ConsumerRecord[Any, Any]]], bool]:
    """A ``read_until`` condition: ``finished`` searches and ``discovered`` leads of ``workspace`` were read.

    Both are needed: search and lead events travel on different topics and partitions.
    """

    def done(records: list[ConsumerRecord[Any, Any]]) -> bool:
        return (
            len(envelopes(records, workspace, "search.finished.v1")) >= finished
            and len(envelopes(records, workspace, "lead.discovered.v1")) >= discovered
        )

    return done


def person(
    slug: str, *, post: str | None = None, posted_on: date | None = None, post_id: str | None = None
) -> Candidate:
    """A provider result: a person (with one post as evidence when ``post`` is given)."""
    evidence = (Evidence("post", f"'{post}'", posted_on, url=None, ref=post_id),) if post is not None else ()
    return Candidate(
        linkedin_url=f"https://www.linkedin.com/in/{slug}",
        full_name=slug.replace("-", " ").title(),
        title="Head of Sales",
        company="Acme",
        location="Berlin",
        evidence=evidence,
    )


def mentions(query: SearchQuery, token: str) -> bool:
    """Whether ``token`` (a test's workspace id) is in the query's criteria (``ScriptedProvider.queries_for``)."""
    return token in json.dumps(query.criteria)


async def due(service: Service, search_id: str) -> bool:
    """Whether the runner could claim this search now: its claim query, scoped to the one search (``step()``
    returning None would say that no search of the session's shared database is due, another test's too)."""
    query = claimable(service.clock.now()).where(searches.c.search_id == uuid.UUID(search_id))
    async with service.engine.connect() as conn:
        return (await conn.execute(query)).first() is not None


class ScriptedProvider:
    """A search provider whose results the test sets (and changes) as it goes: ``results`` in provider order
    (newest first for posts), paged with integer cursors; every query is answered from the same list."""

    name = "scripted"

    def __init__(self, results: list[Candidate] | None = None) -> None:
        self.results: list[Candidate] = list(results or [])
        self.queries: list[tuple[SearchQuery, str | None]] = []

    def queries_for(self, token: str) -> list[tuple[SearchQuery, str | None]]:
        """The queries (in order) whose criteria mention ``token``: a test puts its workspace id in its criteria and
        counts these, because the runner claims any due search of the session's shared database, so this provider
        also answers other tests' leftover searches."""
        return [q for q in self.queries if mentions(q[0], token)]

    async def search(self, query: SearchQuery, cursor: str | None, limit: int) -> SearchPage:
        """One page after ``cursor``."""
        self.queries.append((query, cursor))
        start = int(cursor or 0)
        page = self.results[start : start + limit]
        end = start + len(page)
        return SearchPage(page, str(end) if end < len(self.results) else None, total=len(self.results))
