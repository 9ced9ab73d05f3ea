"""The ``leadstream`` command: run services, manage local servers and topics, run the demo.

Every invocation imports this module and every command's module (typer reads each command's signature to parse
the arguments and to list them in ``--help``), so those modules import only typer, rich and the standard library at
the top: each command imports what it runs on (SQLAlchemy, aiokafka, FastStream, pydantic settings, the schemas)
inside its function. Imported at the top, they cost every command -- ``--help`` included -- a second or more of
CPU; the tests run the CLI as a subprocess about a hundred times, and operators run it in pods.
``tests/cli/test_startup.py`` checks that importing this module leaves them out.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .catalog import SERVICES
from .checkout import INFRA_SCRIPT, checkout

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

app = typer.Typer(help="leadstream: B2B outreach as event-sourced microservices on Kafka.", no_args_is_help=True)
infra_app = typer.Typer(help="Local Kafka broker and Postgres (deploy/local, in a checkout).", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics of the event contract.", no_args_is_help=True)
tokens_app = typer.Typer(help="Workspace API tokens.", no_args_is_help=True)
if checkout() is not None:  # an installed package (the image) has no deploy/local to run
    app.add_typer(infra_app, name="infra")
app.add_typer(topics_app, name="topics")
app.add_typer(tokens_app, name="tokens")
console = Console()


def service_builder(name: str):  # type: ignore[no-untyped-def]
    """The ``build`` function of a service's app module."""
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; choose one of: {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{name}.app").build


def _infra(action: str) -> None:
    root = checkout()
    assert root is not None, "the infra commands are only mounted in a source checkout"
    result = subprocess.run(["bash", str(root / INFRA_SCRIPT), action], cwd=root)
    raise typer.Exit(result.returncode)


@infra_app.command("up")
def infra_up() -> None:
    """Start Kafka and Postgres (idempotent); writes .run/env."""
    _infra("up")


@infra_app.command("down")
def infra_down() -> None:
    """Stop the servers this project started (by PID)."""
    _infra("down")


@infra_app.command("status")
def infra_status() -> None:
    """Show whether the local servers run."""
    _infra("status")


_OUTCOME_STYLE = {"created": "green", "updated": "yellow", "exists": "dim", "drift": "bold red"}
_DRY_RUN_LABEL = {"created": "would create", "updated": "would update"}


@topics_app.command("apply")
def topics_apply(
    partitions: Annotated[int | None, typer.Option(help="Partitions per topic (default: settings, 6).")] = None,
    allow_partition_increase: Annotated[
        bool,
        typer.Option(
            "--allow-partition-increase",
            help="Add partitions to topics that have fewer than desired (moves keys to other partitions).",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; change nothing.")] = False,
) -> None:
    """Reconcile every contract topic and its .dlq with the desired state (safe to rerun).

    Creates missing topics, fixes retention.ms, cleanup.policy, compression.type and min.insync.replicas
    (LEADSTREAM_TOPIC_MIN_INSYNC_REPLICAS, default min(2, replication factor)) on existing ones, and adds
    partitions only with --allow-partition-increase. Never deletes or shrinks anything: what it cannot fix
    (fewer partitions desired, another replication factor) is drift, and the command then exits 1.
    """
    from services.runtime.kafka import apply_topics
    from services.runtime.settings import RuntimeSettings

    settings = RuntimeSettings()
    report = asyncio.run(
        apply_topics(settings, partitions, allow_partition_increase=allow_partition_increase, dry_run=dry_run)
    )
    title = f"topics on {settings.kafka_bootstrap_servers}" + (" (dry run: nothing changed)" if dry_run else "")
    table = Table("topic", "outcome", "details", title=title)
    for result in sorted(report.results, key=lambda r: r.name):
        label = _DRY_RUN_LABEL.get(result.outcome, result.outcome) if dry_run else result.outcome
        # Values come from the broker: escape them so a "[" is shown, not read as rich markup.
        table.add_row(escape(result.name), f"[{_OUTCOME_STYLE[result.outcome]}]{label}[/]", escape(result.details))
    console.print(table)
    if report.has_drift:
        drifted = sum(r.outcome == "drift" for r in report.results)
        console.print(f"[bold red]drift[/]: {drifted} topic(s) differ from the desired state and were left alone")
        raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Apply the migrations of every service, the runtime's tables in each, the identity and key store schemas."""
    from services.runtime import identity as auth
    from services.runtime import personal
    from services.runtime.migrations import upgrade, upgrade_service
    from services.runtime.settings import RuntimeSettings

    settings = RuntimeSettings()

    async def go() -> None:
        await upgrade(auth.MIGRATIONS_DIR, settings.database_url, auth.IDENTITY_SCHEMA)
        await upgrade(personal.MIGRATIONS_DIR, settings.database_url, personal.SCHEMA)
        for name in SERVICES:
            # The package's folder without importing it: a service's app pulls in FastAPI, FastStream and the rest.
            spec = importlib.util.find_spec(f"services.{name}")
            assert spec is not None and spec.submodule_search_locations, f"services.{name} is not a package"
            folder = Path(next(iter(spec.submodule_search_locations)))
            await upgrade_service(folder / "migrations", settings.database_url, name)
            console.print(f"[green]migrated[/] {name}")

    asyncio.run(go())


@app.command()
def run(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")]) -> None:
    """Run one service in the foreground (same as ``python -m services.<name>``)."""
    from services.runtime.service import run_service

    run_service(service_builder(service))


async def _token_engine() -> AsyncEngine:
    """An engine on the identity schema, migrated first (the command may run before any service did)."""
    from services.runtime import identity as auth
    from services.runtime.db import create_engine
    from services.runtime.migrations import upgrade
    from services.runtime.settings import RuntimeSettings

    settings = RuntimeSettings()
    await upgrade(auth.MIGRATIONS_DIR, settings.database_url, auth.IDENTITY_SCHEMA)
    return create_engine(settings.database_url)


def _token_row(info: Any) -> dict[str, Any]:
    return {
        "token_id": str(info.token_id),
        "workspace_id": info.workspace_id,
        "label": info.label,
        "scopes": info.scopes,
        "prefix": info.prefix,
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }


@tokens_app.command("create")
def tokens_create(
    workspace: Annotated[str, typer.Option(help="Workspace id the token grants access to (at most 200 characters).")],
    scope: Annotated[
        list[str],
        typer.Option(
            help="read, write or admin (each includes the lower ones; admin deletes accounts, manages tokens)."
        ),
    ],
    label: Annotated[str, typer.Option(help="A note to recognise the token by (at most 200 characters).")] = "",
    expires_in_days: Annotated[int, typer.Option(min=1, max=3650, help="The token stops working after this.")] = 90,
    as_json: Annotated[bool, typer.Option("--json", help="Print the token and its details as JSON.")] = False,
) -> None:
    """Create an API token for a workspace and print it (shown once: only its hash is stored)."""
    from leadstream_schemas.bounds import unstorable

    from services.runtime import identity as auth

    for name, value in (("--workspace", workspace), ("--label", label)):
        problem = "must be at most 200 characters" if len(value) > 200 else unstorable(value)
        if problem or (name == "--workspace" and not value.strip()):
            raise typer.BadParameter(problem or "must not be empty", param_hint=name)
    try:
        auth.normalise_scopes(scope)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None

    async def go() -> auth.NewToken:
        engine = await _token_engine()
        try:
            expires = datetime.now(UTC) + timedelta(days=expires_in_days)
            return await auth.issue_token(engine, workspace, scopes=scope, label=label, expires_at=expires)
        finally:
            await engine.dispose()

    made = asyncio.run(go())
    if as_json:
        print(json.dumps({"token": made.token, **_token_row(made.info)}))
        return
    console.print(made.token)
    console.print(
        f"[dim]id {made.info.token_id} · scopes {', '.join(made.info.scopes)} · expires "
        f"{made.info.expires_at:%Y-%m-%d} · shown only now[/]"
    )


@tokens_app.command("list")
def tokens_list(
    workspace: Annotated[str, typer.Option(help="Workspace whose tokens to list.")],
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List a workspace's tokens: id, label, scopes, first characters, expiry (never the tokens themselves)."""
    from services.runtime import identity as auth

    async def go() -> list[auth.TokenInfo]:
        engine = await _token_engine()
        try:
            out: list[auth.TokenInfo] = []
            after = None
            while True:
                page = await auth.list_tokens(engine, workspace, include_revoked=include_revoked, after=after)
                out += page
                if len(page) < 200:
                    return out
                after = page[-1].token_id
        finally:
            await engine.dispose()

    rows = asyncio.run(go())
    if as_json:
        for info in rows:
            print(json.dumps(_token_row(info)))
        return
    table = Table("token id", "label", "scopes", "starts with", "created", "expires", "revoked", title=workspace)
    for info in rows:
        r = _token_row(info)
        table.add_row(
            r["token_id"],
            escape(info.label),
            ", ".join(info.scopes),
            info.prefix + "…",
            r["created_at"][:16],
            (r["expires_at"] or "never")[:16],
            (r["revoked_at"] or "")[:16],
        )
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (from `tokens list`).")]) -> None:
    """Revoke a token: every service refuses it within a second."""
    from services.runtime import identity as auth

    try:
        ident = uuid.UUID(token_id)
    except ValueError:
        raise typer.BadParameter("not a token id (a UUID from `leadstream tokens list`)") from None

    async def go() -> auth.TokenInfo | None:
        engine = await _token_engine()
        try:
            return await auth.revoke_token(engine, ident, datetime.now(UTC))
        finally:
            await engine.dispose()

    info = asyncio.run(go())
    if info is None:
        console.print(f"[red]no token {token_id}[/]")
        raise typer.Exit(1)
    console.print(
        f"revoked {info.token_id} ({escape(info.label) or 'no label'}, workspace {escape(info.workspace_id)})"
    )


@app.command()
def demo(
    once: Annotated[bool, typer.Option("--once", help="Exit after printing the results.")] = False,
    leads: Annotated[
        int, typer.Option(min=1, max=10_000, help="How many simulated leads the demo search finds (1-10,000).")
    ] = 25,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the campaign to play out.")] = 180.0,
    port_base: Annotated[
        int | None,
        typer.Option(help="Serve the services on this port and the next ones, in service order (default: 8101...)."),
    ] = None,
) -> None:
    """Start every service, run a demo campaign and print a lead's timeline and the summary.

    Ctrl-C, SIGTERM and SIGHUP stop every service it started.
    """
    from .demo import run_demo

    raise typer.Exit(run_demo(once=once, leads=leads, timeout_s=timeout, env=dict(os.environ), port_base=port_base))


def _mount_analyst_commands() -> None:
    """The analysts' commands: replay, export and views (built on the projection service)."""
    from . import export, replay, views

    app.add_typer(replay.replay_app, name="replay")
    app.add_typer(views.views_app, name="views")
    app.command("export")(export.export)


def _mount_operator_commands() -> None:
    """The operators' commands: dead letters (list, re-drive), parked outbox rows (list, retry, drop), erasure,
    key-encryption key rotation."""
    from . import dlq, erase, keys, outbox

    app.add_typer(dlq.dlq_app, name="dlq")
    app.add_typer(outbox.outbox_app, name="outbox")
    app.command("erase")(erase.erase)
    app.add_typer(keys.keys_app, name="keys")


_mount_analyst_commands()
_mount_operator_commands()
