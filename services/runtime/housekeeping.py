"""Retention of the runtime's dedupe tables: ``processed_events`` and ``seen_webhooks`` stop growing for ever.

Both exist to recognise a delivery seen before, so an id may be forgotten once nothing can deliver it again:

``processed_events`` (kept ``LEADSTREAM_PROCESSED_EVENTS_RETENTION_DAYS``, 30, at least 8). A consumer sees a
record again when it was handled but its offset not yet committed (a crash, a rebalance): the record comes
back as soon as the group resumes, however long that takes. The group keeps its committed offsets while it
is empty only for the broker's ``offsets.retention.minutes`` (7 days by default); an outage longer than that
loses the offsets and the group starts over from the beginning of the log (``auto_offset_reset=earliest``),
which no retention can make harmless. So the redelivery horizon is the broker's offsets retention: ids are
kept beyond it (30 days: four times the default, and longer than any outage the group survives). Producers
re-publish within seconds (outbox rows after a relay crash). Dead letters re-driven by an operator can be
older: ``leadstream dlq redrive`` skips events older than the retention (less a day) unless told otherwise.

``seen_webhooks`` (``LEADSTREAM_SEEN_WEBHOOKS_RETENTION_DAYS``, 7). A signed webhook is refused when its
timestamp is more than 5 minutes away, but a sender retrying a delivery signs the same ``webhook-id`` with a
new timestamp; Standard Webhooks senders retry for about a day and a half (Svix: 5 s to 10 h apart, 8
attempts), so a week covers every retry.

The sweep runs every ``LEADSTREAM_HOUSEKEEPING_INTERVAL_S`` (an hour) on the wall clock (the scaled campaign
clock of the demo must not shorten a retention), one replica per schema at a time (an advisory lock), and
deletes in batches so no transaction holds many rows.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .clock import Clock, SystemClock
from .db import RuntimeTables
from .faults import Backoff, sleep_unless_stopped
from .webhooks import prune_seen

log = logging.getLogger(__name__)

BATCH = 5000


@dataclass(frozen=True)
class Swept:
    """Rows a sweep deleted, per table."""

    processed_events: int
    seen_webhooks: int


async def _prune_seen(table: Table, conn: AsyncConnection, cut: datetime) -> int:
    return await prune_seen(conn, table, cut, BATCH)


class Housekeeping:
    """The retention sweep of one service's schema."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: RuntimeTables,
        *,
        schema: str,
        processed_events_retention: timedelta,
        seen_webhooks_retention: timedelta,
        interval_s: float,
        seen_tables: Sequence[Table] = (),
        processed_events: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.processed_events = processed_events
        """Whether the schema has a ``processed_events`` table (not the one of a service that handles no events)."""
        self.tables = tables
        self.lock_key = zlib.crc32(f"leadstream-housekeeping:{schema}".encode())
        self.processed_events_retention = processed_events_retention
        self.seen_webhooks_retention = seen_webhooks_retention
        self.interval_s = interval_s
        self.seen_tables = list(seen_tables)
        self.clock: Clock = clock or SystemClock()
        self.healthy = True

    async def sweep(self) -> Swept:
        """Delete what is older than the retentions (nothing when another replica is sweeping this schema)."""
        now = self.clock.now()
        processed = 0
        if self.processed_events:
            processed = await self._batches(self._processed_batch, now - self.processed_events_retention)
        seen = 0
        for table in self.seen_tables:
            seen += await self._batches(partial(_prune_seen, table), now - self.seen_webhooks_retention)
        return Swept(processed, seen)

    async def _processed_batch(self, conn: AsyncConnection, cut: datetime) -> int:
        t = self.tables.processed_events
        oldest = select(t.c.event_id).where(t.c.processed_at < cut).limit(BATCH).with_for_update(skip_locked=True)
        result = await conn.execute(delete(t).where(t.c.event_id.in_(oldest.scalar_subquery())))
        return int(result.rowcount or 0)

    async def _batches(self, batch: Callable[[AsyncConnection, datetime], Awaitable[int]], cut: datetime) -> int:
        total = 0
        while True:
            async with self.engine.begin() as conn:
                if not await conn.scalar(select(func.pg_try_advisory_xact_lock(self.lock_key))):
                    return total
                n = await batch(conn, cut)
            total += n
            if n < BATCH:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``interval_s`` until ``stop`` (a failing sweep is logged and retried later)."""
        backoff = Backoff(1.0, self.interval_s)
        while not stop.is_set():
            try:
                swept = await self.sweep()
            except Exception as exc:
                self.healthy = False
                log.warning("retention sweep failed; retrying", extra={"error": repr(exc)})
                if await backoff.wait(stop):
                    return
                continue
            self.healthy = True
            backoff.reset()
            if swept.processed_events or swept.seen_webhooks:
                log.info(
                    "retention sweep",
                    extra={"processed_events": swept.processed_events, "seen_webhooks": swept.seen_webhooks},
                )
            if await sleep_unless_stopped(stop, self.interval_s):
                return
