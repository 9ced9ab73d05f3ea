"""Configuration shared by every service, read from ``LEADSTREAM_*`` environment variables.

``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` are also accepted without the prefix, because
that is what the local scripts, compose and most platforms export.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .clock import Clock, clock_from_settings


class RuntimeSettings(BaseSettings):
    """Settings every service has. A service subclasses this to add its own."""

    model_config = SettingsConfigDict(env_prefix="LEADSTREAM_", extra="ignore", populate_by_name=True)

    service_name: str = "leadstream"
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092",
        validation_alias=AliasChoices("LEADSTREAM_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    database_url: str = Field(
        "postgresql+asyncpg://leadstream:leadstream@127.0.0.1:55432/leadstream",
        validation_alias=AliasChoices("LEADSTREAM_DATABASE_URL", "DATABASE_URL"),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle for TLS listeners (e.g. Strimzi's cluster CA).")
    topic_prefix: str = Field("", description="Prefix for every topic name (isolates test runs on one broker).")
    topic_partitions: int = Field(6, ge=1)
    topic_replication_factor: int = Field(1, ge=1)
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of the topics `topics apply` manages; default min(2, replication factor).",
    )
    http_host: str = "127.0.0.1"
    http_port: int = 0
    http_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body (413 above it); a route may have its own cap."
    )
    migrate_on_start: bool = Field(
        True,
        description="Apply the service's migrations at start (local runs, demo, compose). The chart turns it off: "
        "its migrate Job migrates with a user of its own, and the services' database user needs no DDL rights.",
    )
    log_level: str = "INFO"
    log_json: bool = True

    consumer_max_records: int = Field(500, ge=1)
    consumer_max_attempts: int = Field(5, ge=1, description="Handler attempts before a record is dead-lettered.")
    consumer_backoff_initial_s: float = Field(0.2, ge=0)
    consumer_backoff_max_s: float = Field(5.0, ge=0)
    consumer_session_timeout_ms: int = 10_000
    consumer_heartbeat_interval_ms: int = 1_000
    consumer_max_poll_interval_ms: int = Field(
        300_000, ge=1_000, description="Longest gap between two polls before the broker gives the partitions away."
    )
    consumer_max_inline_wait_s: float = Field(
        3.0, ge=0, description="Longest rate-limit wait sat through inline; a longer one pauses the partition."
    )
    consumer_revoke_grace_s: float = Field(
        10.0, ge=0, description="How long work on a revoked partition may finish before it is abandoned (rolled back)."
    )

    shutdown_grace_s: float = Field(
        25.0,
        gt=0,
        description=(
            "On SIGTERM: seconds to finish in-flight work (HTTP requests, the record or timer in hand, the outbox) "
            "and exit 0; work still running then is abandoned without effect (its transaction rolls back). "
            "Kubernetes' terminationGracePeriodSeconds must exceed it plus the preStop sleep."
        ),
    )

    outbox_batch_size: int = Field(500, ge=1, description="Outbox rows the relay reads per round.")
    outbox_poll_interval_s: float = Field(0.05, gt=0)
    outbox_max_batch_bytes: int = Field(
        262_144, ge=1024, description="Bytes of one producer batch; the relay sends one batch per partition at a time."
    )
    outbox_max_record_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="A row larger than this (key, value and headers) is parked without being sent "
        "(the producer's max request size; the broker's default message.max.bytes is 1 MiB).",
    )
    outbox_ack_timeout_s: float = Field(
        10.0, gt=0, description="Waiting longer for the broker's acks makes the relay not-ready (it keeps waiting)."
    )

    clock_scale: float = Field(1.0, gt=0, description="Campaign time runs this many times faster (demo, e2e).")
    clock_epoch: datetime | None = Field(None, description="Where scaled time starts; same value in every process.")
    webhook_secret: str = Field("dev-webhook-secret-change-me", description="HMAC key for inbound webhooks.")
    webhook_tolerance_s: int = 300

    crash_at: str = Field(
        "",
        description="Fault injection for reliability tests: SIGKILL at these named points, 'name[:n],...' "
        "(services/runtime/crash.py). Empty (the default) disables it.",
    )

    simulated_seed: int = 42
    default_workspace: str = "demo"

    @model_validator(mode="after")
    def _sasl_complete(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "KAFKA_SECURITY_PROTOCOL SASL_* needs LEADSTREAM_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD"
            )
        return self

    @model_validator(mode="after")
    def _min_insync_within_replicas(self) -> Self:
        if self.topic_min_insync_replicas and self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"LEADSTREAM_TOPIC_MIN_INSYNC_REPLICAS={self.topic_min_insync_replicas} exceeds "
                f"LEADSTREAM_TOPIC_REPLICATION_FACTOR={self.topic_replication_factor}: acks=all writes would fail"
            )
        return self

    @property
    def min_insync_replicas(self) -> int:
        """The topics' min.insync.replicas: the setting, else 2 with replicas to spare, else 1."""
        return self.topic_min_insync_replicas or min(2, self.topic_replication_factor)

    def topic_name(self, base: str) -> str:
        """The physical topic name for a contract topic name."""
        return f"{self.topic_prefix}{base}"

    def base_topic(self, physical: str) -> str:
        """The contract topic name for a physical topic name."""
        return physical.removeprefix(self.topic_prefix)

    def clock(self) -> Clock:
        """The clock this process uses (system, or scaled for demos)."""
        return clock_from_settings(self.clock_scale, self.clock_epoch)

    @property
    def group_id(self) -> str:
        """The consumer group of this service: one per service."""
        return f"{self.topic_prefix}leadstream-{self.service_name}"

    @property
    def db_schema(self) -> str:
        """The Postgres schema this service owns."""
        return self.service_name
