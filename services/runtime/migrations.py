"""Alembic, driven from code: every service keeps its migrations in ``services/<name>/migrations``.

Each service's ``migrations/env.py`` is one call to :func:`run_env`. Migrations of one schema are
serialised with a Postgres advisory lock, so six services starting at once do not race.

Compatibility across versions (rolling updates, ``helm rollback``): migrations are expand-only within a
release (add tables, columns, indexes; remove nothing older code still uses), so code of an older revision
keeps running on a newer schema. A migration that breaks older code says so with a module attribute::

    oldest_code_revision = "0003"   # code whose newest migration is older than 0003 cannot run on this schema

Every migration run records, for the schema's revision, the oldest code revision that still runs on it
(the newest such declaration along the revision history, else the first revision) in
``<schema>.schema_compat``. Code that finds a revision it does not know reads that row: it runs when its own
head is at or after the recorded revision, and refuses with :class:`SchemaIncompatible` otherwise.

The runtime's own tables have a migration line of their own, ``services/runtime/runtime_migrations``,
applied to every service schema after the service's line (:func:`upgrade_service`, :meth:`Service.migrate`)
with its own version and compatibility tables (``runtime_alembic_version``, ``runtime_schema_compat``): a
new runtime table is one revision there, not one per service. Its revisions are named for what they do
(``runtime_outbox_parked``), not numbered.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from .db import create_engine

log = logging.getLogger(__name__)

COMPAT_TABLE = "schema_compat"
RUNTIME_MIGRATIONS_DIR = Path(__file__).parent / "runtime_migrations"
RUNTIME_VERSION_TABLE = "runtime_alembic_version"


def compat_table(version_table: str) -> str:
    """The compatibility table that goes with a migration line's version table."""
    return version_table.replace("alembic_version", COMPAT_TABLE)  # runtime_alembic_version -> runtime_schema_compat


def line_tables(migrations_dir: Path) -> tuple[str, str]:
    """The version table and the compatibility table of a migration line in its schema."""
    runtime = migrations_dir.resolve() == RUNTIME_MIGRATIONS_DIR.resolve()
    versions = RUNTIME_VERSION_TABLE if runtime else "alembic_version"
    return versions, compat_table(versions)


def alembic_config(migrations_dir: Path, database_url: str, schema: str) -> Config:
    """An Alembic config for one service's migrations directory and schema."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["schema"] = schema
    return cfg


class SchemaNotReady(RuntimeError):
    """The schema cannot be used by this code as it is (behind, or too new); the message says what to do."""


class SchemaBehind(SchemaNotReady):
    """The schema is older than this code and this process may not migrate it."""


class SchemaIncompatible(SchemaNotReady):
    """The schema is at a newer revision that declares this code too old to run on it."""


SchemaState = Literal["current", "behind", "newer_compatible", "newer_incompatible"]


@dataclass(frozen=True)
class SchemaCheck:
    """Where a schema stands for this code: its revision, the code's head, and what follows."""

    schema: str
    revision: str | None
    code_head: str
    state: SchemaState
    # For a newer revision: the oldest code revision recorded as still running on it (None: not recorded).
    oldest_code: str | None = None

    def describe(self) -> str:
        """One line for logs and errors."""
        at = self.revision or "(none)"
        base = f"schema {self.schema!r} is at revision {at}, this code's head is {self.code_head}"
        if self.state == "behind":
            return f"{base}: migrate it first (`leadstream migrate`, the chart's migrate Job)"
        if self.state == "newer_compatible":
            return f"{base}: a newer schema that still runs code from revision {self.oldest_code} on"
        if self.state == "newer_incompatible":
            needs = f"code at revision {self.oldest_code} or later" if self.oldest_code else "newer code"
            return f"{base}: a newer schema that needs {needs} (no compatibility recorded for this code)"
        return base


def _script(migrations_dir: Path) -> ScriptDirectory:
    return ScriptDirectory(str(migrations_dir))


def _head(script: ScriptDirectory) -> str:
    heads = script.get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"{script.dir}: expected one head revision, found {heads}")
    return heads[0]


def _history(script: ScriptDirectory, revision: str) -> list[str]:
    """Revisions from the first one up to ``revision`` (linear history), oldest first."""
    return [s.revision for s in reversed(list(script.iterate_revisions(revision, "base")))]


def oldest_code_revision(script: ScriptDirectory, revision: str) -> str:
    """The oldest code revision that still runs on a schema at ``revision``.

    The newest ``oldest_code_revision`` declared along the history up to ``revision``; without any
    declaration (expand-only migrations), the first revision.
    """
    history = _history(script, revision)
    floor = 0
    for rev in history:
        declared = getattr(script.get_revision(rev).module, "oldest_code_revision", None)
        if declared is None:
            continue
        if declared not in history[: history.index(rev) + 1]:
            raise RuntimeError(f"migration {rev}: oldest_code_revision {declared!r} is not {rev} or one before it")
        floor = max(floor, history.index(declared))
    return history[floor]


async def _read_state(migrations_dir: Path, database_url: str, schema: str) -> tuple[str | None, dict[str, str]]:
    """The schema's Alembic revision of this line (None before its first migration) and its compatibility rows."""
    versions, compat = line_tables(migrations_dir)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            version_table = await conn.scalar(text("SELECT to_regclass(:t)"), {"t": f'"{schema}".{versions}'})
            revision = None
            if version_table is not None:
                revision = await conn.scalar(text(f'SELECT version_num FROM "{schema}".{versions}'))
            recorded: dict[str, str] = {}
            if await conn.scalar(text("SELECT to_regclass(:t)"), {"t": f'"{schema}".{compat}'}) is not None:
                rows = await conn.execute(text(f'SELECT revision, oldest_code_revision FROM "{schema}".{compat}'))
                recorded = {r.revision: r.oldest_code_revision for r in rows}
    finally:
        await engine.dispose()
    return revision, recorded


