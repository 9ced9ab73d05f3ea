"""A rebuild read by independent workers: the pods of a Kubernetes Indexed Job, or processes on several machines.

:func:`~.replay.rebuild` splits the partitions across worker processes of one machine and waits for them.
Here the rebuild outlives any one process:

1. :func:`start_pod_rebuild` (``leadstream replay start``) creates the schema and fixes, in its
   ``replay_info``, what the rebuild reads: the end offsets captured now, where reading starts, the number
   of workers N and each worker's share of the partitions (``pod_plan``). Several callers may race to
   start the same rebuild (every pod of the Job does, as an init container): a lock lets one create it, the
   others find the same plan (``if_absent``).
2. :func:`run_pod_worker` (``leadstream replay worker --rebuild NAME --index I``) reads share I into the
   schema through the same batch pipeline as every reader. Each batch's rows and its partitions' next
   offsets commit in one transaction, so a worker that dies and is started again resumes from the
   offsets stored with the views: nothing is read twice, nothing is lost. (Unlike a one-machine
   rebuild, it holds no lead rows back across batches: held rows would be lost with the process while
   their offsets are stored.)
3. The worker that finishes last, under the schema's apply lock, adds the timeline's key back, recomputes
   the campaign summaries and marks the rebuild ``complete``, in one transaction: exactly one worker does,
   and only when all N have noted that they are done. With ``promote_when_done`` it then promotes the
   rebuild. :func:`~.replay.promote` refuses a pod rebuild with an unfinished worker, even with ``force``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import TopicPartition

from services.runtime.consuming.batch import GcPacer
from services.runtime.consuming.reader import log_consumer
from services.runtime.consuming.sightings import Sightings
from services.runtime.migrations import upgrade
from services.runtime.settings import RuntimeSettings

from .checksum import dsn, schema_exists
from .handlers import BatchApplier
from .rebuilds import POD_PLAN_KEY, replay_info, unfinished_workers, worker_key
from .replay import (
    MIGRATIONS,
    DeferredKey,
    Promotion,
    ReadJob,
    ReplayError,
    ReplayProgress,
    ReplayReport,
    _note,
    begin_rebuild,
    defer_keys,
    parse_tp,
    promote,
    read_partitions,
    reader_checkpoint,
    restore_keys,
    split_partitions,
    tp_key,
)
from .store import SCHEMA, replay_schema, views_for, write_sql


@dataclass(frozen=True)
class PodPlan:
    """What a pod rebuild reads, fixed when it starts (``replay_info['pod_plan']``)."""

    name: str
    workers: int
    shares: list[list[str]]
    """Per worker index, its partitions (``topic:partition``); a share may be empty."""
    batch_records: int
    promote_when_done: bool
    deferred_keys: list[dict[str, str]] = field(default_factory=list)
    """The primary keys dropped for the load (:class:`~.replay.DeferredKey`), added back by the last worker."""

    @classmethod
    def of(cls, info: dict[str, Any]) -> PodPlan | None:
        """The plan noted in a schema's ``replay_info`` (None for a rebuild that is not a pod rebuild)."""
        plan = info.get(POD_PLAN_KEY)
        return None if plan is None else cls(**plan)


def _start_lock(schema: str) -> int:
    """The session lock that serialises the starts of one rebuild (a bigint key apart from the apply locks)."""
    return zlib.crc32(f"leadstream-replay-start:{schema}".encode())


async def _promoted_plan(conn: asyncpg.Connection, name: str) -> PodPlan | None:
    """The plan of the pod rebuild ``name`` when it is the live views already (it was promoted), else None."""
    if not await schema_exists(conn, SCHEMA):
        return None
    info = await replay_info(conn, SCHEMA)
    plan = PodPlan.of(info)
    return plan if plan is not None and plan.name == name and info.get("status") == "promoted" else None


