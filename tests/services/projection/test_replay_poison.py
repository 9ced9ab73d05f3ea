"""A rebuild passes records Postgres refuses: each is dead-lettered with the error (under the rebuild's own
group) and everything else applies, whether its row is written with its batch or held back (then the
rebuild reads again without holding rows, and the batch isolates the record)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from leadstream_schemas import LEAD, TOPICS, Channel, Envelope, LeadDiscovered, LeadSource, Replied, headers_dict

from services.projection.checksum import dsn
from services.projection.replay import (
    HOLD_ROWS,
    MIGRATIONS,
    HeldRowsRefused,
    ReadJob,
    ReplayReport,
    read_partitions,
    reader_checkpoint,
    rebuild,
    replay_group,
)
from services.projection.settings import ProjectionSettings
from services.projection.store import replay_schema
from services.projection.workload import generate
from services.runtime.consuming.reader import log_consumer, topic_partitions
from services.runtime.migrations import upgrade
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import assert_refused_nul, decodes, produce_all
from tests.support.kafka import read_until


def _event(workspace: str, data: Any) -> Envelope[Any]:
    return Envelope.new(data, workspace_id=workspace, source="test")


async def _dead_letters(settings: ProjectionSettings, ids: set[str], group: str) -> dict[str, dict[str, str]]:
    """The dead letters of ``ids`` on the lead topic's DLQ written for ``group``, by event id."""
    topic = settings.topic_name(LEAD.name) + ".dlq"

    def mine(recs: list[Any]) -> dict[str, dict[str, str]]:
        hs = [headers_dict(r.headers) for r in recs]
        return {h["ce_id"]: h for h in hs if h.get("ce_id") in ids and h.get("dlq_consumer_group") == group}

    return mine(await read_until(settings.kafka_bootstrap_servers, [topic], lambda recs: mine(recs).keys() == ids))


async def test_a_rebuild_dead_letters_what_postgres_refuses_and_applies_the_rest(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = isolated.settings()
    log = generate(leads=30, campaigns=2, seed=31).envelopes
    reply_lead, found_lead = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    # A reply whose text holds a NUL (its timeline row is refused with its batch), and a discovery whose
    # location holds one (only its lead row, which a rebuild holds back, is refused); each with a
    # record of the same lead behind it.
    # Built without validation: as an older writer stored them (today's models refuse a NUL when built).
    nul_reply = _event(
        "ws-poison",
        Replied.model_construct(lead_id=reply_lead, channel=Channel.email, received_at=now, excerpt="a\x00b"),
    )
    nul_place = _event(
        "ws-poison",
        LeadDiscovered.model_construct(lead_id=found_lead, source=LeadSource.manual, full_name="Z", location="x\x00y"),
    )
    behind = [
        _event("ws-poison", Replied(lead_id=lead, channel="email", received_at=now, excerpt="after"))
        for lead in (reply_lead, found_lead)
    ]
    await produce_all(
        settings.kafka_bootstrap_servers, settings.topic_prefix, [*log[:100], nul_reply, nul_place, *behind, *log[100:]]
    )

    report = await rebuild(settings, "poisoned", batch_records=40)

    # While the contract decodes NULs, the discovery's lead row was held back and refused when written:
    # the rebuild read the log again without holding rows. (Once decoding refuses NULs, nothing is held.)
    refused_held = [r for r in caplog.records if "held back was refused" in r.getMessage()]
    assert bool(refused_held) == decodes(nul_place)

    assert report.records == len(log) + 4
    assert (report.applied, report.dead_lettered) == (len(log) + 2, 2)
    schema = replay_schema("poisoned")
    letters = await _dead_letters(settings, {str(nul_reply.id), str(nul_place.id)}, replay_group(settings, schema))
    for h in letters.values():
        assert_refused_nul(h, decodes(nul_reply))
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        for lead in (reply_lead, found_lead):
            summaries = await conn.fetch(f'SELECT summary FROM "{schema}".timeline WHERE lead_id = $1', lead)
            assert [r["summary"] for r in summaries] == ["Replied by email: after"]
        info = await conn.fetchval(f"SELECT value FROM \"{schema}\".replay_info WHERE key = 'status'")
        assert info == '"complete"'
    finally:
        await conn.close()


async def test_a_held_row_the_database_refuses_is_isolated_by_reading_without_holding(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    # Independent of any character rule: a constraint refuses one lead's row. Held back, the row fails only
    # when written, long after its batch committed: the reader says so; read again without holding rows
    # (as rebuild() then does), the record is isolated in its batch and dead-lettered.
    settings = isolated.settings()
    log = generate(leads=20, campaigns=2, seed=32).envelopes
    refused = _event("w", LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.manual, full_name="Refused"))
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, [*log[:50], refused, *log[50:]])
    topics = [settings.topic_name(t.name) for t in TOPICS.values()]

    async def read(name: str, hold_rows: int) -> ReplayReport:
        schema = replay_schema(name)
        await upgrade(MIGRATIONS, settings.database_url, schema)
        conn = await asyncpg.connect(dsn(settings.database_url))
        try:
            await conn.execute(
                f'ALTER TABLE "{schema}".lead_state ADD CONSTRAINT refuse_test '
                f"CHECK (disc_name IS DISTINCT FROM 'Refused')"
            )
        finally:
            await conn.close()
        consumer = log_consumer(settings, 30)
        await consumer.start()
        try:
            tps: list[TopicPartition] = await topic_partitions(settings, topics)
            ends = await consumer.end_offsets(tps)
            job = ReadJob(settings, schema, None, None, 30, {tp: (0, ends[tp]) for tp in tps}, (), hold_rows)
            report = ReplayReport(schema, 0, 0, 0, 0, 0, 0.0)
            await read_partitions(consumer, await reader_checkpoint(job), job, report, lambda _r, _n: None)
            return report
        finally:
            await consumer.stop()

    with pytest.raises(HeldRowsRefused, match="CheckViolationError"):
        await read("held", HOLD_ROWS)
    report = await read("unheld", 0)
    assert (report.applied, report.dead_lettered) == (len(log), 1)
    letters = await _dead_letters(settings, {str(refused.id)}, replay_group(settings, replay_schema("unheld")))
    assert "refuse_test" in letters[str(refused.id)]["dlq_error_message"]
