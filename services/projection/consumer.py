"""The projection's batch consumer: every contract topic, applied in batches with the offsets in Postgres.

Not the runtime's per-record loop: Kafka's committed offsets play no part in correctness. Each batch
and its offsets commit in one transaction (:mod:`.handlers`); on partition assignment the consumer
seeks to the stored offsets (the beginning when there are none). Offsets are also committed to Kafka
afterwards, best effort, only so that the usual lag tooling sees the group.

One batch is applied while the next is fetched and decoded (the database and this process work at
the same time). Each partition carries a generation number that changes on every seek and
assignment, so a batch fetched before a seek is never applied after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker
from leadstream_schemas import TOPICS, DecodeError

from services.runtime.consumer import dead_letter_headers, is_infrastructure_error, may_be_infrastructure_error
from services.runtime.kafka import cluster_id, create_consumer
from services.runtime.metrics import CONSUMER_LAG, DLQ_TOTAL
from services.runtime.outbox import faststream_correlation_id

from .checksum import dsn
from .decoding import decode_record
from .handlers import TP, ApplyResult, BatchApplier, Item, Plan
from .settings import ProjectionSettings
from .store import CLUSTER_KEY, Views

log = logging.getLogger(__name__)

CHUNK = 100
"""Records decoded between two yields to the event loop (lets the transaction in flight progress)."""


class GcPacer:
    """Runs the cyclic garbage collector between batches instead of during them.

    A batch allocates hundreds of thousands of short-lived containers and creates almost no
    reference cycles; with automatic collection the collector keeps rescanning the batch in flight,
    which costs about as much as decoding it. Automatic collection is switched off while the pacer
    is active, and a full collection runs after every ``every_records`` records or ``every_s``
    seconds (whichever comes first; call :meth:`tick` after each batch and when idle), so cycles
    from any code in the process are still freed.
    """

    def __init__(self, every_records: int = 100_000, every_s: float = 5.0) -> None:
        self.every_records = every_records
        self.every_s = every_s
        self._records = 0
        self._last = time.monotonic()
        self._was_enabled = gc.isenabled()

    def start(self) -> None:
        """Collect once, move the survivors out of the collector's sight, and stop automatic collection."""
        gc.collect()
        gc.freeze()
        gc.disable()

    def tick(self, records: int = 0) -> None:
        """Count records; collect when enough records or time went by."""
        self._records += records
        now = time.monotonic()
        if self._records >= self.every_records or now - self._last >= self.every_s:
            gc.collect()
            self._records = 0
            self._last = now

    def stop(self) -> None:
        """Restore automatic collection as it was (and let the frozen objects be collected again)."""
        gc.unfreeze()
        gc.collect()
        if self._was_enabled:
            gc.enable()


def decode_records(records: Iterable[ConsumerRecord[Any, Any]]) -> list[Item]:
    """Records as items; one that does not decode carries the error (it goes to the DLQ)."""
    out: list[Item] = []
    append = out.append
    for r in records:
        try:
            # Positional: keyword arguments cost a third of an Item's construction, once per record.
            append(Item(r.topic, r.partition, r.offset, decode_record(r.value, r.headers), None, None, r))
        except DecodeError as exc:
            append(Item(r.topic, r.partition, r.offset, None, error=(exc.code, exc.message), record=r))
    return out


async def plan_records(applier: BatchApplier, records: Sequence[ConsumerRecord[Any, Any]]) -> Plan:
    """Decode and plan ``records`` in chunks, yielding to the event loop between chunks."""
    planner = applier.planner()
    for i in range(0, len(records), CHUNK):
        planner.add(decode_records(records[i : i + CHUNK]))
        await asyncio.sleep(0)
    return planner.finish()


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: ProjectionConsumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.owner.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self.owner.partitions_assigned(self.consumer, assigned)
        except Exception as exc:
            # Without the stored offsets the partitions cannot be positioned: restart the consumer
            # (it rejoins the group and tries again). The batch fence keeps even this case correct.
            log.warning("reading the stored offsets on assignment failed", extra={"error": repr(exc)})
            self.owner.assignment_failed = True


