"""``leadstream dlq``: look at a topic's dead letters and re-drive them to the topic they came from.

    leadstream dlq list --topic lead                          # table of every dead letter of leadstream.lead.v1
    leadstream dlq list --topic lead --error-code handler_error --json
    leadstream dlq redrive --topic lead --error-code handler_error --dry-run
    leadstream dlq redrive --topic lead --group leadstream-enrichment

A dead letter is the poison record unchanged (key, value, headers) plus ``dlq_*`` headers saying why
and where it came from (``services.runtime.consuming.deadletter.dead_letter_headers``). ``list`` reads the
``<topic>.dlq`` log without a consumer group. ``redrive`` re-publishes the selected dead letters to
their original topic with every ``dlq_*`` header removed, so the consumers see them as new records;
its progress is committed in a consumer group of its own per DLQ topic and filter (:func:`redrive_group`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from .export import resolve_topic
from .replay import progress_bar

if TYPE_CHECKING:  # imported where used: every CLI invocation imports this module (see leadstream_cli.main)
    from aiokafka import ConsumerRecord, TopicPartition

    from services.runtime.settings import RuntimeSettings

dlq_app = typer.Typer(help="Dead letters: list them, re-drive them to their original topic.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

REDRIVE_GROUP = "leadstream-dlq-redrive"
"""Prefix of the consumer groups in which ``redrive`` commits how far it got (see :func:`redrive_group`)."""

NO_MATCH = "no dead letters match"
MESSAGE_WIDTH = 60
"""Characters of the error message shown in the table (``--json`` has it whole)."""


class DlqError(Exception):
    """A DLQ command that cannot run; the message says why."""


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as read from a ``.dlq`` topic: where it sits, why it failed, where it came from."""

    partition: int
    offset: int
    failed_at: str | None
    consumer_group: str | None
    error_code: str | None
    error_message: str | None
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    attempts: int | None
    event_type: str | None
    event_id: str | None
    value_omitted: str | None

    @classmethod
    def of(cls, record: ConsumerRecord[Any, Any]) -> DeadLetter:
        """The dead letter of a record read from a DLQ topic (missing headers are None)."""
        from leadstream_schemas import headers_dict

        from services.runtime.headers import DLQ_HEADER_PREFIX

        h = headers_dict(record.headers)

        def dlq(name: str) -> str | None:
            return h.get(DLQ_HEADER_PREFIX + name)

        return cls(
            partition=record.partition,
            offset=record.offset,
            failed_at=dlq("failed_at"),
            consumer_group=dlq("consumer_group"),
            error_code=dlq("error_code"),
            error_message=dlq("error_message"),
            original_topic=dlq("original_topic"),
            original_partition=_int(dlq("original_partition")),
            original_offset=_int(dlq("original_offset")),
            attempts=_int(dlq("attempts")),
            event_type=h.get("ce_type"),
            event_id=h.get("ce_id"),
            value_omitted=dlq("value_omitted"),
        )

    def matches(self, error_code: str | None, group: str | None) -> bool:
        """True when the dead letter passes the filters (None: any)."""
        return (error_code is None or self.error_code == error_code) and (group is None or self.consumer_group == group)

    @property
    def origin(self) -> str:
        """``topic:partition:offset`` of the record before it was dead-lettered."""
        return f"{self.original_topic or '?'}:{_or_q(self.original_partition)}:{_or_q(self.original_offset)}"

    def as_json(self) -> dict[str, Any]:
        """The JSON line of ``list --json``."""
        return {
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "failed_at": self.failed_at,
            "consumer_group": self.consumer_group,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "attempts": self.attempts,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "value_omitted": self.value_omitted is not None,
        }


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _or_q(value: object) -> str:
    return "?" if value is None else str(value)


def dlq_topic(settings: RuntimeSettings, topic: str) -> str:
    """The physical DLQ topic of a contract topic given by full or short name (DlqError if unknown)."""
    try:
        return settings.topic_name(resolve_topic(topic)) + ".dlq"
    except ValueError as exc:
        raise DlqError(str(exc)) from None


def redrive_group(dlq: str, error_code: str | None, group: str | None) -> str:
    """The consumer group in which ``redrive`` commits its progress for this DLQ topic and filter.

    One group per filter: a re-run of the same command goes on where the last one stopped. Another
    filter has its own progress, so it may re-drive records an earlier filter already re-drove
    (harmless: consumers deduplicate by event id).
    """
    name = f"{REDRIVE_GROUP}.{dlq}"
    if error_code is not None:
        name += f".error_code={error_code}"
    if group is not None:
        name += f".group={group}"
    return name


