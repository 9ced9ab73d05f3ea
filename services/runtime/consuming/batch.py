"""The batch mode of the consumer core: records applied in batches through a :class:`Checkpoint`, which
stores the consumed offsets with the records' effects in one transaction (Kafka's committed offsets
play no part in correctness; they are committed afterwards, best effort, for the lag tooling).

:class:`BatchPipeline` plans the next batch while the previous one commits, retries by cause
(:mod:`.policy`), and isolates a record fault: a batch that fails on one is split in halves until the
offending record is alone; that record is retried ``consumer_max_attempts`` times, then dead-lettered
with the error, and the rest of the batch applies (a record whose decoding or planning fails is
isolated the same way). The live group consumer (:class:`BatchConsumer`:
seeks to the stored offsets on assignment) and group-less readers (a rebuild) both use it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ..faults import describe
from ..metrics import BATCH_RECORDS, BATCHES
from ..settings import RuntimeSettings
from ..telemetry import record_batch_spans, untraced_queries
from .deadletter import DeadLetterPublisher
from .loop import Batch, GroupConsumer
from .policy import Abandoned, Retry

log = logging.getLogger(__name__)

TP = tuple[str, int]
"""(physical topic, partition); a ``TopicPartition`` is one too."""
RecordKey = tuple[str, int, int]
"""(topic, partition, offset) of a record."""
DeadLetter = Callable[[ConsumerRecord[Any, Any], str, str], Awaitable[None]]
"""``dead_letter(record, code, message)``, awaited by a checkpoint inside its transaction."""
P = TypeVar("P")


@dataclass
class ApplyResult:
    """What a batch did: events applied, duplicates skipped, and where each partition stands now."""

    applied: int = 0
    duplicates: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    next_offsets: dict[TP, int] = field(default_factory=dict)
    seeks: dict[TP, int] = field(default_factory=dict)
    """Partitions whose stored offset is not where the records were fetched from: read them from there."""

    def add(self, other: ApplyResult) -> None:
        """Count ``other`` (a later part of the same batch) in."""
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.filtered += other.filtered
        self.dead_lettered += other.dead_lettered
        self.next_offsets.update(other.next_offsets)
        self.seeks.update(other.seeks)


class Checkpoint(Protocol[P]):
    """Where a batch consumer's offsets live: written with the records' effects, in one transaction."""

    async def prepare(
        self, records: Sequence[ConsumerRecord[Any, Any]], refused: Mapping[RecordKey, tuple[str, str]] | None = None
    ) -> P:
        """Decode and plan ``records`` (CPU work, outside the transaction); ``refused`` records are
        dead-lettered with their (code, message) instead of applied."""
        ...

    async def apply(self, prepared: P, expected: Mapping[TP, int | None], dead_letter: DeadLetter) -> ApplyResult:
        """Apply a prepared batch and store its offsets in one transaction, fenced by ``expected`` (where
        each partition's records were fetched from; None: unknown), dead-lettering what must be."""
        ...

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        ...


class GroupCheckpoint(Checkpoint[P], Protocol[P]):
    """A checkpoint a consumer group member keeps: connected per (re)start, asked for stored offsets."""

    async def open(self) -> str | None:
        """Connect; a reason to refuse consuming (e.g. offsets of another cluster), or None."""
        ...

    async def close(self) -> None:
        """Release what :meth:`open` took."""
        ...

    async def stored(self, tps: Sequence[TP]) -> Mapping[TP, int | None]:
        """The stored next offset of each partition (None: nothing applied from it yet)."""
        ...


Settle = Callable[[ApplyResult], Awaitable[None]]


class BatchPipeline(Generic[P]):
    """Feeds batches to a checkpoint: one commits while the next is planned (see the module docstring)."""

    def __init__(
        self,
        checkpoint: Checkpoint[P],
        dead_letters: DeadLetterPublisher,
        settings: RuntimeSettings,
        *,
        traced: bool = False,
    ) -> None:
        self.checkpoint = checkpoint
        self.dead_letters = dead_letters
        self.settings = settings
        self.stop: asyncio.Event | None = None
        """Set by a consumer that stops: its waits end early (a rebuild runs to its end)."""
        self.traced = traced
        """Record a span per applied record (the live consumer; never a rebuild: its hot path stays bare)."""
        self.pending: asyncio.Task[ApplyResult] | None = None
        self.retry = Retry(settings, checkpoint.ping, "applying a batch failed")
        """Retries by cause (its ``working`` is False while a transient failure is retried)."""
        self.seconds = {"decode_plan": 0.0, "wait_db": 0.0}
        """Time spent planning batches and waiting for their transactions."""
        self._attempts: dict[RecordKey, int] = {}

    async def feed(
        self,
        polled: Batch,
        expected: Mapping[TP, int | None],
        settle: Settle,
        fresh: Callable[[TopicPartition], bool] | None = None,
    ) -> None:
        """Plan ``polled``, settle the batch before it, then start applying this one.

        ``fresh`` (after the settle, which may reposition partitions): whether a partition's records
        may still be applied; the others are dropped.
        """
        records = [r for recs in polled.values() for r in recs]
        t0 = time.perf_counter()
        prepared = await self._prepare(records)
        self.seconds["decode_plan"] += time.perf_counter() - t0
        await self.drain(settle)
        stale = [tp for tp in polled if fresh is not None and not fresh(tp)]
        if stale and records:
            records = [r for tp, recs in polled.items() if tp not in stale for r in recs]
            prepared = await self._prepare(records)
        if records:
            self.pending = asyncio.create_task(self.apply(records, prepared, expected), name="batch-apply")

    async def _prepare(self, records: list[ConsumerRecord[Any, Any]]) -> P | None:
        try:
            return await self.checkpoint.prepare(records) if records else None
        except Exception:  # a record the planning fails on: apply() prepares again and isolates it
            return None

    async def drain(self, settle: Settle) -> None:
        """Wait for the batch in flight and settle its result (nothing when it was cancelled: rolled back)."""
        task, self.pending = self.pending, None
        if task is None:
            return
        t0 = time.perf_counter()
        await asyncio.wait([task])
        self.seconds["wait_db"] += time.perf_counter() - t0
        if not task.cancelled() and not isinstance(task.exception(), Abandoned):
            await settle(task.result())

    async def apply(
        self, records: list[ConsumerRecord[Any, Any]], prepared: P | None, expected: Mapping[TP, int | None]
    ) -> ApplyResult:
        """Apply ``records`` (in offset order per partition), isolating record faults (module docstring)."""
        started_ns = time.time_ns() if self.traced else 0
        with untraced_queries():  # no span is current here: each query's span would be an orphan, dropped
            total = await self._isolating(records, prepared, expected)
        if self.traced:
            record_batch_spans(self.settings.service_name, records, started_ns)
        return total

    async def _isolating(
        self, records: list[ConsumerRecord[Any, Any]], prepared: P | None, expected: Mapping[TP, int | None]
    ) -> ApplyResult:
        """:meth:`apply`'s loop: a part that fails on a record fault is split, a record alone retried, then refused."""
        total = ApplyResult()
        expected = dict(expected)
        todo: list[tuple[list[ConsumerRecord[Any, Any]], P | None]] = [(records, prepared)]
        while todo:
            part, plan = todo.pop()
            one = len(part) == 1
            try:
                result = await self.retry(
                    partial(self._prepare_and_apply, part, plan, expected),
                    self.settings.consumer_max_attempts if one else 1,
                    stop=self.stop,
                    deadline_s=self.settings.consumer_attempt_timeout_s,
                )
            except Abandoned:
                raise
            except Exception as exc:
                if not one:
                    half = len(part) // 2
                    todo += [(part[half:], None), (part[:half], None)]  # the first half is applied first
                    log.warning("a batch failed on a record fault; splitting it", extra={"error": repr(exc)})
                    continue
                r = part[0]
                key = (r.topic, r.partition, r.offset)
                self._attempts[key] = self.settings.consumer_max_attempts
                refused = {key: ("handler_error", describe(exc))}
                result = await self.retry(
                    partial(self._prepare_and_apply, part, None, expected, refused),
                    stop=self.stop,
                    deadline_s=self.settings.consumer_attempt_timeout_s,
                )
                self._attempts.pop(key, None)
            total.add(result)
            expected.update(result.next_offsets)
        return total

    async def _prepare_and_apply(
        self,
        records: list[ConsumerRecord[Any, Any]],
        plan: P | None,
        expected: Mapping[TP, int | None],
        refused: Mapping[RecordKey, tuple[str, str]] | None = None,
    ) -> ApplyResult:
        # Planning is under the retry too: what it reads (the key store, for personal fields) can be down, which
        # is an outage to wait out, never a record fault to split the batch over.
        if plan is None:
            plan = await self.checkpoint.prepare(records, refused)
        return await self.checkpoint.apply(plan, expected, self._dead_letter)

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], code: str, message: str) -> None:
        attempts = self._attempts.get((record.topic, record.partition, record.offset), 0)
        await self.dead_letters.publish(record, code, message, attempts=attempts, stop=self.stop)


