"""``leadstream outbox``: the outbox rows the broker refused, parked by the relay, per service schema.

    leadstream outbox list                          # every service's parked rows: error, event, size, age
    leadstream outbox list --service outreach --json
    leadstream outbox retry --service outreach --all          # back to the outbox (after raising a limit)
    leadstream outbox retry --service outreach EVENT_ID ...
    leadstream outbox drop --service outreach EVENT_ID --yes  # never published

The relay parks a row the broker refuses for what it is (too large, invalid) and goes on with the rows
behind it (``services.runtime.outbox``). ``retry`` moves rows back to the end of the outbox, where the
running service's relay publishes them; one the broker still refuses is parked again with the new error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from .catalog import SERVICES

if TYPE_CHECKING:  # imported where used: every CLI invocation imports this module (see leadstream_cli.main)
    from services.runtime.db import RuntimeTables
    from services.runtime.outbox import ParkedRow

outbox_app = typer.Typer(
    help="Parked outbox rows: list them, move them back to the outbox, drop them.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

MESSAGE_WIDTH = 60

ServiceOption = Annotated[
    str | None,
    typer.Option("--service", help=f"The service (schema) whose outbox to act on: {', '.join(SERVICES)}."),
]
EventIds = Annotated[list[UUID] | None, typer.Argument(help="Event ids of the parked rows (see list).")]
AllOption = Annotated[bool, typer.Option("--all", help="Every parked row of the service.")]


async def _schemas(conn: Any, wanted: str | None) -> list[str]:
    """The schemas to look at: ``wanted``, else every service whose outbox has a parked-rows table."""
    from sqlalchemy import text

    names = [wanted] if wanted else list(SERVICES)
    present = []
    for name in names:
        found = await conn.scalar(text("SELECT to_regclass(:t)"), {"t": f'"{name}".outbox_parked'})
        if found is not None:
            present.append(name)
        elif wanted:
            raise typer.BadParameter(
                f"schema {name!r} has no parked outbox rows table (is it migrated?)", param_hint="--service"
            )
    return present


def _tables(schema: str) -> RuntimeTables:
    from services.runtime.db import service_metadata

    return service_metadata(schema)[1]


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(engine)`` against the configured database."""
    from services.runtime.db import create_engine
    from services.runtime.settings import RuntimeSettings

    async def go() -> T:
        engine = create_engine(RuntimeSettings().database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _age(moment: datetime) -> str:
    seconds = int((datetime.now(UTC) - moment).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _size(n: int) -> str:
    return f"{n / 1_048_576:.1f} MiB" if n >= 1_048_576 else f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def _shorten(value: str, width: int = MESSAGE_WIDTH) -> str:
    value = " ".join(value.split())
    return value if len(value) <= width else value[: width - 1] + "…"


def _as_json(service: str, row: ParkedRow) -> dict[str, Any]:
    return {
        "service": service,
        "event_id": str(row.event_id),
        "event_type": row.event_type,
        "topic": row.topic,
        "key": row.key,
        "size": row.size,
        "error": row.error,
        "error_message": row.error_message,
        "created_at": row.created_at.isoformat(),
        "parked_at": row.parked_at.isoformat(),
    }


@outbox_app.command("list")
def list_command(
    service: ServiceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout instead of a table.")] = False,
) -> None:
    """List parked outbox rows per service: error, event type and id, size and age (nothing is changed)."""
    from services.runtime.outbox import parked_rows

    async def work(engine: Any) -> list[tuple[str, ParkedRow]]:
        async with engine.connect() as conn:
            schemas = await _schemas(conn, service)
        return [(s, row) for s in schemas for row in await parked_rows(engine, _tables(s))]

    found = _run(work)
    if not found:
        (err_console if as_json else console).print("no parked outbox rows")
        return
    if as_json:
        for name, row in found:
            print(json.dumps(_as_json(name, row), ensure_ascii=False))
        return
    table = Table(
        "service",
        Column("event id", no_wrap=True, min_width=36),
        "event type",
        Column("size", justify="right", no_wrap=True),
        Column("age", justify="right", no_wrap=True),
        Column("error", min_width=24),
        title="parked outbox rows",
    )
    for name, row in found:
        table.add_row(
            escape(name),
            str(row.event_id),
            escape((row.event_type or "?").removeprefix("leadstream.")),
            _size(row.size),
            _age(row.created_at),
            escape(f"{row.error}: {_shorten(row.error_message)}"),
        )
    console.print(table)
    console.print(f"{len(found):,} parked row(s); move them back with `leadstream outbox retry`")


def _selection(service: str | None, event_ids: list[UUID] | None, every: bool) -> tuple[str, list[UUID] | None]:
    if not service:
        raise typer.BadParameter("name the service whose parked rows to act on", param_hint="--service")
    if every == bool(event_ids):
        raise typer.BadParameter("give event ids or --all (not both)", param_hint="EVENT_IDS / --all")
    return service, None if every else event_ids


def _act(
    name: str,
    ids: list[UUID] | None,
    action: Callable[[Any, RuntimeTables, list[UUID] | None], Awaitable[int]],
    done: str,
) -> None:
    """Run ``action`` on the parked rows of schema ``name``; say what was done; exit 1 if some ids were not parked."""

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            await _schemas(conn, name)
        return await action(engine, _tables(name), ids)

    count = _run(work)
    console.print(f"{done} {count:,} parked row(s) of {escape(name)}")
    if ids is not None and count < len(ids):
        err_console.print(f"[yellow]{len(ids) - count:,} of the given event ids are not parked[/]")
        raise typer.Exit(1)


@outbox_app.command("retry")
def retry_command(service: ServiceOption = None, event_ids: EventIds = None, every: AllOption = False) -> None:
    """Move parked rows back to the end of the outbox; the service's relay publishes them (or parks them again)."""
    from services.runtime.outbox import unpark

    name, ids = _selection(service, event_ids, every)
    _act(name, ids, unpark, "[green]moved[/] back to the outbox:")


@outbox_app.command("drop")
def drop_command(
    service: ServiceOption = None,
    event_ids: EventIds = None,
    every: AllOption = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete parked rows for good: their events are never published."""
    from services.runtime.outbox import drop_parked

    name, ids = _selection(service, event_ids, every)
    what = "every parked row" if ids is None else f"{len(ids):,} parked row(s)"
    if not yes:
        typer.confirm(f"Drop {what} of {name}? Their events will never be published.", abort=True)
    _act(name, ids, drop_parked, "[red]dropped[/]")
