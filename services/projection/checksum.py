"""A digest of the views: two schemas with equal digests hold exactly the same view rows.

Only the view tables are digested (not the stored offsets, the applied-event ids or replay notes),
with every column, rows in primary-key order, times rendered in UTC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg

from services.runtime.notify import dsn as dsn  # re-exported: the projection's tools and tests import it here

from .store import SCHEMA, check_schema_name, views_for


@dataclass(frozen=True)
class TableDigest:
    """Row count and md5 of one view table."""

    table: str
    rows: int
    md5: str


@dataclass(frozen=True)
class Checksum:
    """The digest of every view table and the overall sha256 over them."""

    schema: str
    tables: tuple[TableDigest, ...]

    @property
    def digest(self) -> str:
        """One hex digest for the whole set of views."""
        h = hashlib.sha256()
        for t in self.tables:
            h.update(f"{t.table}:{t.rows}:{t.md5}\n".encode())
        return h.hexdigest()


async def schema_exists(conn: asyncpg.Connection, schema: str) -> bool:
    """True when ``schema`` exists."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema))


async def views_checksum(conn: asyncpg.Connection, schema: str = SCHEMA) -> Checksum:
    """Digest the views of ``schema`` (raises LookupError when the schema does not exist)."""
    check_schema_name(schema)
    if not await schema_exists(conn, schema):
        raise LookupError(f"schema {schema!r} does not exist")
    v = views_for(schema)
    out = []
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        for table in v.checksummed:
            cols = ", ".join(f'"{c.name}"' for c in table.columns)
            order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, md5(coalesce(string_agg(r::text, E'\\n' ORDER BY {order}), '')) AS d "
                f'FROM (SELECT {cols} FROM "{schema}"."{table.name}") r'
            )
            assert row is not None
            out.append(TableDigest(table.name, int(row["n"]), str(row["d"])))
    return Checksum(schema, tuple(out))
