"""The profile and email HTTP clients against a local HTTP server speaking those protocols (incl. 429 and 5xx)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.enrichment.adapters import LeadRef, ProfileData
from services.enrichment.adapters.http import EmailApiClient, ProfileApiClient
from services.runtime.providers import ProviderError, RateLimited
from tests.services.enrichment.conftest import StartEnrichment
from tests.services.enrichment.support import discovered, enrich
from tests.support.local_http import Sleeps, serve

PROFILE_KEY, EMAIL_KEY = "profile-secret", "email-secret"
ADA = "https://www.linkedin.com/in/ada-adler"
PERSON = {
    "full_name": "Ada Adler",
    "first_name": "Ada",
    "last_name": "Adler",
    "headline": "Head of Sales at Northwind | building outbound teams",
    "occupation": "Head of Sales at Northwind",
    "city": "Berlin",
    "skills": ["Sales", "SaaS"],
    "experiences": [
        {
            "title": "Head of Sales",
            "company": "Northwind",
            "starts_at": {"day": 1, "month": 11, "year": 2025},
            "ends_at": None,
            "company_linkedin_profile_url": "https://www.linkedin.com/company/northwind",
        },
        {
            "title": "Sales Manager",
            "company": "Bluepeak",
            "starts_at": {"day": 1, "month": 3, "year": 2020},
            "ends_at": {"day": 31, "month": 10, "year": 2025},
        },
    ],
    "posts": [{"text": "We doubled pipeline with outbound", "url": "https://lnkd.in/p1", "posted_on": "2025-12-20"}],
    "articles": [
        {
            "title": "Hiring SDRs in 2026",
            "link": "https://lnkd.in/a1",
            "published_date": {"day": 2, "month": 12, "year": 2025},
        }
    ],
}
COMPANY = {
    "name": "Northwind Labs",
    "industry": "Software",
    "company_size": [51, 200],
    "updates": [
        {"text": "We raised a $20M Series A!", "posted_on": "2025-12-01"},
        {"text": "We're hiring 10 engineers", "posted_on": "2025-12-10"},
    ],
}
VERDICTS = {
    "ada.adler@northwind.io": {"status": "valid", "result": "deliverable"},
    "catchall@northwind.io": {"status": "accept_all", "result": "risky"},
    "gone@northwind.io": {"status": "invalid", "result": "undeliverable"},
}


class FakeProviders:
    """A Proxycurl-style profile API and a Hunter-style email API; scripted error answers come first."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.app = FastAPI()
        for path in (
            "/api/v2/linkedin",
            "/api/linkedin/profile/resolve/email",
            "/api/linkedin/company",
            "/v2/email-finder",
            "/v2/email-verifier",
        ):
            self.app.get(path)(self.handle)

    async def handle(self, request: Request) -> JSONResponse:
        path, q = request.url.path, dict(request.query_params)
        self.requests.append((path, q))
        profile_api = path.startswith("/api/")
        auth = request.headers.get("authorization") if profile_api else request.headers.get("x-api-key")
        if auth != (f"Bearer {PROFILE_KEY}" if profile_api else EMAIL_KEY):
            return JSONResponse({"error": "invalid api key"}, 401)
        if self.script[path]:
            status, headers = self.script[path].pop(0)
            return JSONResponse({"error": "scripted"}, status, headers=headers)
        if path == "/api/v2/linkedin":
            return JSONResponse(PERSON) if q["linkedin_profile_url"] == ADA else JSONResponse({}, 404)
        if path == "/api/linkedin/profile/resolve/email":
            found = q["email"] == "ada.adler@northwind.io"
            return JSONResponse({"linkedin_profile_url": ADA}) if found else JSONResponse({}, 404)
        if path == "/api/linkedin/company":
            return JSONResponse(COMPANY)
        if path == "/v2/email-finder":
            if q.get("last_name") == "Nobody":
                return JSONResponse({"data": {"email": None, "score": 0}})
            email = f"{q['first_name']}.{q['last_name']}@northwind.io".lower()
            known = "valid" if q["first_name"] == "Ada" else None
            return JSONResponse({"data": {"email": email, "score": 90, "verification": {"status": known}}})
        verdict = VERDICTS.get(q["email"], {"status": "unknown", "result": "risky"})
        return JSONResponse({"data": {"email": q["email"], **verdict}})


