"""An event that must wait for other topics (``EventConsumer.after``): a ``SearchFinished`` read while a
``LeadDiscovered`` appended before it is still in hand (on the lead topic, whose partitions are handled side by side
with the search topic's) is handled only after it, as outreach needs to finish a campaign with every lead the search
found. On the real broker and database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from leadstream_schemas import LEAD, SEARCH, TOPICS, Envelope, LeadDiscovered, SearchFinished, SearchStarted
from prometheus_client import REGISTRY

from services.runtime.consumer import EventConsumer, HandlerContext
from services.runtime.service import Service
from tests.conftest import TEST_PARTITIONS, SettingsFactory
from tests.support.kafka import wait_for
from tests.support.probe.app import WORKSPACE, build
from tests.support.probe.fixtures import own_probe
from tests.support.probe.helpers import discovered, raw, send


class Holding:
    """The probe's lead handler, holding the events it is told to until the test releases each."""

    def __init__(self, *held: uuid.UUID) -> None:
        self.entered = {eid: asyncio.Event() for eid in held}
        self.release = {eid: asyncio.Event() for eid in held}
        self.done: list[uuid.UUID] = []

    async def __call__(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        if env.id in self.entered:
            self.entered[env.id].set()
            await self.release[env.id].wait()
        self.done.append(env.id)


class Finished:
    """Notes the ``SearchFinished`` it handles, and which leads were done by then."""

    def __init__(self, leads: Holding) -> None:
        self.leads = leads
        self.seen: list[tuple[uuid.UUID, list[uuid.UUID]]] = []

    async def __call__(self, env: Envelope[SearchFinished], ctx: HandlerContext) -> None:
        self.seen.append((env.data.search_id, list(self.leads.done)))


def waits(service: str) -> float:
    value = REGISTRY.get_sample_value(
        "leadstream_events_waited_total", {"service": service, "event_type": SearchFinished.event_type}
    )
    return value or 0.0


async def test_a_search_s_end_waits_for_the_leads_appended_before_it(
    make_settings: SettingsFactory, start_service: Callable[[Service], Any], topic_prefix: str
) -> None:
    settings = await own_probe(topic_prefix, make_settings, "after")
    first, found = discovered(), discovered()
    leads = Holding(first.id, found.id)
    finished = Finished(leads)
    service = await start_service(build(settings, leads, group_suffix="-after", search_finished=finished))
    lead_topic = settings.topic_name(first.topic)

    # A first lead holds the consumer's poll, while the search's last lead and then its end are appended (the lead
    # topic, then the search topic): the next poll takes both, and their partitions are handled side by side.
    await send(settings.kafka_bootstrap_servers, lead_topic, [raw(first)])
    await asyncio.wait_for(leads.entered[first.id].wait(), timeout=60)
    end = Envelope.new(
        SearchFinished(search_id=uuid.uuid4(), reason="exhausted", total_new=1), workspace_id=WORKSPACE, source="test"
    )
    (at_lead,) = await send(settings.kafka_bootstrap_servers, lead_topic, [raw(found)])
    (at_end,) = await send(settings.kafka_bootstrap_servers, settings.topic_name(SEARCH.name), [raw(end)])
    # Both in the consumer's prefetch before the first lead is released, so that its next poll takes both: a fetch
    # answer that carries a partition's high watermark past a record carries the record. (Released earlier, a poll
    # under load may take the lead alone, which is then held, and the search's end is never read.)
    kafka = service.consumers[0].consumer
    assert kafka is not None
    await wait_for(
        lambda: all((kafka.highwater(TopicPartition(m.topic, m.partition)) or 0) > m.offset for m in (at_lead, at_end)),
        what="the search's last lead and its end fetched by the consumer",
    )
    leads.release[first.id].set()
    # The search's end is read while its last lead is in hand: put back, never handled before that lead is done
    # (handled at once, it would say here that only the first lead was done).
    await wait_for(
        lambda: finished.seen or waits(settings.service_name) >= 1, what="the search's end read (handled or put back)"
    )
    assert finished.seen == [] and leads.done == [first.id]

    leads.release[found.id].set()
    await wait_for(lambda: len(finished.seen) == 1, what="the search's end handled once its last lead is done")
    assert finished.seen == [(end.data.search_id, [first.id, found.id])]


def test_only_a_handled_type_may_wait_and_only_for_topics_read(make_settings: SettingsFactory) -> None:
    """A topic the group does not read has no offsets of the group's: an event waiting for it would wait for ever."""
    settings = make_settings("probe_after_bad")

    def consumer(after: dict[type[Any], list[str]]) -> EventConsumer:
        return EventConsumer(
            settings=settings,
            engine=None,  # type: ignore[arg-type]  # refused before anything is used
            tables=None,  # type: ignore[arg-type]
            broker=None,  # type: ignore[arg-type]
            topics=[LEAD.name, SEARCH.name],
            handlers={SearchFinished: Finished(Holding()), LeadDiscovered: Holding()},
            relay=None,  # type: ignore[arg-type]
            clock=settings.clock(),
            group_id="g",
            after=after,
        )

    other = next(t.name for t in TOPICS.values() if t.name not in (LEAD.name, SEARCH.name))
    assert consumer({SearchFinished: [LEAD.name]}).after == {
        SearchFinished.event_type: [settings.topic_name(LEAD.name)]
    }
    with pytest.raises(ValueError, match="only wait for topics this consumer reads"):
        consumer({SearchFinished: [other]})
    with pytest.raises(ValueError, match="must be handled"):
        consumer({SearchStarted: [LEAD.name]})


async def test_a_search_s_end_waits_for_a_lead_another_member_has_in_hand(
    make_settings: SettingsFactory, start_service: Callable[[Service], Any], topic_prefix: str
) -> None:
    """Two members of the group: the search's end is read by one while its lead is in the other's hands, so the
    wait goes by the group's committed offsets, not by the reader's own progress."""
    settings = await own_probe(topic_prefix, make_settings, "after2")
    found = discovered()
    leads = Holding(found.id)  # one handler object for both members: what they did, in one list
    finished = Finished(leads)
    members = [
        await start_service(build(settings, leads, group_suffix="-after2", search_finished=finished)) for _ in range(2)
    ]
    consumers = [m.consumers[0] for m in members]
    lead_topic, search_topic = settings.topic_name(found.topic), settings.topic_name(SEARCH.name)

    def owners() -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for i, c in enumerate(consumers):
            for tp in c.consumer.assignment() if c.consumer is not None else ():
                out[(tp.topic, tp.partition)] = i
        return out

    await wait_for(
        lambda: set(owners().values()) == {0, 1} and len(owners()) == 2 * TEST_PARTITIONS,  # the lead and search topics
        what="the group's partitions split between the two members",
    )
    owner = owners()
    lead_partition, holder = next((p, owner[(lead_topic, p)]) for p in range(TEST_PARTITIONS))
    search_partition = next(p for p in range(TEST_PARTITIONS) if owner[(search_topic, p)] != holder)
    end = Envelope.new(
        SearchFinished(search_id=uuid.uuid4(), reason="exhausted", total_new=1), workspace_id=WORKSPACE, source="test"
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        key, value, headers = raw(found)
        await producer.send_and_wait(lead_topic, value, key=key, headers=headers, partition=lead_partition)
        await asyncio.wait_for(leads.entered[found.id].wait(), timeout=60)  # in the holder's hands
        key, value, headers = raw(end)
        await producer.send_and_wait(search_topic, value, key=key, headers=headers, partition=search_partition)
    finally:
        await producer.stop()
    await wait_for(
        lambda: finished.seen or waits(settings.service_name) >= 2, what="the search's end read (handled or put back)"
    )
    assert finished.seen == [] and leads.done == []

    leads.release[found.id].set()
    await wait_for(
        lambda: len(finished.seen) == 1, what="the search's end handled once the other member's lead is done"
    )
    assert finished.seen == [(end.data.search_id, [found.id])]
