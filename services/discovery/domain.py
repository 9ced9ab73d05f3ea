"""Discovery's pure logic: identity and dedupe, criteria validation, fit signals, search progress, CSV rows.

No I/O and no clock reads: the current time is passed in.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

from leadstream_schemas import (
    FitSignal,
    LeadAddedToSourceGroup,
    LeadDiscovered,
    LeadEnrichmentRequested,
    LeadPostMatched,
    LeadSource,
    Post,
)
from leadstream_schemas.bounds import unstorable
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from .adapters import Candidate

# Never change: lead ids derived from it are stored and published.
LEAD_NAMESPACE = uuid.UUID("3b0c7f52-1d4e-5a8b-9c6f-0e2d4a6b8c1f")

LOOKBACK_MIN_DAYS = 1
LOOKBACK_MAX_DAYS = 30
MAX_TEXT = 300

SearchKind = Literal["people", "signals", "posts", "linkedin_url"]
SignalType = Literal[
    "hiring_plans",
    "open_jobs",
    "recent_hires",
    "tech_stack",
    "website_signals",
    "compliance",
    "people",
    "news",
    "expansion",
    "custom",
]
SIGNAL_TYPES: tuple[str, ...] = SignalType.__args__  # type: ignore[attr-defined]

SOURCE_OF_KIND: dict[str, LeadSource] = {
    "people": LeadSource.search,
    "signals": LeadSource.signals,
    "posts": LeadSource.posts,
    "linkedin_url": LeadSource.linkedin_url,
    "csv": LeadSource.csv,
    "manual": LeadSource.manual,
}

# -- identity ------------------------------------------------------------------------------------

# A profile name: letters (any script), digits, hyphens, underscores. No "%" (a percent-encoded "/" or "." left
# after decoding), no "." (".." would walk a provider's path when the name is put into one).
_SLUG = re.compile(r"^[\w\-]{2,100}$", re.UNICODE)
_EMAIL = re.compile(r"^[^@\s,;<>()\[\]]+@[^@\s,;<>()\[\]]+\.[^@\s,;<>()\[\].]{2,}$")


def _linkedin_parts(raw: str) -> tuple[str, str, list[str], str]:
    """(scheme, host, path segments, query) of a LinkedIn URL; ValueError when it is not one."""
    s = raw.strip()
    if not s:
        raise ValueError("is empty")
    if "://" not in s:
        s = "https://" + s
    parts = urlsplit(s)
    if parts.scheme.lower() not in {"http", "https"}:
        raise ValueError("must be an http(s) URL")
    host = (parts.hostname or "").lower()
    if host != "linkedin.com" and not host.endswith(".linkedin.com"):
        raise ValueError(f"must be a linkedin.com URL, not {host or 'an empty host'!r}")
    return parts.scheme.lower(), host, [p for p in unquote(parts.path).split("/") if p], parts.query


def normalise_linkedin_url(raw: str) -> str:
    """The canonical form of a LinkedIn profile URL: ``https://www.linkedin.com/in/<slug>``.

    Host case, country subdomains, query strings, fragments, trailing slashes and sub-pages
    (``/in/x/details/...``) do not make a different person; the slug is case-insensitive on LinkedIn.
    """
    _, _, segments, _ = _linkedin_parts(raw)
    if len(segments) < 2 or segments[0].lower() != "in":
        raise ValueError("must be a LinkedIn profile URL (https://www.linkedin.com/in/<name>)")
    slug = segments[1].lower()
    if not _SLUG.match(slug):
        raise ValueError(f"has an invalid profile name {segments[1]!r}")
    return f"https://www.linkedin.com/in/{slug}"


def normalise_email(raw: str) -> str:
    """An email address trimmed and lowercased; ValueError when it is not an address."""
    s = raw.strip().lower()
    if s.startswith("mailto:"):
        s = s.removeprefix("mailto:")
    if len(s) > 254 or not _EMAIL.match(s):
        raise ValueError(f"{raw.strip()!r} is not a valid email address")
    return s


def lead_id_for(workspace_id: str, *, linkedin_url: str | None = None, email: str | None = None) -> UUID:
    """The deterministic id of a person in a workspace: from the LinkedIn URL when known, else the email.

    Inputs are normalised here too, so any spelling of the same URL or address gives the same id.
    """
    if linkedin_url:
        return uuid.uuid5(LEAD_NAMESPACE, f"{workspace_id}|linkedin|{normalise_linkedin_url(linkedin_url)}")
    if email:
        return uuid.uuid5(LEAD_NAMESPACE, f"{workspace_id}|email|{normalise_email(email)}")
    raise ValueError("a lead needs a LinkedIn URL or an email")


def normalise_linkedin_search_url(raw: str) -> str:
    """A LinkedIn people-search URL (classic or Sales Navigator), with its host made canonical.

    The query (the search itself) is kept; the fragment is dropped.
    """
    _, _, segments, query = _linkedin_parts(raw)
    path = "/".join(s.lower() for s in segments)
    if path not in {"search/results/people", "sales/search/people"}:
        raise ValueError(
            "must be a LinkedIn people search URL (https://www.linkedin.com/search/results/people/?keywords=...)"
        )
    if not query:
        raise ValueError("has no search parameters (expected e.g. ?keywords=...)")
    return f"https://www.linkedin.com/{path}/?{query}"


def _storable(value: Any) -> Any:
    reason = unstorable(value) if isinstance(value, str) else None
    if reason is not None:
        raise ValueError(reason)
    return value


Storable = AfterValidator(_storable)
"""Refuses a NUL or a lone surrogate (Postgres cannot store them), like the contract's bounded strings."""


