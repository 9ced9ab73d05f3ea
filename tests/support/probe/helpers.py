"""Test helpers around the probe: produce raw records with their offsets, build events, count effects."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.structs import RecordMetadata
from leadstream_schemas import Envelope, LeadDiscovered, LeadSource, encode, headers_dict
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from .app import WORKSPACE
from .store import effects, runtime_tables

RawRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


async def send(
    bootstrap: str, topic: str, records: Sequence[RawRecord], *, max_request_size: int = 1048576
) -> list[RecordMetadata]:
    """Produce raw records in order and return where each landed (partition, offset)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, max_request_size=max_request_size
    )
    await producer.start()
    try:
        return [await producer.send_and_wait(topic, value=v, key=k, headers=h) for k, v, h in records]
    finally:
        await producer.stop()


def discovered(
    lead_id: UUID | None = None, *, traceparent: str | None = None, **fields: Any
) -> Envelope[LeadDiscovered]:
    """A root ``LeadDiscovered`` envelope for a (new) lead."""
    data = LeadDiscovered(lead_id=lead_id or uuid.uuid4(), source=LeadSource.manual, **fields)
    return Envelope.new(data, workspace_id=WORKSPACE, source="test", traceparent=traceparent)


def raw(env: Envelope[Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """An envelope as a raw record (key, value, headers)."""
    return encode(env)


def headers_of(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    """A record's headers as a dict of str."""
    return headers_dict(record.headers)


def caused_by(records: Sequence[ConsumerRecord[Any, Any]], cause: UUID) -> list[ConsumerRecord[Any, Any]]:
    """Records whose ``causationid`` header is ``cause``."""
    return [r for r in records if headers_of(r).get("causationid") == str(cause)]


def dead_letters_of(
    records: Sequence[ConsumerRecord[Any, Any]], origin: RecordMetadata, group: str | None = None
) -> list[ConsumerRecord[Any, Any]]:
    """DLQ records that came from the record produced at ``origin`` (dead-lettered by ``group``, if given)."""
    out = []
    for r in records:
        h = headers_of(r)
        if group is not None and h.get("dlq_consumer_group") != group:
            continue
        if (
            h.get("dlq_original_topic") == origin.topic
            and h.get("dlq_original_partition") == str(origin.partition)
            and h.get("dlq_original_offset") == str(origin.offset)
        ):
            out.append(r)
    return out


async def effect_origins(engine: AsyncEngine, event_id: UUID) -> list[str]:
    """The ``origin`` of every effect row written for an event (an empty list: none)."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(effects.c.origin).where(effects.c.event_id == event_id))
        return [r.origin for r in rows]


async def processed_count(engine: AsyncEngine, event_id: UUID) -> int:
    """How many ``processed_events`` rows the probe has for an event id (0 or 1)."""
    table = runtime_tables.processed_events
    async with engine.connect() as conn:
        n = await conn.scalar(select(func.count()).select_from(table).where(table.c.event_id == event_id))
        return int(n or 0)