async def _partitions(settings: RuntimeSettings, topic: str) -> list[TopicPartition]:
    from services.runtime.consuming.reader import TopicMissing, topic_partitions

    try:
        return await topic_partitions(settings, [topic])
    except TopicMissing as exc:
        raise DlqError(str(exc)) from None


@dataclass
class Listing:
    """What ``list`` found: the matching dead letters (at most ``limit``, newest) and counts of all."""

    letters: list[DeadLetter]
    matched: int
    read: int
    by_code: Counter[str]


async def list_dead_letters(
    settings: RuntimeSettings,
    topic: str,
    *,
    error_code: str | None = None,
    group: str | None = None,
    limit: int = 0,
) -> Listing:
    """Read the DLQ of ``topic`` from the beginning (no consumer group) up to its end at the start."""
    from services.runtime.consuming.reader import log_consumer, read_ranges

    physical = dlq_topic(settings, topic)
    tps = await _partitions(settings, physical)
    consumer = log_consumer(settings, 1000)
    await consumer.start()
    letters: list[DeadLetter] = []
    by_code: Counter[str] = Counter()
    read = 0
    try:
        consumer.assign(tps)
        ends = dict(await consumer.end_offsets(tps))
        starts = dict(await consumer.beginning_offsets(tps))
        async for polled in read_ranges(consumer, starts, ends):
            for records in polled.values():
                for r in records:
                    read += 1
                    letter = DeadLetter.of(r)
                    if letter.matches(error_code, group):
                        letters.append(letter)
                        by_code[letter.error_code or "?"] += 1
    finally:
        await consumer.stop()
    letters.sort(key=lambda d: (d.failed_at or "", d.partition, d.offset))
    matched = len(letters)
    if limit > 0:
        letters = letters[-limit:]
    return Listing(letters, matched, read, by_code)


@dataclass
class RedriveReport:
    """What a redrive did (or, dry, would do)."""

    group_id: str
    read: int = 0
    matched: int = 0
    redriven: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    omitted: list[DeadLetter] = field(default_factory=list)
    """Matching dead letters whose value is not in the DLQ (``dlq_value_omitted``): never re-driven."""
    stale: list[DeadLetter] = field(default_factory=list)
    """Matching dead letters whose event is older than the consumers' dedupe memory: not re-driven by default."""


def stale_before(settings: RuntimeSettings, now: datetime) -> datetime:
    """Events older than this may have been handled by a consumer that has since forgotten their id
    (``processed_events`` keeps ids for ``LEADSTREAM_PROCESSED_EVENTS_RETENTION_DAYS``): re-driving one could
    apply its effect twice. A day of margin for clocks and for the sweep's interval."""
    return now - timedelta(days=settings.processed_events_retention_days - 1)


def _event_time(record: ConsumerRecord[Any, Any]) -> datetime | None:
    from leadstream_schemas import headers_dict

    raw = headers_dict(record.headers).get("ce_time")
    try:
        return datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def redrive_headers(headers: Any) -> list[tuple[str, bytes]]:
    """The record's headers without any ``dlq_*`` header, raw bytes and order kept."""
    from services.runtime.headers import DLQ_HEADER_PREFIX

    return [(name, value) for name, value in headers or () if not name.startswith(DLQ_HEADER_PREFIX)]


