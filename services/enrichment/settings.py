"""Enrichment settings (``LEADSTREAM_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from services.runtime.secrets import SecretSpec
from services.runtime.settings import RuntimeSettings


class EnrichmentSettings(RuntimeSettings):
    """Settings of the enrichment service."""

    service_name: str = "enrichment"
    http_port: int = 8102
    enrichment_provider: Literal["simulated", "http"] = Field("simulated", description="simulated | http")
    enrichment_cache_days: int = Field(30, ge=0, description="Do not enrich the same profile twice within this window.")

    profile_api_base_url: str = Field("", description="Proxycurl-style profile API (http provider).")
    profile_api_key: SecretStr = Field(SecretStr(""), description="Bearer key of the profile API.")
    email_api_base_url: str = Field("", description="Hunter-style email finder/verifier API (http provider).")
    email_api_key: SecretStr = Field(SecretStr(""), description="Key of the email API (sent as X-API-KEY).")
    provider_timeout_s: float = Field(10.0, gt=0)
    provider_max_retries: int = Field(2, ge=0, description="Retries of a 5xx/429/timeout inside one provider call.")
    provider_backoff_s: float = Field(0.5, ge=0, description="First backoff inside a provider call; doubles.")
    provider_max_inline_wait_s: float = Field(
        2.0, ge=0, description="A 429 asking to wait longer is not slept through: the lead is retried later."
    )

    retry_initial_s: float = Field(1.0, ge=0, description="First delay of a lead's durable retry; doubles.")
    retry_max_s: float = Field(300.0, ge=0, description="Longest delay between two durable retries.")
    retry_max_attempts: int = Field(
        5, ge=1, description="Transient failures of one stage before LeadEnrichmentFailed is recorded."
    )
    retry_max_rate_limited: int = Field(
        50, ge=1, description="Rate-limited attempts of one stage before LeadEnrichmentFailed is recorded."
    )
    retry_poll_interval_s: float = Field(
        0.5,
        gt=0,
        description="The most often due retries are looked for (real seconds; "
        "idle, it sleeps until the next is due, at most timer_idle_max_s).",
    )

    sim_latency_ms_min: int = Field(5, ge=0)
    sim_latency_ms_max: int = Field(40, ge=0)
    sim_transient_error_rate: float = Field(0.03, ge=0, le=1)
    sim_rate_limit_every: int = Field(40, ge=0, description="Every n-th simulated call is rate limited (0 = never).")
    sim_retry_after_s: float = Field(0.2, ge=0)
    sim_permanent_error_rate: float = Field(0.0, ge=0, le=1, description="Share of people the providers never find.")

    def secret_specs(self) -> list[SecretSpec]:
        """The profile and email APIs' keys with the http providers."""
        specs = super().secret_specs()
        if self.enrichment_provider == "http":
            specs.append(self.secret("profile_api_key", "profile API", "credential"))
            specs.append(self.secret("email_api_key", "email finder API", "credential"))
        return specs
