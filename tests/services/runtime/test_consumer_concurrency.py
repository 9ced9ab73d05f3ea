"""``consumer_concurrency`` on the real broker: a poll's partitions are worked on at most that many at once, each
partition's records in order."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from leadstream_schemas import Envelope, LeadDiscovered

from services.runtime.consumer import HandlerContext
from services.runtime.service import Service
from tests.conftest import TEST_PARTITIONS, SettingsFactory
from tests.support.kafka import wait_for
from tests.support.probe.app import FlakyHandler, build
from tests.support.probe.fixtures import own_probe
from tests.support.probe.helpers import discovered, raw, send


class GatedHandler(FlakyHandler):
    """Holds every event at a gate the test opens, counting the handlers inside at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.inside = 0
        self.most_inside = 0
        self.order: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)  # per lead (one partition): ids in order

    async def __call__(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await self.gate.wait()
            await super().__call__(env, ctx)
            self.order[env.data.lead_id].append(env.id)
        finally:
            self.inside -= 1


async def test_a_poll_of_every_partition_is_worked_on_one_partition_at_a_time_with_concurrency_one(
    make_settings: SettingsFactory, start_service: Callable[[Service], Any], topic_prefix: str
) -> None:
    settings = await own_probe(topic_prefix, make_settings, "concurrency", consumer_concurrency=1)
    lead_topic = settings.topic_name("leadstream.lead.v1")
    # Three events for each of a dozen leads, on the log before the consumer starts: its first polls carry
    # records of every partition.
    leads = [uuid.uuid4() for _ in range(12)]
    events = [discovered(lead) for _ in range(3) for lead in leads]
    sent = await send(settings.kafka_bootstrap_servers, lead_topic, [raw(e) for e in events])
    assert len({md.partition for md in sent}) == TEST_PARTITIONS

    handler = GatedHandler()
    service = await start_service(build(settings, handler, group_suffix="-concurrency"))
    consumer = service.consumers[0]
    # Every partition of the poll has its task, one handler is at the gate and the others wait for the slot.
    await wait_for(
        lambda: handler.inside == 1 and len(consumer.in_flight()) == TEST_PARTITIONS,
        timeout_s=60,
        what="the poll's partitions under way",
    )
    handler.gate.set()
    await wait_for(
        lambda: sum(len(ids) for ids in handler.order.values()) == len(events), timeout_s=60, what="every event"
    )
    assert handler.most_inside == 1
    for lead in leads:  # each partition's records in their log order
        assert handler.order[lead] == [e.id for e in events if e.data.lead_id == lead]
