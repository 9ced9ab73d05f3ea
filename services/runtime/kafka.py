"""Kafka clients: the FastStream broker used for publishing, consumers, and topic administration.

Producers use ``acks=all`` with idempotence and compression, so a retried send neither loses nor
duplicates a record within a producer session. Consumers never auto-commit: offsets are committed
by the consumer loop only after the effect is durable.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from leadstream_schemas import TOPICS, Topic

from .settings import RuntimeSettings

log = logging.getLogger(__name__)


def create_broker(settings: RuntimeSettings) -> KafkaBroker:
    """A FastStream KafkaBroker configured as a safe producer (acks=all, idempotent, compressed)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
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
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="leadstream-admin")
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
