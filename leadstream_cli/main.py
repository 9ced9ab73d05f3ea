"""The ``leadstream`` command: run services, manage local servers and topics, run the demo."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.runtime.settings import RuntimeSettings

from .checkout import INFRA_SCRIPT, checkout
from .processes import SERVICES

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
    """Apply the migrations of every service, the runtime's tables in each, and the identity schema."""
    from services.runtime import auth
    from services.runtime.migrations import upgrade, upgrade_service

    settings = RuntimeSettings()

    async def go() -> None:
        await upgrade(auth.MIGRATIONS_DIR, settings.database_url, auth.IDENTITY_SCHEMA)
        for name in SERVICES:
            module = importlib.import_module(f"services.{name}.app")
            await upgrade_service(Path(module.__file__).parent / "migrations", settings.database_url, name)  # type: ignore[arg-type]
            console.print(f"[green]migrated[/] {name}")

    asyncio.run(go())


@app.command()
def run(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")]) -> None:
    """Run one service in the foreground (same as ``python -m services.<name>``)."""
    from services.runtime.service import run_service

    run_service(service_builder(service))


@tokens_app.command("create")
def tokens_create(
    workspace: Annotated[str, typer.Option(help="Workspace id the token grants access to (at most 200 characters).")],
    label: Annotated[str, typer.Option(help="A note to recognise the token by (at most 200 characters).")] = "",
) -> None:
    """Create an API token for a workspace and print it (only its hash is stored)."""
    from leadstream_schemas.bounds import unstorable

    for name, value in (("--workspace", workspace), ("--label", label)):
        problem = "must be at most 200 characters" if len(value) > 200 else unstorable(value)
        if problem or (name == "--workspace" and not value.strip()):
            raise typer.BadParameter(problem or "must not be empty", param_hint=name)
    from services.runtime import auth
    from services.runtime.db import create_engine
    from services.runtime.migrations import upgrade

    settings = RuntimeSettings()

    async def go() -> str:
        await upgrade(auth.MIGRATIONS_DIR, settings.database_url, auth.IDENTITY_SCHEMA)
        engine = create_engine(settings.database_url)
        try:
            return await auth.create_token(engine, workspace, label)
        finally:
            await engine.dispose()

    console.print(asyncio.run(go()))


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
    """The operators' commands: dead letters (list, re-drive) and parked outbox rows (list, retry, drop)."""
    from . import dlq, outbox

    app.add_typer(dlq.dlq_app, name="dlq")
    app.add_typer(outbox.outbox_app, name="outbox")


_mount_analyst_commands()
_mount_operator_commands()
