"""A rebuild loads ``seen_events`` without its key and deduplicates in memory; the key, added back first at the
end, proves that no event was applied twice, and when it cannot be added the rebuild reads the log again with
the key. On the real broker and database.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest

from services.projection import replay
from services.projection.checksum import dsn, views_checksum
from services.projection.handlers import BatchApplier
from services.projection.replay import rebuild
from services.projection.workload import generate
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all

AGAIN = "reading again with seen_events' key"


async def _primary_key(conn: asyncpg.Connection, schema: str, table: str) -> str | None:
    return await conn.fetchval(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = $1 AND t.relname = $2 AND c.contype = 'p'",
        schema,
        table,
    )


async def test_duplicates_a_reader_remembers_and_ones_it_forgot_both_count_once(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = isolated.settings()
    log = generate(leads=30, campaigns=3, seed=11).envelopes
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    # The first 25 events again, after everything else on their partitions (a relay re-publishing after a crash).
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log[:25])

    # Remembered: the reader's window holds the whole log, so the duplicates are skipped as they come.
    caplog.set_level(logging.WARNING, logger=replay.__name__)
    remembered = await rebuild(settings, "remembered", workers=1, batch_records=50)
    assert not [r for r in caplog.records if AGAIN in r.getMessage()]

    # Forgotten: a window of 20 ids has long dropped the originals when their duplicates come. The load applies them
    # again, the key refuses the table, and the rebuild reads the log again with the key.
    monkeypatch.setattr(replay, "SEEN_WINDOW", 20)
    forgotten = await rebuild(settings, "forgotten", workers=1, batch_records=50)
    assert [r for r in caplog.records if AGAIN in r.getMessage()]

    for report in (remembered, forgotten):
        assert report.records == len(log) + 25
        assert (report.applied, report.duplicates) == (len(log), 25)
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        digests = {s: (await views_checksum(conn, f"projection_{s}")).digest for s in ("remembered", "forgotten")}
        assert digests["remembered"] == digests["forgotten"]
        for schema in ("projection_remembered", "projection_forgotten"):
            assert await _primary_key(conn, schema, "seen_events") == "PRIMARY KEY (event_id)"
            assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".seen_events') == len(log)
    finally:
        await conn.close()


async def test_the_keys_are_built_once_every_batch_is_in_while_the_held_rows_are_written(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = isolated.settings()
    log = generate(leads=20, campaigns=2, seed=13).envelopes
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    schema = "projection_overlap"
    at_start: dict[str, int] = {}
    restore = replay.restore_keys
    flush = BatchApplier.flush
    held_written: list[bool] = []  # one entry per write of the held rows, True once it returned
    written_when_keys_began: list[bool] = []

    async def writing(self: BatchApplier, conn: Any) -> None:
        held_written.append(False)
        await flush(self, conn)
        held_written[-1] = True

    async def counting(conn: asyncpg.Connection, keys: list[replay.DeferredKey]) -> None:
        # Read before anything here awaits: the held rows' write and this build run side by side, so a count of
        # lead_state taken a query or two later could already see that write commit (it did, once, in CI).
        written_when_keys_began.append(any(held_written))
        for table in ("timeline", "seen_events"):
            at_start[table] = await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}')
        await restore(conn, keys)

    monkeypatch.setattr(replay, "restore_keys", counting)
    monkeypatch.setattr(BatchApplier, "flush", writing)
    report = await rebuild(settings, "overlap", workers=1, batch_records=50)

    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        final = {
            t: await conn.fetchval(f'SELECT count(*) FROM "{schema}".{t}')
            for t in ("timeline", "seen_events", "lead_state")
        }
        # Every batch was in (the tables the keys are built on are complete) ...
        assert at_start["seen_events"] == final["seen_events"] == report.applied
        assert at_start["timeline"] == final["timeline"] > 0
        # ... and the lead rows held back were not written yet: the build ran beside their write, not after it.
        assert written_when_keys_began == [False] and held_written and all(held_written)
        assert final["lead_state"] > 0
        for table in ("timeline", "seen_events"):
            assert await _primary_key(conn, schema, table) is not None
        # Adding back keys that are back already (a rebuild failing while it built them) leaves them as they are.
        keys = [
            replay.DeferredKey(schema, "timeline", name, definition)
            for name, definition in await conn.fetch(
                "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = "
                "c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = $1 AND "
                "t.relname = 'timeline' AND c.contype = 'p'",
                schema,
            )
        ]
        assert len(keys) == 1
        await restore(conn, keys)
        assert await _primary_key(conn, schema, "timeline") == keys[0].definition
    finally:
        await conn.close()
