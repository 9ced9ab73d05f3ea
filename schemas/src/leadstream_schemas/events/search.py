"""Discovery search progress on ``leadstream.search.v1`` keyed by ``search_id``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field

from ..base import Event, register
from ..bounds import Code, Detail, FreeJson, Name
from ..topics import SEARCH


class SearchEvent(Event):
    """Base of search events."""

    topic: ClassVar[str] = SEARCH.name
    key_field: ClassVar[str] = "search_id"

    search_id: UUID


@register
class SearchStarted(SearchEvent):
    """A saved background search started; its results become the source group. ``target_count`` counts
    NEW leads (people the workspace did not know), not people found again."""

    event_type: ClassVar[str] = "leadstream.search.started.v1"

    source_group_id: UUID
    kind: Literal["people", "signals", "posts", "linkedin_url", "csv", "manual"]
    name: Name
    criteria: Annotated[dict[str, Any], FreeJson(max_properties=64, max_bytes=16_384)] = Field(default_factory=dict)
    target_count: int


@register
class SearchPageCompleted(SearchEvent):
    """One page of results was processed; ``cursor`` resumes the search after it."""

    event_type: ClassVar[str] = "leadstream.search.page_completed.v1"

    page: int
    cursor: Detail | None = None
    found: int
    new_leads: int
    duplicates: int
    total_new: int


@register
class SearchResumed(SearchEvent):
    """A finished search runs again to look for new results: a campaign's audience run found it exhausted,
    or a campaign extension raised its target (``target_count``, new leads). ``SearchFinished`` follows again."""

    event_type: ClassVar[str] = "leadstream.search.resumed.v1"

    run: int
    reason: Literal["campaign_audience_run", "campaign_extended"]
    campaign_id: UUID | None = None
    target_count: int


@register
class SearchFinished(SearchEvent):
    """The search stopped: target reached, source exhausted, cancelled or failed."""

    event_type: ClassVar[str] = "leadstream.search.finished.v1"

    reason: Literal["target_reached", "exhausted", "cancelled", "failed"]
    total_new: int
    next_run_at: Code | None = None
