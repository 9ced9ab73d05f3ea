"""The Unipile-style search client against a local HTTP server speaking that protocol (incl. 429 and 5xx)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.discovery.adapters import SearchQuery
from services.discovery.adapters.http import UnipileSearchClient
from services.runtime.http_client import parse_retry_after
from services.runtime.providers import ProviderError, RateLimited
from tests.services.discovery.conftest import StartDiscovery
from tests.services.discovery.support import client_for, envelopes, read_events, settled
from tests.support.kafka import wait_for
from tests.support.local_http import Sleeps, serve

KEY = "test-key"
PEOPLE = [
    {
        "type": "PEOPLE",
        "id": f"ACo{i}",
        "name": name,
        "public_identifier": slug,
        "headline": f"{title} at {company}",
        "location": "Berlin",
        "current_positions": [{"company": company, "role": title}],
    }
    for i, (name, slug, title, company) in enumerate(
        [
            ("Ada Adler", "ada-adler", "Head of Sales", "Northwind"),
            ("Ben Brandt", "Ben-Brandt", "CTO", "Bluepeak"),
            ("Chloe Costa", "chloe-costa", "VP Marketing", "Cobalt"),
            ("Diego Dubois", "diego-dubois", "COO", "Dataforge"),
            ("Emma Eriksen", "emma-eriksen", "Head of Growth", "Evergreen"),
        ]
    )
]
POSTS = [
    {
        "type": "POST",
        "id": "p1",
        "text": "Anyone struggling with cold outreach?",
        "parsed_datetime": "2026-01-03T09:00:00Z",
        "author": {"name": "Farid Fischer", "public_identifier": "farid-fischer", "headline": "RevOps Lead"},
    },
    {
        "type": "POST",
        "id": "p2",
        "text": "We are hiring",
        "date": "2026-01-02",
        "author": {"name": "Fluxio", "is_company": True},
    },
]


SIGNAL_PEOPLE: list[dict[str, Any]] = [
    {
        "type": "PEOPLE",
        "id": "ACs1",
        "name": "Greta Gruber",
        "public_identifier": "greta-gruber",
        "headline": "Head of Compliance at Pinecrest Bank",
        "location": "Frankfurt",
        "current_positions": [{"company": "Pinecrest Bank", "role": "Head of Compliance"}],
        "signals": [
            {"type": "compliance", "detail": "Pinecrest Bank is preparing for DORA", "date": "2026-01-02"},
            {"type": "open_jobs", "detail": "4 open compliance roles", "date": "2026-01-01"},
            {"type": "news"},  # no detail: not evidence
        ],
    }
]
WEB: list[dict[str, Any]] = [
    {
        "type": "WEB_MENTION",
        "id": "w1",
        "text": "Our outbound stack is a mess - looking for a better sequencer",
        "url": "https://blog.example.com/outbound-mess",
        "date": "2026-01-04",
        "author": {"name": "Hana Hoffmann", "public_identifier": "hana-hoffmann", "headline": "Founder"},
    }
]


class FakeUnipile:
    """A scripted Unipile-style search API: queued error answers first, then real pages."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.hang = asyncio.Event()
        self.hanging = 0
        self.app = FastAPI()
        self.app.post("/api/v1/linkedin/search")(self.search)

    async def search(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(
            {"params": dict(request.query_params), "body": body, "key": request.headers.get("x-api-key")}
        )
        if request.headers.get("x-api-key") != KEY:
            return JSONResponse({"status": 401, "type": "errors/invalid_credentials", "title": "Unauthorized"}, 401)
        if self.script:
            status, headers, payload = self.script.pop(0)
            if status == 0:  # hang until released: the client times out
                self.hanging += 1
                await self.hang.wait()
                status = 200
            return JSONResponse(payload, status, headers=headers)
        items: list[dict[str, Any]] = {
            ("posts", "posts"): POSTS,
            ("posts", "web"): WEB,
            ("signals", None): SIGNAL_PEOPLE,
        }.get((body.get("category"), body.get("source")), PEOPLE)
        start = int(request.query_params.get("cursor") or 0)
        limit = int(request.query_params["limit"])
        page = items[start : start + limit]
        end = start + len(page)
        return JSONResponse(
            {
                "object": "LinkedinSearch",
                "items": page,
                "paging": {"start": start, "page_count": len(page), "total_count": len(items)},
                "cursor": str(end) if end < len(items) else None,
            }
        )


def _client(base: str, sleeps: Sleeps, api_key: str = KEY, **kw: Any) -> UnipileSearchClient:
    options: dict[str, Any] = {"max_retries": 3, "backoff_s": 0.1, "max_inline_wait_s": 5.0, "sleep": sleeps, **kw}
    return UnipileSearchClient(base, api_key, "acc-1", **options)


PEOPLE_QUERY = SearchQuery(
    "people",
    {
        "titles": ["Head of Sales"],
        "companies": ["Northwind"],
        "description": "B2B SaaS",
        "keywords": [],
        "industries": [],
        "locations": [],
    },
)


async def test_pages_people_with_cursors_until_exhausted() -> None:
    fake, sleeps = FakeUnipile(), Sleeps()
    async with serve(fake.app) as base:
        client = _client(base, sleeps)
        pages = []
        cursor = None
        while True:
            page = await client.search(PEOPLE_QUERY, cursor, 2)
            pages.append(page)
            cursor = page.next_cursor
            if cursor is None:
                break
        await client.aclose()
    assert [len(p.items) for p in pages] == [2, 2, 1] and pages[0].total == 5
    first = pages[0].items[0]
    assert (first.linkedin_url, first.title, first.company, first.full_name) == (
        "https://www.linkedin.com/in/ada-adler",
        "Head of Sales",
        "Northwind",
        "Ada Adler",
    )
    req = fake.requests[0]
    assert req["key"] == KEY and req["params"] == {"account_id": "acc-1", "limit": "2"}
    assert req["body"] == {
        "api": "classic",
        "category": "people",
        "keywords": "B2B SaaS",
        "advanced_keywords": {"title": "Head of Sales", "company": "Northwind"},
    }
    assert fake.requests[1]["params"]["cursor"] == "2"
    assert sleeps.waits == []


async def test_posts_and_linkedin_url_queries() -> None:
    fake, sleeps = FakeUnipile(), Sleeps()
    async with serve(fake.app) as base:
        client = _client(base, sleeps)
        posts = await client.search(
            SearchQuery("posts", {"keywords": ["cold outreach", "SDR"], "source": "posts", "lookback_days": 7}),
            None,
            10,
        )
        url = "https://www.linkedin.com/search/results/people/?keywords=cto"
        await client.search(SearchQuery("linkedin_url", {"url": url}), None, 10)
        await client.aclose()
    [author] = posts.items  # the company's post is not a person
    assert author.linkedin_url == "https://www.linkedin.com/in/farid-fischer"
    assert author.evidence[0].kind == "post" and author.evidence[0].observed_on.isoformat() == "2026-01-03"  # type: ignore[union-attr]
    assert author.evidence[0].ref == "p1"
    assert fake.requests[0]["body"] == {
        "api": "classic",
        "category": "posts",
        "keywords": '"cold outreach" OR "SDR"',
        "source": "posts",
        "lookback_days": 7,
        "date_posted": "past_week",
        "intent_keywords": ["cold outreach", "SDR"],
        "pain_keywords": [],
    }
    assert fake.requests[1]["body"] == {"url": url}


async def test_signals_and_web_sources_reach_the_provider_with_their_settings() -> None:
    fake, sleeps = FakeUnipile(), Sleeps()
    signals = {
        "prompt": "banks preparing for compliance audits",
        "signal_types": ["compliance", "open_jobs", "custom"],
        "custom_signal": "moving core banking to the cloud",
        "location": "Frankfurt",
        "lookback_days": 21,
    }
    async with serve(fake.app) as base:
        client = _client(base, sleeps)
        found = await client.search(SearchQuery("signals", signals), None, 10)
        web = await client.search(
            SearchQuery(
                "posts",
                {
                    "keywords": ["sequencer"],
                    "pain_keywords": ["outbound stack is a mess"],
                    "source": "web",
                    "lookback_days": 1,
                },
            ),
            None,
            10,
        )
        await client.aclose()
    assert fake.requests[0]["body"] == {
        "api": "signals",
        "category": "signals",
        "prompt": "banks preparing for compliance audits",
        "signal_types": ["compliance", "open_jobs", "custom"],
        "custom_signal": "moving core banking to the cloud",
        "location": "Frankfurt",
        "lookback_days": 21,
        "date_posted": "past_month",
    }
    [person] = found.items
    assert [(e.kind, e.detail, str(e.observed_on)) for e in person.evidence] == [
        ("compliance", "Pinecrest Bank is preparing for DORA", "2026-01-02"),
        ("open_jobs", "4 open compliance roles", "2026-01-01"),
    ]
    body = fake.requests[1]["body"]
    assert (body["source"], body["date_posted"], body["pain_keywords"]) == (
        "web",
        "past_day",
        ["outbound stack is a mess"],
    )
    [author] = web.items
    mention = author.evidence[0]
    assert (mention.kind, mention.url, mention.ref) == ("web_mention", "https://blog.example.com/outbound-mess", "w1")
    assert author.linkedin_url == "https://www.linkedin.com/in/hana-hoffmann"


async def test_429_retry_after_and_5xx_are_retried_with_backoff() -> None:
    fake, sleeps = FakeUnipile(), Sleeps()
    fake.script = [
        (429, {"Retry-After": "2"}, {"title": "Too many requests"}),
        (503, {}, {"title": "unavailable"}),
        (502, {}, "bad gateway"),
    ]
    async with serve(fake.app) as base:
        client = _client(base, sleeps)
        page = await client.search(PEOPLE_QUERY, None, 5)
        await client.aclose()
    assert len(page.items) == 5 and len(fake.requests) == 4
    assert sleeps.waits == [2.0, 0.2, 0.4]  # retry-after honoured, then exponential backoff


async def test_long_retry_after_is_surfaced_and_persistent_5xx_gives_up() -> None:
    fake, sleeps = FakeUnipile(), Sleeps()
    fake.script = [(429, {"Retry-After": "120"}, {})]
    async with serve(fake.app) as base:
        client = _client(base, sleeps)
        with pytest.raises(RateLimited) as limited:
            await client.search(PEOPLE_QUERY, None, 5)
        assert limited.value.retry_after_s == 120 and sleeps.waits == []
        fake.script = [(500, {}, {})] * 4
        with pytest.raises(ProviderError) as failed:
            await client.search(PEOPLE_QUERY, None, 5)
        assert (failed.value.transient, failed.value.status) == (True, 500)
        assert len(fake.requests) == 5 and sleeps.waits == [0.1, 0.2, 0.4]
        fake.script = [(429, {}, {})] * 4
        with pytest.raises(RateLimited):
            await client.search(PEOPLE_QUERY, None, 5)
        await client.aclose()


async def test_4xx_is_permanent_and_timeouts_are_transient() -> None:
    fake, sleeps = FakeUnipile(), Sleeps()
    fake.script = [(400, {}, {"title": "Bad Request", "detail": "Invalid parameter: cursor"})]
    async with serve(fake.app) as base:
        client = _client(base, sleeps)
        with pytest.raises(ProviderError) as bad:
            await client.search(PEOPLE_QUERY, "nonsense", 5)
        assert (bad.value.transient, bad.value.status) == (False, 400)
        assert "Invalid parameter: cursor" in str(bad.value)
        wrong_key = _client(base, sleeps, api_key="wrong")
        with pytest.raises(ProviderError) as unauthorized:
            await wrong_key.search(PEOPLE_QUERY, None, 5)
        assert (unauthorized.value.transient, unauthorized.value.status) == (False, 401)
        await wrong_key.aclose()
        fake.script = [(0, {}, {}), (0, {}, {})]
        quick = _client(base, sleeps, timeout_s=0.2, max_retries=1)
        with pytest.raises(ProviderError, match="timed out") as slow:
            await quick.search(PEOPLE_QUERY, None, 5)
        assert slow.value.transient is True and fake.hanging == 2
        fake.hang.set()
        await quick.aclose()
        await client.aclose()


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert parse_retry_after("7", now, 1.0) == 7.0
    assert parse_retry_after("Mon, 05 Jan 2026 08:00:30 GMT", now, 1.0) == 30.0
    assert parse_retry_after("Mon, 05 Jan 2026 07:00:00 GMT", now, 1.0) == 0.0
    assert parse_retry_after(None, now, 1.5) == 1.5
    assert parse_retry_after("soon", now, 1.5) == 1.5


async def test_discovery_runs_a_saved_search_over_the_http_provider(start_discovery: StartDiscovery) -> None:
    fake = FakeUnipile()
    fake.script = [(429, {"Retry-After": "0"}, {}), (503, {}, {})]
    async with serve(fake.app) as base:
        service = await start_discovery(
            search_provider="http",
            search_api_base_url=base,
            search_api_key=KEY,
            search_api_account_id="acc-9",
            search_api_backoff_s=0.01,
            search_page_size=2,
        )
        ws = f"ws-{uuid.uuid4().hex[:8]}"
        async with await client_for(service, ws) as client:
            r = await client.post(
                "/v1/searches",
                json={"name": "http", "kind": "people", "target_count": 100, "criteria": {"titles": ["Head of Sales"]}},
            )
            sid = r.json()["search_id"]

            async def finished() -> dict[str, Any] | None:
                body = (await client.get(f"/v1/searches/{sid}")).json()
                return body if body["status"] == "finished" else None

            done = await wait_for(finished, timeout_s=30, what="the http search")
        records = await read_events(service, settled(ws, finished=1, discovered=5))
    assert (done["finish_reason"], done["members"], done["pages"]) == ("exhausted", 5, 3)
    assert {r["params"]["account_id"] for r in fake.requests} == {"acc-9"}
    urls = sorted(e.data.linkedin_url for e in envelopes(records, ws, "lead.discovered.v1"))
    assert urls[1] == "https://www.linkedin.com/in/ben-brandt"  # normalised from the provider's 'Ben-Brandt'
    assert len(urls) == 5
