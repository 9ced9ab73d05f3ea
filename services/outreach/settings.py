"""Outreach settings (``LEADSTREAM_*``)."""

from __future__ import annotations

from pydantic import Field

from services.runtime.settings import RuntimeSettings


class OutreachSettings(RuntimeSettings):
    """Settings of the outreach service."""

    service_name: str = "outreach"
    http_port: int = 8104

    linkedin_provider: str = Field("simulated", description="simulated | http (Unipile-style REST API)")
    unipile_base_url: str = Field("http://127.0.0.1:9999", description="Base URL of the LinkedIn provider API.")
    unipile_api_key: str = Field("", description="API key of the LinkedIn provider (from the environment).")
    email_provider: str = Field("simulated", description="simulated | http (HTTP email API)")
    email_api_url: str = Field("http://127.0.0.1:9998", description="Base URL of the HTTP email API.")
    email_api_key: str = Field("", description="API key of the email API (from the environment).")
    email_real_sends: bool = Field(
        False, description="Send emails for real. Off by default: emails are dry-run (ActionSkipped dry_run)."
    )
    public_base_url: str = Field("http://127.0.0.1:8104", description="Where unsubscribe links and callbacks point.")
    reconnect_email_to: str = Field("owner@leadstream.invalid", description="Default recipient of reconnect emails.")

    timer_loop_enabled: bool = Field(True, description="Run the durable timer loop in this process.")
    timer_poll_interval_s: float = Field(0.2, gt=0, description="Real seconds between timer polls when idle.")
    timer_max_attempts: int = Field(5, ge=1, description="Provider attempts of one step before ActionFailed.")
    video_wait_minutes: int = Field(60, ge=1, description="Failsafe: the first action waits this long for a video.")
    provider_timeout_s: float = Field(15.0, gt=0)

    sim_accept_rate: float = Field(0.6, ge=0, le=1, description="Simulated share of invites accepted.")
    sim_reply_rate: float = Field(0.3, ge=0, le=1, description="Simulated share of messages answered.")
    sim_out_of_office_rate: float = Field(0.05, ge=0, le=1, description="Simulated share of out-of-office replies.")
    sim_connected_rate: float = Field(0.25, ge=0, le=1, description="Simulated share of leads already connected.")
    sim_invite_limit_per_week: int = Field(200, ge=1, description="Simulated provider's weekly invitation limit.")
    sim_transient_error_rate: float = Field(0.03, ge=0, le=1)
