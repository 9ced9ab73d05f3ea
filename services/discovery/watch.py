"""The posts watch: every posts search keeps checking recent posts for its intent or pain language.

A posts search reads the posts of its lookback window once (the search runner); its watch then checks the
newest posts every ``interval_minutes`` (a ``post_watches`` row claimed by the runtime's durable-timer loop).
Each post the watch has not seen before (``watched_posts``) and whose text speaks the search's pain or intent
language makes its author a lead of the search's source group, and emits ``LeadPostMatched`` with the post:

- a new author: ``LeadDiscovered`` (with the post as its fit signal), then ``LeadPostMatched``;
- a known author new to the group: ``LeadAddedToSourceGroup``, then ``LeadPostMatched``;
- an author already in the group: ``LeadPostMatched`` only (their newest matching post).

Outreach enrolls new members of the group in the running campaigns on that audience, so a matching post
triggers the campaign's steps; messaging writes their messages on the matched post (the hook), and like and
comment steps answer that post. A check reads pages newest first and stops at a page without an unseen post.
Everything a check finds, its counters and the next due time commit in one transaction with the events
(deterministic ids per post), so a crash or a retry repeats nothing. A watch stops when its search is
cancelled, fails or reaches its target of new leads; provider errors are retried (rate limits as asked), and
after the attempts the watch records the error and tries again at its next interval.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Literal

from leadstream_schemas import Envelope, Event, FitSignal, LeadSource
from sqlalchemy import Select, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.providers import ProviderError
from services.runtime.service import Service
from services.runtime.timers import DurableTimers, Failure

from . import domain
from .adapters import Candidate, SearchProvider, SearchQuery
from .handlers import finish, group_enrichment, lead_events, search_envelope
from .settings import DiscoverySettings
from .store import add_lead, post_watches, remember_post, searches, watched_posts

log = logging.getLogger(__name__)

POST_KINDS = domain.POST_KINDS
STOPPING_REASONS = frozenset({"cancelled", "failed", "target_reached"})


def claimable(now: datetime) -> Select[Any]:
    """Active watches whose next check is due, the most overdue first."""
    w = post_watches.c
    return select(post_watches).where(w.state == "active", w.due_at <= now).order_by(w.due_at)


async def create_watch(
    conn: AsyncConnection, search_id: Any, workspace_id: str, interval_minutes: int, now: datetime
) -> None:
    """The watch of a new posts search: its first check one interval after the search's first pass starts."""
    await conn.execute(
        insert(post_watches)
        .values(
            search_id=search_id,
            workspace_id=workspace_id,
            interval_minutes=interval_minutes,
            state="active",
            due_at=now + timedelta(minutes=interval_minutes),
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )


async def stop_watch(conn: AsyncConnection, search_id: Any, reason: str, now: datetime) -> None:
    """Stop a search's watch (no-op without one)."""
    await conn.execute(
        update(post_watches)
        .where(post_watches.c.search_id == search_id, post_watches.c.state == "active")
        .values(state="stopped", stop_reason=reason, updated_at=now)
    )


class PostsWatch:
    """Checks due watches, one per transaction, on the runtime's durable-timer loop."""

    def __init__(self, service: Service, provider: SearchProvider, settings: DiscoverySettings) -> None:
        self.service = service
        self.provider = provider
        self.settings = settings
        self.timers = DurableTimers(
            name="discovery_posts_watch",
            service=service,
            table=post_watches,
            due=post_watches.c.due_at,
            attempts=post_watches.c.attempts,
            claimable=claimable,
            # The idle loop naps until the earliest due_at (the default claimable_at): exactly when a watch becomes
            # claimable, as claimable() requires due_at <= now and due_at is never NULL.
            run=self._check,
            failed=self._failed,
            schedule=settings.search_schedule(),
        )

    async def step(self) -> Row[Any] | None:
        """Check the most overdue watch; its row, or None when none is due (tests with a fake clock)."""
        return await self.timers.run_once()

    async def _check(self, conn: AsyncConnection, watch: Row[Any], now: datetime) -> None:
        search = (await conn.execute(select(searches).where(searches.c.search_id == watch.search_id))).one()
        if search.status == "finished" and search.finish_reason in STOPPING_REASONS:
            await stop_watch(conn, watch.search_id, f"search {search.finish_reason}", now)
            return
        try:
            criteria = domain.parse_criteria("posts", search.criteria)
        except ValueError as exc:
            raise ProviderError(f"the saved criteria are no longer valid: {exc}", transient=False) from exc
        assert isinstance(criteria, domain.PostsCriteria)
        # The search's first pass read the whole lookback window: the watch looks back to its last check.
        since = watch.last_checked_at or watch.created_at
        lookback = domain.watch_lookback_days(since, now, criteria.lookback_days)
        query = SearchQuery("posts", {**search.criteria, "lookback_days": lookback})
        check = _Check(self.service, search, criteria, now, await group_enrichment(conn, search.source_group_id))
        cursor: str | None = None
        for _ in range(self.settings.posts_watch_max_pages):
            page = await self.provider.search(query, cursor, self.settings.search_page_size)
            unseen = 0
            for candidate in page.items:
                unseen += await check.candidate(conn, candidate, lookback)
            cursor = page.next_cursor
            if cursor is None or unseen == 0:  # newest first: a page of known posts means nothing newer is left
                break
        fresh = (
            await conn.execute(
                update(searches)
                .where(searches.c.search_id == search.search_id)
                .values(
                    new_leads=searches.c.new_leads + check.new,
                    members=searches.c.members + check.joined,
                    found=searches.c.found + check.matched,
                    duplicates=searches.c.duplicates + (check.matched - check.new),
                    updated_at=now,
                )
                .returning(searches)
            )
        ).one()
        interval = timedelta(minutes=watch.interval_minutes)
        await conn.execute(
            update(post_watches)
            .where(post_watches.c.search_id == watch.search_id)
            .values(
                checks=post_watches.c.checks + 1,
                posts_seen=post_watches.c.posts_seen + check.seen,
                matches=post_watches.c.matches + check.matched,
                new_leads=post_watches.c.new_leads + check.new,
                last_checked_at=now,
                due_at=now + interval,
                last_error=None,
                attempts=0,
                updated_at=now,
            )
        )
        # Posts older than the lookback are never returned again: their memory can go.
        horizon = now - timedelta(days=criteria.lookback_days + 1)
        await conn.execute(
            delete(watched_posts).where(watched_posts.c.search_id == watch.search_id, watched_posts.c.seen_at < horizon)
        )
        await self.service.emit(conn, check.events)
        if fresh.new_leads >= fresh.target_count and fresh.status != "finished":
            await stop_watch(conn, watch.search_id, "search target_reached", now)
            await finish(self.service, conn, fresh, "target_reached", now)

    async def _failed(self, conn: AsyncConnection, watch: Row[Any], failure: Failure) -> None:
        """Record the error; once the attempts are used up the watch waits for its next interval (a watch
        lives as long as its search: one bad hour of the provider must not end it)."""
        values: dict[str, Any] = {"last_error": failure.detail, "updated_at": failure.now}
        if failure.retry_at is None:
            values.update(attempts=0, due_at=failure.now + timedelta(minutes=watch.interval_minutes))
            log.warning("posts watch check failed; next try at its next interval", extra={"error": failure.detail})
        await conn.execute(update(post_watches).where(post_watches.c.search_id == watch.search_id).values(**values))


class _Check:
    """One check of a watch: the unseen posts of the pages read, and what they made."""

    def __init__(
        self,
        service: Service,
        search: Row[Any],
        criteria: domain.PostsCriteria,
        now: datetime,
        enrichment: domain.EnrichmentMode,
    ) -> None:
        self.service = service
        self.search = search
        self.criteria = criteria
        self.now = now
        self.enrichment = enrichment
        self.events: list[Envelope[Any]] = []
        self.seen = self.matched = self.new = self.joined = 0

    def _envelope(self, data: Event, what: str) -> Envelope[Any]:
        s = self.search
        return search_envelope(
            self.service,
            data,
            workspace_id=s.workspace_id,
            search_id=s.search_id,
            what=what,
            started_id=s.started_event_id,
        )

    async def candidate(self, conn: AsyncConnection, candidate: Candidate, lookback: int) -> int:
        """Handle the posts of one result; returns how many of them this watch had not seen."""
        unseen = 0
        today = self.now.date()
        for ev in candidate.evidence:
            if ev.kind not in POST_KINDS:
                continue
            if ev.observed_on is not None and not today - timedelta(days=lookback) <= ev.observed_on <= today:
                continue
            text = domain.post_of(ev.detail)
            key = domain.post_key(candidate.linkedin_url or candidate.full_name, text, ev.ref, ev.url)
            if not await remember_post(conn, self.search.search_id, key, self.now, matched=False):
                continue
            unseen += 1
            self.seen += 1
            match = domain.match_post(self.criteria, text)
            if match is None:
                continue
            try:
                lead = domain.lead_from_candidate(candidate)
            except ValueError:
                continue
            await self._matched(conn, candidate, lead, ev, text, match, key)
        return unseen

    async def _matched(
        self,
        conn: AsyncConnection,
        candidate: Candidate,
        lead: domain.LeadInput,
        ev: Any,
        text: str,
        match: domain.PostMatch,
        key: str,
    ) -> None:
        s = self.search
        source: Literal["posts", "web"] = "posts" if ev.kind == "post" else "web"
        fit = FitSignal(
            kind=f"{match.language}_post" if ev.kind == "post" else "web_mention",
            detail=f"'{text[:280]}' (mentions {', '.join(repr(h) for h in match.matched)})",
            observed_on=ev.observed_on,
        )
        added = await add_lead(
            conn,
            s.workspace_id,
            lead,
            source=LeadSource.posts.value,
            source_group_id=s.source_group_id,
            search_id=s.search_id,
            fit_signals=[fit.model_dump(mode="json")],
            now=self.now,
            enrichment=self.enrichment,
        )
        self.matched += 1
        self.new += added.new_lead
        self.joined += added.new_member
        for what, event in lead_events(
            added,
            lead,
            LeadSource.posts,
            search_id=s.search_id,
            source_group_id=s.source_group_id,
            fit=[fit],
            enrichment=self.enrichment,
        ):
            self.events.append(self._envelope(event, f"{what}"))
        matched = domain.post_matched_event(
            added.lead_id,
            s.source_group_id,
            s.search_id,
            text,
            match,
            posted_on=ev.observed_on,
            url=ev.url,
            source=source,
        )
        self.events.append(self._envelope(matched, f"post:{key}"))
        await conn.execute(
            update(watched_posts)
            .where(watched_posts.c.search_id == s.search_id, watched_posts.c.post_key == key)
            .values(matched=True, lead_id=added.lead_id)
        )
