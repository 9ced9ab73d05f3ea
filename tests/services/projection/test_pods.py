"""A rebuild read by independent workers (``leadstream replay start`` / ``replay worker``), on the real broker
and database, each worker a separate ``leadstream`` process as a pod of an Indexed Job would be:

- two workers running at once give exactly the views of a one-reader rebuild (checksum), with duplicates and a
  poison record in the log, and the last one promotes the rebuild when asked to, once;
- promotion is refused while a worker has not finished, even with ``force``; the rebuild completes when the
  last one finishes, whichever it is;
- started through ``leadstream replay start`` (as the Job's init container runs it), a worker killed after some
  batches resumes from the offsets stored with the views: it reads only what it had not committed, and every
  event is applied once;
- the partition shares: exactly N, disjoint, covering everything, balanced by records.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from leadstream_schemas import encode

from services.projection.checksum import dsn, schema_exists, views_checksum
from services.projection.pods import PodPlan, start_pod_rebuild
from services.projection.replay import ReplayError, promote, rebuild, replay_info, split_partitions
from services.projection.workload import generate
from tests.cli.test_replay_export import cli_raw
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.support.kafka import produce


class _World:
    """The test's database and topics, with extra environment for the worker processes."""

    def __init__(self, world: Isolated, **env: str) -> None:
        self.isolated = world
        self.extra = env

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**self.isolated.env(base), **self.extra}


async def worker(world: Isolated, name: str, index: int | None, **env: str) -> tuple[int, str]:
    """Run ``leadstream replay worker`` as a process (``index`` None: from JOB_COMPLETION_INDEX in ``env``)."""
    args = ["replay", "worker", "--rebuild", name] + ([] if index is None else ["--index", str(index)])
    code, out, err = await cli_raw(_World(world, **env), *args)
    return code, out + err


async def info_of(world: Isolated, schema: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn(world.database_url))
    try:
        return await replay_info(conn, schema)
    finally:
        await conn.close()


async def digest(world: Isolated, schema: str) -> str:
    conn = await asyncpg.connect(dsn(world.database_url))
    try:
        return (await views_checksum(conn, schema)).digest
    finally:
        await conn.close()


async def test_two_worker_processes_at_once_equal_one_reader_and_the_last_promotes(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    settings = isolated.settings()
    log = generate(leads=40, campaigns=4, seed=15).envelopes
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log[:25])  # re-published
    key, _, headers = encode(log[-1])
    await produce(settings.kafka_bootstrap_servers, settings.topic_name(log[-1].topic), [(key, b"{not json", headers)])
    reference = await rebuild(settings, "one", workers=1, batch_records=100)
    assert (reference.applied, reference.duplicates, reference.dead_lettered) == (len(log), 25, 1)

    plan = await start_pod_rebuild(settings, "pods", workers=2, batch_records=50, promote_when_done=True)
    # Every pod of the Job starts it too: they join the same plan.
    assert await start_pod_rebuild(settings, "pods", workers=2, if_absent=True) == plan
    with pytest.raises(ReplayError, match="started for 2 workers, not 3"):
        await start_pod_rebuild(settings, "pods", workers=3, if_absent=True)

    (code0, out0), (code1, out1) = await asyncio.gather(
        worker(isolated, "pods", 0), worker(isolated, "pods", None, JOB_COMPLETION_INDEX="1")
    )
    assert (code0, code1) == (0, 0), out0 + out1
    outs = [out0, out1]
    assert sum("this worker completed it" in o for o in outs) == 1, outs
    assert sum("promoted projection_pods -> projection" in o for o in outs) == 1, outs

    info = await info_of(isolated, "projection")
    assert info["status"] == "promoted" and info["pod_plan"]["name"] == "pods"
    assert info["records"] == len(log) + 26 and info["applied"] == len(log)
    assert info["dead_lettered"] == 1
    assert await digest(isolated, "projection") == await digest(isolated, "projection_one")
    # A pod started again after the promotion changes nothing.
    assert await start_pod_rebuild(settings, "pods", workers=2, if_absent=True) == plan
    code, out = await worker(isolated, "pods", 0)
    assert code == 0 and "rebuild pods: promoted" in out, out


