"""Counting the statements an engine sends about one table: a timer loop's claims and its idle looks ahead."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class Statements:
    """The statements about ``table`` (a name in the SQL text): claims (``FOR UPDATE SKIP LOCKED``) and an idle
    timer loop's looks ahead (the earliest time a row becomes claimable, a ``min(``)."""

    table: str
    claims: int = 0
    looks: int = 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.table in statement:
            if "SKIP LOCKED" in statement:
                self.claims += 1
            elif "min(" in statement:
                self.looks += 1


@asynccontextmanager
async def counting_statements(engine: AsyncEngine, table: str) -> AsyncIterator[Statements]:
    """Count the statements ``engine`` sends about ``table`` while inside."""
    seen = Statements(table)
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        yield seen
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)
