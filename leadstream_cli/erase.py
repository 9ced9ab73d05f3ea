"""``leadstream erase``: erase a lead's personal data by destroying their data key (crypto-shredding).

The same as ``POST /v1/leads/{lead_id}/erasure`` (outreach's API), for an operator: the key of the lead in
each workspace that holds one (or in ``--workspace``) is destroyed, and ``LeadErased`` is published for each,
with the id the API would give it (a second erasure, by either, is the same event and changes nothing).
Outreach's own copy and suppression follow from the API; from the CLI, the views blank theirs on
``LeadErased`` and every reader of the log sees ``[erased]`` at once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console

console = Console()


@dataclass
class ErasureReport:
    """Per workspace: erased now, or erased before."""

    erased: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


async def erase_lead(settings: object, lead_id: UUID, workspace: str | None) -> ErasureReport:
    """Destroy the keys and publish the ``LeadErased`` events (see the module)."""
    from leadstream_schemas import encode

    from services.runtime import personal
    from services.runtime.db import create_engine
    from services.runtime.kafka import create_producer
    from services.runtime.migrations import upgrade
    from services.runtime.settings import RuntimeSettings

    assert isinstance(settings, RuntimeSettings)
    await upgrade(personal.MIGRATIONS_DIR, settings.database_url, personal.SCHEMA)
    engine = create_engine(settings.database_url)
    report = ErasureReport()
    try:
        async with engine.begin() as conn:
            holding, erased_before = await personal.workspaces_of(conn, lead_id)
            targets = [workspace] if workspace else holding
            for ws in targets:
                if await personal.erase(conn, ws, lead_id):
                    report.erased.append(ws)
                else:
                    report.already.append(ws)
            if not workspace:
                report.already += [ws for ws in erased_before if ws not in report.already]
        # After the commit: an event published for a key still readable would tell the views too early.
        # Published for every workspace of the lead, again for those erased before (the same event id).
        producer = create_producer(settings, client_id="leadstream-erase")
        await producer.start()
        try:
            for ws in report.erased + report.already:
                env = personal.erasure_envelope(ws, lead_id, source="leadstream/cli", via="cli")
                key, value, headers = encode(env)
                await producer.send_and_wait(settings.topic_name(env.topic), value, key=key, headers=headers)
        finally:
            await producer.stop()
    finally:
        await engine.dispose()
    return report


def erase(
    lead: Annotated[UUID, typer.Option(help="The lead's id.")],
    workspace: Annotated[
        str | None,
        typer.Option(help="Only this workspace (default: every workspace holding a key of the lead)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Erase a lead's personal data (crypto-shredding): destroy their data key, publish LeadErased."""
    from services.runtime.settings import RuntimeSettings

    if workspace is not None and (not workspace.strip() or len(workspace) > 200):
        raise typer.BadParameter("1 to 200 characters", param_hint="--workspace")
    report = asyncio.run(erase_lead(RuntimeSettings(), lead, workspace))
    if as_json:
        print(json.dumps({"lead_id": str(lead), "erased": report.erased, "already": report.already}))
        return
    if not report.erased and not report.already:
        console.print(f"[yellow]no workspace holds a key of lead {lead}[/] (give --workspace to erase it anyway)")
        raise typer.Exit(1)
    for ws in report.erased:
        console.print(f"[green]erased[/] lead {lead} in workspace {ws}")
    for ws in report.already:
        console.print(f"[dim]already erased[/] lead {lead} in workspace {ws}")
