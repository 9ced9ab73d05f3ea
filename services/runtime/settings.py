"""Configuration shared by every service, read from ``LEADSTREAM_*`` environment variables.

``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` are also accepted without the prefix, because
that is what the local scripts, compose and most platforms export.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .clock import Clock, clock_from_settings
from .secrets import Environment, InsecureConfiguration, KeyKind, KeyRing, SecretSpec, check, development_key

if TYPE_CHECKING:
    from .personal import KeyWrapper


METRICS_PORT_OFFSET = 1000
"""Where a service's /metrics listener is by default: its HTTP port + this."""


EventLoop = Literal["uvloop", "asyncio"]
"""The kinds of event loop a service process may run on (:attr:`RuntimeSettings.event_loop`)."""


class RuntimeSettings(BaseSettings):
    """Settings every service has. A service subclasses this to add its own."""

    model_config = SettingsConfigDict(env_prefix="LEADSTREAM_", extra="ignore", populate_by_name=True)

    service_name: str = "leadstream"
    env: Environment = Field(
        "production",
        description="development (the demo, the tests, compose: unset keys get development values, /docs is on) "
        "or production (the default: a service refuses to start with a missing, default or short secret).",
    )
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
    key_encryption_key: SecretStr | None = Field(
        None,
        description="Key-encryption key(s) of the personal data keys (at least 32 characters; comma-separated to "
        "rotate: the first wraps new data keys, all unwrap; `leadstream keys rewrap` moves every key to the first). "
        "Development gives it a development value; anywhere else it is required.",
    )
    uses_key_store: ClassVar[bool] = True
    """Whether this service reads or writes personal data keys (everything that touches the event log does)."""
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
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies (comma-separated IPs, or *) whose X-Forwarded-For names the client: the per-client "
        "limit of failed authentication attempts needs the real client behind an ingress.",
    )
    metrics_host: str = Field("127.0.0.1", description="Interface of the internal /metrics listener.")
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of the internal /metrics listener (never the API port, never behind the ingress). "
        "Default: the HTTP port + 1000 (9101-9108 locally); 0 picks a free one.",
    )
    docs_enabled: bool | None = Field(
        None, description="Serve /docs, /redoc and /openapi.json. Default: on in development, off otherwise."
    )
    token_cache_s: float = Field(
        1.0, ge=0, le=1, description="Seconds a resolved API token is cached: a revocation takes effect within it."
    )
    auth_failures_burst: int = Field(
        20, ge=1, description="Failed authentication attempts a client may make at once before it gets 429s ..."
    )
    auth_failures_per_minute: float = Field(10.0, gt=0, description="... and how many more per minute after that.")
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
    event_loop: EventLoop = Field(
        "uvloop",
        description="The process's event loop: uvloop (libuv, the default) or Python's own asyncio loop (e.g. on "
        "Windows, where uvloop is not installed). A service that reads past most records spends much of its CPU in "
        "the loop; with uvloop the services used 5-10 % less CPU at 1,000 events/s (bench/results/NOTES.md, "
        "2026-12-06).",
    )

    consumer_max_records: int = Field(500, ge=1)
    consumer_max_attempts: int = Field(5, ge=1, description="Handler attempts before a record is dead-lettered.")
    consumer_backoff_initial_s: float = Field(0.2, ge=0)
    consumer_backoff_max_s: float = Field(5.0, ge=0)
    consumer_concurrency: int = Field(
        64,
        ge=1,
        le=64,
        description="Partitions a per-record consumer works on at once (one transaction each at a time). The default "
        "is above the partitions a service reads with the default topics (4 x 6): a partition slow on one "
        "workspace's records (retries, a provider's rate limit waited out inline) holds no other partition back. "
        "Lower it (e.g. to 4, below the engine's pool of 5) for a service whose polls span many partitions whose "
        "every record takes a transaction, so that they do not open and close overflow connections.",
    )
    consumer_fetch_max_wait_ms: int = Field(
        50,
        ge=0,
        le=5_000,
        description="How long the broker may hold a consumer's fetch until consumer_fetch_min_bytes are there: the "
        "most it adds to an event's way while traffic is low. aiokafka's defaults (500 ms, 1 byte) answer a fetch "
        "as soon as one record is there: a fetch per record, about a ninth of a core per service at 200 events/s; "
        "50 ms with 16384 bytes cut that to a fiftieth and the live path's p99 two- to threefold "
        "(bench/results/NOTES.md, 2026-12-05).",
    )
    consumer_fetch_min_bytes: int = Field(
        16_384,
        ge=1,
        description="Bytes a fetch waits for (at most consumer_fetch_max_wait_ms): one fetch answers many records.",
    )
    consumer_commit_interval_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="The most often a consumer commits what it has done to Kafka (0: after every poll). Revoked "
        "partitions and a stopping consumer commit everything done first; a crash re-reads at most this much, which "
        "the services find done (processed events, stored offsets). Each commit is a broker request and, in the "
        "per-record loop, a round trip before the next poll: after every poll they were 37-40 % of the requests "
        "each service sent the broker at 1,000 events/s (bench/results/NOTES.md, 2026-12-06).",
    )
    consumer_metadata_max_age_ms: int = Field(
        60_000,
        ge=1_000,
        le=300_000,
        description="How old a consumer's cluster metadata may grow before aiokafka asks for it again. A group's "
        "leader rebalances when a refresh shows a subscribed topic's partitions changed, so this bounds how long "
        "partitions added to a topic stay unconsumed. A subscribed topic missing from the cluster is asked about "
        "every few seconds until it exists (the consumer loop's topic watch). aiokafka's default (300000) left a "
        "consumer that started before its topics were created with nothing assigned for up to five minutes.",
    )
    consumer_session_timeout_ms: int = 10_000
    consumer_heartbeat_interval_ms: int = 1_000
    consumer_max_poll_interval_ms: int = Field(
        300_000, ge=1_000, description="Longest gap between two polls before the broker gives the partitions away."
    )
    consumer_max_inline_wait_s: float = Field(
        3.0, ge=0, description="Longest rate-limit wait sat through inline; a longer one pauses the partition."
    )
    consumer_attempt_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest one attempt (a handler's transaction, a projection batch with its planning) may take, "
        "and every database statement. Past it the attempt is cancelled (rolled back, without effect) and retried "
        "on fresh connections as an outage: a connection that never answers again (half-open after a network "
        "fault) must not hold a consumer for ever.",
    )
    consumer_stuck_restart_s: float = Field(
        600.0,
        ge=0,
        description="A consumer (any mode) that stays behind without moving this long while nothing fails "
        "answers /healthz 503, so the orchestrator restarts it: the last resort for a hang "
        "nobody foresaw (an outage is waited out, never restarted). 0: never.",
    )
    consumer_revoke_grace_s: float = Field(
        10.0, ge=0, description="How long work on a revoked partition may finish before it is abandoned (rolled back)."
    )

    processed_events_retention_days: float = Field(
        30.0,
        ge=8,
        description="Ids of handled events are kept this long to drop redeliveries: longer than the broker keeps "
        "an idle group's offsets (offsets.retention.minutes, 7 days), see docs/security.md.",
    )
    seen_webhooks_retention_days: float = Field(
        7.0, ge=1, description="Inbound webhook ids are kept this long (beyond the senders' retry schedules)."
    )
    housekeeping_interval_s: float = Field(3600.0, gt=0, description="Real seconds between retention sweeps.")
    timer_idle_max_s: float = Field(
        2.0,
        ge=0.05,
        le=60.0,
        description="Longest nap of an idle timer loop (real seconds): it sleeps until the next row is due, at "
        "most this long, so a row another process (a replica, the CLI) makes due is claimed within it.",
    )
    consumer_lag_interval_s: float = Field(
        5.0, gt=0, description="How often consumer lag is measured (log ends asked of the broker), also while stuck."
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
    outbox_listen: bool = Field(
        True,
        description="Wake the outbox relay by Postgres LISTEN/NOTIFY. Off where the database is reached through a "
        "transaction-pooling proxy (PgBouncer), which cannot hold a LISTEN session: then set outbox_poll_interval_s "
        "low (0.05), the relay's only way to notice rows written by other processes.",
    )
    outbox_poll_interval_s: float = Field(
        1.0,
        gt=0,
        description="How often the outbox relay looks at the outbox when nothing woke it: commits wake it at once "
        "(LISTEN/NOTIFY); this poll only covers a notification lost while its LISTEN connection was down.",
    )
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
    webhook_tolerance_s: int = Field(
        300, ge=1, le=300, description="Inbound webhooks whose webhook-timestamp is further from now are refused."
    )
    webhook_max_bytes: int = Field(
        256 * 1024, ge=1024, le=1024 * 1024, description="Inbound webhook bodies larger than this are refused (413)."
    )
    link_allowed_hosts: str = Field(
        "videos.studio.example",
        description="Hosts (comma-separated; '.example.com' also allows its subdomains) of links that may be put "
        "into messages to leads, such as a video's URL; only https links to them are sent.",
    )

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

    # -- secrets and the production policy ---------------------------------------------------------

    def secret(self, field: str, purpose: str, kind: KeyKind) -> SecretSpec:
        """The :class:`SecretSpec` of setting ``field`` (development value derived from ``purpose``)."""
        dev = development_key(purpose, kind) if kind != "credential" else None
        return SecretSpec(f"LEADSTREAM_{field.upper()}", getattr(self, field), purpose, kind, dev)

    def secret_specs(self) -> list[SecretSpec]:
        """Every secret this service needs with its settings as they are; services add theirs."""
        specs = []
        if self.uses_key_store:
            specs.append(self.secret("key_encryption_key", "personal data keys", "key"))
        if self.kafka_security_protocol.startswith("SASL_"):
            specs.append(self.secret("kafka_sasl_password", "Kafka SASL login", "credential"))
        return specs

    def key_wrapper(self) -> KeyWrapper:
        """The wrapper of personal data keys made of ``LEADSTREAM_KEY_ENCRYPTION_KEY`` (its development value in
        development); outside development an unfit key is refused as every secret is (:meth:`check_production`)."""
        from .personal import KeyWrapper

        spec = self.secret("key_encryption_key", "personal data keys", "key")
        if self.env != "development" and spec.problems():
            raise InsecureConfiguration(self.service_name, spec.problems())
        return KeyWrapper(spec.keys(self.env))

    def keys(self, field: str) -> KeyRing:
        """The keys of secret setting ``field`` (the development value when unset in development)."""
        name = f"LEADSTREAM_{field.upper()}"
        spec = next((s for s in self.secret_specs() if s.setting == name), None)
        if spec is None:
            raise KeyError(f"{name} is not a secret of {self.service_name}")
        return spec.ring(self.env)

    def production_problems(self) -> list[str]:
        """Settings other than secrets that are unfit outside development; services add theirs."""
        return []

    def check_production(self) -> None:
        """Raise :class:`~services.runtime.secrets.InsecureConfiguration` outside development when a secret is
        missing, a development value or too short, or another setting is unfit; it names each setting."""
        check(self.service_name, self.env, self.secret_specs(), self.production_problems())

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

    @property
    def docs(self) -> bool:
        """Whether /docs, /redoc and /openapi.json are served."""
        return self.docs_enabled if self.docs_enabled is not None else self.env == "development"

    @property
    def effective_metrics_port(self) -> int:
        """The port of the /metrics listener."""
        if self.metrics_port is not None:
            return self.metrics_port
        return self.http_port + METRICS_PORT_OFFSET if self.http_port else 0

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
