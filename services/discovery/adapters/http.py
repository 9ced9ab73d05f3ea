"""A Unipile-style LinkedIn search client over httpx.

Protocol (what the client sends and expects):

- ``POST {base}/api/v1/linkedin/search?account_id=..&limit=..[&cursor=..]`` with header ``X-API-KEY``;
- body, by search kind:

  - LinkedIn search URL: ``{"url": <LinkedIn search URL>}``;
  - people: ``{"api": "classic", "category": "people", "keywords": .., "advanced_keywords": {"title": ..,
    "company": ..}}``;
  - posts: ``{"api": "classic", "category": "posts", "keywords": "\"a\" OR \"b\"", "source": "posts"|"web",
    "lookback_days": n, "date_posted": "past_day"|"past_week"|"past_month", "intent_keywords": [..],
    "pain_keywords": [..]}`` (``source`` web: mentions on the web, not LinkedIn posts);
  - signals: ``{"api": "signals", "category": "signals", "prompt": .., "signal_types": [..], "custom_signal":
    ..|null, "location": ..|null, "lookback_days": n, "date_posted": ..}`` — the provider looks for hiring plans,
    open jobs, recent hires, tech stack, website signals, compliance, people, news, expansion or custom signals
    near ``location`` within ``lookback_days``, not for a keyword people search;

- answer ``{"object": "LinkedinSearch", "items": [..], "paging": {"total_count": n}, "cursor": str|null}``
  where people items carry ``name``, ``public_identifier``/``public_profile_url``, ``headline``,
  ``location``, ``current_positions`` and (signal searches) ``signals: [{"type", "detail", "date"}]``; post
  items (``"type": "POST"``, or ``"WEB_MENTION"`` from the web) carry ``id``, ``text``, ``date``, ``share_url``
  (or ``url``) and an ``author``.

5xx answers, timeouts and connection errors are retried with exponential backoff; a 429 is retried
after its ``Retry-After`` (seconds or an HTTP date) unless that is longer than the inline limit, in
which case :class:`RateLimited` tells the caller how long to wait. Other 4xx answers are final.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

import httpx

from services.runtime.clock import Clock
from services.runtime.http_client import ProviderHttpClient, RetryPolicy, Sleep
from services.runtime.providers import ProviderError

from . import Candidate, Evidence, SearchPage, SearchQuery


class UnipileSearchClient:
    """Searches LinkedIn people and posts through a Unipile-style REST API."""

    name = "unipile"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        account_id: str,
        *,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_inline_wait_s: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("the http search provider needs LEADSTREAM_SEARCH_API_BASE_URL")
        self.http = ProviderHttpClient(
            "search provider",
            base_url,
            headers={"X-API-KEY": api_key, "accept": "application/json"},
            timeout_s=timeout_s,
            retry=RetryPolicy(max_retries, backoff_s, max_retry_after_s=max_inline_wait_s),
            refusal=_refused,
            sleep=sleep,
            clock=clock,
            transport=transport,
        )
        self.account_id = account_id

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def search(self, query: SearchQuery, cursor: str | None, limit: int) -> SearchPage:
        """One page of results after ``cursor``."""
        params: dict[str, Any] = {"account_id": self.account_id, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        data = await self.http.request_object(
            "POST", "/api/v1/linkedin/search", params=params, json=request_body(query)
        )
        items = [c for c in (candidate_from_item(i) for i in data.get("items") or []) if c is not None]
        paging = data.get("paging") or {}
        total = paging.get("total_count")
        return SearchPage(items, data.get("cursor") or None, total=int(total) if isinstance(total, int) else None)


def _refused(response: httpx.Response, what: str) -> ProviderError:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = body.get("detail") or body.get("title") or body.get("message") or body
    status = response.status_code
    return ProviderError(f"{what} refused the request ({status}): {str(body)[:200]}", transient=False, status=status)


def _date_posted(days: int) -> str:
    if days <= 1:
        return "past_day"
    return "past_week" if days <= 7 else "past_month"


def request_body(query: SearchQuery) -> dict[str, Any]:
    """The provider request body of a query."""
    c = query.criteria
    if query.kind == "linkedin_url":
        return {"url": c["url"]}
    if query.kind == "posts":
        days = int(c.get("lookback_days", 14))
        intent, pain = list(c["keywords"]), list(c.get("pain_keywords") or [])
        return {
            "api": "classic",
            "category": "posts",
            "keywords": " OR ".join(f'"{k}"' for k in [*intent, *pain]),
            "source": c.get("source", "posts"),
            "lookback_days": days,
            "date_posted": _date_posted(days),
            "intent_keywords": intent,
            "pain_keywords": pain,
        }
    if query.kind == "signals":
        days = int(c.get("lookback_days", 14))
        return {
            "api": "signals",
            "category": "signals",
            "prompt": c["prompt"],
            "signal_types": list(c["signal_types"]),
            "custom_signal": c.get("custom_signal"),
            "location": c.get("location"),
            "lookback_days": days,
            "date_posted": _date_posted(days),
        }
    advanced = {}
    if c.get("titles"):
        advanced["title"] = " OR ".join(c["titles"])
    if c.get("companies"):
        advanced["company"] = " OR ".join(c["companies"])
    words = [c.get("description") or "", *c.get("keywords", []), *c.get("industries", []), *c.get("locations", [])]
    body: dict[str, Any] = {"api": "classic", "category": "people", "keywords": " ".join(w for w in words if w)}
    if advanced:
        body["advanced_keywords"] = advanced
    return body


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def candidate_from_item(item: Any) -> Candidate | None:
    """A candidate from one result item (a person, or a post's author); None for anything else."""
    if not isinstance(item, dict):
        return None
    evidence: tuple[Evidence, ...] = ()
    person = item
    kind = str(item.get("type", "")).upper()
    if kind in ("POST", "WEB_MENTION"):
        author = item.get("author")
        if not isinstance(author, dict) or author.get("is_company"):
            return None
        person = author
        text = str(item.get("text") or "")[:2000]
        url = item.get("share_url") or item.get("url")
        evidence = (
            Evidence(
                "post" if kind == "POST" else "web_mention",
                f"'{text}'",
                _date(item.get("parsed_datetime") or item.get("date")),
                url=str(url)[:2000] if url else None,
                ref=str(item.get("social_id") or item.get("id") or "")[:300] or None,
            ),
        )
    else:
        evidence = tuple(
            Evidence(str(sig.get("type") or "custom")[:50], str(sig.get("detail") or "")[:500], _date(sig.get("date")))
            for sig in item.get("signals") or []
            if isinstance(sig, dict) and sig.get("detail")
        )
    url = person.get("public_profile_url") or person.get("profile_url")
    if not url and person.get("public_identifier"):
        url = f"https://www.linkedin.com/in/{person['public_identifier']}"
    name = str(person.get("name") or " ".join(filter(None, [person.get("first_name"), person.get("last_name")])))
    positions = person.get("current_positions") or []
    position = positions[0] if positions and isinstance(positions[0], dict) else {}
    return Candidate(
        linkedin_url=url,
        full_name=name,
        first_name=person.get("first_name"),
        last_name=person.get("last_name"),
        headline=person.get("headline"),
        title=position.get("role"),
        company=position.get("company"),
        location=person.get("location"),
        industry=position.get("industry"),
        provider_id=person.get("id"),
        evidence=evidence,
    )
