"""The batch applier: applies a batch of records to the views and stores the consumed offsets in ONE transaction.

This is what gives the projection its exactly-once effect:

- the transaction first takes the schema's apply lock (one writer at a time per schema, so replicas
  and a rebalance never interleave half-batches) and reads the stored offsets of the batch's partitions
  (a rebuild's reader first loads the batch's event ids and timeline rows, which no batch reads, in a
  savepoint: see :meth:`BatchApplier._preload`);
- a partition whose stored offset is ahead of where the consumer fetched from (another replica got
  there first) has its already-applied records skipped; one whose stored offset is behind (the views
  were swapped by a promotion, or the consumer's idea of its position is stale) is not applied at all
  and the consumer is told to seek back;
- events are deduplicated by event id (``seen_events``, written in the same transaction), so even a
  record produced twice changes nothing;
- contributions are reduced in memory per row and written with set-based statements (array
  parameters with ``unnest``, binary COPY, upserts that merge commutatively): a fixed handful of
  round trips per batch, whatever its size.

The Python work (reducing a batch into column arrays) is done by :meth:`BatchApplier.plan` before the
transaction, assuming every event is new; the transaction redoes it only for the rare batch in which
some records were already applied.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from asyncpg.transaction import Transaction

from services.runtime.consuming.batch import TP, ApplyResult, DeadLetter
from services.runtime.consuming.sightings import Sightings

from . import domain
from .domain import EventRecord, Patch, TimelineRow
from .erasure import ERASED_TYPE, erase_people
from .fastpath import BatchReducer, Change, Writes, fold_into, rows
from .store import SCHEMA, TIMELINE_COLUMNS, Views, WriteSql, changes_channel, stage_table, write_sql


@dataclass(slots=True)
class Item:
    """One consumed record: where it came from and, when it decoded, its envelope."""

    topic: str
    partition: int
    offset: int
    envelope: EventRecord | None = None
    error: tuple[str, str] | None = None  # (code, message) when the record did not decode
    record: Any = None  # the raw consumer record, for dead-lettering


@dataclass
class _Preloaded:
    """What :meth:`BatchApplier._preload` loaded: its savepoint, the ids it found seen and the writes of the rest."""

    savepoint: Transaction
    seen: set[str]
    writes: Writes


@dataclass
class Plan:
    """A batch grouped by partition, deduplicated, with its writes computed as if every event were new."""

    by_tp: dict[TP, list[Item]]
    events: dict[str, Item]
    """The batch's distinct wanted events by id (canonical text)."""
    writes: Writes
    duplicates: int
    filtered: int
    undecodable: int = 0
    sightings: Sightings | None = None
    """What the batch held in the time window (an applier with :attr:`BatchApplier.sightings` only)."""


Committed = Callable[[int, list[tuple[str, UUID | None]]], None]
"""``committed(batch, [(workspace, lead), ...])``: what a batch that recorded changes touched, after its commit."""


