"""The saved-search worker: pages through due searches, one page per transaction.

Each page's new leads, the search's cursor and counts, and the events it emits (``LeadDiscovered``,
``SearchPageCompleted``, ``SearchFinished``) commit in ONE transaction with the outbox. A crash or a
restart therefore resumes from the stored cursor: a page is either fully recorded (and its events
queued) or not at all, and event ids are deterministic so even a replayed page is not re-emitted.

The search row is claimed by the runtime's durable-timer loop (``FOR UPDATE SKIP LOCKED``) and stays
locked while its page is fetched, so several replicas can run the worker without reading the same page
twice. A provider error is recorded on the search with a retry time (``retry_at``) and the worker goes
on with other searches: a rate limit waits as asked (capped by ``search_max_retry_after_s``) without
counting, other errors back off and count; ``search_max_consecutive_errors`` in a row, or a permanent
one, fail the search.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, Literal
from uuid import UUID

from leadstream_schemas import Envelope, Event, FitSignal, LeadErased, LeadSource, SearchFinished, SearchPageCompleted
from sqlalchemy import Select, and_, case, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.consumer import HandlerContext
from services.runtime.faults import Fault
from services.runtime.providers import ProviderError
from services.runtime.service import Service
from services.runtime.telemetry import current_traceparent
from services.runtime.timers import DurableTimers, Failure

from . import domain
from .adapters import Candidate, SearchProvider, SearchQuery
from .settings import DiscoverySettings
from .store import Added, add_lead, leads, post_watches, remember_post, searches, source_groups

log = logging.getLogger(__name__)

PROVIDER_KINDS = ("people", "signals", "posts", "linkedin_url")


def search_envelope(
    service: Service, data: Event, *, workspace_id: str, search_id: UUID, what: str, started_id: UUID
) -> Envelope[Any]:
    """An envelope for a search fact with a deterministic id, correlated to the search's ``SearchStarted``."""
    return Envelope(
        data=data,
        workspace_id=workspace_id,
        source=service.source,
        id=started_id if what == "started" else domain.search_event_id(search_id, what),
        time=service.clock.now(),
        correlation_id=started_id,
        causation_id=None if what == "started" else started_id,
        traceparent=current_traceparent(),
    )


def progress_of(row: Row[Any], pages_per_run: int) -> domain.Progress:
    """The domain view of a search row."""
    return domain.Progress(
        target=row.target_count,
        new=row.new_leads,
        run_new=row.run_new,
        run_pages=row.run_pages,
        per_run=row.per_run,
        pages_per_run=pages_per_run,
        recurring=row.recurring,
    )


def claimable(now: datetime) -> Select[Any]:
    """Searches with a page to fetch: running ones, and scheduled ones whose next run is due; not before the
    retry time a provider error set. The least recently worked on first."""
    s = searches.c
    return (
        select(searches)
        .where(
            s.kind.in_(PROVIDER_KINDS),
            or_(s.status == "running", and_(s.status == "scheduled", s.next_run_at <= now)),
            or_(s.retry_at.is_(None), s.retry_at <= now),
        )
        .order_by(s.updated_at)
    )


CLAIMABLE_AT = case(
    (searches.c.status == "scheduled", func.greatest(searches.c.next_run_at, searches.c.retry_at)),
    else_=searches.c.retry_at,
)
"""When :func:`claimable` first takes a search (NULL: now): a running one at its ``retry_at``, a scheduled one at
the later of its ``next_run_at`` and ``retry_at`` (Postgres's ``greatest`` skips a NULL). Exactly then, never
later (a search would run late) nor earlier: ``retry_at`` alone (the timers' ``due``) is NULL for a scheduled
search, taken as now, and made the idle loop look every poll interval while its next run was within the horizon."""


