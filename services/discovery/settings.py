"""Discovery settings (``LEADSTREAM_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from services.runtime.secrets import SecretSpec
from services.runtime.settings import RuntimeSettings
from services.runtime.timers import Schedule


class DiscoverySettings(RuntimeSettings):
    """Settings of the discovery service."""

    service_name: str = "discovery"
    http_port: int = 8101

    search_provider: Literal["simulated", "http"] = Field("simulated", description="simulated | http")
    search_api_base_url: str = Field("", description="Unipile-style API base URL (http provider).")
    search_api_key: SecretStr = Field(SecretStr(""), description="API key of the search provider (X-API-KEY).")
    search_api_account_id: str = Field("", description="The provider's id of the connected LinkedIn account.")
    search_api_timeout_s: float = Field(10.0, gt=0)
    search_api_max_retries: int = Field(3, ge=0, description="Retries of a 5xx/429/timeout inside one call.")
    search_api_backoff_s: float = Field(0.5, ge=0, description="First backoff of the http client; doubles.")
    search_api_max_inline_wait_s: float = Field(
        5.0, ge=0, description="A 429 asking to wait longer than this is surfaced instead of slept through."
    )

    search_page_size: int = Field(10, ge=1, le=100, description="Results asked from the provider per page.")
    search_pages_per_run: int = Field(50, ge=1, description="Safety budget of pages in one run of a search.")
    search_poll_interval_s: float = Field(
        0.5,
        gt=0,
        description="The most often the worker looks for due searches (real seconds; "
        "idle, it sleeps until the next is due, at most timer_idle_max_s).",
    )
    search_max_consecutive_errors: int = Field(5, ge=1, description="Transient provider errors before 'failed'.")
    search_backoff_initial_s: float = Field(0.2, ge=0)
    search_backoff_max_s: float = Field(10.0, ge=0)
    search_max_retry_after_s: float = Field(300.0, ge=0, description="Cap on a provider's retry-after.")
    recurring_interval_minutes: int = Field(
        1440, ge=1, description="Default wait between two runs of a recurring search."
    )
    preview_default_limit: int = Field(10, ge=1, le=50)
    posts_watch_interval_minutes: int = Field(
        60, ge=5, le=1440, description="Default interval of a posts search's watch (how often it checks new posts)."
    )
    posts_watch_max_pages: int = Field(
        3, ge=1, le=50, description="Pages of newest posts one watch check reads at most (it stops at known posts)."
    )

    csv_max_rows: int = Field(50_000, ge=1, description="Rows beyond this are reported, not imported.")
    csv_max_bytes: int = Field(
        16_777_216,
        ge=1024,
        description="Bytes of an uploaded CSV file (the edge's cap for the upload route; other routes: "
        "http_max_body_bytes): a larger declared upload is refused (413), a larger streamed one stops there "
        "(reported). Uploads are streamed, never spooled to /tmp.",
    )
    csv_batch_rows: int = Field(200, ge=1, description="Good rows committed per transaction while streaming.")
    csv_max_reported_errors: int = Field(1000, ge=1, description="Row errors listed in the answer (counts stay exact).")

    sim_latency_ms_min: int = Field(5, ge=0)
    sim_latency_ms_max: int = Field(40, ge=0)
    sim_transient_error_rate: float = Field(0.03, ge=0, le=1)
    sim_rate_limit_every: int = Field(25, ge=0, description="Every n-th simulated call is rate limited (0 = never).")
    sim_retry_after_s: float = Field(0.2, ge=0)

    def search_schedule(self) -> Schedule:
        """How the search timers (a search's pages, the posts watch) run and retry a provider's errors."""
        return Schedule(
            max_attempts=self.search_max_consecutive_errors,
            retry_initial_s=self.search_backoff_initial_s,
            retry_max_s=self.search_backoff_max_s,
            poll_interval_s=self.search_poll_interval_s,
            max_retry_after_s=self.search_max_retry_after_s,
        )

    def secret_specs(self) -> list[SecretSpec]:
        """The search provider's API key with the http provider."""
        specs = super().secret_specs()
        if self.search_provider == "http":
            specs.append(self.secret("search_api_key", "search provider API", "credential"))
        return specs
