"""A rebuild read by several worker processes, on the real broker and database.

- the views equal a one-reader rebuild's exactly (checksum), with duplicates and a poison record in the log;
- a worker that dies fails the rebuild with a message, leaves no process behind, and the half-built
  schema cannot be promoted;
- upcasters reach the workers (their module is imported there); one defined inside a function cannot,
  so the rebuild reads in one process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest
from leadstream_schemas import LEAD, Envelope, InviteSent, LeadDiscovered, LeadEvent, LeadSource, encode
from leadstream_schemas.base import EVENT_TYPES, register
from leadstream_schemas.upcasting import UPCASTERS, upcaster

from services.projection.checksum import dsn, views_checksum
from services.projection.replay import ReplayError, ReplayProgress, default_workers, promote, rebuild, replay_info
from services.projection.workload import EPOCH, generate
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
        assert (report.applied, report.duplicates, report.dead_lettered) == (len(log), 25, 1)
    # How far apart the readers finished: measured with workers (within the rebuild's time), meaningless without.
    assert 0 <= three.phases["readers_apart"] <= three.seconds and "readers_apart" not in one.phases
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        assert (await views_checksum(conn, "projection_three")).digest == (
            await views_checksum(conn, "projection_one")
        ).digest
        assert (await replay_info(conn, "projection_three"))["workers"] == 3
        assert (await replay_info(conn, "projection_one"))["workers"] == 1
        # The timeline was loaded without its primary key; the rebuild added it back (the same key as migrated).
        for schema in ("projection_one", "projection_three"):
            key = await conn.fetchval(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
                "JOIN pg_namespace n ON n.oid = t.relnamespace "
                "WHERE n.nspname = $1 AND t.relname = 'timeline' AND c.contype = 'p'",
                schema,
            )
            assert key == "PRIMARY KEY (workspace_id, lead_id, event_time, type_rank, event_id)", key
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
        info = await replay_info(conn, "projection_broken")
        # Noted failed, with why (not left "running" as if it went on).
        assert info["status"] == "failed" and "died (exit code -9)" in info["error"]
    finally:
        await conn.close()
    with pytest.raises(ReplayError, match="is not complete"):
        await promote(settings, "broken")


async def _old_invites(settings: Any, leads: int) -> None:
    """``leads`` leads (several partitions), each with a discovery and a v0 InviteSent as an old producer wrote it."""
    from tests.services.projection.old_invites import OLD_TYPE

    envs = [
        Envelope.new(
            LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.manual, full_name=f"Old Timer {i}"),
            workspace_id="ws-up",
            source="test",
            time=EPOCH,
        )
        for i in range(leads)
    ]
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, envs)
    records = []
    for env in envs:
        current = Envelope.new(InviteSent(lead_id=env.data.lead_id, note="x"), workspace_id="ws-up", source="test")
        key, _, headers = encode(current)
        headers = [(k, OLD_TYPE.encode() if k == "ce_type" else v) for k, v in headers]
        records.append((key, json.dumps({"lead": str(env.data.lead_id), "message": "Hello from v0"}).encode(), headers))
    await produce(settings.kafka_bootstrap_servers, settings.topic_name(LEAD.name), records)


async def test_upcasters_reach_the_workers_and_local_ones_keep_the_rebuild_in_one_process(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    settings = isolated.settings()
    try:
        import tests.services.projection.old_invites as shipped

        await _old_invites(settings, leads=12)
        report = await rebuild(settings, "shipped", workers=2)
        assert report.workers == 2
        assert (report.applied, report.dead_lettered) == (24, 0)  # every v0 record read as a v1 InviteSent
        UPCASTERS.pop(shipped.OLD_TYPE)

        @upcaster(shipped.OLD_TYPE, InviteSent.event_type)
        def local_v0(payload: dict[str, Any]) -> dict[str, Any]:
            return shipped.invite_sent_v0_to_v1(payload)

        local = await rebuild(settings, "local", workers=2)
        assert local.workers == 1 and (local.applied, local.dead_lettered) == (24, 0)
    finally:
        UPCASTERS.pop("leadstream.lead.invite_sent.v0", None)
        sys.modules.pop("tests.services.projection.old_invites", None)


async def test_event_types_registered_outside_the_contract_reach_the_workers(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    """A lead event type a project registers in its own module decodes in the workers as it does here
    (its timeline rows are in the views); one registered inside a function keeps the rebuild in one process."""
    settings = isolated.settings()
    try:
        from tests.services.projection.extra_events import NOTE_TYPE, NoteAdded

        envs = [
            Envelope.new(NoteAdded(lead_id=uuid.uuid4(), text=f"note {i}"), workspace_id="ws-x", source="test")
            for i in range(12)
        ]
        await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, envs)
        shipped = await rebuild(settings, "shipped", workers=2)
        assert shipped.workers == 2 and (shipped.applied, shipped.dead_lettered) == (12, 0)
        conn = await asyncpg.connect(dsn(settings.database_url))
        try:
            types = await conn.fetch('SELECT DISTINCT event_type FROM "projection_shipped".timeline')
        finally:
            await conn.close()
        assert [r["event_type"] for r in types] == [NOTE_TYPE]
        EVENT_TYPES.pop(NOTE_TYPE)

        def local_type() -> None:
            @register
            class LocalNote(LeadEvent):
                event_type: ClassVar[str] = NOTE_TYPE
                text: str

        local_type()
        local = await rebuild(settings, "local", workers=2)
        assert local.workers == 1 and (local.applied, local.dead_lettered) == (12, 0)
    finally:
        EVENT_TYPES.pop("leadstream.lead.note_added.v1", None)
        sys.modules.pop("tests.services.projection.extra_events", None)


def test_default_workers_respect_a_container_cpu_quota(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpus = len(os.sched_getaffinity(0))
    assert default_workers(tmp_path / "absent") == cpus
    cpu_max.write_text("max 100000\n")
    assert default_workers(cpu_max) == cpus
    cpu_max.write_text("100000 100000\n")  # one CPU
    assert default_workers(cpu_max) == 1
    cpu_max.write_text("50000 100000\n")  # half a CPU: still one worker
    assert default_workers(cpu_max) == 1
    cpu_max.write_text(f"{(cpus + 3) * 100000} 100000\n")  # a quota above the CPUs it may run on
    assert default_workers(cpu_max) == cpus
