"""Replay: rebuild every view from the log into a fresh schema, and promote a rebuild atomically.

A rebuild reads the four topics without a consumer group, from offset 0 (or from the first offset at
or after a time), up to the log ends captured when it starts, through the same batch applier as the
live service; decoding applies the upcasters, so old event versions are read as current ones.
Worker processes read disjoint shares of the partitions in parallel (:func:`_read_in_workers`), and
the lead rows are held back until a reader has read everything (``BatchApplier.hold_rows``). The keys the
load goes without (``DEFERRED_KEYS``, ``SEEN_TABLE``) are built once every reader's last batch committed, while
the readers write the rows they held back.

Promotion renames schemas in one transaction (``projection`` -> ``projection_retired_<time>``,
``projection_<name>`` -> ``projection``) while holding the live applier's lock, so the service,
which always reads and writes the stable name ``projection``, sees either the old views or the new
ones. The rebuild's stored offsets come along: the live consumer notices they are behind its own
position and re-reads the records produced since the rebuild started.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from leadstream_schemas import TOPICS
from leadstream_schemas.base import EVENT_TYPES
from leadstream_schemas.upcasting import UPCASTERS

from services.runtime.consuming.batch import ApplyResult, BatchPipeline, GcPacer
from services.runtime.consuming.deadletter import DeadLetterPublisher
from services.runtime.consuming.reader import (
    TopicMissing,
    end_offsets,
    log_consumer,
    read_ranges,
    start_offsets,
    topic_partitions,
)
from services.runtime.consuming.sightings import Sightings
from services.runtime.faults import cancel_and_wait, describe
from services.runtime.kafka import cluster_id
from services.runtime.logging import configure_logging
from services.runtime.migrations import upgrade
from services.runtime.settings import RuntimeSettings

from .checksum import dsn, schema_exists
from .consumer import ViewsCheckpoint
from .handlers import BatchApplier
from .rebuilds import POD_PLAN_KEY, replay_info, unfinished_workers
from .store import CLUSTER_KEY, REPLAY_PREFIX, SCHEMA, replay_schema, views_for, write_sql

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


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
    dead_lettered: int
    """Records that did not decode or whose rows the database refused: dead-lettered, the rest applied."""
    filtered: int
    seconds: float
    end_offsets: dict[str, int] = field(default_factory=dict)
    workers: int = 1
    """Processes that read the log."""
    phases: dict[str, float] = field(
        default_factory=lambda: {"fetch": 0.0, "decode_plan": 0.0, "wait_db": 0.0, "flush": 0.0}
    )
    """Seconds spent fetching, decoding and planning, waiting for the database and writing the rows held
    back (summed over the workers), and recomputing the campaign summaries at the end; with workers, how far apart
    the first and the last finished reading (``readers_apart``)."""
    sightings: Sightings | None = None
    """A filtered rebuild's (``campaign`` or ``since``): the events of its time window per workspace and campaign,
    so that a campaign that matched nothing can be named (None: unfiltered)."""

    def see(self, part: Sightings | None) -> None:
        """Count a reader's sightings in."""
        if part is None:
            return
        if self.sightings is None:
            self.sightings = Sightings(campaign=part.campaign)
        self.sightings.merge(part)

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    settings: RuntimeSettings,
    name: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    campaign: UUID | None = None,
    replace: bool = False,
    batch_records: int = 10_000,
    on_progress: Callable[[ReplayProgress], None] | None = None,
    workers: int | None = None,
) -> ReplayReport:
    """Rebuild every view into ``projection_<name>`` from the log (see the module docstring).

    ``until`` stops every partition at its first record appended after that moment, so the views are rebuilt as
    they stood then (:func:`~services.runtime.consuming.reader.end_offsets`).

    ``workers`` processes read disjoint sets of partitions in parallel (default :func:`default_workers`,
    never more than the partitions to read); 1 reads in this process.
    """
    schema = replay_schema(name)
    # Refused before anything is created: a request that cannot work leaves no schema to clean up.
    if since is not None and until is not None and until < since:
        raise ReplayError(f"--until {until.isoformat()} is before --since {since.isoformat()}")
    # An unfit key-encryption key (InsecureConfiguration) is refused here, not met by every reader at its first
    # batch as a failing batch.
    settings.key_wrapper()
    conn = await asyncpg.connect(dsn(settings.database_url))
    # A rebuild makes almost no reference cycles; a full collection costs about a second per million records.
    pacer = GcPacer(every_records=500_000, every_s=30.0, full_every_s=0.0)
    pacer.start()
    created = False
    try:
        if await schema_exists(conn, schema):
            if not replace:
                raise ReplayError(f"schema {schema} already exists: choose another name or pass --replace")
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await upgrade(MIGRATIONS, settings.database_url, schema)
        created = True
        args = (conn, settings, schema, since, until, campaign, batch_records, on_progress, pacer, workers)
        hold_rows, seen_window = HOLD_ROWS, SEEN_WINDOW
        while True:
            try:
                return await _rebuild_into(*args, hold_rows, seen_window)
            except HeldRowsRefused as exc:
                if not hold_rows:
                    raise
                log.warning(
                    "a row held back was refused: reading again without holding rows", extra={"error": str(exc)}
                )
                hold_rows = 0
            except DuplicateEvents as exc:
                if not seen_window:
                    raise
                log.warning(
                    "an event is on the log twice, further apart than a reader remembers or on two readers' "
                    "partitions: reading again with seen_events' key",
                    extra={"error": str(exc)},
                )
                seen_window = 0
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await upgrade(MIGRATIONS, settings.database_url, schema)
    except BaseException as exc:  # also Ctrl-C (the task is cancelled): the schema must not look like it runs on
        if created:
            await asyncio.shield(_abandon(conn, schema, exc))
        raise
    finally:
        pacer.stop()
        await conn.close()


