"""Webhooks settings (``LEADSTREAM_WEBHOOKS_*``)."""

from __future__ import annotations

from pydantic import Field

from services.runtime.settings import RuntimeSettings


class WebhooksSettings(RuntimeSettings):
    """Settings of the webhooks service. Durations are in service-clock time (scaled in the demo)."""

    service_name: str = "webhooks"
    http_port: int = 8108

    webhooks_allow_private_targets: bool = Field(
        False,
        description="Accept subscriber URLs that resolve to loopback, private, link-local or other non-public "
        "addresses (development and tests only: it lets API users make this service call internal systems).",
    )
    webhooks_allow_http: bool = Field(False, description="Accept http:// subscriber URLs (development only).")
    webhooks_timeout_s: float = Field(10.0, gt=0, le=60, description="Real seconds one delivery attempt may take.")
    webhooks_response_max_bytes: int = Field(
        4096, ge=0, le=65536, description="Bytes of a subscriber's answer that are read (and kept in the log)."
    )
    webhooks_max_attempts: int = Field(15, ge=1, le=100, description="Attempts before a delivery is given up.")
    webhooks_retry_initial_s: float = Field(5.0, gt=0, description="Wait after the first failed attempt.")
    webhooks_retry_max_s: float = Field(36_000.0, gt=0, description="Longest wait between two attempts (10 h).")
    webhooks_retry_jitter: float = Field(0.2, ge=0, le=1, description="Up to this fraction of a wait is cut at random.")
    webhooks_disable_min_failures: int = Field(
        10, ge=1, description="Consecutive failed attempts before an endpoint can be disabled ..."
    )
    webhooks_disable_after_h: float = Field(
        24.0, ge=0, description="... and for how long (since its first failure without a success since) it failed."
    )
    webhooks_secret_rotation_window_h: float = Field(
        24.0, ge=0, description="How long the previous secret still signs after a rotation."
    )
    webhooks_max_subscriptions: int = Field(50, ge=1, le=1000, description="Subscriptions per workspace.")
    webhooks_concurrency: int = Field(4, ge=1, le=64, description="Delivery attempts in flight per process.")
    webhooks_poll_interval_s: float = Field(
        0.5,
        gt=0,
        description="The most often a worker looks for due deliveries (real seconds; "
        "idle, it sleeps until the next is due, at most timer_idle_max_s).",
    )
    webhooks_retention_days: float = Field(
        30.0, gt=0, description="Delivered and given-up deliveries (and their attempts) are deleted after this."
    )
    webhooks_housekeeping_interval_s: float = Field(
        60.0, gt=0, description="Real seconds between metric refreshes and retention sweeps."
    )
