"""Projection wiring: settings -> batch consumer over the four topics -> views -> HTTP API."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from services.runtime.clock import Clock
from services.runtime.service import Service

from .api import build_router
from .consumer import ProjectionConsumer
from .live import ChangeHub
from .settings import ProjectionSettings
from .store import metadata, runtime_tables, views

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: ProjectionSettings | None = None, clock: Clock | None = None) -> Service:
    """The projection service, ready to start. Its consumer is ``service.app.state.projection``."""
    settings = settings or ProjectionSettings()
    clock = clock or settings.clock()
    service = Service(
        settings,
        metadata=metadata,
        tables=runtime_tables,
        migrations_dir=MIGRATIONS,
        clock=clock,
        title="leadstream projection",
    )
    hub = ChangeHub(views, service.engine, service.read_engine, settings.database_url)
    service.app.state.changes = hub
    consumer = ProjectionConsumer(settings, views, service.broker, hub.committed, hub.origin)
    service.app.state.projection = service.add_consumer(consumer)
    service.add_task(hub.run)

    async def prune(stop: asyncio.Event) -> None:
        await hub.prune(stop, settings.projection_changes_keep_h * 3600, settings.projection_changes_prune_interval_s)

    service.add_task(prune)
    waiting = timedelta(hours=settings.projection_waiting_after_h)
    watches = settings.projection_watches_max
    service.include_router(build_router(views, service.read_engine, clock, waiting, hub, watches))
    return service
