"""Campaign audiences that keep working: discovery's handlers of the campaign events that ask for new leads.

- ``CampaignAudienceRunRequested`` (outreach, two hours before each invite window of a running campaign):
  every search feeding the campaign's audience looks for new leads now. A scheduled (recurring) search runs
  now; one that finished because its results ran out runs again from the top (``SearchResumed``), so results
  that appeared since become leads; a running one is already looking; one that reached its target, was
  cancelled or failed is left alone (:func:`domain.audience_run_action`).
- ``CampaignExtended``: the searches' targets grow by ``additional_leads`` and finished ones run again.

A campaign's audience is a saved search (its id), a source group (the search that fills it) or a LinkedIn
search URL (the searches saved with that URL). CSV imports and manual groups have no search to run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from leadstream_schemas import Audience, CampaignAudienceRunRequested, CampaignExtended, Envelope, SearchResumed
from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.consumer import HandlerContext

from . import domain
from .handlers import PROVIDER_KINDS, SearchRunner
from .store import post_watches, searches
from .watch import PostsWatch


async def feeding_searches(conn: AsyncConnection, workspace_id: str, audience: Audience) -> list[Row[Any]]:
    """The saved searches (not imports) that fill ``audience``, locked, in a stable order."""
    s = searches.c
    stmt = select(searches).where(s.workspace_id == workspace_id, s.kind.in_(PROVIDER_KINDS))
    try:
        if audience.type == "saved_search":
            stmt = stmt.where(s.search_id == UUID(audience.ref))
        elif audience.type == "source_group":
            stmt = stmt.where(s.source_group_id == UUID(audience.ref))
        else:
            url = domain.normalise_linkedin_search_url(audience.ref)
            stmt = stmt.where(s.kind == "linkedin_url", s.criteria["url"].astext == url)
    except ValueError:
        return []
    return list((await conn.execute(stmt.order_by(s.search_id).with_for_update())).all())


class CampaignAudiences:
    """Runs the searches of campaign audiences when campaigns ask (handlers on ``leadstream.campaign.v1``)."""

    def __init__(self, runner: SearchRunner, watch: PostsWatch) -> None:
        self.runner = runner
        self.watch = watch

    async def on_audience_run(self, env: Envelope[CampaignAudienceRunRequested], ctx: HandlerContext) -> None:
        """A running campaign's invite window comes in two hours: its audience's searches look for new leads."""
        now = ctx.clock.now()
        for row in await feeding_searches(ctx.conn, env.workspace_id, env.data.audience):
            action = domain.audience_run_action(row.status, row.finish_reason)
            await self._apply(ctx, row, action, "campaign_audience_run", env.data.campaign_id, row.target_count, now)
            # A posts search's watch checks the newest posts now too (no sooner than it would have).
            await ctx.conn.execute(
                update(post_watches)
                .where(
                    post_watches.c.search_id == row.search_id,
                    post_watches.c.state == "active",
                    post_watches.c.due_at > now,
                )
                .values(due_at=now, updated_at=now)
            )
        ctx.after_commit(self.runner.wake)
        ctx.after_commit(self.watch.timers.wake)

    async def on_extended(self, env: Envelope[CampaignExtended], ctx: HandlerContext) -> None:
        """A campaign wants more leads: its searches' targets (of new leads) grow and finished ones run again."""
        now = ctx.clock.now()
        for row in await feeding_searches(ctx.conn, env.workspace_id, env.data.audience):
            target = row.target_count + env.data.additional_leads
            action = domain.extension_action(row.status, row.finish_reason)
            if action == "none" and row.finish_reason in domain.FINISHED_FOR_GOOD:
                continue
            await ctx.conn.execute(
                update(searches)
                .where(searches.c.search_id == row.search_id)
                .values(target_count=target, updated_at=now)
            )
            await self._apply(ctx, row, action, "campaign_extended", env.data.campaign_id, target, now)
        ctx.after_commit(self.runner.wake)

    async def _apply(
        self,
        ctx: HandlerContext,
        row: Row[Any],
        action: domain.AudienceRunAction,
        reason: str,
        campaign_id: UUID,
        target: int,
        now: datetime,
    ) -> None:
        where = searches.c.search_id == row.search_id
        if action == "run_now":
            await ctx.conn.execute(update(searches).where(where).values(next_run_at=now, updated_at=now))
        elif action == "reopen":
            run = row.runs + 1
            await ctx.conn.execute(
                update(searches)
                .where(where)
                .values(
                    status="running",
                    finish_reason=None,
                    finished_at=None,
                    next_run_at=None,
                    cursor=None,
                    page_offset=0,
                    exhausted=False,
                    runs=run,
                    run_pages=0,
                    run_new=0,
                    run_members=0,
                    consecutive_errors=0,
                    retry_at=None,
                    last_error=None,
                    updated_at=now,
                )
            )
            resumed = SearchResumed(
                search_id=row.search_id, run=run, reason=reason, campaign_id=campaign_id, target_count=target
            )
            ctx.emit(resumed, discriminator=str(row.search_id))
