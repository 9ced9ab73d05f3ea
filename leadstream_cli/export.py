"""``leadstream export``: the event log as a warehouse-ready, Hive-partitioned Parquet dataset.

    leadstream export --out warehouse/                                  # every topic, from offset 0
    leadstream export --out warehouse/ --name nightly                   # incremental: continues where it stopped
    leadstream export --out warehouse/ --topic lead --workspace acme --since 7d
    leadstream export --out export/ --format jsonl --campaign ID

Layout: ``OUT/type=<event type>/date=<event date, UTC>/part-<name>-<run>.parquet``. Each event type has its own
typed columns (:mod:`leadstream_cli.warehouse`): the envelope (event_id, event_type, event_time, event_source,
event_subject, workspace_id, event_campaign_id, correlation_id, causation_id, traceparent, kafka_topic,
kafka_partition, kafka_offset) and the payload flattened (``hook__kind``; lists and maps as JSON). Old event
versions are upcast, so ``type`` is always a current type.

A named export (``--name``) keeps its position -- the next offset of every partition -- in
``OUT/_exports/<name>.json``, next to the data it describes, and the next run reads from there on. A run writes
its files under ``OUT/_tmp-<run>/`` and renames them into place only when it is complete, then its position:
a run that stops half way leaves nothing visible, and the next run reads the same offsets again and writes the
same file names, so no row is exported twice. A record that cannot be decoded is skipped and named; unless
``--allow-skipped``, the run then publishes nothing, keeps its position and exits 3 (nothing is lost silently).

A ``--workspace``, ``--campaign`` or time window that matched no event exports nothing and exits 0, as asked, and
says so in one line on stderr once the whole window is read (:mod:`leadstream_cli.nomatch`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from services.runtime.consuming.sightings import Sightings

from .errors import fail, notice, user_errors
from .nomatch import no_match, read_span
from .replay import parse_window, progress_bar

console = Console()
STATE_DIR = "_exports"
FLUSH_ROWS = 10_000
EXIT_SKIPPED = 3


class Format(StrEnum):
    """Output formats: Parquet (typed, compressed) or JSON lines (the same columns, one object per line)."""

    parquet = "parquet"
    jsonl = "jsonl"


@dataclass(frozen=True)
class Skipped:
    """A record that could not be decoded, and why."""

    topic: str
    partition: int
    offset: int
    code: str
    message: str


@dataclass
class ExportReport:
    """What a run read, wrote and skipped."""

    out: Path
    read: int = 0
    rows: int = 0
    filtered: int = 0
    per_type: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    published: bool = False
    positions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    sightings: Sightings = field(default_factory=Sightings)
    """The events of the time window per workspace and campaign (what a filter that matched nothing is told with)."""
    continued: bool = False
    """A named export that read on from its stored position (not from ``since`` or the start of the log)."""

    @property
    def rate(self) -> float:
        """Records read per second."""
        return self.read / self.seconds if self.seconds > 0 else 0.0


class ExportError(ValueError):
    """A request the export cannot carry out (unknown topic, a position the log no longer has, ...)."""


def resolve_topic(name: str) -> str:
    """A contract topic name from ``leadstream.lead.v1`` or its short form ``lead`` (ValueError if unknown)."""
    from leadstream_schemas import TOPICS

    if name in TOPICS:
        return name
    for full in TOPICS:
        if full.split(".")[1] == name:
            return full
    raise ValueError(f"unknown topic {name!r}; one of: {', '.join(sorted(TOPICS))} (or lead, campaign, ...)")


def state_path(out: Path, name: str) -> Path:
    """Where a named export keeps its position."""
    return out / STATE_DIR / f"{name}.json"


def load_positions(out: Path, name: str | None, selection: dict[str, Any]) -> dict[str, int] | None:
    """A named export's stored positions (``{"topic:partition": next offset}``), None for a new one.

    A named export always selects the same events: a run with other topics or filters would leave gaps (or
    repeat rows) under the same position, so it is refused (ExportError)."""
    if name is None or not state_path(out, name).exists():
        return None
    state = json.loads(state_path(out, name).read_text(encoding="utf-8"))
    stored = state.get("selection", selection)
    if stored != selection:
        # Name only what differs: the whole selection is a wall of text in which the difference is hard to see.
        differs = ", ".join(
            f"{key} {stored.get(key)!r} (this run: {selection.get(key)!r})"
            for key in sorted(set(stored) | set(selection))
            if stored.get(key) != selection.get(key)
        )
        raise ExportError(
            f"export {name!r} in {out} was made with {differs}: a named export keeps its selection; "
            "run it as before, or give this selection another --name"
        )
    return {k: int(v) for k, v in state["positions"].items()}


def check_output(out: Path) -> None:
    """Create ``out`` (and its parents) and make sure files can be written in it, before anything is read: a
    folder that cannot take the dataset is refused at once (ExportError), not after reading the whole log."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"cannot write the export to {out}: it is a file, not a folder")
    probe = out / f".leadstream-write-check-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ExportError(f"cannot write the export to {out}: {exc.strerror or exc}") from None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _Tables:
    """One typed table per event type: its payload columns and Arrow schema, derived once from the contract."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple[Any, Any]] = {}

    def of(self, event_type: str) -> tuple[Any, Any]:
        if event_type not in self.cache:
            from leadstream_schemas import EVENT_TYPES
            from leadstream_schemas.generate import event_schema

            from .warehouse import arrow_schema, payload_columns

            columns = payload_columns(event_schema(EVENT_TYPES[event_type]))
            self.cache[event_type] = (columns, arrow_schema(columns))
        return self.cache[event_type]


class _Partition:
    """The rows of one (type, date) partition of a run, written to its file under the run's temporary folder."""

    def __init__(self, path: Path, schema: Any, fmt: Format) -> None:
        self.path, self.schema, self.fmt = path, schema, fmt
        self.rows: list[dict[str, Any]] = []
        self.writer: Any = None
        self.file: TextIO | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == Format.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self.writer is None:
                self.writer = pq.ParquetWriter(str(self.path), self.schema, compression="zstd")
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        else:
            if self.file is None:
                self.file = self.path.open("w", encoding="utf-8")
            for row in self.rows:
                out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
                self.file.write(json.dumps(out, ensure_ascii=False) + "\n")
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
        if self.file is not None:
            self.file.close()


