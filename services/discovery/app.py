"""Discovery wiring: settings -> search provider -> search worker, posts watch, campaign-audience handlers and
HTTP routes -> service."""

from __future__ import annotations

from pathlib import Path

from leadstream_schemas import CAMPAIGN, LEAD, CampaignAudienceRunRequested, CampaignExtended, LeadErased

from services.runtime.clock import Clock
from services.runtime.providers import SimulationProfile
from services.runtime.service import Service

from .adapters import SearchProvider
from .adapters.http import UnipileSearchClient
from .adapters.simulated import SimulatedSearchProvider
from .api import build_router
from .audiences import CampaignAudiences
from .handlers import SearchRunner, on_lead_erased
from .settings import DiscoverySettings
from .store import metadata, runtime_tables
from .watch import PostsWatch

MIGRATIONS = Path(__file__).parent / "migrations"


def make_provider(settings: DiscoverySettings, clock: Clock) -> SearchProvider:
    """The search provider the settings choose."""
    if settings.search_provider == "http":
        return UnipileSearchClient(
            settings.search_api_base_url,
            settings.search_api_key.get_secret_value(),
            settings.search_api_account_id,
            timeout_s=settings.search_api_timeout_s,
            max_retries=settings.search_api_max_retries,
            backoff_s=settings.search_api_backoff_s,
            max_inline_wait_s=settings.search_api_max_inline_wait_s,
            clock=clock,
        )
    sim = SimulationProfile(
        seed=settings.simulated_seed,
        latency_ms=(settings.sim_latency_ms_min, settings.sim_latency_ms_max),
        transient_error_rate=settings.sim_transient_error_rate,
        rate_limit_every=settings.sim_rate_limit_every,
        retry_after_s=settings.sim_retry_after_s,
    )
    return SimulatedSearchProvider(sim, clock)


def build(
    settings: DiscoverySettings | None = None, clock: Clock | None = None, provider: SearchProvider | None = None
) -> Service:
    """The discovery service, ready to start (``service.app.state.runner`` is its search worker)."""
    settings = settings or DiscoverySettings()
    clock = clock or settings.clock()
    service = Service(settings, metadata=metadata, tables=runtime_tables, migrations_dir=MIGRATIONS, clock=clock)
    provider = provider or make_provider(settings, clock)
    runner = SearchRunner(service, provider, settings)
    runner.timers.serve()
    watch = PostsWatch(service, provider, settings)
    watch.timers.serve()
    audiences = CampaignAudiences(runner, watch)

    def created() -> None:
        """A search was created: it runs now, its posts watch (if any) checks within minutes."""
        runner.wake()
        watch.timers.wake()

    service.consume(
        [CAMPAIGN.name, LEAD.name],
        {
            CampaignAudienceRunRequested: audiences.on_audience_run,
            CampaignExtended: audiences.on_extended,
            LeadErased: on_lead_erased,  # discovery's copy of the person (its leads table)
        },
    )
    service.include_router(build_router(service, settings, provider, created))
    service.close_on_stop(provider)
    service.app.state.runner = runner
    service.app.state.watch = watch
    service.app.state.provider = provider
    return service
