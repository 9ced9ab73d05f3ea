"""Console settings (``LEADSTREAM_*``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from services.runtime.secrets import SecretSpec, development_key
from services.runtime.settings import RuntimeSettings

DEV_SESSION_SECRET = development_key("console sessions", "key")
"""The development value of ``LEADSTREAM_CONSOLE_SESSION_SECRET`` (``LEADSTREAM_ENV=development`` only)."""


class ConsoleSettings(RuntimeSettings):
    """Settings of the console (the web pages for sales teams)."""

    service_name: str = "console"
    http_port: int = 8107
    uses_key_store: ClassVar[bool] = False  # no Kafka, no events: it reads the other services' APIs

    console_session_secret: SecretStr | None = Field(
        None,
        description="Key(s) that sign the session and CSRF cookies and encrypt the workspace tokens the console keeps "
        "(at least 32 characters; required outside development). Comma-separated to rotate: the first signs, all open.",
    )
    console_session_ttl_h: float = Field(12.0, gt=0, le=24 * 30, description="A session ends this long after sign-in.")
    console_link_ttl_min: float = Field(
        15.0, gt=0, le=24 * 60, description="A one-time sign-in link expires this long after it was made."
    )
    console_cookie_secure: bool = Field(
        False, description="Send cookies over HTTPS only (set true behind TLS; false for http://127.0.0.1)."
    )
    console_public_url: str = Field(
        "http://127.0.0.1:8107", description="Where users reach the console (sign-in links point here)."
    )
    console_page_size: int = Field(
        25, ge=1, le=200, description="Rows per page of the campaign list, a campaign's results and a lead list."
    )
    console_projection_url: str = Field("http://127.0.0.1:8106", description="Base URL of the projection API.")
    console_outreach_url: str = Field("http://127.0.0.1:8104", description="Base URL of the outreach API.")
    console_messaging_url: str = Field("http://127.0.0.1:8103", description="Base URL of the messaging API.")
    console_discovery_url: str = Field("http://127.0.0.1:8101", description="Base URL of the discovery API.")
    console_backend_timeout_s: float = Field(10.0, gt=0, description="Timeout of one call to another service.")
    console_static_dir: str = Field(
        "", description="Where the front-end packages are (npm's node_modules); empty: services/console/node_modules."
    )

    def secret_specs(self) -> list[SecretSpec]:
        """The session key (part of the secrets policy: refused outside development when missing or short)."""
        return [*super().secret_specs(), self.secret("console_session_secret", "console sessions", "key")]
