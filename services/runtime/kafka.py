"""Kafka clients: the FastStream broker used for publishing, consumers, and topic administration.

Producers use ``acks=all`` with idempotence and compression, so a retried send neither loses nor
duplicates a record within a producer session. Consumers never auto-commit: offsets are committed
by the consumer loop only after the effect is durable.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from leadstream_schemas import TOPICS, Topic

from .settings import RuntimeSettings

log = logging.getLogger(__name__)


def _ssl_context(settings: RuntimeSettings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return create_ssl_context(cafile=settings.kafka_ssl_cafile)


def client_security(settings: RuntimeSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured listener security (TLS and/or SASL)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = _ssl_context(settings)
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


def broker_security(settings: RuntimeSettings) -> BaseSecurity | None:
    """The same security for FastStream's broker."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(settings)
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    assert settings.kafka_sasl_username is not None and settings.kafka_sasl_password is not None
    cls = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[
        settings.kafka_sasl_mechanism or "PLAIN"
    ]
    return cls(
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


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


def create_broker(settings: RuntimeSettings) -> KafkaBroker:
    """A FastStream KafkaBroker configured as a safe producer (acks=all, idempotent, compressed)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings),
        client_id=f"leadstream-{settings.service_name}",
        acks="all",
        enable_idempotence=True,
        compression_type="gzip",
        linger_ms=5,
        request_timeout_ms=30_000,
        logger=None,
    )


def create_consumer(settings: RuntimeSettings, *, group_id: str | None = None, **overrides: object) -> AIOKafkaConsumer:
    """An aiokafka consumer that never auto-commits and starts from the earliest offset."""
    kwargs: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "group_id": group_id or settings.group_id,
        "client_id": f"leadstream-{settings.service_name}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.consumer_max_records,
        "session_timeout_ms": settings.consumer_session_timeout_ms,
        "heartbeat_interval_ms": settings.consumer_heartbeat_interval_ms,
        "isolation_level": "read_committed",
        **client_security(settings),
    }
    kwargs.update(overrides)
    return AIOKafkaConsumer(**kwargs)


def all_topics(settings: RuntimeSettings, partitions: int | None = None) -> list[tuple[str, Topic, int]]:
    """(physical name, contract topic, partitions) of every event topic and its dead-letter topic."""
    out = []
    for t in TOPICS.values():
        n = partitions or settings.topic_partitions
        out.append((settings.topic_name(t.name), t, n))
        out.append((settings.topic_name(t.dlq), t, n))
    return out


async def apply_topics(settings: RuntimeSettings, partitions: int | None = None) -> dict[str, str]:
    """Create every topic of the registry and its ``.dlq`` (idempotent); returns name -> created|exists."""
    admin = create_admin(settings)
    await admin.start()
    result: dict[str, str] = {}
    try:
        existing = set(await admin.list_topics())
        new = []
        for name, t, n in all_topics(settings, partitions):
            if name in existing:
                result[name] = "exists"
                continue
            configs = {"retention.ms": str(t.retention_ms), "cleanup.policy": "delete", "compression.type": "producer"}
            new.append(
                NewTopic(
                    name=name,
                    num_partitions=n,
                    replication_factor=settings.topic_replication_factor,
                    topic_configs=configs,
                )
            )
            result[name] = "created"
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:  # another process created it between list and create
                pass
    finally:
        await admin.close()
    return result