async def export_events(
    settings: Any,
    out: Path,
    *,
    topics: list[str] | None = None,
    name: str | None = None,
    fmt: Format = Format.parquet,
    workspace: str | None = None,
    campaign: UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    allow_skipped: bool = False,
    batch_records: int = 5000,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> ExportReport:
    """Export the decoded events of ``topics`` (contract names; default all) up to the log end at the start."""
    from leadstream_schemas import TOPICS, DecodeError, decode, event_campaign

    from services.runtime.consuming.reader import (
        end_offsets,
        log_consumer,
        read_ranges,
        start_offsets,
        topic_partitions,
    )
    from services.runtime.db import create_engine
    from services.runtime.personal import PersonalReader

    from .warehouse import flatten

    chosen = sorted({resolve_topic(t) for t in topics} if topics else TOPICS)
    if since is not None and until is not None and until < since:
        raise ExportError(f"--until {until.isoformat()} is before --since {since.isoformat()}")
    settings.key_wrapper()  # an unfit key (InsecureConfiguration) would otherwise fail at the first record
    check_output(out)
    tps = await topic_partitions(settings, [settings.topic_name(t) for t in chosen])
    selection = {
        "topics": chosen,
        "format": fmt.value,
        "workspace": workspace,
        "campaign": str(campaign) if campaign else None,
        "until": until.isoformat() if until else None,
    }
    stored = load_positions(out, name, selection)
    if stored is not None and since is not None:
        raise ExportError(f"--since starts a new export; {name!r} continues from its stored position")
    consumer = log_consumer(settings, batch_records)
    await consumer.start()
    want_campaign = str(campaign) if campaign else None
    report = ExportReport(out, continued=stored is not None)
    seen = report.sightings = Sightings(workspace=workspace, campaign=want_campaign)
    started = time.monotonic()
    tables = _Tables()
    parts: dict[tuple[str, str], _Partition] = {}
    # Personal fields are decrypted with the key store; an erased person's read [erased] (never their data).
    engine = create_engine(settings.database_url)
    personal = PersonalReader.on_engine(engine)
    tmp: Path | None = None
    try:
        consumer.assign(tps)
        ends = await end_offsets(consumer, tps)
        if stored is None:
            starts = await start_offsets(consumer, tps, since, ends)
        else:
            starts = {tp: stored.get(f"{tp.topic}:{tp.partition}", 0) for tp in tps}
            earliest = await consumer.beginning_offsets(tps)
            for tp in tps:
                if starts[tp] > ends[tp] or starts[tp] < earliest[tp]:
                    raise ExportError(
                        f"export {name!r} stopped at {tp.topic}[{tp.partition}]@{starts[tp]}, which the log no "
                        f"longer has (offsets {earliest[tp]}..{ends[tp]}): was the topic recreated?"
                    )
        # The run's files are named after where it starts: a run that is repeated (it stopped before storing its
        # position) writes the same names and replaces what it left, instead of adding rows twice.
        fingerprint = json.dumps(
            [name, fmt.value, workspace, want_campaign, str(since), str(until)]
            + [[tp.topic, tp.partition, starts[tp]] for tp in tps]
        )
        run = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        tmp = out / f"_tmp-{run}"
        shutil.rmtree(tmp, ignore_errors=True)
        file_name = f"part-{name or 'export'}-{run}.{fmt.value}"
        total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
        async for polled in read_ranges(consumer, starts, ends, max_records=batch_records):
            for records in polled.values():
                values = await personal.open_records(records)
                for r, value in zip(records, values, strict=True):
                    report.read += 1
                    try:
                        env = decode(value, r.headers)
                    except DecodeError as exc:
                        report.skipped.append(Skipped(r.topic, r.partition, r.offset, exc.code, exc.message))
                        continue
                    seen.records += 1
                    if (since is not None and env.time < since) or (until is not None and env.time >= until):
                        report.filtered += 1
                        continue
                    owner = event_campaign(env.data, env.campaign_id)
                    seen.add(env.workspace_id, str(owner) if owner else None)
                    if (workspace is not None and env.workspace_id != workspace) or (
                        want_campaign is not None and str(owner) != want_campaign
                    ):
                        report.filtered += 1
                        continue
                    columns, schema = tables.of(env.type)
                    day = env.time.astimezone(UTC).date().isoformat()
                    key = (env.type, day)
                    if key not in parts:
                        parts[key] = _Partition(tmp / f"type={env.type}" / f"date={day}" / file_name, schema, fmt)
                    parts[key].add(
                        {
                            "event_id": str(env.id),
                            "event_type": env.type,
                            "event_time": env.time,
                            "event_source": env.source,
                            "event_subject": env.subject,
                            "workspace_id": env.workspace_id,
                            "event_campaign_id": env.campaign_id,
                            "correlation_id": str(env.correlation_id) if env.correlation_id else None,
                            "causation_id": str(env.causation_id) if env.causation_id else None,
                            "traceparent": env.traceparent,
                            "kafka_topic": r.topic,
                            "kafka_partition": r.partition,
                            "kafka_offset": r.offset,
                            **flatten(env.data.model_dump(mode="json"), columns),
                        }
                    )
                    report.rows += 1
                    report.per_type[env.type] = report.per_type.get(env.type, 0) + 1
            if on_progress is not None:
                on_progress(report.read, total, time.monotonic() - started)
        for part in parts.values():
            part.close()
        report.positions = {f"{tp.topic}:{tp.partition}": ends[tp] for tp in tps}
        if report.skipped and not allow_skipped:
            shutil.rmtree(tmp, ignore_errors=True)  # nothing published, the position stays: nothing is lost
        else:
            for part in parts.values():
                final = out / part.path.relative_to(tmp)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(part.path, final)
                report.files.append(final)
            shutil.rmtree(tmp, ignore_errors=True)
            if name is not None:
                state = {
                    "name": name,
                    "selection": selection,
                    "positions": report.positions,
                    "exported_at": datetime.now(UTC).isoformat(),
                }
                _write_atomically(state_path(out, name), json.dumps(state, indent=2, sort_keys=True) + "\n")
            report.published = True
    finally:
        for part in parts.values():
            part.close()
        if not report.published and tmp is not None:  # a failed or interrupted run: the next one starts it anew
            shutil.rmtree(tmp, ignore_errors=True)
        await consumer.stop()
        await engine.dispose()
    report.seconds = time.monotonic() - started
    return report


def export(
    out: Annotated[Path, typer.Option(help="Folder of the dataset: OUT/type=<event type>/date=<day>/part-*.")],
    topic: Annotated[
        list[str] | None,
        typer.Option(
            help="Topic to export (repeatable): leadstream.lead.v1 or short: lead, campaign, ... Default: all."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Name of an incremental export: it keeps its position in OUT/_exports/NAME.json."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="parquet (default) or jsonl.")] = Format.parquet,
    workspace: Annotated[str | None, typer.Option(help="Only this workspace's events.")] = None,
    campaign: Annotated[UUID | None, typer.Option(help="Only this campaign's events.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Events that happened at or after this time: ISO 8601 or a duration (7d).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Events that happened before this time: ISO 8601 or a duration ago.")
    ] = None,
    allow_skipped: Annotated[
        bool, typer.Option(help="Publish the run even if some records could not be decoded (they are listed).")
    ] = False,
) -> None:
    """Write the decoded events as a Hive-partitioned dataset with typed columns per event type."""
    from services.projection.settings import ProjectionSettings

    if name is not None and (not name or not all(c.isalnum() or c in "-_" for c in name)):
        raise typer.BadParameter("letters, digits, - and _ only", param_hint="--name")
    for t in topic or []:
        try:
            resolve_topic(t)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--topic") from None
    window = parse_window(since, until)
    settings = ProjectionSettings()
    with progress_bar() as bar:
        task = bar.add_task("export", total=None, rate=0.0, lag=0)

        def show(done: int, total: int, elapsed: float) -> None:
            rate = done / elapsed if elapsed > 0 else 0.0
            bar.update(task, total=total, completed=done, rate=rate, lag=max(total - done, 0))

        try:
            with user_errors(settings):
                report = asyncio.run(
                    export_events(
                        settings,
                        out,
                        topics=topic,
                        name=name,
                        fmt=fmt,
                        workspace=workspace,
                        campaign=campaign,
                        since=window[0],
                        until=window[1],
                        allow_skipped=allow_skipped,
                        on_progress=show,
                    )
                )
        except (ExportError, LookupError) as exc:
            fail(str(exc))
        except OSError as exc:  # the dataset could not be written (a full disk, a folder removed meanwhile)
            if exc.filename is None:
                raise
            fail(f"cannot write the export to {out}: {exc.strerror or exc} ({exc.filename})")
        except KeyboardInterrupt:
            fail("interrupted: nothing of this run was published and the position was kept; run it again", 130)
    table = Table("event type", "rows", title=f"export to {out}")
    for event_type, n in sorted(report.per_type.items()):
        table.add_row(event_type, f"{n:,}")
    console.print(table)
    # Said once the whole window is read: a --workspace or --campaign that matched nothing is a typo as often as not.
    span = read_span(*window, start=f"the position of export {name!r}" if report.continued else "the start of the log")
    if topic:
        span += f" in {', '.join(sorted({resolve_topic(t) for t in topic}))}"
    notice(no_match(report.sightings, span=span, kept=report.rows, time_filtered=window != (None, None)))
    for s in report.skipped[:20]:
        console.print(f"[yellow]skipped[/] {s.topic}[{s.partition}]@{s.offset}: {s.code}: {s.message}")
    if report.skipped and not report.published:
        console.print(
            f"[red]{len(report.skipped):,} record(s) could not be decoded: nothing was published and the position "
            "was kept.[/] Fix or dead-letter them, or pass --allow-skipped to export without them."
        )
        raise typer.Exit(EXIT_SKIPPED)
    skipped = f", {len(report.skipped):,} undecodable skipped (allowed)" if report.skipped else ""
    console.print(
        f"[green]wrote[/] {report.rows:,} events in {len(report.files)} file(s) to {out} ({fmt.value}), "
        f"{report.filtered:,} filtered{skipped}; {report.rate:,.0f} records/s"
    )
    if name is not None:
        console.print(f"position kept in {state_path(out, name)}")
    if fmt == Format.parquet:
        console.print(
            f"query: duckdb -c \"SELECT type, count(*) FROM read_parquet('{out}/*/*/*.parquet', "
            'hive_partitioning = true) GROUP BY type"'
        )
