"""The per-record mode of the consumer core, which every service's handlers run in: at-least-once,
idempotent, with retries by cause and a dead-letter topic.

For each record, in partition order (partitions side by side):

1. decode it; a record that is not a valid event goes to ``<topic>.dlq`` at once;
2. in ONE Postgres transaction: record the event id in ``processed_events`` (a duplicate stops
   here), run the handler, and add the events it emits to the outbox; once it committed, the calls the
   handler gave :meth:`HandlerContext.after_commit` run (wakes of loops that must see what it wrote);
   A service that declares an :data:`Interest` is asked first, from the record's headers alone, whether it
   has anything to do with the event; when it has not, the record is skipped like one of a type no handler
   takes (no key lookup, no decoding, no transaction);
3. a failure is retried by its cause (:mod:`.consuming.policy`, docs/reliability.md): transient ones
   without limit (the service reports not-ready), record faults ``consumer_max_attempts`` times and
   then dead-lettered, rate limits (:class:`RetryLater`) waited out inline up to
   ``consumer_max_inline_wait_s`` and beyond that by pausing the partition and reading the record again;
4. offsets are committed only after every record before them is durable (handled, skipped as a
   duplicate, or dead-lettered), at most every ``consumer_commit_interval_s`` (1 s) and before revoked
   partitions go; a crash re-reads at most that much, which stops at ``processed_events``.

Partitions are worked on side by side, so two events another service emitted in order on two topics may be
handled in either order. Where a handler's decision needs the other order (outreach finishing a campaign on a
search's ``SearchFinished`` needs the search's last ``LeadDiscovered`` and ``LeadAddedToSourceGroup`` done, or
it finishes without them), the service names those topics for that event type (``after``): such an event is
handled only once its group has done every record those topics held when it was first read (their log ends
then), by this member or another; until then its partition pauses and reads it again
(:data:`AFTER_RECHECK_S`), holding no slot.

The loop, the rebalance listener and the dead-letter publisher are the core's
(:mod:`services.runtime.consuming`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import Any, TypeGuard

from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker
from leadstream_schemas import EVENT_TYPES, DecodeError, Envelope, Event, LeadErased, decode, service_source
from leadstream_schemas.envelope import H_TIME, H_TYPE, H_WORKSPACE
from leadstream_schemas.upcasting import UPCASTERS
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .clock import Clock
from .consuming.deadletter import DeadLetterPublisher
from .consuming.loop import Batch, GroupConsumer
from .consuming.policy import Abandoned, PermanentError, Retry
from .db import RuntimeTables, ping
from .faults import describe
from .headers import header_of, headers_of
from .metrics import AFTER_WAITS, HANDLED, HANDLER_SECONDS, UNWANTED
from .outbox import OutboxRelay, add_to_outbox
from .personal import Person, PersonalReader
from .settings import RuntimeSettings
from .telemetry import current_traceparent, event_context, event_span

__all__ = ["EventConsumer", "Handler", "HandlerContext", "Interest", "PermanentError", "RecordMeta", "RetryLater"]

log = logging.getLogger(__name__)

AFTER_RECHECK_S = 0.5
"""How long an event waiting for other topics (``EventConsumer.after``) pauses its partition before it is read and
checked again: the wait is for a lag that is normally a few records."""


class RetryLater(Exception):
    """Raised by a handler when a dependency asks to wait (e.g. a provider's retry-after): THROTTLED,
    never dead-lettered for it."""

    def __init__(self, delay_s: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay_s:.1f}s")
        self.delay_s = delay_s
        self.retry_after_s = delay_s  # what faults.classify reads


@dataclass
class HandlerContext:
    """What a handler gets besides the event: the open transaction, the clock, ``emit`` and :meth:`after_commit`."""

    conn: AsyncConnection
    envelope: Envelope[Event]
    clock: Clock
    source: str
    emitted: list[Envelope[Any]] = field(default_factory=list)
    committed: list[Callable[[], None]] = field(default_factory=list)
    """What :meth:`after_commit` was given, in order, each once."""

    def after_commit(self, call: Callable[[], None]) -> None:
        """Call ``call()`` once the handler's transaction has committed; never if it rolls back (a retry registers
        it again). For a wake of a loop that must see what the handler wrote (a timer loop woken inside the
        transaction may look before the commit, find nothing and nap). Registering the same call twice calls it
        once. The consumer core runs these calls; a context made elsewhere (a timer loop's run) runs none, as
        its loop looks again right after a run anyway."""
        if call not in self.committed:
            self.committed.append(call)

    def for_event(self, envelope: Envelope[Any]) -> HandlerContext:
        """A context for another event handled in this same transaction (e.g. a stored one taken up again): what
        it emits and registers with :meth:`after_commit` are this context's."""
        return replace(self, envelope=envelope)

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


@dataclass(frozen=True, slots=True)
class RecordMeta:
    """What a record's headers say of its event, known before any key lookup or decoding."""

    event_type: str
    workspace_id: str
    time: datetime


Interest = Callable[[RecordMeta], Awaitable[bool]]
"""Whether a service has anything to do with an event, judged from :class:`RecordMeta` (it may look things up).
``False`` skips the record as ``ignored``; an interest that keeps failing counts as ``True`` (the handler then
decides, in its transaction), so a broken interest costs work, never an event."""


def _after_commit(ctx: HandlerContext, env: Envelope[Any]) -> None:
    """Run a committed handler's :meth:`HandlerContext.after_commit` calls. The event is done whatever they do: one
    that raises is logged, and the others still run."""
    for call in ctx.committed:
        try:
            call()
        except Exception:
            log.exception("an after-commit call of a handler failed", extra={"event_id": env.id, "type": env.type})


def skippable_type(event_type: str | None) -> TypeGuard[str]:
    """Whether a record of ``event_type`` may be skipped undecoded at all: a current contract type other than
    ``LeadErased``. A record without a type, of an unknown type, or of an old version that is upcast (it may
    become any type) is decoded, so what is not a valid event is dead-lettered; so is ``LeadErased``, which also
    marks the person erased in the key cache (:meth:`PersonalReader.open`)."""
    return (
        event_type is not None
        and event_type in EVENT_TYPES
        and event_type not in UPCASTERS
        and event_type != LeadErased.event_type
    )


def record_meta(headers: Any) -> RecordMeta | None:
    """The record's :class:`RecordMeta`, or None when it may not be skipped (:func:`skippable_type`) or its
    headers do not make an event (no workspace, a time that does not parse): such a record is decoded, and
    dead-lettered if bad, whatever an interest would say."""
    return meta_of(*headers_of(headers, H_TYPE, H_WORKSPACE, H_TIME))


def meta_of(event_type: str | None, workspace: str | None, raw_time: str | None) -> RecordMeta | None:
    """:func:`record_meta` of the three header values it reads (as text)."""
    if not skippable_type(event_type) or not workspace or not raw_time:
        return None
    try:
        at = datetime.fromisoformat(raw_time)
    except ValueError:
        return None
    return RecordMeta(event_type, workspace, at if at.tzinfo is not None else at.replace(tzinfo=UTC))


def ignorable(headers: Any, handled: Container[str]) -> bool:
    """Whether a record is an event of a current contract type that is not in ``handled``: it is then skipped
    without looking keys up or decoding it.

    Most consumers handle a few of the types on the topics they read; decoding every other record made each
    of them spend about as much CPU on the lead topic as the projection does at 1,000 events/s
    (``bench/live.py``, on a machine the services share). Only a :func:`skippable_type` is skipped.
    """
    event_type = header_of(headers, H_TYPE)  # the type only: decoding every header cost 5 of its 6 us
    return skippable_type(event_type) and event_type not in handled


class EventConsumer(GroupConsumer):
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
        relay: OutboxRelay,
        clock: Clock,
        group_id: str,
        interest: Interest | None = None,
        after: Mapping[type[Event], Sequence[str]] | None = None,
        sealed: Collection[type[Event]] = (),
    ) -> None:
        super().__init__(
            settings,
            topics=[settings.topic_name(t) for t in topics],
            dead_letters=DeadLetterPublisher(settings, group_id, broker),
            retry=Retry(settings, lambda: ping(engine), "handler failed"),
            max_records=settings.consumer_max_records,
        )
        self.engine = engine
        # Personal fields arrive encrypted; decrypted here, at the decoding boundary (one lookup per person, cached),
        # except in the event types whose handlers read none of them (``sealed``): no key lookup, tokens left as
        # they are (the decoder takes a token wherever the field's text is allowed).
        self.personal = PersonalReader.on_engine(engine, leave_sealed=frozenset(cls.event_type for cls in sealed))
        self.tables = tables
        self.handlers: dict[str, Handler] = {cls.event_type: h for cls, h in handlers.items()}
        self.after: dict[str, list[str]] = {
            cls.event_type: [settings.topic_name(t) for t in waited] for cls, waited in (after or {}).items()
        }
        """Per event type: the topics whose records, as far as they went when it was read, are done before it."""
        for event_type, waited in self.after.items():
            # A topic the group does not read has no committed offsets to wait for: the event would wait for ever.
            if event_type not in self.handlers or not set(waited) <= set(self.topics):
                raise ValueError(f"{event_type} can only wait for topics this consumer reads, and must be handled")
        self._after_ends: dict[tuple[str, int, int], dict[TopicPartition, int]] = {}
        """Per waiting record (topic, partition, offset): the ends of the topics it waits for when first read."""
        self.interest = interest
        self.relay = relay
        self.clock = clock
        self.source = service_source(settings.service_name)
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.consumer_concurrency)
        """Partitions worked on at once (``consumer_concurrency``); the others' records wait their turn, in order."""
        self._emitted = False
        """A handler of the batch in hand committed events to the outbox: the relay is woken after the batch."""

    def in_flight(self) -> set[asyncio.Task[Any]]:
        return set(self._tasks)

    async def process(self, batch: Batch, stop: asyncio.Event) -> None:
        tasks = {
            asyncio.create_task(self._partition(tp, recs, self.generation(tp), stop)) for tp, recs in batch.items()
        }
        if not tasks:
            return
        self._tasks |= tasks
        try:
            await asyncio.wait(tasks)
        finally:
            self._tasks -= tasks
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self._emitted:
            # Only then: a relay round reads the outbox (a query), and waking it after every poll made each
            # service that ignores most of a topic read its empty outbox as often as records came in.
            self._emitted = False
            self.relay.wake()

    async def _partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]], gen: int, stop: asyncio.Event
    ) -> None:
        def go_on() -> bool:  # still this partition's owner, and within this poll's time
            return self.owns(tp, gen) and time.monotonic() <= self.deadline

        async with self._slots:  # consumer_concurrency partitions at once; a partition's records in order
            for record in records:
                if stop.is_set() or not self.owns(tp, gen):
                    return
                try:
                    if not go_on():
                        raise Abandoned("poll again before max.poll.interval.ms")
                    await self.handle(record, stop, go_on)
                except Abandoned as exc:
                    if not stop.is_set() and self.owns(tp, gen):
                        self.rewind(tp, record.offset, exc.pause_s)
                    return
                self.done(tp, record.offset + 1)

    # -- one record -------------------------------------------------------------------------------

    async def handle(self, record: ConsumerRecord[Any, Any], stop: asyncio.Event, go_on: Callable[[], bool]) -> str:
        """Handle one record durably; returns the outcome (handled, duplicate, ignored, dead_lettered).

        Raises :class:`Abandoned` when it must be read again (the consumer stops, lost the partition,
        must poll first, or a rate limit pauses the partition for ``pause_s``).
        """
        if ignorable(record.headers, self.handlers):
            return "ignored"
        if self.interest is not None and not await self._wanted(record, stop, go_on):
            return "ignored"
        person = self.personal.person(record.headers, self.handlers)
        if person is not None:
            # The key store is in Postgres: retried by cause like a handler (an outage, or a key-encryption key
            # missing from the settings, is transient: not ready meanwhile, never dead-lettered for it).
            refused = await self.retry(
                partial(self._keys, person),
                self.settings.consumer_max_attempts,
                stop=stop,
                go_on=go_on,
                give_up=lambda exc, attempts: self._dead_letter(record, stop, "key_lookup", describe(exc), attempts),
                what="key lookup failed",
                deadline_s=self.settings.consumer_attempt_timeout_s,
            )
            if refused is not None:
                return refused
        try:
            env = decode(self.personal.open(record.value, record.headers, person), record.headers)
        except DecodeError as exc:
            return await self._dead_letter(record, stop, exc.code, exc.message)
        except Exception as exc:
            # The decoder failed in a way it did not foresee (e.g. RecursionError on deeply nested JSON).
            # Re-reading the record would fail the same way forever: it is poison, not an outage.
            return await self._dead_letter(record, stop, "undecodable", f"{type(exc).__name__}: {exc}")
        handler = self.handlers.get(env.type)
        if handler is None:
            return "ignored"
        waited = self.after.get(env.type)
        if waited is not None and not await self._after_done(record, waited):
            AFTER_WAITS.labels(self.settings.service_name, env.type).inc()
            raise Abandoned(f"waiting for the records before it on {', '.join(waited)}", AFTER_RECHECK_S)
        with event_context(env):  # the retries' and the dead letter's log lines name the event and its trace
            return await self.retry(
                partial(self._transaction, env, handler),
                self.settings.consumer_max_attempts,
                stop=stop,
                inline_max_s=self.settings.consumer_max_inline_wait_s,
                go_on=go_on,
                give_up=lambda exc, attempts: self._dead_letter(record, stop, "handler_error", describe(exc), attempts),
                extra={"event_id": str(env.id), "event_type": env.type},
                deadline_s=self.settings.consumer_attempt_timeout_s,
            )

    def _forget(self, tps: Sequence[TopicPartition]) -> None:
        super()._forget(tps)
        gone = {(tp.topic, tp.partition) for tp in tps}
        for key in [key for key in self._after_ends if key[:2] in gone]:
            del self._after_ends[key]  # its next owner reads the event again and takes the ends then

    async def _after_done(self, record: ConsumerRecord[Any, Any], topics: Sequence[str]) -> bool:
        """Whether the group has done every record ``topics`` held when ``record`` was first read (by this member: its
        own progress; by another: the group's committed offsets). False while that cannot be asked (it asks again)."""
        consumer = self.consumer
        key = (record.topic, record.partition, record.offset)
        if consumer is None:
            return False
        try:
            ends = self._after_ends.get(key)
            if ends is None:
                tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
                if not tps:
                    return False  # no metadata yet
                ends = self._after_ends[key] = await consumer.end_offsets(tps)
            behind = [tp for tp, end in ends.items() if self._consumed.get(tp, -1) < end]
            committed = {tp: await consumer.committed(tp) for tp in behind}
            unknown = [tp for tp, offset in committed.items() if offset is None]
            starts = await consumer.beginning_offsets(unknown) if unknown else {}
            if any((starts[tp] if offset is None else offset) < ends[tp] for tp, offset in committed.items()):
                return False
        except Exception as exc:  # the broker cannot say now: wait and ask again
            log.debug("could not tell whether the records before an event are done", extra={"error": repr(exc)})
            return False
        del self._after_ends[key]
        return True

    async def _wanted(self, record: ConsumerRecord[Any, Any], stop: asyncio.Event, go_on: Callable[[], bool]) -> bool:
        """Whether the service's :data:`Interest` wants the record (always, when its headers make no current event)."""
        assert self.interest is not None
        meta = record_meta(record.headers)
        if meta is None:
            return True

        async def anyway(exc: BaseException, attempts: int) -> bool:
            return True  # the handler's transaction decides; a failing interest must not lose an event

        wanted = await self.retry(
            partial(self.interest, meta),
            self.settings.consumer_max_attempts,
            stop=stop,
            go_on=go_on,
            give_up=anyway,
            what="interest check failed",
            deadline_s=self.settings.consumer_attempt_timeout_s,
            giving_up="handling the event anyway",
        )
        if not wanted:
            UNWANTED.labels(self.settings.service_name, meta.event_type).inc()
        return wanted

    async def _keys(self, person: Person) -> str | None:
        """The person's data key, looked up (None: nothing to report; the retry's give-up returns an outcome)."""
        await self.personal.load([person])
        return None

    @cached_property
    def _mark_processed(self) -> Insert:
        """The handled event's id, once (built once: built per event, it cost 243-298 us of client CPU an
        execution, against 144 us; bench/results/NOTES.md, 2026-12-06)."""
        return insert(self.tables.processed_events).on_conflict_do_nothing(index_elements=["event_id"])

    async def _transaction(self, env: Envelope[Event], handler: Handler) -> str:
        """One attempt: the event id, the handler's changes and the events it emits commit together."""
        started = time.perf_counter()
        with event_span(self.settings.service_name, env):
            ctx: HandlerContext | None = None
            async with self.engine.begin() as conn:
                outcome, emitted = "duplicate", False
                if (await conn.execute(self._mark_processed, {"event_id": env.id, "event_type": env.type})).rowcount:
                    ctx = HandlerContext(conn=conn, envelope=env, clock=self.clock, source=self.source)
                    await handler(env, ctx)
                    await add_to_outbox(conn, self.tables, ctx.emitted)
                    outcome, emitted = "handled", bool(ctx.emitted)
            self._emitted = self._emitted or emitted  # committed
            if ctx is not None:
                _after_commit(ctx, env)
        HANDLED.labels(self.settings.service_name, env.type, outcome).inc()
        HANDLER_SECONDS.labels(self.settings.service_name, env.type).observe(time.perf_counter() - started)
        return outcome

    async def _dead_letter(
        self, record: ConsumerRecord[Any, Any], stop: asyncio.Event, code: str, message: str, attempts: int = 0
    ) -> str:
        await self.dead_letters.publish(record, code, message, attempts=attempts, stop=stop)
        return "dead_lettered"
