"""``leadstream views``: inspect the projection's views (digest, schemas)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .errors import user_errors

views_app = typer.Typer(help="The projection's views: checksums and schemas.", no_args_is_help=True)
console = Console()


@views_app.command("checksum")
def checksum(
    schema: Annotated[
        str, typer.Option(help="Schema to digest: projection (live) or projection_<NAME>.")
    ] = "projection",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print a digest of every view table; a rebuild from offset 0 has the same digest as the live views."""
    import asyncpg

    from services.projection.checksum import dsn, views_checksum
    from services.projection.settings import ProjectionSettings

    settings = ProjectionSettings()

    async def go():  # type: ignore[no-untyped-def]
        conn = await asyncpg.connect(dsn(settings.database_url))
        try:
            return await views_checksum(conn, schema)
        finally:
            await conn.close()

    try:
        with user_errors(settings):
            result = asyncio.run(go())
    except (LookupError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        tables = {t.table: {"rows": t.rows, "md5": t.md5} for t in result.tables}
        print(json.dumps({"schema": result.schema, "digest": result.digest, "tables": tables}))
        return
    table = Table("view", "rows", "md5", title=f"views of {result.schema}")
    for t in result.tables:
        table.add_row(t.table, f"{t.rows:,}", t.md5)
    console.print(table)
    console.print(f"digest {result.digest}")


@views_app.command("schemas")
def schemas() -> None:
    """List the live views and every rebuild or retired schema with its replay status."""
    from services.projection.rebuilds import POD_PLAN_KEY, list_schemas, unfinished_workers
    from services.projection.settings import ProjectionSettings

    settings = ProjectionSettings()
    with user_errors(settings):
        rows = asyncio.run(list_schemas(settings))
    table = Table("schema", "live", "leads", "status", "mode", "since", "campaign", "workers", "finished")
    for r in rows:
        workers = str(r.get("workers") or "")
        if POD_PLAN_KEY in r and r.get("status") == "running":  # a pod rebuild being read: how far its workers are
            n = r[POD_PLAN_KEY]["workers"]
            workers = f"{n - len(unfinished_workers(r))}/{n} done"
        table.add_row(
            r["schema"],
            "yes" if r["live"] else "",
            f"{r['leads']:,}",
            str(r.get("status", "")),
            str(r.get("mode") or ""),
            str(r.get("since") or ""),
            str(r.get("campaign") or ""),
            workers,
            str(r.get("finished_at") or ""),
        )
    console.print(table)
