"""Helpers of the enrichment tests: discovered-lead envelopes and per-lead outcomes read from Kafka."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from leadstream_schemas import Envelope, LeadDiscovered, LeadSource

from services.runtime.service import Service
from tests.support.kafka import produce_events, read_until
from tests.support.personal import decode_opened

OUTCOMES = {"leadstream.lead.email_enriched.v1", "leadstream.lead.email_not_found.v1"}
FAILED = "leadstream.lead.enrichment_failed.v1"


def discovered(workspace: str = "ws-test", traceparent: str | None = None, **fields: Any) -> Envelope[LeadDiscovered]:
    """A ``LeadDiscovered`` envelope (a new lead id unless given)."""
    data = {"lead_id": uuid.uuid4(), "source": LeadSource.search, **fields}
    return Envelope.new(LeadDiscovered(**data), workspace_id=workspace, source="test", traceparent=traceparent)


def by_lead(records: list[Any], lead_ids: set[str]) -> dict[str, list[Envelope[Any]]]:
    """Decoded events of the given leads, per lead id, in partition order (per-lead order)."""
    out: dict[str, list[Envelope[Any]]] = defaultdict(list)
    for r in records:
        if r.key is not None and r.key.decode() in lead_ids:
            out[r.key.decode()].append(decode_opened(r.value, r.headers))
    return out


def finished(events: list[Envelope[Any]]) -> bool:
    """The lead's enrichment is over: an email outcome, or a failed email stage."""
    return any(e.type in OUTCOMES or (e.type == FAILED and e.data.stage == "email") for e in events)


async def enrich(
    service: Service, envs: list[Envelope[LeadDiscovered]], timeout_s: float = 60
) -> dict[str, list[Envelope[Any]]]:
    """Produce the leads and read the lead topic until every one of them finished enrichment."""
    s = service.settings
    await produce_events(s.kafka_bootstrap_servers, s.topic_prefix, envs)
    ids = {str(e.data.lead_id) for e in envs}
    records = await read_until(
        s.kafka_bootstrap_servers,
        [s.topic_name("leadstream.lead.v1")],
        lambda recs: all(finished(v) for v in by_lead(recs, ids).values()) and len(by_lead(recs, ids)) == len(ids),
        timeout_s=timeout_s,
    )
    return by_lead(records, ids)


async def dead_lettered_keys(service: Service) -> set[str]:
    """Keys of every record on the lead DLQ so far (read up to the current end offsets, no waiting)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    s = service.settings
    topic = s.topic_name("leadstream.lead.v1.dlq")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    keys: set[str] = set()
    try:
        partitions = [TopicPartition(topic, p) for p in range(s.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                keys.update(r.key.decode() for r in records if r.key)
    finally:
        await consumer.stop()
    return keys
