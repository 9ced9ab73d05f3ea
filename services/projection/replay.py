"""Replay: rebuild every view from the log into a fresh schema, and promote a rebuild atomically.

A rebuild reads the four topics without a consumer group, from offset 0 (or from the first offset at
or after a time), up to the log ends captured when it starts, through the same batch applier as the
live service; decoding applies the upcasters, so old event versions are read as current ones.

Promotion renames schemas in one transaction (``projection`` -> ``projection_retired_<time>``,
``projection_<name>`` -> ``projection``) while holding the live applier's lock, so the service,
which always reads and writes the stable name ``projection``, sees either the old views or the new
ones. The rebuild's stored offsets come along: the live consumer notices they are behind its own
position and re-reads the records produced since the rebuild started.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from leadstream_schemas import TOPICS

from services.runtime.kafka import client_security, cluster_id, create_admin
from services.runtime.migrations import upgrade
from services.runtime.settings import RuntimeSettings

from .checksum import dsn, schema_exists
from .consumer import GcPacer, plan_records
from .handlers import TP, ApplyResult, BatchApplier
from .store import CLUSTER_KEY, REPLAY_PREFIX, SCHEMA, replay_schema, views_for, write_sql

MIGRATIONS = Path(__file__).parent / "migrations"


class ReplayError(Exception):
    """A replay or promotion that cannot be done; the message says why and what to do."""


@dataclass
class ReplayProgress:
    """Where a rebuild is: records read of the total to read, events applied, elapsed time."""

    done: int
    total: int
    applied: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Records per second so far."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def remaining(self) -> int:
        """Records still to read (the replay's lag behind the log end captured at start)."""
        return max(self.total - self.done, 0)


@dataclass
class ReplayReport:
    """What a finished rebuild did."""

    schema: str
    records: int
    applied: int
    duplicates: int
    undecodable: int
    filtered: int
    seconds: float
    end_offsets: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=lambda: {"fetch": 0.0, "decode_plan": 0.0, "wait_db": 0.0})
    """Seconds spent fetching, decoding and planning (this process), and waiting for the database."""

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def topic_partitions(settings: RuntimeSettings, topics: list[str]) -> list[TopicPartition]:
    """Every partition of the given physical topics (ReplayError when one does not exist)."""
    admin = create_admin(settings, client_id="leadstream-replay")
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    out: list[TopicPartition] = []
    for d in described:
        if d.get("error_code") or not d.get("partitions"):
            raise ReplayError(f"topic {d.get('topic')!r} does not exist (run `leadstream topics apply`)")
        out.extend(TopicPartition(d["topic"], p["partition"]) for p in d["partitions"])
    return sorted(out, key=lambda tp: (tp.topic, tp.partition))


def log_consumer(settings: RuntimeSettings, max_records: int) -> AIOKafkaConsumer:
    """A consumer without a group (nothing committed, nobody else affected), for replays and exports."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="leadstream-replay",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=max_records,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **client_security(settings),
    )


SINCE_MARGIN = timedelta(hours=1)
"""How much earlier than ``--since`` reading starts, by record append time.

An event is appended after it happened, so every event whose time is at or after ``since`` was
appended at or after it; the margin covers clocks of producers that run a little ahead. Events
before ``since`` that the margin lets in are dropped by their event time.
"""


async def start_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], since: datetime | None, ends: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Where reading starts: the beginning, or the first record appended at or after ``since`` less the margin."""
    if since is None:
        return dict(await consumer.beginning_offsets(tps))
    ms = max(int((since - SINCE_MARGIN).timestamp() * 1000), 0)
    found = await consumer.offsets_for_times(dict.fromkeys(tps, ms))
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}


async def rebuild(
    settings: RuntimeSettings,
    name: str,
    *,
    since: datetime | None = None,
    campaign: UUID | None = None,
    replace: bool = False,
    batch_records: int = 10_000,
    on_progress: Callable[[ReplayProgress], None] | None = None,
) -> ReplayReport:
    """Rebuild every view into ``projection_<name>`` from the log (see the module docstring)."""
    schema = replay_schema(name)
    conn = await asyncpg.connect(dsn(settings.database_url))
    # A rebuild makes almost no reference cycles; a full collection costs about a second per million records.
    pacer = GcPacer(every_records=500_000, every_s=30.0)
    pacer.start()
    try:
        if await schema_exists(conn, schema):
            if not replace:
                raise ReplayError(f"schema {schema} already exists: choose another name or pass --replace")
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await upgrade(MIGRATIONS, settings.database_url, schema)
        return await _rebuild_into(conn, settings, schema, since, campaign, batch_records, on_progress, pacer)
    finally:
        pacer.stop()
        await conn.close()


