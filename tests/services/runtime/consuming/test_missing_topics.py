"""A member subscribed to a topic the cluster does not have yet (a deploy whose topics Job or KafkaTopic lags the
Deployment, a topic recreated) joins its group with nothing assigned. It must consume the topic soon after it is
created, not at aiokafka's next periodic metadata refresh (five minutes by default), and say meanwhile why it
consumes nothing: one log line, ``/readyz`` and a gauge.

On the real broker, which never creates topics by itself (deploy/local: ``auto.create.topics.enable=false``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewPartitions, NewTopic
from leadstream_schemas import LEAD
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.runtime.consuming.deadletter import DeadLetterPublisher
from services.runtime.consuming.loop import Batch, GroupConsumer
from services.runtime.consuming.policy import Retry
from services.runtime.kafka import apply_topics, create_admin
from services.runtime.settings import RuntimeSettings
from tests.conftest import TEST_PARTITIONS, SettingsFactory
from tests.support.kafka import produce, wait_for
from tests.support.probe.app import ProbeSettings, build

SERVICE = "missing-topics-test"
MISSING = "consumer subscribed to topics the cluster does not have"
FOUND = "subscribed topics found in the cluster"


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
def settings(make_settings: SettingsFactory) -> RuntimeSettings:
    # The default metadata age (LEADSTREAM_CONSUMER_METADATA_MAX_AGE_MS, 60 s) is longer than these tests wait
    # once the topic exists: what they see is the member asking for metadata itself while its topic is missing.
    settings: RuntimeSettings = make_settings(SERVICE)
    return settings


@pytest.fixture
def topic(topic_prefix: str) -> str:
    """A topic name of this test's own under the session's prefix (deleted with it), not created yet."""
    return f"{topic_prefix}missing-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def running(settings: RuntimeSettings, topic: str) -> AsyncIterator[Recorder]:
    """The member, running; stopped at the end."""
    member = Recorder(settings, topic)
    stop = asyncio.Event()
    task = asyncio.create_task(member.run(stop), name="missing-topics-member")
    try:
        yield member
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


@pytest.fixture
async def started() -> AsyncIterator[list[tuple[asyncio.Event, asyncio.Task[None]]]]:
    """Members a test starts itself (with settings of its own), stopped at the end."""
    members: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    yield members
    for stop, task in members:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


async def group_state(settings: RuntimeSettings, group: str) -> tuple[str, int]:
    """The group's state and its number of members, as the broker's group coordinator says."""
    admin = create_admin(settings, client_id="missing-topics-test")
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    described: dict[str, Any] = response.to_object()["groups"][0]
    return described["state"], len(described["members"])


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


def missing_gauge(member: GroupConsumer) -> float | None:
    return REGISTRY.get_sample_value(
        "leadstream_consumer_topics_missing", {"service": SERVICE, "group": member.group_id}
    )


async def test_a_member_subscribed_before_its_topic_exists_consumes_it_soon_after_it_is_created(
    settings: RuntimeSettings, topic: str, running: Recorder
) -> None:
    # The group has formed with the topic missing, so its leader assigned nothing: the state the incident was in.
    await wait_for(
        lambda: group_state(settings, running.group_id), until=lambda s: s == ("Stable", 1), what="the group to form"
    )
    assert running.consumer is not None and running.consumer.assignment() == set()

    await create_topic(settings, topic)
    await produce(settings.kafka_bootstrap_servers, topic, [(b"k", b"after-the-topic", [])])

    # Far below aiokafka's 300 s metadata age, and below the 60 s default this runtime sets: a refresh asked for.
    await wait_for(lambda: running.values, timeout_s=30, what="the record on the topic created after subscribing")
    assert running.values == [b"after-the-topic"]
    assert running.consumer is not None and {tp.topic for tp in running.consumer.assignment()} == {topic}


async def test_a_member_whose_topic_is_missing_says_so_once_and_is_not_ready_until_it_exists(
    settings: RuntimeSettings, topic: str, running: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    # One level for both loggers: set_level also sets the capturing handler's level, so the last call wins.
    caplog.set_level(logging.INFO, logger="services.runtime.consuming.loop")
    caplog.set_level(logging.INFO, logger="aiokafka.cluster")

    reason = await wait_for(running.not_ready, until=lambda r: r is not None and topic in r, what="not ready")
    assert "missing" in reason
    assert missing_gauge(running) == 1
    # Several metadata answers lacking the topic (aiokafka logs each) still make one line of ours, not one per check.
    await wait_for(
        lambda: sum(f"Topic {topic} not found" in r.getMessage() for r in caplog.records),
        until=lambda n: n >= 4,
        what="metadata refreshed several times",
    )
    ours = [r for r in caplog.records if MISSING in r.getMessage()]
    assert len(ours) == 1 and ours[0].levelno == logging.WARNING
    assert getattr(ours[0], "topics", None) == topic

    await create_topic(settings, topic)
    await wait_for(lambda: running.not_ready() is None, timeout_s=30, what="ready once the topic exists")
    assert missing_gauge(running) == 0
    assert len([r for r in caplog.records if FOUND in r.getMessage()]) == 1
    await wait_for(lambda: running.consumer is not None and running.consumer.assignment(), what="partitions")


async def test_partitions_added_to_a_topic_are_assigned_at_the_next_metadata_age(
    make_settings: SettingsFactory, topic: str, started: list[tuple[asyncio.Event, asyncio.Task[None]]]
) -> None:
    # The topic is there, so the watch has nothing to ask: what brings the new partition is the periodic refresh,
    # every LEADSTREAM_CONSUMER_METADATA_MAX_AGE_MS (aiokafka's own default, 300 s, when the setting is not passed).
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


async def test_a_service_started_before_its_topics_is_not_ready_naming_them_and_consumes_once_they_exist(
    make_settings: SettingsFactory, topic_prefix: str
) -> None:
    # The production case: a Deployment whose topics Job (or KafkaTopics) has not run yet.
    prefix = f"{topic_prefix}later-{uuid.uuid4().hex[:6]}."
    settings = make_settings("probe_later_topics", ProbeSettings, topic_prefix=prefix)
    service = build(settings)
    await service.start()
    try:
        [consumer] = service.consumers
        failed = await wait_for(
            service.readiness, until=lambda f: "missing" in f.get(f"consumer:{consumer.group_id}", ""), what="503"
        )
        assert settings.topic_name(LEAD.name) in failed[f"consumer:{consumer.group_id}"]

        await apply_topics(make_settings("admin", topic_prefix=prefix), partitions=TEST_PARTITIONS)
        await wait_for(service.readiness, until=lambda f: f == {}, timeout_s=30, what="ready once the topics exist")
        await wait_for(lambda: consumer.consumer is not None and consumer.consumer.assignment(), what="partitions")
    finally:
        await service.stop()
