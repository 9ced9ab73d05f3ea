"""The one consumer-group loop: poll, hand the records to a mode, commit what is done; a rebalance
listener; pausing a partition and reading a record again.

A mode (:class:`~services.runtime.consumer.EventConsumer`, per record; :class:`.batch.BatchConsumer`,
batches with offsets in a checkpoint) implements :meth:`GroupConsumer.process` and the hooks.

- **Generations.** Every assigned partition carries a number that changes when it is assigned,
  revoked or repositioned (:meth:`GroupConsumer.rewind`); work fetched under an older number is not
  done (:meth:`GroupConsumer.owns`).
- **Rebalances.** On revocation the partitions' numbers change first (no record not yet started is
  handled), the work in flight gets ``consumer_revoke_grace_s`` to finish its transaction and is
  then cancelled (rolled back, without effect), and the offsets of what is done are committed before
  the partitions go.
- **Pauses.** :meth:`GroupConsumer.rewind` with ``pause_s`` seeks a partition back to a record and
  pauses it; it resumes after the wait while the other partitions flow.
- **Poll gaps.** A mode stops starting records ``consumer_max_poll_interval_ms / 2`` after a poll
  (:attr:`GroupConsumer.deadline`) and rewinds to the first one not done, so no gap between two
  polls reaches ``max.poll.interval.ms``.
- **Lag** (``leadstream_consumer_lag``, per partition this member owns) is measured on a timer of its own
  every ``consumer_lag_interval_s``: the log ends are asked of the broker whatever the loop is doing (a
  record retried for minutes, a paused partition, nothing to read), so the gauge rises while the member
  is stuck. Before the member has done a record of a partition, its group's committed offset counts as
  done. A partition that goes loses its series (its next owner reports it).
- **Missing topics.** A member that subscribes while a topic does not exist (its topics Job or KafkaTopic lags
  the Deployment, the topic is being recreated) joins with nothing of it assigned, and aiokafka's group leader
  rebalances only when a metadata answer shows the topic's partitions: by itself not before
  ``consumer_metadata_max_age_ms``. A watch beside the loop looks every :data:`TOPIC_CHECK_S` whether the
  subscribed topics are in the member's metadata; while one is not, it asks for metadata again on a backoff
  (:data:`TOPIC_RECHECK_INITIAL_S` to :data:`TOPIC_RECHECK_MAX_S`), so the group rebalances within seconds of the
  topic's creation. Meanwhile the member logs it once (and again when the set changes), ``/readyz`` names the
  topics and ``leadstream_consumer_topics_missing`` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from prometheus_client import Gauge

from ..debug import log_task_stacks
from ..faults import Backoff, cancel_and_wait, sleep_unless_stopped
from ..kafka import absent_topics, create_consumer, refresh_metadata
from ..metrics import CONSUMER_LAG, CONSUMER_TOPICS_MISSING
from ..settings import RuntimeSettings
from .deadletter import DeadLetterPublisher
from .policy import Retry

log = logging.getLogger(__name__)

Batch = dict[TopicPartition, list[ConsumerRecord[Any, Any]]]

TOPIC_CHECK_S = 1.0
"""How often a member looks whether its subscribed topics are in its cluster metadata (a lookup, no request)."""
TOPIC_RECHECK_INITIAL_S = 0.5
TOPIC_RECHECK_MAX_S = 5.0
"""While a subscribed topic is missing, metadata is asked for again after these waits (doubling, with jitter): a
request per member every few seconds at most, and the topic's partitions are consumed within seconds of its
creation."""
METADATA_ANSWER_S = 10.0
"""How long the watch waits for a metadata answer (an unreachable broker: it asks again after the backoff)."""


class GroupConsumer(ConsumerRebalanceListener):
    """A member of a consumer group on ``topics`` and its rebalance listener; subclasses say what is done
    with the records."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        topics: Sequence[str],
        dead_letters: DeadLetterPublisher,
        retry: Retry,
        max_records: int,
        resync_interval_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.group_id = dead_letters.group_id
        self.dead_letters = dead_letters
        dead_letters.count_from_zero(self.topics)
        self.retry = retry
        self.max_records = max_records
        self.resync_interval_s = resync_interval_s
        self.consumer: AIOKafkaConsumer | None = None
        self.working = False
        """True while the Kafka consumer runs (``retry.working``: while records are not failing transiently)."""
        self.blocked: str | None = None
        self.assigned_once = False
        self.ready_max_lag: int | None = None
        """Records behind the log end past which the member reports not ready (None: lag does not count)."""
        self.ready_stall_s: float | None = None
        """Seconds a partition may stay behind without its done offset moving before the member reports it
        stalled (None: not watched). A lag under ``ready_max_lag`` that never shrinks is a stall too."""
        self.revocations = 0
        """Rebalances that took partitions from this member (counted for tests and logs)."""
        self.deadline = 0.0
        """When (monotonic) the mode stops starting records of the current poll."""
        self._gen: dict[TopicPartition, int] = {}
        self._position: dict[TopicPartition, int | None] = {}  # assigned: where the next fetch starts
        self._consumed: dict[TopicPartition, int] = {}  # next offset after the work done
        self._committed: dict[TopicPartition, int] = {}  # the group's offset when assigned (lag before any work)
        self._uncommitted: dict[TopicPartition, int] = {}
        self._end: dict[TopicPartition, int] = {}
        self._paused: dict[TopicPartition, float] = {}  # resume at (monotonic)
        self._behind: dict[TopicPartition, tuple[int | None, float]] = {}  # behind: done offset, since (monotonic)
        # The lag gauge's child per partition: set after every poll, and finding a child by its labels costs three
        # times the set (24 partitions: ~60 of ~80 us a poll; the projection polls ~150 times a second at 200/s).
        self._lag_gauges: dict[TopicPartition, Gauge] = {}
        self._stall_logged = False
        self.missing_topics: tuple[str, ...] = ()
        """Subscribed topics the cluster did not have at the member's last metadata answer (the topic watch)."""
        self._missing_gauge = CONSUMER_TOPICS_MISSING.labels(settings.service_name, self.group_id)
        self._missing_gauge.set(0)
        self._assignment_error: BaseException | None = None
        self._last_idle = 0.0
        self._next_commit = 0.0
        self.commit_interval_s = settings.consumer_commit_interval_s
        """The poll loop commits what is done to Kafka at most this often (0: after every poll); revocation and
        stopping commit everything done. For a per-record consumer the committed offsets are its position, and a
        crash re-reads up to this much, which it finds done (``processed_events``); a batch consumer's position
        is its stored offsets, and Kafka's only feed the lag tooling."""

    @property
    def healthy(self) -> bool:
        """Consuming, and neither retrying a transient failure nor failing to dead-letter."""
        return self.working and self.retry.working and self.dead_letters.healthy

    # -- what a mode implements -------------------------------------------------------------------

    async def open(self) -> str | None:
        """Before each (re)start: connect what the mode needs; a reason to refuse consuming, or None."""
        return None

    async def close(self) -> None:
        """After the loop: finish or abandon what is in flight and release what :meth:`open` took."""

    async def assigned(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """Partitions were assigned (a mode with its own offsets seeks to them here)."""

    async def process(self, batch: Batch, stop: asyncio.Event) -> None:
        """Do the polled records (possibly empty), calling :meth:`done` as offsets become durable."""
        raise NotImplementedError

    async def idle(self, consumer: AIOKafkaConsumer) -> None:
        """Nothing arrived for a while (called at most every ``resync_interval_s``)."""

    def poll_timeout_ms(self) -> int:
        """How long the next poll may wait for records."""
        return 200

    async def poll(self, consumer: AIOKafkaConsumer) -> Batch:
        """The next poll's records, waited for at most :meth:`poll_timeout_ms` (a mode with records waiting on other
        work may end the wait sooner: :meth:`BatchConsumer.poll`)."""
        return await consumer.getmany(timeout_ms=self.poll_timeout_ms(), max_records=self.poll_max_records())

    def poll_max_records(self) -> int:
        """How many records the next poll may return (a mode holding records back asks for fewer)."""
        return self.max_records

    def in_flight(self) -> set[asyncio.Task[Any]]:
        """The tasks a revocation waits for (and cancels after the grace period)."""
        return set()

    # -- what the core gives a mode ---------------------------------------------------------------

    def generation(self, tp: TopicPartition) -> int:
        """The partition's current generation (see the module docstring)."""
        return self._gen.get(tp, 0)

    def owns(self, tp: TopicPartition, generation: int) -> bool:
        """Whether work fetched under ``generation`` may still be done."""
        return self._gen.get(tp, -1) == generation

    def done(self, tp: TopicPartition, offset: int) -> None:
        """Everything before ``offset`` is durable: commit it with the next commit."""
        self._consumed[tp] = offset
        self._uncommitted[tp] = offset

    def rewind(self, tp: TopicPartition, offset: int, pause_s: float = 0.0) -> None:
        """Read the partition again from ``offset`` (after ``pause_s`` seconds); fetched work of it is void."""
        consumer = self.consumer
        if consumer is None or tp not in consumer.assignment():
            return
        self._gen[tp] = self._gen.get(tp, 0) + 1
        consumer.seek(tp, offset)
        self._position[tp] = self._consumed[tp] = offset
        if pause_s > 0:
            consumer.pause(tp)
            self._paused[tp] = time.monotonic() + pause_s
            log.info("partition paused", extra={"topic": tp.topic, "partition": tp.partition, "seconds": pause_s})

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the Kafka consumer is restarted (with backoff) when it fails."""
        backoff = Backoff(self.settings.consumer_backoff_initial_s, self.settings.consumer_backoff_max_s)
        while not stop.is_set():
            consumer = create_consumer(self.settings, group_id=self.group_id, max_poll_records=self.max_records)
            try:
                self.blocked = await self.open()
                if self.blocked:
                    log.error("consumer refuses to consume", extra={"reason": self.blocked})
                    await stop.wait()
                    return
                await consumer.start()
                self.consumer = consumer
                consumer.subscribe(self.topics, listener=self)
                self.working = True
                backoff.reset()
                lag_timer = asyncio.create_task(self._measure_lag(consumer, stop), name=f"lag-{self.group_id}")
                watch = asyncio.create_task(self._watch_topics(consumer, stop), name=f"topics-{self.group_id}")
                try:
                    await self._poll(consumer, stop)
                finally:
                    await cancel_and_wait([lag_timer, watch])  # one cancel may not end it (Python 3.11's wait_for)
            except Exception as exc:
                self.working = False
                log.warning("consumer failed; restarting", extra={"error": repr(exc), "group": self.group_id})
                await backoff.wait(stop)
            finally:
                with contextlib.suppress(Exception):
                    await self.close()
                await self._commit()  # what is done, before the partitions go
                self.consumer = None
                with contextlib.suppress(Exception):
                    await consumer.stop()
                self._forget(list(self._gen))

    async def _poll(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._assignment_error is not None:
                error, self._assignment_error = self._assignment_error, None
                raise RuntimeError("assigned partitions could not be positioned") from error
            self._resume_due(consumer)
            batch = await self.poll(consumer)
            self.deadline = time.monotonic() + self.settings.consumer_max_poll_interval_ms / 2000
            await self.process(batch, stop)
            if time.monotonic() >= self._next_commit:
                await self._commit()
                self._next_commit = time.monotonic() + self.commit_interval_s
            if not batch and time.monotonic() - self._last_idle >= self.resync_interval_s:
                self._last_idle = time.monotonic()
                await self._refresh_ends(consumer)
                await self.idle(consumer)
            assigned = consumer.assignment()  # highwater() of a partition no longer assigned raises
            for tp in self._position:
                hw = consumer.highwater(tp) if tp in assigned else None
                if hw is not None:
                    self._saw_end(tp, hw)
            self._publish_lag()

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        for tp, until in list(self._paused.items()):
            if until <= now:
                del self._paused[tp]
                if tp in consumer.assignment():
                    consumer.resume(tp)

    async def _commit(self, only: Sequence[TopicPartition] | None = None) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in self._uncommitted.items() if tp in assigned and (only is None or tp in only)}
        for tp in offsets:
            del self._uncommitted[tp]
        if offsets:
            try:
                await consumer.commit(offsets)
            except Exception as exc:  # the next owner re-reads those records and finds them done
                log.warning("offset commit failed", extra={"error": repr(exc), "group": self.group_id})

    async def _refresh_ends(self, consumer: AIOKafkaConsumer) -> None:
        with contextlib.suppress(Exception):
            ends = await consumer.end_offsets([tp for tp in self._position if tp in consumer.assignment()])
            for tp, end in ends.items():
                if tp in self._position:
                    self._saw_end(tp, end)

    def _saw_end(self, tp: TopicPartition, end: int) -> None:
        # Log ends only grow: the highwater of a fetch made before the timer asked is older than its answer.
        self._end[tp] = max(end, self._end.get(tp, end))

    async def _measure_lag(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """The lag timer (module docstring): runs beside the poll loop until ``stop`` or the loop ends."""
        interval = self.settings.consumer_lag_interval_s
        while not await sleep_unless_stopped(stop, interval):
            try:
                await asyncio.wait_for(self._refresh_ends(consumer), timeout=max(interval, 5.0))
                await asyncio.wait_for(self._committed_offsets(consumer), timeout=max(interval, 5.0))
            except Exception as exc:  # a rebalance or an unreachable broker: measured again next time
                log.debug("lag not measured", extra={"error": repr(exc), "group": self.group_id})
            self._publish_lag()

    async def _watch_topics(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """The topic watch (module docstring): runs beside the poll loop until ``stop`` or the loop ends.

        It asks for metadata itself rather than relying on a short ``metadata_max_age_ms`` alone: the common case,
        a deploy whose topics come a little after the services, then costs seconds, and a member whose topics are
        all there sends no request for it (the periodic refresh stays at a minute: a request per member)."""
        backoff = Backoff(TOPIC_RECHECK_INITIAL_S, TOPIC_RECHECK_MAX_S)
        while True:
            if absent_topics(consumer, self.topics):
                # Believed only after a fresh answer: the metadata in hand may predate the topic's creation. The
                # answer is what makes the group's leader rebalance once the topic has partitions.
                try:
                    await asyncio.wait_for(refresh_metadata(consumer), timeout=METADATA_ANSWER_S)
                except Exception as exc:  # an unreachable broker: the loop reports that; asked again after the wait
                    log.debug("metadata not refreshed", extra={"error": repr(exc), "group": self.group_id})
            missing = absent_topics(consumer, self.topics)
            self._note_missing(tuple(missing))
            if missing:
                delay = backoff.next_delay()
            else:
                backoff.reset()
                delay = TOPIC_CHECK_S
            if await sleep_unless_stopped(stop, delay):
                return

    def _note_missing(self, missing: tuple[str, ...]) -> None:
        """Log a change in the missing topics (once per change, not per check) and publish them."""
        if missing != self.missing_topics:
            if missing:
                log.warning(
                    "consumer subscribed to topics the cluster does not have: nothing of them is assigned until "
                    "they exist (`leadstream topics apply` creates them)",
                    extra={"topics": ",".join(missing), "group": self.group_id},
                )
            else:
                log.info(
                    "subscribed topics found in the cluster: the group rebalances to assign them",
                    extra={"topics": ",".join(self.missing_topics), "group": self.group_id},
                )
        self.missing_topics = missing
        self._missing_gauge.set(len(missing))

    async def _committed_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """Where the group stands on partitions this member has done nothing of yet (the beginning when the
        group never committed there: consumers start from the earliest offset)."""
        todo = [tp for tp in self._position if tp not in self._consumed and tp not in self._committed]
        if not todo:
            return
        found = {tp: await consumer.committed(tp) for tp in todo}
        missing = [tp for tp, offset in found.items() if offset is None]
        beginnings = await consumer.beginning_offsets(missing) if missing else {}
        for tp, offset in found.items():
            if tp in self._position:  # still ours
                self._committed[tp] = offset if offset is not None else beginnings[tp]

    # -- rebalancing (aiokafka calls these inside a poll) ----------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Stop work on the partitions, commit what is done of them, forget them (module docstring)."""
        tps = list(revoked)
        self.revocations += bool(tps)
        for tp in tps:
            self._gen[tp] = self._gen.get(tp, 0) + 1  # nothing fetched before is started any more
        work = self.in_flight()
        if work:
            _, late = await asyncio.wait(work, timeout=self.settings.consumer_revoke_grace_s)
            if late:
                await cancel_and_wait(late)  # its transaction rolls back: abandoned without effect
                log.warning("work on revoked partitions abandoned", extra={"tasks": len(late), "group": self.group_id})
        await self._commit(tps)
        self._forget(tps)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Start the partitions' generations and let the mode position them."""
        consumer = self.consumer
        if consumer is None:
            return
        tps = list(assigned)
        for tp in tps:
            self._gen[tp] = self._gen.get(tp, 0) + 1
            self._position[tp] = None
        try:
            await self.assigned(consumer, tps)
        except Exception as exc:  # the loop restarts the consumer, which rejoins and tries again
            log.warning("positioning assigned partitions failed", extra={"error": repr(exc)})
            self._assignment_error = exc
        self.assigned_once = True

    def _forget(self, tps: Sequence[TopicPartition]) -> None:
        for tp in tps:
            states = (self._position, self._consumed, self._committed, self._uncommitted, self._end, self._paused)
            for state in (*states, self._behind):
                state.pop(tp, None)
            self._lag_gauges.pop(tp, None)
            with contextlib.suppress(KeyError):  # the next owner reports it
                CONSUMER_LAG.remove(self.settings.service_name, tp.topic, str(tp.partition))

    # -- health -----------------------------------------------------------------------------------

    def lag(self) -> dict[TopicPartition, int]:
        """Records behind the log end, per assigned partition whose end and position are known (the position:
        what this member has done, else the group's committed offset)."""
        return {
            tp: max(end - done, 0)
            for tp in self._position
            if (end := self._end.get(tp)) is not None and (done := self._done(tp)) is not None
        }

    def _done(self, tp: TopicPartition) -> int | None:
        """Where the partition's work stands: what this member has done, else the group's committed offset."""
        return self._consumed.get(tp, self._committed.get(tp))

    def _publish_lag(self) -> None:
        """Set the lag gauges, and note since when each partition that is behind has done nothing (called after
        each poll and by the lag timer, which runs also while a batch hangs)."""
        now = time.monotonic()
        healthy = self.healthy
        gauges = self._lag_gauges
        for tp, n in self.lag().items():
            gauge = gauges.get(tp)
            if gauge is None:
                gauge = gauges[tp] = CONSUMER_LAG.labels(self.settings.service_name, tp.topic, str(tp.partition))
            gauge.set(n)
            done = self._done(tp)
            if n == 0:
                self._behind.pop(tp, None)
            elif not healthy or tp not in self._behind or self._behind[tp][0] != done:
                # Time spent failing (an outage, retried) is not a stall: the clock starts once nothing fails.
                self._behind[tp] = (done, now)
        # Logged at the readiness threshold where there is one, else at the restart threshold (every consumer).
        watch = self.ready_stall_s or self.settings.consumer_stuck_restart_s
        stalled = self.stalled(watch) if watch else {}
        if stalled and not self._stall_logged:
            # Once per stall, with where every task waits: nothing else says why a healthy member stands still.
            self._stall_logged = True
            headline = (
                f"consumer stalled: {len(stalled)} partition(s) behind and not moving for {max(stalled.values()):.0f} s"
            )
            log_task_stacks(log, logging.ERROR, headline, group=self.group_id)
        elif not stalled:
            self._stall_logged = False

    def stalled(self, after_s: float) -> dict[TopicPartition, float]:
        """Partitions behind whose done offset has not moved for ``after_s`` while nothing failed (a paused one is
        waiting on purpose): seconds since it last moved."""
        now = time.monotonic()
        return {
            tp: now - since
            for tp, (_, since) in self._behind.items()
            if now - since > after_s and tp not in self._paused
        }

    def stuck(self) -> str | None:
        """Why this member should be restarted (``/healthz``), else None: a partition behind whose done offset has
        not moved for ``consumer_stuck_restart_s`` while nothing failed. Every wait the core knows of is bounded
        (attempt deadlines, backoffs, pauses), so this is a hang nobody foresaw; a restart reads again from the
        committed (or, for the projection, stored) offsets."""
        limit = self.settings.consumer_stuck_restart_s
        stalled = self.stalled(limit) if limit else {}
        if not stalled:
            return None
        worst = max(stalled, key=lambda tp: stalled[tp])
        return (
            f"stuck: {worst.topic}[{worst.partition}] behind without progress for {stalled[worst]:.0f} s while "
            f"nothing failed (restart threshold {limit:g} s)"
        )

    def not_ready(self) -> str | None:
        """None when consuming every subscribed topic (and caught up to within ``ready_max_lag`` on every partition
        when it is set), else why not (``/readyz`` shows it)."""
        if self.blocked:
            return self.blocked
        if not self.healthy:
            return "not consuming (starting, or retrying an infrastructure error)"
        if self.missing_topics:
            return (
                f"subscribed topic(s) missing from the cluster, nothing of them consumed until they exist: "
                f"{', '.join(self.missing_topics)}"
            )
        max_lag = self.ready_max_lag
        if max_lag is None:
            return None
        if not self.assigned_once:
            return "waiting for partition assignment"
        unknown = [tp for tp in self._position if tp not in self._end]
        if unknown:
            return f"lag not known yet for {len(unknown)} partition(s)"
        if self.ready_stall_s is not None and (stalled := self.stalled(self.ready_stall_s)):
            worst = max(stalled, key=lambda tp: stalled[tp])
            return (
                f"stalled: {len(stalled)} partition(s) behind and not moving (worst {worst.topic}[{worst.partition}]:"
                f" {self.lag().get(worst, 0)} records behind, no progress for {stalled[worst]:.0f} s;"
                f" threshold {self.ready_stall_s:g} s)"
            )
        behind = {tp: n for tp, n in self.lag().items() if n > max_lag}
        if behind:
            worst = max(behind, key=lambda tp: behind[tp])
            return (
                f"catching up: {sum(behind.values())} records behind on {len(behind)} partition(s) "
                f"(worst {worst.topic}[{worst.partition}]: {behind[worst]}; threshold {max_lag})"
            )
        return None