class BatchApplier:
    """Applies batches of decoded records to the views of one schema.

    ``campaign`` restricts a replay to one campaign: events of other campaigns are skipped, events that
    belong to no campaign (discovery, enrichment, accounts, searches) are kept as shared context.
    ``since`` skips events that happened before it (their event time, not their append time).
    ``refresh_summaries=False`` leaves the campaign summaries to one :meth:`refresh_all_summaries` at
    the end (a rebuild, whose views nobody reads before it completes).

    ``hold_rows`` (a rebuild only) holds the lead rows (``lead_state``, ``lead_campaign``) back in
    memory across batches, merged, and writes them in :meth:`flush` (the rebuild calls it when
    :attr:`held` passes ``hold_rows`` and at the end): a lead row changes in most batches, and
    upserting it once instead of once per batch is about a third of the database's work in a rebuild.
    The merges commute, so the views are the same; until :meth:`flush`, the stored offsets are ahead
    of those rows, which is why only a rebuild (never read, never resumed before it completes) may
    do it. A batch's patches join the held rows only once its transaction committed.

    ``changes`` (default: only for the live schema) appends what each batch touched to the change
    log and notifies the workspaces' listeners when the transaction commits (the change stream).

    ``sightings`` (a filtered rebuild) counts the events of the time window per workspace and per campaign, so that a
    ``--campaign`` that matched nothing can be named; a batch's count joins it once its transaction committed.
    ``sightings_key`` (a pod worker) also keeps the count so far in ``replay_info`` under that key, in each batch's
    transaction: a worker that restarts resumes it with its offsets (see :mod:`.pods`).

    ``seen_window`` (a rebuild only) is for a ``seen_events`` loaded without its key (the rebuild adds it at the
    end, one sort instead of an index insert per event, about 1.5 us of Postgres per event): the ids this
    applier committed are the ones seen, the last ``seen_window`` to twice as many of them (a duplicate on the
    log follows its original closely: a producer's or a relay's retry). One it cannot know (further back, or
    read by another reader) makes the key fail when added, and the rebuild reads again with the key. The timeline
    is loaded unkeyed too (``replay.DEFERRED_KEYS``): such a reader loads a batch's ids and timeline rows before it
    takes the apply lock (:meth:`_preload`).
    """

    HELD_SPECS: tuple[domain.MergeSpec, ...] = (domain.LEAD_STATE, domain.LEAD_CAMPAIGN)
    """Tables a rebuild holds back: no statement of a batch reads them (the campaigns, which the
    audience derivation reads, are written with their batch)."""

    def __init__(
        self,
        views: Views,
        *,
        campaign: UUID | None = None,
        since: datetime | None = None,
        refresh_summaries: bool = True,
        hold_rows: int = 0,
        changes: bool | None = None,
        seen_window: int = 0,
        committed: Committed | None = None,
        origin: str = "",
        sightings: Sightings | None = None,
        sightings_key: str | None = None,
    ) -> None:
        self.views = views
        self.sightings = sightings
        self.sightings_key = sightings_key
        self.committed = committed
        """Called after each batch that recorded changes commits: ``committed(batch, [(workspace, lead), ...])``
        (the process's change hub wakes its streams and lead watches at once, :meth:`.live.ChangeHub.committed`)."""
        self.origin = origin
        """This process in the batches' notifications (the hub's :attr:`.live.ChangeHub.origin`)."""
        self.batches = 0
        """Batches with changes this applier started (each one's number in its notification)."""
        self.seen_window = seen_window
        self._recent: set[str] = set()  # the ids committed (seen_window): the newest generation ...
        self._older: set[str] = set()  # ... and the one before it
        self.record_changes = views.schema == SCHEMA if changes is None else changes
        self.channel = changes_channel(views.schema)
        self.refresh_summaries = refresh_summaries
        self.hold_rows = hold_rows
        self._held: dict[str, dict[tuple[Any, ...], Patch]] = {spec.table: {} for spec in self.HELD_SPECS}
        self.sql: WriteSql = write_sql(views)
        self.campaign = str(campaign) if campaign else None
        self.since = since

    def wanted(self, env: EventRecord, seen: Sightings | None = None) -> bool:
        """Whether a replay restricted to one campaign or a time keeps ``env``; ``seen`` counts it when it is in
        the time window."""
        if self.since is not None and env.time < self.since:
            return False
        if seen is None and self.campaign is None:
            return True
        # Read as the timeline reads it (an empty or malformed header is no campaign, any spelling of a UUID
        # the same one): a --campaign rebuild keeps exactly the events its views will show under the campaign.
        campaign = domain.campaign_of(env, env.data)
        owner = None if campaign is None else str(campaign)
        if seen is not None:
            seen.add(env.workspace_id, owner)
        return self.campaign is None or owner is None or owner == self.campaign

    # -- Python side ------------------------------------------------------------------------------

    def planner(self) -> Planner:
        """An incremental :class:`Plan` builder (feed it chunks, yield to the event loop in between)."""
        return Planner(self)

    def plan(self, items: Iterable[Item]) -> Plan:
        """Group, deduplicate and reduce a batch (records in offset order per partition). Pure CPU."""
        planner = self.planner()
        planner.add(items)
        return planner.finish()

    def reducer(self) -> BatchReducer:
        """A batch reducer writing as this applier does (held tables, summaries, change log)."""
        return BatchReducer(
            hold=self.HELD_SPECS if self.hold_rows else (),
            collect_leads=self.refresh_summaries,  # only the summary refresh reads them
            changes=self.record_changes,
        )

    def writes(self, items: Iterable[Item]) -> Writes:
        """Reduce ``items`` (distinct, new events) into statement parameters."""
        reducer = self.reducer()
        for it in items:
            if it.envelope is not None:
                reducer.add_event(it.envelope)
        return reducer.finish()

    # -- the transaction --------------------------------------------------------------------------

    async def apply(
        self,
        conn: asyncpg.Connection,
        items: Sequence[Item] | Plan,
        expected: Mapping[TP, int | None],
        dead_letter: DeadLetter | None = None,
    ) -> ApplyResult:
        """Apply a batch (records of one poll, in offset order per partition, or its plan) in one transaction.

        ``expected`` is, per partition, the offset the consumer fetched from (None or absent: unknown).
        ``dead_letter(record, code, message)`` is awaited for each applied record that carries an error
        (did not decode, or was refused), before the commit.
        """
        plan = items if isinstance(items, Plan) else self.plan(items)
        result = ApplyResult(duplicates=plan.duplicates, filtered=plan.filtered)
        if not plan.by_tp:
            return result
        counted = self._sightings_with(plan)
        held, applied, (batch, changes) = await self._apply(conn, plan, result, expected, dead_letter, counted)
        if counted is not None:
            self.sightings = counted  # committed: only now does the batch count
        if changes and self.committed is not None:
            self.committed(batch, [(c[0], c[2]) for c in changes])
        if held:
            self._hold(held)  # committed: only now may its patches join the rows held back
        if self.seen_window and applied:
            self._remember(applied)  # committed: only now are they seen
        return result

    async def _apply(
        self,
        conn: asyncpg.Connection,
        plan: Plan,
        result: ApplyResult,
        expected: Mapping[TP, int | None],
        dead_letter: DeadLetter | None,
        counted: Sightings | None = None,
    ) -> tuple[dict[str, dict[tuple[Any, ...], Patch]], list[str], tuple[int, list[Change]]]:
        """The transaction of :meth:`apply`; returns the held patches, the ids of the events it applied, and the
        number its notification gave the batch with the changes it recorded (0 and none: it recorded none)."""
        tps = sorted(plan.by_tp)
        applied: list[str] = []
        batch = 0
        async with conn.transaction():
            preloaded = await self._preload(conn, plan) if self.seen_window else None
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self.sql.lock_id)
            rows = await conn.fetch(self.sql.fence, [t for t, _ in tps], [p for _, p in tps])
            stored: dict[TP, int | None] = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
            kept: list[Item] = []
            trimmed = False
            for tp in tps:
                recs = plan.by_tp[tp]
                have = stored.get(tp)
                if have is None:  # nothing applied from this partition yet: the consumer started at its beginning
                    kept.extend(recs)
                    result.next_offsets[tp] = recs[-1].offset + 1
                    continue
                exp = expected.get(tp)
                if exp is not None and have < exp:
                    result.seeks[tp] = have  # the views are behind the consumer: re-read from where they are
                    trimmed = True
                    continue
                fresh = [r for r in recs if r.offset >= have]
                if not fresh:
                    result.seeks[tp] = have  # everything here was applied already (by another replica)
                    trimmed = True
                    continue
                trimmed = trimmed or len(fresh) != len(recs)
                kept.extend(fresh)
                result.next_offsets[tp] = recs[-1].offset + 1
            if preloaded is not None:
                if trimmed:  # someone else wrote (a rebuild then fails): undo the load, go on as a live batch does
                    await preloaded.savepoint.rollback()
                    preloaded = None
                else:
                    await preloaded.savepoint.commit()
            if dead_letter is not None:
                for it in kept:
                    if it.envelope is None:
                        await dead_letter(it.record, *(it.error or ("invalid", "record did not decode")))
                        result.dead_lettered += 1
            events = plan.events
            if trimmed:
                keep = {id(it) for it in kept}
                events = {eid: it for eid, it in events.items() if id(it) in keep}
            writes = plan.writes
            if events:
                ids = list(events)
                if preloaded is not None:
                    seen, writes = preloaded.seen, preloaded.writes
                else:
                    seen, writes = await self._new_writes(conn, events, writes, replan=trimmed)
                result.duplicates += len(seen)
                result.applied = len(ids) - len(seen)
                applied = [eid for eid in ids if eid not in seen] if seen else ids
                if result.applied:
                    batch = await self._write(conn, writes, timeline=preloaded is None)
                    erased = [
                        (it.envelope.workspace_id, it.envelope.data.lead_id)  # type: ignore[union-attr]
                        for eid, it in events.items()
                        if it.envelope is not None and it.envelope.type == ERASED_TYPE and eid not in seen
                    ]
                    await erase_people(conn, self.views, erased)
            if result.next_offsets:
                ordered = sorted(result.next_offsets.items())
                await conn.execute(
                    self.sql.store_offsets,
                    [t for (t, _), _ in ordered],
                    [p for (_, p), _ in ordered],
                    [o for _, o in ordered],
                )
            if counted is not None and self.sightings_key is not None:
                await conn.execute(
                    f'INSERT INTO "{self.views.schema}".replay_info (key, value) VALUES ($1, $2::jsonb) '
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    self.sightings_key,
                    json.dumps(counted.to_json()),
                )
        if not result.applied:
            return {}, applied, (0, [])
        return writes.held, applied, (batch, writes.changes if batch else [])

    def _sightings_with(self, plan: Plan) -> Sightings | None:
        """The count so far with ``plan``'s in (a copy: it replaces :attr:`sightings` once the batch committed)."""
        if self.sightings is None or plan.sightings is None:
            return None
        counted = copy.deepcopy(self.sightings)
        counted.merge(plan.sightings)
        return counted

    async def _record_seen(self, conn: asyncpg.Connection, ids: list[str]) -> set[str]:
        """Add a batch's distinct event ids to ``seen_events``; returns those that were there already.

        A batch of fewer than :data:`OPTIMISTIC_MIN_IDS` (the live service's usual one) does it in one
        statement, INSERT .. ON CONFLICT DO NOTHING RETURNING the ids it added: its round trip costs more than
        the speculative inserts of a few hundred ids. A larger batch (a rebuild's) uses plain COPY (a speculative
        insert costs Postgres about three times as much per event): every writer of this schema holds the apply
        lock, so no id appears between a lookup and the COPY. It skips the lookup: in a log, records seen before
        are rare, so it copies every id at once in a savepoint, and only when the key refuses one (a duplicate:
        the savepoint undoes the attempt) looks them up and copies the new ones.

        With ``seen_window`` (no key while a rebuild loads), the ids this applier committed are the seen ones.
        """
        if self.seen_window:
            seen = {eid for eid in ids if eid in self._recent or eid in self._older}
            if len(seen) < len(ids):
                await self._copy_seen(conn, [eid for eid in ids if eid not in seen] if seen else ids)
            return seen
        if len(ids) < OPTIMISTIC_MIN_IDS:
            added = {str(r[0]) for r in await conn.fetch(self.sql.insert_seen, ids)}
            return {eid for eid in ids if eid not in added}
        try:
            async with conn.transaction():  # a savepoint
                await self._copy_seen(conn, ids)
            return set()
        except asyncpg.UniqueViolationError:
            pass
        # The ids already seen come back (none in the common case) as canonical text, like the keys.
        seen = {str(r[0]) for r in await conn.fetch(self.sql.probe_seen, ids)}
        if len(seen) < len(ids):
            await self._copy_seen(conn, [eid for eid in ids if eid not in seen])
        return seen

    async def _new_writes(
        self, conn: asyncpg.Connection, events: dict[str, Item], writes: Writes, *, replan: bool
    ) -> tuple[set[str], Writes]:
        """Record ``events``' ids as seen; returns those seen before and the writes of the others: ``writes`` (the
        plan's) unless some were seen or ``replan`` (the plan was made for more events than ``events``)."""
        seen = await self._record_seen(conn, list(events))
        if replan or seen:
            writes = self.writes(it for eid, it in events.items() if eid not in seen)
        return seen, writes

    async def _preload(self, conn: asyncpg.Connection, plan: Plan) -> _Preloaded | None:
        """A rebuild's reader (``seen_window``) loads a batch's event ids and timeline rows before it takes the apply
        lock, in a savepoint: nothing a batch reads depends on them (its ids are seen by this reader's memory, the
        table has no key yet), and the lock, which orders what batches read and write (an audience derived from
        groups another batch adds), is then held a few milliseconds instead of the time it takes to encode and load
        the rows (most of a batch's transaction): the readers' loads run side by side. The caller releases the
        savepoint, or rolls it back when the fence finds that someone else wrote (then the batch is applied as the
        live service's is)."""
        if not plan.events:
            return None
        savepoint = conn.transaction()
        await savepoint.start()
        seen, writes = await self._new_writes(conn, plan.events, plan.writes, replan=False)
        if writes.timeline:
            await self._copy_timeline(conn, writes.timeline)
        return _Preloaded(savepoint, seen, writes)

    async def _copy_timeline(self, conn: asyncpg.Connection, rows: list[TimelineRow]) -> None:
        # Binary COPY: these ids were just added to seen_events, so none of the rows can exist yet. As plain
        # tuples: asyncpg reads a tuple's items directly and a NamedTuple's through the generic protocol
        # (2.6 -> 1.9 us of this process per row, measured).
        await conn.copy_records_to_table(
            "timeline", schema_name=self.views.schema, columns=TIMELINE_COLUMNS, records=[tuple(r) for r in rows]
        )

    async def _copy_seen(self, conn: asyncpg.Connection, ids: list[str]) -> None:
        await conn.copy_records_to_table(
            "seen_events", schema_name=self.views.schema, columns=("event_id",), records=[(eid,) for eid in ids]
        )

    def _remember(self, ids: list[str]) -> None:
        """Note a committed batch's ids as seen (``seen_window``): a full generation makes way for a new one."""
        if len(self._recent) >= self.seen_window:
            self._older, self._recent = self._recent, set()
        self._recent.update(ids)

    @property
    def held(self) -> int:
        """Rows held back (see ``hold_rows``)."""
        return sum(len(table) for table in self._held.values())

    async def flush(self, conn: asyncpg.Connection) -> None:
        """Write the rows held back (see ``hold_rows``) in one transaction under the apply lock.

        Merged, not plainly copied, even when this reader writes a row for the first time: the
        audience derivation inserts lead-campaign rows as soon as it knows a campaign's audience.
        """
        rows = self._held_rows()  # before the lock: other readers' batches need not wait for Python
        if not rows:
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self.sql.lock_id)
            await self._upsert(conn, rows)
        for table in self._held.values():
            table.clear()

    def _hold(self, held: dict[str, dict[tuple[Any, ...], Patch]]) -> None:
        """Merge a committed batch's held patches in."""
        for spec in self.HELD_SPECS:
            patches = held.get(spec.table)
            if not patches:
                continue
            table = self._held[spec.table]
            for key, patch in patches.items():
                fold_into(table, spec, key, patch)

    def _held_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        return {spec.table: rows(spec, held.values()) for spec in self.HELD_SPECS if (held := self._held[spec.table])}

    async def refresh_all_summaries(self, conn: asyncpg.Connection) -> None:
        """Recompute every campaign summary from the lead rows (one statement)."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self.sql.lock_id)
            await conn.execute(self.sql.refresh_all_summaries)

    async def _write(self, conn: asyncpg.Connection, w: Writes, *, timeline: bool = True) -> int:
        """Write a batch's new rows (``timeline=False``: its timeline rows are loaded already, :meth:`_preload`);
        returns the number the batch's notification gives it (0: it recorded no changes)."""
        summaries = self.refresh_summaries and bool(w.touched_leads)
        if summaries:  # what the batch's leads count before it (see WriteSql.summary_delta)
            await conn.execute(self.sql.summary_delta, w.touched_leads, -1)
        if timeline and w.timeline:
            await self._copy_timeline(conn, w.timeline)
        await self._upsert(conn, w.upserts)
        if w.groups:
            await conn.execute(
                self.sql.insert_groups, [g[0] for g in w.groups], [g[1] for g in w.groups], [g[2] for g in w.groups]
            )
        if w.groups or w.audience_campaigns:
            await conn.execute(self.sql.derive_membership, [g[2] for g in w.groups], w.audience_campaigns)
        if summaries:  # ... and after it: a summary moves by the difference, whatever the campaign's size
            await conn.execute(self.sql.summary_delta, w.touched_leads, 1)
        if self.refresh_summaries and w.touched_campaigns:
            # A campaign event (rare) recomputes its summary from all its rows: an audience derived at once adds
            # rows of leads the batch has no event of.
            await conn.execute(
                self.sql.refresh_summary, [ws for ws, _ in w.touched_campaigns], [c for _, c in w.touched_campaigns]
            )
        if w.changes:
            self.batches += 1
            batch = self.batches  # this batch's own number, whatever another batch of this applier does meanwhile
            await conn.execute(self.sql.record_changes, *_columns(w.changes), self.channel, self.origin, batch)
            return batch
        return 0

    async def _upsert(self, conn: asyncpg.Connection, upserts: dict[str, list[tuple[Any, ...]]]) -> None:
        """Upsert reduced rows per view table, merging by the table's rules."""
        # Many rows: binary COPY into a session table, then one upsert that drains it (array parameters
        # cost this process far more to encode: asyncpg inspects every element of every array). A few
        # rows (the live service's usual batch): array parameters, one round trip and no temporary table.
        staging = False
        for spec in domain.SPECS:
            rows = upserts.get(spec.table)
            if not rows:
                continue
            if len(rows) < STAGE_MIN_ROWS:
                await conn.execute(self.sql.upserts[spec.table], *_columns(rows))
                continue
            if not staging:
                await conn.execute(self.sql.create_stages)
                staging = True
            await conn.copy_records_to_table(
                stage_table(spec), schema_name="pg_temp", columns=spec.columns, records=rows
            )
            await conn.execute(self.sql.staged_upserts[spec.table])