async def _rebuild_into(
    conn: asyncpg.Connection,
    settings: RuntimeSettings,
    schema: str,
    since: datetime | None,
    campaign: UUID | None,
    batch_records: int,
    on_progress: Callable[[ReplayProgress], None] | None,
    pacer: GcPacer,
) -> ReplayReport:
    views = views_for(schema)
    # Summaries are computed once at the end: nobody reads a rebuild before it is complete.
    applier = BatchApplier(views, campaign=campaign, since=since, refresh_summaries=False)
    topics = [settings.topic_name(t.name) for t in TOPICS.values()]
    tps = await topic_partitions(settings, topics)
    consumer = log_consumer(settings, batch_records)
    await consumer.start()
    started = time.monotonic()
    report = ReplayReport(schema, 0, 0, 0, 0, 0, 0.0)
    try:
        consumer.assign(tps)
        ends = dict(await consumer.end_offsets(tps))
        starts = await start_offsets(consumer, tps, since, ends)
        total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
        report.end_offsets = {f"{tp.topic}:{tp.partition}": ends[tp] for tp in tps}
        await _note(
            conn,
            schema,
            {
                CLUSTER_KEY: await cluster_id(settings),
                "status": "running",
                "mode": "since" if since else "from_beginning",
                "since": since.isoformat() if since else None,
                "campaign": str(campaign) if campaign else None,
                "topic_prefix": settings.topic_prefix,
                "started_at": datetime.now(UTC).isoformat(),
                "end_offsets": report.end_offsets,
            },
        )
        # The views start where reading starts: the fence of every batch checks against these.
        await conn.execute(
            write_sql(views).store_offsets,
            [tp.topic for tp in tps],
            [tp.partition for tp in tps],
            [starts[tp] for tp in tps],
        )
        todo = [tp for tp in tps if starts[tp] < ends[tp]]
        for tp in tps:
            if starts[tp] < ends[tp]:
                consumer.seek(tp, starts[tp])
            else:
                consumer.pause(tp)
        position: dict[TP, int | None] = {(tp.topic, tp.partition): starts[tp] for tp in tps}
        done = 0
        pending: asyncio.Task[ApplyResult] | None = None
        remaining = set(todo)
        while remaining or pending is not None:
            plan = None
            if remaining:
                t0 = time.perf_counter()
                batch = await consumer.getmany(timeout_ms=500, max_records=batch_records)
                report.phases["fetch"] += time.perf_counter() - t0
                records = []
                fetched_from: dict[TP, int | None] = {}
                for tp, recs in batch.items():
                    inside = [r for r in recs if r.offset < ends[tp]]
                    key = (tp.topic, tp.partition)
                    if inside:
                        fetched_from[key] = position[key]
                        position[key] = inside[-1].offset + 1
                        records.extend(inside)
                for tp in list(remaining):
                    # By position, not by the last record: the end may sit behind transaction markers.
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
                        consumer.pause(tp)
                if records:
                    t0 = time.perf_counter()
                    plan = await plan_records(applier, records)
                    report.phases["decode_plan"] += time.perf_counter() - t0
                    report.records += len(records)
                    report.undecodable += plan.undecodable
                    report.filtered += plan.filtered
            if pending is not None:
                t0 = time.perf_counter()
                result = await pending
                report.phases["wait_db"] += time.perf_counter() - t0
                pending = None
                if result.seeks:
                    raise ReplayError(f"schema {schema} was written by someone else during the rebuild")
                report.applied += result.applied
                report.duplicates += result.duplicates
                pacer.tick(result.applied + result.duplicates)
                if on_progress is not None:
                    on_progress(ReplayProgress(done, total, report.applied, time.monotonic() - started))
            if plan is not None:
                done = report.records
                pending = asyncio.create_task(applier.apply(conn, plan, fetched_from))
        await applier.refresh_all_summaries(conn)
        report.seconds = time.monotonic() - started
        if on_progress is not None:
            on_progress(ReplayProgress(report.records, total, report.applied, report.seconds))
        await _note(
            conn,
            schema,
            {
                "status": "complete",
                "finished_at": datetime.now(UTC).isoformat(),
                "records": report.records,
                "applied": report.applied,
                "undecodable": report.undecodable,
            },
        )
        return report
    finally:
        await consumer.stop()