# -- criteria ------------------------------------------------------------------------------------

Term = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable]


class _Criteria(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _lookback(value: int) -> int:
    if not LOOKBACK_MIN_DAYS <= value <= LOOKBACK_MAX_DAYS:
        raise ValueError(f"lookback_days must be between {LOOKBACK_MIN_DAYS} and {LOOKBACK_MAX_DAYS} days, got {value}")
    return value


class PeopleCriteria(_Criteria):
    """A description of the people (or companies) wanted; at least one part must be given."""

    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None
    titles: list[Term] = Field(default_factory=list, max_length=20)
    companies: list[Term] = Field(default_factory=list, max_length=20)
    industries: list[Term] = Field(default_factory=list, max_length=20)
    locations: list[Term] = Field(default_factory=list, max_length=20)
    keywords: list[Term] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _something(self) -> PeopleCriteria:
        if not (
            self.description or self.titles or self.companies or self.industries or self.locations or self.keywords
        ):
            raise ValueError("describe who you want: description, titles, companies, industries, locations or keywords")
        return self


class SignalsCriteria(_Criteria):
    """Signal discovery from a prompt: which signals, where, and how far back (1-30 days)."""

    prompt: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]
    signal_types: list[SignalType] = Field(min_length=1, max_length=len(SIGNAL_TYPES))
    location: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    lookback_days: int = 14
    custom_signal: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)] | None = None

    _check_lookback = field_validator("lookback_days")(_lookback)

    @field_validator("signal_types")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _custom_described(self) -> SignalsCriteria:
        if "custom" in self.signal_types and not self.custom_signal:
            raise ValueError("custom_signal must describe the signal when signal_types contains 'custom'")
        return self


class PostsCriteria(_Criteria):
    """Recent posts watched for intent language (``keywords``: "looking for a CRM") or pain language
    (``pain_keywords``: "struggling with outbound"), on LinkedIn posts or the web."""

    keywords: list[Term] = Field(min_length=1, max_length=20)
    pain_keywords: list[Term] = Field(default_factory=list, max_length=20)
    source: Literal["web", "posts"] = "posts"
    lookback_days: int = 14

    _check_lookback = field_validator("lookback_days")(_lookback)


class LinkedInUrlCriteria(_Criteria):
    """A fixed LinkedIn people-search URL whose results become leads."""

    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]

    @field_validator("url")
    @classmethod
    def _valid(cls, value: str) -> str:
        return normalise_linkedin_search_url(value)


Criteria = PeopleCriteria | SignalsCriteria | PostsCriteria | LinkedInUrlCriteria
CRITERIA_OF_KIND: dict[str, type[_Criteria]] = {
    "people": PeopleCriteria,
    "signals": SignalsCriteria,
    "posts": PostsCriteria,
    "linkedin_url": LinkedInUrlCriteria,
}


