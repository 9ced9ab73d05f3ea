"""A simulated people/posts search provider: deterministic from a seed and the query, realistic in behaviour.

- One population of people per seed, so different searches return overlapping people (dedupe matters);
- results ranked by how well people match the query's words, a finite result set per query (40-80), so
  a search can be exhausted; pages with opaque cursors that belong to their query;
- provider URLs in the untidy shapes real providers return (country hosts, tracking queries, case);
- evidence for signal and post searches inside the lookback window;
- latency, occasional transient errors and rate limits with a retry-after.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from functools import cached_property

from services.runtime.clock import Clock
from services.runtime.providers import (
    SIMULATED_FIRST_NAMES,
    SIMULATED_LAST_NAMES,
    ProviderError,
    SimulatedProvider,
    SimulationProfile,
    seeded_rng,
)

from .. import domain
from . import Candidate, Evidence, SearchPage, SearchQuery

POPULATION = 400
RESULTS_MIN, RESULTS_MAX = 40, 80

FIRST = SIMULATED_FIRST_NAMES
LAST = SIMULATED_LAST_NAMES
TITLES = [
    "Head of Sales",
    "VP Sales",
    "Sales Director",
    "VP Marketing",
    "Head of Growth",
    "CTO",
    "VP Engineering",
    "Engineering Manager",
    "Founder & CEO",
    "COO",
    "RevOps Lead",
    "Head of Talent",
    "Talent Acquisition Lead",
    "CFO",
    "Head of Compliance",
    "Product Manager",
]
COMPANIES = [  # name, industry, size, city, tech
    ("Northwind Labs", "Software", "51-200", "Berlin", "Salesforce"),
    ("Bluepeak", "Fintech", "201-500", "London", "HubSpot"),
    ("Cobalt Systems", "Manufacturing", "501-1000", "Munich", "SAP"),
    ("Dataforge", "Software", "11-50", "Amsterdam", "Snowflake"),
    ("Evergreen AI", "Software", "51-200", "Paris", "OpenAI"),
    ("Fluxio", "E-commerce", "201-500", "Lisbon", "Shopify"),
    ("Granite Cloud", "Software", "1001-5000", "Dublin", "AWS"),
    ("Helio Health", "Healthcare", "501-1000", "Stockholm", "Epic"),
    ("Ironclad Pay", "Fintech", "51-200", "Madrid", "Stripe"),
    ("Juniper Robotics", "Manufacturing", "201-500", "Zurich", "ROS"),
    ("Kelp Logistics", "Logistics", "1001-5000", "Rotterdam", "Oracle"),
    ("Lumen Learning", "Education", "51-200", "Copenhagen", "HubSpot"),
    ("Mosaic Retail", "E-commerce", "501-1000", "Milan", "Salesforce"),
    ("Nimbus Security", "Cybersecurity", "201-500", "Tel Aviv", "Okta"),
    ("Orbit Freight", "Logistics", "51-200", "Hamburg", "SAP"),
    ("Pinecrest Bank", "Fintech", "1001-5000", "Frankfurt", "Temenos"),
]
TEAMS = ["sales", "engineering", "marketing", "customer success", "data"]
OUTLETS = ["TechCrunch", "Sifted", "the Financial Times", "Handelsblatt"]
FRAMEWORKS = ["SOC 2", "ISO 27001", "GDPR", "DORA"]
URL_SHAPES = [
    "https://www.linkedin.com/in/{slug}/",
    "https://www.linkedin.com/in/{slug}",
    "https://linkedin.com/in/{Slug}?trk=public_profile",
    "https://{cc}.linkedin.com/in/{slug}",
    "https://www.linkedin.com/in/{slug}/?originalSubdomain={cc}",
    "HTTPS://WWW.LINKEDIN.COM/in/{Slug}/",
]


class _Person:
    """One member of the simulated population (stable for a seed)."""

    def __init__(self, seed: int, index: int) -> None:
        rng = seeded_rng(seed, "person", index)
        self.index = index
        self.first = rng.choice(FIRST)
        self.last = rng.choice(LAST)
        self.title = rng.choice(TITLES)
        self.company, self.industry, self.size, self.city, self.tech = rng.choice(COMPANIES)
        self.location = self.city if rng.random() < 0.85 else rng.choice(COMPANIES)[3]
        self.slug = f"{self.first}-{self.last}-{rng.randrange(16**5):05x}".lower()
        self.cc = rng.choice(["de", "uk", "fr", "nl", "es"])

    @property
    def text(self) -> str:
        """What a query's words are matched against."""
        return f"{self.title} {self.company} {self.industry} {self.location} {self.tech}".lower()


