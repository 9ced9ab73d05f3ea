"""Kafka helpers for tests: produce raw records, read a topic until a condition holds (with a deadline)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from leadstream_schemas import Envelope, encode


async def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
) -> None:
    """Produce raw (key, value, headers) records and wait for the broker's acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def produce_events(bootstrap: str, prefix: str, envelopes: Sequence[Envelope[Any]]) -> None:
    """Produce envelopes to their (prefixed) topics."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for env in envelopes:
            key, value, headers = encode(env)
            await producer.send_and_wait(prefix + env.topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def read_until(
    bootstrap: str,
    topics: Sequence[str],
    done: Callable[[list[ConsumerRecord[Any, Any]]], bool],
    *,
    timeout_s: float = 60.0,
) -> list[ConsumerRecord[Any, Any]]:
    """Read ``topics`` from the beginning (no group) until ``done(records)`` or the deadline.

    Raises AssertionError at the deadline, with what was read, so a failing test says why.
    """
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records: list[ConsumerRecord[Any, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if done(records):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {timeout_s}s; read {len(records)} records from {topics}"
                )
            batch = await consumer.getmany(timeout_ms=250)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()


async def wait_for(
    predicate: Callable[[], Any], *, timeout_s: float = 60.0, interval_s: float = 0.1, what: str = ""
) -> Any:
    """Poll an async or sync predicate until it returns a truthy value; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate!r}; last value {last!r}")
