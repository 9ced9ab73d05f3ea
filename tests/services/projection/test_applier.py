"""The batch applier on the real database: order independence, idempotence, offsets in the same transaction."""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from collections import Counter
from typing import Any

import asyncpg
import pytest
from leadstream_schemas import CampaignCreated, Envelope, InviteSent, LeadDiscovered, LeadEvent

from services.projection import domain
from services.projection.checksum import views_checksum
from services.projection.handlers import OPTIMISTIC_MIN_IDS, BatchApplier, Item
from services.projection.store import views_for
from services.projection.workload import generate
from services.runtime.consuming.sightings import Sightings

from .helpers import NewSchema, apply_all, as_items


def test_a_campaign_replay_keeps_its_campaigns_events_and_the_shared_ones() -> None:
    """``wanted`` reads an event's campaign as the timeline does (``domain.campaign_of``: the payload's, else the
    header's as a UUID) and counts it under that: kept when it is the replay's campaign or none, dropped when
    another. A header that is empty or not a UUID (which no leadstream producer writes) is no campaign, as on the
    timeline, so the rebuild keeps the event; an upper-case spelling is the same campaign."""
    mine, other = uuid.uuid4(), uuid.uuid4()
    applier = BatchApplier(views_for("projection_wanted"), campaign=mine)
    lead, account = uuid.uuid4(), uuid.uuid4()
    cases: list[tuple[uuid.UUID | None, str | None, bool, str | None]] = [
        (mine, None, True, str(mine)),
        (mine, str(other), True, str(mine)),  # both, disagreeing: the payload's
        (None, str(mine), True, str(mine)),
        (other, None, False, str(other)),
        (None, str(other), False, str(other)),
        (None, None, True, None),  # no campaign: shared context, kept
        (None, "", True, None),
        (None, "not-a-uuid", True, None),
        (None, str(mine).upper(), True, str(mine)),
        (None, str(other).upper(), False, str(other)),
    ]
    for in_payload, in_header, kept, counted in cases:
        data = InviteSent(lead_id=lead, campaign_id=in_payload, account_id=account)
        sent: Envelope[Any] = Envelope.new(data, workspace_id="ws", source="t")
        seen = Sightings()
        assert applier.wanted(dataclasses.replace(sent, campaign_id=in_header), seen) is kept, (in_payload, in_header)
        assert seen.events == 1 and seen.campaigns == ({} if counted is None else {counted: 1}), (in_payload, in_header)


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


async def test_a_large_batch_with_events_seen_before_applies_only_the_new_ones(
    pg: asyncpg.Connection, new_schema: NewSchema
) -> None:
    """A batch large enough to record its event ids without looking them up first, 20 of them applied
    by an earlier batch (re-published at later offsets): the key refuses the attempt, the lookup
    finds the 20, and the views are those of applying every event once."""
    log = generate(leads=45, campaigns=3, seed=21)
    items = as_items(log.envelopes)
    once, views = await new_schema(), await new_schema()
    await apply_all(pg, once, items, batch=len(items))
    applier = BatchApplier(views)
    first = await applier.apply(pg, items[:20], {})
    again = [Item(it.topic, it.partition, 10_000 + i, it.envelope) for i, it in enumerate(items[:20])]
    batch = items[20:] + again
    assert len(batch) >= OPTIMISTIC_MIN_IDS + 20
    r = await applier.apply(pg, batch, dict(first.next_offsets))
    assert (r.applied, r.duplicates) == (len(items) - 20, 20)
    a, b = await views_checksum(pg, once.schema), await views_checksum(pg, views.schema)
    assert a.tables == b.tables and a.digest == b.digest
    seen = await pg.fetchval(f'SELECT count(*) FROM "{views.schema}".seen_events')
    assert seen == len(items)


