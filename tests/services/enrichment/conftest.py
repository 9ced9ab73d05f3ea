"""Fixtures of the enrichment tests: the service on the real broker and database, fast and error-free by default."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.enrichment.app import build
from services.enrichment.settings import EnrichmentSettings
from services.runtime.service import Service

FAST = {
    "sim_latency_ms_min": 0,
    "sim_latency_ms_max": 2,
    "sim_transient_error_rate": 0.0,
    "sim_rate_limit_every": 0,
    "retry_initial_s": 0.01,
    "retry_max_s": 0.2,
    "retry_poll_interval_s": 0.02,
}

StartEnrichment = Callable[..., Awaitable[Service]]


@pytest.fixture
def start_enrichment(
    make_settings: Callable[..., Any], start_service: Callable[[Service], Awaitable[Service]]
) -> StartEnrichment:
    """``await start_enrichment(clock=.., profiles=.., emails=.., **setting_overrides)`` -> a started service.

    The service reads the lead topic from the group's committed offsets, so it may also see leads of
    other tests of the session: tests assert on their own lead ids only, or pass ``topic_prefix=own_topic_prefix``
    (the shared fixture) to see none of them.
    """

    async def start(clock: Any = None, profiles: Any = None, emails: Any = None, **overrides: Any) -> Service:
        settings = make_settings("enrichment", EnrichmentSettings, **{**FAST, **overrides})
        return await start_service(build(settings, clock=clock, profiles=profiles, emails=emails))

    return start
