"""Webhooks wiring: settings -> target guard and sender -> event handler, delivery worker and API -> service."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from pathlib import Path

import httpx
from leadstream_schemas import EVENT_TYPES, TOPICS, LeadErased

from services.runtime.clock import Clock
from services.runtime.service import Service

from .api import build_router
from .commands import SubscriptionCommands
from .domain import RetryPolicy
from .handlers import on_event, on_lead_erased
from .interest import SubscriptionIndex
from .sender import Resolver, Sender, TargetGuard, system_resolver
from .settings import WebhooksSettings
from .store import metadata, runtime_tables
from .worker import DeliveryWorker

MIGRATIONS = Path(__file__).parent / "migrations"


def build(
    settings: WebhooksSettings | None = None,
    clock: Clock | None = None,
    *,
    resolver: Resolver = system_resolver,
    wall_clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Service:
    """The webhooks service, ready to start. ``resolver`` answers host lookups (tests pin names to addresses)."""
    settings = settings or WebhooksSettings()
    clock = clock or settings.clock()
    service = Service(settings, metadata=metadata, tables=runtime_tables, migrations_dir=MIGRATIONS, clock=clock)
    index = SubscriptionIndex(service.engine, settings.database_url)
    service.add_task(index.listen)
    guard = TargetGuard(
        allow_private=settings.webhooks_allow_private_targets,
        allow_http=settings.webhooks_allow_http,
        resolver=resolver,
    )
    sender = Sender(
        guard,
        timeout_s=settings.webhooks_timeout_s,
        max_response_bytes=settings.webhooks_response_max_bytes,
        wall_clock=wall_clock,
        transport=transport,
    )
    worker = DeliveryWorker(
        service,
        sender,
        RetryPolicy(
            max_attempts=settings.webhooks_max_attempts,
            initial_s=settings.webhooks_retry_initial_s,
            max_s=settings.webhooks_retry_max_s,
            jitter=settings.webhooks_retry_jitter,
        ),
        disable_min_failures=settings.webhooks_disable_min_failures,
        disable_after=timedelta(hours=settings.webhooks_disable_after_h),
        concurrency=settings.webhooks_concurrency,
        poll_s=settings.webhooks_poll_interval_s,
        retention=timedelta(days=settings.webhooks_retention_days),
        housekeeping_s=settings.webhooks_housekeeping_interval_s,
    )
    worker.serve()
    # Every event is queued for the subscriptions that select it; LeadErased also blanks the lead's stored deliveries.
    # Events no subscription could take are skipped from their headers (the index), without a transaction.
    # A queued delivery wakes the delivery loops.
    queue, erase = partial(on_event, wake=worker.wake), partial(on_lead_erased, wake=worker.wake)
    service.consume(
        list(TOPICS), {**dict.fromkeys(EVENT_TYPES.values(), queue), LeadErased: erase}, interest=index.wants
    )
    commands = SubscriptionCommands(
        service.engine,
        clock,
        guard,
        max_subscriptions=settings.webhooks_max_subscriptions,
        rotation_window=timedelta(hours=settings.webhooks_secret_rotation_window_h),
        wake=worker.wake,
    )
    service.include_router(build_router(service, commands))
    service.app.state.webhooks_worker = worker
    service.app.state.subscription_index = index
    return service