def parse_criteria(kind: str, raw: Mapping[str, Any]) -> Criteria:
    """Validate ``raw`` as the criteria of ``kind``; raises pydantic's ValidationError with field paths."""
    model = CRITERIA_OF_KIND[kind]
    return model.model_validate(dict(raw))  # type: ignore[return-value]


_WORD = re.compile(r"[\w+#.]+", re.UNICODE)
_STOP = frozenset(
    "a an and are at by for from in into is of on or the to who with we our looking want people companies "
    "that their they this those were which".split()
)


def _words(text: str) -> list[str]:
    return [w for w in (m.group(0).lower().strip(".") for m in _WORD.finditer(text)) if len(w) > 2 and w not in _STOP]


def search_terms(criteria: Criteria) -> list[str]:
    """The words a search is about (lowercase, de-duplicated, in order): used for matching and fit signals."""
    parts: list[str] = []
    if isinstance(criteria, PeopleCriteria):
        parts = [
            criteria.description or "",
            *criteria.titles,
            *criteria.companies,
            *criteria.industries,
            *criteria.locations,
            *criteria.keywords,
        ]
    elif isinstance(criteria, SignalsCriteria):
        parts = [criteria.prompt, criteria.custom_signal or "", criteria.location or ""]
    elif isinstance(criteria, PostsCriteria):
        parts = [*criteria.keywords, *criteria.pain_keywords]
    else:
        query = parse_qs(urlsplit(criteria.url).query)
        for name in ("keywords", "title", "company", "firstName", "lastName"):
            parts.extend(query.get(name, []))
    return list(dict.fromkeys(w for p in parts for w in _words(p)))


# -- fit signals ---------------------------------------------------------------------------------


def _contains(haystack: str | None, needle: str) -> bool:
    return bool(haystack) and needle.lower() in (haystack or "").lower()


def _within(observed: date | None, today: date, days: int) -> bool:
    return observed is None or today - timedelta(days=days) <= observed <= today


def fit_signals(criteria: Criteria, candidate: Candidate, today: date) -> list[FitSignal]:
    """Why ``candidate`` matches: provider evidence inside the lookback window plus attribute matches.

    Every match gets at least one signal; when nothing specific matched it says the provider ranked it.
    """
    out: list[FitSignal] = []

    def add(kind: str, detail: str, observed_on: date | None = None) -> None:
        if not any(s.kind == kind and s.detail == detail for s in out):
            out.append(FitSignal(kind=kind, detail=detail, observed_on=observed_on))

    if isinstance(criteria, SignalsCriteria):
        for ev in candidate.evidence:
            if ev.kind in criteria.signal_types and _within(ev.observed_on, today, criteria.lookback_days):
                add(ev.kind, ev.detail, ev.observed_on)
        if criteria.location and _contains(candidate.location, criteria.location):
            add("location", f"Based in {candidate.location} (location hint '{criteria.location}')")
    elif isinstance(criteria, PostsCriteria):
        for ev in candidate.evidence:
            if ev.kind in {"post", "web_mention"} and _within(ev.observed_on, today, criteria.lookback_days):
                found = match_post(criteria, ev.detail)
                if found is not None:
                    kind = f"{found.language}_post" if ev.kind == "post" else "web_mention"
                    add(kind, f"{ev.detail} (mentions {', '.join(repr(h) for h in found.matched)})", ev.observed_on)
    elif isinstance(criteria, PeopleCriteria):
        for title in criteria.titles:
            if _contains(candidate.title, title) or _contains(candidate.headline, title):
                add("title", f"Title '{candidate.title or candidate.headline}' matches '{title}'")
        for company in criteria.companies:
            if _contains(candidate.company, company):
                add("company", f"Works at {candidate.company}")
        for industry in criteria.industries:
            if _contains(candidate.industry, industry):
                add("industry", f"{candidate.company or 'Company'} is in {candidate.industry}")
        for location in criteria.locations:
            if _contains(candidate.location, location):
                add("location", f"Based in {candidate.location}")
    else:
        add("linkedin_search", "Listed by the saved LinkedIn people search")
    if isinstance(criteria, PeopleCriteria | LinkedInUrlCriteria | SignalsCriteria):
        text = " ".join(filter(None, [candidate.headline, candidate.title, candidate.company, candidate.industry]))
        hits = [t for t in search_terms(criteria) if _contains(text, t)]
        if hits:
            add("keyword", f"Profile mentions {', '.join(repr(h) for h in hits[:5])}")
    if not out:
        add("provider_rank", "Ranked as a match by the search provider for this query")
    return out