OPTIMISTIC_MIN_IDS = 500
"""Event ids from which a batch records them with COPY, without looking them up first (see ``_record_seen``):
a failed attempt costs a batch that much copying. Below it, one INSERT .. ON CONFLICT is faster (measured on
the shared Postgres, median of 15: 0.9 ms for 100 ids against 2.0-2.3 ms for a lookup and COPY or a savepoint
and COPY; about even at 500; 43 against 28-32 ms at 2,000)."""

STAGE_MIN_ROWS = 200
"""Rows of one view table from which a batch stages them with COPY instead of array parameters."""


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)]


class Planner:
    """Builds a :class:`Plan` from chunks of a batch, so decoding can interleave with a transaction in flight."""

    def __init__(self, applier: BatchApplier) -> None:
        self.applier = applier
        self.by_tp: dict[TP, list[Item]] = {}
        self.events: dict[str, Item] = {}
        self.duplicates = 0
        self.filtered = 0
        self.undecodable = 0
        self.reducer = applier.reducer()
        self.filtering = applier.campaign is not None or applier.since is not None
        # Counted only where the records are filtered anyway (a filtered rebuild): the live path pays nothing.
        self.sightings = (
            Sightings(campaign=applier.campaign) if applier.sightings is not None and self.filtering else None
        )

    def add(self, items: Iterable[Item]) -> None:
        """Add records (in offset order per partition)."""
        by_tp, events = self.by_tp, self.events
        wanted = self.applier.wanted if self.filtering else None
        seen = self.sightings
        tp: TP | None = None
        part: list[Item] = []
        for it in items:
            if tp is None or it.partition != tp[1] or it.topic != tp[0]:
                tp = (it.topic, it.partition)
                part = by_tp.setdefault(tp, [])
            part.append(it)
            env = it.envelope
            if env is None:
                self.undecodable += 1
                continue
            if seen is not None:
                seen.records += 1
            if wanted is not None and not wanted(env, seen):
                self.filtered += 1
                continue
            eid = str(env.id)
            if eid in events:
                self.duplicates += 1
                continue
            events[eid] = it
            self.reducer.add_event(env)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_tp.values())

    def finish(self) -> Plan:
        """The plan of everything added."""
        return Plan(
            self.by_tp,
            self.events,
            self.reducer.finish(),
            self.duplicates,
            self.filtered,
            self.undecodable,
            self.sightings,
        )
