"""The projection's live consumer: the core's batch mode (:mod:`services.runtime.consuming.batch`) with
the views as its checkpoint: each batch's view changes and consumed offsets commit in one transaction
(:mod:`.handlers`), and on assignment the consumer seeks to the offsets stored with the views.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from leadstream_schemas import TOPICS, DecodeError

from services.runtime.consuming.batch import TP, ApplyResult, BatchConsumer, DeadLetter, RecordKey
from services.runtime.consuming.deadletter import DeadLetterPublisher
from services.runtime.kafka import cluster_id
from services.runtime.personal import PersonalReader
from services.runtime.settings import RuntimeSettings

from .checksum import dsn
from .decoding import decode_record, header_dicts
from .domain import SEALED_TYPES
from .handlers import BatchApplier, Committed, Item, Plan
from .settings import ProjectionSettings
from .store import CLUSTER_KEY, Views

CHUNK = 100
"""Records decoded between two yields to the event loop (lets the transaction in flight progress)."""


def decode_records(
    records: Iterable[ConsumerRecord[Any, Any]],
    refused: Mapping[RecordKey, tuple[str, str]] | None = None,
    values: Sequence[bytes | None] | None = None,
    headers: Sequence[Mapping[str, Any]] | None = None,
) -> list[Item]:
    """Records as items; one that does not decode (or is ``refused``) carries the error (it goes to the DLQ).

    ``values`` are the records' values with their personal fields opened (:class:`PersonalReader`), in order;
    ``headers`` their headers as dicts (:func:`.decoding.header_dicts`), in order."""
    out: list[Item] = []
    append = out.append
    for i, r in enumerate(records):
        if refused and (error := refused.get((r.topic, r.partition, r.offset))):
            append(Item(r.topic, r.partition, r.offset, None, error=error, record=r))
            continue
        try:
            value = r.value if values is None else values[i]
            h = r.headers if headers is None else headers[i]
            # Positional: keyword arguments cost a third of an Item's construction, once per record.
            append(Item(r.topic, r.partition, r.offset, decode_record(value, h), None, r))
        except DecodeError as exc:
            append(Item(r.topic, r.partition, r.offset, None, error=(exc.code, exc.message), record=r))
    return out


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """What the pools run when a connection is released, after asyncpg rolled back a transaction left open.

    asyncpg's default also sends a reset query (unlock session advisory locks, close cursors, UNLISTEN, RESET
    ALL): a round trip after every batch, before the next may start. These connections hold none of that: the
    applier's locks are transaction-scoped, and nothing here sets, listens or keeps a cursor."""


