"""The consumer loop every service uses: at-least-once, idempotent, with retries and a dead-letter topic.

For each record, in partition order:

1. decode it; a record that is not a valid event goes to ``<topic>.dlq`` at once;
2. in ONE Postgres transaction: record the event id in ``processed_events`` (a duplicate stops
   here), run the handler, and add the events it emits to the outbox;
3. a handler error is retried with backoff up to ``consumer_max_attempts``, then the record is
   dead-lettered with the error in its headers;
4. offsets are committed only after every record before them is durable (handled, skipped as a
   duplicate, or dead-lettered).

Infrastructure errors (database or broker unreachable) are not the record's fault: they are retried
without limit, the service reports not-ready, and nothing is dead-lettered or skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
from faststream.kafka import KafkaBroker
from leadstream_schemas import DecodeError, Envelope, Event, decode, headers_dict
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .clock import Clock, SystemClock
from .db import RuntimeTables, ping
from .kafka import create_consumer
from .metrics import CONSUMER_LAG, DLQ_TOTAL, HANDLED, HANDLER_SECONDS
from .outbox import OutboxRelay, add_to_outbox, faststream_correlation_id
from .scrub import scrub_text
from .settings import RuntimeSettings
from .telemetry import current_traceparent, event_span

log = logging.getLogger(__name__)

DLQ_HEADER_PREFIX = "dlq_"
DATABASE_CHECK_TIMEOUT_S = 5.0
"""How long the database may take to answer ``SELECT 1`` when an error could be an outage."""


class RetryLater(Exception):
    """Raised by a handler when a dependency asks to wait (e.g. a provider's retry-after)."""

    def __init__(self, delay_s: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay_s:.1f}s")
        self.delay_s = delay_s


class PermanentError(Exception):
    """Raised by a handler for a record that can never succeed: dead-lettered without retries."""


@dataclass
class HandlerContext:
    """What a handler gets besides the event: the open transaction, the clock, and ``emit``."""

    conn: AsyncConnection
    envelope: Envelope[Event]
    clock: Clock
    source: str
    emitted: list[Envelope[Any]] = field(default_factory=list)

    def emit(self, data: Event, *, discriminator: str = "") -> Envelope[Any]:
        """Emit an event caused by the one being handled (deterministic id; written to the outbox)."""
        env = self.envelope.caused(data, source=self.source, time=self.clock.now(), discriminator=discriminator)
        tp = current_traceparent()
        if tp:
            env = replace(env, traceparent=tp)
        self.emitted.append(env)
        return env

    def emit_envelope(self, env: Envelope[Any]) -> None:
        """Emit a fully built envelope (e.g. a timer-driven event that is not caused by this one)."""
        self.emitted.append(env)


Handler = Callable[[Envelope[Any], HandlerContext], Awaitable[None]]


def is_infrastructure_error(exc: BaseException) -> bool:
    """True for errors of the database connection itself, which are retried without limit."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    name = type(exc).__name__
    return name in {"ConnectionDoesNotExistError", "CannotConnectNowError", "ConnectionFailureError"}


def may_be_infrastructure_error(exc: BaseException) -> bool:
    """True for errors an outage raises but a handler's own call raises too: a connection refused or
    reset, a timeout (``TimeoutError`` is an ``OSError``), a Kafka error. Only a check of the database
    tells which: a provider timing out on one record must not stall its partition forever."""
    return isinstance(exc, ConnectionError | OSError | KafkaError)


def dead_letter_headers(
    record: ConsumerRecord[Any, Any], code: str, message: str, *, group_id: str, attempts: int
) -> dict[str, str]:
    """The headers of a record's dead-letter copy: its own headers plus the error and where it came from.

    Shared by every consumer that dead-letters (this loop and the projection's batch consumer), so a
    DLQ reader sees one format. ``message`` is scrubbed (:func:`~services.runtime.scrub.scrub_text`).
    """
    headers = headers_dict(record.headers)
    headers.update(
        {
            f"{DLQ_HEADER_PREFIX}error_code": code,
            # Exception and provider texts quote what they were given (names, emails): headers carry no personal data.
            f"{DLQ_HEADER_PREFIX}error_message": scrub_text(message, limit=4000),
            f"{DLQ_HEADER_PREFIX}original_topic": record.topic,
            f"{DLQ_HEADER_PREFIX}original_partition": str(record.partition),
            f"{DLQ_HEADER_PREFIX}original_offset": str(record.offset),
            f"{DLQ_HEADER_PREFIX}consumer_group": group_id,
            f"{DLQ_HEADER_PREFIX}attempts": str(attempts),
            f"{DLQ_HEADER_PREFIX}failed_at": datetime.now(UTC).isoformat(),
        }
    )
    return headers


class EventConsumer:
    """Consumes contract topics for one service and dispatches events to handlers by type."""

    def __init__(
        self,
        *,
        settings: RuntimeSettings,
        engine: AsyncEngine,
        tables: RuntimeTables,
        broker: KafkaBroker,
        topics: Sequence[str],
        handlers: Mapping[type[Event], Handler],
        relay: OutboxRelay | None = None,
        clock: Clock | None = None,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.tables = tables
        self.broker = broker
        self.topics = [settings.topic_name(t) for t in topics]
        self.handlers: dict[str, Handler] = {cls.event_type: h for cls, h in handlers.items()}
        self.relay = relay
        self.clock = clock or SystemClock()
        self.group_id = group_id or settings.group_id
        self.source = f"leadstream/{settings.service_name}"
        self.healthy = False
        self.consumer: AIOKafkaConsumer | None = None

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set. Restarts the Kafka consumer if it breaks."""
        while not stop.is_set():
            consumer = create_consumer(self.settings, group_id=self.group_id)
            self.consumer = consumer
            try:
                await consumer.start()
                consumer.subscribe(self.topics)
                self.healthy = True
                await self._poll(consumer, stop)
            except Exception as exc:
                self.healthy = False
                log.warning("consumer failed; restarting", extra={"error": repr(exc)})
                await asyncio.sleep(self.settings.consumer_backoff_max_s)
            finally:
                await consumer.stop()
                self.consumer = None

    async def _poll(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=self.settings.consumer_max_records)
            if not batch:
                continue
            done = await asyncio.gather(*(self._process_partition(tp, recs, stop) for tp, recs in batch.items()))
            # A rebalance during the batch may have taken partitions away: committing those raises
            # IllegalStateError, and restarting the consumer on it rejoins the group, which rebalances
            # it again (a livelock with two replicas). Their new owner re-reads them and dedupes.
            assigned = consumer.assignment()
            offsets = {tp: off for tp, off in done if off is not None and tp in assigned}
            if offsets:
                try:
                    await consumer.commit(offsets)
                except (CommitFailedError, IllegalStateError) as exc:
                    log.warning("offset commit failed after rebalance", extra={"error": repr(exc)})
            if self.relay is not None:
                self.relay.wake()
            for tp, recs in batch.items():
                # highwater() asserts the partition is still assigned; after a rebalance it may not be.
                hw = consumer.highwater(tp) if tp in consumer.assignment() else None
                if hw is not None:
                    CONSUMER_LAG.labels(self.settings.service_name, tp.topic, str(tp.partition)).set(
                        max(hw - recs[-1].offset - 1, 0)
                    )

    async def _process_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]], stop: asyncio.Event
    ) -> tuple[TopicPartition, int | None]:
        last: int | None = None
        for record in records:
            if stop.is_set():
                break
            await self.process_record(record)
            last = record.offset + 1
        return tp, last

    # -- one record -------------------------------------------------------------------------------

    async def process_record(self, record: ConsumerRecord[Any, Any]) -> str:
        """Handle one record durably; returns the outcome (handled, duplicate, ignored, dead_lettered)."""
        try:
            env = decode(record.value, record.headers)
        except DecodeError as exc:
            await self._dead_letter(record, exc.code, exc.message, attempts=0)
            return "dead_lettered"
        except Exception as exc:
            # The decoder failed in a way it did not foresee (e.g. RecursionError on deeply nested JSON).
            # Re-reading the record would fail the same way forever: it is poison, not an outage.
            await self._dead_letter(record, "undecodable", f"{type(exc).__name__}: {exc}", attempts=0)
            return "dead_lettered"
        handler = self.handlers.get(env.type)
        if handler is None:
            return "ignored"
        attempt = 0
        backoff = self.settings.consumer_backoff_initial_s
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                outcome = await self._handle_in_transaction(env, handler)
                HANDLED.labels(self.settings.service_name, env.type, outcome).inc()
                HANDLER_SECONDS.labels(self.settings.service_name, env.type).observe(time.perf_counter() - started)
                self.healthy = True
                return outcome
            except RetryLater as exc:
                if attempt >= self.settings.consumer_max_attempts:
                    await self._dead_letter(record, "retry_exhausted", str(exc), attempts=attempt)
                    return "dead_lettered"
                await asyncio.sleep(exc.delay_s)
            except PermanentError as exc:
                await self._dead_letter(record, "handler_error", f"{type(exc).__name__}: {exc}", attempts=attempt)
                return "dead_lettered"
            except Exception as exc:
                if is_infrastructure_error(exc) or (
                    may_be_infrastructure_error(exc) and not await self._database_answers()
                ):
                    self.healthy = False
                    attempt -= 1  # not the record's fault: retried without limit
                    log.warning("infrastructure error; retrying", extra={"error": repr(exc), "event_id": str(env.id)})
                elif attempt >= self.settings.consumer_max_attempts:
                    log.error(
                        "handler failed; dead-lettering",
                        extra={"event_id": str(env.id), "event_type": env.type, "error": repr(exc)},
                    )
                    await self._dead_letter(record, "handler_error", f"{type(exc).__name__}: {exc}", attempts=attempt)
                    return "dead_lettered"
                else:
                    log.warning(
                        "handler failed; retrying",
                        extra={"event_id": str(env.id), "attempt": attempt, "error": repr(exc)},
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.consumer_backoff_max_s)

    async def _database_answers(self) -> bool:
        """Whether the database answers a trivial query within a few seconds."""
        try:
            async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_S):
                await ping(self.engine)
        except Exception:
            return False
        return True

    async def _handle_in_transaction(self, env: Envelope[Event], handler: Handler) -> str:
        with event_span(self.settings.service_name, env):
            async with self.engine.begin() as conn:
                stmt = (
                    insert(self.tables.processed_events)
                    .values(event_id=env.id, event_type=env.type)
                    .on_conflict_do_nothing(index_elements=["event_id"])
                )
                if (await conn.execute(stmt)).rowcount == 0:
                    return "duplicate"
                ctx = HandlerContext(conn=conn, envelope=env, clock=self.clock, source=self.source)
                await handler(env, ctx)
                await add_to_outbox(conn, self.tables, ctx.emitted)
        return "handled"

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], code: str, message: str, *, attempts: int) -> None:
        """Publish the record unchanged to its topic's DLQ with the error; retried until the broker takes it."""
        dlq = record.topic + ".dlq"
        headers = dead_letter_headers(record, code, message, group_id=self.group_id, attempts=attempts)
        value = record.value  # unchanged: a tombstone stays a tombstone
        backoff = self.settings.consumer_backoff_initial_s
        while True:
            try:
                await self.broker.publish(
                    value, dlq, key=record.key, headers=headers, correlation_id=faststream_correlation_id(headers)
                )
                break
            except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
                if value is None:
                    raise
                # The record fitted its topic but not with the error headers added. Retrying would
                # stall the partition forever; the value stays readable at its original offset.
                value = None
                headers[f"{DLQ_HEADER_PREFIX}value_omitted"] = (
                    f"{type(exc).__name__}: too large with the error headers; read it at the original offset"
                )
            except Exception as exc:
                self.healthy = False
                log.warning("dead-letter publish failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.consumer_backoff_max_s)
        self.healthy = True  # the broker took it: a failed attempt above no longer makes us unready
        DLQ_TOTAL.labels(self.settings.service_name, record.topic, code).inc()
        log.error(
            "record dead-lettered",
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "code": code},
        )
