"""Kafka clients on aiokafka alone: security, admin, producer, consumer, and topic administration.

Producers use ``acks=all`` with idempotence and compression, so a retried send neither loses nor
duplicates a record within a producer session. Consumers never auto-commit: offsets are committed
by the consumer loop only after the effect is durable.

No FastStream here: the CLI's ``export``, ``dlq``, ``topics apply``, ``erase`` and ``outbox`` commands, the
log reader (:mod:`services.runtime.consuming.reader`) and the topic reconciler run on these clients, and importing
FastStream (with what it pulls in) would cost each of them a quarter of a second of CPU for nothing. The service's
FastStream broker is :mod:`services.runtime.broker`, built on the security of this module.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code
from aiokafka.helpers import create_ssl_context
from leadstream_schemas import TOPICS, Topic

from .settings import RuntimeSettings

log = logging.getLogger(__name__)


def ssl_context(settings: RuntimeSettings) -> ssl.SSLContext | None:
    """The TLS context of the configured listener (None without TLS): the aiokafka clients' and the broker's."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return create_ssl_context(cafile=settings.kafka_ssl_cafile)


def client_security(settings: RuntimeSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured listener security (TLS and/or SASL)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    return kwargs


def create_admin(settings: RuntimeSettings, client_id: str = "leadstream-admin") -> AIOKafkaAdminClient:
    """An aiokafka admin client with the configured security."""
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, client_id=client_id, **client_security(settings)
    )


async def cluster_id(settings: RuntimeSettings) -> str:
    """The Kafka cluster id of the configured bootstrap servers (stable for the life of the cluster)."""
    admin = create_admin(settings, client_id="leadstream-cluster-id")
    await admin.start()
    try:
        return str((await admin.describe_cluster())["cluster_id"])
    finally:
        await admin.close()


def create_producer(settings: RuntimeSettings, *, client_id: str, **overrides: object) -> AIOKafkaProducer:
    """A plain aiokafka producer with the same safety as the service's broker (acks=all, idempotent, gzip;
    :func:`services.runtime.broker.create_broker`).

    For callers that need what FastStream's publisher does not offer: record batches they build
    themselves (the outbox relay), or a producer of their own that they can restart.
    """
    kwargs: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "gzip",
        "linger_ms": 5,
        "request_timeout_ms": 30_000,
        **client_security(settings),
    }
    kwargs.update(overrides)
    return AIOKafkaProducer(**kwargs)


def create_consumer(settings: RuntimeSettings, *, group_id: str | None = None, **overrides: object) -> AIOKafkaConsumer:
    """An aiokafka consumer that never auto-commits and starts from the earliest offset; how long the broker may
    gather records before answering a fetch is ``consumer_fetch_max_wait_ms`` / ``consumer_fetch_min_bytes``, how
    old its cluster metadata may grow ``consumer_metadata_max_age_ms``."""
    kwargs: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "group_id": group_id or settings.group_id,
        "client_id": f"leadstream-{settings.service_name}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.consumer_max_records,
        "fetch_max_wait_ms": settings.consumer_fetch_max_wait_ms,
        "fetch_min_bytes": settings.consumer_fetch_min_bytes,
        "session_timeout_ms": settings.consumer_session_timeout_ms,
        "heartbeat_interval_ms": settings.consumer_heartbeat_interval_ms,
        "max_poll_interval_ms": settings.consumer_max_poll_interval_ms,
        "metadata_max_age_ms": settings.consumer_metadata_max_age_ms,
        "isolation_level": "read_committed",
        **client_security(settings),
    }
    kwargs.update(overrides)
    return AIOKafkaConsumer(**kwargs)


