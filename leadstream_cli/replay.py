"""``leadstream replay``: rebuild the views from the log into a fresh schema, then promote it atomically.

leadstream replay --from-beginning --into rebuild1        # every event since offset 0
leadstream replay --since 2026-01-05T00:00:00Z --into jan  # events from a time on (also: --since 7d)
leadstream replay --from-beginning --until 2026-01-05T09:00:00Z --into monday  # the views as they stood then
leadstream replay --from-beginning --campaign <id> --into c1
leadstream views checksum --schema projection_rebuild1     # compare with `leadstream views checksum`
leadstream replay --promote rebuild1                       # swap it in (the old views are kept, renamed)
leadstream replay --drop retired_20260105120000000000      # remove a rebuild or retired views

A rebuild read by independent workers (the pods of an Indexed Job, or several machines):

leadstream replay start --from-beginning --into r1 --workers 4 [--promote-when-done]
leadstream replay worker --rebuild r1 --index 0             # ... --index 3; the index defaults to $JOB_COMPLETION_INDEX

A ``--campaign`` (or ``--since``) that matched no event is said in one line on stderr once the whole window is read
(:mod:`leadstream_cli.nomatch`), by the rebuild or by the pod worker that completes it; the exit status stays 0.
"""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .errors import fail, notice, user_errors
from .nomatch import no_match, read_span

replay_app = typer.Typer(
    help="Rebuild the projection's views from the event log into a fresh schema, and promote it.",
    invoke_without_command=True,
    no_args_is_help=True,
)
console = Console()

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when it has no offset) or a duration ago such as ``30m``, ``12h``, ``7d``."""
    value = value.strip()
    m = _DURATION.match(value)
    if m:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time (2026-01-05T08:00:00Z) or a duration (7d)"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as times; BadParameter when one is malformed, exit 1 when ``--until`` comes
    first."""
    start = parse_time(since) if since else None
    end = parse_time(until) if until else None
    if start is not None and end is not None and end < start:
        # Exit 1 with ``error:`` as before this was checked up front (scripts and tests match on it).
        fail(f"--until {end.isoformat()} is before --since {start.isoformat()}: nothing can be read")
    return start, end