async def start_pod_rebuild(
    settings: RuntimeSettings,
    name: str,
    *,
    workers: int,
    since: datetime | None = None,
    until: datetime | None = None,
    campaign: UUID | None = None,
    batch_records: int = 10_000,
    promote_when_done: bool = False,
    replace: bool = False,
    if_absent: bool = False,
) -> PodPlan:
    """Create the rebuild ``name`` for ``workers`` independent workers (see the module docstring).

    ``if_absent``: when the rebuild exists already (started by another pod, or promoted already), return its
    plan instead of failing; its number of workers must be ``workers``.
    """
    if workers < 1:
        raise ReplayError("a rebuild needs at least one worker")
    if since is not None and until is not None and until < since:
        raise ReplayError(f"--until {until.isoformat()} is before --since {since.isoformat()}")
    schema = replay_schema(name)
    settings.key_wrapper()  # an unfit key (InsecureConfiguration) is refused before anything is created or read
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _start_lock(schema))
        if await schema_exists(conn, schema):
            info = await replay_info(conn, schema)
            plan = PodPlan.of(info)
            if if_absent and plan is not None:
                if plan.workers != workers:
                    raise ReplayError(f"rebuild {name!r} was started for {plan.workers} workers, not {workers}")
                return plan
            # A start that died half-way (the schema without its plan) is started again; anything else is kept.
            if not replace and not (if_absent and info.get("pod") and plan is None):
                raise ReplayError(f"schema {schema} already exists: choose another name or pass --replace")
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        elif if_absent and (promoted := await _promoted_plan(conn, name)) is not None:
            return promoted
        await upgrade(MIGRATIONS, settings.database_url, schema)
        try:
            await _note(conn, schema, {"pod": True})
            consumer = log_consumer(settings, batch_records)
            try:
                await consumer.start()  # in the try: a broker it cannot reach still stops (closes) it
                tps, starts, ends = await begin_rebuild(conn, settings, consumer, schema, since, until, campaign)
            finally:
                await consumer.stop()
            deferred = await defer_keys(conn, schema)
            todo = {tp: (starts[tp], ends[tp]) for tp in tps if starts[tp] < ends[tp]}
            plan = PodPlan(
                name=name,
                workers=workers,
                shares=[[tp_key(tp) for tp in share] for share in split_partitions(todo, workers)],
                batch_records=batch_records,
                promote_when_done=promote_when_done,
                deferred_keys=[asdict(k) for k in deferred],
            )
            await _note(conn, schema, {POD_PLAN_KEY: asdict(plan), "workers": workers})
        except BaseException:
            # No worker can have read anything without the plan: the schema holds nothing, and leaving it would
            # make the same `replay start` refuse the name (as a one-machine rebuild that fails before reading).
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.execute(f'DROP SCHEMA "{schema}" CASCADE'))
            raise
        return plan
    finally:
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock($1)", _start_lock(schema))
        await conn.close()


@dataclass
class WorkerOutcome:
    """What one run of a pod worker did."""

    index: int
    report: ReplayReport
    """The records this run read and applied (a resumed worker: only those since its restart)."""
    status: str
    """The rebuild's status afterwards: ``running`` (other workers unfinished), ``complete`` or ``promoted``."""
    finalized: bool = False
    """This run was the last worker: it completed the rebuild."""
    promotion: Promotion | None = None
    sightings: Sightings | None = None
    """When this run completed a filtered rebuild: what the whole rebuild's time window held, every worker's
    count merged (:mod:`services.runtime.consuming.sightings`); None otherwise."""
    window: tuple[datetime | None, datetime | None] = (None, None)
    """The rebuild's ``since`` and ``until``."""


async def run_pod_worker(
    settings: RuntimeSettings,
    name: str,
    index: int,
    *,
    on_progress: Callable[[ReplayProgress], None] | None = None,
    crash_after: int = 0,
) -> WorkerOutcome:
    """Read worker ``index``'s share of the pod rebuild ``name`` from where it stopped; the last one to
    finish completes (and, if planned, promotes) the rebuild. ``crash_after``: fault injection (tests)."""
    schema = replay_schema(name)
    settings.key_wrapper()  # an unfit key (InsecureConfiguration) is refused before anything is created or read
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        if not await schema_exists(conn, schema):
            if await _promoted_plan(conn, name) is not None:  # a pod started again after the promotion
                return WorkerOutcome(index, ReplayReport(SCHEMA, 0, 0, 0, 0, 0, 0.0), "promoted")
            raise ReplayError(f"no rebuild named {name!r}: start it first (leadstream replay start --into {name})")
        info = await replay_info(conn, schema)
        plan = PodPlan.of(info)
        if plan is None:
            raise ReplayError(f"rebuild {name!r} was not started for workers (leadstream replay start)")
        if not 0 <= index < plan.workers:
            raise ReplayError(f"worker index {index} is outside the rebuild's 0..{plan.workers - 1}")
        if info.get("topic_prefix", settings.topic_prefix) != settings.topic_prefix:
            raise ReplayError(f"rebuild {name!r} reads topics prefixed {info.get('topic_prefix')!r}")
        report = ReplayReport(schema, 0, 0, 0, 0, 0, 0.0, workers=plan.workers)
        began = datetime.now(UTC)
        if (info.get(worker_key(index)) or {}).get("status") != "done":
            began = await _read_share(settings, conn, info, plan, index, report, on_progress, crash_after)
        status, finalized, sightings = await _finish(conn, schema, plan, index, report, began)
        window = tuple(datetime.fromisoformat(info[k]) if info.get(k) else None for k in ("since", "until"))
        outcome = WorkerOutcome(index, report, status, finalized, sightings=sightings, window=window)  # type: ignore[arg-type]
        if status == "complete" and plan.promote_when_done:
            outcome.promotion = await promote(settings, name)
            outcome.status = "promoted"
        return outcome
    finally:
        await conn.close()


