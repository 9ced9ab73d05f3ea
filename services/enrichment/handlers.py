"""Enrichment's event handler and its durable retries: decode -> domain -> store + outbox.

A discovered lead is enriched in two stages, profile then email (a lead of a source group that enriches on
selection waits in ``awaiting_selection`` until ``LeadEnrichmentRequested`` asks for it). Cached answers are
the workspace's own: another workspace's never serve. A stage that meets a rate limit or a
transient provider error is parked in ``enrichment_retries`` (in the same transaction as everything
the handler did so far) and the partition moves on; :class:`RetryWorker` picks it up when due (the
runtime's durable-timer loop). The
events a retry emits are caused by the original ``LeadDiscovered`` with the same deterministic ids as
the inline attempt, so nothing is duplicated. A stage that can never succeed, or whose retries are
used up, is recorded as ``LeadEnrichmentFailed`` with the reason: nothing is lost or dead-lettered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from leadstream_schemas import Envelope, LeadDiscovered, LeadEnrichmentRequested, LeadErased
from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.consumer import HandlerContext
from services.runtime.providers import ProviderError, RateLimited
from services.runtime.service import Service
from services.runtime.timers import DurableTimers, Failure, Schedule

from . import domain
from .adapters import EmailFinder, EmailResult, LeadRef, ProfileData, ProfileProvider
from .store import awaiting_selection, enrichment_retries, profile_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """A stage to try again later."""

    stage: domain.Stage
    attempts: int
    rate_limited: int
    due_at: datetime
    error: str
    profile: dict[str, Any] | None

    def row(self) -> dict[str, Any]:
        """Its columns in ``enrichment_retries``."""
        return {
            "stage": self.stage,
            "attempts": self.attempts,
            "rate_limited": self.rate_limited,
            "profile": self.profile,
            "due_at": self.due_at,
            "last_error": self.error,
        }


def _jsonable(value: Any) -> Any:
    """Dates to ISO strings so a row is plain JSON; NUL characters (which JSONB refuses) are dropped."""
    return json.loads(json.dumps(value, default=str).replace("\\u0000", ""))


def lead_ref(lead: LeadDiscovered) -> LeadRef:
    """What the providers are told about a lead."""
    return LeadRef(
        str(lead.lead_id), lead.linkedin_url, lead.full_name, lead.company, lead.email, lead.title, lead.location
    )


class EnrichmentHandlers:
    """The enrichment of one lead, inline (from the consumer) or from a retry."""

    def __init__(
        self, profiles: ProfileProvider, emails: EmailFinder, cache_days: int, policy: domain.RetryPolicy | None = None
    ) -> None:
        self.profiles = profiles
        self.emails = emails
        self.cache_days = cache_days
        self.policy = policy or domain.RetryPolicy()
        # A provider that said "slow down" is not called again before then, by any lead.
        self._blocked_until: dict[str, datetime] = {}
        # Tells the retry loop a stage was parked, once committed (the RetryWorker sets it, as the two need each
        # other): the loop naps up to timer_idle_max_s else.
        self.parked: Callable[[], None] = lambda: None

    async def on_lead_discovered(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        """Enrich the profile and the email of a newly discovered lead (parking a stage that must wait); a lead
        of a group that enriches on selection waits for ``LeadEnrichmentRequested`` instead."""
        if env.data.enrichment == "on_selection":
            await ctx.conn.execute(
                insert(awaiting_selection)
                .values(
                    workspace_id=env.workspace_id,
                    lead_id=env.data.lead_id,
                    envelope=envelope_json(env),
                    created_at=ctx.clock.now(),
                )
                .on_conflict_do_nothing()
            )
            return
        await self._begin(env, ctx)

    async def on_enrichment_requested(self, env: Envelope[LeadEnrichmentRequested], ctx: HandlerContext) -> None:
        """Enrich a lead that waited for a selection, as if just discovered; its events answer the request
        (their ids derive from it). A lead that was never waiting (enriched when discovered) is left alone."""
        raw = await ctx.conn.scalar(
            delete(awaiting_selection)
            .where(
                awaiting_selection.c.workspace_id == env.workspace_id,
                awaiting_selection.c.lead_id == env.data.lead_id,
            )
            .returning(awaiting_selection.c.envelope)
        )
        if raw is None:
            return
        discovered = replace(
            envelope_from_json(raw),
            id=env.id,
            time=env.time,
            correlation_id=env.correlation_id or env.id,
            causation_id=env.causation_id,
            traceparent=env.traceparent,
        )
        await self._begin(discovered, ctx.for_event(discovered))

    async def on_lead_erased(self, env: Envelope[LeadErased], ctx: HandlerContext) -> None:
        """Delete enrichment's copies of an erased lead (idempotent): the cached profile and email fetched for
        them, and the LeadDiscovered kept while they wait for a selection or a retry (nothing is fetched for them
        again)."""
        ws, lead = env.workspace_id, env.data.lead_id
        cache = profile_cache.c
        await ctx.conn.execute(
            delete(profile_cache).where(
                cache.workspace_id == ws, or_(cache.lead_id == lead, cache.profile_key == f"lead:{lead}")
            )
        )
        for table in (awaiting_selection, enrichment_retries):
            await ctx.conn.execute(delete(table).where(table.c.workspace_id == ws, table.c.lead_id == lead))

    async def _begin(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        pending = await self.enrich(ctx, "profile", 0, 0, None)
        if pending is not None:
            await ctx.conn.execute(
                insert(enrichment_retries)
                .values(
                    event_id=env.id,
                    lead_id=env.data.lead_id,
                    workspace_id=env.workspace_id,
                    envelope=envelope_json(env),
                    created_at=ctx.clock.now(),
                    **pending.row(),
                )
                .on_conflict_do_nothing()
            )
            ctx.after_commit(self.parked)

    async def _call(self, which: str, now: datetime, call: Any) -> Any:
        blocked = self._blocked_until.get(which)
        if blocked is not None and now < blocked:
            raise RateLimited((blocked - now).total_seconds(), f"{which} provider asked to wait")
        try:
            return await call()
        except RateLimited as exc:
            self._blocked_until[which] = now + timedelta(seconds=exc.retry_after_s)
            raise

    async def enrich(
        self,
        ctx: HandlerContext,
        stage: domain.Stage,
        attempts: int,
        rate_limited: int,
        profile_fields: dict[str, Any] | None,
    ) -> Pending | None:
        """Run the lead's enrichment from ``stage`` on; returns the stage to retry later, if any."""
        lead: LeadDiscovered = ctx.envelope.data  # type: ignore[assignment]
        ref = lead_ref(lead)
        key = domain.profile_key(ref)
        now = ctx.clock.now()
        ws = ctx.envelope.workspace_id
        cache = profile_cache.c
        cached = (
            await ctx.conn.execute(select(profile_cache).where(cache.workspace_id == ws, cache.profile_key == key))
        ).first()
        if stage == "profile":
            profile: ProfileData | None = None
            if cached is not None and domain.cache_is_fresh(cached.enriched_at, now, self.cache_days):
                profile = ProfileData(cached.profile)
            else:
                try:
                    profile = await self._call("profile", now, lambda: self.profiles.fetch_profile(ref))
                except ProviderError as exc:
                    step = domain.after_error(exc, attempts, rate_limited, self.policy)
                    if isinstance(step, domain.RetryAt):
                        return Pending(
                            "profile",
                            step.attempts,
                            step.rate_limited,
                            now + timedelta(seconds=step.delay_s),
                            str(exc),
                            None,
                        )
                    ctx.emit(
                        domain.failed_event(lead.lead_id, lead.campaign_id, "profile", step.reason, str(exc)),
                        discriminator="profile",
                    )
                else:
                    # The event is built from what is cached, so a cache hit emits the very same profile.
                    stored = _jsonable(profile.fields)
                    profile = ProfileData(stored)
                    await ctx.conn.execute(
                        insert(profile_cache)
                        .values(workspace_id=ws, profile_key=key, profile=stored, enriched_at=now, lead_id=lead.lead_id)
                        .on_conflict_do_update(
                            index_elements=["workspace_id", "profile_key"],
                            set_={"profile": stored, "enriched_at": now, "lead_id": lead.lead_id},
                        )
                    )
            if profile is not None:
                ctx.emit(domain.profile_event(lead.lead_id, lead.campaign_id, profile, self.profiles.name))
            profile_fields = _jsonable((profile or domain.fallback_profile(ref)).fields)
            attempts = rate_limited = 0
        profile = ProfileData(profile_fields or {})
        result = domain.cached_email(cached.email if cached is not None else None, ref, now, self.cache_days)
        if result is None:
            try:
                result = await self._call("email", now, lambda: self.emails.find_email(ref, profile))
            except ProviderError as exc:
                step = domain.after_error(exc, attempts, rate_limited, self.policy)
                if isinstance(step, domain.RetryAt):
                    return Pending(
                        "email",
                        step.attempts,
                        step.rate_limited,
                        now + timedelta(seconds=step.delay_s),
                        str(exc),
                        profile_fields,
                    )
                ctx.emit(
                    domain.failed_event(lead.lead_id, lead.campaign_id, "email", step.reason, str(exc)),
                    discriminator="email",
                )
                return None
            await self._cache_email(ctx.conn, ws, key, ref, result, now)
        ctx.emit(domain.email_event(lead.lead_id, lead.campaign_id, result, self.emails.name))
        return None

    async def _cache_email(
        self, conn: AsyncConnection, workspace_id: str, key: str, ref: LeadRef, result: EmailResult, now: datetime
    ) -> None:
        await conn.execute(
            update(profile_cache)
            .where(profile_cache.c.workspace_id == workspace_id, profile_cache.c.profile_key == key)
            .values(email=domain.email_cache_entry(ref, result, now))
        )