def _clients(base: str, sleeps: Sleeps, **kw: Any) -> tuple[ProfileApiClient, EmailApiClient]:
    options: dict[str, Any] = {"max_retries": 2, "backoff_s": 0.1, "max_inline_wait_s": 5.0, "sleep": sleeps, **kw}
    return ProfileApiClient(base, PROFILE_KEY, **options), EmailApiClient(base, EMAIL_KEY, **options)


async def test_profile_api_maps_person_company_posts_and_history() -> None:
    fake, sleeps = FakeProviders(), Sleeps()
    async with serve(fake.app) as base:
        profiles, _ = _clients(base, sleeps)
        profile = await profiles.fetch_profile(LeadRef("1", linkedin_url=ADA))
        by_email = await profiles.fetch_profile(LeadRef("2", email="ada.adler@northwind.io"))
        await profiles.aclose()
    f = profile.fields
    assert (f["full_name"], f["role"], f["company_name"], f["company_size"], f["company_industry"], f["city"]) == (
        "Ada Adler",
        "Head of Sales",
        "Northwind Labs",
        "51-200",
        "Software",
        "Berlin",
    )
    assert f["work_history"][0] == {
        "title": "Head of Sales",
        "company": "Northwind",
        "started_on": date(2025, 11, 1),
        "ended_on": None,
    }
    assert [(p["kind"], p["posted_on"]) for p in f["recent_posts"]] == [
        ("post", date(2025, 12, 20)),
        ("article", date(2025, 12, 2)),
    ]
    assert [m["kind"] for m in f["company_milestones"]] == ["funding", "hiring"]
    assert f["skills"] == ["Sales", "SaaS"] and f["linkedin_url"] == ADA
    assert by_email.fields["linkedin_url"] == ADA
    assert [p for p, _ in fake.requests] == [
        "/api/v2/linkedin",
        "/api/linkedin/company",
        "/api/linkedin/profile/resolve/email",
        "/api/v2/linkedin",
        "/api/linkedin/company",
    ]


async def test_profile_api_not_found_is_permanent() -> None:
    fake, sleeps = FakeProviders(), Sleeps()
    async with serve(fake.app) as base:
        profiles, _ = _clients(base, sleeps)
        for ref in (
            LeadRef("1", linkedin_url="https://www.linkedin.com/in/nobody"),
            LeadRef("2", email="stranger@x.io"),
            LeadRef("3"),
        ):
            with pytest.raises(ProviderError) as err:
                await profiles.fetch_profile(ref)
            assert (err.value.transient, err.value.status) == (False, 404)
        wrong = ProfileApiClient(base, "wrong", sleep=sleeps)
        with pytest.raises(ProviderError) as unauthorized:
            await wrong.fetch_profile(LeadRef("1", linkedin_url=ADA))
        assert (unauthorized.value.transient, unauthorized.value.status) == (False, 401)
        await wrong.aclose()
        await profiles.aclose()


async def test_429_and_5xx_are_retried_then_surfaced() -> None:
    fake, sleeps = FakeProviders(), Sleeps()
    async with serve(fake.app) as base:
        profiles, emails = _clients(base, sleeps)
        fake.script["/api/v2/linkedin"] = [(429, {"Retry-After": "3"}), (503, {})]
        assert (await profiles.fetch_profile(LeadRef("1", linkedin_url=ADA))).fields["full_name"] == "Ada Adler"
        assert sleeps.waits == [3.0, 0.2]
        fake.script["/api/v2/linkedin"] = [(429, {"Retry-After": "90"})]
        with pytest.raises(RateLimited) as limited:
            await profiles.fetch_profile(LeadRef("1", linkedin_url=ADA))
        assert limited.value.retry_after_s == 90
        fake.script["/v2/email-verifier"] = [(500, {}), (502, {}), (503, {})]
        with pytest.raises(ProviderError) as failed:
            await emails.verify("ada.adler@northwind.io")
        assert (failed.value.transient, failed.value.status) == (True, 503)
        fake.script["/v2/email-verifier"] = [(202, {})]  # "still verifying": asked again
        assert (await emails.verify("ada.adler@northwind.io")).status == "verified"
        await profiles.aclose()
        await emails.aclose()


