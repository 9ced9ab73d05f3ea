"""Messaging settings (``LEADSTREAM_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.runtime.secrets import SecretSpec
from services.runtime.settings import RuntimeSettings


class MessagingSettings(RuntimeSettings):
    """Settings of the messaging service."""

    service_name: str = "messaging"
    http_port: int = 8103

    messaging_generator: str = Field("simulated", description="simulated | http (an OpenAI-compatible chat API)")
    llm_base_url: str = Field("https://api.openai.com/v1", description="Base URL of the chat-completions API.")
    llm_model: str = "gpt-4o-mini"
    llm_api_key: SecretStr = Field(SecretStr(""), description="Bearer key of the chat API (never committed).")
    llm_timeout_s: float = Field(20.0, gt=0)
    llm_max_retries: int = Field(3, ge=0, description="Retries on 429/5xx/timeouts before giving up.")
    llm_backoff_initial_s: float = Field(0.5, ge=0)
    llm_backoff_max_s: float = Field(8.0, ge=0)
    llm_max_retry_after_s: float = Field(
        10.0, ge=0, description="A longer Retry-After is handed back to the consumer instead of waited out inline."
    )
    llm_temperature: float = Field(0.7, ge=0, le=2)

    sim_latency_ms_min: int = Field(20, ge=0, description="Simulated generator latency, lower bound.")
    sim_latency_ms_max: int = Field(120, ge=0, description="Simulated generator latency, upper bound.")
    sim_error_rate: float = Field(0.03, ge=0, le=1, description="Share of simulated calls failing transiently.")

    hook_post_window_days: int = Field(30, ge=1, description="A post older than this is not a hook.")
    hook_career_window_days: int = Field(120, ge=1, description="A role or company change older than this is not news.")
    hook_milestone_window_days: int = Field(90, ge=1, description="A company milestone older than this is not news.")
    lab_generation_attempts: int = Field(3, ge=1, description="Inline attempts when the Lab regenerates a draft.")

    def secret_specs(self) -> list[SecretSpec]:
        """The chat API's key with the http generator."""
        specs = super().secret_specs()
        if self.messaging_generator == "http":
            specs.append(self.secret("llm_api_key", "chat API", "credential"))
        return specs