async def redrive(
    settings: RuntimeSettings,
    topic: str,
    *,
    error_code: str | None = None,
    group: str | None = None,
    dry_run: bool = False,
    from_beginning: bool = False,
    allow_stale: bool = False,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> RedriveReport:
    """Re-publish the matching dead letters of ``topic``'s DLQ to their original topic (see the module docstring).

    Reads from the offsets committed in :func:`redrive_group` (or the beginning) up to the end at the
    start. After each batch it waits for the broker's acks of the batch's records, then commits the
    offsets past it: a crash in between re-drives those records again on the next run, never skips one.
    A dry run publishes and commits nothing.
    """
    from aiokafka import AIOKafkaConsumer

    from services.runtime.consuming.reader import read_ranges
    from services.runtime.kafka import client_security, create_producer

    physical = dlq_topic(settings, topic)
    horizon = stale_before(settings, datetime.now(UTC))
    tps = await _partitions(settings, physical)
    report = RedriveReport(redrive_group(physical, error_code, group))
    horizon = stale_before(settings, datetime.now(UTC))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="leadstream-dlq-redrive",
        group_id=report.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **client_security(settings),
    )
    producer = None if dry_run else create_producer(settings, client_id="leadstream-dlq-redrive")
    await consumer.start()
    started = time.monotonic()
    try:
        if producer is not None:
            await producer.start()
        consumer.assign(tps)  # assigned, not subscribed: the group only stores offsets, nobody rebalances
        ends = dict(await consumer.end_offsets(tps))
        starts = dict(await consumer.beginning_offsets(tps))
        if not from_beginning:
            for tp in tps:
                committed = await consumer.committed(tp)
                if committed is not None:
                    starts[tp] = max(committed, starts[tp])
        total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
        async for polled in read_ranges(consumer, starts, ends):
            for tp, records in polled.items():
                sent = []
                for r in records:
                    report.read += 1
                    letter = DeadLetter.of(r)
                    if not letter.matches(error_code, group):
                        continue
                    report.matched += 1
                    if letter.value_omitted is not None:
                        report.omitted.append(letter)
                        continue
                    when = _event_time(r)
                    if not allow_stale and when is not None and when < horizon:
                        report.stale.append(letter)
                        continue
                    target = letter.original_topic or physical.removesuffix(".dlq")
                    report.by_topic[target] += 1
                    report.by_code[letter.error_code or "?"] += 1
                    if producer is not None:
                        sent.append(await producer.send(target, r.value, key=r.key, headers=redrive_headers(r.headers)))
                if producer is not None:
                    await asyncio.gather(*sent)
                    await consumer.commit({tp: records[-1].offset + 1})
                report.redriven += len(sent)
                if on_progress is not None:
                    on_progress(report.read, total, time.monotonic() - started)
        if producer is not None:
            # Past trailing transaction markers too, so the next run has nothing left to read here.
            done = {tp: await consumer.position(tp) for tp in tps if starts[tp] < ends[tp]}
            if done:
                await consumer.commit(done)
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()
    return report


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except DlqError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None


def _counts(by_code: Counter[str]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in by_code.most_common())


def _shorten(text: str | None, width: int = MESSAGE_WIDTH) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _short_origin(settings: RuntimeSettings, d: DeadLetter) -> str:
    topic = settings.base_topic(d.original_topic) if d.original_topic else "?"
    return f"{topic}:{_or_q(d.original_partition)}:{_or_q(d.original_offset)}"


TopicOption = Annotated[
    str, typer.Option(help="Topic whose DLQ to read: leadstream.lead.v1 or short: lead, campaign, ...")
]
CodeOption = Annotated[str | None, typer.Option("--error-code", help="Only dead letters with this dlq_error_code.")]
GroupOption = Annotated[
    str | None, typer.Option("--group", help="Only dead letters of this consumer group (dlq_consumer_group).")
]


@dlq_app.command("list")
def list_command(
    topic: TopicOption,
    error_code: CodeOption = None,
    group: GroupOption = None,
    limit: Annotated[int, typer.Option(min=0, help="Show the newest N matching dead letters (0: all).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout instead of a table.")] = False,
) -> None:
    """List the dead letters of a topic (read from its .dlq without a consumer group; nothing is changed).

    Ends with a count per error code of every matching dead letter (on stderr with --json).
    """
    from services.runtime.settings import RuntimeSettings

    settings = RuntimeSettings()
    listing: Listing = _run(list_dead_letters(settings, topic, error_code=error_code, group=group, limit=limit))
    if listing.matched == 0:
        (err_console if as_json else console).print(f"{NO_MATCH} (read {listing.read:,} from the DLQ)")
        return
    if as_json:
        for letter in listing.letters:
            print(json.dumps(letter.as_json(), ensure_ascii=False))
    else:
        origins = {d: _short_origin(settings, d) for d in listing.letters}
        table = Table(
            Column("dlq", no_wrap=True),
            Column("failed at", no_wrap=True),
            "consumer group",
            Column("error code", no_wrap=True),
            Column("error message", min_width=24),
            # Never ellipsized: operators copy these to look the record up.
            Column("original topic:partition:offset", no_wrap=True, min_width=max(map(len, origins.values()))),
            "event type",
            Column("event id", no_wrap=True, min_width=36),
            title=f"dead letters of {escape(dlq_topic(settings, topic))}"
            + (f" (topics without the prefix {escape(settings.topic_prefix)})" if settings.topic_prefix else ""),
        )
        for d in listing.letters:
            omitted = " [yellow](value omitted)[/]" if d.value_omitted is not None else ""
            table.add_row(
                f"{d.partition}/{d.offset}",
                escape((d.failed_at or "")[:19]),
                escape(d.consumer_group or ""),
                escape(d.error_code or "") + omitted,
                escape(_shorten(d.error_message)),
                escape(origins[d]),
                escape((d.event_type or "").removeprefix("leadstream.")),
                escape(d.event_id or ""),
            )
        console.print(table)
    shown = f", showing the newest {len(listing.letters):,}" if len(listing.letters) < listing.matched else ""
    summary = f"{listing.matched:,} dead letters{shown}: {_counts(listing.by_code)}"
    (err_console if as_json else console).print(summary)


