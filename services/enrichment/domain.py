"""Enrichment's pure logic: provider answers to events, cache freshness, and the retry policy. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from uuid import UUID

from leadstream_schemas import LeadEmailEnriched, LeadEmailNotFound, LeadEnrichmentFailed, LeadProfileEnriched

from services.runtime.providers import ProviderError, RateLimited

from .adapters import EmailResult, LeadRef, ProfileData

Stage = Literal["profile", "email"]


def _canonical_linkedin(url: str) -> str:
    """``https://www.linkedin.com/in/<slug>`` for any spelling of a profile URL; other URLs lowercased."""
    raw = url.strip()
    parts = urlsplit(raw if "://" in raw else "https://" + raw)
    segments = [s for s in unquote(parts.path).split("/") if s]
    host = (parts.hostname or "").lower()
    if (
        (host == "linkedin.com" or host.endswith(".linkedin.com"))
        and len(segments) >= 2
        and segments[0].lower() == "in"
    ):
        return f"https://www.linkedin.com/in/{segments[1].lower()}"
    return raw.lower().rstrip("/")


def profile_key(lead: LeadRef) -> str:
    """The cache key of a person: the canonical LinkedIn URL, else the email, else the lead id."""
    if lead.linkedin_url:
        return _canonical_linkedin(lead.linkedin_url)
    if lead.email:
        return "email:" + lead.email.strip().lower()
    return f"lead:{lead.lead_id}"


def cache_is_fresh(enriched_at: datetime | None, now: datetime, window_days: int) -> bool:
    """True when a cached profile is recent enough to reuse instead of calling the provider."""
    return enriched_at is not None and window_days > 0 and now - enriched_at < timedelta(days=window_days)


def cached_email(entry: dict[str, Any] | None, lead: LeadRef, now: datetime, window_days: int) -> EmailResult | None:
    """The cached email verdict when it is fresh and was made for the same input address."""
    if not entry or entry.get("input") != (lead.email.strip().lower() if lead.email else None):
        return None
    checked = datetime.fromisoformat(str(entry["checked_at"]))
    if not cache_is_fresh(checked, now, window_days):
        return None
    return EmailResult(entry.get("email"), entry["status"])


def email_cache_entry(lead: LeadRef, result: EmailResult, now: datetime) -> dict[str, Any]:
    """What the cache keeps of an email verdict."""
    return {
        "input": lead.email.strip().lower() if lead.email else None,
        "email": result.email,
        "status": result.status,
        "checked_at": now.isoformat(),
    }


def fallback_profile(lead: LeadRef) -> ProfileData:
    """What is known without the profile provider (used to look for an email when the profile failed)."""
    first, _, last = (lead.full_name or "").strip().partition(" ")
    return ProfileData(
        {
            "full_name": lead.full_name,
            "first_name": first or None,
            "last_name": last or None,
            "company_name": lead.company,
            "role": lead.title,
            "city": lead.location,
            "linkedin_url": lead.linkedin_url,
        }
    )


def profile_event(lead_id: UUID, campaign_id: UUID | None, profile: ProfileData, provider: str) -> LeadProfileEnriched:
    """The ``LeadProfileEnriched`` event for a provider's profile answer."""
    return LeadProfileEnriched.model_validate(
        {**profile.fields, "lead_id": lead_id, "campaign_id": campaign_id, "provider": provider}
    )


def email_event(
    lead_id: UUID, campaign_id: UUID | None, result: EmailResult, provider: str
) -> LeadEmailEnriched | LeadEmailNotFound:
    """Only a verified address becomes ``LeadEmailEnriched``; anything else says why it is not usable."""
    if result.status == "verified" and result.email:
        return LeadEmailEnriched(lead_id=lead_id, campaign_id=campaign_id, email=result.email, provider=provider)
    reason = "not_found" if result.status == "verified" else result.status
    detail = {
        "risky": "address found but the mailbox could not be confirmed (catch-all or greylisted)",
        "invalid": "address found but the mailbox does not exist",
        "not_found": "no address found for this person",
    }[reason]
    return LeadEmailNotFound(lead_id=lead_id, campaign_id=campaign_id, reason=reason, detail=detail, provider=provider)


def failed_event(
    lead_id: UUID, campaign_id: UUID | None, stage: Stage, reason: str, detail: str
) -> LeadEnrichmentFailed:
    """The ``LeadEnrichmentFailed`` event of a stage that will not succeed."""
    return LeadEnrichmentFailed(
        lead_id=lead_id, campaign_id=campaign_id, stage=stage, reason=reason, detail=detail[:500]
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a lead's stage is retried after provider trouble."""

    initial_s: float = 1.0
    max_s: float = 300.0
    max_attempts: int = 5
    max_rate_limited: int = 50


@dataclass(frozen=True)
class RetryAt:
    """Try the stage again after ``delay_s``, with the updated counters."""

    delay_s: float
    attempts: int
    rate_limited: int


@dataclass(frozen=True)
class GiveUp:
    """Record the stage as failed for ``reason``."""

    reason: str


def after_error(exc: ProviderError, attempts: int, rate_limited: int, policy: RetryPolicy) -> RetryAt | GiveUp:
    """What to do after a provider error: honour a rate limit, back off a transient error, give up otherwise.

    ``attempts`` and ``rate_limited`` count the failures of this stage so far (before ``exc``).
    """
    if isinstance(exc, RateLimited):
        if rate_limited + 1 >= policy.max_rate_limited:
            return GiveUp("rate_limited")
        return RetryAt(min(exc.retry_after_s, policy.max_s), attempts, rate_limited + 1)
    if not exc.transient:
        return GiveUp("not_found" if exc.status == 404 else "provider_error")
    if attempts + 1 >= policy.max_attempts:
        return GiveUp("retries_exhausted")
    return RetryAt(min(policy.initial_s * 2**attempts, policy.max_s), attempts + 1, rate_limited)