class SimulatedSearchProvider(SimulatedProvider):
    """A Unipile-like search provider simulated in process."""

    name = "simulated"

    def __init__(self, profile: SimulationProfile, clock: Clock) -> None:
        super().__init__(profile)
        self.clock = clock

    @cached_property
    def population(self) -> list[_Person]:
        """Everyone the simulated provider knows (built once per provider)."""
        return [_Person(self.sim.seed, i) for i in range(POPULATION)]

    def _query_key(self, query: SearchQuery) -> str:
        raw = json.dumps({"kind": query.kind, "criteria": query.criteria}, sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def results(self, query: SearchQuery) -> list[_Person]:
        """The whole, finite result set of a query, best match first."""
        key = self._query_key(query)
        criteria = domain.parse_criteria(query.kind, query.criteria)
        terms = domain.search_terms(criteria)
        pool = self.population
        hint = None
        if isinstance(criteria, domain.SignalsCriteria) and criteria.location:
            hint = criteria.location.lower()
        elif isinstance(criteria, domain.PeopleCriteria) and criteria.locations:
            hint = criteria.locations[0].lower()
        if hint and any(hint in p.location.lower() for p in pool):
            pool = [p for p in pool if hint in p.location.lower()] + [p for p in pool if hint not in p.location.lower()]

        def rank(p: _Person) -> tuple[int, int, str]:
            local = 0 if not hint or hint in p.location.lower() else 1
            score = sum(1 for t in terms if t in p.text)
            return (local, -score, hashlib.sha256(f"{key}|{p.index}".encode()).hexdigest())

        count = RESULTS_MIN + seeded_rng(self.sim.seed, "count", key).randint(0, RESULTS_MAX - RESULTS_MIN)
        return sorted(pool, key=rank)[:count]

    def _candidate(self, person: _Person, query: SearchQuery, key: str) -> Candidate:
        rng = seeded_rng(self.sim.seed, "result", key, person.index)
        today = self.clock.now().date()
        shape = rng.choice(URL_SHAPES)
        url: str | None = shape.format(slug=person.slug, Slug=person.slug.title(), cc=person.cc)
        if rng.random() < 0.02:  # providers sometimes return a company page in a people search
            url = f"https://www.linkedin.com/company/{person.company.lower().replace(' ', '-')}/"
        return Candidate(
            linkedin_url=url,
            full_name=f"{person.first} {person.last}",
            first_name=person.first,
            last_name=person.last,
            headline=f"{person.title} at {person.company}",
            title=person.title,
            company=person.company,
            location=person.location,
            industry=person.industry,
            company_size=person.size,
            provider_id=f"sim-{person.slug}",
            evidence=tuple(self._evidence(person, query, today, rng.randint(0, 10**6))),
        )

    def _evidence(self, person: _Person, query: SearchQuery, today: date, salt: int) -> list[Evidence]:
        rng = seeded_rng(self.sim.seed, "evidence", person.index, salt)
        criteria = query.criteria
        lookback = int(criteria.get("lookback_days", 14))

        def when() -> date:
            return today - timedelta(days=rng.randint(0, max(lookback - 1, 0)))

        out: list[Evidence] = []
        if query.kind == "signals":
            types = list(criteria.get("signal_types", []))
            chosen = [t for t in types if rng.random() < 0.6] or [rng.choice(types)]
            team = rng.choice(TEAMS)
            details = {
                "hiring_plans": f"{person.company} plans to grow its {team} team this year",
                "open_jobs": f"{person.company} has {rng.randint(2, 15)} open {team} roles",
                "recent_hires": f"{person.company} hired a new {rng.choice(TITLES)}",
                "tech_stack": f"{person.company} uses {person.tech}",
                "website_signals": f"{person.company} changed its pricing page",
                "compliance": f"{person.company} is preparing for {rng.choice(FRAMEWORKS)}",
                "people": f"{person.first} {person.last} started as {person.title}",
                "news": f"{person.company} was featured in {rng.choice(OUTLETS)}",
                "expansion": f"{person.company} opened an office in {rng.choice(COMPANIES)[3]}",
                "custom": f"{person.company} matches: {criteria.get('custom_signal') or 'custom signal'}",
            }
            out = [Evidence(t, details[t], when()) for t in chosen]
        elif query.kind == "posts":
            keyword = rng.choice(list(criteria.get("keywords", ["outbound"])))
            kind = "post" if criteria.get("source", "posts") == "posts" else "web_mention"
            text = rng.choice(
                [
                    f"Anyone else struggling with {keyword}? We tried three tools this quarter.",
                    f"Honest question: how do you handle {keyword} at a {person.size} company?",
                    f"Looking for recommendations on {keyword} - our current setup is not working.",
                ]
            )
            out = [Evidence(kind, f"'{text}'", when())]
        return out

    async def search(self, query: SearchQuery, cursor: str | None, limit: int) -> SearchPage:
        """One page of the query's result set after ``cursor``."""
        key = self._query_key(query)
        offset = 0
        if cursor is not None:
            prefix, _, value = cursor.partition(":")
            if prefix != f"sim1.{key}" or not value.isdigit():
                raise ProviderError(f"cursor {cursor!r} does not belong to this search", transient=False, status=400)
            offset = int(value)
        await self.simulate("search-call", f"{key}:{offset}", "search provider")
        results = self.results(query)
        page = results[offset : offset + limit]
        end = offset + len(page)
        next_cursor = f"sim1.{key}:{end}" if end < len(results) else None
        return SearchPage([self._candidate(p, query, key) for p in page], next_cursor, total=len(results))
