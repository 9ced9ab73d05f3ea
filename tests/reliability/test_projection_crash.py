"""SIGKILL the projection between the database commit and the Kafka offset commit, and mid-stream; restart.

The views afterwards must be exactly those of a clean rebuild from offset 0: nothing lost, nothing
applied twice, even though the log also holds records produced twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.projection.checksum import dsn, views_checksum
from services.projection.replay import rebuild
from services.projection.workload import generate
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.support.kafka import wait_for

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def projection_process(world: Any, log_path: Path, **env: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m services.projection`` on the test's database and topics (killed at the end if still up)."""
    full = world.env(dict(os.environ))
    full.update({"LEADSTREAM_HTTP_PORT": "0", "LEADSTREAM_LOG_JSON": "false", **env})
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.projection", cwd=str(ROOT), env=full, stdout=log, stderr=log
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def applied(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('projection.seen_events') IS NOT NULL")
    return int(await conn.fetchval("SELECT count(*) FROM projection.seen_events")) if exists else 0


async def test_sigkill_then_restart_gives_the_views_of_a_clean_rebuild(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    log = generate(leads=40, campaigns=3, seed=17)
    settings = isolated.settings()
    # Some records twice in the log, as a producer retry after a lost ack would leave them.
    doubled = log.envelopes + log.envelopes[::7]
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, doubled)
    unique = len(log.envelopes)
    conn = await asyncpg.connect(dsn(settings.database_url))
    logs = tmp_path / "projection.log"
    try:
        # 1. The process kills itself with SIGKILL right after its 3rd batch committed in Postgres,
        #    before it commits the offsets to Kafka.
        async with projection_process(
            isolated, logs, LEADSTREAM_PROJECTION_CRASH_AFTER_BATCHES="3", LEADSTREAM_PROJECTION_BATCH_MAX_RECORDS="25"
        ) as proc:
            code = await asyncio.wait_for(proc.wait(), timeout=120)
        assert code == -signal.SIGKILL, logs.read_text()[-3000:]
        stored = dict(
            ((r["topic"], r["partition"]), r["next_offset"])
            for r in await conn.fetch("SELECT topic, partition, next_offset FROM projection.offsets")
        )
        assert 0 < await applied(conn) < unique
        kafka = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.group_id, enable_auto_commit=False
        )
        await kafka.start()
        try:
            behind = []
            for (topic, partition), offset in stored.items():
                committed = await kafka.committed(TopicPartition(topic, partition))
                if (committed or 0) < offset:
                    behind.append((topic, partition))
        finally:
            await kafka.stop()
        assert behind, "the crash should leave Kafka's committed offsets behind the ones stored with the views"

        # 2. Restart; SIGKILL it again from outside while it works through the rest of the stream.
        async with projection_process(isolated, logs, LEADSTREAM_PROJECTION_BATCH_MAX_RECORDS="5") as proc:
            before = await applied(conn)
            await wait_for(_more_than(conn, before), timeout_s=120, what="progress after the restart")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert await applied(conn) < unique, "the stream should still be in progress when killed"

        # 3. Restart and let it finish.
        async with projection_process(isolated, logs):
            await wait_for(_at_least(conn, unique), timeout_s=180, what="every event applied")
            report = await rebuild(settings, "clean")
            assert report.applied == unique and report.duplicates == len(doubled) - unique
            live, clean = await views_checksum(conn, "projection"), await views_checksum(conn, "projection_clean")
        assert live.tables == clean.tables
        assert live.digest == clean.digest
        assert await applied(conn) == unique
    finally:
        await conn.close()


def _more_than(conn: asyncpg.Connection, n: int) -> Any:
    async def check() -> bool:
        return await applied(conn) > n

    return check


def _at_least(conn: asyncpg.Connection, n: int) -> Any:
    async def check() -> bool:
        return await applied(conn) >= n

    return check
