"""The change stream: each workspace's view changes, pushed to HTTP clients as Server-Sent Events.

The batch applier appends one row per touched view row to ``changes`` (seq, workspace, kind, ids) in
the batch's transaction and calls ``pg_notify`` with the workspace id (:func:`notice`), which Postgres
delivers at commit to every listening session: every replica of the projection hears every commit,
whichever replica applied it. A :class:`ChangeHub` per process holds one LISTEN connection and wakes the
streams of that workspace, which read the rows after their position. The replica that applied a batch
wakes its own streams and lead watches at once, from the batch's changes (:meth:`ChangeHub.committed`),
and skips the notification of that batch when it arrives: in the measured live path, the notification's
way back through Postgres to the same process was a hop of its own (bench/results/NOTES.md).

A lead's watch (:meth:`ChangeHub.watching`) is what a waiting timeline read (``GET
/v1/leads/{id}/timeline?wait=``) waits on: woken by a committed change of that lead in this process,
or by a notification from another replica that names the lead (or names none: a batch that changed
more than :data:`.store.NOTICE_LEADS_MAX` of the workspace's leads).

An event's id is ``<epoch>-<seq>``. ``seq`` grows in commit order (the applier holds the schema's
apply lock while it writes), so a client that reconnects with ``Last-Event-ID`` gets exactly what it
missed. ``epoch`` names the live schema (its oid): after a promotion the log starts again, and a client
from before it, or one whose position was pruned, gets a ``reset`` event (reload everything) and
continues from the head of the new log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.runtime.db import read
from services.runtime.notify import listen

from .store import CHANGES_PRUNED_KEY, Views, changes_channel, notice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Position:
    """Where a stream starts: after ``seq`` in the log of ``epoch``; ``reset`` when the client must reload."""

    epoch: int
    seq: int
    reset: bool


def parse_event_id(value: str | None) -> tuple[int, int] | None:
    """``(epoch, seq)`` of a ``Last-Event-ID`` this API sent, else None."""
    if not value:
        return None
    epoch, sep, seq = value.strip().partition("-")
    # ASCII digits only: str.isdigit() also holds for superscripts (int() refuses them) and other scripts' digits.
    if not sep or len(value) > 40 or not (epoch + seq).isascii() or not epoch.isdigit() or not seq.isdigit():
        return None
    return int(epoch), int(seq)


def resume(last: tuple[int, int] | None, epoch: int, head: int, pruned_through: int) -> Position:
    """Where a stream that last saw ``last`` continues (pure: the tests call it with every case).

    No id: from the head (the client just rendered the current views). An id of another epoch, one
    whose successors were pruned, or one ahead of the head (not from this log): a reset, then the head.
    """
    if last is None:
        return Position(epoch, head, reset=False)
    last_epoch, seq = last
    if last_epoch != epoch or seq < pruned_through or seq > head:
        return Position(epoch, head, reset=True)
    return Position(epoch, seq, reset=False)


COMMITTED_REMEMBERED = 1024
"""Batches of this process whose notification is still expected (:meth:`ChangeHub.committed`): a
notification arrives within milliseconds of its commit, so far fewer are ever outstanding."""


@dataclass(frozen=True)
class Change:
    """One change of a workspace's views."""

    seq: int
    kind: str
    lead_id: UUID | None
    campaign_id: UUID | None
    account_id: UUID | None
    search_id: UUID | None
    at: datetime