# -- saved-search progress ------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a saved search stands. ``new`` counts the NEW leads it found (people the workspace did not know
    before): the target and the per-run budget count only them, so a search that finds known people again
    (a repeat search, an overlapping one, a new pass over the same results) never reaches its target with
    nobody new."""

    target: int
    new: int = 0
    run_new: int = 0
    run_pages: int = 0
    per_run: int | None = None
    pages_per_run: int = 50
    recurring: bool = False


@dataclass(frozen=True)
class Decision:
    """What happens to a search after a page: keep running, wait for the next run, or finish.

    ``restart``: the provider's result set was read to its end; the next run searches again from the top
    (for results that appeared since), instead of stopping for good.
    """

    status: Literal["running", "scheduled", "watching", "finished"]
    finish_reason: Literal["target_reached", "exhausted"] | None = None
    next_run_at: datetime | None = None
    restart: bool = False


def room(progress: Progress) -> int:
    """How many more new leads this run may add."""
    left = progress.target - progress.new
    if progress.per_run is not None:
        left = min(left, progress.per_run - progress.run_new)
    return max(left, 0)


def found_new(progress: Progress, n: int = 1) -> Progress:
    """Progress after ``n`` new leads were found."""
    return replace(progress, new=progress.new + n, run_new=progress.run_new + n)


def after_page(
    progress: Progress, *, exhausted: bool, now: datetime, interval: timedelta, watched: bool = False
) -> Decision:
    """The decision after a page: target first, then exhaustion, then the run budget of a recurring search.

    A recurring search whose results ran out is not finished: it searches again after its interval (new
    people post, get hired, change jobs), until it reaches its target of new leads or is cancelled. A posts
    search with a watch (``watched``) is not finished either: its watch carries on with the newest posts.
    """
    if progress.new >= progress.target:
        return Decision("finished", "target_reached")
    if exhausted:
        if progress.recurring:
            return Decision("scheduled", next_run_at=now + interval, restart=True)
        if watched:
            return Decision("watching")
        return Decision("finished", "exhausted")
    run_over = progress.run_pages >= progress.pages_per_run or (
        progress.per_run is not None and progress.run_new >= progress.per_run
    )
    if progress.recurring and run_over:
        return Decision("scheduled", next_run_at=now + interval)
    return Decision("running")


def paged(progress: Progress) -> Progress:
    """Progress after one more page was read in this run."""
    return replace(progress, run_pages=progress.run_pages + 1)


def new_run(progress: Progress) -> Progress:
    """Progress at the start of another run (run counters reset, totals kept)."""
    return replace(progress, run_new=0, run_pages=0)


def finished_what(runs: int) -> str:
    """The event key of a search's ``SearchFinished``: a search that ran again after finishing (a campaign's
    audience run, an extension) finishes once per pass, each with its own deterministic id."""
    return "finished" if runs <= 1 else f"finished:{runs}"


# -- campaign audiences --------------------------------------------------------------------------

AudienceRunAction = Literal["none", "run_now", "reopen"]
FINISHED_FOR_GOOD = frozenset({"cancelled", "failed"})


def audience_run_action(status: str, finish_reason: str | None) -> AudienceRunAction:
    """What a campaign's audience run (two hours before its invite window) does to a search feeding it:
    a running search is already looking; a scheduled one runs now; one that finished because its results
    ran out runs again from the top for new results; one that reached its target, was cancelled or failed
    is left alone."""
    if status == "scheduled":
        return "run_now"
    if status == "finished" and finish_reason == "exhausted":
        return "reopen"
    return "none"


def extension_action(status: str, finish_reason: str | None) -> AudienceRunAction:
    """What a campaign extension does to a search feeding it (its target is raised first): a finished search
    (target reached or exhausted) runs again, a scheduled one runs now; cancelled and failed ones stay."""
    if status == "scheduled":
        return "run_now"
    if status == "finished" and finish_reason not in FINISHED_FOR_GOOD:
        return "reopen"
    return "none"


# -- posts watch ---------------------------------------------------------------------------------

POST_KINDS = frozenset({"post", "web_mention"})


@dataclass(frozen=True)
class PostMatch:
    """Why a post matched a watch: pain language wins over intent language; ``matched`` lists every hit."""

    language: Literal["intent", "pain"]
    matched: tuple[str, ...]


def match_post(criteria: PostsCriteria, text: str) -> PostMatch | None:
    """Whether a post's text speaks the watch's pain or intent language (case-insensitive phrases)."""
    pain = [k for k in criteria.pain_keywords if _contains(text, k)]
    intent = [k for k in criteria.keywords if _contains(text, k)]
    if not pain and not intent:
        return None
    return PostMatch("pain" if pain else "intent", tuple(dict.fromkeys([*pain, *intent])))


def post_key(author_url: str, text: str, ref: str | None = None, url: str | None = None) -> str:
    """A post's identity for a watch's memory: the provider's id or URL, else a digest of author and text."""
    if ref:
        return f"ref:{ref}"[:300]
    if url:
        return f"url:{url}"[:300]
    return "sha:" + hashlib.sha256(f"{author_url}|{' '.join(text.split())}".encode()).hexdigest()


