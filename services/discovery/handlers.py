"""The saved-search worker: pages through due searches, one page per transaction.

Each page's new leads, the search's cursor and counts, and the events it emits (``LeadDiscovered``,
``SearchPageCompleted``, ``SearchFinished``) commit in ONE transaction with the outbox. A crash or a
restart therefore resumes from the stored cursor: a page is either fully recorded (and its events
queued) or not at all, and event ids are deterministic so even a replayed page is not re-emitted.

The search row is locked (``FOR UPDATE SKIP LOCKED``) while its page is fetched, so several replicas
can run the worker without reading the same page twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from leadstream_schemas import Envelope, Event, SearchFinished, SearchPageCompleted
from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.providers import ProviderError, RateLimited
from services.runtime.service import Service
from services.runtime.telemetry import current_traceparent

from . import domain
from .adapters import SearchProvider, SearchQuery
from .settings import DiscoverySettings
from .store import add_lead, searches

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
        members=row.members,
        run_members=row.run_members,
        run_pages=row.run_pages,
        per_run=row.per_run,
        pages_per_run=pages_per_run,
        recurring=row.recurring,
    )


@dataclass
class PageOutcome:
    """What one step did (for logs and tests)."""

    search_id: UUID
    page: int
    new_leads: int
    duplicates: int
    status: str


class SearchRunner:
    """Runs saved searches in the background (``service.add_task(runner.run)``)."""

    def __init__(self, service: Service, provider: SearchProvider, settings: DiscoverySettings) -> None:
        self.service = service
        self.provider = provider
        self.settings = settings
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due searches now (a search was just created)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Process due searches until ``stop``; a page in flight when stopping is abandoned (rolled back)."""
        backoff = self.settings.search_backoff_initial_s
        while not stop.is_set():
            step = asyncio.create_task(self.step(), name="search-step")
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({step, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if step not in done:
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
                return
            stopper.cancel()
            try:
                did = step.result()
                backoff = self.settings.search_backoff_initial_s
            except Exception as exc:  # database down or a bug: keep the worker alive
                log.warning("search worker step failed", extra={"error": repr(exc)})
                await self._pause(stop, backoff)
                backoff = min(backoff * 2, self.settings.search_backoff_max_s)
                continue
            if did is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.search_poll_interval_s)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    def _due(self, now: datetime) -> Any:
        return (
            select(searches)
            .where(
                searches.c.kind.in_(PROVIDER_KINDS),
                or_(
                    searches.c.status == "running",
                    and_(searches.c.status == "scheduled", searches.c.next_run_at <= now),
                ),
            )
            .order_by(searches.c.updated_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )

    async def step(self) -> PageOutcome | None:
        """Process one page of the most overdue search; None when nothing is due."""
        now = self.service.clock.now()
        search_id: UUID | None = None
        try:
            async with self.service.engine.begin() as conn:
                row = (await conn.execute(self._due(now))).first()
                if row is None:
                    return None
                search_id = row.search_id
                outcome = await self._page(conn, row, now)
            self.service.wake_relay()
            return outcome
        except RateLimited as exc:
            assert search_id is not None
            wait = min(exc.retry_after_s, self.settings.search_max_retry_after_s)
            await self._record_error(search_id, f"rate limited by the provider; retrying in {wait:.1f}s", counts=False)
            await self._pause(self.service.stop_event, wait)
            return PageOutcome(search_id, 0, 0, 0, "rate_limited")
        except ProviderError as exc:
            if search_id is None:
                raise
            status = await self._record_error(search_id, str(exc), counts=True, permanent=not exc.transient)
            if status != "finished":
                errors = await self._consecutive_errors(search_id)
                delay = self.settings.search_backoff_initial_s * 2 ** max(errors - 1, 0)
                await self._pause(self.service.stop_event, min(delay, self.settings.search_backoff_max_s))
            return PageOutcome(search_id, 0, 0, 0, status)

    async def _page(self, conn: AsyncConnection, row: Row[Any], now: datetime) -> PageOutcome:
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
        events: list[Envelope[Any]] = []
        new = duplicates = invalid = 0
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
            )
            if added.new_lead:
                new += 1
                event = domain.discovered_event(
                    lead,
                    added.lead_id,
                    domain.SOURCE_OF_KIND[row.kind],
                    search_id=row.search_id,
                    source_group_id=row.source_group_id,
                    fit=fit,
                )
                events.append(self._envelope(row, event, f"lead:{added.lead_id}"))
            else:
                duplicates += 1
                if added.new_member:
                    joined = domain.joined_group_event(
                        added.lead_id, domain.SOURCE_OF_KIND[row.kind], row.source_group_id, row.search_id
                    )
                    events.append(self._envelope(row, joined, f"member:{added.lead_id}"))
            if added.new_member:
                progress = domain.added(progress)
        page_done = pos >= len(page.items)
        cursor = page.next_cursor if page_done else row.cursor
        offset = 0 if page_done else pos
        exhausted = page_done and page.next_cursor is None
        progress = domain.paged(progress)
        interval = timedelta(minutes=row.interval_minutes or self.settings.recurring_interval_minutes)
        decision = domain.after_page(progress, exhausted=exhausted, now=now, interval=interval)
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
                    "finished",
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
                members=progress.members,
                runs=runs,
                run_pages=progress.run_pages,
                run_members=progress.run_members,
                status=decision.status,
                finish_reason=decision.finish_reason,
                next_run_at=decision.next_run_at,
                consecutive_errors=0,
                last_error=None,
                updated_at=now,
                finished_at=now if decision.status == "finished" else None,
            )
        )
        await self.service.emit(conn, events)
        return PageOutcome(row.search_id, page_no, new, duplicates, decision.status)

    def _envelope(self, row: Row[Any], data: Event, what: str) -> Envelope[Any]:
        return search_envelope(
            self.service,
            data,
            workspace_id=row.workspace_id,
            search_id=row.search_id,
            what=what,
            started_id=row.started_event_id,
        )

    async def _consecutive_errors(self, search_id: UUID) -> int:
        async with self.service.engine.connect() as conn:
            value = await conn.scalar(select(searches.c.consecutive_errors).where(searches.c.search_id == search_id))
        return int(value or 0)

    async def _record_error(self, search_id: UUID, message: str, *, counts: bool, permanent: bool = False) -> str:
        """Note a provider error on the search; too many in a row (or a permanent one) fail the search."""
        now = self.service.clock.now()
        async with self.service.engine.begin() as conn:
            row = (
                await conn.execute(select(searches).where(searches.c.search_id == search_id).with_for_update())
            ).first()
            if row is None or row.status == "finished":
                return "finished"
            errors = row.consecutive_errors + (1 if counts else 0)
            if permanent or errors >= self.settings.search_max_consecutive_errors:
                await finish(self.service, conn, row, "failed", now, last_error=message)
                status = "finished"
            else:
                await conn.execute(
                    update(searches)
                    .where(searches.c.search_id == search_id)
                    .values(consecutive_errors=errors, last_error=message, updated_at=now)
                )
                status = row.status
        self.service.wake_relay()
        log.warning("search provider error", extra={"search_id": str(search_id), "error": message})
        return status


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
                what="finished",
                started_id=row.started_event_id,
            )
        ],
    )
