"""The transactional outbox and its relay.

Handlers never publish to Kafka directly: they add events to the ``outbox`` table inside the same
transaction as their state change. The relay publishes committed rows and deletes them once the broker
acknowledged them (acks=all). A crash between publish and delete re-publishes the same event ids,
which consumers deduplicate.

**Per-key order is commit order.** Consumers see one key's events in the order of the outbox ids the
relay publishes them in, so those ids must follow the order in which the transactions that wrote them
committed. An identity id is drawn at insert time: two concurrent transactions writing one key could
draw 10 and 11 and commit 11 first (the relay may even publish 11 before 10 is visible). So
:func:`add_to_outbox` first takes a transaction-level advisory lock per (topic, key) it writes, in
sorted order (two transactions that write the same keys lock them in the same order and cannot
deadlock on them). A second transaction writing the key waits at that lock until the first ends, and
draws its id only then: within a key, ids follow commit order, and a later id is never visible before
an earlier one. Transactions on other keys do not wait for each other.

**A partly failed publish never reorders a key.** A key always maps to one partition. The relay sends
each partition's rows as a chain of record batches, one batch in flight at a time: a record batch is
appended by the broker as a whole or not at all, and a batch is only sent after the one before it was
acknowledged. When a batch fails, the rest of its partition's chain is not sent this round; the rows
stay in the outbox, in order, for the next round. Other partitions go on. (Measured on the real
broker: after aiokafka's idempotent producer has a batch refused, every later batch of that partition
fails with ``OutOfOrderSequenceNumber`` until the producer is restarted, so the relay restarts its
producer after any failed batch.) Kafka transactions per round would give the same guarantee, but every
reader, downstream ones included, would then have to read ``read_committed``, aborted records stay in the
log for those that do not, and a relay that dies inside a transaction holds back every reader of its
partitions until the transaction times out; the measured throughput is the same either way.

**Woken by the commit, not by a timer.** Every transaction that writes outbox rows also sends a
``NOTIFY`` on the schema's channel (:func:`outbox_channel`, folded into the key-lock statement: no extra
round trip), which Postgres delivers when it commits to the relay's LISTEN connection, in whichever replica
holds it; the relay then runs a round at once. The writer's own process also wakes its relay directly.
Because a notification sent while the LISTEN connection is down is lost, the relay also runs a round
after each (re)connection and every ``outbox_poll_interval_s`` (1 s) regardless. What this adds to the
in-process wake-up: commits of other processes (another replica, whose relay may hold the schema's relay
lock; ``leadstream outbox retry``) are published at once instead of at the next poll, and an idle relay
reads the outbox once a second instead of 20 times (bench/live.py measures API call -> event on Kafka both
ways: ``api_to_kafka`` and ``api_to_kafka_poll_only``).

**Nothing stalls on one bad row.** A row the broker refuses for what it is (too large, invalid:
:data:`~services.runtime.faults.KAFKA_RECORD_REFUSALS`) is moved to ``outbox_parked`` with the error,
counted in ``leadstream_outbox_refused_total``, and the relay goes on. A row larger than
``outbox_max_record_bytes`` is parked without being sent. A refused batch of several rows is split:
the next round sends those rows one per batch, so the refused one is isolated and parked and the others
are published. Any other error (broker unreachable, timeouts) is retried without limit and makes the
relay not-ready; nothing is parked for it. ``leadstream outbox list|retry|drop`` lets an operator
look at parked rows, move them back to the outbox (at its end: the key's later events were published
meanwhile) or drop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition
from leadstream_schemas import Envelope, encode
from leadstream_schemas.envelope import H_FASTSTREAM_CORRELATION
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import personal
from .db import RuntimeTables
from .faults import KAFKA_RECORD_REFUSALS, Backoff, cancel_and_wait, nap, sleep_unless_stopped
from .kafka import create_producer
from .metrics import OUTBOX_BACKLOG, OUTBOX_PARKED, OUTBOX_PARKED_TOTAL, OUTBOX_PUBLISHED
from .notify import MAX_CHANNEL_BYTES, listen
from .settings import RuntimeSettings

log = logging.getLogger(__name__)

GAUGE_INTERVAL_S = 1.0
"""How often the backlog and parked-rows gauges are measured (on a timer beside the relay, whatever it is doing)."""


def outbox_rows(envelopes: Iterable[Envelope[Any]]) -> list[dict[str, Any]]:
    """Encode envelopes as outbox rows (topic is the contract name; the relay adds the prefix)."""
    rows = []
    for env in envelopes:
        key, value, headers = encode(env)
        rows.append(
            {
                "event_id": env.id,
                "topic": env.topic,
                "key": key,
                "value": value,
                "headers": [[k, v.decode()] for k, v in headers],
            }
        )
    return rows


def _int32(data: bytes) -> int:
    return int.from_bytes(data[:4], "big", signed=True)


def key_lock_ids(schema: str | None, keys: Iterable[tuple[str, bytes]]) -> tuple[int, list[int]]:
    """The advisory locks that serialise outbox writes per key: (namespace, sorted distinct key ids).

    Two 32-bit keys (``pg_advisory_xact_lock(int, int)``): a key space apart from the one-bigint locks
    of the relay and the migrations. The namespace is the schema, so services never wait for each other;
    two keys sharing a hash only wait for each other, which costs time, not correctness.
    """
    namespace = _int32(zlib.crc32(f"leadstream-outbox-key:{schema}".encode()).to_bytes(4, "big"))
    ids = {_int32(hashlib.blake2b(topic.encode() + b"\0" + key, digest_size=4).digest()) for topic, key in keys}
    return namespace, sorted(ids)


def outbox_channel(schema: str | None) -> str:
    """The LISTEN/NOTIFY channel on which writers of ``schema``'s outbox announce new rows to its relay."""
    return f"leadstream.outbox.{schema or 'public'}"[:MAX_CHANNEL_BYTES]


