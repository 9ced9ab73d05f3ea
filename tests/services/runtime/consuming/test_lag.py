"""The lag gauge a member sets after every poll: one series per partition it owns, gone once the partition goes.

The member keeps each partition's labelled series to set it again cheaply; a partition taken away and given back
must get a live series again, not the removed one (setting a removed child changes nothing on /metrics)."""

from __future__ import annotations

from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from services.runtime.consuming.deadletter import DeadLetterPublisher
from services.runtime.consuming.loop import GroupConsumer
from services.runtime.consuming.policy import Retry
from services.runtime.settings import RuntimeSettings

SERVICE = "lag-gauge-test"
TOPIC = "t-lag"


async def _alive() -> None:
    return None


def member() -> GroupConsumer:
    settings = RuntimeSettings(service_name=SERVICE)
    return GroupConsumer(
        settings,
        topics=[TOPIC],
        dead_letters=DeadLetterPublisher(settings, SERVICE),
        retry=Retry(settings, _alive, "test"),
        max_records=10,
    )


def lag(partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "leadstream_consumer_lag", {"service": SERVICE, "topic": TOPIC, "partition": str(partition)}
    )


def test_a_partition_given_back_reports_its_lag_again() -> None:
    m = member()
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    for tp, done, end in ((p0, 3, 10), (p1, 5, 5)):
        m._position[tp], m._consumed[tp], m._end[tp] = done, done, end
    m._publish_lag()
    assert (lag(0), lag(1)) == (7, 0)
    m._consumed[p0] = 8
    m._publish_lag()
    assert lag(0) == 2

    m._forget([p0])  # revoked: another member reports it
    assert lag(0) is None and lag(1) == 0
    m._publish_lag()
    assert lag(0) is None

    m._position[p0], m._consumed[p0], m._end[p0] = 20, 20, 26  # assigned again, further on
    m._publish_lag()
    assert lag(0) == 6
    m._forget([p0, p1])
