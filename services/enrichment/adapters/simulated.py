"""Simulated profile provider and email finder: deterministic from a seed, realistic in behaviour.

They answer with latency, occasional transient errors, rate limits and (when configured) permanent
"not found" errors, as the real providers do; profiles with recent posts, career moves and company
milestones; emails that are verified for most leads, risky or invalid for some, and missing for
others. The data is keyed by the person (LinkedIn URL, else email), so the same person found in two
workspaces gets the same profile.
"""

from __future__ import annotations

from datetime import date, timedelta

from services.runtime.clock import Clock
from services.runtime.providers import (
    SIMULATED_FIRST_NAMES,
    SIMULATED_LAST_NAMES,
    ProviderError,
    SimulatedProvider,
    SimulationProfile,
    seeded_rng,
)

from . import EmailResult, LeadRef, ProfileData

# Fewer names than discovery's population uses: more would change every seeded profile.
FIRST = SIMULATED_FIRST_NAMES[:25]
LAST = SIMULATED_LAST_NAMES[:20]

ROLES = [
    "Head of Sales",
    "VP Marketing",
    "CTO",
    "Founder & CEO",
    "RevOps Lead",
    "Head of Growth",
    "Engineering Manager",
    "Talent Acquisition Lead",
    "COO",
    "Sales Director",
]
COMPANIES = [
    "Northwind Labs",
    "Bluepeak",
    "Cobalt Systems",
    "Dataforge",
    "Evergreen AI",
    "Fluxio",
    "Granite Cloud",
    "Helio Health",
    "Ironclad Pay",
    "Juniper Robotics",
]
INDUSTRIES = ["Software", "Fintech", "Healthcare", "Logistics", "Manufacturing", "E-commerce"]
SIZES = ["11-50", "51-200", "201-500", "501-1000", "1001-5000"]
CITIES = ["Berlin", "London", "Paris", "Amsterdam", "Lisbon", "Stockholm", "Madrid", None]
TOPICS = [
    ("outbound pipeline", "We rebuilt our outbound motion this quarter and pipeline doubled."),
    ("hiring SDRs", "We're hiring SDRs in three countries - the interview loop taught me a lot."),
    ("AI in sales", "Tried AI-written first lines for a month. Reply rates went up, but only with real context."),
    ("remote teams", "Two years fully remote: what I'd keep and what I'd change."),
    ("RevOps tooling", "Our RevOps stack is finally simple: CRM, sequencer, warehouse."),
]
MILESTONES = [
    ("funding", "raised a Series B of $30M"),
    ("hiring", "is hiring 12 people in sales and engineering"),
    ("expansion", "opened an office in Madrid"),
    ("news", "was named a fastest-growing company in its region"),
    ("launch", "launched its self-serve plan"),
]
SKILLS = ["Sales", "Negotiation", "SaaS", "Leadership", "Python", "Marketing", "Hiring", "Strategy"]


def person_key(lead: LeadRef) -> str:
    """What identifies the person to the simulated providers."""
    if lead.linkedin_url:
        return lead.linkedin_url.strip().lower().rstrip("/")
    if lead.email:
        return lead.email.strip().lower()
    return f"lead:{lead.lead_id}"


class _Faulty(SimulatedProvider):
    """Shared behaviour of the simulated providers: latency, transient and permanent errors, rate limits."""

    def __init__(self, profile: SimulationProfile, clock: Clock, permanent_error_rate: float = 0.0) -> None:
        super().__init__(profile)
        self.clock = clock
        self.permanent_error_rate = permanent_error_rate

    @property
    def today(self) -> date:
        """The provider's today (profiles date posts and moves relative to it)."""
        return self.clock.now().date()

    async def _call(self, kind: str, key: str) -> None:
        await self.simulate(kind, key, "provider", counted_as=f"{kind}:{key}")
        # Permanent failures stick to a person, as a deleted profile does.
        if seeded_rng(self.sim.seed, kind, "gone", key).random() < self.permanent_error_rate:
            raise ProviderError(f"simulated 404: no {kind} data for this person", transient=False, status=404)


