"""Video settings (``LEADSTREAM_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.runtime.secrets import SecretSpec
from services.runtime.settings import RuntimeSettings
from services.runtime.timers import Schedule

VIDEO_SUBMIT_BACKOFF_MAX_S = 600.0
"""The longest wait between two submits of a job."""

VIDEO_DELETE_BACKOFF_MAX_S = 6 * 3600.0
"""The longest wait between two tries of a studio deletion (a studio down for hours is waited out)."""


class VideoSettings(RuntimeSettings):
    """Settings of the video service."""

    service_name: str = "video"
    http_port: int = 8105

    video_provider: str = Field("simulated", description="simulated | http (an AI-Studio-style REST API)")
    video_timeout_s: float = Field(
        900.0, gt=0, description="Campaign-time seconds to wait for the studio's callback before VideoFailed(timeout)."
    )
    video_poll_interval_s: float = Field(
        0.5,
        gt=0,
        description="The most often the loop looks for due jobs (real seconds; "
        "idle, it sleeps until the next is due, at most timer_idle_max_s).",
    )
    video_submit_backoff_s: float = Field(
        5.0, ge=0, description="Campaign-time wait before resubmitting a job after a transient error; doubles."
    )
    video_submit_max_attempts: int = Field(
        8, ge=1, description="Submits of one job that may fail before it fails (VideoFailed provider_error)."
    )
    video_delete_backoff_s: float = Field(
        60.0,
        ge=0,
        description="Campaign-time wait before retrying a refused studio deletion (an erased lead's video); "
        "doubles, up to 6 h.",
    )
    video_delete_max_attempts: int = Field(
        12, ge=1, description="Tries of one studio deletion before it is given up (recorded failed and logged)."
    )
    video_callback_url: str = Field("", description="Public URL of POST /v1/video/callback (default: this service).")
    video_webhook_secret: SecretStr | None = Field(
        None,
        description="Standard Webhooks secret(s) (whsec_...) of the studio's callbacks. Comma-separated to rotate: "
        "the first signs (the simulated studio), all verify.",
    )

    studio_base_url: str = Field("https://api.studio.example/v1", description="Base URL of the video studio API.")
    studio_api_key: SecretStr = Field(SecretStr(""), description="API key of the video studio (never committed).")
    studio_timeout_s: float = Field(15.0, gt=0)
    studio_max_retries: int = Field(3, ge=0)
    studio_backoff_initial_s: float = Field(0.5, ge=0)
    studio_backoff_max_s: float = Field(8.0, ge=0)
    studio_max_retry_after_s: float = Field(10.0, ge=0)

    sim_render_delay_min_s: float = Field(60.0, ge=0, description="Simulated render time, campaign seconds (low).")
    sim_render_delay_max_s: float = Field(300.0, ge=0, description="Simulated render time, campaign seconds (high).")
    sim_failure_rate: float = Field(0.05, ge=0, le=1, description="Share of simulated renders that fail.")
    sim_submit_error_rate: float = Field(0.03, ge=0, le=1, description="Share of simulated submits failing (503).")
    sim_delete_error_rate: float = Field(0.03, ge=0, le=1, description="Share of simulated deletes failing (503).")
    sim_callback_in_process: bool = Field(
        False, description="Deliver simulated callbacks straight to this process's app instead of over HTTP."
    )

    def jobs_schedule(self) -> Schedule:
        """How the job sweeper looks for due jobs and retries a failed submit."""
        return Schedule(
            max_attempts=self.video_submit_max_attempts,
            retry_initial_s=self.video_submit_backoff_s,
            retry_max_s=VIDEO_SUBMIT_BACKOFF_MAX_S,
            poll_interval_s=self.video_poll_interval_s,
        )

    def deletions_schedule(self) -> Schedule:
        """How the deletion loop looks for due studio deletions and retries a refused one."""
        return Schedule(
            max_attempts=self.video_delete_max_attempts,
            retry_initial_s=self.video_delete_backoff_s,
            retry_max_s=VIDEO_DELETE_BACKOFF_MAX_S,
            poll_interval_s=self.video_poll_interval_s,
        )

    def callback_url(self) -> str:
        """Where the studio posts its callbacks."""
        if self.video_callback_url:
            return self.video_callback_url
        host = "127.0.0.1" if self.http_host in {"0.0.0.0", "::"} else self.http_host
        return f"http://{host}:{self.http_port}/v1/video/callback"

    def secret_specs(self) -> list[SecretSpec]:
        """The studio's callback key, and its API key with the http studio."""
        specs = [*super().secret_specs(), self.secret("video_webhook_secret", "video studio callbacks", "whsec")]
        if self.video_provider == "http":
            specs.append(self.secret("studio_api_key", "video studio API", "credential"))
        return specs

    def production_problems(self) -> list[str]:
        """A real studio's video links go to leads: their hosts must be configured."""
        problems = super().production_problems()
        if (
            self.video_provider == "http"
            and self.link_allowed_hosts == type(self).model_fields["link_allowed_hosts"].get_default()
        ):
            problems.append("LEADSTREAM_LINK_ALLOWED_HOSTS is not set (the hosts of the studio's video links)")
        return problems