async def check_schema(migrations_dir: Path, database_url: str, schema: str) -> SchemaCheck:
    """Compare the schema's revision with this code's migrations (reads only; needs no DDL rights)."""
    script = _script(migrations_dir)
    head = _head(script)
    revision, compat = await _read_state(migrations_dir, database_url, schema)
    if revision == head:
        return SchemaCheck(schema, revision, head, "current")
    if revision is None or revision in _history(script, head):
        return SchemaCheck(schema, revision, head, "behind")
    oldest = compat.get(revision)
    runs = oldest is not None and oldest in _history(script, head)
    return SchemaCheck(schema, revision, head, "newer_compatible" if runs else "newer_incompatible", oldest)


async def prepare_schema(migrations_dir: Path, database_url: str, schema: str, *, migrate: bool) -> SchemaCheck:
    """Make sure this code can run on ``schema``: migrate it when allowed and behind, else check it.

    Raises :class:`SchemaBehind` when the schema is older and ``migrate`` is false, and
    :class:`SchemaIncompatible` when it is newer and not declared compatible with this code. A newer,
    compatible schema (an older pod during a rolling update or after a rollback) is logged and used as it is.
    """
    checked = await check_schema(migrations_dir, database_url, schema)
    if checked.state == "behind" and migrate:
        await asyncio.to_thread(command.upgrade, alembic_config(migrations_dir, database_url, schema), "head")
        checked = await check_schema(migrations_dir, database_url, schema)
    if checked.state == "behind":
        raise SchemaBehind(checked.describe())
    if checked.state == "newer_incompatible":
        raise SchemaIncompatible(checked.describe())
    if checked.state == "newer_compatible":
        log.warning("running on a newer schema", extra={"schema": schema, "detail": checked.describe()})
    return checked


async def upgrade(migrations_dir: Path, database_url: str, schema: str) -> None:
    """Bring ``schema`` to this code's newest revision; a newer compatible schema is left as it is."""
    await prepare_schema(migrations_dir, database_url, schema, migrate=True)


async def upgrade_service(migrations_dir: Path, database_url: str, schema: str) -> None:
    """Bring a service schema to its newest revision, then the runtime's tables in it to theirs."""
    await upgrade(migrations_dir, database_url, schema)
    await upgrade(RUNTIME_MIGRATIONS_DIR, database_url, schema)


def _do_run(connection: Connection, schema: str, target_metadata: MetaData | None, version_table: str) -> None:
    lock_id = zlib.crc32(f"leadstream-migrate:{schema}".encode())
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
    try:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            version_table_schema=schema,
            include_schemas=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
        _record_compat(connection, schema, version_table)
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
        connection.commit()


def _record_compat(connection: Connection, schema: str, version_table: str) -> None:
    """Record, for the schema's revision, the oldest code revision that still runs on it (under the lock)."""
    table = compat_table(version_table)
    revision = connection.execute(text(f'SELECT version_num FROM "{schema}".{version_table}')).scalar()
    if revision is None:
        return
    oldest = oldest_code_revision(context.script, revision)
    connection.execute(
        text(
            f'CREATE TABLE IF NOT EXISTS "{schema}".{table} ('
            "revision text PRIMARY KEY, oldest_code_revision text NOT NULL, "
            "recorded_at timestamptz NOT NULL DEFAULT now())"
        )
    )
    connection.execute(
        text(
            f'INSERT INTO "{schema}".{table} (revision, oldest_code_revision) VALUES (:r, :o) '
            "ON CONFLICT (revision) DO UPDATE SET oldest_code_revision = EXCLUDED.oldest_code_revision, "
            "recorded_at = now()"
        ),
        {"r": revision, "o": oldest},
    )
    connection.commit()


def run_env(target_metadata: MetaData | None = None, version_table: str = "alembic_version") -> None:
    """Body of every service's Alembic ``env.py`` (online mode only)."""
    cfg = context.config
    schema = cfg.attributes.get("schema") or (target_metadata.schema if target_metadata is not None else None)
    if not schema:
        raise RuntimeError("migrations need a schema (alembic config attribute 'schema')")
    url = cfg.get_main_option("sqlalchemy.url")
    assert url is not None

    async def go() -> None:
        engine = create_engine(url) if url.startswith("postgresql") else create_async_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(_do_run, schema, target_metadata, version_table)
        finally:
            await engine.dispose()

    asyncio.run(go())


def create_runtime_tables(schema: str) -> None:
    """Create the first runtime tables (processed events, outbox) in ``schema``; call from a service's first
    migration. Later runtime tables come from the runtime's own line (:func:`upgrade_service`)."""
    from alembic import op

    from .db import service_metadata

    metadata, _ = service_metadata(schema)
    metadata.create_all(op.get_bind())


def drop_runtime_tables(schema: str) -> None:
    """Drop the runtime tables of ``schema``; call from a service's first migration's downgrade."""
    from alembic import op

    from .db import service_metadata

    metadata, _ = service_metadata(schema)
    metadata.drop_all(op.get_bind())
