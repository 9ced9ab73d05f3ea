"""``apply_topics`` reconciles the contract topics on the real broker instead of only creating them.

- missing topics are created, and a second run reports every topic ``exists``;
- a managed config that differs (retention, min.insync.replicas) is altered, keeping an operator's other overrides;
- min.insync.replicas defaults to min(2, replication factor) and is never raised above a topic's replicas;
- a partition increase happens only when allowed, otherwise it is drift and nothing changes;
- fewer partitions or another replication factor than present is drift, and nothing is shrunk;
- a dry run reports what would change and changes nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from leadstream_schemas import LEAD

from services.runtime.kafka import (
    ActualTopic,
    DesiredTopic,
    all_topics,
    apply_topics,
    plan_topic,
)
from services.runtime.settings import RuntimeSettings
from tests.conftest import SettingsFactory
from tests.support.kafka import wait_for

DESIRED_CONFIGS = {
    "retention.ms": "-1",
    "cleanup.policy": "delete",
    "compression.type": "producer",
    "min.insync.replicas": "1",  # min(2, replication factor 1)
}


@dataclass
class Broker:
    """Reads (and for setup, writes) topics straight on the broker, bypassing apply_topics."""

    admin: AIOKafkaAdminClient

    async def partitions(self, topic: str) -> int:
        """The topic's partition count (0 when it does not exist)."""
        for t in await self.admin.describe_topics():
            if t["topic"] == topic:
                return len(t["partitions"])
        return 0

    async def names(self) -> set[str]:
        """Every topic on the broker."""
        return set(await self.admin.list_topics())

    async def configs(self, topic: str) -> dict[str, tuple[str, int]]:
        """The topic's configs: name -> (value, config_source; 1 is a topic-level override)."""
        [response] = await self.admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [resource] = response.to_object()["resources"]
        return {e["config_names"]: (e["config_value"], e["config_source"]) for e in resource["config_entries"]}

    async def create(self, topic: str, partitions: int, configs: dict[str, str]) -> None:
        """Create one topic as some other tool would have."""
        response = await self.admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs)])
        assert response.to_object()["topic_errors"][0]["error_code"] == 0, response

    async def set_retention(self, topic: str, retention_ms: str) -> None:
        """Set the topic's retention.ms (its only override afterwards)."""
        [response] = await self.admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": retention_ms})]
        )
        assert response.to_object()["resources"][0]["error_code"] == 0, response


@pytest.fixture(scope="session")
async def broker(make_settings: SettingsFactory) -> AsyncIterator[Broker]:
    """An admin client on the test broker for the session."""
    admin = AIOKafkaAdminClient(bootstrap_servers=make_settings("admin").kafka_bootstrap_servers)
    await admin.start()
    yield Broker(admin)
    await admin.close()


@pytest.fixture
async def fresh(
    make_settings: SettingsFactory, topic_prefix: str, broker: Broker
) -> AsyncIterator[Callable[..., RuntimeSettings]]:
    """``fresh(**overrides)`` -> admin settings on a topic prefix of this test's own (no topics yet).

    Every call gives the same prefix, so a test can change desired partitions or replication factor
    between runs; the topics are deleted afterwards.
    """
    prefix = f"{topic_prefix}rc{uuid.uuid4().hex[:6]}-"

    def settings(**overrides: object) -> RuntimeSettings:
        return make_settings("admin", topic_prefix=prefix, **{"topic_partitions": 2, **overrides})

    yield settings
    with contextlib.suppress(Exception):
        await broker.admin.delete_topics([n for n, _, _ in all_topics(settings())])


def names(settings: RuntimeSettings) -> list[str]:
    return [n for n, _, _ in all_topics(settings)]


async def test_creates_missing_topics_then_a_second_run_reports_all_exists(
    fresh: Callable[..., RuntimeSettings], broker: Broker
) -> None:
    settings = fresh()
    first = await apply_topics(settings)
    assert first.outcomes() == dict.fromkeys(names(settings), "created")
    assert not first.has_drift
    lead = settings.topic_name(LEAD.name)
    await wait_for(lambda: broker.partitions(lead), what="lead topic in the metadata")
    assert await broker.partitions(lead) == 2
    configs = await broker.configs(lead)
    assert {k: configs[k][0] for k in DESIRED_CONFIGS} == DESIRED_CONFIGS

    second = await apply_topics(settings)
    assert second.outcomes() == dict.fromkeys(names(settings), "exists")
    assert all(r.details == "" for r in second.results)


