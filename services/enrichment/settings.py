"""Enrichment settings (``LEADSTREAM_*``)."""

from __future__ import annotations

from pydantic import Field

from services.runtime.settings import RuntimeSettings


class EnrichmentSettings(RuntimeSettings):
    """Settings of the enrichment service."""

    service_name: str = "enrichment"
    http_port: int = 8102
    enrichment_provider: str = Field("simulated", description="simulated | http")
    enrichment_cache_days: int = Field(30, ge=0, description="Do not enrich the same profile twice within this window.")