async def _abandon(conn: asyncpg.Connection, schema: str, exc: BaseException) -> None:
    """After a rebuild failed or was interrupted: drop its schema when it never started reading (it holds nothing:
    the same name works again), else note it ``failed`` so that ``views schemas`` does not show it running.
    Best effort: the connection may be what failed."""
    with contextlib.suppress(Exception):
        if "status" not in await replay_info(conn, schema):
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            return
        why = "interrupted" if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError) else describe(exc)
        await _note(conn, schema, {"status": "failed", "error": why, "failed_at": datetime.now(UTC).isoformat()})


async def _rebuild_into(
    conn: asyncpg.Connection,
    settings: RuntimeSettings,
    schema: str,
    since: datetime | None,
    until: datetime | None,
    campaign: UUID | None,
    batch_records: int,
    on_progress: Callable[[ReplayProgress], None] | None,
    pacer: GcPacer,
    workers: int | None,
    hold_rows: int,
    seen_window: int,
) -> ReplayReport:
    consumer = log_consumer(settings, batch_records)
    report = ReplayReport(schema, 0, 0, 0, 0, 0, 0.0)
    try:
        await consumer.start()  # in the try: a broker it cannot reach still stops (closes) it
        tps, starts, ends = await begin_rebuild(conn, settings, consumer, schema, since, until, campaign)
        total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
        report.end_offsets = {tp_key(tp): ends[tp] for tp in tps}
        deferred = await defer_keys(conn, schema, (SEEN_TABLE, *DEFERRED_KEYS) if seen_window else DEFERRED_KEYS)
        keys: asyncio.Task[None] | None = None
        try:
            todo = {tp: (starts[tp], ends[tp]) for tp in tps if starts[tp] < ends[tp]}
            count = min(workers or default_workers(), len(todo)) or 1
            modules, unreachable = registry_sources()
            if count > 1 and unreachable:
                log.warning(
                    "upcasters or event types defined inside functions cannot reach worker processes: "
                    "reading in this process",
                    extra={"event_types": unreachable},
                )
                count = 1
            report.workers = count
            job = ReadJob(settings, schema, since, campaign, batch_records, todo, modules, hold_rows, seen_window)

            def all_read() -> None:
                # Every batch is in: the keys are built while the readers write the rows they held back (other
                # tables), instead of after them.
                nonlocal keys
                keys = asyncio.create_task(restore_keys(conn, deferred), name="rebuild-keys")

            if count == 1:
                started = time.monotonic()

                def progress(part: ReplayReport, settled: int) -> None:
                    pacer.tick(settled)
                    if on_progress is not None:
                        on_progress(ReplayProgress(part.records, total, part.applied, time.monotonic() - started))

                await read_partitions(consumer, await reader_checkpoint(job), job, report, progress, all_read)
            else:
                await consumer.stop()  # the workers read; this process only waits for them
                started = await _read_in_workers(job, count, report, total, on_progress, all_read)
        except BaseException:
            with contextlib.suppress(Exception):  # the views stay incomplete, but keep their keys
                if keys is not None:  # its connection is needed; what it built stays
                    await cancel_and_wait([keys])  # what it ended with is retrieved: a duplicate does not matter now
                await restore_keys(conn, deferred)
            raise
        t0 = time.perf_counter()
        try:
            await (keys if keys is not None else restore_keys(conn, deferred))
        except asyncpg.UniqueViolationError as exc:  # only seen_events' key can find a duplicate (it comes first)
            raise DuplicateEvents(describe(exc)) from exc
        report.phases["keys"] = time.perf_counter() - t0  # what is left of the build once every reader is done
        t0 = time.perf_counter()
        await BatchApplier(views_for(schema), refresh_summaries=False).refresh_all_summaries(conn)
        report.phases["summaries"] = time.perf_counter() - t0
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
                "dead_lettered": report.dead_lettered,
                "workers": count,
            },
        )
        return report
    finally:
        await consumer.stop()


