"""Kafka helpers for tests (produce raw records, read a topic until a condition holds) and `wait_for`, the one
poll with a deadline every test waits with (no sleeps to wait)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
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


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    """How many records ``topic`` (of ``partitions`` partitions) has had: the sum of its partitions' log ends."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return sum(ends.values())


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
    predicate: Callable[[], Any],
    *,
    until: Callable[[Any], object] = bool,
    timeout_s: float = 60.0,
    interval_s: float = 0.1,
    not_before: float | None = None,
    at_deadline: Literal["raise", "return"] = "raise",
    what: str = "",
) -> Any:
    """The one poll of the tests: call an async or sync ``predicate`` (at least once) until ``until`` holds
    for what it returned (by default: a truthy value), and return that value.

    ``not_before`` (a ``time.monotonic()`` instant) makes a duration a lower bound: the value must hold at or
    after it (e.g. a server kept down at least so long, while its clients keep reporting it); the deadline is
    ``timeout_s`` after the call or after ``not_before``, whichever is later. At the deadline: AssertionError
    with ``what`` and the last value, or with ``at_deadline="return"`` the last value (for a caller that
    reports what it found).
    """
    earliest = max(time.monotonic(), not_before or 0.0)
    deadline = earliest + timeout_s
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        now = time.monotonic()
        if until(last) and now >= earliest:
            return last
        if now >= deadline:
            if at_deadline == "return":
                return last
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what or repr(predicate)}; last value {last!r}"
            )
        await asyncio.sleep(min(interval_s, deadline - now))
