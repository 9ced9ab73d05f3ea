"""Fixtures of the discovery tests: the service on the real broker and database, fast and error-free by default."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.discovery.app import build
from services.discovery.settings import DiscoverySettings
from services.runtime.service import Service

FAST = {
    "sim_latency_ms_min": 0,
    "sim_latency_ms_max": 2,
    "sim_transient_error_rate": 0.0,
    "sim_rate_limit_every": 0,
    "search_page_size": 7,
    "search_poll_interval_s": 0.05,
    "search_backoff_initial_s": 0.01,
    "search_backoff_max_s": 0.05,
}

StartDiscovery = Callable[..., Awaitable[Service]]


@pytest.fixture
def discovery_settings(make_settings: Callable[..., Any]) -> Callable[..., DiscoverySettings]:
    """``discovery_settings(**overrides)``: settings on the test servers (fast simulation, no errors)."""

    def make(**overrides: Any) -> DiscoverySettings:
        return make_settings("discovery", DiscoverySettings, **{**FAST, **overrides})

    return make


@pytest.fixture
def start_discovery(
    discovery_settings: Callable[..., DiscoverySettings], start_service: Callable[[Service], Awaitable[Service]]
) -> StartDiscovery:
    """``await start_discovery(clock=..., provider=..., **setting_overrides)`` -> a started service."""

    async def start(clock: Any = None, provider: Any = None, **overrides: Any) -> Service:
        return await start_service(build(discovery_settings(**overrides), clock=clock, provider=provider))

    return start