async def test_a_small_batch_with_events_seen_before_applies_only_the_new_ones(
    pg: asyncpg.Connection, new_schema: NewSchema
) -> None:
    """A batch below ``OPTIMISTIC_MIN_IDS`` records its ids in one INSERT .. ON CONFLICT: the 10 of them an earlier
    batch applied (re-published at later offsets) are counted as duplicates, and the views are those of applying
    every event once."""
    log = generate(leads=8, campaigns=2, seed=22)
    items = as_items(log.envelopes)
    once, views = await new_schema(), await new_schema()
    await apply_all(pg, once, items, batch=len(items))
    applier = BatchApplier(views)
    first = await applier.apply(pg, items[:30], {})
    again = [Item(it.topic, it.partition, 10_000 + i, it.envelope) for i, it in enumerate(items[20:30])]
    batch = items[30:] + again
    assert len(batch) < OPTIMISTIC_MIN_IDS
    r = await applier.apply(pg, batch, dict(first.next_offsets))
    assert (r.applied, r.duplicates) == (len(items) - 30, 10)
    a, b = await views_checksum(pg, once.schema), await views_checksum(pg, views.schema)
    assert a.tables == b.tables and a.digest == b.digest
    assert await pg.fetchval(f'SELECT count(*) FROM "{views.schema}".seen_events') == len(items)


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


async def test_held_lead_rows_give_the_same_views_as_writing_every_batch(
    pg: asyncpg.Connection, new_schema: NewSchema
) -> None:
    """A rebuild's applier holds lead rows back across batches (flushed past ``hold_rows``): same views."""
    log = generate(leads=20, campaigns=3, seed=12)
    items = as_items(log.envelopes)
    # The first 30 records again at the end: duplicates across batches must not be counted twice by held rows.
    replayed = items + [Item(it.topic, it.partition, 10_000 + i, it.envelope) for i, it in enumerate(items[:30])]
    direct, held = await new_schema(), await new_schema()
    await apply_all(pg, direct, replayed, batch=25)
    applier = BatchApplier(held, hold_rows=15)
    expected: dict[tuple[str, int], int | None] = {}
    flushed_midway = False
    for i in range(0, len(replayed), 25):
        r = await applier.apply(pg, replayed[i : i + 25], expected)
        expected.update(r.next_offsets)
        if applier.held > 15:  # as a rebuild does: some lead rows are written before the final flush
            await applier.flush(pg)
        flushed_midway = flushed_midway or bool(await pg.fetchval(f'SELECT count(*) FROM "{held.schema}".lead_state'))
    assert flushed_midway
    await applier.flush(pg)
    await applier.refresh_all_summaries(pg)
    await BatchApplier(direct).refresh_all_summaries(pg)
    a, b = await views_checksum(pg, direct.schema), await views_checksum(pg, held.schema)
    assert a.tables == b.tables and a.digest == b.digest


async def test_a_rolled_back_batch_leaves_the_held_rows_as_they_were(
    pg: asyncpg.Connection, new_schema: NewSchema
) -> None:
    """A batch's patches join the held rows only once it committed: a batch that failed and is applied
    again (the core retries and splits batches) is counted once, and the views equal writing every batch."""
    log = generate(leads=5, campaigns=1, seed=13)
    items = as_items(log.envelopes)
    direct, held = await new_schema(), await new_schema()
    await apply_all(pg, direct, items, batch=20)
    applier = BatchApplier(held, hold_rows=10_000)
    expected: dict[tuple[str, int], int | None] = {}
    expected.update((await applier.apply(pg, items[:20], expected)).next_offsets)
    refuse = f'ALTER TABLE "{held.schema}".timeline ADD CONSTRAINT refuse CHECK (false) NOT VALID'
    await pg.execute(refuse)  # the next batch's transaction fails on a row, after the lead rows were reduced
    with pytest.raises(asyncpg.CheckViolationError):
        await applier.apply(pg, items[20:40], expected)
    await pg.execute(f'ALTER TABLE "{held.schema}".timeline DROP CONSTRAINT refuse')
    for i in range(20, len(items), 20):
        expected.update((await applier.apply(pg, items[i : i + 20], expected)).next_offsets)
    await applier.flush(pg)
    await applier.refresh_all_summaries(pg)
    await BatchApplier(direct).refresh_all_summaries(pg)
    a, b = await views_checksum(pg, direct.schema), await views_checksum(pg, held.schema)
    assert a.tables == b.tables and a.digest == b.digest


async def _summaries(pg: asyncpg.Connection, schema: str) -> list[asyncpg.Record]:
    return await pg.fetch(f'SELECT * FROM "{schema}".campaign_summary ORDER BY workspace_id, campaign_id')


