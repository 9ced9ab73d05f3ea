"""Real provider clients over httpx: a Proxycurl-style profile API and a Hunter-style email finder/verifier.

Profile API (``Authorization: Bearer <key>``):

- ``GET /api/v2/linkedin?linkedin_profile_url=..`` -> the person: ``full_name``, ``first_name``,
  ``last_name``, ``headline``, ``occupation``, ``city``, ``experiences`` (``title``, ``company``,
  ``company_linkedin_profile_url``, ``starts_at``/``ends_at`` as ``{day, month, year}``), ``skills``,
  ``articles`` (``title``, ``link``, ``published_date``) and ``posts`` (``text``, ``url``, ``posted_on``);
- ``GET /api/linkedin/profile/resolve/email?email=..`` -> ``{"linkedin_profile_url": ..}`` for a lead
  known only by email;
- ``GET /api/linkedin/company?url=..`` -> the current company: ``name``, ``industry``,
  ``company_size`` (``[min, max]``) and ``updates`` (``text``, ``posted_on``) read as milestones.

Email API (``X-API-KEY: <key>``):

- ``GET /v2/email-finder?first_name=..&last_name=..&company=..`` ->
  ``{"data": {"email": str|null, "verification": {"status": ..}}}``;
- ``GET /v2/email-verifier?email=..`` -> ``{"data": {"status": valid|invalid|accept_all|webmail|
  disposable|unknown, "result": deliverable|undeliverable|risky}}``; 202 means "still verifying".

Both clients retry 5xx, timeouts and connection errors with exponential backoff, and a 429 after
its ``Retry-After`` unless that is longer than the inline limit (then :class:`RateLimited` tells the
caller when to come back). 404 means "no such person/address"; other 4xx answers are final.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any

from services.runtime.clock import Clock
from services.runtime.http_client import ProviderHttpClient, RetryPolicy, Sleep, decode_json
from services.runtime.providers import ProviderError

from . import EmailResult, LeadRef, ProfileData

# A verifier answers 202 while it is still checking an address: asked again, like a 5xx.
STILL_PROCESSING = {202: "is still processing"}


class _ApiClient:
    """What both provider clients share: the configured HTTP client, and GET-JSON where 404 answers None."""

    label = "provider"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_inline_wait_s: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
    ) -> None:
        if not base_url:
            raise ValueError(f"the http {self.label} needs a base URL")
        self.http = ProviderHttpClient(
            self.label,
            base_url,
            headers={"accept": "application/json", **self.auth_headers(api_key)},
            timeout_s=timeout_s,
            retry=RetryPolicy(max_retries, backoff_s, max_retry_after_s=max_inline_wait_s),
            sleep=sleep,
            clock=clock,
        )

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """How the provider wants its key."""
        raise NotImplementedError

    async def get(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        """The JSON object at ``path``, None on 404; raises ProviderError/RateLimited per the retry policy."""
        response = await self.http.request(
            "GET", path, params=params, retry_statuses=STILL_PROCESSING, passthrough={404}
        )
        if response.status_code == 404:
            return None
        data = decode_json(response, self.label)
        if not isinstance(data, dict):
            status = response.status_code
            raise ProviderError(f"{self.label} answer is not a JSON object", transient=False, status=status)
        return data

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()


def _ymd(value: Any) -> date | None:
    """A date from ``{day, month, year}`` or an ISO string."""
    if isinstance(value, dict) and value.get("year"):
        try:
            return date(int(value["year"]), int(value.get("month") or 1), int(value.get("day") or 1))
        except (TypeError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


_MILESTONES = [
    ("funding", re.compile(r"\b(rais|funding|series [a-e]|seed round|investment)", re.I)),
    ("hiring", re.compile(r"\b(hiring|we're growing|join our team|open roles?)\b", re.I)),
    ("expansion", re.compile(r"\b(new office|expan|opened|opening)", re.I)),
    ("launch", re.compile(r"\b(launch|introducing|release)", re.I)),
]


def _milestone_kind(text: str) -> str:
    for kind, pattern in _MILESTONES:
        if pattern.search(text):
            return kind
    return "news"


def profile_from_api(person: dict[str, Any], company: dict[str, Any] | None, linkedin_url: str) -> ProfileData:
    """Map the profile API's person (and current company) to enrichment's profile fields."""
    experiences = [e for e in person.get("experiences") or [] if isinstance(e, dict) and e.get("title")]
    current = next((e for e in experiences if not e.get("ends_at")), experiences[0] if experiences else {})
    history = [
        {
            "title": e["title"],
            "company": e.get("company") or "",
            "started_on": _ymd(e.get("starts_at")),
            "ended_on": _ymd(e.get("ends_at")),
        }
        for e in experiences
    ]
    posts = [
        {
            "text": str(p.get("text") or "")[:1000],
            "url": p.get("url"),
            "posted_on": _ymd(p.get("posted_on")),
            "kind": "post",
        }
        for p in person.get("posts") or []
        if isinstance(p, dict) and p.get("text")
    ] + [
        {
            "text": str(a.get("title") or ""),
            "url": a.get("link"),
            "posted_on": _ymd(a.get("published_date")),
            "kind": "article",
        }
        for a in person.get("articles") or []
        if isinstance(a, dict) and a.get("title")
    ]
    size = None
    milestones = []
    if company:
        bounds = company.get("company_size")
        if isinstance(bounds, list) and len(bounds) == 2:
            size = f"{bounds[0]}-{bounds[1]}" if bounds[1] else f"{bounds[0]}+"
        for update in company.get("updates") or []:
            if isinstance(update, dict) and update.get("text"):
                text = str(update["text"])[:500]
                milestones.append(
                    {"kind": _milestone_kind(text), "detail": text, "occurred_on": _ymd(update.get("posted_on"))}
                )
    first, last = person.get("first_name"), person.get("last_name")
    full = person.get("full_name") or " ".join(p for p in (first, last) if p)
    return ProfileData(
        {
            "full_name": full,
            "first_name": first,
            "last_name": last,
            "headline": person.get("headline") or person.get("occupation"),
            "role": current.get("title"),
            "company_name": (company or {}).get("name") or current.get("company"),
            "company_size": size,
            "company_industry": (company or {}).get("industry"),
            "city": person.get("city"),
            "linkedin_url": linkedin_url,
            "recent_posts": posts,
            "work_history": history,
            "skills": [str(s) for s in person.get("skills") or []][:30],
            "company_milestones": milestones,
        }
    )


class ProfileApiClient(_ApiClient):
    """Fetches profiles from a Proxycurl-style API."""

    name = "profile-api"
    label = "profile provider"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """A bearer token."""
        return {"Authorization": f"Bearer {api_key}"}

    async def fetch_profile(self, lead: LeadRef) -> ProfileData:
        """The person's profile; a person the API does not know is a permanent error."""
        url = lead.linkedin_url
        if not url and lead.email:
            resolved = await self.get("/api/linkedin/profile/resolve/email", {"email": lead.email})
            url = (resolved or {}).get("linkedin_profile_url")
        if not url:
            raise ProviderError("profile provider found no LinkedIn profile for this lead", transient=False, status=404)
        person = await self.get("/api/v2/linkedin", {"linkedin_profile_url": url})
        if person is None:
            raise ProviderError("profile provider has no profile at this URL", transient=False, status=404)
        experiences = [e for e in person.get("experiences") or [] if isinstance(e, dict)]
        current = next((e for e in experiences if not e.get("ends_at")), None)
        company = None
        if current and current.get("company_linkedin_profile_url"):
            company = await self.get("/api/linkedin/company", {"url": current["company_linkedin_profile_url"]})
        return profile_from_api(person, company, url)


