"""``leadstream keys``: the key store's key-encryption keys (``LEADSTREAM_KEY_ENCRYPTION_KEY``).

Every personal data key is stored wrapped with a key-encryption key (KEK;
:class:`~services.runtime.personal.KeyWrapper`).
To rotate the KEK: put the new key first in ``LEADSTREAM_KEY_ENCRYPTION_KEY`` and keep the old one after it
(everywhere: services and this CLI), roll the services out (new data keys are wrapped with the new KEK, every data
key still opens), run ``leadstream keys rewrap`` (every stored data key is wrapped with the new KEK), then drop the
old key from the list.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console

console = Console()
keys_app = typer.Typer(help="Key-encryption keys of the personal data keys (rotation).", no_args_is_help=True)


async def rewrap_all(batch: int, workspace: str | None = None) -> tuple[int, int]:
    """Re-wrap every stored data key with the newest KEK of the environment's settings; (re-wrapped, kept)."""
    from services.runtime import personal
    from services.runtime.db import create_engine
    from services.runtime.migrations import upgrade
    from services.runtime.settings import RuntimeSettings

    settings = RuntimeSettings()
    wrapper = settings.key_wrapper()  # refuses an unset or development key outside development
    await upgrade(personal.MIGRATIONS_DIR, settings.database_url, personal.SCHEMA)
    engine = create_engine(settings.database_url)
    try:
        return await personal.rewrap(engine, wrapper, batch=batch, workspace=workspace)
    finally:
        await engine.dispose()


@keys_app.command("rewrap")
def rewrap(
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Keys per transaction.")] = 1000,
    workspace: Annotated[str | None, typer.Option(help="Only this workspace's keys (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Wrap every stored data key with the first LEADSTREAM_KEY_ENCRYPTION_KEY (after which older KEKs can go)."""
    from services.runtime.personal import KeyStoreError
    from services.runtime.secrets import InsecureConfiguration

    try:
        done, kept = asyncio.run(rewrap_all(batch, workspace))
    except (KeyStoreError, InsecureConfiguration) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps({"rewrapped": done, "current": kept}))
        return
    console.print(f"[green]re-wrapped {done} data keys[/] with the newest key-encryption key ({kept} were already)")
