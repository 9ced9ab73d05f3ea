"""The transactional outbox and its relay.

Handlers never publish to Kafka directly: they add events to the ``outbox`` table inside the same
transaction as their state change. The relay publishes committed rows in order and deletes them
once the broker acknowledged them (acks=all). A crash between publish and delete re-publishes the
same event ids, which consumers deduplicate.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Iterable
from typing import Any

from faststream.kafka import KafkaBroker
from leadstream_schemas import Envelope, encode
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db import RuntimeTables
from .metrics import OUTBOX_BACKLOG, OUTBOX_PUBLISHED
from .settings import RuntimeSettings

log = logging.getLogger(__name__)


def outbox_rows(envelopes: Iterable[Envelope[Any]]) -> list[dict[str, Any]]:
    """Encode envelopes as outbox rows (topic is the contract name; the relay adds the prefix)."""
    rows = []
    for env in envelopes:
        key, value, headers = encode(env)
        rows.append(
            {
                "event_id": env.id,
                "topic": env.topic,
                "key": key,
                "value": value,
                "headers": [[k, v.decode()] for k, v in headers],
            }
        )
    return rows


async def add_to_outbox(conn: AsyncConnection, tables: RuntimeTables, envelopes: Iterable[Envelope[Any]]) -> int:
    """Insert envelopes into the outbox in the caller's transaction; an id already there is ignored."""
    rows = outbox_rows(envelopes)
    if not rows:
        return 0
    stmt = insert(tables.outbox).values(rows).on_conflict_do_nothing(index_elements=["event_id"])
    result = await conn.execute(stmt)
    return int(result.rowcount or 0)


def faststream_correlation_id(headers: dict[str, str]) -> str | None:
    """The value for FastStream's own ``correlation_id`` header: the event's correlation id.

    FastStream's ``publish`` always adds a ``correlation_id`` header and, when not given one, fills it
    with a fresh random uuid: it would contradict ``correlationid`` and change on every re-publish of
    the same event. Passing the contract's id keeps the record deterministic and consistent.
    """
    return headers.get("correlationid") or headers.get("ce_id")


class OutboxRelay:
    """Publishes a service's outbox to Kafka, oldest first, one relay at a time per schema."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: RuntimeTables,
        broker: KafkaBroker,
        settings: RuntimeSettings,
    ) -> None:
        self.engine = engine
        self.tables = tables
        self.broker = broker
        self.settings = settings
        self._wake = asyncio.Event()
        self._lock_id = zlib.crc32(f"leadstream-outbox:{tables.outbox.schema}".encode())
        self.healthy = True

    def wake(self) -> None:
        """Ask the relay to look at the outbox now (called after a handler committed)."""
        self._wake.set()

    async def publish_once(self) -> int:
        """Publish one batch; returns how many events were published."""
        t = self.tables.outbox
        async with self.engine.begin() as conn:
            # One relay per schema at a time keeps per-key order across replicas.
            got = await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": self._lock_id})
            if not got:
                return 0
            rows = (
                await conn.execute(
                    select(t.c.id, t.c.topic, t.c.key, t.c.value, t.c.headers)
                    .order_by(t.c.id)
                    .limit(self.settings.outbox_batch_size)
                )
            ).all()
            if not rows:
                return 0
            futures = []
            for row in rows:
                headers = dict(row.headers)
                fut = await self.broker.publish(
                    row.value,
                    self.settings.topic_name(row.topic),
                    key=row.key,
                    headers=headers,
                    correlation_id=faststream_correlation_id(headers),
                    no_confirm=True,
                )
                futures.append(fut)
            # Every send is awaited before raising, so a failed batch leaves no un-retrieved future behind;
            # the rows stay (the transaction rolls back) and the whole batch is published again.
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise failed[0]
            await conn.execute(delete(t).where(t.c.id.in_([r.id for r in rows])))
        OUTBOX_PUBLISHED.labels(self.settings.service_name).inc(len(rows))
        return len(rows)

    async def backlog(self) -> int:
        """How many events wait in the outbox."""
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(self.tables.outbox)) or 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; on broker or database errors back off and retry (nothing is lost)."""
        backoff = self.settings.consumer_backoff_initial_s
        while not stop.is_set():
            try:
                n = await self.publish_once()
                self.healthy = True
                backoff = self.settings.consumer_backoff_initial_s
                if n:
                    continue
                OUTBOX_BACKLOG.labels(self.settings.service_name).set(0)
            except Exception as exc:
                self.healthy = False
                log.warning("outbox relay failed, retrying", extra={"error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.consumer_backoff_max_s)
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.outbox_poll_interval_s)
            except TimeoutError:
                pass
