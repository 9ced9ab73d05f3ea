"""Enrichment's pure logic: cache keys and freshness, email verdicts, and the retry policy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.enrichment import domain
from services.enrichment.adapters import EmailResult, LeadRef
from services.runtime.providers import ProviderError, RateLimited

NOW = datetime(2026, 1, 5, 8, tzinfo=UTC)


def test_profile_key_is_the_person_whatever_the_spelling() -> None:
    a = domain.profile_key(LeadRef("1", linkedin_url="https://www.linkedin.com/in/ada-adler"))
    assert a == "https://www.linkedin.com/in/ada-adler"
    for url in [
        "HTTPS://DE.LinkedIn.com/in/Ada-Adler/?trk=x",
        "linkedin.com/in/ada-adler/",
        "http://linkedin.com/in/ada-adler#top",
    ]:
        assert domain.profile_key(LeadRef("2", linkedin_url=url)) == a
    assert domain.profile_key(LeadRef("3", email=" Ada@Northwind.io")) == "email:ada@northwind.io"
    assert domain.profile_key(LeadRef("4")) == "lead:4"


def test_cache_freshness_window() -> None:
    assert domain.cache_is_fresh(NOW - timedelta(days=29), NOW, 30)
    assert not domain.cache_is_fresh(NOW - timedelta(days=30), NOW, 30)
    assert not domain.cache_is_fresh(NOW, NOW, 0), "a window of 0 turns the cache off"
    assert not domain.cache_is_fresh(None, NOW, 30)


def test_cached_email_is_used_only_for_the_same_input_and_while_fresh() -> None:
    lead = LeadRef("1", email="ada@northwind.io")
    entry = domain.email_cache_entry(lead, EmailResult("ada@northwind.io", "verified"), NOW)
    assert domain.cached_email(entry, LeadRef("2", email="ADA@northwind.io "), NOW + timedelta(days=1), 30) == (
        EmailResult("ada@northwind.io", "verified")
    )
    assert domain.cached_email(entry, LeadRef("2", email="other@northwind.io"), NOW, 30) is None
    assert domain.cached_email(entry, LeadRef("2"), NOW, 30) is None
    assert domain.cached_email(entry, lead, NOW + timedelta(days=31), 30) is None
    assert domain.cached_email(None, lead, NOW, 30) is None


def test_only_verified_addresses_become_email_enriched() -> None:
    lead = uuid.uuid4()
    ok = domain.email_event(lead, None, EmailResult("a@b.io", "verified"), "sim")
    assert ok.event_type == "leadstream.lead.email_enriched.v1" and ok.email == "a@b.io"  # type: ignore[union-attr]
    statuses: list[Literal["risky", "invalid", "not_found"]] = ["risky", "invalid", "not_found"]
    for status in statuses:
        event = domain.email_event(lead, None, EmailResult("a@b.io" if status != "not_found" else None, status), "x")
        assert event.event_type == "leadstream.lead.email_not_found.v1"
        assert event.reason == status and event.detail  # type: ignore[union-attr]


def test_retry_policy() -> None:
    policy = domain.RetryPolicy(initial_s=1, max_s=10, max_attempts=3, max_rate_limited=4)
    limited = RateLimited(7.5)
    assert domain.after_error(limited, 0, 0, policy) == domain.RetryAt(7.5, 0, 1)
    assert domain.after_error(RateLimited(60), 2, 1, policy) == domain.RetryAt(10, 2, 2)  # capped
    assert domain.after_error(limited, 0, 3, policy) == domain.GiveUp("rate_limited")
    flaky = ProviderError("503", transient=True, status=503)
    assert domain.after_error(flaky, 0, 0, policy) == domain.RetryAt(1, 1, 0)
    assert domain.after_error(flaky, 1, 5, policy) == domain.RetryAt(2, 2, 5)
    assert domain.after_error(flaky, 2, 0, policy) == domain.GiveUp("retries_exhausted")
    assert domain.after_error(ProviderError("gone", transient=False, status=404), 0, 0, policy) == domain.GiveUp(
        "not_found"
    )
    assert domain.after_error(ProviderError("bad key", transient=False, status=401), 0, 0, policy) == domain.GiveUp(
        "provider_error"
    )


def test_fallback_profile_uses_what_the_lead_says() -> None:
    ref = LeadRef("1", full_name="Ada Adler", company="Northwind", title="CTO")
    fields = domain.fallback_profile(ref).fields
    assert (fields["first_name"], fields["last_name"], fields["company_name"], fields["role"]) == (
        "Ada",
        "Adler",
        "Northwind",
        "CTO",
    )