_LOCK_KEYS = text(
    "SELECT count(pg_advisory_xact_lock(:namespace, k)), pg_notify(:channel, '') "
    "FROM (SELECT unnest(CAST(:keys AS int[])) AS k ORDER BY k) s"
)


async def lock_keys(conn: AsyncConnection, schema: str | None, keys: Iterable[tuple[str, bytes]]) -> None:
    """Take the transaction-level lock of every (topic, key), in sorted order (see the module docstring), and
    notify the schema's relay, which hears it when the transaction commits (nothing if it rolls back).

    A statement of its own: one more round trip per writing transaction (about 0.2 ms of client CPU,
    measured), cheaper than folding the locks into the INSERT, whose statement SQLAlchemy then compiles anew
    for every call. Postgres sends one notification per channel and payload per transaction, however many
    statements ask.
    """
    namespace, ids = key_lock_ids(schema, keys)
    if ids:
        await conn.execute(_LOCK_KEYS, {"namespace": namespace, "keys": ids, "channel": outbox_channel(schema)})


async def add_to_outbox(conn: AsyncConnection, tables: RuntimeTables, envelopes: Iterable[Envelope[Any]]) -> int:
    """Insert envelopes into the outbox in the caller's transaction; an id already there is ignored.

    Locks each key first, so the ids of one key follow the order in which the writing transactions commit.
    Personal fields are encrypted with their person's data key first (:func:`services.runtime.personal.seal_rows`).
    """
    envelopes = list(envelopes)
    rows = outbox_rows(envelopes)
    if not rows:
        return 0
    await lock_keys(conn, tables.outbox.schema, ((r["topic"], r["key"]) for r in rows))
    # After the key locks: a second writer of the same key waits there, not on the first one's new data key.
    await personal.seal_rows(
        conn, rows, [personal.person_of_event(env.subject, env.workspace_id, env.type) for env in envelopes]
    )
    stmt = insert(tables.outbox).values(rows).on_conflict_do_nothing(index_elements=["event_id"])
    result = await conn.execute(stmt)
    return int(result.rowcount or 0)


def faststream_correlation_id(headers: dict[str, str]) -> str | None:
    """The value for FastStream's own ``correlation_id`` header: the event's correlation id.

    FastStream's ``publish`` always adds a ``correlation_id`` header and, when not given one, fills it
    with a fresh random uuid: it would contradict ``correlationid`` and change on every re-publish of
    the same event. Passing the contract's id keeps the record deterministic and consistent. The relay,
    which publishes without FastStream, adds the same header so its records look like every other.
    """
    return headers.get("correlationid") or headers.get("ce_id")


# -------------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row as the relay sends it: the physical topic, the record's bytes and its estimated size."""

    id: int
    event_id: UUID
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    created_at: datetime
    stored_headers: list[list[str]]

    @property
    def size(self) -> int:
        """The record's estimated size in a batch (key, value, headers and overhead), in bytes."""
        return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(self.key, self.value, self.headers))


