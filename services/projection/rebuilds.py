"""The views' schemas -- the live ``projection``, the rebuilds and the retired views (``projection_<name>``) -- and
what each replay noted about itself in its schema's ``replay_info`` table.

Read-only and cheap to import (asyncpg and the standard library): ``leadstream views schemas`` lists the schemas
without loading what a rebuild runs on (:mod:`.replay`: Kafka, the batch pipeline, the migrations), which is most
of that command's time otherwise. :mod:`.replay` and :mod:`.pods` write what is read here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import asyncpg

from services.runtime.notify import dsn

if TYPE_CHECKING:
    from services.runtime.settings import RuntimeSettings

SCHEMA = "projection"
"""The live views' schema: the service always reads and writes this name (a promotion renames schemas)."""
REPLAY_PREFIX = "projection_"
"""Prefix of the rebuilds' and the retired views' schemas."""


async def replay_info(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """What a replay recorded about itself in its schema (empty for a schema no replay built)."""
    rows = await conn.fetch(f'SELECT key, value FROM "{schema}".replay_info')
    return {r["key"]: json.loads(r["value"]) for r in rows}


POD_PLAN_KEY = "pod_plan"
"""The ``replay_info`` key of a rebuild read by independent workers (:mod:`.pods`): their number and shares."""


def worker_key(index: int) -> str:
    """The ``replay_info`` key where worker ``index`` of a pod rebuild notes that it has finished."""
    return f"worker.{index}"


def unfinished_workers(info: dict[str, Any]) -> list[int]:
    """The indexes of a pod rebuild's workers that have not finished reading (none for other rebuilds)."""
    plan = info.get(POD_PLAN_KEY)
    if plan is None or info.get("status") == "complete":
        return []
    return [i for i in range(plan["workers"]) if (info.get(worker_key(i)) or {}).get("status") != "done"]


async def list_schemas(settings: RuntimeSettings) -> list[dict[str, Any]]:
    """The live views and every rebuild or retired schema, with what their replay recorded."""
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        names = [
            r["nspname"]
            for r in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname = $1 OR nspname LIKE $2 ORDER BY nspname",
                SCHEMA,
                REPLAY_PREFIX.replace("_", "\\_") + "%",
            )
        ]
        out = []
        for n in names:
            has_info = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'replay_info')", n
            )
            if not has_info:
                continue
            info = await replay_info(conn, n)
            leads = await conn.fetchval(f'SELECT count(*) FROM "{n}".lead_state')
            out.append({"schema": n, "live": n == SCHEMA, "leads": leads, **info})
        return out
    finally:
        await conn.close()