class ChangeHub:
    """One LISTEN connection per process, fanning notifications out to the streams of each workspace."""

    def __init__(
        self, views: Views, engine: AsyncEngine, read_engine: AsyncEngine, database_url: str, *, poll_s: float = 10.0
    ) -> None:
        self.views = views
        self.engine = engine
        """Writes (pruning)."""
        self.read_engine = read_engine
        """Reads of the log (:func:`services.runtime.db.read`): one round trip each, where a checked, transactional
        connection took six; every announced commit is read so by every stream of its workspace."""
        self.database_url = database_url
        self.channel = changes_channel(views.schema)
        self.poll_s = poll_s
        self.stopping = asyncio.Event()
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._leads: dict[str, dict[UUID, set[asyncio.Event]]] = {}
        """Lead watches, per workspace and lead (:meth:`watching`)."""
        self.watches = 0
        """Lead watches open now."""
        self.origin = uuid.uuid4().hex
        """This process, in the notifications of the batches it applies (see :meth:`committed`)."""
        self._committed: deque[int] = deque(maxlen=COMMITTED_REMEMBERED)
        self.listening = False
        q = f'"{views.schema}".changes'
        self._read = text(
            f"SELECT seq, kind, lead_id, campaign_id, account_id, search_id, at FROM {q} "
            f"WHERE workspace_id = :ws AND seq > :after ORDER BY seq LIMIT :limit"
        )
        self._where = text(
            f"SELECT (SELECT oid::bigint FROM pg_namespace WHERE nspname = :schema) AS epoch, "
            f"(SELECT coalesce(max(seq), 0) FROM {q}) AS head, "
            f"(SELECT (value #>> '{{}}')::bigint FROM \"{views.schema}\".replay_info WHERE key = :pruned) AS pruned"
        )
        self._prune = text(
            f"WITH gone AS (DELETE FROM {q} WHERE at < now() - make_interval(secs => :keep) RETURNING seq) "
            f'INSERT INTO "{views.schema}".replay_info AS r (key, value) '
            f"SELECT :pruned, to_jsonb(max(seq)) FROM gone HAVING count(*) > 0 "
            f"ON CONFLICT (key) DO UPDATE SET value = to_jsonb(GREATEST((r.value #>> '{{}}')::bigint, "
            f"(EXCLUDED.value #>> '{{}}')::bigint))"
        )

    # -- listening --------------------------------------------------------------------------------

    def wake(self, workspace: str | None = None) -> None:
        """Wake the streams and lead watches of ``workspace`` (all when None)."""
        groups = self._waiters.values() if workspace is None else [self._waiters.get(workspace, set())]
        for group in groups:
            for event in group:
                event.set()
        watched = self._leads.values() if workspace is None else [self._leads.get(workspace, {})]
        for leads in watched:
            for events in leads.values():
                for event in events:
                    event.set()

    def notified(self, payload: str) -> None:
        """A commit's notification: wake its workspace's streams and the watches of the leads it names (all of the
        workspace's when it names none), unless this process applied the batch and woke them already."""
        n = notice(payload)
        if n.origin == self.origin and n.batch in self._committed:
            self._committed.remove(n.batch)
            return
        if n.leads is None:
            self.wake(n.workspace)
            return
        self._wake_streams(n.workspace)
        for lead in n.leads:
            self._wake_lead(n.workspace, lead)

    def _wake_streams(self, workspace: str) -> None:
        for event in self._waiters.get(workspace, ()):
            event.set()

    def _wake_lead(self, workspace: str, lead: UUID) -> None:
        for event in self._leads.get(workspace, {}).get(lead, ()):
            event.set()

    def committed(self, batch: int, changes: Iterable[tuple[str, UUID | None]]) -> None:
        """This process committed batch ``batch`` with ``changes`` ((workspace, lead) pairs): wake the streams of
        the workspaces and the watches of the leads now (its notification is then skipped, :meth:`notified`)."""
        self._committed.append(batch)
        workspaces: set[str] = set()
        for workspace, lead in changes:
            workspaces.add(workspace)
            if lead is not None:
                self._wake_lead(workspace, lead)
        for workspace in workspaces:
            self._wake_streams(workspace)

    @contextlib.contextmanager
    def watching(self, workspace: str, lead: UUID) -> Iterator[asyncio.Event]:
        """An event set when ``lead`` may have changed (or the service stops): open it before reading, so that a
        commit between the read and the wait is not missed; clear it before each read."""
        event = asyncio.Event()
        events = self._leads.setdefault(workspace, {}).setdefault(lead, set())
        events.add(event)
        self.watches += 1
        if self.stopping.is_set():
            event.set()
        try:
            yield event
        finally:
            self.watches -= 1
            events.discard(event)
            if not events:
                leads = self._leads[workspace]
                del leads[lead]
                if not leads:
                    del self._leads[workspace]

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the LISTEN connection until ``stop``; reconnect with backoff (streams poll meanwhile)."""

        def connected() -> None:
            self.listening = True
            self.wake()  # anything committed while not listening is read now

        def lost() -> None:
            self.listening = False

        try:
            await listen(
                self.database_url,
                self.channel,
                self.notified,
                stop,
                on_connected=connected,
                on_lost=lost,
                what="change stream",
            )
        finally:
            self.stopping.set()
            self.wake()

    async def prune(self, stop: asyncio.Event, keep_s: float, every_s: float) -> None:
        """Delete changes older than ``keep_s`` every ``every_s`` and remember how far (readers behind it reset)."""
        while not stop.is_set():
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(self._prune, {"keep": keep_s, "pruned": CHANGES_PRUNED_KEY})
            except Exception as exc:
                log.warning("change stream: pruning failed", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)

    # -- reading ----------------------------------------------------------------------------------

    async def position(self, last_event_id: str | None) -> Position:
        """Where a stream with this ``Last-Event-ID`` starts."""

        async def where(conn: AsyncConnection) -> Row[Any]:
            return (await conn.execute(self._where, {"schema": self.views.schema, "pruned": CHANGES_PRUNED_KEY})).one()

        row = await read(self.read_engine, where)
        pruned = int(row.pruned or 0)
        # Everything pruned: the next seq still follows the pruned ones.
        head = max(int(row.head), pruned)
        return resume(parse_event_id(last_event_id), int(row.epoch or 0), head, pruned)

    async def epoch(self) -> int:
        """The current epoch (the live schema's oid)."""
        return (await self.position(None)).epoch

    async def read(self, workspace: str, after: int, limit: int = 500) -> list[Change]:
        """The workspace's changes after ``after``, oldest first."""

        async def after_seq(conn: AsyncConnection) -> Sequence[Row[Any]]:
            return (await conn.execute(self._read, {"ws": workspace, "after": after, "limit": limit})).all()

        rows = await read(self.read_engine, after_seq)
        return [Change(r.seq, r.kind, r.lead_id, r.campaign_id, r.account_id, r.search_id, r.at) for r in rows]

    async def follow(self, workspace: str, start: Position) -> AsyncIterator[tuple[Position, list[Change]]]:
        """Batches of the workspace's changes from ``start`` on, as they commit, until the service stops.

        Yields ``(position, [])`` when the epoch changed (a promotion): the caller sends a reset.
        """
        wake = asyncio.Event()
        self._waiters.setdefault(workspace, set()).add(wake)
        pos = start
        try:
            while not self.stopping.is_set():
                wake.clear()
                changes = await self.read(workspace, pos.seq)
                if changes:
                    pos = Position(pos.epoch, changes[-1].seq, reset=False)
                    yield pos, changes
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=self.poll_s)
                if not wake.is_set():  # a quiet while: check the log is still the same one
                    now = await self.position(None)
                    if now.epoch != pos.epoch:
                        pos = Position(now.epoch, now.seq, reset=True)
                        yield pos, []
        finally:
            group = self._waiters.get(workspace)
            if group is not None:
                group.discard(wake)
                if not group:
                    del self._waiters[workspace]
