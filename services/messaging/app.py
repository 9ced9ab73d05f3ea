"""Messaging wiring: settings -> generator -> handlers and Lab API -> service."""

from __future__ import annotations

from pathlib import Path

from leadstream_schemas import (
    CAMPAIGN,
    LEAD,
    CampaignCreated,
    CampaignUpdated,
    LeadEnrichmentFailed,
    LeadEnrolled,
    LeadErased,
    LeadPostMatched,
    LeadProfileEnriched,
)

from services.runtime.clock import Clock
from services.runtime.providers import SimulationProfile
from services.runtime.service import Service

from . import domain
from .adapters import MessageGenerator
from .adapters.http import ChatCompletionsGenerator
from .adapters.simulated import SimulatedGenerator
from .api import build_router
from .handlers import MessagingCore
from .settings import MessagingSettings
from .store import metadata, runtime_tables
from .writer import Writer

MIGRATIONS = Path(__file__).parent / "migrations"


def make_generator(settings: MessagingSettings) -> MessageGenerator:
    """The configured writer: the simulated one (default) or an OpenAI-compatible chat API."""
    if settings.messaging_generator == "http":
        return ChatCompletionsGenerator(
            settings.llm_base_url,
            settings.llm_model,
            settings.llm_api_key.get_secret_value(),
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            backoff_initial_s=settings.llm_backoff_initial_s,
            backoff_max_s=settings.llm_backoff_max_s,
            max_retry_after_s=settings.llm_max_retry_after_s,
            temperature=settings.llm_temperature,
        )
    if settings.messaging_generator != "simulated":
        name = settings.messaging_generator
        raise ValueError(f"LEADSTREAM_MESSAGING_GENERATOR must be simulated or http, not {name!r}")
    return SimulatedGenerator(
        SimulationProfile(
            seed=settings.simulated_seed,
            latency_ms=(settings.sim_latency_ms_min, max(settings.sim_latency_ms_min, settings.sim_latency_ms_max)),
            transient_error_rate=settings.sim_error_rate,
        )
    )


def build(
    settings: MessagingSettings | None = None, clock: Clock | None = None, generator: MessageGenerator | None = None
) -> Service:
    """The messaging service, ready to start."""
    settings = settings or MessagingSettings()
    clock = clock or settings.clock()
    service = Service(settings, metadata=metadata, tables=runtime_tables, migrations_dir=MIGRATIONS, clock=clock)
    windows = domain.HookWindows(
        settings.hook_post_window_days, settings.hook_career_window_days, settings.hook_milestone_window_days
    )
    generator = generator or make_generator(settings)
    service.close_on_stop(generator)
    core = MessagingCore(Writer(generator), windows, settings.simulated_seed)
    service.consume(
        [CAMPAIGN.name, LEAD.name],
        {
            CampaignCreated: core.on_campaign_created,
            LeadProfileEnriched: core.on_profile_enriched,
            LeadEnrichmentFailed: core.on_enrichment_failed,
            LeadEnrolled: core.on_lead_enrolled,
            CampaignUpdated: core.on_campaign_updated,
            LeadPostMatched: core.on_post_matched,
            LeadErased: core.on_lead_erased,
        },
    )
    service.include_router(build_router(core, service, generation_attempts=settings.lab_generation_attempts))
    return service