_VERDICT: dict[str, str] = {
    "deliverable": "verified",
    "undeliverable": "invalid",
    "risky": "risky",
    "valid": "verified",
    "invalid": "invalid",
    "disposable": "invalid",
    "accept_all": "risky",
    "webmail": "risky",
    "unknown": "risky",
}


class EmailApiClient(_ApiClient):
    """Finds and verifies work emails with a Hunter-style API."""

    name = "email-api"
    label = "email provider"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """An ``X-API-KEY`` header."""
        return {"X-API-KEY": api_key}

    async def verify(self, email: str) -> EmailResult:
        """The verifier's verdict on one address."""
        answer = await self.get("/v2/email-verifier", {"email": email})
        data = (answer or {}).get("data") or {}
        verdict = _VERDICT.get(str(data.get("result") or ""), _VERDICT.get(str(data.get("status") or ""), "risky"))
        return EmailResult(email, verdict)  # type: ignore[arg-type]

    async def find_email(self, lead: LeadRef, profile: ProfileData) -> EmailResult:
        """Verify the lead's address, or find one from name and company and verify it."""
        if lead.email:
            return await self.verify(lead.email.strip().lower())
        first, last = profile.fields.get("first_name"), profile.fields.get("last_name")
        company = profile.fields.get("company_name") or lead.company
        if not (first and last and company):
            return EmailResult(None, "not_found")
        answer = await self.get(
            "/v2/email-finder", {"first_name": str(first), "last_name": str(last), "company": str(company)}
        )
        data = (answer or {}).get("data") or {}
        email = data.get("email")
        if not email:
            return EmailResult(None, "not_found")
        status = str((data.get("verification") or {}).get("status") or "")
        if status in {"valid", "invalid"}:
            return EmailResult(str(email), _VERDICT[status])  # type: ignore[arg-type]
        return await self.verify(str(email))