async def test_email_api_finds_and_verifies() -> None:
    fake, sleeps = FakeProviders(), Sleeps()

    def profile(first: str, last: str) -> ProfileData:
        return ProfileData({"first_name": first, "last_name": last, "company_name": "Northwind"})

    async with serve(fake.app) as base:
        _, emails = _clients(base, sleeps)
        ada = await emails.find_email(LeadRef("1"), profile("Ada", "Adler"))
        ben = await emails.find_email(LeadRef("2"), profile("Ben", "Brandt"))
        nobody = await emails.find_email(LeadRef("3"), profile("No", "Nobody"))
        nameless = await emails.find_email(LeadRef("4"), ProfileData({}))
        given = await emails.find_email(LeadRef("5", email=" Gone@Northwind.io"), profile("X", "Y"))
        catchall = await emails.verify("catchall@northwind.io")
        await emails.aclose()
    assert (ada.email, ada.status) == ("ada.adler@northwind.io", "verified")
    assert (ben.email, ben.status) == ("ben.brandt@northwind.io", "risky")  # verifier: unknown
    assert (nobody.email, nobody.status) == (None, "not_found")
    assert nameless.status == "not_found"
    assert (given.email, given.status) == ("gone@northwind.io", "invalid")
    assert catchall.status == "risky"
    paths = [p for p, _ in fake.requests]
    # Ada's finder answer was already verified: no verifier call; the given address is only verified.
    assert paths == [
        "/v2/email-finder",
        "/v2/email-finder",
        "/v2/email-verifier",
        "/v2/email-finder",
        "/v2/email-verifier",
        "/v2/email-verifier",
    ]


async def test_enrichment_service_over_the_http_providers(
    start_enrichment: StartEnrichment, own_topic_prefix: str
) -> None:
    fake = FakeProviders()
    async with serve(fake.app) as base:
        # A long retry-after parks the lead instead of sleeping in the consumer; it is retried later.
        fake.script["/v2/email-finder"] = [(429, {"Retry-After": "0.05"})]
        service = await start_enrichment(
            topic_prefix=own_topic_prefix,  # it counts provider calls: no other test's leads
            enrichment_provider="http",
            profile_api_base_url=base,
            profile_api_key=PROFILE_KEY,
            email_api_base_url=base,
            email_api_key=EMAIL_KEY,
            provider_backoff_s=0.01,
            provider_max_inline_wait_s=0,
        )
        ada = discovered(f"ws-{uuid.uuid4().hex[:6]}", linkedin_url=ADA, full_name="Ada Adler")
        ghost = discovered(linkedin_url=f"https://www.linkedin.com/in/ghost-{uuid.uuid4().hex[:6]}")
        got = await enrich(service, [ada, ghost])
    assert fake.script["/v2/email-finder"] == [], "the 429 was answered"
    assert [q for p, q in fake.requests if p == "/v2/email-finder"] == [
        {"first_name": "Ada", "last_name": "Adler", "company": "Northwind Labs"}
    ] * 2
    a = got[str(ada.data.lead_id)]
    assert [e.type.split(".")[2] for e in a] == ["discovered", "profile_enriched", "email_enriched"]
    assert (a[1].data.company_name, a[1].data.company_size, a[1].data.provider) == (
        "Northwind Labs",
        "51-200",
        "profile-api",
    )
    assert (a[2].data.email, a[2].data.provider) == ("ada.adler@northwind.io", "email-api")
    g = got[str(ghost.data.lead_id)]
    assert (g[1].type, g[1].data.stage, g[1].data.reason) == (
        "leadstream.lead.enrichment_failed.v1",
        "profile",
        "not_found",
    )
    assert g[2].type == "leadstream.lead.email_not_found.v1"
