"""Enrichment's pure logic: turning provider answers into events, and cache freshness. No I/O."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from leadstream_schemas import LeadEmailEnriched, LeadEmailNotFound, LeadProfileEnriched

from .adapters import EmailResult, LeadRef, ProfileData


def profile_key(lead: LeadRef) -> str:
    """The cache key of a person: the normalised LinkedIn URL when known, else the lead id."""
    if lead.linkedin_url:
        return lead.linkedin_url.strip().lower().rstrip("/")
    return f"lead:{lead.lead_id}"


def cache_is_fresh(enriched_at: datetime | None, now: datetime, window_days: int) -> bool:
    """True when a cached profile is recent enough to reuse instead of calling the provider."""
    return enriched_at is not None and window_days > 0 and now - enriched_at < timedelta(days=window_days)


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
