"""Helpers for projection tests: records without a broker, batching, and reading the views."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from leadstream_schemas import DecodeError, Envelope, decode, encode

from services.projection.handlers import ApplyResult, BatchApplier, Item
from services.projection.store import Views

NewSchema = Callable[[], Awaitable[Views]]
"""The ``new_schema`` fixture: makes a freshly migrated projection schema."""


def as_items(envelopes: Sequence[Envelope[Any]], partitions: int = 3) -> list[Item]:
    """Envelopes as consumed records: partition by key hash, offsets counted per partition in list order."""
    next_offset: dict[tuple[str, int], int] = {}
    items = []
    for env in envelopes:
        tp = (env.topic, zlib.crc32(env.subject.encode()) % partitions)
        off = next_offset.get(tp, 0)
        next_offset[tp] = off + 1
        items.append(Item(tp[0], tp[1], off, env))
    return items


async def apply_all(conn: asyncpg.Connection, views: Views, items: Sequence[Item], batch: int) -> ApplyResult:
    """Apply ``items`` in batches of ``batch`` records; returns the summed result."""
    applier = BatchApplier(views)
    total = ApplyResult()
    expected: dict[tuple[str, int], int | None] = {}
    for i in range(0, len(items), batch):
        r = await applier.apply(conn, items[i : i + batch], expected)
        expected.update(r.next_offsets)
        total.applied += r.applied
        total.duplicates += r.duplicates
        total.seeks.update(r.seeks)
    return total


async def produce_all(bootstrap: str, prefix: str, envelopes: Sequence[Envelope[Any]]) -> None:
    """Produce envelopes to their prefixed topics, pipelined (per-key order kept by the idempotent producer)."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from leadstream_schemas import encode

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for env in envelopes:
            key, value, headers = encode(env)
            futures.append(await producer.send(prefix + env.topic, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def decodes(env: Envelope[Any]) -> bool:
    """Whether the contract's decoding accepts ``env`` as encoded (a NUL in a text, for one, may be refused)."""
    _, value, headers = encode(env)
    try:
        decode(value, headers)
    except DecodeError:
        return False
    return True


def assert_refused_nul(letter: dict[str, str], decoded: bool) -> None:
    """A dead letter of a record with a NUL in a text: refused by Postgres when it decoded (SQLSTATE 22021,
    the record's own fault), else by the contract's decoding."""
    if decoded:
        assert letter["dlq_error_code"] == "handler_error", letter
        assert "CharacterNotInRepertoireError (SQLSTATE 22021)" in letter["dlq_error_message"], letter
    else:
        assert letter["dlq_error_code"].startswith("invalid"), letter


def payload_values(data: Any) -> Any:
    """A payload's values as comparable plain data, whether a contract model or its mirror (``.mirrors``):
    fields by name, leaves with their type, times as ISO text (so the offset and microseconds count)."""
    import msgspec
    from pydantic import BaseModel

    if isinstance(data, msgspec.Struct):
        return {f: payload_values(getattr(data, f)) for f in data.__struct_fields__}
    if isinstance(data, BaseModel):
        return {f: payload_values(getattr(data, f)) for f in type(data).model_fields}
    if isinstance(data, list):
        return [payload_values(v) for v in data]
    if isinstance(data, dict):
        return {k: payload_values(v) for k, v in data.items()}
    if isinstance(data, datetime):
        return ("datetime", data.isoformat())
    return (type(data), data)