class ViewsCheckpoint:
    """The views of one schema as a batch checkpoint, on a connection pool (or one connection's worth)."""

    def __init__(self, applier: BatchApplier, settings: RuntimeSettings, *, crash_after: int = 0) -> None:
        self.applier = applier
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.crash_after = crash_after
        """Fault injection (tests only): SIGKILL this process right after the N-th batch's commit (0: never)."""
        self.batches = 0
        # Personal fields are decrypted where records are decoded: one key lookup per batch, cached. On a pool of
        # its own: planning the next batch must never wait for the connections of the batch in flight.
        self.key_pool: asyncpg.Pool | None = None
        self.personal = PersonalReader.on_asyncpg(lambda: self.key_pool, leave_sealed=SEALED_TYPES)

    async def connect(self) -> asyncpg.Pool:
        """Open the pools (one connection per transaction in flight, one to ask the offsets; one for keys)."""
        url = dsn(self.settings.database_url)
        # Every statement, and the cancellation of one, ends within the attempt's deadline (asyncpg waits for ever
        # by default, also for the answer to a cancel request on a connection that went half-open).
        bounded = {"reset": _nothing_to_reset, "command_timeout": self.settings.consumer_attempt_timeout_s}
        self.pool = await asyncpg.create_pool(url, min_size=1, max_size=2, **bounded)
        self.key_pool = await asyncpg.create_pool(url, min_size=0, max_size=1, **bounded)
        return self.pool

    def connection(self) -> asyncpg.pool.PoolAcquireContext:
        """A connection of the pool (``async with``), acquired within the attempt's deadline. The acquire's timeout
        is also its release's: a connection whose statement was cancelled (the attempt ran past its deadline) is
        waited for that long at most, then terminated; without it the release waits for ever for the answer to a
        cancel request that a half-open connection never gives."""
        assert self.pool is not None
        return self.pool.acquire(timeout=self.settings.consumer_attempt_timeout_s)

    async def close(self) -> None:
        """Close the pools."""
        if self.key_pool is not None:
            key_pool, self.key_pool = self.key_pool, None
            await key_pool.close()
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    async def prepare(
        self, records: Sequence[ConsumerRecord[Any, Any]], refused: Mapping[RecordKey, tuple[str, str]] | None = None
    ) -> Plan:
        """Decode and plan ``records`` in chunks, yielding to the event loop between chunks."""
        planner = self.applier.planner()
        headers = header_dicts(records)
        values = await self.personal.open_records(records, headers)
        for i in range(0, len(records), CHUNK):
            j = i + CHUNK
            planner.add(decode_records(records[i:j], refused, values[i:j], headers[i:j]))
            await asyncio.sleep(0)
        return planner.finish()

    async def apply(self, plan: Plan, expected: Mapping[TP, int | None], dead_letter: DeadLetter) -> ApplyResult:
        """Apply a planned batch and its offsets in one transaction (:meth:`BatchApplier.apply`)."""
        async with self.connection() as conn:
            result = await self.applier.apply(conn, plan, expected, dead_letter)
        self.batches += 1
        if self.crash_after and self.batches >= self.crash_after:
            # Fault injection (tests only): die between the database commit and anything after it.
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def stored(self, tps: Sequence[TP]) -> dict[TP, int | None]:
        """The offsets stored with the views."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                f'SELECT topic, partition, next_offset FROM "{self.applier.views.schema}".offsets '
                f"WHERE (topic, partition) IN (SELECT * FROM unnest($1::text[], $2::integer[]))",
                [t for t, _ in tps],
                [p for _, p in tps],
            )
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


class LiveCheckpoint(ViewsCheckpoint):
    """The live views: refuses offsets of another Kafka cluster, and can crash on purpose (tests)."""

    def __init__(
        self, settings: ProjectionSettings, views: Views, committed: Committed | None = None, origin: str = ""
    ) -> None:
        applier = BatchApplier(views, committed=committed, origin=origin)
        super().__init__(applier, settings, crash_after=settings.projection_crash_after_batches)

    async def open(self) -> str | None:
        """Connect; a reason to refuse when the views' stored offsets belong to another cluster."""
        pool = await self.connect()
        current = await cluster_id(self.settings)
        table = f'"{self.applier.views.schema}".replay_info'
        await pool.execute(
            f"INSERT INTO {table} (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) DO NOTHING",
            CLUSTER_KEY,
            json.dumps(current),
        )
        stored = json.loads(await pool.fetchval(f"SELECT value FROM {table} WHERE key = $1", CLUSTER_KEY))
        if stored == current:
            return None
        # Offsets of another cluster would make the consumer skip or re-read records at random.
        return (
            f"the views' stored offsets belong to Kafka cluster {stored}, but {self.settings.kafka_bootstrap_servers} "
            f"is cluster {current}: rebuild the views from this cluster (leadstream replay --from-beginning "
            f"--into NAME, then --promote NAME) or point the service at the right cluster"
        )


class ProjectionConsumer(BatchConsumer):
    """Consumes the four contract topics into the views of ``views`` (the live schema); ``committed`` hears what
    each batch changed once it commits, in this process (``origin`` names it in the batch's notification)."""

    def __init__(
        self,
        settings: ProjectionSettings,
        views: Views,
        broker: KafkaBroker | None,
        committed: Committed | None = None,
        origin: str = "",
    ) -> None:
        super().__init__(
            settings,
            LiveCheckpoint(settings, views, committed, origin),
            DeadLetterPublisher(settings, settings.group_id, broker),
            topics=[settings.topic_name(t.name) for t in TOPICS.values()],
            max_records=settings.projection_batch_max_records,
            resync_interval_s=settings.projection_resync_interval_s,
        )
        self.ready_max_lag = settings.projection_ready_max_lag
        self.ready_stall_s = settings.projection_ready_stall_s