class SimulatedProfileProvider(_Faulty):
    """A profile provider that invents a plausible, stable profile for each lead."""

    name = "simulated"

    async def fetch_profile(self, lead: LeadRef) -> ProfileData:
        """A stable, plausible profile for the person (what the lead already says is kept)."""
        key = person_key(lead)
        await self._call("profile", key)
        rng = seeded_rng(self.sim.seed, "profile-data", key)
        first: str = rng.choice(FIRST)
        last: str | None = rng.choice(LAST)
        if lead.full_name and " " in lead.full_name.strip():
            first, last = lead.full_name.strip().split(" ", 1)
        elif lead.full_name:
            first, last = lead.full_name.strip(), None
        company = lead.company or rng.choice(COMPANIES)
        role = rng.choice(ROLES)
        if lead.title:
            role = lead.title
        posts = []
        for _ in range(rng.choice([0, 1, 2, 3])):
            topic, text = rng.choice(TOPICS)
            posts.append(
                {
                    "text": text,
                    "topic": topic,
                    "posted_on": self.today - timedelta(days=rng.randint(1, 40)),
                    "kind": rng.choice(["post", "post", "article"]),
                }
            )
        moved = rng.random() < 0.3
        history = [
            {
                "title": role,
                "company": company,
                "started_on": self.today - timedelta(days=rng.randint(20, 80) if moved else rng.randint(400, 2000)),
            }
        ]
        history.append(
            {
                "title": rng.choice(ROLES),
                "company": rng.choice(COMPANIES),
                "started_on": self.today - timedelta(days=2500),
                "ended_on": history[0]["started_on"],
            }
        )
        milestones = []
        if rng.random() < 0.4:
            kind, detail = rng.choice(MILESTONES)
            milestones.append(
                {
                    "kind": kind,
                    "detail": f"{company} {detail}",
                    "occurred_on": self.today - timedelta(days=rng.randint(3, 60)),
                }
            )
        return ProfileData(
            {
                "full_name": f"{first} {last}" if last else first,
                "first_name": first,
                "last_name": last,
                "headline": f"{role} at {company}",
                "role": role,
                "company_name": company,
                "company_size": rng.choice(SIZES),
                "company_industry": rng.choice(INDUSTRIES),
                "city": lead.location or rng.choice(CITIES),
                "linkedin_url": lead.linkedin_url,
                "recent_posts": posts,
                "work_history": history,
                "skills": rng.sample(SKILLS, 3),
                "company_milestones": milestones,
            }
        )


class SimulatedEmailFinder(_Faulty):
    """An email finder: ~60% verified, ~15% risky, ~10% invalid, the rest not found.

    A lead that comes with an address (CSV, manual) is only verified: ~85% verified, the rest risky
    or invalid.
    """

    name = "simulated"

    async def find_email(self, lead: LeadRef, profile: ProfileData) -> EmailResult:
        """Find and verify the person's address (deterministic per person)."""
        key = person_key(lead)
        await self._call("email", key)
        rng = seeded_rng(self.sim.seed, "email-data", key)
        if lead.email:
            roll = rng.random()
            address = lead.email.strip().lower()
            if roll < 0.85:
                return EmailResult(address, "verified")
            return EmailResult(address, "risky" if roll < 0.93 else "invalid")
        first = str(profile.fields.get("first_name") or "contact").lower().replace(" ", "")
        last = str(profile.fields.get("last_name") or "").lower().replace(" ", "")
        domain = str(profile.fields.get("company_name") or "example").lower().replace(" ", "").replace("&", "")
        address = f"{first}.{last}@{domain}.example" if last else f"{first}@{domain}.example"
        roll = rng.random()
        if roll < 0.6:
            return EmailResult(address, "verified")
        if roll < 0.75:
            return EmailResult(address, "risky")
        if roll < 0.85:
            return EmailResult(address, "invalid")
        return EmailResult(None, "not_found")