def envelope_json(env: Envelope[LeadDiscovered]) -> dict[str, Any]:
    """A parked envelope as JSON."""
    return {
        "id": str(env.id),
        "workspace_id": env.workspace_id,
        "source": env.source,
        "time": env.time.isoformat(),
        "campaign_id": env.campaign_id,
        "traceparent": env.traceparent,
        "correlation_id": str(env.correlation_id) if env.correlation_id else None,
        "causation_id": str(env.causation_id) if env.causation_id else None,
        "data": env.data.model_dump(mode="json"),
    }


def envelope_from_json(raw: dict[str, Any]) -> Envelope[LeadDiscovered]:
    """The parked envelope back (same id, so retries emit the same event ids)."""
    return Envelope(
        data=LeadDiscovered.model_validate(raw["data"]),
        workspace_id=raw["workspace_id"],
        source=raw["source"],
        id=UUID(raw["id"]),
        time=datetime.fromisoformat(raw["time"]),
        campaign_id=raw.get("campaign_id"),
        correlation_id=UUID(raw["correlation_id"]) if raw.get("correlation_id") else None,
        causation_id=UUID(raw["causation_id"]) if raw.get("causation_id") else None,
        traceparent=raw.get("traceparent"),
    )


class RetryWorker:
    """Runs parked stages when they are due, on the runtime's durable-timer loop (``timers.loop``); replicas
    share the rows (SKIP LOCKED). A stage that raises (a bug) is retried like a transient error, with the
    policy's backoff, then recorded as ``LeadEnrichmentFailed(internal_error)``: it never retries for ever
    nor vanishes."""

    def __init__(self, service: Service, handlers: EnrichmentHandlers, poll_interval_s: float) -> None:
        self.service = service
        self.handlers = handlers
        policy = handlers.policy
        self.timers = DurableTimers(
            name="enrichment_retries",
            service=service,
            table=enrichment_retries,
            due=enrichment_retries.c.due_at,
            attempts=enrichment_retries.c.attempts,
            claimable=lambda now: (
                select(enrichment_retries)
                .where(enrichment_retries.c.due_at <= now)
                .order_by(enrichment_retries.c.due_at)
            ),
            run=self._retry,
            failed=self._failed,
            schedule=Schedule(
                max_attempts=policy.max_attempts,
                retry_initial_s=policy.initial_s,
                retry_max_s=policy.max_s,
                poll_interval_s=poll_interval_s,
            ),
            traceparent=lambda row: row.envelope.get("traceparent"),  # the parked event's: its retry continues it
        )
        handlers.parked = self.timers.wake

    async def run_one(self) -> bool:
        """Retry the most overdue parked lead; False when none is due."""
        return await self.timers.run_once() is not None

    def _context(self, conn: AsyncConnection, row: Row[Any]) -> HandlerContext:
        env = envelope_from_json(row.envelope)
        return HandlerContext(conn=conn, envelope=env, clock=self.service.clock, source=self.service.source)  # type: ignore[arg-type]

    async def _retry(self, conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        ctx = self._context(conn, row)
        pending = await self.handlers.enrich(ctx, row.stage, row.attempts, row.rate_limited, row.profile)
        where = enrichment_retries.c.event_id == row.event_id
        if pending is None:
            await conn.execute(delete(enrichment_retries).where(where))
        else:
            await conn.execute(update(enrichment_retries).where(where).values(**pending.row()))
        await self.service.emit(conn, ctx.emitted)

    async def _failed(self, conn: AsyncConnection, row: Row[Any], failure: Failure) -> None:
        where = enrichment_retries.c.event_id == row.event_id
        if failure.retry_at is not None:
            await conn.execute(update(enrichment_retries).where(where).values(last_error=failure.detail))
            return
        ctx = self._context(conn, row)
        lead: LeadDiscovered = ctx.envelope.data  # type: ignore[assignment]
        event = domain.failed_event(lead.lead_id, lead.campaign_id, row.stage, "internal_error", failure.detail)
        ctx.emit(event, discriminator=row.stage)
        await conn.execute(delete(enrichment_retries).where(where))
        await self.service.emit(conn, ctx.emitted)
