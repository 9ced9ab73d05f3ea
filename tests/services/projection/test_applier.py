"""The batch applier on the real database: order independence, idempotence, offsets in the same transaction."""

from __future__ import annotations

import random

import asyncpg
from leadstream_schemas import CampaignCreated, LeadEvent

from services.projection.checksum import views_checksum
from services.projection.handlers import BatchApplier
from services.projection.workload import generate

from .helpers import NewSchema, apply_all, as_items


async def test_shuffled_across_topics_gives_the_same_views(pg: asyncpg.Connection, new_schema: NewSchema) -> None:
    log = generate(leads=24, campaigns=3, seed=11)
    ordered, shuffled = await new_schema(), await new_schema()
    await apply_all(pg, ordered, as_items(log.envelopes), batch=40)
    envs = list(log.envelopes)
    random.Random(5).shuffle(envs)
    # Lead events before their campaign's creation: the case the issue names.
    first_campaign = next(i for i, e in enumerate(envs) if isinstance(e.data, CampaignCreated))
    first_lead = next(i for i, e in enumerate(envs) if isinstance(e.data, LeadEvent) and e.data.campaign_id)
    assert first_lead < first_campaign
    await apply_all(pg, shuffled, as_items(envs), batch=17)
    a, b = await views_checksum(pg, ordered.schema), await views_checksum(pg, shuffled.schema)
    assert a.tables == b.tables
    assert a.digest == b.digest
    rows = {t.table: t.rows for t in a.tables}
    assert rows["timeline"] == sum(isinstance(e.data, LeadEvent) for e in log.envelopes)
    assert rows["lead_state"] == 24 and rows["campaigns"] == 3 and rows["campaign_summary"] == 3


async def test_same_records_twice_change_nothing(pg: asyncpg.Connection, new_schema: NewSchema) -> None:
    log = generate(leads=10, campaigns=2, seed=3)
    views = await new_schema()
    items = as_items(log.envelopes)
    first = await apply_all(pg, views, items, batch=50)
    assert first.applied == len(log.envelopes) and first.duplicates == 0
    before = await views_checksum(pg, views.schema)
    # A fresh applier that believes nothing was applied (as after a crash before any Kafka commit),
    # with every record duplicated inside each batch as a producer retry would.
    applier = BatchApplier(views)
    doubled = [it for pair in zip(items, items, strict=True) for it in pair]
    again = await applier.apply(pg, doubled, {})
    assert again.applied == 0
    after = await views_checksum(pg, views.schema)
    assert after.digest == before.digest


async def test_offsets_are_stored_with_the_views_and_fence_stale_batches(
    pg: asyncpg.Connection, new_schema: NewSchema
) -> None:
    log = generate(leads=6, campaigns=1, seed=9)
    views = await new_schema()
    items = as_items(log.envelopes)
    applier = BatchApplier(views)
    lead_item = next(it for it in items if it.envelope is not None and isinstance(it.envelope.data, LeadEvent))
    tp = (lead_item.topic, lead_item.partition)
    part = [it for it in items if (it.topic, it.partition) == tp]
    assert len(part) >= 8
    r = await applier.apply(pg, part[:3], {tp: 0})
    assert r.next_offsets == {tp: 3}
    stored = await pg.fetchval(
        f'SELECT next_offset FROM "{views.schema}".offsets WHERE topic = $1 AND partition = $2', *tp
    )
    assert stored == 3
    # A replica that still thinks the partition starts at 0 re-delivers 0..3: only offset 3 is new.
    r = await applier.apply(pg, part[:4], {tp: 0})
    assert r.next_offsets == {tp: 4} and r.applied == 1
    # A consumer ahead of the stored offset (views swapped under it) is told to seek back, nothing applied.
    r = await applier.apply(pg, part[6:8], {tp: 6})
    assert r.seeks == {tp: 4} and r.applied == 0 and not r.next_offsets