async def test_wrong_retention_is_updated_and_other_overrides_are_kept(
    fresh: Callable[..., RuntimeSettings], broker: Broker
) -> None:
    settings = fresh()
    lead = settings.topic_name(LEAD.name)
    # max.message.bytes is an operator's override: AlterConfigs replaces all overrides, so it must be repeated.
    await broker.create(lead, 2, {"retention.ms": "1000", "max.message.bytes": "2000000"})
    await wait_for(lambda: broker.partitions(lead), what="lead topic in the metadata")

    report = await apply_topics(settings)
    assert report[lead].outcome == "updated"
    assert report[lead].changes == ("retention.ms 1000 -> -1",)
    assert {n: o for n, o in report.outcomes().items() if n != lead} == {
        n: "created" for n in names(settings) if n != lead
    }

    async def fixed() -> bool:
        configs = await broker.configs(lead)
        return configs["retention.ms"][0] == "-1"

    await wait_for(fixed, what="retention.ms altered")
    configs = await broker.configs(lead)
    assert configs["max.message.bytes"] == ("2000000", 1)
    assert {k: configs[k][0] for k in DESIRED_CONFIGS} == DESIRED_CONFIGS
    assert (await apply_topics(settings)).outcomes() == dict.fromkeys(names(settings), "exists")


async def test_partition_increase_is_drift_unless_allowed(
    fresh: Callable[..., RuntimeSettings], broker: Broker
) -> None:
    await apply_topics(fresh())
    lead = fresh().topic_name(LEAD.name)
    await wait_for(lambda: broker.partitions(lead), what="lead topic in the metadata")

    refused = await apply_topics(fresh(), partitions=3)
    assert refused.has_drift
    assert refused.outcomes() == dict.fromkeys(names(fresh()), "drift")
    assert "--allow-partition-increase" in refused[lead].details and refused[lead].changes == ()
    assert await broker.partitions(lead) == 2

    allowed = await apply_topics(fresh(), partitions=3, allow_partition_increase=True)
    assert allowed.outcomes() == dict.fromkeys(names(fresh()), "updated")
    assert allowed[lead].changes == ("partitions 2 -> 3",)

    async def grown() -> bool:
        return all([await broker.partitions(n) == 3 for n in names(fresh())])

    await wait_for(grown, what="every topic at 3 partitions")
    assert (await apply_topics(fresh(), partitions=3)).outcomes() == dict.fromkeys(names(fresh()), "exists")


async def test_fewer_partitions_or_another_replication_factor_is_drift_and_nothing_shrinks(
    fresh: Callable[..., RuntimeSettings], broker: Broker
) -> None:
    settings = fresh(topic_partitions=3)
    lead = settings.topic_name(LEAD.name)
    await apply_topics(settings)
    await wait_for(lambda: broker.partitions(lead), what="lead topic in the metadata")
    await broker.set_retention(lead, "1000")
    await wait_for(lambda: _config_is(broker, lead, "retention.ms", "1000"), what="retention.ms set to 1000")

    report = await apply_topics(fresh(topic_partitions=2), allow_partition_increase=True)
    assert report.has_drift and report.outcomes() == dict.fromkeys(names(settings), "drift")
    assert "Kafka cannot remove partitions" in report[lead].details
    # The safe part is still done: the lead topic's retention is fixed although its partitions drift.
    assert report[lead].changes == ("retention.ms 1000 -> -1",)
    await wait_for(
        lambda: _config_is(broker, lead, "retention.ms", "-1"),
        what="retention.ms altered on a drifting topic",
    )
    assert [await broker.partitions(n) for n in names(settings)] == [3] * len(names(settings))

    # One broker cannot hold 2 replicas; the topics are left alone and the run says why.
    replicas = await apply_topics(fresh(topic_partitions=3, topic_replication_factor=2))
    assert replicas.outcomes() == dict.fromkeys(names(settings), "drift")
    assert replicas[lead].drift == (
        "min.insync.replicas 1, desired 2: more than the topic's 1 replica(s)",
        "replication factor 1, desired 2: needs a partition reassignment (not done here)",
    )
    assert (await broker.configs(lead))["min.insync.replicas"][0] == "1"


async def test_min_insync_replicas_is_set_on_create_and_fixed_on_existing_topics(
    fresh: Callable[..., RuntimeSettings], broker: Broker
) -> None:
    settings = fresh()
    assert settings.min_insync_replicas == 1  # replication factor 1 locally: min(2, 1)
    lead = settings.topic_name(LEAD.name)
    # Another tool created the topic asking for 2 in-sync replicas on a single replica: every acks=all write
    # would fail with NOT_ENOUGH_REPLICAS.
    await broker.create(lead, 2, {"retention.ms": "-1", "min.insync.replicas": "2"})
    await wait_for(lambda: broker.partitions(lead), what="lead topic in the metadata")

    report = await apply_topics(settings)
    assert report[lead].outcome == "updated" and report[lead].changes == ("min.insync.replicas 2 -> 1",)
    await wait_for(lambda: _config_is(broker, lead, "min.insync.replicas", "1"), what="min.insync.replicas fixed")
    for name in names(settings):
        if name != lead:
            await wait_for(partial(broker.partitions, name), what=f"{name} in the metadata")
            assert (await broker.configs(name))["min.insync.replicas"] == ("1", 1), name  # a topic override