class BatchConsumer(GroupConsumer):
    """A group member whose offsets live in a checkpoint: seeks to them on assignment (the beginning when
    there are none), applies batches through a :class:`BatchPipeline`, and when idle re-reads from the
    stored offsets if they moved under it (e.g. a rebuild was promoted in their place).

    While a batch commits, the loop keeps polling and the records it reads wait (:meth:`process`); the next
    batch starts as soon as that commit is done, with every record that arrived meanwhile. Holding the next
    poll's records back behind the commit instead (planning them while it runs) made a record at the log's
    end wait for about two commits before its own, and aiokafka fetches a partition again only once its
    buffered records are taken, so what arrived during a commit reached the batch after next (``bench/live.py``
    measured it). Once :attr:`max_records` are waiting (catching up), they are planned while the commit runs,
    as a rebuild's batches are.
    """

    def __init__(
        self,
        settings: RuntimeSettings,
        checkpoint: GroupCheckpoint[Any],
        dead_letters: DeadLetterPublisher,
        *,
        topics: Sequence[str],
        max_records: int,
        resync_interval_s: float,
    ) -> None:
        self.pipeline: BatchPipeline[Any] = BatchPipeline(checkpoint, dead_letters, settings, traced=True)
        super().__init__(
            settings,
            topics=topics,
            dead_letters=dead_letters,
            retry=self.pipeline.retry,
            max_records=max_records,
            resync_interval_s=resync_interval_s,
        )
        self.checkpoint = checkpoint
        self.pacer = GcPacer()
        self.batches = 0
        self.applied = 0
        self._waiting: Batch = {}
        """Records polled while a batch commits, by partition, in offset order: the next batch."""
        self._waiting_from: dict[TopicPartition, tuple[int | None, int]] = {}
        """Per waiting partition: where its records were fetched from, and the partition's generation then."""

    def in_flight(self) -> set[asyncio.Task[Any]]:
        return {self.pipeline.pending} if self.pipeline.pending is not None else set()

    async def run(self, stop: asyncio.Event) -> None:
        self.pipeline.stop = stop
        self.pacer.start()
        try:
            await super().run(stop)
        finally:
            self.pacer.stop()

    async def open(self) -> str | None:
        return await self.checkpoint.open()

    async def close(self) -> None:
        self._waiting, self._waiting_from = {}, {}  # read again from the stored offsets after a restart
        try:
            await self.pipeline.drain(self._settle)
        finally:
            await self.checkpoint.close()

    async def assigned(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        stored = await self.checkpoint.stored(tps)
        missing = [tp for tp in tps if stored.get(tp) is None]
        beginnings = await consumer.beginning_offsets(missing) if missing else {}
        for tp in tps:
            offset = stored.get(tp)
            offset = beginnings.get(tp, 0) if offset is None else offset
            consumer.seek(tp, offset)
            self._position[tp] = self._consumed[tp] = offset
        log.info("partitions assigned", extra={"partitions": len(tps), "group": self.group_id})

    async def poll(self, consumer: AIOKafkaConsumer) -> Batch:
        """While records wait for the commit in flight, the poll ends when that commit does (the next batch starts
        at once) or when records come, whichever is first; otherwise a plain poll.

        Polling goes on during the commit because aiokafka fetches a partition again only once its buffered records
        are taken. Ending the poll early cancels it, which loses nothing: aiokafka takes buffered records only once
        its wait for them has ended, never in a wait that is cancelled. (Polling every 10 ms instead made the next
        batch start up to 10 ms after the commit, and woke the loop a hundred times a second meanwhile.)"""
        pending = self.pipeline.pending
        if not self._waiting or pending is None or pending.done():
            return await super().poll(consumer)
        polling = asyncio.ensure_future(super().poll(consumer))
        try:
            await asyncio.wait([polling, pending], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not polling.done():
                polling.cancel()
                await asyncio.wait([polling])
        return {} if polling.cancelled() else polling.result()

    def poll_max_records(self) -> int:
        # A batch never holds more than max_records: they are fed as soon as that many wait.
        return max(1, self.max_records - sum(len(recs) for recs in self._waiting.values()))

    async def process(self, batch: Batch, stop: asyncio.Event) -> None:
        waiting = self._waiting
        for tp, recs in batch.items():
            if not recs:
                continue
            if tp in waiting and self._waiting_from[tp][1] == self.generation(tp):
                waiting[tp].extend(recs)
            else:  # new, or read again from elsewhere since (a rewind): what waited of it is void
                waiting[tp] = list(recs)
                self._waiting_from[tp] = (self._position.get(tp), self.generation(tp))
            if tp in self._position:
                self._position[tp] = recs[-1].offset + 1
        count = sum(len(recs) for recs in waiting.values())
        committing = self.pipeline.pending is not None and not self.pipeline.pending.done()
        if count and committing and count < self.max_records:
            return  # keep reading while the batch in flight commits: the next one takes all that arrived meanwhile
        self._waiting, froms, self._waiting_from = {}, self._waiting_from, {}
        expected = {tp: froms[tp][0] for tp in waiting}
        await self.pipeline.feed(waiting, expected, self._settle, lambda tp: self.generation(tp) == froms[tp][1])
        self.pacer.tick(count)

    async def _settle(self, result: ApplyResult) -> None:
        self.batches += 1
        self.applied += result.applied
        BATCHES.labels(self.settings.service_name).inc()
        BATCH_RECORDS.labels(self.settings.service_name).inc(
            result.applied + result.duplicates + result.filtered + result.dead_lettered
        )
        for key, offset in result.next_offsets.items():
            self.done(TopicPartition(*key), offset)
        for key, offset in result.seeks.items():
            log.info("re-reading a partition from its stored offset", extra={"topic": key[0], "partition": key[1]})
            self.rewind(TopicPartition(*key), offset)

    async def idle(self, consumer: AIOKafkaConsumer) -> None:
        if self._waiting or self.pipeline.pending is not None:
            return  # positions are ahead of the stored offsets until those records commit
        stored = await self.checkpoint.stored(list(self._position))
        for tp, position in list(self._position.items()):
            have = stored.get(tp)
            if have is not None and have != position:
                log.info("stored offsets moved; re-reading", extra={"topic": tp.topic, "partition": tp.partition})
                self.rewind(tp, have)


class GcPacer:
    """Runs the cyclic garbage collector between batches instead of during them.

    A batch allocates hundreds of thousands of short-lived containers and creates almost no
    reference cycles; with automatic collection the collector keeps rescanning the batch in flight,
    which costs about as much as decoding it. Automatic collection is switched off while the pacer
    is active, and a collection runs after every ``every_records`` records or ``every_s`` seconds
    (whichever comes first; call :meth:`tick` after each batch and when idle), so cycles from any
    code in the process are still freed.

    That collection is of the young generations (what survived since the last one), and a full one
    (every object the process made since :meth:`start`) runs at most every ``full_every_s``: the live
    projection's full collection stalled its event loop, and with it the API's reads, for 1-98 ms
    every 5 s (median 23 ms, load 13 on 2 cores) while freeing a few dozen objects; the young one scans
    only the few containers that outlived a batch (measured in bench/results/NOTES.md, 2026-12-05).
    Cycles that reached the old generation wait for the next full collection, ``full_every_s`` at most.
    """

    def __init__(
        self,
        every_records: int = 100_000,
        every_s: float = 5.0,
        full_every_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_records = every_records
        self.every_s = every_s
        self.full_every_s = full_every_s
        self.monotonic = monotonic
        self._records = 0
        self._last = self._last_full = monotonic()
        self._was_enabled = gc.isenabled()

    def start(self) -> None:
        """Collect once, move the survivors out of the collector's sight, and stop automatic collection."""
        gc.collect()
        gc.freeze()
        gc.disable()
        self._last = self._last_full = self.monotonic()

    def tick(self, records: int = 0) -> None:
        """Count records; collect when enough records or time went by (all generations when it is time)."""
        self._records += records
        now = self.monotonic()
        if self._records >= self.every_records or now - self._last >= self.every_s:
            if now - self._last_full >= self.full_every_s:
                gc.collect()
                self._last_full = now
            else:
                gc.collect(1)
            self._records = 0
            self._last = now

    def stop(self) -> None:
        """Restore automatic collection as it was (and let the frozen objects be collected again)."""
        gc.unfreeze()
        gc.collect()
        if self._was_enabled:
            gc.enable()