def check_name(option: str, name: str) -> None:
    """A rebuild's name as a schema can have it (BadParameter naming ``option`` otherwise)."""
    from services.projection.store import replay_schema

    try:
        replay_schema(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def progress_bar() -> Progress:
    """A progress bar showing records done, records per second and the records still to read (lag)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9,.0f} records/s"),
        TextColumn("lag {task.fields[lag]:>9,}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@replay_app.callback()
def replay(
    ctx: typer.Context,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Read every topic from offset 0.")] = False,
    since: Annotated[
        str | None, typer.Option(help="Read from this time on: ISO 8601 (2026-01-05T08:00:00Z) or a duration (7d).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Rebuild the views as they stood at this time (ISO 8601 or a duration ago, 2d): stop every "
            "partition at its first record appended after it."
        ),
    ] = None,
    campaign: Annotated[
        UUID | None, typer.Option(help="Keep only this campaign's events (plus events of no campaign).")
    ] = None,
    into: Annotated[str | None, typer.Option(help="Name of the rebuild: views go to schema projection_<NAME>.")] = None,
    promote: Annotated[
        str | None, typer.Option(help="Swap the rebuild NAME in as the live views (one transaction).")
    ] = None,
    drop: Annotated[
        str | None, typer.Option(help="Drop the schema projection_<NAME> (a rebuild or retired views).")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Rebuild into NAME even if it exists (drops it first).")] = False,
    force: Annotated[bool, typer.Option(help="Promote a partial or unfinished rebuild anyway.")] = False,
    batch: Annotated[int, typer.Option(min=1, help="Records per transaction.")] = 10_000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes reading partitions in parallel (default: one per CPU; 1: this process)."),
    ] = None,
) -> None:
    """Rebuild the views (--from-beginning | --since, optionally --until, --into NAME), or --promote NAME, or
    --drop NAME."""
    from services.projection.replay import ReplayError
    from services.projection.settings import ProjectionSettings

    if ctx.invoked_subcommand is not None:
        return

    settings = ProjectionSettings()
    actions = [(o, a) for o, a in (("--promote", promote), ("--drop", drop), ("--into", into)) if a is not None]
    if len(actions) != 1:
        raise typer.BadParameter("give exactly one of --into NAME (rebuild), --promote NAME or --drop NAME")
    check_name(*actions[0])
    if into is not None:
        if from_beginning == (since is not None):
            raise typer.BadParameter("a rebuild needs exactly one of --from-beginning or --since TIME")
        window = parse_window(since, until)
    try:
        with user_errors(settings):
            if promote is not None:
                _promote(settings, promote, force)
            elif drop is not None:
                _drop(settings, drop)
            else:
                assert into is not None
                _rebuild(settings, into, window, campaign, replace, batch, workers)
    except (ReplayError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        # The rebuild dropped its schema (it had not started reading) or noted it failed: say how to go on.
        fail(
            f"interrupted: projection_{into} was not completed; run the same command with --replace to rebuild "
            f"it, or remove what it left (if `leadstream views schemas` lists it): leadstream replay --drop {into}",
            130,
        )


def _rebuild(
    settings: object,
    name: str,
    window: tuple[datetime | None, datetime | None],
    campaign: UUID | None,
    replace: bool,
    batch: int,
    workers: int | None,
) -> None:
    from services.projection.replay import ReplayProgress, rebuild
    from services.projection.settings import ProjectionSettings

    assert isinstance(settings, ProjectionSettings)
    since, until = window
    where = f"from {since.isoformat()}" if since else "from offset 0"
    where += f" until {until.isoformat()}" if until else ""
    console.print(
        f"rebuilding the views {where}{f' for campaign {campaign}' if campaign else ''} into [bold]projection_{name}[/]"
    )
    with progress_bar() as bar:
        task: TaskID = bar.add_task("replay", total=None, rate=0.0, lag=0)

        def show(p: ReplayProgress) -> None:
            bar.update(task, total=p.total, completed=p.done, rate=p.rate, lag=p.remaining)

        report = asyncio.run(
            rebuild(
                settings,
                name,
                since=since,
                until=until,
                campaign=campaign,
                replace=replace,
                batch_records=batch,
                on_progress=show,
                workers=workers,
            )
        )
    table = Table(
        "records read",
        "events applied",
        "duplicates",
        "dead-lettered",
        "filtered",
        "seconds",
        "records/s",
        "workers",
        title=f"rebuilt {report.schema}",
    )
    table.add_row(
        f"{report.records:,}",
        f"{report.applied:,}",
        f"{report.duplicates:,}",
        f"{report.dead_lettered:,}",
        f"{report.filtered:,}",
        f"{report.seconds:.1f}",
        f"{report.rate:,.0f}",
        str(report.workers),
    )
    console.print(table)
    if report.sightings is not None:  # a filtered rebuild: a --campaign (or --since) that matched nothing is said
        notice(no_match(report.sightings, span=read_span(since, until), time_filtered=since is not None))
    console.print(
        f"compare: leadstream views checksum --schema {report.schema}\npromote: leadstream replay --promote {name}"
    )


def _promote(settings: object, name: str, force: bool) -> None:
    from services.projection.replay import promote
    from services.projection.settings import ProjectionSettings

    assert isinstance(settings, ProjectionSettings)
    result = asyncio.run(promote(settings, name, force=force))
    kept = f"; the previous views are kept as [bold]{result.retired}[/]" if result.retired else ""
    console.print(f"[green]promoted[/] projection_{name} -> {result.promoted}{kept}")


def _drop(settings: object, name: str) -> None:
    from services.projection.replay import drop
    from services.projection.settings import ProjectionSettings

    assert isinstance(settings, ProjectionSettings)
    console.print(f"[green]dropped[/] {asyncio.run(drop(settings, name))}")


@replay_app.command("start")
def start(
    into: Annotated[str, typer.Option(help="Name of the rebuild: views go to schema projection_<NAME>.")],
    workers: Annotated[int, typer.Option(min=1, help="How many workers will read it (the Job's completions).")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Read every topic from offset 0.")] = False,
    since: Annotated[str | None, typer.Option(help="Read from this time on (ISO 8601 or a duration, 7d).")] = None,
    until: Annotated[str | None, typer.Option(help="Rebuild the views as they stood at this time.")] = None,
    campaign: Annotated[UUID | None, typer.Option(help="Keep only this campaign's events.")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Records per transaction.")] = 10_000,
    promote_when_done: Annotated[
        bool, typer.Option(help="The last worker to finish promotes the rebuild (a full rebuild only).")
    ] = False,
    replace: Annotated[bool, typer.Option(help="Drop an existing schema of that name first.")] = False,
    if_absent: Annotated[
        bool, typer.Option(help="When the rebuild exists (another pod started it), join it instead of failing.")
    ] = False,
) -> None:
    """Start a rebuild that WORKERS independent workers read (``leadstream replay worker``): capture the log
    ends and fix each worker's share of the partitions."""
    from services.projection.pods import start_pod_rebuild
    from services.projection.replay import ReplayError
    from services.projection.settings import ProjectionSettings

    if from_beginning == (since is not None):
        raise typer.BadParameter("a rebuild needs exactly one of --from-beginning or --since TIME")
    if promote_when_done and (since or until or campaign):
        raise typer.BadParameter("--promote-when-done promotes full rebuilds only (no --since, --until, --campaign)")
    check_name("--into", into)
    start_at, until_at = parse_window(since, until)
    settings = ProjectionSettings()
    try:
        with user_errors(settings):
            plan = asyncio.run(
                start_pod_rebuild(
                    settings,
                    into,
                    workers=workers,
                    since=start_at,
                    until=until_at,
                    campaign=campaign,
                    batch_records=batch,
                    promote_when_done=promote_when_done,
                    replace=replace,
                    if_absent=if_absent,
                )
            )
    except ReplayError as exc:
        fail(str(exc))
    for i, share in enumerate(plan.shares):
        console.print(f"worker {i}: {len(share)} partitions    leadstream replay worker --rebuild {into} --index {i}")


@replay_app.command("worker")
def worker(
    rebuild: Annotated[str, typer.Option(help="The rebuild started with `leadstream replay start --into NAME`.")],
    index: Annotated[
        int | None,
        typer.Option(min=0, help="This worker's index, 0..N-1 (default: $JOB_COMPLETION_INDEX of an Indexed Job)."),
    ] = None,
) -> None:
    """Read one worker's share of a started rebuild, resuming where a previous run of it stopped; the last
    worker to finish completes the rebuild (and promotes it when it was started with --promote-when-done)."""
    from services.projection.pods import run_pod_worker
    from services.projection.replay import ReplayError, ReplayProgress
    from services.projection.settings import ProjectionSettings

    if index is None:
        env = os.environ.get("JOB_COMPLETION_INDEX")
        if env is None or not env.isdigit():
            raise typer.BadParameter("give --index, or run as a pod of an Indexed Job (JOB_COMPLETION_INDEX)")
        index = int(env)
    check_name("--rebuild", rebuild)
    settings = ProjectionSettings()
    try:
        with user_errors(settings), progress_bar() as bar:
            task: TaskID = bar.add_task(f"worker {index}", total=None, rate=0.0, lag=0)

            def show(p: ReplayProgress) -> None:
                bar.update(task, total=p.total, completed=p.done, rate=p.rate, lag=p.remaining)

            outcome = asyncio.run(
                run_pod_worker(
                    settings, rebuild, index, on_progress=show, crash_after=settings.projection_crash_after_batches
                )
            )
    except ReplayError as exc:
        fail(str(exc))
    r = outcome.report
    console.print(
        f"worker {index}: {r.records:,} records read, {r.applied:,} applied, {r.duplicates:,} duplicates, "
        f"{r.dead_lettered:,} dead-lettered in {r.seconds:.1f} s; rebuild {rebuild}: {outcome.status}"
        + (" (this worker completed it)" if outcome.finalized else "")
    )
    if outcome.sightings is not None:  # the worker that completed a filtered rebuild knows what the whole of it read
        since_at, until_at = outcome.window
        notice(no_match(outcome.sightings, span=read_span(since_at, until_at), time_filtered=since_at is not None))
    if outcome.promotion is not None:
        console.print(f"[green]promoted[/] projection_{rebuild} -> {outcome.promotion.promoted}")
