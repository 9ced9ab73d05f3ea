"""A second replica joining and the first leaving in the middle of a stream: partitions move between
them, records are re-delivered across the rebalance, and still every event has exactly one effect and
calls the provider once. The rebalance listener stops the first replica's work on revoked partitions
(the calls in flight are abandoned without effect after the grace period) and commits what it did
before the partitions go.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from leadstream_schemas import Envelope, LeadDiscovered
from sqlalchemy import func, select

from services.runtime.consumer import HandlerContext
from services.runtime.service import Service
from tests.conftest import SettingsFactory
from tests.support.kafka import read_until, wait_for
from tests.support.probe.app import FlakyHandler, ProbeSettings, build
from tests.support.probe.fixtures import probe_topics
from tests.support.probe.helpers import caused_by, discovered, headers_of, raw, send
from tests.support.probe.store import effects

EVENTS = 120
FREE = 30  # events of ours the first replica handles before it is held mid-stream


class CountingProvider:
    """An in-process provider both replicas call (as they would one LLM or enrichment API): counts calls."""

    def __init__(self) -> None:
        self.calls: Counter[uuid.UUID] = Counter()

    async def call(self, event_id: uuid.UUID) -> None:
        """One provider call for ``event_id``."""
        self.calls[event_id] += 1


class GatedHandler(FlakyHandler):
    """Calls the provider inside the handler's transaction, then writes the effect; once ``free`` of the
    given events were handled, holds every further call (before the provider) until ``gate`` opens.

    This keeps the stream unfinished, deterministically, while the second replica joins.
    """

    def __init__(self, provider: CountingProvider, ours: set[uuid.UUID], free: int) -> None:
        super().__init__()
        self.provider = provider
        self.ours = ours
        self.free = free
        self.gate = asyncio.Event()
        self.held = 0

    async def __call__(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        """Hold the call once ``free`` of our events were handled, until the gate opens; then call the provider."""
        if env.id in self.ours and sum(self.attempts[i] for i in self.ours) >= self.free:
            self.held += 1
            await self.gate.wait()
        await self.provider.call(env.id)
        await super().__call__(env, ctx)


async def committed_offsets(settings: ProbeSettings, group: str, topic: str) -> int:
    """The sum of the offsets ``group`` committed on ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0)


async def test_rebalance_mid_stream_keeps_effects_exactly_once(
    make_settings: SettingsFactory,
    start_service: Callable[[Service], Any],
    topic_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe_prefix = await probe_topics(topic_prefix, make_settings, "probe-rebalance")
    # A short grace: the held calls are abandoned (rolled back) soon after their partitions are revoked.
    settings = make_settings("probe_rebalance", ProbeSettings, topic_prefix=probe_prefix, consumer_revoke_grace_s=1.0)
    lead_topic = settings.topic_name("leadstream.lead.v1")
    envs = [discovered() for _ in range(EVENTS)]
    ids = {e.id for e in envs}
    await send(settings.kafka_bootstrap_servers, lead_topic, [raw(e) for e in envs])

    provider = CountingProvider()
    # The second replica holds every call until the rebalance was checked, then handles what it gets.
    first_handler, second_handler = GatedHandler(provider, ids, FREE), GatedHandler(provider, ids, 0)
    first = build(settings, first_handler, group_suffix="-rebalance")
    second = build(settings, second_handler, group_suffix="-rebalance")

    async def effect_rows() -> int:
        async with first.engine.connect() as conn:
            n = await conn.scalar(select(func.count()).select_from(effects).where(effects.c.event_id.in_(ids)))
            return int(n or 0)

    await start_service(first)
    await wait_for(lambda: first_handler.held > 0, timeout_s=60, what="the first replica to be held mid-stream")

    async def free_ones_committed() -> bool:
        return await effect_rows() == FREE  # never more: every further call is held

    await wait_for(free_ones_committed, timeout_s=60, what=f"the first {FREE} effects to be committed")
    # The held batch holds records of every partition (all were produced before the start), so
    # whichever partitions the second replica gets were taken from the first in the middle of a batch.
    await start_service(second)
    # The rebalance is done: before its partitions went, the first replica stopped its work on them (the
    # held calls were abandoned, rolled back, without calling the provider) and committed what it had
    # done, so nobody re-reads a record it handled.
    assert sum(provider.calls.values()) == FREE and await effect_rows() == FREE
    assert await committed_offsets(settings, first.consumers[0].group_id, lead_topic) == FREE
    second_handler.gate.set()
    first_handler.gate.set()  # the held calls finish; their partitions may belong to the second by now
    await first.stop()  # leaves mid-stream: the rest of its batch is left to the second replica
    second_consumer = second.consumers[0].consumer
    assert second_consumer is not None
    await wait_for(lambda: len(second_consumer.assignment()) == 3, timeout_s=60, what="all partitions on one replica")

    async def all_handled() -> bool:
        return await effect_rows() >= EVENTS

    await wait_for(all_handled, timeout_s=120, what="every event to be handled")

    query = select(effects.c.event_id, func.count()).where(effects.c.event_id.in_(ids)).group_by(effects.c.event_id)
    async with second.engine.connect() as conn:
        per_event: dict[uuid.UUID, int] = {row[0]: row[1] for row in await conn.execute(query)}
    assert per_event == dict.fromkeys(ids, 1)
    # Re-delivered records reached the handler only once: a replica that re-read an event the other was
    # handling waited for its transaction, then found the processed id.
    calls_first, calls_second = (sum(h.attempts[i] for i in ids) for h in (first_handler, second_handler))
    assert calls_first + calls_second == EVENTS
    assert calls_first >= FREE and calls_second > 0
    assert provider.calls == dict.fromkeys(ids, 1)  # no handled event called the provider again
    # A rebalance is routine: neither consumer may crash on it (committing or measuring the lag of a
    # partition taken away used to restart the consumer, which made it rejoin and rebalance again).
    crashes = [r for r in caplog.records if r.name.startswith("services.runtime.") and "restart" in r.getMessage()]
    assert crashes == []

    wanted = {str(i) for i in ids}
    out = await read_until(
        settings.kafka_bootstrap_servers,
        [lead_topic],
        lambda rs: {headers_of(r).get("causationid") for r in rs} >= wanted,
        timeout_s=60,
    )
    for e in envs:
        assert len({headers_of(r)["ce_id"] for r in caused_by(out, e.id)}) == 1