def record_headers(stored: Sequence[Sequence[str]]) -> list[tuple[str, bytes]]:
    """The Kafka headers of a stored row: the contract's, which include FastStream's ``correlation_id``
    since ``encode`` writes it; rows stored before that get it added here, so every record carries it once."""
    headers = [(str(k), str(v).encode()) for k, v in stored]
    names = {str(k) for k, _ in stored}
    correlation = faststream_correlation_id({k: v for k, v in stored})
    if correlation is not None and H_FASTSTREAM_CORRELATION not in names:
        headers.append((H_FASTSTREAM_CORRELATION, correlation.encode()))
    return headers


@dataclass(frozen=True)
class RoundPlan:
    """What a round sends: per partition, its rows in outbox order; and the rows too large to send at all."""

    chains: dict[TopicPartition, list[OutboxRow]]
    too_large: list[OutboxRow]


def plan_round(
    rows: Sequence[OutboxRow], partition_of: Callable[[str, bytes], int], *, max_record_bytes: int
) -> RoundPlan:
    """Group ``rows`` (in outbox order) into one chain per partition; set aside rows above ``max_record_bytes``."""
    chains: dict[TopicPartition, list[OutboxRow]] = {}
    too_large = []
    for row in rows:
        if row.size > max_record_bytes:
            too_large.append(row)
            continue
        chains.setdefault(TopicPartition(row.topic, partition_of(row.topic, row.key)), []).append(row)
    return RoundPlan(chains, too_large)


@dataclass
class ChainResult:
    """How far one partition's chain got: the rows acknowledged, and the batch that failed (if one did)."""

    sent: list[OutboxRow] = field(default_factory=list)
    failed: list[OutboxRow] = field(default_factory=list)
    error: BaseException | None = None


@dataclass(frozen=True)
class Verdict:
    """What to do after a round (see :func:`judge`)."""

    published: list[OutboxRow]
    park: list[tuple[OutboxRow, BaseException]]
    isolate: frozenset[int]
    """Ids of rows to send one per batch next round: a batch of them was refused, one of them is the cause."""
    retry_error: BaseException | None
    """An error that is not the rows' fault (retried without limit; the relay is not-ready meanwhile)."""
    restart_producer: bool


def too_large_error(row: OutboxRow, max_record_bytes: int) -> MessageSizeTooLargeError:
    """The refusal recorded for a row larger than the producer sends (the same error aiokafka's send() raises)."""
    return MessageSizeTooLargeError(
        f"the record is {row.size} bytes, more than the relay's outbox_max_record_bytes ({max_record_bytes})"
    )


def judge(plan: RoundPlan, results: Iterable[ChainResult], *, max_record_bytes: int) -> Verdict:
    """Decide a round's outcome (pure): publish what was acknowledged, park what the broker refused on its
    own, isolate the rows of a refused batch of several, and retry everything else."""
    published: list[OutboxRow] = []
    park = [(row, too_large_error(row, max_record_bytes)) for row in plan.too_large]
    isolate: set[int] = set()
    retry_error: BaseException | None = None
    restart = False
    for result in results:
        published += result.sent
        if result.error is None:
            continue
        restart = True  # the producer's sequence for that partition now has a gap: start a new one
        if isinstance(result.error, KAFKA_RECORD_REFUSALS):
            if len(result.failed) == 1:
                park.append((result.failed[0], result.error))
            else:
                isolate.update(row.id for row in result.failed)
        elif retry_error is None:
            retry_error = result.error
    return Verdict(published, park, frozenset(isolate), retry_error, restart)


# -------------------------------------------------------------------------------------------------- the relay


