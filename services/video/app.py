"""Video wiring: settings -> studio adapter -> handlers, job sweep, studio deletions and callback API -> service."""

from __future__ import annotations

from pathlib import Path

import httpx
from leadstream_schemas import (
    CAMPAIGN,
    LEAD,
    CampaignCreated,
    LeadEnrichmentFailed,
    LeadEnrolled,
    LeadErased,
    LeadProfileEnriched,
)

from services.runtime.clock import Clock
from services.runtime.links import allowed_hosts
from services.runtime.providers import SimulationProfile
from services.runtime.service import Service

from .adapters import VideoStudio
from .adapters.http import HttpStudio
from .adapters.simulated import SimulatedStudio
from .api import build_router
from .deletions import StudioDeletions
from .handlers import VideoHandlers
from .jobs import JobSweeper
from .settings import VideoSettings
from .store import metadata, runtime_tables

MIGRATIONS = Path(__file__).parent / "migrations"


def make_studio(settings: VideoSettings, clock: Clock, service: Service) -> VideoStudio:
    """The configured studio: simulated (default) or an AI-Studio-style REST API."""
    if settings.video_provider == "http":
        return HttpStudio(
            settings.studio_base_url,
            settings.studio_api_key.get_secret_value(),
            timeout_s=settings.studio_timeout_s,
            max_retries=settings.studio_max_retries,
            backoff_initial_s=settings.studio_backoff_initial_s,
            backoff_max_s=settings.studio_backoff_max_s,
            max_retry_after_s=settings.studio_max_retry_after_s,
        )
    if settings.video_provider != "simulated":
        raise ValueError(f"LEADSTREAM_VIDEO_PROVIDER must be simulated or http, not {settings.video_provider!r}")
    transport = httpx.ASGITransport(app=service.app) if settings.sim_callback_in_process else None
    return SimulatedStudio(
        SimulationProfile(seed=settings.simulated_seed, transient_error_rate=settings.sim_submit_error_rate),
        clock,
        settings.keys("video_webhook_secret").signing,
        render_delay_s=(settings.sim_render_delay_min_s, settings.sim_render_delay_max_s),
        failure_rate=settings.sim_failure_rate,
        delete_failure_rate=settings.sim_delete_error_rate,
        transport=transport,
    )


def build(
    settings: VideoSettings | None = None, clock: Clock | None = None, studio: VideoStudio | None = None
) -> Service:
    """The video service, ready to start."""
    settings = settings or VideoSettings()
    clock = clock or settings.clock()
    service = Service(settings, metadata=metadata, tables=runtime_tables, migrations_dir=MIGRATIONS, clock=clock)
    studio = studio or make_studio(settings, clock, service)
    service.close_on_stop(studio)
    sweeper = JobSweeper(service, studio, settings)
    deleter = StudioDeletions(service, studio, settings)
    handlers = VideoHandlers(settings.video_timeout_s, wake=sweeper.timers.wake, wake_deletions=deleter.timers.wake)
    service.consume(
        [CAMPAIGN.name, LEAD.name],
        {
            CampaignCreated: handlers.on_campaign_created,
            LeadProfileEnriched: handlers.on_profile_enriched,
            LeadEnrichmentFailed: handlers.on_enrichment_failed,
            LeadEnrolled: handlers.on_lead_enrolled,
            LeadErased: handlers.on_lead_erased,
        },
    )
    sweeper.timers.serve()
    deleter.timers.serve()
    if isinstance(studio, SimulatedStudio):
        service.add_task(studio.run)
    service.include_router(
        build_router(
            service,
            keys=settings.keys("video_webhook_secret"),
            tolerance_s=settings.webhook_tolerance_s,
            link_hosts=allowed_hosts(settings.link_allowed_hosts),
            max_bytes=settings.webhook_max_bytes,
            wake_deletions=deleter.timers.wake,
        )
    )
    service.app.state.video_studio = studio
    service.app.state.video_deletions = deleter
    return service