def watch_lookback_days(last_checked: datetime | None, now: datetime, criteria_days: int) -> int:
    """How far back a watch looks: since its last check (a day at least), never beyond the search's lookback."""
    if last_checked is None:
        return criteria_days
    days = -(-(now - last_checked) // timedelta(days=1))  # ceiling
    return max(LOOKBACK_MIN_DAYS, min(int(days), criteria_days))


def post_of(evidence_detail: str) -> str:
    """The post's text as evidence carries it (quoted by the adapters)."""
    text = evidence_detail.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    return text


# -- enrichment on selection ---------------------------------------------------------------------

EnrichmentMode = Literal["automatic", "on_selection"]


# -- leads from any source -----------------------------------------------------------------------


@dataclass(frozen=True)
class LeadInput:
    """A person to add, already normalised (from a search result, a CSV row or a manual add)."""

    linkedin_url: str | None = None
    email: str | None = None
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company: str | None = None
    location: str | None = None

    def lead_id(self, workspace_id: str) -> UUID:
        """This person's id in ``workspace_id``."""
        return lead_id_for(workspace_id, linkedin_url=self.linkedin_url, email=self.email)


def split_name(full_name: str | None, first: str | None, last: str | None) -> tuple[str | None, str | None, str | None]:
    """(full, first, last) with whichever is missing derived from the others."""
    if not full_name and (first or last):
        full_name = " ".join(p for p in (first, last) if p)
    if full_name and not first and not last:
        head, _, tail = full_name.partition(" ")
        first, last = head or None, tail or None
    return full_name, first, last


def lead_from_candidate(candidate: Candidate) -> LeadInput:
    """A normalised lead from a provider result; ValueError when its LinkedIn URL is unusable."""
    if not candidate.linkedin_url:
        raise ValueError("result has no LinkedIn URL")

    def clean(value: str | None) -> str | None:
        # Provider text is stored as-is except for what Postgres cannot hold, and bounded like CSV cells.
        return value.replace("\x00", "").strip()[:MAX_TEXT] or None if value else None

    full, first, last = split_name(clean(candidate.full_name), clean(candidate.first_name), clean(candidate.last_name))
    return LeadInput(
        linkedin_url=normalise_linkedin_url(candidate.linkedin_url),
        full_name=full,
        first_name=first,
        last_name=last,
        title=clean(candidate.title or candidate.headline),
        company=clean(candidate.company),
        location=clean(candidate.location),
    )


def discovered_event(
    lead: LeadInput,
    lead_id: UUID,
    source: LeadSource,
    *,
    search_id: UUID | None = None,
    source_group_id: UUID | None = None,
    fit: Iterable[FitSignal] = (),
    enrichment: EnrichmentMode = "automatic",
) -> LeadDiscovered:
    """The ``LeadDiscovered`` event of a new lead (``enrichment``: its source group's setting)."""
    return LeadDiscovered(
        lead_id=lead_id,
        source=source,
        search_id=search_id,
        source_group_id=source_group_id,
        linkedin_url=lead.linkedin_url,
        email=lead.email,
        full_name=lead.full_name,
        first_name=lead.first_name,
        last_name=lead.last_name,
        title=lead.title,
        company=lead.company,
        location=lead.location,
        fit_signals=list(fit),
        enrichment=enrichment,
    )


def joined_group_event(
    lead_id: UUID, source: LeadSource, source_group_id: UUID, search_id: UUID | None
) -> LeadAddedToSourceGroup:
    """The event of a known lead joining another source group (it is not discovered twice)."""
    return LeadAddedToSourceGroup(lead_id=lead_id, source=source, source_group_id=source_group_id, search_id=search_id)


def enrichment_request_event(
    lead_id: UUID, source_group_id: UUID | None, reason: Literal["selected", "automatic"]
) -> LeadEnrichmentRequested:
    """The event that asks enrichment to enrich a lead discovered into a group that enriches on selection."""
    return LeadEnrichmentRequested(lead_id=lead_id, source_group_id=source_group_id, reason=reason)


def post_matched_event(
    lead_id: UUID,
    source_group_id: UUID,
    search_id: UUID | None,
    text: str,
    match: PostMatch,
    *,
    posted_on: date | None,
    url: str | None,
    source: Literal["posts", "web"],
) -> LeadPostMatched:
    """The event of a watched post that matched: its text (bounded), the phrase it matched as its topic, where."""
    return LeadPostMatched(
        lead_id=lead_id,
        source_group_id=source_group_id,
        search_id=search_id,
        post=Post(text=text[:2000], topic=match.matched[0], posted_on=posted_on, url=url),
        language=match.language,
        matched=list(match.matched)[:40],
        source=source,
    )


def search_event_id(search_id: UUID, what: str) -> UUID:
    """A deterministic event id for a search fact (``started``, ``page:3``, ``lead:<id>``, ``finished``).

    Replaying a page after a crash writes the same ids, so the outbox and consumers drop the copies.
    """
    return uuid.uuid5(LEAD_NAMESPACE, f"search|{search_id}|{what}")


# -- CSV import ----------------------------------------------------------------------------------

COLUMNS = ("linkedin_url", "email", "full_name", "first_name", "last_name", "title", "company", "location")
_ALIASES: dict[str, str] = {
    "linkedin": "linkedin_url",
    "linkedin_url": "linkedin_url",
    "linkedin_profile": "linkedin_url",
    "linkedin_profile_url": "linkedin_url",
    "profile_url": "linkedin_url",
    "url": "linkedin_url",
    "email": "email",
    "email_address": "email",
    "e_mail": "email",
    "work_email": "email",
    "name": "full_name",
    "full_name": "full_name",
    "first_name": "first_name",
    "firstname": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "title": "title",
    "job_title": "title",
    "position": "title",
    "role": "title",
    "headline": "title",
    "company": "company",
    "company_name": "company",
    "organization": "company",
    "organisation": "company",
    "location": "location",
    "city": "location",
}


@dataclass(frozen=True)
class RowError:
    """Why one CSV row was rejected. ``row`` counts the header as row 1 (as a spreadsheet shows it)."""

    row: int
    column: str
    message: str


@dataclass(frozen=True)
class HeaderMap:
    """How the file's columns map to lead fields, and which columns are ignored."""

    columns: dict[str, str]
    ignored: list[str]


class HeaderError(ValueError):
    """The header row cannot be imported at all (the whole file is rejected)."""


def _canonical(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


def map_header(fieldnames: Iterable[str | None]) -> HeaderMap:
    """Map the header row to lead fields; the file needs a LinkedIn URL or an email column."""
    columns: dict[str, str] = {}
    ignored: list[str] = []
    for name in fieldnames:
        if name is None:
            continue
        field = _ALIASES.get(_canonical(name))
        if field is None:
            ignored.append(name)
            continue
        if field in columns.values():
            other = next(k for k, v in columns.items() if v == field)
            raise HeaderError(f"columns {other!r} and {name!r} both map to {field!r}")
        columns[name] = field
    if "linkedin_url" not in columns.values() and "email" not in columns.values():
        raise HeaderError("the header has neither a LinkedIn URL column (linkedin_url) nor an email column (email)")
    return HeaderMap(columns, ignored)


def validate_row(
    row: int, raw: Mapping[str | None, Any], header: HeaderMap, *, header_width: int
) -> LeadInput | list[RowError]:
    """Validate one CSV record (as ``csv.DictReader`` gives it) into a lead, or every error of the row."""
    errors: list[RowError] = []
    extra = raw.get(None)
    if extra:
        width = header_width + len(extra)
        errors.append(RowError(row, "*", f"row has {width} fields but the header has {header_width}"))
    values: dict[str, str] = {}
    for column, field in header.columns.items():
        value = raw.get(column)
        text = value.strip() if isinstance(value, str) else ""
        if len(text) > MAX_TEXT:
            errors.append(RowError(row, column, f"is longer than {MAX_TEXT} characters"))
            continue
        if "\x00" in text:
            errors.append(RowError(row, column, "contains a NUL character"))
            continue
        if text:
            values[field] = text
    column_of = {f: c for c, f in header.columns.items()}
    linkedin_url = email = None
    if "linkedin_url" in values:
        try:
            linkedin_url = normalise_linkedin_url(values["linkedin_url"])
        except ValueError as exc:
            errors.append(RowError(row, column_of["linkedin_url"], f"{values['linkedin_url']!r} {exc}"))
    if "email" in values:
        try:
            email = normalise_email(values["email"])
        except ValueError as exc:
            errors.append(RowError(row, column_of["email"], str(exc)))
    if "linkedin_url" not in values and "email" not in values and not errors:
        column = column_of.get("linkedin_url") or column_of["email"]
        errors.append(RowError(row, column, "a row needs a LinkedIn URL or an email; both are empty"))
    if errors:
        return errors
    full, first, last = split_name(values.get("full_name"), values.get("first_name"), values.get("last_name"))
    return LeadInput(
        linkedin_url=linkedin_url,
        email=email,
        full_name=full,
        first_name=first,
        last_name=last,
        title=values.get("title"),
        company=values.get("company"),
        location=values.get("location"),
    )


# -- signal suggestions ----------------------------------------------------------------------------

SIGNAL_LABELS: dict[str, str] = {
    "hiring_plans": "Hiring plans",
    "open_jobs": "Open jobs",
    "recent_hires": "Recent hires",
    "tech_stack": "Tech stack",
    "website_signals": "Website changes",
    "compliance": "Compliance",
    "people": "People moves",
    "news": "In the news",
    "expansion": "Expansion",
    "custom": "Custom signal",
}
# Words of a prompt that point at a signal type (lowercase; a phrase matches as a substring).
_SIGNAL_WORDS: dict[str, tuple[str, ...]] = {
    "hiring_plans": ("hiring", "grow", "growing", "headcount", "scale the team", "scaling", "recruit", "build out"),
    "open_jobs": ("job", "jobs", "openings", "open role", "roles", "vacanc", "position", "sdr", "bdr"),
    "recent_hires": ("new hire", "just hired", "recently hired", "hired a", "joined", "new vp", "new head"),
    "tech_stack": (
        "stack",
        "using",
        "uses",
        "salesforce",
        "hubspot",
        "snowflake",
        "aws",
        "shopify",
        "stripe",
        "crm",
        "software",
        "tool",
        "migrat",
        "sap",
        "oracle",
        "okta",
    ),
    "website_signals": ("website", "pricing", "landing page", "site", "demo page", "web page"),
    "compliance": ("compliance", "soc 2", "soc2", "iso 27001", "gdpr", "dora", "audit", "regulat", "certif"),
    "people": (
        "founder",
        "ceo",
        "cto",
        "cfo",
        "coo",
        "vp",
        "head of",
        "director",
        "leader",
        "promoted",
        "new role",
        "decision maker",
    ),
    "news": ("news", "featured", "press", "announce", "funding", "raised", "series a", "series b", "launch"),
    "expansion": ("expan", "new office", "opening an office", "new market", "international", "entering", "relocat"),
}
_TEAMS = (
    ("sales", ("sales", "sdr", "bdr", "account executive", "revops", "revenue")),
    ("engineering", ("engineer", "developer", "devops", "cto")),
    ("marketing", ("marketing", "growth", "demand gen")),
    ("customer success", ("customer success", "support", "onboarding")),
    ("data", ("data", "analytics", "machine learning", "ai ")),
)
_PHRASINGS: dict[str, str] = {
    "hiring_plans": "Companies planning to grow their {team} team",
    "open_jobs": "Companies with open {team} roles posted recently",
    "recent_hires": "Companies that recently hired a new {team} leader",
    "tech_stack": "Companies using {tech}",
    "website_signals": "Companies that changed their pricing or product pages",
    "compliance": "Companies preparing for {framework}",
    "people": "People who recently started in the role you sell to",
    "news": "Companies featured in the news (funding, launches)",
    "expansion": "Companies opening offices or entering new markets",
}
_TECH = ("Salesforce", "HubSpot", "Snowflake", "AWS", "Shopify", "Stripe", "SAP", "Oracle", "Okta", "OpenAI")
_FRAMEWORKS = ("SOC 2", "ISO 27001", "GDPR", "DORA")
_PLACES = (
    "Europe",
    "EMEA",
    "DACH",
    "Nordics",
    "Benelux",
    "North America",
    "USA",
    "UK",
    "Germany",
    "France",
    "Netherlands",
    "Spain",
    "Italy",
    "Sweden",
    "Ireland",
    "Switzerland",
    "Israel",
    "Berlin",
    "London",
    "Munich",
    "Amsterdam",
    "Paris",
    "Lisbon",
    "Dublin",
    "Stockholm",
    "Madrid",
    "Zurich",
    "Rotterdam",
    "Copenhagen",
    "Milan",
    "Hamburg",
    "Frankfurt",
    "Tel Aviv",
)
_LOOKBACK = re.compile(r"\b(?:last|past|previous|within)\s+(\d{1,3})?\s*(day|days|week|weeks|month|months)\b")


@dataclass(frozen=True)
class SignalSuggestion:
    """A signal type a prompt asks for, how to phrase the search for it, and what in the prompt said so."""

    signal_type: str
    label: str
    phrasing: str
    why: str


@dataclass(frozen=True)
class Suggestions:
    """What a discovery prompt suggests: signal types (best first), a location hint and a lookback window."""

    suggestions: list[SignalSuggestion]
    location: str | None
    lookback_days: int | None
    custom_signal: str | None


def _word_hits(text: str, words: Iterable[str]) -> list[str]:
    return [w for w in words if re.search(r"(?<![a-z0-9])" + re.escape(w), text)]


def suggest_signals(prompt: str, limit: int = 5) -> Suggestions:
    """Signal types (with a phrasing each) a discovery prompt asks for, plus its location and lookback.

    Words of the prompt are matched against each signal type's vocabulary; the types with most hits come
    first. A prompt that names no known signal gets a custom signal built from its own words, after the
    two signals that suit most B2B prompts (hiring plans, news). Pure: no provider is asked.
    """
    text = " ".join(prompt.lower().split())
    team = next((name for name, words in _TEAMS if _word_hits(text, words)), "sales")
    tech = next((t for t in _TECH if t.lower() in text), "the tools you replace")
    framework = next((f for f in _FRAMEWORKS if f.lower() in text), "a compliance audit")
    scored: list[tuple[int, int, str, list[str]]] = []
    for order, (kind, words) in enumerate(_SIGNAL_WORDS.items()):
        hits = _word_hits(text, words)
        if hits:
            scored.append((-len(hits), order, kind, hits))
    scored.sort()
    out: list[SignalSuggestion] = []
    for _, _, kind, hits in scored[:limit]:
        phrasing = _PHRASINGS[kind].format(team=team, tech=tech, framework=framework)
        why = "the prompt mentions " + ", ".join(repr(h) for h in hits[:3])
        out.append(SignalSuggestion(kind, SIGNAL_LABELS[kind], phrasing, why))
    custom = None
    if not out:
        custom = " ".join(prompt.split())[:500] if len(prompt.strip()) >= 3 else None
        for kind in ("hiring_plans", "news"):
            phrasing = _PHRASINGS[kind].format(team=team, tech=tech, framework=framework)
            out.append(SignalSuggestion(kind, SIGNAL_LABELS[kind], phrasing, "a common buying signal for B2B prompts"))
        if custom:
            out.append(SignalSuggestion("custom", SIGNAL_LABELS["custom"], custom, "the prompt in your own words"))
    location = next((p for p in _PLACES if re.search(r"\b" + re.escape(p.lower()) + r"\b", text)), None)
    lookback = None
    m = _LOOKBACK.search(text)
    if m:
        n = int(m.group(1) or 1)
        days = n * {"day": 1, "week": 7, "month": 30}[m.group(2).rstrip("s")]
        lookback = min(max(days, LOOKBACK_MIN_DAYS), LOOKBACK_MAX_DAYS)
    return Suggestions(out[:limit], location, lookback, custom)
