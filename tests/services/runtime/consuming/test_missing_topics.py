"""How a group member learns of partitions it was not assigned: the periodic metadata refresh, every
``consumer_metadata_max_age_ms`` (aiokafka's own default, five minutes, when the runtime did not set it).

On the real broker, which never creates topics by itself (deploy/local: ``auto.create.topics.enable=false``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewPartitions, NewTopic
from pydantic import ValidationError

from services.runtime.consuming.deadletter import DeadLetterPublisher
from services.runtime.consuming.loop import Batch, GroupConsumer
from services.runtime.consuming.policy import Retry
from services.runtime.kafka import create_admin
from services.runtime.settings import RuntimeSettings
from tests.conftest import SettingsFactory
from tests.support.kafka import produce, wait_for

SERVICE = "missing-topics-test"


async def _alive() -> None:
    return None


class Recorder(GroupConsumer):
    """A member that keeps the values it polled (nothing to fail, nothing to store)."""

    def __init__(self, settings: RuntimeSettings, topic: str) -> None:
        group = f"{SERVICE}-{uuid.uuid4().hex[:8]}"
        super().__init__(
            settings,
            topics=[topic],
            dead_letters=DeadLetterPublisher(settings, group),
            retry=Retry(settings, _alive, "test"),
            max_records=10,
        )
        self.values: list[bytes] = []

    async def process(self, batch: Batch, stop: asyncio.Event) -> None:
        for tp, records in batch.items():
            self.values.extend(r.value for r in records)
            if records:
                self.done(tp, records[-1].offset + 1)


@pytest.fixture
def topic(topic_prefix: str) -> str:
    """A topic name of this test's own under the session's prefix (deleted with it), not created yet."""
    return f"{topic_prefix}missing-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def started() -> AsyncIterator[list[tuple[asyncio.Event, asyncio.Task[None]]]]:
    """Members a test starts itself (with settings of its own), stopped at the end."""
    members: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    yield members
    for stop, task in members:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


async def create_topic(settings: RuntimeSettings, topic: str, partitions: int = 2) -> None:
    admin = create_admin(settings, client_id="missing-topics-test")
    await admin.start()
    try:
        response = (await admin.create_topics([NewTopic(topic, partitions, 1)])).to_object()
    finally:
        await admin.close()
    assert [e["error_code"] for e in response["topic_errors"]] == [0], response


async def leaders(settings: RuntimeSettings, topic: str) -> int:
    """How many of the topic's partitions have a leader in the broker's metadata answer (0 while it is missing)."""
    admin = create_admin(settings, client_id="missing-topics-test")
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:
        return 0
    return sum(p["leader"] >= 0 for p in described["partitions"])


async def test_partitions_added_to_a_topic_are_assigned_at_the_next_metadata_age(
    make_settings: SettingsFactory, topic: str, started: list[tuple[asyncio.Event, asyncio.Task[None]]]
) -> None:
    # What brings the new partition is the periodic refresh, every LEADSTREAM_CONSUMER_METADATA_MAX_AGE_MS
    # (aiokafka's own default, 300 s, when the setting is not passed).
    settings: RuntimeSettings = make_settings(SERVICE, consumer_metadata_max_age_ms=1_000)
    await create_topic(settings, topic, partitions=1)
    # The broker answers metadata without a topic for a moment after creating it (what the incident's member met):
    # started only once it is there, the member gets its partition at the first assignment, also on aiokafka's own.
    await wait_for(lambda: leaders(settings, topic), until=lambda n: n == 1, what="the topic's leader")
    member = Recorder(settings, topic)
    stop = asyncio.Event()
    started.append((stop, asyncio.create_task(member.run(stop))))
    await wait_for(lambda: member.consumer is not None and member.consumer.assignment(), what="the first partition")

    admin = create_admin(settings, client_id="missing-topics-test")
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(2)})
    finally:
        await admin.close()
    await produce(settings.kafka_bootstrap_servers, topic, [(b"k", b"anywhere", [])])

    both = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
    await wait_for(
        lambda: member.consumer is not None and member.consumer.assignment() == both,
        timeout_s=30,
        what="the added partition assigned",
    )
    await wait_for(lambda: member.values, what="the record")
    assert member.values == [b"anywhere"]


@pytest.mark.parametrize("value", [999, 300_001])
def test_the_metadata_age_is_bounded(value: int) -> None:
    with pytest.raises(ValidationError, match="consumer_metadata_max_age_ms"):
        RuntimeSettings(consumer_metadata_max_age_ms=value)