def test_min_insync_replicas_defaults_to_two_with_replicas_to_spare_and_never_exceeds_them() -> None:
    assert RuntimeSettings(topic_replication_factor=1).min_insync_replicas == 1
    assert RuntimeSettings(topic_replication_factor=2).min_insync_replicas == 2
    assert RuntimeSettings(topic_replication_factor=3).min_insync_replicas == 2
    assert RuntimeSettings(topic_replication_factor=5, topic_min_insync_replicas=3).min_insync_replicas == 3
    with pytest.raises(ValueError, match="exceeds LEADSTREAM_TOPIC_REPLICATION_FACTOR"):
        RuntimeSettings(topic_replication_factor=1, topic_min_insync_replicas=2)


async def _config_is(broker: Broker, topic: str, key: str, value: str) -> bool:
    return (await broker.configs(topic))[key][0] == value


async def test_dry_run_reports_what_would_change_and_changes_nothing(
    fresh: Callable[..., RuntimeSettings], broker: Broker
) -> None:
    settings = fresh()
    lead = settings.topic_name(LEAD.name)
    await broker.create(lead, 2, {"retention.ms": "1000"})
    await wait_for(lambda: broker.partitions(lead), what="lead topic in the metadata")

    report = await apply_topics(settings, partitions=3, allow_partition_increase=True, dry_run=True)
    assert report.dry_run and not report.has_drift
    assert report[lead].outcome == "updated"
    assert report[lead].changes == ("retention.ms 1000 -> -1", "partitions 2 -> 3")
    others = [n for n in names(settings) if n != lead]
    assert {n: report[n].outcome for n in others} == dict.fromkeys(others, "created")

    assert not set(others) & await broker.names()
    assert await broker.partitions(lead) == 2
    assert (await broker.configs(lead))["retention.ms"][0] == "1000"


def _actual(**overrides: object) -> ActualTopic:
    values: dict[str, object] = {
        "name": "t",
        "partitions": 3,
        "replication_factors": frozenset({1}),
        "configs": dict(DESIRED_CONFIGS),
        "overrides": {},
    }
    values.update(overrides)
    return ActualTopic(**values)  # type: ignore[arg-type]


DESIRED = DesiredTopic("t", partitions=3, replication_factor=1, configs=DESIRED_CONFIGS)


def test_plan_in_sync_topic_is_exists_and_missing_is_created() -> None:
    assert plan_topic(DESIRED, _actual(), allow_partition_increase=False).outcome == "exists"
    created = plan_topic(DESIRED, None, allow_partition_increase=False)
    assert created.outcome == "created" and created.changes == ("3 partitions, replication factor 1",)


def test_plan_a_config_hidden_by_the_broker_blocks_altering_configs() -> None:
    # AlterConfigs would drop an override whose value the broker does not return, so the plan refuses.
    actual = _actual(configs={**DESIRED_CONFIGS, "retention.ms": "1000"}, overrides={"secret.thing": None})
    result = plan_topic(DESIRED, actual, allow_partition_increase=False)
    assert result.outcome == "drift" and result.config_updates == {} and result.changes == ()
    assert "secret.thing" in result.details


def test_plan_never_raises_min_insync_replicas_above_the_topics_replicas() -> None:
    desired = DesiredTopic("t", 3, 3, {**DESIRED_CONFIGS, "min.insync.replicas": "2"})
    on_three = plan_topic(desired, _actual(replication_factors=frozenset({3})), allow_partition_increase=False)
    assert on_three.config_updates == {"min.insync.replicas": "2"} and on_three.outcome == "updated"
    on_one = plan_topic(desired, _actual(replication_factors=frozenset({1, 3})), allow_partition_increase=False)
    assert on_one.config_updates == {} and on_one.outcome == "drift"
    assert "min.insync.replicas 1, desired 2: more than the topic's 1 replica(s)" in on_one.drift


def test_plan_mixed_replication_factors_are_drift() -> None:
    result = plan_topic(DESIRED, _actual(replication_factors=frozenset({1, 2})), allow_partition_increase=True)
    assert result.outcome == "drift" and result.drift[0].startswith("replication factor 1/2, desired 1")
