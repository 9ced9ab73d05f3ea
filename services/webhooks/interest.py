"""Which events some subscription may take, known before an event is decoded: the consumer's interest.

The webhooks service reads every contract topic, and most events are of workspaces without a subscription
that selects them. Handling each in a transaction of its own (key lookup, decryption, decoding, the event id,
the subscriptions read, a commit) made it the fleet's largest user of CPU at 200 lead events/s
(``bench/live.py``), for nothing. :class:`SubscriptionIndex` keeps each workspace's filters in memory and says
from the record's headers whether any subscription could take the event; only then is it handled, and the
handler's own read of the subscriptions, in its transaction, decides as before.

Kept right by ``LISTEN``: every change of a workspace's subscriptions (created, its filters changed, deleted)
announces the workspace on :data:`~.store.SUBSCRIPTIONS_CHANNEL` when it commits, and every replica's index
forgets the workspace. While the index is not listening (starting, or its connection lost) it says "maybe" to
everything (each event takes the full path, as before), and it forgets everything whenever it (re)connects.
A load that a change announcement overtook is used once, not kept.

How exact: without the index, a subscription takes the events of its workspace whose time is not before its
``created_at`` (read before the insert) and that are handled after it commits; an event handled between the
two is missed. With the index, so is one handled between the commit and the moment the announcement reaches
this process: milliseconds more of the same kind.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime

from leadstream_schemas import LeadErased
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.consumer import RecordMeta
from services.runtime.notify import listen

from . import domain, store

MAX_WORKSPACES = 10_000
"""Workspaces whose filters are kept (the least recently loaded are forgotten first: loaded again when asked)."""

Selectors = list[tuple[datetime, list[str]]]


class SubscriptionIndex:
    """Each workspace's subscription filters, in memory, for :meth:`wants` (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, database_url: str, *, max_workspaces: int = MAX_WORKSPACES) -> None:
        self.engine = engine
        self.database_url = database_url
        self.max_workspaces = max_workspaces
        self.listening = False
        self._known: OrderedDict[str, Selectors] = OrderedDict()
        self._generation = 0
        """Bumped by every announcement and (re)connection: a load it overtook is not kept."""

    async def wants(self, meta: RecordMeta) -> bool:
        """Whether a subscription of the event's workspace may take it (True when the index cannot tell)."""
        if meta.event_type == LeadErased.event_type:
            return True  # its handler also blanks the lead's stored deliveries, subscriptions or not
        if not self.listening:
            return True
        selectors = self._known.get(meta.workspace_id)
        if selectors is None:
            generation = self._generation
            async with self.engine.connect() as conn:
                selectors = await store.selectors_of(conn, meta.workspace_id)
            if generation != self._generation or not self.listening:
                return True  # a change may have been announced while loading: decide in the transaction
            self._remember(meta.workspace_id, selectors)
        return any(domain.selects(created, patterns, meta.time, meta.event_type) for created, patterns in selectors)

    def _remember(self, workspace_id: str, selectors: Selectors) -> None:
        self._known[workspace_id] = selectors
        while len(self._known) > self.max_workspaces:
            self._known.popitem(last=False)

    def changed(self, workspace_id: str) -> None:
        """A change of the workspace's subscriptions was announced: load them again when next asked."""
        self._generation += 1
        self._known.pop(workspace_id, None)

    def _connected(self) -> None:
        self._generation += 1
        self._known.clear()  # announcements made while nobody listened are lost: start from nothing
        self.listening = True

    def _lost(self) -> None:
        self.listening = False
        self._generation += 1
        self._known.clear()

    async def listen(self, stop: asyncio.Event) -> None:
        """Follow the announcements until ``stop`` (a task of the service)."""
        await listen(
            self.database_url,
            store.SUBSCRIPTIONS_CHANNEL,
            self.changed,
            stop,
            on_connected=self._connected,
            on_lost=self._lost,
            what="webhooks subscription index",
        )