class ProjectionConsumer:
    """Consumes the four contract topics into the views of ``views`` (the live schema)."""

    def __init__(
        self,
        settings: ProjectionSettings,
        views: Views,
        broker: KafkaBroker | None,
        *,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.views = views
        self.broker = broker
        self.group_id = group_id or settings.group_id
        self.topics = [settings.topic_name(t.name) for t in TOPICS.values()]
        self.applier = BatchApplier(views)
        self.consumer: AIOKafkaConsumer | None = None
        self.pool: asyncpg.Pool | None = None
        self.healthy = False
        self.blocked: str | None = None
        self.assigned_once = False
        self.batches = 0
        self.applied = 0
        # Per partition: where the next fetched record starts, the generation (bumped on every seek or
        # assignment), what the views hold (next offset), and the log end seen last.
        self._position: dict[TP, int | None] = {}
        self._generation: dict[TP, int] = {}
        self._applied: dict[TP, int] = {}
        self._end: dict[TP, int] = {}
        self._inflight: asyncio.Task[ApplyResult] | None = None
        self._last_resync = 0.0
        self.pacer = GcPacer()
        self.assignment_failed = False

    # -- health -----------------------------------------------------------------------------------

    def lag(self) -> dict[TP, int]:
        """Records behind the log end, per assigned partition whose end is known."""
        out = {}
        for tp in self._position:
            end = self._end.get(tp)
            if end is not None:
                out[tp] = max(end - self._applied.get(tp, 0), 0)
        return out

    async def not_ready_reason(self) -> str | None:
        """None when caught up (readiness check of the service), else why not."""
        if self.blocked:
            return self.blocked
        if not self.healthy:
            return "not consuming (starting, or retrying an infrastructure error)"
        if not self.assigned_once:
            return "waiting for partition assignment"
        unknown = [tp for tp in self._position if tp not in self._end]
        if unknown:
            return f"lag not known yet for {len(unknown)} partition(s)"
        behind = {tp: n for tp, n in self.lag().items() if n > self.settings.projection_ready_max_lag}
        if behind:
            worst = max(behind, key=lambda tp: behind[tp])
            return (
                f"catching up: {sum(behind.values())} records behind on {len(behind)} partition(s) "
                f"(worst {worst[0]}[{worst[1]}]: {behind[worst]}; threshold {self.settings.projection_ready_max_lag})"
            )
        return None

    def _publish_lag(self) -> None:
        for (topic, partition), n in self.lag().items():
            CONSUMER_LAG.labels(self.settings.service_name, topic, str(partition)).set(n)

    # -- rebalancing ------------------------------------------------------------------------------

    async def partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Let the batch in flight commit, then forget the partitions."""
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._inflight), timeout=30)
        for tp in revoked:
            key = (tp.topic, tp.partition)
            self._position.pop(key, None)
            self._generation[key] = self._generation.get(key, 0) + 1

    async def partitions_assigned(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        """Seek every assigned partition to the offset stored with the views (else to its beginning)."""
        if not assigned:
            self.assigned_once = True
            return
        stored = await self._stored_offsets([(tp.topic, tp.partition) for tp in assigned])
        missing = [tp for tp in assigned if stored.get((tp.topic, tp.partition)) is None]
        beginnings = await consumer.beginning_offsets(missing) if missing else {}
        for tp in assigned:
            key = (tp.topic, tp.partition)
            offset = stored.get(key)
            if offset is None:
                offset = beginnings.get(tp, 0)
            consumer.seek(tp, offset)
            self._position[key] = offset
            self._applied[key] = offset
            self._generation[key] = self._generation.get(key, 0) + 1
        self.assigned_once = True
        log.info("partitions assigned", extra={"partitions": len(assigned), "group": self.group_id})

    async def _cluster_mismatch(self) -> str | None:
        """None when the views' stored offsets belong to the connected Kafka cluster (recorded on first use)."""
        assert self.pool is not None
        current = await cluster_id(self.settings)
        table = f'"{self.views.schema}".replay_info'
        await self.pool.execute(
            f"INSERT INTO {table} (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) DO NOTHING",
            CLUSTER_KEY,
            json.dumps(current),
        )
        stored = json.loads(await self.pool.fetchval(f"SELECT value FROM {table} WHERE key = $1", CLUSTER_KEY))
        if stored == current:
            return None
        return (
            f"the views' stored offsets belong to Kafka cluster {stored}, but {self.settings.kafka_bootstrap_servers} "
            f"is cluster {current}: rebuild the views from this cluster (leadstream replay --from-beginning "
            f"--into NAME, then --promote NAME) or point the service at the right cluster"
        )

    async def _stored_offsets(self, tps: Sequence[TP]) -> dict[TP, int | None]:
        assert self.pool is not None
        rows = await self.pool.fetch(
            f'SELECT topic, partition, next_offset FROM "{self.views.schema}".offsets '
            f"WHERE (topic, partition) IN (SELECT * FROM unnest($1::text[], $2::integer[]))",
            [t for t, _ in tps],
            [p for _, p in tps],
        )
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; restarts the Kafka consumer and the pool after failures."""
        self.pacer.start()
        try:
            await self._run(stop)
        finally:
            self.pacer.stop()

    async def _run(self, stop: asyncio.Event) -> None:
        backoff = self.settings.consumer_backoff_initial_s
        while not stop.is_set():
            consumer = create_consumer(
                self.settings, group_id=self.group_id, max_poll_records=self.settings.projection_batch_max_records
            )
            try:
                self.pool = await asyncpg.create_pool(dsn(self.settings.database_url), min_size=1, max_size=2)
                self.blocked = await self._cluster_mismatch()
                if self.blocked:
                    # Offsets of another cluster would make the consumer skip or re-read records at random:
                    # stay not-ready and apply nothing until an operator rebuilds the views from this cluster.
                    log.error("projection refuses to consume", extra={"reason": self.blocked})
                    await stop.wait()
                    return
                await consumer.start()
                self.consumer = consumer
                consumer.subscribe(self.topics, listener=_Rebalance(self, consumer))
                self.healthy = True
                backoff = self.settings.consumer_backoff_initial_s
                await self._poll(consumer, stop)
            except Exception as exc:
                self.healthy = False
                log.warning("projection consumer failed; restarting", extra={"error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.consumer_backoff_max_s)
            finally:
                await self._settle()
                self.consumer = None
                with contextlib.suppress(Exception):
                    await consumer.stop()
                if self.pool is not None:
                    with contextlib.suppress(Exception):
                        await self.pool.close()
                    self.pool = None
                self._position.clear()

    async def _settle(self) -> None:
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                await self._inflight
            self._inflight = None

    async def _poll(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        pending: tuple[asyncio.Task[ApplyResult], dict[TP, int]] | None = None
        while not stop.is_set():
            if self.assignment_failed:
                self.assignment_failed = False
                raise RuntimeError("partition assignment could not read the stored offsets")
            batch = await consumer.getmany(timeout_ms=200, max_records=self.settings.projection_batch_max_records)
            records = [r for recs in batch.values() for r in recs]
            plan = None
            fetched_from: dict[TP, int | None] = {}
            generations: dict[TP, int] = {}
            if records:
                # Where each partition's records start, as believed when they were fetched.
                for tp, recs in batch.items():
                    key = (tp.topic, tp.partition)
                    fetched_from[key] = self._position.get(key)
                    generations[key] = self._generation.get(key, 0)
                    if key in self._position:
                        self._position[key] = recs[-1].offset + 1
                plan = await plan_records(self.applier, records)
            if pending is not None:
                await self._finish(consumer, *pending)
                pending = None
            if plan is not None:
                plan = self._drop_stale(plan, generations)
                if plan.by_tp:
                    task = asyncio.create_task(self._apply(plan, fetched_from))
                    self._inflight = task
                    pending = (task, {tp: recs[-1].offset + 1 for tp, recs in plan.by_tp.items()})
            if not records:
                await self._idle(consumer)
            self._track_highwater(consumer)
            self.pacer.tick(len(records))
        if pending is not None:
            await self._finish(consumer, *pending)

    def _drop_stale(self, plan: Plan, generations: dict[TP, int]) -> Plan:
        stale = [tp for tp in plan.by_tp if self._generation.get(tp, 0) != generations.get(tp)]
        if not stale:
            return plan
        for tp in stale:
            del plan.by_tp[tp]
        keep = {id(it) for recs in plan.by_tp.values() for it in recs}
        events = {eid: it for eid, it in plan.events.items() if id(it) in keep}
        return Plan(plan.by_tp, events, self.applier.writes(events.values()), plan.duplicates, plan.filtered)

    async def _apply(self, plan: Plan, fetched_from: dict[TP, int | None]) -> ApplyResult:
        backoff = self.settings.consumer_backoff_initial_s
        while True:
            assert self.pool is not None
            try:
                async with self.pool.acquire() as conn:
                    return await self.applier.apply(conn, plan, fetched_from, self._dead_letter)
            except Exception as exc:
                if not (
                    is_infrastructure_error(exc)
                    or may_be_infrastructure_error(exc)
                    or isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError)
                ):
                    raise
                # Not the records' fault (database down, deadlock, a statement plan invalidated by a
                # promotion): the batch is retried as a whole; nothing of it was committed.
                self.healthy = False
                log.warning("applying a batch failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.consumer_backoff_max_s)

    async def _finish(self, consumer: AIOKafkaConsumer, task: asyncio.Task[ApplyResult], ends: dict[TP, int]) -> None:
        result = await task
        self._inflight = None
        self.healthy = True
        self.batches += 1
        self.applied += result.applied
        crash_at = self.settings.projection_crash_after_batches
        if crash_at and self.batches >= crash_at:
            # Fault injection (tests only): die between the database commit and the Kafka commit.
            os.kill(os.getpid(), signal.SIGKILL)
        assignment = consumer.assignment()
        commits = {}
        for key, offset in result.next_offsets.items():
            self._applied[key] = offset
            tp = TopicPartition(*key)
            if tp in assignment:
                commits[tp] = offset
        for key, offset in result.seeks.items():
            self._reposition(consumer, key, offset)
        if commits:
            with contextlib.suppress(Exception):  # informational only: the offsets that count are in Postgres
                await consumer.commit(commits)
        self._publish_lag()

    def _reposition(self, consumer: AIOKafkaConsumer, key: TP, offset: int) -> None:
        tp = TopicPartition(*key)
        self._generation[key] = self._generation.get(key, 0) + 1
        self._applied[key] = offset
        if tp in consumer.assignment():
            consumer.seek(tp, offset)
            self._position[key] = offset
            log.info(
                "re-reading a partition from the offset stored with the views",
                extra={"topic": key[0], "partition": key[1], "offset": offset},
            )

    async def _idle(self, consumer: AIOKafkaConsumer) -> None:
        """When nothing arrives: refresh the log ends and compare the stored offsets with our position.

        The stored offsets change under a running consumer when a replay is promoted (the views were
        swapped); the consumer then re-reads from where the new views stand.
        """
        now = time.monotonic()
        if now - self._last_resync < self.settings.projection_resync_interval_s or not self._position:
            return
        self._last_resync = now
        keys = list(self._position)
        tps = [TopicPartition(*k) for k in keys]
        with contextlib.suppress(Exception):
            ends = await consumer.end_offsets(tps)
            for tp, end in ends.items():
                self._end[(tp.topic, tp.partition)] = end
        stored = await self._stored_offsets(keys)
        for key in keys:
            have = stored.get(key)
            if have is not None and have != self._position.get(key):
                self._reposition(consumer, key, have)
        self._publish_lag()

    def _track_highwater(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()  # highwater() of a partition no longer assigned raises
        for key in self._position:
            tp = TopicPartition(*key)
            hw = consumer.highwater(tp) if tp in assigned else None
            if hw is not None:
                self._end[key] = hw

    async def _dead_letter(self, item: Item) -> None:
        """Publish an undecodable record to its topic's DLQ (same headers as the runtime's consumer)."""
        record = item.record
        code, message = item.error or ("invalid", "record did not decode")
        if self.broker is None or record is None:
            return
        headers = dead_letter_headers(record, code, message, group_id=self.group_id, attempts=0)
        backoff = self.settings.consumer_backoff_initial_s
        while True:
            try:
                await self.broker.publish(
                    record.value,
                    record.topic + ".dlq",
                    key=record.key,
                    headers=headers,
                    correlation_id=faststream_correlation_id(headers),
                )
                break
            except Exception as exc:
                log.warning("dead-letter publish failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.consumer_backoff_max_s)
        DLQ_TOTAL.labels(self.settings.service_name, record.topic, code).inc()
        log.error(
            "record dead-lettered",
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "code": code},
        )
