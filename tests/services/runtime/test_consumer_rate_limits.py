"""Rate limits on the real broker: a wait longer than the inline cap pauses only the record's partition
(the others flow meanwhile), the record is handled after the wait, never dead-lettered, and the consumer
keeps its partitions although the wait is longer than ``max.poll.interval.ms``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from leadstream_schemas import Envelope, LeadDiscovered

from services.runtime.consumer import HandlerContext, RetryLater
from services.runtime.service import Service
from tests.conftest import SettingsFactory
from tests.support.kafka import read_until, wait_for
from tests.support.probe.app import FlakyHandler, build
from tests.support.probe.fixtures import own_probe
from tests.support.probe.helpers import dead_letters_of, discovered, effect_origins, raw, send

WAIT_S = 6.0
"""The provider's retry-after: longer than the inline cap and than max.poll.interval.ms below."""


class OrderedHandler(FlakyHandler):
    """Records the order in which events were handled."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[uuid.UUID] = []

    async def __call__(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        await super().__call__(env, ctx)
        self.order.append(env.id)


async def test_a_long_rate_limit_pauses_its_partition_while_the_others_flow(
    make_settings: SettingsFactory, start_service: Callable[[Service], Any], topic_prefix: str
) -> None:
    settings = await own_probe(
        topic_prefix,
        make_settings,
        "throttle",
        consumer_max_inline_wait_s=0.5,
        consumer_max_poll_interval_ms=4_000,
    )
    lead_topic = settings.topic_name("leadstream.lead.v1")
    handler = OrderedHandler()
    service = await start_service(build(settings, handler, group_suffix="-throttle"))
    consumer = service.consumers[0]
    limited = discovered()
    behind = discovered(limited.data.lead_id)  # same key: same partition, right behind it
    handler.fail(limited.id, lambda: RetryLater(WAIT_S, "provider says wait"), times=1)
    first = await send(settings.kafka_bootstrap_servers, lead_topic, [raw(limited), raw(behind)])
    await wait_for(lambda: handler.attempts[limited.id] == 1, timeout_s=60, what="the rate-limited attempt")
    rebalances = consumer.revocations

    others = [discovered() for _ in range(12)]
    sent = await send(settings.kafka_bootstrap_servers, lead_topic, [raw(e) for e in others])
    elsewhere = [e for e, md in zip(others, sent, strict=True) if md.partition != first[0].partition]
    assert elsewhere, "every record landed on the paused partition"

    async def elsewhere_handled() -> bool:
        return all([await effect_origins(service.engine, e.id) for e in elsewhere])

    await wait_for(elsewhere_handled, timeout_s=60, what="the other partitions' records")
    # They were handled while the rate-limited record waited: its partition alone was paused.
    assert handler.attempts[limited.id] == 1 and limited.id not in handler.order

    async def limited_handled() -> bool:
        return bool(await effect_origins(service.engine, limited.id))

    await wait_for(limited_handled, timeout_s=60, what="the rate-limited record after its wait")
    await wait_for(lambda: behind.id in handler.order, timeout_s=60, what="the record behind it")
    assert handler.attempts[limited.id] == 2
    assert handler.order.index(limited.id) < handler.order.index(behind.id)  # partition order kept
    assert await effect_origins(service.engine, limited.id) == ["event"]
    # Paused, not slept through: no poll gap reached max.poll.interval.ms, so it never left the group.
    assert consumer.revocations == rebalances
    # Never dead-lettered: a poison record behind it on its partition reaches the DLQ, the event does not.
    key, _, headers = raw(discovered(limited.data.lead_id))
    marker = await send(settings.kafka_bootstrap_servers, lead_topic, [(key, b"not json", headers)])
    group = consumer.group_id
    dlq = await read_until(
        settings.kafka_bootstrap_servers,
        [lead_topic + ".dlq"],
        lambda rs: bool(dead_letters_of(rs, marker[0], group)),
    )
    assert dead_letters_of(dlq, first[0], group) == []
