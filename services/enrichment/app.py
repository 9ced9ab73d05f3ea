"""Enrichment wiring: settings -> adapters -> handlers -> service."""

from __future__ import annotations

from pathlib import Path

from leadstream_schemas import LEAD, LeadDiscovered

from services.runtime.clock import Clock, SystemClock
from services.runtime.providers import SimulationProfile
from services.runtime.service import Service

from .adapters.simulated import SimulatedEmailFinder, SimulatedProfileProvider
from .handlers import EnrichmentHandlers
from .settings import EnrichmentSettings
from .store import metadata, runtime_tables

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: EnrichmentSettings | None = None, clock: Clock | None = None) -> Service:
    """The enrichment service, ready to start."""
    settings = settings or EnrichmentSettings()
    clock = clock or SystemClock()
    service = Service(settings, metadata=metadata, tables=runtime_tables, migrations_dir=MIGRATIONS, clock=clock)
    sim = SimulationProfile(seed=settings.simulated_seed)
    today = clock.now().date()
    handlers = EnrichmentHandlers(SimulatedProfileProvider(sim, today), SimulatedEmailFinder(sim, today),
                                  settings.enrichment_cache_days)
    service.consume([LEAD.name], {LeadDiscovered: handlers.on_lead_discovered})
    return service
