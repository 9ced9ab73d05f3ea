"""``leadstream export``: write a topic's decoded events to Parquet or JSONL for analysts.

    leadstream export --topic lead --format parquet --out lead.parquet
    leadstream export --topic leadstream.campaign.v1 --since 7d --format jsonl --out campaigns.jsonl
    leadstream export --topic lead --campaign ID --since 2026-01-01 --until 2026-02-01 --format parquet --out c.pq

Each row is one event: the envelope's columns (event_id, type, time, source, subject, workspace_id,
campaign_id, correlation_id, causation_id, traceparent), where it was read (topic, partition, offset)
and ``payload``, the event as JSON (a string column in Parquet, an object in JSONL). Old event
versions are upcast, so ``type`` is always a current type. ``--since``/``--until`` select by event
time; ``--campaign`` keeps the events of that campaign. Reading the Parquet file with DuckDB:

    SELECT type, count(*) FROM read_parquet('lead.parquet') GROUP BY type ORDER BY 2 DESC;
    SELECT time, json_extract_string(payload, '$.note') AS note
      FROM read_parquet('lead.parquet') WHERE type = 'leadstream.lead.invite_sent.v1';
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO
from uuid import UUID

import typer
from rich.console import Console

from .replay import parse_time, progress_bar

console = Console()

COLUMNS = (
    "event_id",
    "type",
    "time",
    "source",
    "subject",
    "workspace_id",
    "campaign_id",
    "correlation_id",
    "causation_id",
    "traceparent",
    "topic",
    "partition",
    "offset",
    "payload",
)


class Format(StrEnum):
    """Output formats."""

    parquet = "parquet"
    jsonl = "jsonl"


@dataclass
class ExportReport:
    """What an export wrote and skipped."""

    path: Path
    rows: int = 0
    read: int = 0
    undecodable: int = 0
    filtered: int = 0


def resolve_topic(name: str) -> str:
    """A contract topic name from ``leadstream.lead.v1`` or its short form ``lead`` (ValueError if unknown)."""
    from leadstream_schemas import TOPICS

    if name in TOPICS:
        return name
    for full in TOPICS:
        if full.split(".")[1] == name:
            return full
    raise ValueError(f"unknown topic {name!r}; one of: {', '.join(sorted(TOPICS))} (or lead, campaign, ...)")


def row_of(env: Any, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """One output row for a decoded envelope (payload as a JSON string)."""
    return {
        "event_id": str(env.id),
        "type": env.type,
        "time": env.time,
        "source": env.source,
        "subject": env.subject,
        "workspace_id": env.workspace_id,
        "campaign_id": env.campaign_id,
        "correlation_id": str(env.correlation_id) if env.correlation_id else None,
        "causation_id": str(env.causation_id) if env.causation_id else None,
        "traceparent": env.traceparent,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "payload": env.data.model_dump_json(),
    }


class _ParquetSink:
    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema(
            [
                ("event_id", pa.string()),
                ("type", pa.string()),
                ("time", pa.timestamp("us", tz="UTC")),
                ("source", pa.string()),
                ("subject", pa.string()),
                ("workspace_id", pa.string()),
                ("campaign_id", pa.string()),
                ("correlation_id", pa.string()),
                ("causation_id", pa.string()),
                ("traceparent", pa.string()),
                ("topic", pa.string()),
                ("partition", pa.int32()),
                ("offset", pa.int64()),
                ("payload", pa.string()),
            ]
        )
        self.writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.writer.write_table(self.pa.Table.from_pylist(rows, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


class _JsonlSink:
    def __init__(self, path: Path) -> None:
        self.file: TextIO = path.open("w", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            out = dict(row, time=row["time"].isoformat(), payload=json.loads(row["payload"]))
            self.file.write(json.dumps(out, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.file.close()


async def export_events(
    settings: Any,
    topic: str,
    fmt: Format,
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    campaign: UUID | None = None,
    batch_records: int = 5000,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> ExportReport:
    """Export the decoded events of ``topic`` (contract name) read up to the log end at the start."""
    import time

    from leadstream_schemas import DecodeError, decode

    from services.runtime.consuming.reader import log_consumer, read_ranges, start_offsets, topic_partitions
    from services.runtime.db import create_engine
    from services.runtime.personal import PersonalReader

    physical = settings.topic_name(resolve_topic(topic))
    tps = await topic_partitions(settings, [physical])
    consumer = log_consumer(settings, batch_records)
    await consumer.start()
    report = ExportReport(out)
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    sink: _ParquetSink | _JsonlSink = _ParquetSink(out) if fmt == Format.parquet else _JsonlSink(out)
    want = str(campaign) if campaign else None
    # Personal fields are decrypted with the key store; an erased person's read [erased] (never their data).
    engine = create_engine(settings.database_url)
    personal = PersonalReader.on_engine(engine)
    try:
        consumer.assign(tps)
        ends = dict(await consumer.end_offsets(tps))
        starts = await start_offsets(consumer, tps, since, ends)
        total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
        async for polled in read_ranges(consumer, starts, ends, max_records=batch_records):
            rows = []
            for records in polled.values():
                values = await personal.open_records(records, retry=False)
                for r, value in zip(records, values, strict=True):
                    report.read += 1
                    try:
                        env = decode(value, r.headers)
                    except DecodeError:
                        report.undecodable += 1
                        continue
                    owner = getattr(env.data, "campaign_id", None) or env.campaign_id
                    early = since is not None and env.time < since
                    late = until is not None and env.time >= until
                    if early or late or (want and str(owner) != want):
                        report.filtered += 1
                        continue
                    rows.append(row_of(env, r.topic, r.partition, r.offset))
            sink.write(rows)
            report.rows += len(rows)
            if on_progress is not None:
                on_progress(report.read, total, time.monotonic() - started)
    finally:
        sink.close()
        await consumer.stop()
        await engine.dispose()
    return report


def export(
    topic: Annotated[str, typer.Option(help="Topic to export: leadstream.lead.v1 or short: lead, campaign, ...")],
    fmt: Annotated[Format, typer.Option("--format", help="parquet or jsonl.")],
    out: Annotated[Path, typer.Option(help="File to write.")],
    since: Annotated[
        str | None, typer.Option(help="Events that happened at or after this time: ISO 8601 or a duration (7d).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Events that happened before this time: ISO 8601 or a duration ago.")
    ] = None,
    campaign: Annotated[UUID | None, typer.Option(help="Only this campaign's events.")] = None,
) -> None:
    """Write a topic's decoded events (envelope columns + payload JSON) to Parquet or JSONL."""
    from services.projection.settings import ProjectionSettings

    settings = ProjectionSettings()
    try:
        resolve_topic(topic)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--topic") from None
    start = parse_time(since) if since else None
    end = parse_time(until) if until else None
    with progress_bar() as bar:
        task = bar.add_task(f"export {topic}", total=None, rate=0.0, lag=0)

        def show(done: int, total: int, elapsed: float) -> None:
            rate = done / elapsed if elapsed > 0 else 0.0
            bar.update(task, total=total, completed=done, rate=rate, lag=max(total - done, 0))

        report = asyncio.run(
            export_events(settings, topic, fmt, out, since=start, until=end, campaign=campaign, on_progress=show)
        )
    skipped = f", {report.undecodable:,} undecodable skipped" if report.undecodable else ""
    console.print(f"[green]wrote[/] {report.rows:,} events to {report.path} ({fmt.value}){skipped}")
    if fmt == Format.parquet:
        console.print(f"query: duckdb -c \"SELECT type, count(*) FROM read_parquet('{report.path}') GROUP BY type\"")
