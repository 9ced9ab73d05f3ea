"""The providers enrichment talks to, behind Protocols: a profile provider and an email finder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class LeadRef:
    """What is known of a lead when enrichment starts."""

    lead_id: str
    linkedin_url: str | None = None
    full_name: str | None = None
    company: str | None = None
    email: str | None = None
    title: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class ProfileData:
    """A provider's profile answer, as plain data (mapped to the event by the domain)."""

    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmailResult:
    """An email finder's answer: an address (or none) and its verification status."""

    email: str | None
    status: Literal["verified", "risky", "invalid", "not_found"]


class ProfileProvider(Protocol):
    """Looks up a person's professional profile."""

    name: str

    async def fetch_profile(self, lead: LeadRef) -> ProfileData:
        """The person's profile; raises ProviderError (or RateLimited) when it cannot be had now."""
        ...


class EmailFinder(Protocol):
    """Finds and verifies a person's work email."""

    name: str

    async def find_email(self, lead: LeadRef, profile: ProfileData) -> EmailResult:
        """Find (unless the lead has one) and verify the person's email address."""
        ...