@dlq_app.command("redrive")
def redrive_command(
    topic: TopicOption,
    error_code: CodeOption = None,
    group: GroupOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be re-driven; publish nothing.")] = False,
    from_beginning: Annotated[
        bool,
        typer.Option("--from-beginning", help="Forget this filter's progress: consider every dead letter again."),
    ] = False,
    allow_stale: Annotated[
        bool,
        typer.Option(
            "--allow-stale",
            help="Also re-drive events older than the consumers' dedupe memory (processed-events retention).",
        ),
    ] = False,
) -> None:
    """Re-publish dead letters to their original topic (dlq_original_topic) so the consumers handle them again.

    Each record keeps its key, value and headers; every dlq_* header is removed, so consumers see a new
    record. Publishing is idempotent with acks=all. Dead letters whose value was too large to keep
    (dlq_value_omitted) cannot be re-driven: they are skipped and listed.

    Progress is committed in the consumer group leadstream-dlq-redrive.<dlq topic>[.error_code=CODE][.group=GROUP]
    after the broker acknowledged the re-published records, so re-running the same command re-drives only
    dead letters that arrived since; --from-beginning starts over. The group's offsets expire with the
    broker's offsets.retention.minutes (7 days by default).

    Re-driving a record twice, or one whose event was meanwhile handled, is harmless: consumers
    deduplicate by event id (processed_events). They remember ids for LEADSTREAM_PROCESSED_EVENTS_RETENTION_DAYS,
    so dead letters whose event is older than that (less a day) are skipped and listed unless --allow-stale.
    """
    from services.runtime.settings import RuntimeSettings

    settings = RuntimeSettings()
    with progress_bar() as bar:
        task = bar.add_task("dry run" if dry_run else "redrive", total=None, rate=0.0, lag=0)

        def show(done: int, total: int, elapsed: float) -> None:
            rate = done / elapsed if elapsed > 0 else 0.0
            bar.update(task, total=total, completed=done, rate=rate, lag=max(total - done, 0))

        report: RedriveReport = _run(
            redrive(
                settings,
                topic,
                error_code=error_code,
                group=group,
                dry_run=dry_run,
                from_beginning=from_beginning,
                allow_stale=allow_stale,
                on_progress=show,
            )
        )
    console.print(f"consumer group {escape(report.group_id)}: {report.read:,} dead letters read since its last commit")
    if report.matched == 0:
        console.print(NO_MATCH)
        return
    verb = "would re-drive" if dry_run else "re-drove"
    count = sum(report.by_topic.values())
    targets = ", ".join(escape(t) for t in sorted(report.by_topic)) or "-"
    console.print(f"[green]{verb}[/] {count:,} dead letters to {targets} ({_counts(report.by_code) or 'none'})")
    if report.omitted:
        console.print(
            f"[yellow]skipped[/] {len(report.omitted):,} with dlq_value_omitted (the value is not in the DLQ; "
            "read it at the original offset):"
        )
        for d in report.omitted:
            console.print(f"  dlq {d.partition}/{d.offset} from {escape(d.origin)} event {escape(d.event_id or '?')}")
    if report.stale:
        console.print(
            f"[yellow]skipped[/] {len(report.stale):,} whose event is older than the consumers' dedupe memory "
            f"({settings.processed_events_retention_days:g} days): a consumer that handled it may have forgotten "
            "it and would apply it twice; --allow-stale --from-beginning re-drives them anyway"
        )
        for d in report.stale:
            console.print(f"  dlq {d.partition}/{d.offset} from {escape(d.origin)} event {escape(d.event_id or '?')}")
    if dry_run:
        console.print("dry run: nothing published, no progress committed")