def absent_topics(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[str]:
    """Those of ``topics`` with no partitions in the consumer's cluster metadata (as of its last answer)."""
    return [t for t in topics if not consumer.partitions_for_topic(t)]


def refresh_metadata(consumer: AIOKafkaConsumer) -> asyncio.Future[bool]:
    """Ask for the consumer's cluster metadata now (done when the answer is in: whether it was updated).

    A group's leader rebalances when a metadata answer shows a subscribed topic's partition count changed
    (aiokafka 0.14: ``GroupCoordinator._handle_metadata_update`` against the snapshot taken when it assigned),
    but nothing asks again before ``metadata_max_age_ms`` when a topic was missing at the assignment. aiokafka has
    no public call for this: ``AIOKafkaConsumer.topics()`` reads into a throwaway ``ClusterMetadata`` that the
    coordinator does not watch, so the client's own refresh is asked for (the call aiokafka makes itself when a
    fetch meets an unknown partition). Pinned with aiokafka in requirements/; the runtime's tests exercise it.
    """
    return consumer._client.force_metadata_update()


def all_topics(settings: RuntimeSettings, partitions: int | None = None) -> list[tuple[str, Topic, int]]:
    """(physical name, contract topic, partitions) of every event topic and its dead-letter topic."""
    out = []
    for t in TOPICS.values():
        n = partitions or settings.topic_partitions
        out.append((settings.topic_name(t.name), t, n))
        out.append((settings.topic_name(t.dlq), t, n))
    return out


# Topic configs the reconciler owns; any other topic-level override (set by an operator) is kept as it is.
MANAGED_CONFIGS = ("retention.ms", "cleanup.policy", "compression.type", "min.insync.replicas")
MIN_INSYNC = "min.insync.replicas"
# DescribeConfigs ``config_source`` of a topic-level override (Kafka's ConfigSource.TOPIC_CONFIG).
_TOPIC_CONFIG_SOURCE = 1
_UNKNOWN_TOPIC = 3
_TOPIC_ALREADY_EXISTS = 36

Outcome = Literal["created", "exists", "updated", "drift"]


@dataclass(frozen=True)
class DesiredTopic:
    """What a topic should look like: partitions, replication factor and the managed configs."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


@dataclass(frozen=True)
class ActualTopic:
    """What the broker reports for an existing topic.

    ``configs`` are the effective values of the managed configs (whatever their source); ``overrides``
    are all topic-level overrides, which a (non-incremental) AlterConfigs request must repeat to keep.
    """

    name: str
    partitions: int
    replication_factors: frozenset[int]
    configs: dict[str, str | None]
    overrides: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicResult:
    """The outcome for one topic.

    ``changes`` are what was changed (in a dry run: what would be); ``drift`` what differs and was left
    alone because it cannot be fixed safely. A topic with drift reports ``drift`` even when its safe
    changes were applied.
    """

    name: str
    outcome: Outcome
    changes: tuple[str, ...] = ()
    drift: tuple[str, ...] = ()
    note: str = ""
    config_updates: dict[str, str] = field(default_factory=dict)
    partitions_to: int | None = None

    @property
    def details(self) -> str:
        """Changes, drift and the note as one line for people."""
        return "; ".join(d for d in (*self.changes, *self.drift, self.note) if d)


@dataclass(frozen=True)
class TopicsReport:
    """What :func:`apply_topics` did (or, with ``dry_run``, would do) to every contract topic."""

    results: tuple[TopicResult, ...]
    dry_run: bool = False

    @property
    def has_drift(self) -> bool:
        """Whether any topic differs from the desired state in a way that was left alone."""
        return any(r.outcome == "drift" for r in self.results)

    def outcomes(self) -> dict[str, Outcome]:
        """Topic name -> outcome."""
        return {r.name: r.outcome for r in self.results}

    def __getitem__(self, name: str) -> TopicResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)


def desired_topics(settings: RuntimeSettings, partitions: int | None = None) -> list[DesiredTopic]:
    """The desired state of every contract topic and its ``.dlq``."""
    return [
        DesiredTopic(
            name=name,
            partitions=n,
            replication_factor=settings.topic_replication_factor,
            configs={
                "retention.ms": str(t.retention_ms),
                "cleanup.policy": "delete",
                "compression.type": "producer",
                # acks=all then means "on at least this many replicas": with 3 replicas, one broker can be
                # down and a write still lands on two.
                MIN_INSYNC: str(settings.min_insync_replicas),
            },
        )
        for name, t, n in all_topics(settings, partitions)
    ]


def plan_topic(desired: DesiredTopic, actual: ActualTopic | None, *, allow_partition_increase: bool) -> TopicResult:
    """Compare one topic's desired and actual state (pure): what to create, alter, or report as drift.

    Nothing is ever deleted or shrunk. A partition increase moves keys to other partitions (per-key order
    only holds again for records written after it), so it is planned only when explicitly allowed.
    """
    if actual is None:
        return TopicResult(
            desired.name,
            "created",
            changes=(f"{desired.partitions} partitions, replication factor {desired.replication_factor}",),
        )
    changes: list[str] = []
    drift: list[str] = []
    updates: dict[str, str] = {}
    fewest_replicas = min(actual.replication_factors, default=desired.replication_factor)
    for key, want in desired.configs.items():
        have = actual.configs.get(key)
        if key == MIN_INSYNC and have != want and int(want) > fewest_replicas:
            # More than the topic's replicas would make every acks=all write fail: fix the replicas first.
            drift.append(f"{MIN_INSYNC} {have}, desired {want}: more than the topic's {fewest_replicas} replica(s)")
            continue
        if have != want:
            updates[key] = want
            changes.append(f"{key} {have} -> {want}")
    lost = sorted(k for k, v in actual.overrides.items() if v is None and k not in desired.configs)
    if updates and lost:
        # AlterConfigs replaces every override; one whose value the broker hides cannot be repeated.
        drift.append(f"configs not altered: override(s) {', '.join(lost)} cannot be read back to keep them")
        changes, updates = [], {}
    partitions_to = None
    if desired.partitions > actual.partitions:
        if allow_partition_increase:
            partitions_to = desired.partitions
            changes.append(f"partitions {actual.partitions} -> {desired.partitions}")
        else:
            drift.append(
                f"partitions {actual.partitions}, desired {desired.partitions}: increasing moves keys to other "
                "partitions; allow it with --allow-partition-increase"
            )
    elif desired.partitions < actual.partitions:
        drift.append(f"partitions {actual.partitions}, desired {desired.partitions}: Kafka cannot remove partitions")
    if actual.replication_factors != {desired.replication_factor}:
        have_rf = "/".join(str(rf) for rf in sorted(actual.replication_factors)) or "unknown"
        drift.append(
            f"replication factor {have_rf}, desired {desired.replication_factor}: "
            "needs a partition reassignment (not done here)"
        )
    outcome: Outcome = "drift" if drift else "updated" if changes else "exists"
    return TopicResult(
        desired.name, outcome, tuple(changes), tuple(drift), config_updates=updates, partitions_to=partitions_to
    )


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, ActualTopic]:
    """The actual state of those of ``names`` that exist."""
    # Metadata for all topics, not for ``names``: aiokafka asks for named topics with
    # allow_auto_topic_creation, which on a broker with auto.create.topics.enable would create them.
    metadata = {t["topic"]: t for t in await admin.describe_topics()}
    present = [n for n in names if n in metadata and metadata[n]["error_code"] != _UNKNOWN_TOPIC]
    for name in present:
        if metadata[name]["error_code"]:
            raise for_code(metadata[name]["error_code"])(f"describing topic {name}")
    if not present:
        return {}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in present])
    configs: dict[str, tuple[dict[str, str | None], dict[str, str | None]]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                raise for_code(resource["error_code"])(
                    f"describing configs of {resource['resource_name']}: {resource['error_message']}"
                )
            entries = resource["config_entries"]
            effective = {e["config_names"]: e["config_value"] for e in entries}
            overrides = {e["config_names"]: e["config_value"] for e in entries if _is_topic_override(e)}
            configs[resource["resource_name"]] = (effective, overrides)
    out = {}
    for name in present:
        effective, overrides = configs[name]
        partitions = metadata[name]["partitions"]
        out[name] = ActualTopic(
            name=name,
            partitions=len(partitions),
            replication_factors=frozenset(len(p["replicas"]) for p in partitions),
            configs={k: effective.get(k) for k in MANAGED_CONFIGS},
            overrides=overrides,
        )
    return out


def _is_topic_override(entry: dict[str, Any]) -> bool:
    if "config_source" in entry:
        return bool(entry["config_source"] == _TOPIC_CONFIG_SOURCE)
    return not entry.get("is_default", True)  # DescribeConfigs v0 (brokers before Kafka 1.1)


def _raise_for_errors(rows: list[dict[str, Any]], name_key: str, what: str, ignore: tuple[int, ...] = ()) -> None:
    for row in rows:
        if row["error_code"] and row["error_code"] not in ignore:
            raise for_code(row["error_code"])(f"{what} {row[name_key]}: {row.get('error_message')}")


async def apply_topics(
    settings: RuntimeSettings,
    partitions: int | None = None,
    *,
    allow_partition_increase: bool = False,
    dry_run: bool = False,
) -> TopicsReport:
    """Reconcile every contract topic and its ``.dlq`` with the desired state (idempotent).

    Missing topics are created; existing ones get the managed configs (retention.ms, cleanup.policy,
    compression.type, min.insync.replicas) fixed, keeping every other override, and their partitions increased only with
    ``allow_partition_increase``. Fewer partitions than present, a different replication factor or a
    disallowed increase are reported as ``drift`` and left alone. With ``dry_run`` nothing is sent but
    reads; the report says what would change. Drift never raises: callers decide (the CLI exits 1).
    """
    desired = desired_topics(settings, partitions)
    admin = create_admin(settings)
    await admin.start()
    try:
        actual = await _describe(admin, [d.name for d in desired])
        results = [
            plan_topic(d, actual.get(d.name), allow_partition_increase=allow_partition_increase) for d in desired
        ]
        if not dry_run:
            results = await _execute(admin, desired, actual, results)
    finally:
        await admin.close()
    return TopicsReport(tuple(results), dry_run=dry_run)


async def _execute(
    admin: AIOKafkaAdminClient,
    desired: list[DesiredTopic],
    actual: dict[str, ActualTopic],
    results: list[TopicResult],
) -> list[TopicResult]:
    """Send the planned creations, config alterations and partition increases; returns the final results."""
    by_name = {d.name: d for d in desired}
    new = [
        NewTopic(
            name=d.name, num_partitions=d.partitions, replication_factor=d.replication_factor, topic_configs=d.configs
        )
        for d, r in zip(desired, results, strict=True)
        if r.outcome == "created"
    ]
    raced: set[str] = set()
    if new:
        response = (await admin.create_topics(new)).to_object()
        _raise_for_errors(response["topic_errors"], "topic", "creating topic", ignore=(_TOPIC_ALREADY_EXISTS,))
        raced = {e["topic"] for e in response["topic_errors"] if e["error_code"] == _TOPIC_ALREADY_EXISTS}
    alter = [
        # Non-incremental AlterConfigs: repeat the other overrides or the broker drops them.
        ConfigResource(ConfigResourceType.TOPIC, r.name, {**actual[r.name].overrides, **by_name[r.name].configs})
        for r in results
        if r.config_updates
    ]
    if alter:
        for response in await admin.alter_configs(alter):
            _raise_for_errors(response.to_object()["resources"], "resource_name", "altering configs of")
    grow = {r.name: NewPartitions(r.partitions_to) for r in results if r.partitions_to is not None}
    if grow:
        await admin.create_partitions(grow)  # raises on the first topic error
    return [
        TopicResult(r.name, "exists", note="created by another client meanwhile; rerun to check its state")
        if r.name in raced
        else r
        for r in results
    ]