class SearchRunner:
    """Runs saved searches one page at a time on the runtime's durable-timer loop (``timers.loop``)."""

    def __init__(self, service: Service, provider: SearchProvider, settings: DiscoverySettings) -> None:
        self.service = service
        self.provider = provider
        self.settings = settings
        self.timers = DurableTimers(
            name="discovery_searches",
            service=service,
            table=searches,
            due=searches.c.retry_at,
            attempts=searches.c.consecutive_errors,
            claimable=claimable,
            claimable_at=CLAIMABLE_AT,  # the idle loop naps until the next search's run or retry, whichever is later
            run=self._page,
            failed=self._failed,
            schedule=settings.search_schedule(),
            traceparent=attrgetter("traceparent"),
        )

    def wake(self) -> None:
        """Look for due searches now (a search was just created)."""
        self.timers.wake()

    async def step(self) -> Row[Any] | None:
        """Process one page of the most overdue search; the search's row, or None when nothing is due."""
        return await self.timers.run_once()

    async def _page(self, conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        progress = progress_of(row, self.settings.search_pages_per_run)
        runs = row.runs
        if row.status == "scheduled":
            progress = domain.new_run(progress)
            runs += 1
        try:
            criteria = domain.parse_criteria(row.kind, row.criteria)
        except ValueError as exc:  # rules changed since the search was saved: it cannot run any more
            raise ProviderError(f"the saved criteria are no longer valid: {exc}", transient=False) from exc
        try:
            page = await self.provider.search(
                SearchQuery(row.kind, row.criteria), row.cursor, self.settings.search_page_size
            )
        except ProviderError:
            raise
        except Exception as exc:  # an adapter bug or an unexpected answer: counted like a transient error
            log.exception("search provider call failed", extra={"search_id": str(row.search_id)})
            raise ProviderError(f"search provider call failed: {exc!r}", transient=True) from exc
        source = domain.SOURCE_OF_KIND[row.kind].value
        today = now.date()
        enrichment = await group_enrichment(conn, row.source_group_id)
        events: list[Envelope[Any]] = []
        new = duplicates = invalid = joined = 0
        pos = min(row.page_offset, len(page.items))
        start = pos
        while pos < len(page.items) and domain.room(progress) > 0:
            candidate = page.items[pos]
            pos += 1
            try:
                lead = domain.lead_from_candidate(candidate)
            except ValueError:
                invalid += 1
                continue
            fit = domain.fit_signals(criteria, candidate, today)
            added = await add_lead(
                conn,
                row.workspace_id,
                lead,
                source=source,
                source_group_id=row.source_group_id,
                search_id=row.search_id,
                fit_signals=[f.model_dump(mode="json") for f in fit],
                now=now,
                enrichment=enrichment,
            )
            joined += added.new_member
            if added.new_lead:
                new += 1
                progress = domain.found_new(progress)
            else:
                duplicates += 1
            events.extend(
                self._envelope(row, event, what)
                for what, event in lead_events(
                    added,
                    lead,
                    domain.SOURCE_OF_KIND[row.kind],
                    search_id=row.search_id,
                    source_group_id=row.source_group_id,
                    fit=fit,
                    enrichment=enrichment,
                )
            )
            if isinstance(criteria, domain.PostsCriteria):  # after LeadDiscovered: per-lead order
                matched = await self._posts_matched(conn, row, criteria, candidate, added.lead_id, now)
                events.extend(self._envelope(row, event, what) for what, event in matched)
        page_done = pos >= len(page.items)
        cursor = page.next_cursor if page_done else row.cursor
        offset = 0 if page_done else pos
        exhausted = page_done and page.next_cursor is None
        progress = domain.paged(progress)
        interval = timedelta(minutes=row.interval_minutes or self.settings.recurring_interval_minutes)
        watched = row.kind == "posts" and await watching(conn, row.search_id)
        decision = domain.after_page(progress, exhausted=exhausted, now=now, interval=interval, watched=watched)
        if decision.restart:  # read to its end: the next run searches again from the top, for new results
            cursor, offset = None, 0
        page_no = row.pages + 1
        total_new = row.new_leads + new
        events.append(
            self._envelope(
                row,
                SearchPageCompleted(
                    search_id=row.search_id,
                    page=page_no,
                    cursor=cursor,
                    found=pos - start,
                    new_leads=new,
                    duplicates=duplicates,
                    total_new=total_new,
                ),
                f"page:{page_no}",
            )
        )
        if decision.status == "finished":
            assert decision.finish_reason is not None
            events.append(
                self._envelope(
                    row,
                    SearchFinished(search_id=row.search_id, reason=decision.finish_reason, total_new=total_new),
                    domain.finished_what(runs),
                )
            )
        await conn.execute(
            update(searches)
            .where(searches.c.search_id == row.search_id)
            .values(
                cursor=cursor,
                page_offset=offset,
                exhausted=exhausted,
                pages=page_no,
                found=searches.c.found + (pos - start),
                new_leads=total_new,
                duplicates=searches.c.duplicates + duplicates,
                invalid=searches.c.invalid + invalid,
                members=row.members + joined,
                runs=runs,
                run_pages=progress.run_pages,
                run_members=(0 if row.status == "scheduled" else row.run_members) + joined,
                run_new=progress.run_new,
                status=decision.status,
                finish_reason=decision.finish_reason,
                next_run_at=decision.next_run_at,
                consecutive_errors=0,
                retry_at=None,
                last_error=None,
                updated_at=now,
                finished_at=now if decision.status == "finished" else None,
            )
        )
        await self.service.emit(conn, events)

    async def _posts_matched(
        self,
        conn: AsyncConnection,
        row: Row[Any],
        criteria: domain.PostsCriteria,
        candidate: Candidate,
        lead_id: UUID,
        now: datetime,
    ) -> list[tuple[str, Event]]:
        """``LeadPostMatched`` for each of the result's posts that speaks the search's language, remembered so the
        search's watch does not announce them again."""
        out: list[tuple[str, Event]] = []
        for ev in candidate.evidence:
            if ev.kind not in domain.POST_KINDS:
                continue
            text = domain.post_of(ev.detail)
            match = domain.match_post(criteria, text)
            if match is None:
                continue
            key = domain.post_key(candidate.linkedin_url or candidate.full_name, text, ev.ref, ev.url)
            if not await remember_post(conn, row.search_id, key, now, lead_id=lead_id, matched=True):
                continue
            source: Literal["posts", "web"] = "posts" if ev.kind == "post" else "web"
            event = domain.post_matched_event(
                lead_id,
                row.source_group_id,
                row.search_id,
                text,
                match,
                posted_on=ev.observed_on,
                url=ev.url,
                source=source,
            )
            out.append((f"post:{key}", event))
        return out

    def _envelope(self, row: Row[Any], data: Event, what: str) -> Envelope[Any]:
        return search_envelope(
            self.service,
            data,
            workspace_id=row.workspace_id,
            search_id=row.search_id,
            what=what,
            started_id=row.started_event_id,
        )

    async def _failed(self, conn: AsyncConnection, row: Row[Any], failure: Failure) -> None:
        """Note a provider error on the search; too many in a row (or a permanent one) fail the search."""
        if row.status == "finished":  # cancelled meanwhile
            return
        message = str(failure.error)
        if failure.fault is Fault.THROTTLED and failure.retry_at is not None:  # not counted as an error
            message = (
                f"rate limited by the provider; retrying in {(failure.retry_at - failure.now).total_seconds():.1f}s"
            )
        if failure.retry_at is None:
            await finish(self.service, conn, row, "failed", failure.now, last_error=message)
            return
        await conn.execute(
            update(searches)
            .where(searches.c.search_id == row.search_id)
            .values(last_error=message, updated_at=failure.now)
        )


async def finish(
    service: Service, conn: AsyncConnection, row: Row[Any], reason: str, now: datetime, *, last_error: str | None = None
) -> None:
    """Finish a search for ``reason`` (failed, cancelled) and emit ``SearchFinished``."""
    await conn.execute(
        update(searches)
        .where(searches.c.search_id == row.search_id)
        .values(
            status="finished",
            finish_reason=reason,
            next_run_at=None,
            last_error=last_error,
            updated_at=now,
            finished_at=now,
        )
    )
    event = SearchFinished(search_id=row.search_id, reason=reason, total_new=row.new_leads)
    await service.emit(
        conn,
        [
            search_envelope(
                service,
                event,
                workspace_id=row.workspace_id,
                search_id=row.search_id,
                what=domain.finished_what(row.runs),
                started_id=row.started_event_id,
            )
        ],
    )


async def watching(conn: AsyncConnection, search_id: UUID) -> bool:
    """Whether a posts search's watch is active."""
    found = await conn.scalar(
        select(post_watches.c.search_id).where(post_watches.c.search_id == search_id, post_watches.c.state == "active")
    )
    return found is not None


async def group_enrichment(conn: AsyncConnection, source_group_id: UUID) -> domain.EnrichmentMode:
    """A source group's enrichment setting (automatic, or on selection)."""
    mode = await conn.scalar(
        select(source_groups.c.enrichment).where(source_groups.c.source_group_id == source_group_id)
    )
    return "on_selection" if mode == "on_selection" else "automatic"


def lead_events(
    added: Added,
    lead: domain.LeadInput,
    source: LeadSource,
    *,
    search_id: UUID | None,
    source_group_id: UUID,
    fit: list[FitSignal],
    enrichment: domain.EnrichmentMode,
) -> list[tuple[str, Event]]:
    """What a person added to a source group tells the others, with each event's key: ``LeadDiscovered`` for
    a new lead, ``LeadAddedToSourceGroup`` for a known one new to the group, and ``LeadEnrichmentRequested``
    when a lead that waited for a selection joined a group that enriches automatically."""
    out: list[tuple[str, Event]] = []
    if added.new_lead:
        event = domain.discovered_event(
            lead,
            added.lead_id,
            source,
            search_id=search_id,
            source_group_id=source_group_id,
            fit=fit,
            enrichment=enrichment,
        )
        out.append((f"lead:{added.lead_id}", event))
    elif added.new_member:
        joined = domain.joined_group_event(added.lead_id, source, source_group_id, search_id)
        out.append((f"member:{added.lead_id}", joined))
    if added.request_enrichment:
        request = domain.enrichment_request_event(added.lead_id, source_group_id, "automatic")
        out.append((f"enrich:{added.lead_id}", request))
    return out


LEAD_PERSONAL_COLUMNS = ("linkedin_url", "email", "full_name", "first_name", "last_name", "location")
"""Discovery's copy of a lead's personal fields (``LeadDiscovered``'s personal paths), NULL once erased."""


async def on_lead_erased(env: Envelope[LeadErased], ctx: HandlerContext) -> None:
    """Blank discovery's copy of an erased lead (idempotent). The row stays, with its id, title, company, source
    and groups: the lead id is derived from the URL or email, so finding the person again is still a duplicate
    (and a later event about them is written ``[erased]``: the key store refuses them a new key)."""
    await ctx.conn.execute(
        update(leads)
        .where(leads.c.workspace_id == env.workspace_id, leads.c.lead_id == env.data.lead_id)
        .values(dict.fromkeys(LEAD_PERSONAL_COLUMNS))
    )
