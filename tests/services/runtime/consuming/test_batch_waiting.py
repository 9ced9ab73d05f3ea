"""The batch consumer's next batch: records read while a batch commits wait for it and then go as one batch
(at most ``max_records``); once that many wait, they are planned while the commit runs; a poll while records wait
ends when the commit does. A checkpoint whose commits the test releases one by one stands in for the database, a
Kafka consumer whose polls the test answers for the broker (no timing is involved)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from services.runtime.consuming.batch import TP, ApplyResult, BatchConsumer, DeadLetter, RecordKey
from services.runtime.consuming.deadletter import DeadLetterPublisher
from services.runtime.settings import RuntimeSettings
from tests.support.kafka import wait_for

TOPIC = "t"


class HeldCheckpoint:
    """Plans a batch as its offsets; each apply waits until the test releases it."""

    def __init__(self) -> None:
        self.applied: list[list[tuple[int, int]]] = []
        self.prepared: list[list[tuple[int, int]]] = []
        self.release: asyncio.Queue[None] = asyncio.Queue()

    async def prepare(
        self, records: Sequence[ConsumerRecord[Any, Any]], refused: Mapping[RecordKey, tuple[str, str]] | None = None
    ) -> list[tuple[int, int]]:
        plan = [(r.partition, r.offset) for r in records]
        self.prepared.append(plan)
        return plan

    async def apply(
        self, prepared: list[tuple[int, int]], expected: Mapping[TP, int | None], dead_letter: DeadLetter
    ) -> ApplyResult:
        await self.release.get()
        self.applied.append(prepared)
        ends: dict[TP, int] = {}
        for partition, offset in prepared:
            ends[(TOPIC, partition)] = offset + 1
        return ApplyResult(applied=len(prepared), next_offsets=ends)

    async def ping(self) -> None:
        return None

    async def open(self) -> str | None:
        return None

    async def close(self) -> None:
        return None

    async def stored(self, tps: Sequence[TP]) -> Mapping[TP, int | None]:
        return {}


def records(partition: int, start: int, count: int) -> list[ConsumerRecord[Any, Any]]:
    return [ConsumerRecord(TOPIC, partition, start + i, 0, 0, None, b"", b"", 0, 0, ()) for i in range(count)]


async def settled(consumer: BatchConsumer) -> None:
    """Until the batch in flight has committed (the test released it)."""
    assert consumer.pipeline.pending is not None
    await asyncio.wait({consumer.pipeline.pending})


def consumer_with(checkpoint: HeldCheckpoint, max_records: int) -> BatchConsumer:
    settings = RuntimeSettings(service_name="batch-test")
    consumer = BatchConsumer(
        settings,
        checkpoint,
        DeadLetterPublisher(settings, "batch-test"),
        topics=[TOPIC],
        max_records=max_records,
        resync_interval_s=1.0,
    )
    for p in (0, 1):
        consumer._position[TopicPartition(TOPIC, p)] = 0
    return consumer


async def test_records_read_while_a_batch_commits_go_together_once_it_committed() -> None:
    checkpoint = HeldCheckpoint()
    consumer = consumer_with(checkpoint, max_records=100)
    stop = asyncio.Event()
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)

    await consumer.process({p0: records(0, 0, 3)}, stop)  # nothing in flight: applied at once
    assert checkpoint.prepared == [[(0, 0), (0, 1), (0, 2)]]
    await consumer.process({p0: records(0, 3, 2)}, stop)  # the first batch commits: these wait
    await consumer.process({p1: records(1, 0, 4)}, stop)
    await consumer.process({}, stop)
    assert len(checkpoint.prepared) == 1
    assert consumer.poll_max_records() == 100 - 6
    assert consumer.in_flight() and consumer._consumed.get(p0) is None

    checkpoint.release.put_nowait(None)
    await settled(consumer)
    await consumer.process({}, stop)  # the next poll: everything that waited is one batch
    assert checkpoint.applied == [[(0, 0), (0, 1), (0, 2)]]
    assert checkpoint.prepared[1] == [(0, 3), (0, 4), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert consumer._consumed[p0] == 3  # the first batch's offsets are done once it committed
    assert consumer.poll_timeout_ms() == 200 and consumer.poll_max_records() == 100

    checkpoint.release.put_nowait(None)
    await consumer.process({}, stop)  # an empty poll with nothing waiting settles the batch in flight
    assert checkpoint.applied[1] == checkpoint.prepared[1]
    assert consumer._consumed == {p0: 5, p1: 4} and consumer.pipeline.pending is None


async def test_once_max_records_wait_they_are_planned_while_the_commit_runs() -> None:
    checkpoint = HeldCheckpoint()
    consumer = consumer_with(checkpoint, max_records=5)
    stop = asyncio.Event()
    p0 = TopicPartition(TOPIC, 0)

    await consumer.process({p0: records(0, 0, 5)}, stop)
    await consumer.process({p0: records(0, 5, 3)}, stop)  # waits
    assert len(checkpoint.prepared) == 1
    feeding = asyncio.create_task(consumer.process({p0: records(0, 8, 2)}, stop))  # 5 wait: planned now
    await wait_for(lambda: len(checkpoint.prepared) == 2, what="the waiting records planned")
    assert checkpoint.prepared[1] == [(0, o) for o in range(5, 10)] and checkpoint.applied == []
    checkpoint.release.put_nowait(None)  # the first commit ends; the second batch starts behind it
    await feeding
    checkpoint.release.put_nowait(None)
    await consumer.pipeline.drain(consumer._settle)
    assert checkpoint.applied == [[(0, o) for o in range(5)], [(0, o) for o in range(5, 10)]]
    assert consumer._consumed[p0] == 10


async def test_records_of_a_partition_read_again_replace_what_waited_of_it() -> None:
    checkpoint = HeldCheckpoint()
    consumer = consumer_with(checkpoint, max_records=100)
    stop = asyncio.Event()
    p0 = TopicPartition(TOPIC, 0)

    await consumer.process({p0: records(0, 0, 2)}, stop)
    await consumer.process({p0: records(0, 2, 3)}, stop)  # waits
    consumer._gen[p0] = consumer.generation(p0) + 1  # as a rewind to offset 1 does
    consumer._position[p0] = 1
    await consumer.process({p0: records(0, 1, 4)}, stop)  # read again from 1: the waiting 2..4 are void
    checkpoint.release.put_nowait(None)
    await settled(consumer)
    await consumer.process({}, stop)
    assert checkpoint.prepared[1] == [(0, 1), (0, 2), (0, 3), (0, 4)]


class HeldKafka:
    """``getmany`` as aiokafka's: waits until the test hands it records (``arrive``); notes the polls cancelled."""

    def __init__(self) -> None:
        self.polls = 0
        self.cancelled = 0
        self.arrived: asyncio.Queue[dict[TopicPartition, list[ConsumerRecord[Any, Any]]]] = asyncio.Queue()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        self.polls += 1
        try:
            return await self.arrived.get()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def test_a_poll_while_records_wait_ends_when_the_commit_does_and_loses_nothing() -> None:
    checkpoint = HeldCheckpoint()
    consumer = consumer_with(checkpoint, max_records=100)
    kafka = HeldKafka()
    stop = asyncio.Event()
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)

    await consumer.process({p0: records(0, 0, 2)}, stop)  # in flight
    await consumer.process({p0: records(0, 2, 2)}, stop)  # waits for it
    polling = asyncio.create_task(consumer.poll(kafka))
    await wait_for(lambda: kafka.polls == 1, what="the poll to wait for records")
    kafka.arrived.put_nowait({p1: records(1, 0, 3)})  # records that come during the commit end the poll as ever
    assert await asyncio.wait_for(polling, 60) == {p1: records(1, 0, 3)}
    await consumer.process({p1: records(1, 0, 3)}, stop)  # they wait too

    polling = asyncio.create_task(consumer.poll(kafka))
    await wait_for(lambda: kafka.polls == 2, what="the next poll to wait for records")
    assert not polling.done()
    checkpoint.release.put_nowait(None)  # the commit ends: so does the poll, with nothing taken
    assert await asyncio.wait_for(polling, 60) == {}
    assert kafka.cancelled == 1 and checkpoint.applied == [[(0, 0), (0, 1)]]
    await consumer.process({}, stop)
    assert checkpoint.prepared[1] == [(0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]

    polling = asyncio.create_task(consumer.poll(kafka))  # records wait no more: a plain poll, not ended by the commit
    await wait_for(lambda: kafka.polls == 3, what="a plain poll")
    checkpoint.release.put_nowait(None)
    await settled(consumer)
    await consumer.process({}, stop)
    assert not polling.done() and kafka.cancelled == 1
    kafka.arrived.put_nowait({})
    assert await asyncio.wait_for(polling, 60) == {}
    assert consumer._consumed == {p0: 4, p1: 3}


class LoopKafka:
    """Enough of an aiokafka consumer for the poll loop: answers polls from a queue, notes offset commits."""

    def __init__(self) -> None:
        self.polls: asyncio.Queue[dict[TopicPartition, list[ConsumerRecord[Any, Any]]]] = asyncio.Queue()
        self.commits: list[dict[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        try:
            return self.polls.get_nowait()
        except asyncio.QueueEmpty:
            await asyncio.sleep(0)  # an empty poll (a real one waits up to its timeout)
            return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {}


@pytest.mark.parametrize("interval_s", [0.0, 3600.0])
async def test_the_poll_loop_commits_to_kafka_after_every_poll_or_at_most_every_interval(interval_s: float) -> None:
    checkpoint = HeldCheckpoint()
    consumer = consumer_with(checkpoint, max_records=100)
    consumer.commit_interval_s = interval_s
    kafka = LoopKafka()
    consumer.consumer = kafka
    stop = asyncio.Event()
    p0 = TopicPartition(TOPIC, 0)
    for start in (0, 2, 4):
        kafka.polls.put_nowait({p0: records(0, start, 2)})
        checkpoint.release.put_nowait(None)
    polling = asyncio.create_task(consumer._poll(kafka, stop))
    await wait_for(lambda: consumer._consumed.get(p0) == 6, what="three batches applied")
    if interval_s:  # the first poll committed (nothing was done yet); none since
        assert kafka.commits == []
    else:
        await wait_for(lambda: kafka.commits[-1:] == [{p0: 6}], what="the last batch's offset committed")
        done = [c[p0] for c in kafka.commits]
        assert len(done) >= 2 and done == sorted(done), done  # as batches settled (how they group is the loop's)
    stop.set()
    await asyncio.wait_for(polling, 60)
    await consumer._commit()  # as stopping does: everything done
    assert kafka.commits[-1] == {p0: 6}