async def _note(conn: asyncpg.Connection, schema: str, values: dict[str, Any]) -> None:
    await conn.executemany(
        f'INSERT INTO "{schema}".replay_info (key, value) VALUES ($1, $2::jsonb) '
        f"ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        [(k, json.dumps(v)) for k, v in values.items()],
    )


async def replay_info(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """What a replay recorded about itself in its schema (empty for a schema no replay built)."""
    rows = await conn.fetch(f'SELECT key, value FROM "{schema}".replay_info')
    return {r["key"]: json.loads(r["value"]) for r in rows}


@dataclass
class Promotion:
    """The outcome of a promotion: which schema is live now and where the previous views went."""

    promoted: str
    retired: str | None


async def promote(settings: RuntimeSettings, name: str, *, force: bool = False) -> Promotion:
    """Make the rebuild ``name`` the live views, atomically (see the module docstring)."""
    schema = replay_schema(name)
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        if not await schema_exists(conn, schema):
            raise ReplayError(f"no rebuild named {name!r} (schema {schema} does not exist)")
        info = await replay_info(conn, schema)
        if info.get("status") != "complete" and not force:
            raise ReplayError(f"rebuild {name!r} is not complete (status {info.get('status')!r}); pass --force")
        partial = info.get("mode") != "from_beginning" or info.get("campaign")
        if partial and not force:
            raise ReplayError(
                f"rebuild {name!r} holds only part of the log (since={info.get('since')}, "
                f"campaign={info.get('campaign')}); promoting it would hide earlier events. Pass --force to do it "
                "anyway"
            )
        if info.get("topic_prefix", settings.topic_prefix) != settings.topic_prefix:
            raise ReplayError(f"rebuild {name!r} was read from topics prefixed {info.get('topic_prefix')!r}")
        retired = None
        async with conn.transaction():
            # Wait for (and block) the live applier's transaction, so the swap falls between two batches.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", write_sql(views_for(SCHEMA)).lock_id)
            await conn.execute("SELECT pg_advisory_xact_lock($1)", write_sql(views_for(schema)).lock_id)
            if await schema_exists(conn, SCHEMA):
                retired = f"{REPLAY_PREFIX}retired_{datetime.now(UTC):%Y%m%d%H%M%S%f}"
                await conn.execute(f'ALTER SCHEMA "{SCHEMA}" RENAME TO "{retired}"')
            await conn.execute(f'ALTER SCHEMA "{schema}" RENAME TO "{SCHEMA}"')
            await _note(
                conn, SCHEMA, {"status": "promoted", "promoted_at": datetime.now(UTC).isoformat(), "retired": retired}
            )
        return Promotion(SCHEMA, retired)
    finally:
        await conn.close()


async def drop(settings: RuntimeSettings, name: str) -> str:
    """Drop the rebuild (or retired views) ``projection_<name>``; the live schema cannot be dropped this way."""
    schema = replay_schema(name)
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        if not await schema_exists(conn, schema):
            raise ReplayError(f"schema {schema} does not exist")
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        return schema
    finally:
        await conn.close()


async def list_schemas(settings: RuntimeSettings) -> list[dict[str, Any]]:
    """The live views and every rebuild or retired schema, with what their replay recorded."""
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        names = [
            r["nspname"]
            for r in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname = $1 OR nspname LIKE $2 ORDER BY nspname",
                SCHEMA,
                REPLAY_PREFIX.replace("_", "\\_") + "%",
            )
        ]
        out = []
        for n in names:
            has_info = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'replay_info')", n
            )
            if not has_info:
                continue
            info = await replay_info(conn, n)
            leads = await conn.fetchval(f'SELECT count(*) FROM "{n}".lead_state')
            out.append({"schema": n, "live": n == SCHEMA, "leads": leads, **info})
        return out
    finally:
        await conn.close()