async def _read_share(
    settings: RuntimeSettings,
    conn: asyncpg.Connection,
    info: dict[str, Any],
    plan: PodPlan,
    index: int,
    report: ReplayReport,
    on_progress: Callable[[ReplayProgress], None] | None,
    crash_after: int,
) -> datetime:
    """Read the worker's partitions from the offsets stored with the views up to the ends of the plan;
    returns when reading began (connected: start-up is not reading)."""
    schema = replay_schema(plan.name)
    share = [parse_tp(k) for k in plan.shares[index]]
    stored = {
        TopicPartition(r["topic"], r["partition"]): r["next_offset"]
        for r in await conn.fetch(f'SELECT topic, partition, next_offset FROM "{schema}".offsets')
    }
    ends = info["end_offsets"]
    ranges = {tp: (stored[tp], ends[tp_key(tp)]) for tp in share if stored[tp] < ends[tp_key(tp)]}
    total = sum(end - first for first, end in ranges.values())
    since = datetime.fromisoformat(info["since"]) if info.get("since") else None
    campaign = UUID(info["campaign"]) if info.get("campaign") else None
    # hold_rows=0: every batch writes its own rows with its offsets, so a restart resumes exactly.
    job = ReadJob(settings, schema, since, campaign, plan.batch_records, ranges, hold_rows=0)
    # A filtered rebuild's count of what it read is kept with each batch's offsets too: a worker that restarts goes
    # on from the count of what it had committed, so the rebuild's count is of the whole window.
    counted = info.get(sightings_key(index))
    checkpoint = await reader_checkpoint(
        job,
        crash_after=crash_after,
        sightings=Sightings.from_json(counted) if counted is not None else None,
        sightings_key=sightings_key(index) if since is not None or campaign is not None else None,
    )
    consumer = log_consumer(settings, plan.batch_records)
    pacer = GcPacer(every_records=500_000, every_s=30.0, full_every_s=0.0)
    started = time.monotonic()

    def progress(part: ReplayReport, settled: int) -> None:
        pacer.tick(settled)
        if on_progress is not None:
            on_progress(ReplayProgress(part.records, total, part.applied, time.monotonic() - started))

    try:
        await consumer.start()
        began, started = datetime.now(UTC), time.monotonic()
        pacer.start()
        await read_partitions(consumer, checkpoint, job, report, progress)
    finally:
        pacer.stop()
        await consumer.stop()
        await checkpoint.close()
    report.seconds = time.monotonic() - started
    return began


def sightings_key(index: int) -> str:
    """The ``replay_info`` key where worker ``index`` of a filtered pod rebuild keeps its count of what it read,
    written with each batch (:class:`~services.runtime.consuming.sightings.Sightings`)."""
    return f"{worker_key(index)}.sightings"


async def _finish(
    conn: asyncpg.Connection, schema: str, plan: PodPlan, index: int, report: ReplayReport, began: datetime
) -> tuple[str, bool, Sightings | None]:
    """Note the worker done; the last one completes the rebuild, in the same transaction under the apply lock.

    Returns the rebuild's status, whether this call completed it and, when it did a filtered rebuild's, every
    worker's count of what it read, merged.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", write_sql(views_for(schema)).lock_id)
        info = await replay_info(conn, schema)
        if (info.get(worker_key(index)) or {}).get("status") != "done":
            note = {
                "status": "done",
                "read_started_at": began.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
                "records": report.records,
                "applied": report.applied,
                "duplicates": report.duplicates,
                "dead_lettered": report.dead_lettered,
                "seconds": round(report.seconds, 3),
            }
            await _note(conn, schema, {worker_key(index): note})
            info[worker_key(index)] = note
        if info.get("status") != "running" or unfinished_workers(info):
            return str(info.get("status")), False, None
        await restore_keys(conn, [DeferredKey(**k) for k in plan.deferred_keys])
        await BatchApplier(views_for(schema), refresh_summaries=False).refresh_all_summaries(conn)
        notes = [info[worker_key(i)] for i in range(plan.workers)]
        await _note(
            conn,
            schema,
            {
                "status": "complete",
                "finished_at": datetime.now(UTC).isoformat(),
                # Exact whatever restarts happened: every record up to the ends was read, each event once.
                "records": sum(e - info["start_offsets"][k] for k, e in info["end_offsets"].items()),
                "applied": await conn.fetchval(f'SELECT count(*) FROM "{schema}".seen_events'),
                "dead_lettered": sum(n["dead_lettered"] for n in notes),
                "completed_by": index,
            },
        )
        seen: Sightings | None = None
        for i in range(plan.workers):  # a worker with an empty share, or of an unfiltered rebuild, counted nothing
            if (counted := info.get(sightings_key(i))) is not None:
                if seen is None:
                    seen = Sightings(campaign=counted.get("campaign"))
                seen.merge(Sightings.from_json(counted))
        return "complete", True, seen
