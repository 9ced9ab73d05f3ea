"""Reading a log without a consumer group (nothing committed, nobody else affected): rebuilds, exports
and the dead-letter tools read offset ranges captured when they start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ..kafka import client_security, create_admin
from ..settings import RuntimeSettings


class TopicMissing(LookupError):
    """A topic to read does not exist."""


async def topic_partitions(settings: RuntimeSettings, topics: list[str]) -> list[TopicPartition]:
    """Every partition of the given physical topics (TopicMissing when one does not exist)."""
    admin = create_admin(settings, client_id="leadstream-replay")
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    out: list[TopicPartition] = []
    for d in described:
        if d.get("error_code") or not d.get("partitions"):
            raise TopicMissing(f"topic {d.get('topic')!r} does not exist (run `leadstream topics apply`)")
        out.extend(TopicPartition(d["topic"], p["partition"]) for p in d["partitions"])
    return sorted(out, key=lambda tp: (tp.topic, tp.partition))


def log_consumer(settings: RuntimeSettings, max_records: int) -> AIOKafkaConsumer:
    """A consumer without a group, for replays and exports."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="leadstream-replay",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=max_records,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **client_security(settings),
    )


async def read_ranges(
    consumer: AIOKafkaConsumer,
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    max_records: int = 1000,
) -> AsyncIterator[dict[TopicPartition, list[ConsumerRecord[Any, Any]]]]:
    """The records of each poll from ``starts`` up to ``ends`` (exclusive, captured before reading), by
    partition; partitions with nothing to read are paused."""
    remaining = set()
    for tp in starts:
        if starts[tp] < ends[tp]:
            consumer.seek(tp, starts[tp])
            remaining.add(tp)
        else:
            consumer.pause(tp)
    while remaining:
        batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
        inside = {tp: kept for tp, recs in batch.items() if (kept := _before(recs, ends[tp]))}
        if inside:
            yield inside
        for tp in list(remaining):
            # By position, not by the last record: the end may sit behind transaction markers.
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
                consumer.pause(tp)


def _before(records: list[ConsumerRecord[Any, Any]], end: int) -> list[ConsumerRecord[Any, Any]]:
    """The records (of one partition, in offset order) before offset ``end``: all of them unless the last is not."""
    if not records or records[-1].offset < end:
        return records
    return [r for r in records if r.offset < end]


SINCE_MARGIN = timedelta(hours=1)
"""How much earlier than ``--since`` reading starts, by record append time.

An event is appended after it happened, so every event whose time is at or after ``since`` was
appended at or after it; the margin covers clocks of producers that run a little ahead. Events
before ``since`` that the margin lets in are dropped by their event time.
"""


async def end_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], until: datetime | None = None
) -> dict[TopicPartition, int]:
    """Where reading stops (exclusive): the end of each partition now, or the first record appended after ``until``.

    A log read ``until`` a moment holds what had been appended by then -- what a consumer with no lag had
    applied -- so the cut is by the records' timestamps (the producer's send time, or the broker's append time
    on a topic with ``LogAppendTime``), not by event time: an event that happened before ``until`` but was
    published after it (an outbox held back by an outage) was not in anybody's views at that moment.
    """
    ends = dict(await consumer.end_offsets(tps))
    if until is None:
        return ends
    # The earliest offset whose timestamp is at or after the first millisecond past ``until``.
    found = await consumer.offsets_for_times(dict.fromkeys(tps, int(until.timestamp() * 1000) + 1))
    return {tp: min(ends[tp], found[tp].offset) if found.get(tp) is not None else ends[tp] for tp in tps}


async def start_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], since: datetime | None, ends: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Where reading starts: the beginning, or the first record appended at or after ``since`` less the margin."""
    if since is None:
        return dict(await consumer.beginning_offsets(tps))
    ms = max(int((since - SINCE_MARGIN).timestamp() * 1000), 0)
    found = await consumer.offsets_for_times(dict.fromkeys(tps, ms))
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
