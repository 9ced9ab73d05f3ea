"""The probe service: consumes the lead topic and, per ``LeadDiscovered``, writes one effect row and
emits one ``LeadProfileEnriched``. Tests swap in a failing handler to exercise retries and the DLQ.

It has no business logic on purpose, so what the tests observe is the runtime's behaviour alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from leadstream_schemas import LEAD, SEARCH, Envelope, Event, LeadDiscovered, LeadProfileEnriched, SearchFinished
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.clock import Clock
from services.runtime.consumer import Handler, HandlerContext
from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings

from .store import SCHEMA, effects, metadata, runtime_tables

MIGRATIONS = Path(__file__).parent / "migrations"
PROVIDER = "probe"
# The probe acts only on events of its own workspace: other tests share the topics, and an extra
# LeadProfileEnriched for their leads would break what they assert.
WORKSPACE = "ws-probe"


class ProbeSettings(RuntimeSettings):
    """Settings of the probe service."""

    service_name: str = "probe"


async def add_effect(conn: AsyncConnection, event_id: UUID, lead_id: UUID, origin: str) -> None:
    """Write one effect row in the caller's transaction."""
    await conn.execute(effects.insert().values(event_id=event_id, lead_id=lead_id, origin=origin))


def enriched_for(lead: LeadDiscovered) -> LeadProfileEnriched:
    """The event the probe emits for a discovered lead."""
    return LeadProfileEnriched(
        lead_id=lead.lead_id, campaign_id=lead.campaign_id, full_name=lead.full_name or "Unknown", provider=PROVIDER
    )


async def record_effect(env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
    """The default handler: one effect row and one emitted ``LeadProfileEnriched`` (own workspace only)."""
    if env.workspace_id != WORKSPACE:
        return
    await add_effect(ctx.conn, env.id, env.data.lead_id, "event")
    ctx.emit(enriched_for(env.data))


class FlakyHandler:
    """The default handler, except for events a test told it to fail.

    ``fail(event_id, error, times)`` makes the first ``times`` attempts for that event raise
    ``error()``; ``attempts`` counts every call per event id, so a test can assert how often the
    runtime retried. Other events are handled at once, so the stream keeps flowing.
    """

    def __init__(self) -> None:
        self.plan: dict[UUID, tuple[Callable[[], BaseException], int]] = {}
        self.attempts: Counter[UUID] = Counter()

    def fail(self, event_id: UUID, error: Callable[[], BaseException], times: int = 1_000_000) -> None:
        """Make the first ``times`` attempts for ``event_id`` raise ``error()`` (default: every attempt)."""
        self.plan[event_id] = (error, times)

    async def __call__(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        """Fail as planned, else behave like :func:`record_effect`."""
        if env.workspace_id != WORKSPACE:
            return
        self.attempts[env.id] += 1
        planned = self.plan.get(env.id)
        if planned is not None and self.attempts[env.id] <= planned[1]:
            # Written before raising, so a test can prove the failed attempt's transaction was rolled back.
            await add_effect(ctx.conn, env.id, env.data.lead_id, "failed-attempt")
            ctx.emit(enriched_for(env.data))
            raise planned[0]()
        await record_effect(env, ctx)


class EffectRequest(BaseModel):
    """Body of ``POST /v1/probe/effects``."""

    lead_id: UUID
    full_name: str = Field(min_length=1, max_length=100)


def _router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1/probe")

    @router.post("/effects", status_code=202)
    async def create_effect(body: EffectRequest, request: Request) -> dict[str, Any]:
        """Write an effect and emit ``LeadProfileEnriched`` from HTTP (the outbox path outside a handler)."""
        data = LeadProfileEnriched(lead_id=body.lead_id, full_name=body.full_name, provider=PROVIDER)
        env = service.new_envelope(data, workspace_id=WORKSPACE)
        async with service.engine.begin() as conn:
            await add_effect(conn, env.id, body.lead_id, "http")
            await service.emit(conn, [env])
        service.wake_relay()
        return {"event_id": str(env.id)}

    return router


def build(
    settings: ProbeSettings | None = None,
    handler: Handler | None = None,
    clock: Clock | None = None,
    group_suffix: str = "",
    search_finished: Handler | None = None,
) -> Service:
    """The probe service, ready to start; ``handler`` replaces the default ``LeadDiscovered`` handler.

    ``group_suffix`` gives it a consumer group of its own, for a test that must not share partitions
    with another probe running in the same session. A ``service_name`` other than ``probe`` in the
    settings gives it a database schema of its own. ``search_finished`` also reads the search topic and handles
    ``SearchFinished`` once the lead topic's records before it are done (``after``, as outreach does).
    """
    settings = settings or ProbeSettings()
    service = Service(
        settings,
        metadata=metadata,
        tables=runtime_tables,
        migrations_dir=MIGRATIONS,
        clock=clock or settings.clock(),
    )
    if settings.db_schema != SCHEMA:
        # Another service name is another schema: every statement (runtime tables included) is sent to
        # it, so two probes with different names share no processed ids, outbox or effects.
        service.engine = service.engine.execution_options(schema_translate_map={SCHEMA: settings.db_schema})
        service.relay.engine = service.housekeeping.engine = service.engine
    handlers: dict[type[Event], Handler] = {LeadDiscovered: handler or record_effect}
    after: dict[type[Event], list[str]] = {}
    topics = [LEAD.name]
    if search_finished is not None:
        handlers[SearchFinished] = search_finished
        after[SearchFinished] = [LEAD.name]
        topics.append(SEARCH.name)
    service.consume(topics, handlers, group_suffix=group_suffix, after=after)
    service.include_router(_router(service))
    return service