class OutboxRelay:
    """Publishes a service's outbox to Kafka in per-key commit order, one relay at a time per schema."""

    def __init__(self, engine: AsyncEngine, tables: RuntimeTables, settings: RuntimeSettings) -> None:
        self.engine = engine
        self.tables = tables
        self.settings = settings
        self._wake = asyncio.Event()
        # Per schema the service writes (settings.db_schema: the tables' own name may be translated, as the test
        # probes do), so relays of two schemas never hold each other back.
        self._lock_id = zlib.crc32(f"leadstream-outbox:{settings.db_schema}".encode())
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._isolate: frozenset[int] = frozenset()
        self.healthy = True
        self.listening = False
        """The LISTEN connection is up: a commit anywhere wakes this relay."""
        self._waiting = False

    def wake(self, _payload: str = "") -> None:
        """Ask the relay to look at the outbox now (after a handler committed, or on a NOTIFY)."""
        self._wake.set()

    @property
    def idle(self) -> bool:
        """Waiting for a wake-up or the next poll, with none pending (tests wait for this)."""
        return self._waiting and not self._wake.is_set()

    # -- the producer -----------------------------------------------------------------------------

    def create_producer(self) -> AIOKafkaProducer:
        """A new producer for the relay (tests replace it to inject broker failures)."""
        return create_producer(
            self.settings,
            client_id=f"leadstream-{self.settings.service_name}-outbox",
            max_batch_size=self.settings.outbox_max_batch_bytes,
            max_request_size=max(self.settings.outbox_max_batch_bytes, self.settings.outbox_max_record_bytes) + 65_536,
        )

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self.create_producer()
            await producer.start()
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        """Stop the relay's producer (after the last :meth:`publish_once`, or to start a fresh one)."""
        producer, self._producer = self._producer, None
        self._partitions.clear()  # read again by the next producer (a topic may have gained partitions)
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _partition_of(self, producer: AIOKafkaProducer, topics: set[str]) -> Callable[[str, bytes], int]:
        for topic in topics - set(self._partitions):
            self._partitions[topic] = sorted(await producer.partitions_for(topic))

        def partition_of(topic: str, key: bytes) -> int:
            # The partition every Kafka client's default partitioner picks for the key (murmur2).
            every = self._partitions[topic]
            return int(self._partitioner(key, every, every))

        return partition_of

    # -- one round --------------------------------------------------------------------------------

    async def publish_once(self) -> int:
        """Publish one round; returns how many events were published (parked rows not counted).

        Raises the first error that is not a row's fault, after recording what was published and parked.
        """
        t = self.tables.outbox
        async with self.engine.begin() as conn:
            # One relay per schema at a time keeps per-key order across replicas.
            got = await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": self._lock_id})
            if not got:
                return 0
            stored = (
                await conn.execute(
                    select(t.c.id, t.c.event_id, t.c.topic, t.c.key, t.c.value, t.c.headers, t.c.created_at)
                    .order_by(t.c.id)
                    .limit(self.settings.outbox_batch_size)
                )
            ).all()
            if not stored:
                return 0
            rows = [
                OutboxRow(
                    id=r.id,
                    event_id=r.event_id,
                    topic=self.settings.topic_name(r.topic),
                    key=r.key,
                    value=r.value,
                    headers=record_headers(r.headers),
                    created_at=r.created_at,
                    stored_headers=r.headers,
                )
                for r in stored
            ]
            verdict = await self._publish(rows)
            done = [row.id for row in verdict.published]
            if done:
                await conn.execute(delete(t).where(t.c.id.in_(done)))
            if verdict.park:
                await self._park(conn, verdict.park)
        resolved = set(done) | {row.id for row, _ in verdict.park}
        self._isolate = (self._isolate - resolved) | verdict.isolate
        OUTBOX_PUBLISHED.labels(self.settings.service_name).inc(len(done))
        for row, error in verdict.park:
            OUTBOX_PARKED_TOTAL.labels(
                self.settings.service_name, self.settings.base_topic(row.topic), type(error).__name__
            ).inc()
            log.error(
                "outbox row parked: the broker refuses it",
                extra={"event_id": str(row.event_id), "topic": row.topic, "size": row.size, "error": repr(error)},
            )
        if verdict.restart_producer:
            await self.close()
        if verdict.retry_error is not None:
            raise verdict.retry_error
        return len(done)

    async def _publish(self, rows: list[OutboxRow]) -> Verdict:
        try:
            producer = await self._started_producer()
            partition_of = await self._partition_of(producer, {r.topic for r in rows})
        except Exception as exc:  # the broker is not reachable: nothing was sent
            return Verdict([], [], frozenset(), exc, restart_producer=True)
        plan = plan_round(rows, partition_of, max_record_bytes=self.settings.outbox_max_record_bytes)
        results = await asyncio.gather(*(self._send_chain(producer, tp, chain) for tp, chain in plan.chains.items()))
        return judge(plan, results, max_record_bytes=self.settings.outbox_max_record_bytes)

    def _next_batch(self, producer: AIOKafkaProducer, chain: list[OutboxRow], start: int) -> tuple[BatchBuilder, int]:
        """A batch of ``chain[start:end]`` (one row alone when it is to be isolated); returns it and ``end``."""
        batch = producer.create_batch()
        end = start
        while end < len(chain):
            row = chain[end]
            isolated = row.id in self._isolate
            if end > start and isolated:
                break
            if batch.append(timestamp=None, key=row.key, value=row.value, headers=row.headers) is None:
                break  # full (the first row always fits)
            end += 1
            if isolated:
                break
        batch.close()
        return batch, end

    async def _send_chain(self, producer: AIOKafkaProducer, tp: TopicPartition, chain: list[OutboxRow]) -> ChainResult:
        """Send one partition's rows in order, one batch in flight; stop at the first failed batch."""
        result = ChainResult()
        start = 0
        while start < len(chain):
            batch, end = self._next_batch(producer, chain, start)
            try:
                await self._acknowledged(await producer.send_batch(batch, tp.topic, partition=tp.partition))
            except Exception as exc:
                result.failed, result.error = chain[start:end], exc
                return result
            result.sent += chain[start:end]
            start = end
        return result

    async def _acknowledged(self, future: asyncio.Future[Any]) -> None:
        """Wait for the broker's acks; past ``outbox_ack_timeout_s`` report not-ready and keep waiting.

        The idempotent producer retries a batch until the broker takes it (nothing is lost or duplicated),
        so giving up here would only re-send what may still land.
        """
        done, _ = await asyncio.wait({future}, timeout=self.settings.outbox_ack_timeout_s)
        if not done:
            self.healthy = False
            log.warning("the broker has not acknowledged an outbox batch yet; still waiting")
        await future

    async def _park(self, conn: AsyncConnection, park: list[tuple[OutboxRow, BaseException]]) -> None:
        """Move refused rows from the outbox to ``outbox_parked`` with their error (same transaction)."""
        parked = self.tables.outbox_parked
        outbox = self.tables.outbox
        values = [
            {
                "outbox_id": row.id,
                "event_id": row.event_id,
                "topic": self.settings.base_topic(row.topic),
                "key": row.key,
                "value": row.value,
                "headers": row.stored_headers,
                "size": row.size,
                "error": type(error).__name__,
                "error_message": str(error)[:4000],
                "created_at": row.created_at,
            }
            for row, error in park
        ]
        # An event parked before, retried and refused again: the newest refusal wins.
        stmt = insert(parked).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["event_id"],
            set_={c: stmt.excluded[c] for c in ("outbox_id", "size", "error", "error_message", "parked_at")},
        )
        await conn.execute(stmt)
        await conn.execute(delete(outbox).where(outbox.c.id.in_([row.id for row, _ in park])))

    # -- gauges and the loop ----------------------------------------------------------------------

    async def backlog(self) -> int:
        """How many events wait in the outbox."""
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(self.tables.outbox)) or 0)

    async def parked(self) -> int:
        """How many rows are parked."""
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(self.tables.outbox_parked)) or 0)

    async def refresh_gauges(self) -> None:
        """Set ``leadstream_outbox_backlog`` and ``leadstream_outbox_parked`` from the tables."""
        waiting = select(func.count()).select_from(self.tables.outbox).scalar_subquery()
        parked = select(func.count()).select_from(self.tables.outbox_parked).scalar_subquery()
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(waiting, parked))).one()
        OUTBOX_BACKLOG.labels(self.settings.service_name).set(row[0])
        OUTBOX_PARKED.labels(self.settings.service_name).set(row[1])

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; on broker or database errors back off and retry (nothing is lost).

        The gauges are measured beside it (:meth:`measure_gauges`): a failing or waiting relay is when the
        backlog grows.
        """
        tasks = [asyncio.create_task(self.measure_gauges(stop), name="outbox-gauges")]
        if self.settings.outbox_listen:
            tasks.append(asyncio.create_task(self._listen(stop), name="outbox-listen"))
        try:
            await self._relay(stop)
        finally:
            await cancel_and_wait(tasks)

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake the relay on every NOTIFY of its schema's channel, and after each (re)connection."""

        def connected() -> None:
            self.wake()  # rows committed while nobody listened
            self.listening = True

        def lost() -> None:
            self.listening = False

        await listen(
            self.settings.database_url,
            outbox_channel(self.tables.outbox.schema),
            self.wake,
            stop,
            on_connected=connected,
            on_lost=lost,
            what="outbox relay",
        )

    async def measure_gauges(self, stop: asyncio.Event) -> None:
        """:meth:`refresh_gauges` every ``GAUGE_INTERVAL_S`` until ``stop`` (the database down: next time)."""
        while True:
            try:
                await self.refresh_gauges()
            except Exception as exc:
                log.debug("outbox gauges not measured", extra={"error": repr(exc)})
            if await sleep_unless_stopped(stop, GAUGE_INTERVAL_S):
                return

    async def _relay(self, stop: asyncio.Event) -> None:
        backoff = Backoff(self.settings.consumer_backoff_initial_s, self.settings.consumer_backoff_max_s)
        while not stop.is_set():
            # Cleared before the round: a wake-up during it (a commit after its read) starts the next one.
            self._wake.clear()
            try:
                n = await self.publish_once()
                self.healthy = True
                backoff.reset()
                if n:
                    continue
            except Exception as exc:
                self.healthy = False
                log.warning("outbox relay failed, retrying", extra={"error": repr(exc)})
                await backoff.wait(stop)
                continue
            self._waiting = True
            try:
                await nap(stop, self._wake, self.settings.outbox_poll_interval_s)
            finally:
                self._waiting = False