@pytest.mark.parametrize(("seed", "batch"), [(31, 7), (32, 40), (33, 333), (34, 700)])  # 700: the COPY path
async def test_summaries_moved_by_each_batch_equal_summaries_recomputed_from_every_row(
    pg: asyncpg.Connection, new_schema: NewSchema, seed: int, batch: int
) -> None:
    """The live applier moves a campaign's summary by what the batch's leads count after it minus before it (and
    recomputes it on a campaign event): on shuffled batches with records repeated across them (lead events before
    their campaign, audiences derived from source groups, duplicates), the summaries equal those recomputed from
    every lead row at the end."""
    log = generate(leads=40, campaigns=3, seed=seed)
    envs = list(log.envelopes)
    random.Random(seed).shuffle(envs)
    items = as_items(envs)
    replayed = items + [Item(it.topic, it.partition, 10_000 + i, it.envelope) for i, it in enumerate(items[::5])]
    views = await new_schema()
    result = await apply_all(pg, views, replayed, batch=batch)
    assert result.applied == len(items) and result.duplicates == len(items[::5])
    moved = await _summaries(pg, views.schema)
    assert len(moved) == 3 and all(r["leads"] > 0 for r in moved)
    assert sum(r["invites_sent"] for r in moved) > 0 and sum(r["resolved"] for r in moved) > 0
    await BatchApplier(views).refresh_all_summaries(pg)
    assert [dict(r) for r in moved] == [dict(r) for r in await _summaries(pg, views.schema)]


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every node of an EXPLAIN (FORMAT JSON) plan that reads a table."""
    found = [(plan["Node Type"], plan["Relation Name"])] if "Relation Name" in plan else []
    for child in plan.get("Plans", ()):
        found += _scans(child)
    return found


async def test_a_summary_delta_looks_up_only_the_batchs_lead_states(
    pg: asyncpg.Connection, new_schema: NewSchema
) -> None:
    """The summaries' delta reads the lead state of each of its batch's lead rows by key: as a plain join, Postgres
    hashed the whole lead_state table for every statement while it was small (a workspace's usual size), half of
    the statement's time at 1,000 events a second. A workspace of 1,500 leads in six campaigns; the batch has ten."""
    views = await new_schema()
    s = views.schema
    await pg.execute(
        f'INSERT INTO "{s}".lead_state (workspace_id, lead_id) '
        "SELECT $1, gen_random_uuid() FROM generate_series(1, $2)",
        "ws",
        1500,
    )
    leads = [r[0] for r in await pg.fetch(f'SELECT lead_id FROM "{s}".lead_state LIMIT 10')]
    campaigns = [uuid.uuid4() for _ in range(6)]
    await pg.execute(
        f'INSERT INTO "{s}".lead_campaign (workspace_id, campaign_id, lead_id) '
        f'SELECT $1, c, l FROM unnest($2::uuid[]) c, (SELECT lead_id FROM "{s}".lead_state) l(l)',
        "ws",
        campaigns,
    )
    await pg.execute(f'ANALYZE "{s}".lead_state; ANALYZE "{s}".lead_campaign')
    sql = BatchApplier(views).sql.summary_delta
    [plan] = json.loads(await pg.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", leads, 1))
    scans = _scans(plan["Plan"])
    assert ("Index Scan", "lead_state") in scans and all(
        node in ("Index Scan", "Index Only Scan") for node, table in scans if table == "lead_state"
    ), scans

    await pg.execute(f'UPDATE "{s}".lead_state SET pipeline_rank = 2 WHERE lead_id = $1', leads[0])
    async with pg.transaction():
        await pg.execute(sql, leads, 1)
        resolved = await pg.fetch(f'SELECT resolved, leads FROM "{s}".campaign_summary')
    assert sorted((r["resolved"], r["leads"]) for r in resolved) == [(1, 10)] * 6  # what it counts, through the lookup


async def test_a_live_batch_of_lead_events_is_a_fixed_handful_of_statements(
    pg: asyncpg.Connection, new_schema: NewSchema
) -> None:
    """A live batch keeps to a fixed handful of statements, in this order, whatever the number of its events: BEGIN,
    the apply lock, the offsets' fence, the event ids, the summaries' first half, the timeline (COPY), one upsert per
    view table it writes, the summaries' second half, the change log, the offsets and COMMIT (COPY and COMMIT pass
    by asyncpg's query logger). Merging them into fewer round trips was measured and not kept (bench/results/NOTES.md,
    2026-12-05): a guard against the count growing unnoticed."""
    views = await new_schema()
    applier = BatchApplier(views, changes=True)  # as the live service's (its schema records changes)
    log = list(generate(leads=30, campaigns=2, seed=41).envelopes)

    def live(env: Envelope[Any]) -> bool:  # a lead's later events (its discovery joins source groups: rarer)
        return isinstance(env.data, LeadEvent) and not isinstance(env.data, LeadDiscovered)

    await apply_all(pg, views, as_items([env for env in log if not live(env)]), batch=500)
    later = [env for env in log if live(env)][:120]
    items = [Item(it.topic, it.partition, 10_000 + it.offset, it.envelope) for it in as_items(later)]
    plan = applier.plan(items)
    tables = [spec.table for spec in domain.SPECS if plan.writes.upserts.get(spec.table)]
    assert plan.writes.timeline and "lead_state" in tables and not plan.writes.groups and plan.writes.changes
    sql = applier.sql
    sent: list[str] = []

    def log_query(record: asyncpg.connection.LoggedQuery) -> None:
        sent.append(record.query)

    pg.add_query_logger(log_query)
    try:
        result = await applier.apply(pg, plan, {})
    finally:
        pg.remove_query_logger(log_query)
    assert result.applied == len(items)
    assert sent == [
        "BEGIN;",
        "SELECT pg_advisory_xact_lock($1)",
        sql.fence,
        sql.insert_seen,
        sql.summary_delta,
        *(sql.upserts[t] for t in tables),
        sql.summary_delta,
        sql.record_changes,
        sql.store_offsets,
    ]  # and COMMIT, which asyncpg's transaction sends past the query logger


async def test_a_rebuild_reader_loads_before_the_lock_and_undoes_the_load_when_someone_else_wrote(
    pg: asyncpg.Connection, new_schema: NewSchema
) -> None:
    """A rebuild's reader (``seen_window``: ``seen_events`` unkeyed, its ids remembered) loads a batch's ids and
    timeline rows before it takes the apply lock. When the fence then finds that another writer got ahead on a
    partition, the load is rolled back and only the records past that writer's offset are applied: every event
    once, the same views as one plain applier's."""
    log = generate(leads=8, campaigns=2, seed=23)
    items = as_items(log.envelopes)
    once, views = await new_schema(), await new_schema()
    await apply_all(pg, once, items, batch=len(items))
    for table in ("seen_events", "timeline"):  # loaded unkeyed, as a rebuild does
        await pg.execute(f'ALTER TABLE "{views.schema}".{table} DROP CONSTRAINT {table}_pkey')
    reader = BatchApplier(views, seen_window=1_000)
    sizes = Counter((it.topic, it.partition) for it in items)
    tp = max(sizes, key=lambda t: sizes[t])
    part = [it for it in items if (it.topic, it.partition) == tp]
    rest = [it for it in items if (it.topic, it.partition) != tp]
    first = await reader.apply(pg, part[:10] + rest, {})
    # Another writer applies the partition's next 10 records; the reader, which fetched from offset 10, comes with
    # records 10 to the end: the fence keeps those from 20 on.
    other = await BatchApplier(views, seen_window=1_000).apply(pg, part[10:20], dict(first.next_offsets))
    assert other.applied == 10
    r = await reader.apply(pg, part[10:], dict(first.next_offsets))
    assert (r.applied, r.duplicates, r.seeks) == (len(part) - 20, 0, {})
    a, b = await views_checksum(pg, once.schema), await views_checksum(pg, views.schema)
    assert a.tables == b.tables and a.digest == b.digest
    assert await pg.fetchval(f'SELECT count(*) FROM "{views.schema}".seen_events') == len(items)
    assert await pg.fetchval(f'SELECT count(DISTINCT event_id) FROM "{views.schema}".seen_events') == len(items)
