"""A rebuild read by several worker processes, on the real broker and database.

- the views equal a one-reader rebuild's exactly (checksum), with duplicates and a poison record in the log;
- a worker that dies fails the rebuild with a message, leaves no process behind, and the half-built
  schema cannot be promoted.
"""

from __future__ import annotations

import multiprocessing
import os
import signal

import asyncpg
import pytest
from leadstream_schemas import encode

from services.projection.checksum import dsn, views_checksum
from services.projection.replay import ReplayError, ReplayProgress, promote, rebuild, replay_info
from services.projection.workload import generate
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.support.kafka import produce


def replay_workers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("leadstream-replay")]


async def test_parallel_rebuild_equals_a_single_reader_rebuild(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    settings = isolated.settings()
    log = generate(leads=40, campaigns=4, seed=5).envelopes
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    # The same events again (a producer retry or a relay crash re-publishes them) and one record that is not JSON.
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log[:25])
    key, _, headers = encode(log[-1])
    await produce(settings.kafka_bootstrap_servers, settings.topic_name(log[-1].topic), [(key, b"{not json", headers)])

    one = await rebuild(settings, "one", workers=1, batch_records=100)
    three = await rebuild(settings, "three", workers=3, batch_records=100)

    for report in (one, three):
        assert report.records == len(log) + 25 + 1
        assert (report.applied, report.duplicates, report.undecodable) == (len(log), 25, 1)
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        assert (await views_checksum(conn, "projection_three")).digest == (
            await views_checksum(conn, "projection_one")
        ).digest
        assert (await replay_info(conn, "projection_three"))["workers"] == 3
        assert (await replay_info(conn, "projection_one"))["workers"] == 1
    finally:
        await conn.close()
    assert replay_workers() == []


async def test_a_worker_that_dies_fails_the_rebuild_and_it_cannot_be_promoted(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    settings = isolated.settings()
    log = generate(leads=60, campaigns=3, seed=6).envelopes
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    killed: list[int] = []

    def kill_one_worker(progress: ReplayProgress) -> None:
        if not killed and (alive := replay_workers()):
            assert alive[0].pid is not None
            os.kill(alive[0].pid, signal.SIGKILL)
            killed.append(alive[0].pid)

    with pytest.raises(ReplayError, match=r"replay worker leadstream-replay-\d died \(exit code -9\)"):
        await rebuild(settings, "broken", workers=2, batch_records=20, on_progress=kill_one_worker)
    assert killed, "no worker was running when the first batch committed"
    assert replay_workers() == []
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        assert (await replay_info(conn, "projection_broken"))["status"] == "running"
    finally:
        await conn.close()
    with pytest.raises(ReplayError, match="is not complete"):
        await promote(settings, "broken")