async def test_promotion_waits_for_every_worker_and_a_killed_worker_resumes(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    settings = isolated.settings()
    log = generate(leads=60, campaigns=3, seed=16).envelopes
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    await rebuild(settings, "one", workers=1)

    # Started through the command, as the Job's init container does.
    code, out, err = await cli_raw(
        isolated, "replay", "start", "--into", "crashy", "--workers", "2", "--batch", "20", "--from-beginning"
    )
    assert code == 0 and "leadstream replay worker --rebuild crashy --index 1" in out, out + err
    info = await info_of(isolated, "projection_crashy")
    plan = PodPlan.of(info)
    assert plan is not None and plan.workers == 2 and plan.batch_records == 20
    share0 = plan.shares[0]
    total0 = sum(info["end_offsets"][k] - info["start_offsets"][k] for k in share0)
    assert total0 > 60, "worker 0 needs more than the batches it commits before it is killed"

    with pytest.raises(ReplayError, match=r"worker\(s\) 0, 1 have not finished"):
        await promote(settings, "crashy", force=True)

    # Killed right after its third batch committed (SIGKILL: no cleanup of any kind).
    code, out = await worker(isolated, "crashy", 0, LEADSTREAM_PROJECTION_CRASH_AFTER_BATCHES="3")
    assert code == -9, out
    conn = await asyncpg.connect(dsn(isolated.database_url))
    try:
        stored = {
            f"{r['topic']}:{r['partition']}": r["next_offset"]
            for r in await conn.fetch('SELECT topic, partition, next_offset FROM "projection_crashy".offsets')
        }
    finally:
        await conn.close()
    committed = sum(stored[k] - info["start_offsets"][k] for k in share0)
    assert 0 < committed < total0, "the killed worker committed some batches, not all"

    code, out = await worker(isolated, "crashy", 1)
    assert code == 0 and "rebuild crashy: running" in out, out
    with pytest.raises(ReplayError, match=r"worker\(s\) 0 have not finished"):
        await promote(settings, "crashy", force=True)
    assert (await info_of(isolated, "projection_crashy"))["status"] == "running"

    code, out = await worker(isolated, "crashy", 0)  # what the Job's backoffLimit does: start it again
    assert code == 0, out
    assert f"worker 0: {total0 - committed:,} records read" in out, out
    assert "0 duplicates" in out and "this worker completed it" in out, out

    after = await info_of(isolated, "projection_crashy")
    assert after["status"] == "complete" and after["completed_by"] == 0
    assert after["applied"] == len(log)
    assert await digest(isolated, "projection_crashy") == await digest(isolated, "projection_one")
    assert (await promote(settings, "crashy")).promoted == "projection"


def test_shares_are_exactly_n_disjoint_complete_and_balanced() -> None:
    sizes = [100, 90, 80, 40, 30, 10, 5]
    ranges = {TopicPartition(f"t{i % 2}", i): (7, 7 + n) for i, n in enumerate(sizes)}
    shares = split_partitions(ranges, 3)
    assert len(shares) == 3
    flat = [tp for share in shares for tp in share]
    assert sorted(flat, key=str) == sorted(ranges, key=str) and len(flat) == len(set(flat))
    loads = sorted(sum(ranges[tp][1] - ranges[tp][0] for tp in share) for share in shares)
    assert loads == [115, 120, 120]
    assert split_partitions(ranges, 3) == shares  # the same plan for the same ranges
    assert [len(s) for s in split_partitions(dict(list(ranges.items())[:2]), 4)].count(0) == 2


def test_a_plan_round_trips_through_replay_info() -> None:
    plan = PodPlan(name="x", workers=2, shares=[["a:0"], []], batch_records=5, promote_when_done=False)
    assert PodPlan.of({"pod_plan": plan.__dict__}) == plan
    assert PodPlan.of({"status": "complete"}) is None


async def test_a_start_that_fails_before_its_plan_leaves_no_schema_and_the_name_works_again(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    """A `replay start` that fails before it wrote its plan (here: a broker it cannot reach) drops the schema it
    made: no worker can have read anything, and the schema left behind made the same command refuse the name."""
    settings = isolated.settings()
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, generate(leads=4, campaigns=1).envelopes)
    nowhere = settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    with pytest.raises(KafkaConnectionError):
        await start_pod_rebuild(nowhere, "again", workers=2)
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        assert not await schema_exists(conn, "projection_again")
    finally:
        await conn.close()
    plan = await start_pod_rebuild(settings, "again", workers=2)  # no --replace needed
    assert plan.name == "again" and plan.workers == 2 and sum(len(s) for s in plan.shares) > 0