def tp_key(tp: TopicPartition) -> str:
    """How a partition is named in ``replay_info`` (``topic:partition``)."""
    return f"{tp.topic}:{tp.partition}"


def parse_tp(key: str) -> TopicPartition:
    """The partition named by :func:`tp_key`."""
    topic, _, partition = key.rpartition(":")
    return TopicPartition(topic, int(partition))


async def begin_rebuild(
    conn: asyncpg.Connection,
    settings: RuntimeSettings,
    consumer: AIOKafkaConsumer,
    schema: str,
    since: datetime | None,
    until: datetime | None,
    campaign: UUID | None,
) -> tuple[list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Fix what a rebuild reads, in its (migrated, empty) schema: capture the log ends (at ``until`` when
    given) and where reading starts, note them in ``replay_info`` (status ``running``) and store the starts
    as the views' offsets, which every batch's fence checks against. Returns the partitions, starts and ends."""
    topics = [settings.topic_name(t.name) for t in TOPICS.values()]
    try:
        tps = await topic_partitions(settings, topics)
    except TopicMissing as exc:
        raise ReplayError(str(exc)) from exc
    consumer.assign(tps)
    ends = await end_offsets(consumer, tps, until)
    starts = await start_offsets(consumer, tps, since, ends)
    await _note(
        conn,
        schema,
        {
            CLUSTER_KEY: await cluster_id(settings),
            "status": "running",
            "mode": "since" if since else "from_beginning",
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "campaign": str(campaign) if campaign else None,
            "topic_prefix": settings.topic_prefix,
            "started_at": datetime.now(UTC).isoformat(),
            "end_offsets": {tp_key(tp): ends[tp] for tp in tps},
            "start_offsets": {tp_key(tp): starts[tp] for tp in tps},
        },
    )
    await conn.execute(
        write_sql(views_for(schema)).store_offsets,
        [tp.topic for tp in tps],
        [tp.partition for tp in tps],
        [starts[tp] for tp in tps],
    )
    return tps, starts, ends


DEFERRED_KEYS = ("timeline",)
"""Tables whose primary key a rebuild builds once at the end instead of row by row: the timeline gets a
row per lead event and nothing in a rebuild looks rows up by its key (events are deduplicated by
``seen_events``, so no row can come twice; when its key is deferred too, it is added back first, and proves
it). Building the index from the loaded table is one sort; keeping it up to date row by row cost Postgres
about 3 µs per event, a third of its share of a replay."""


@dataclass(frozen=True)
class DeferredKey:
    """A primary key dropped for a rebuild's load, and how to add it back."""

    schema: str
    table: str
    name: str
    definition: str


async def defer_keys(conn: asyncpg.Connection, schema: str, tables: Sequence[str] = DEFERRED_KEYS) -> list[DeferredKey]:
    """Drop the primary keys of ``tables`` in ``schema``, returned in that order (:func:`restore_keys` adds them
    back in it)."""
    rows = await conn.fetch(
        "SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = $1 AND t.relname = ANY($2::text[]) AND c.contype = 'p'",
        schema,
        list(tables),
    )
    keys = sorted((DeferredKey(schema, r[0], r[1], r[2]) for r in rows), key=lambda k: list(tables).index(k.table))
    for k in keys:
        await conn.execute(f'ALTER TABLE "{k.schema}"."{k.table}" DROP CONSTRAINT "{k.name}"')
    return keys


async def restore_keys(conn: asyncpg.Connection, keys: Sequence[DeferredKey]) -> None:
    """Add the primary keys :func:`defer_keys` dropped (one index build from the loaded rows each); those already
    back (a rebuild that failed while adding them) are left as they are."""
    present = set(
        await conn.fetchval(
            "SELECT coalesce(array_agg(c.conname::text), '{}') FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 AND c.conname = ANY($2::text[])",
            keys[0].schema if keys else "",
            [k.name for k in keys],
        )
    )
    for k in keys:
        if k.name not in present:
            await conn.execute(f'ALTER TABLE "{k.schema}"."{k.table}" ADD CONSTRAINT "{k.name}" {k.definition}')


SEEN_TABLE = "seen_events"
"""Deferred too when the readers deduplicate in memory (``BatchApplier.seen_window``): the key, added first at the
end, then proves that no event was applied twice (a duplicate the readers could not know makes it fail, and
:func:`rebuild` reads again with the key, :class:`DuplicateEvents`). A pod rebuild keeps it: its workers restart
and forget."""

SEEN_WINDOW = 250_000
"""Event ids a reader remembers per generation (two at most: about 60 MB), see ``BatchApplier.seen_window``."""


class DuplicateEvents(Exception):
    """A rebuild read with ``seen_events`` unkeyed found, when adding the key, an event applied twice: the views
    count it twice, so :func:`rebuild` reads the log again with the key (each reader then looks every id up)."""


HOLD_ROWS = 50_000
"""Lead rows a reader holds back in memory before writing them (see ``BatchApplier.hold_rows``): a few
kilobytes each, so about 150 MB per reader at most."""


class HeldRowsRefused(Exception):
    """The database refused a row held back across batches. Which record made it cannot be told any
    more, so :func:`rebuild` reads the log again without holding rows back: then every batch writes
    its own rows and the core isolates the record (its dead letter is written a second time)."""


def replay_group(settings: RuntimeSettings, schema: str) -> str:
    """The consumer group a rebuild's dead letters name (it reads without one)."""
    return f"{settings.topic_prefix}leadstream-replay.{schema}"


def registry_sources() -> tuple[tuple[str, ...], list[str]]:
    """The modules that register the upcasters and event types in force outside the contract package,
    and the type strings no worker can get.

    A worker is a fresh interpreter: it has the contract's own event types and upcasters, and gets
    others by importing the module that registers them (a spawned worker also re-runs the caller's main
    module). One defined inside a function cannot be imported: the rebuild then reads in this process,
    so that every record decodes as it would here.
    """
    modules: set[str] = set()
    unreachable: list[str] = []

    def source(type_string: str, obj: Any) -> None:
        module = getattr(obj, "__module__", "")
        if "<locals>" in getattr(obj, "__qualname__", "<locals>"):
            unreachable.append(type_string)
        elif module not in ("__main__", "__mp_main__", CONTRACT_PACKAGE) and not module.startswith(
            CONTRACT_PACKAGE + "."
        ):
            modules.add(module)

    for old_type, (_, fn) in UPCASTERS.items():
        source(old_type, fn)
    for event_type, cls in EVENT_TYPES.items():
        source(event_type, cls)
    return tuple(sorted(modules)), sorted(unreachable)


CONTRACT_PACKAGE = "leadstream_schemas"
"""Every interpreter that imports the contract has what this package registers."""


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2 CPU quota of this process's container (``<quota> <period>`` or ``max <period>``)."""


def default_workers(cpu_max: Path = CPU_MAX) -> int:
    """Worker processes a rebuild uses by default: one per CPU this process may use (the database's work
    overlaps theirs) — its CPU affinity, capped by a container's CPU quota (a pod limited to 2 CPUs on a
    64-core node gets 2, not 64)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, int(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to respect
    return max(cpus, 1)


@dataclass
class ReadJob:
    """What a reader of a rebuild needs: where to write, what to keep, and the offset range per partition."""

    settings: RuntimeSettings
    schema: str
    since: datetime | None
    campaign: UUID | None
    batch_records: int
    ranges: dict[TopicPartition, tuple[int, int]]
    """Per partition: the first offset to read and the end (exclusive) captured when the rebuild started."""
    registry_modules: tuple[str, ...] = ()
    """Modules a worker imports so that it has the upcasters and event types this process has (see
    :func:`registry_sources`)."""
    hold_rows: int = HOLD_ROWS
    """Lead rows held back before they are written (0: each batch writes its own)."""
    seen_window: int = 0
    """Event ids a reader remembers as seen (``BatchApplier.seen_window``; 0: ``seen_events``' key decides)."""

    def share(self, count: int) -> list[ReadJob]:
        """The partitions split in ``count`` jobs with about as many records each (:func:`split_partitions`)."""
        return [
            replace(self, ranges={tp: self.ranges[tp] for tp in part})
            for part in split_partitions(self.ranges, count)
            if part
        ]


def split_partitions(ranges: dict[TopicPartition, tuple[int, int]], count: int) -> list[list[TopicPartition]]:
    """``count`` shares of the partitions (some empty when there are fewer partitions) with about as many
    records each: largest partition first, each to the lightest share. Deterministic for the same ranges."""
    loads = [0] * count
    parts: list[list[TopicPartition]] = [[] for _ in range(count)]
    for tp, (first, end) in sorted(ranges.items(), key=lambda kv: (kv[1][0] - kv[1][1], kv[0].topic, kv[0].partition)):
        i = loads.index(min(loads))
        parts[i].append(tp)
        loads[i] += end - first
    return parts


async def reader_checkpoint(
    job: ReadJob, *, crash_after: int = 0, sightings: Sightings | None = None, sightings_key: str | None = None
) -> ViewsCheckpoint:
    """The views of ``job``'s schema as the checkpoint of one reader, connected (``crash_after``: see
    :class:`~.consumer.ViewsCheckpoint`). A filtered job's reader counts what its time window held (``sightings``:
    the count so far of a pod worker that resumes; ``sightings_key``: where it keeps it, see
    :class:`~.handlers.BatchApplier`)."""
    if sightings is None and (job.campaign is not None or job.since is not None):
        sightings = Sightings(campaign=str(job.campaign) if job.campaign else None)
    applier = BatchApplier(
        views_for(job.schema),
        campaign=job.campaign,
        since=job.since,
        refresh_summaries=False,
        hold_rows=job.hold_rows,
        seen_window=job.seen_window,
        sightings=sightings,
        sightings_key=sightings_key,
    )
    checkpoint = ViewsCheckpoint(applier, job.settings, crash_after=crash_after)
    await checkpoint.connect()
    return checkpoint


async def read_partitions(
    consumer: AIOKafkaConsumer,
    checkpoint: ViewsCheckpoint,
    job: ReadJob,
    report: ReplayReport,
    on_batch: Callable[[ReplayReport, int], None],
    on_read: Callable[[], None] = lambda: None,
) -> None:
    """Read ``job``'s partitions up to their ends through the core's batch pipeline (the next batch is
    fetched and planned while the previous one commits; a record the database refuses is dead-lettered
    and the rest applied); ``on_batch`` is called after each commit with the report so far and the
    records that batch settled (applied or found duplicate); ``on_read`` once the last batch committed, before
    the rows held back are written.

    The lead rows are held back across batches and written past ``job.hold_rows`` and at the end
    (``BatchApplier.hold_rows``), so the views are complete only when this returns. Closes ``checkpoint``.
    """
    applier = checkpoint.applier
    dead_letters = DeadLetterPublisher(job.settings, replay_group(job.settings, job.schema))
    pipeline: BatchPipeline[Any] = BatchPipeline(checkpoint, dead_letters, job.settings)

    async def flush_once() -> None:
        async with checkpoint.connection() as conn:  # a fresh one per attempt: the last one may be why it failed
            await applier.flush(conn)

    async def flush() -> None:
        t0 = time.perf_counter()
        try:
            await pipeline.retry(flush_once)
        except Exception as exc:  # a record fault: transient ones are retried
            raise HeldRowsRefused(describe(exc)) from exc
        report.phases["flush"] += time.perf_counter() - t0

    async def settle(result: ApplyResult) -> None:
        if result.seeks:
            raise ReplayError(f"schema {job.schema} was written by someone else during the rebuild")
        report.applied += result.applied
        report.duplicates += result.duplicates
        report.filtered += result.filtered
        report.dead_lettered += result.dead_lettered
        on_batch(report, result.applied + result.duplicates)
        if job.hold_rows and applier.held > job.hold_rows:
            await flush()

    try:
        consumer.assign(list(job.ranges))
        starts = {tp: first for tp, (first, _) in job.ranges.items()}
        ends = {tp: end for tp, (_, end) in job.ranges.items()}
        position: dict[TopicPartition, int] = dict(starts)
        t0 = time.perf_counter()
        async for polled in read_ranges(consumer, starts, ends, max_records=job.batch_records):
            report.phases["fetch"] += time.perf_counter() - t0
            fetched_from = {tp: position[tp] for tp in polled}
            for tp, recs in polled.items():
                position[tp] = recs[-1].offset + 1
                report.records += len(recs)
            await pipeline.feed(polled, fetched_from, settle)
            t0 = time.perf_counter()
        await pipeline.drain(settle)
        report.see(applier.sightings)
        on_read()
        await flush()
    finally:
        report.phases["decode_plan"] += pipeline.seconds["decode_plan"]
        report.phases["wait_db"] += pipeline.seconds["wait_db"]
        await dead_letters.close()
        await checkpoint.close()


# -- parallel reading -----------------------------------------------------------------------------


async def _read_in_workers(
    job: ReadJob,
    count: int,
    report: ReplayReport,
    total: int,
    on_progress: Callable[[ReplayProgress], None] | None,
    on_read: Callable[[], None],
) -> float:
    """Read ``job`` with ``count`` worker processes, each on its share of the partitions; ``on_read`` once every
    worker's last batch committed (they may still be writing the rows they held back).

    Each worker is a whole reader (its own Kafka consumer and Postgres connection) running
    :func:`read_partitions`: the apply lock orders their transactions, the fence and the offsets are
    per partition and the merges commute, so the views are the same as one reader's. The clock starts
    once every worker is connected (spawning and importing is not reading); returns that start.
    """
    ctx = multiprocessing.get_context("spawn")  # not fork: this process runs an event loop and sockets
    messages: multiprocessing.Queue[tuple[Any, ...]] = ctx.Queue()
    go = ctx.Event()
    procs = [
        ctx.Process(target=_worker_main, args=(part, i, messages, go), name=f"leadstream-replay-{i}", daemon=True)
        for i, part in enumerate(job.share(count))
    ]
    for p in procs:
        p.start()
    try:
        ready = 0
        while ready < len(procs):
            if (await _next_message(messages, procs))[0] == "ready":
                ready += 1
        go.set()
        started = time.monotonic()
        progress: dict[int, tuple[int, int]] = {}
        finished: dict[int, ReplayReport] = {}
        read: set[int] = set()
        first_read = 0.0
        while len(finished) < len(procs):
            msg = await _next_message(messages, procs)
            if msg[0] == "read":
                read.add(msg[1])
                if len(read) == 1:
                    first_read = time.perf_counter()
                if len(read) == len(procs):
                    # How long the first reader done waited for the last: what uneven shares cost the rebuild.
                    report.phases["readers_apart"] = time.perf_counter() - first_read
                    on_read()
            elif msg[0] == "progress":
                progress[msg[1]] = (msg[2], msg[3])
                if on_progress is not None:
                    done = sum(r for r, _ in progress.values())
                    applied = sum(a for _, a in progress.values())
                    on_progress(ReplayProgress(done, total, applied, time.monotonic() - started))
            elif msg[0] == "done":
                finished[msg[1]] = msg[2]
        for part_report in finished.values():
            report.records += part_report.records
            report.applied += part_report.applied
            report.duplicates += part_report.duplicates
            report.dead_lettered += part_report.dead_lettered
            report.filtered += part_report.filtered
            report.see(part_report.sightings)
            for phase, seconds in part_report.phases.items():
                report.phases[phase] = report.phases.get(phase, 0.0) + seconds
        for p in procs:
            p.join()
            if p.exitcode != 0:  # it said it was done, then failed: nothing to trust
                raise ReplayError(f"replay worker {p.name} died (exit code {p.exitcode})")
        return started
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()


async def _next_message(
    messages: multiprocessing.Queue[tuple[Any, ...]], procs: Sequence[multiprocessing.process.BaseProcess]
) -> tuple[Any, ...]:
    """The next message of any worker; ReplayError when one failed or died without saying why."""
    while True:
        try:
            msg = await asyncio.to_thread(messages.get, True, 0.5)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise ReplayError(f"replay worker {dead[0].name} died (exit code {dead[0].exitcode})") from None
            continue
        if msg[0] == "refused":
            raise HeldRowsRefused(msg[2])
        if msg[0] == "error":
            raise ReplayError(f"replay worker {msg[1]} failed: {msg[2]}")
        return msg


def _worker_main(job: ReadJob, index: int, messages: multiprocessing.Queue[tuple[Any, ...]], go: Any) -> None:
    """A worker process: connect, say ready, wait for the start, read its partitions, report."""
    try:
        asyncio.run(_worker(job, index, messages, go))
    except BaseException as exc:  # whatever it is, the parent must hear of it
        messages.put(
            ("refused" if isinstance(exc, HeldRowsRefused) else "error", index, f"{type(exc).__name__}: {exc}")
        )
        raise SystemExit(1) from exc
    # Its work is committed and reported, and the rebuild waits for it to exit: skip the interpreter's
    # teardown, which frees a large heap object by object (0.3 s after 100,000 records, measured).
    messages.close()
    messages.join_thread()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def _worker(job: ReadJob, index: int, messages: multiprocessing.Queue[tuple[Any, ...]], go: Any) -> None:
    # A spawned interpreter starts with no logging set up: log like the services do.
    configure_logging(f"replay-worker-{index}", job.settings.log_level, job.settings.log_json)
    for module in job.registry_modules:
        importlib.import_module(module)  # registers its upcasters and event types here too
    checkpoint = await reader_checkpoint(job)
    consumer = log_consumer(job.settings, job.batch_records)
    pacer = GcPacer(every_records=500_000, every_s=30.0, full_every_s=0.0)
    try:
        await consumer.start()
        pacer.start()  # its full collection (~0.1 s of imports) before the clock starts, as the baseline's would be
        messages.put(("ready", index))
        await asyncio.to_thread(go.wait)
        report = ReplayReport(job.schema, 0, 0, 0, 0, 0, 0.0)

        def on_batch(r: ReplayReport, settled: int) -> None:
            pacer.tick(settled)
            messages.put(("progress", index, r.records, r.applied))

        await read_partitions(consumer, checkpoint, job, report, on_batch, lambda: messages.put(("read", index)))
        messages.put(("done", index, report))
    finally:
        # No pacer.stop(): the process ends right after (os._exit), and the rebuild waits for it; stopping would
        # run a full collection of its whole heap (the rows it held, every module) for nothing.
        await consumer.stop()
        await checkpoint.close()


async def _note(conn: asyncpg.Connection, schema: str, values: dict[str, Any]) -> None:
    await conn.executemany(
        f'INSERT INTO "{schema}".replay_info (key, value) VALUES ($1, $2::jsonb) '
        f"ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        [(k, json.dumps(v)) for k, v in values.items()],
    )


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
        waiting = unfinished_workers(info)
        if waiting:  # never on part of a rebuild that is still being read, whatever --force says
            raise ReplayError(
                f"rebuild {name!r} is read by {info[POD_PLAN_KEY]['workers']} workers and worker(s) "
                f"{', '.join(map(str, waiting))} have not finished: it can be promoted once every worker has"
            )
        if info.get("status") != "complete" and not force:
            raise ReplayError(f"rebuild {name!r} is not complete (status {info.get('status')!r}); pass --force")
        partial = info.get("mode") != "from_beginning" or info.get("campaign") or info.get("until")
        if partial and not force:
            raise ReplayError(
                f"rebuild {name!r} holds only part of the log (since={info.get('since')}, "
                f"until={info.get('until')}, campaign={info.get('campaign')}); promoting it would hide events. "
                "Pass --force to do it anyway"
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
