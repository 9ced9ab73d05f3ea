"""Alembic, driven from code: every service keeps its migrations in ``services/<name>/migrations``.

Each service's ``migrations/env.py`` is one call to :func:`run_env`. Migrations of one schema are
serialised with a Postgres advisory lock, so six services starting at once do not race.

The runtime's own tables have a migration line of their own, ``services/runtime/runtime_migrations``,
applied to every service schema after the service's line (:func:`upgrade_service`) with its own
version table (``runtime_alembic_version``): a new runtime table is one revision there, not one per
service. Its revisions are named for what they do (``runtime_outbox_parked``), not numbered.
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from .db import create_engine


def alembic_config(migrations_dir: Path, database_url: str, schema: str) -> Config:
    """An Alembic config for one service's migrations directory and schema."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["schema"] = schema
    return cfg


RUNTIME_MIGRATIONS_DIR = Path(__file__).parent / "runtime_migrations"
RUNTIME_VERSION_TABLE = "runtime_alembic_version"


async def upgrade(migrations_dir: Path, database_url: str, schema: str) -> None:
    """Bring ``schema`` to the newest revision (runs Alembic in a worker thread)."""
    cfg = alembic_config(migrations_dir, database_url, schema)
    await asyncio.to_thread(command.upgrade, cfg, "head")


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
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
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
