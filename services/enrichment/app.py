"""Enrichment wiring: settings -> adapters -> handlers + retry worker -> service."""

from __future__ import annotations

from pathlib import Path

from leadstream_schemas import LEAD, LeadDiscovered, LeadEnrichmentRequested, LeadErased

from services.runtime.clock import Clock
from services.runtime.providers import SimulationProfile
from services.runtime.service import Service

from . import domain
from .adapters import EmailFinder, ProfileProvider
from .adapters.http import EmailApiClient, ProfileApiClient
from .adapters.simulated import SimulatedEmailFinder, SimulatedProfileProvider
from .handlers import EnrichmentHandlers, RetryWorker
from .settings import EnrichmentSettings
from .store import metadata, runtime_tables

MIGRATIONS = Path(__file__).parent / "migrations"


def make_adapters(settings: EnrichmentSettings, clock: Clock) -> tuple[ProfileProvider, EmailFinder]:
    """The profile provider and email finder the settings choose."""
    if settings.enrichment_provider == "http":
        timeouts = (settings.provider_timeout_s, settings.provider_max_retries, settings.provider_backoff_s)
        timeout_s, max_retries, backoff_s = timeouts
        wait = settings.provider_max_inline_wait_s
        profiles = ProfileApiClient(
            settings.profile_api_base_url,
            settings.profile_api_key.get_secret_value(),
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_inline_wait_s=wait,
            clock=clock,
        )
        emails = EmailApiClient(
            settings.email_api_base_url,
            settings.email_api_key.get_secret_value(),
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_inline_wait_s=wait,
            clock=clock,
        )
        return profiles, emails
    sim = SimulationProfile(
        seed=settings.simulated_seed,
        latency_ms=(settings.sim_latency_ms_min, settings.sim_latency_ms_max),
        transient_error_rate=settings.sim_transient_error_rate,
        rate_limit_every=settings.sim_rate_limit_every,
        retry_after_s=settings.sim_retry_after_s,
    )
    rate = settings.sim_permanent_error_rate
    return SimulatedProfileProvider(sim, clock, rate), SimulatedEmailFinder(sim, clock, rate)


def build(
    settings: EnrichmentSettings | None = None,
    clock: Clock | None = None,
    profiles: ProfileProvider | None = None,
    emails: EmailFinder | None = None,
) -> Service:
    """The enrichment service, ready to start (``service.app.state.handlers`` / ``.retries`` for tests)."""
    settings = settings or EnrichmentSettings()
    clock = clock or settings.clock()
    service = Service(settings, metadata=metadata, tables=runtime_tables, migrations_dir=MIGRATIONS, clock=clock)
    default_profiles, default_emails = make_adapters(settings, clock)
    policy = domain.RetryPolicy(
        settings.retry_initial_s, settings.retry_max_s, settings.retry_max_attempts, settings.retry_max_rate_limited
    )
    handlers = EnrichmentHandlers(
        profiles or default_profiles, emails or default_emails, settings.enrichment_cache_days, policy
    )
    retries = RetryWorker(service, handlers, settings.retry_poll_interval_s)
    service.consume(
        [LEAD.name],
        {
            LeadDiscovered: handlers.on_lead_discovered,
            LeadEnrichmentRequested: handlers.on_enrichment_requested,
            LeadErased: handlers.on_lead_erased,
        },
    )
    retries.timers.serve()
    service.close_on_stop(handlers.profiles, handlers.emails)
    service.app.state.handlers = handlers
    service.app.state.retries = retries
    return service