# -------------------------------------------------------------------------------------------------- parked rows


@dataclass(frozen=True)
class ParkedRow:
    """A parked outbox row as an operator sees it (``leadstream outbox list``)."""

    event_id: UUID
    event_type: str | None
    topic: str
    key: str
    size: int
    error: str
    error_message: str
    created_at: datetime
    parked_at: datetime
    outbox_id: int


def _selected(tables: RuntimeTables, event_ids: Sequence[UUID] | None) -> Any:
    parked = tables.outbox_parked
    return [] if event_ids is None else [parked.c.event_id.in_(list(event_ids))]


async def parked_rows(
    engine: AsyncEngine, tables: RuntimeTables, event_ids: Sequence[UUID] | None = None
) -> list[ParkedRow]:
    """The parked rows of a schema (all, or those of ``event_ids``), in the order they were written."""
    p = tables.outbox_parked
    query = (
        select(
            p.c.event_id,
            p.c.topic,
            p.c.key,
            p.c.headers,
            p.c.size,
            p.c.error,
            p.c.error_message,
            p.c.created_at,
            p.c.parked_at,
            p.c.outbox_id,
        )
        .where(*_selected(tables, event_ids))
        .order_by(p.c.outbox_id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        ParkedRow(
            event_id=r.event_id,
            event_type=dict(r.headers).get("ce_type"),
            topic=r.topic,
            key=r.key.decode("utf-8", "replace"),
            size=r.size,
            error=r.error,
            error_message=r.error_message,
            created_at=r.created_at,
            parked_at=r.parked_at,
            outbox_id=r.outbox_id,
        )
        for r in rows
    ]


async def unpark(engine: AsyncEngine, tables: RuntimeTables, event_ids: Sequence[UUID] | None = None) -> int:
    """Move parked rows (all, or those of ``event_ids``) back to the outbox; returns how many.

    They go to the outbox's end, in the order they were first written, under the same per-key locks as
    :func:`add_to_outbox`; the running relay publishes them on its next round. A row whose event is in the
    outbox again meanwhile is only removed from the parked ones.
    """
    p, outbox = tables.outbox_parked, tables.outbox
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(p.c.id, p.c.event_id, p.c.topic, p.c.key, p.c.value, p.c.headers, p.c.created_at)
                .where(*_selected(tables, event_ids))
                .order_by(p.c.outbox_id)
                .with_for_update()
            )
        ).all()
        if not rows:
            return 0
        await lock_keys(conn, outbox.schema, ((r.topic, r.key) for r in rows))
        values = [
            {
                "event_id": r.event_id,
                "topic": r.topic,
                "key": r.key,
                "value": r.value,
                "headers": r.headers,
                "created_at": r.created_at,
            }
            for r in rows
        ]
        await conn.execute(insert(outbox).values(values).on_conflict_do_nothing(index_elements=["event_id"]))
        await conn.execute(delete(p).where(p.c.id.in_([r.id for r in rows])))
    return len(rows)


async def drop_parked(engine: AsyncEngine, tables: RuntimeTables, event_ids: Sequence[UUID] | None = None) -> int:
    """Delete parked rows (all, or those of ``event_ids``) for good; returns how many."""
    p = tables.outbox_parked
    async with engine.begin() as conn:
        result = await conn.execute(delete(p).where(*_selected(tables, event_ids)))
    return int(result.rowcount or 0)
