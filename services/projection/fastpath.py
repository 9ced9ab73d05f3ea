"""The batch applier's fast path: a batch's events folded into one row per view row.

:func:`.domain.reduce_views` is the specification: each distinct event once, its contribution
(:func:`.domain.contribution`) folded into neutral rows with :func:`.domain.merge_patch`. The applier
does the same work in pieces: a batch's events are folded per row (:class:`BatchReducer`), a rebuild
holds the lead rows back across batches and folds the batches together (:func:`fold_into`), and the
rows are written with upserts that merge by the same rules in SQL (``store.upsert_sql``). Because
every merge commutes, the pieces give the same rows as the reference for the same events in any
order, batching and duplication; the property tests in ``tests/services/projection/test_fastpath.py``
check it on generated event streams.

A lead event (nearly every record of a log) is folded straight into its two rows
(:func:`fold_lead_row`) instead of through a contribution: the common columns every lead event sets
(stage, times, count, label, flag, counter) are merged by name, and only the columns of the event's
own (``EventProjection.lead_state`` / ``lead_campaign``) go through :func:`.domain.merge_patch`. That
spares building two patches per event and merging them column by column, about a third of planning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from . import domain
from .domain import (
    LEAD_CAMPAIGN,
    LEAD_STATE,
    Contribution,
    EventRecord,
    MergeSpec,
    OrderKey,
    Patch,
    TimelineRow,
    merge_patch,
    row_values,
)

RowKey = tuple[Any, ...]

Change = tuple[str, str, UUID | None, UUID | None, UUID | None, UUID | None]
"""(workspace, kind, lead, campaign, account, search): one row of the change log."""


@dataclass
class Writes:
    """The statements' parameters for a set of new events."""

    timeline: list[TimelineRow]
    upserts: dict[str, list[tuple[Any, ...]]]
    held: dict[str, dict[RowKey, Patch]]
    """Reduced patches of the tables a rebuild holds back (see ``BatchApplier.hold_rows``), by row key."""
    groups: list[tuple[str, UUID, UUID]]
    audience_campaigns: list[UUID]
    touched_leads: list[UUID]
    touched_campaigns: list[tuple[str, UUID]]
    changes: list[Change] = field(default_factory=list)
    """What the change log gets (the live views only): one row per view row the batch touched."""


def fold_into(table: dict[RowKey, Patch], spec: MergeSpec, key: RowKey, patch: Patch) -> None:
    """Fold ``patch`` into the row ``key`` of ``table`` (its first patch, copied, starts the row)."""
    acc = table.get(key)
    if acc is None:
        table[key] = dict(patch)  # equal to folding it into a neutral row: every merge of a neutral value is the value
    else:
        merge_patch(spec, acc, patch)


def fold_lead_row(
    table: dict[RowKey, Patch],
    spec: MergeSpec,
    key: RowKey,
    ident: tuple[Any, ...],
    time: datetime,
    order: OrderKey,
    label: str | None,
    flag: str | None,
    counter: str | None,
    rank: int | None,
    own: Patch | None,
) -> None:
    """Fold one lead event into its row ``key`` of ``table`` (``lead_state`` or ``lead_campaign``).

    The same row as folding ``domain._lead_contribution``'s patch with :func:`fold_into`: ``ident`` holds
    the values of the row's key columns (``spec.key``), ``rank`` the pipeline stage (``lead_state`` only),
    ``own`` the event's own columns (merged by ``spec``'s rules).
    """
    acc = table.get(key)
    if acc is None:  # the row's first event: its patch as the reference builds it
        acc = table[key] = dict(zip(spec.key, ident, strict=True))
        if rank is not None:
            acc["pipeline_rank"] = rank
        acc["last_event_at"] = acc["first_event_at"] = time
        acc["event_count"] = 1
        if label is not None:
            acc["label_key"], acc["label"] = order, label
        if flag is not None:
            acc[flag] = True
        if counter is not None:
            acc[counter] = 1
        if own:
            acc.update(own)
        return
    # The rules of domain.LEAD_STATE / LEAD_CAMPAIGN for the columns every lead event sets.
    if rank is not None and (acc.get("pipeline_rank") or 0) < rank:
        acc["pipeline_rank"] = rank
    last = acc.get("last_event_at")
    if last is None or time > last:
        acc["last_event_at"] = time
    first = acc.get("first_event_at")
    if first is None or time < first:
        acc["first_event_at"] = time
    acc["event_count"] = acc.get("event_count", 0) + 1
    if label is not None:
        current = acc.get("label_key")
        if current is None or order > current:
            acc["label_key"], acc["label"] = order, label
    if flag is not None:
        acc[flag] = True
    if counter is not None:
        acc[counter] = acc.get(counter, 0) + 1
    if own:
        merge_patch(spec, acc, own)


def rows(spec: MergeSpec, patches: Iterable[Patch]) -> list[tuple[Any, ...]]:
    """Folded patches as rows of ``spec``'s table (:func:`.domain.row_values`)."""
    return [row_values(spec, p) for p in patches]


class BatchReducer:
    """Folds a batch's contributions into one patch per view row, plus the sets the derived statements need.

    ``hold``: the tables whose folded patches :meth:`finish` hands back unwritten (a rebuild holds them);
    ``collect_leads``: whether the summary refresh needs the touched leads; ``changes``: whether the
    change log gets the touched rows.
    """

    def __init__(self, *, hold: tuple[MergeSpec, ...] = (), collect_leads: bool = True, changes: bool = False) -> None:
        self.hold = hold
        self.collect_leads = collect_leads
        self.changes = changes
        self.reduced: dict[str, dict[RowKey, Patch]] = {spec.table: {} for spec in domain.SPECS}
        self.lead_state = self.reduced[LEAD_STATE.table]
        self.lead_campaign = self.reduced[LEAD_CAMPAIGN.table]
        self.timeline: list[TimelineRow] = []
        self.groups: set[tuple[str, UUID, UUID]] = set()
        self.audiences: set[UUID] = set()
        self.touched_leads: set[UUID] = set()
        self.touched_campaigns: set[tuple[str, UUID]] = set()

    def add_event(self, env: EventRecord) -> None:
        """Fold one new event in: a lead event straight into its rows, any other through its contribution."""
        data = env.data
        entry = domain.projection_of(data)
        if entry is None or entry.ignored is not None or entry.views is not None or entry.stage is None:
            self.add(domain.contribution(env))
            return
        order = domain.event_key(env.time, env.type, env.id)
        row = domain.lead_timeline(env, data, entry, order)
        self.timeline.append(row)
        ws, time, lead_id, campaign_id = row.workspace_id, row.event_time, row.lead_id, row.campaign_id
        if self.collect_leads:
            self.touched_leads.add(lead_id)
        if entry.source_group is not None and (group := entry.source_group(data)) is not None:
            self.groups.add((ws, group, lead_id))
        label = entry.label_of(data)
        fold_lead_row(
            self.lead_state,
            LEAD_STATE,
            (ws, lead_id.int),
            (ws, lead_id),
            time,
            order,
            label,
            entry.flag,
            None,
            entry.stage,
            entry.lead_state(data, order) if entry.lead_state is not None else None,
        )
        if campaign_id is not None:
            fold_lead_row(
                self.lead_campaign,
                LEAD_CAMPAIGN,
                (ws, campaign_id.int, lead_id.int),
                (ws, campaign_id, lead_id),
                time,
                order,
                label,
                entry.flag,
                entry.counter,
                None,
                entry.lead_campaign(data, order) if entry.lead_campaign is not None else None,
            )

    def add(self, c: Contribution) -> None:
        """Fold one new event's contribution in."""
        for spec, key, patch in c.patches:
            fold_into(self.reduced[spec.table], spec, key, patch)
            if spec is domain.CAMPAIGNS:
                self.touched_campaigns.add((patch["workspace_id"], patch["campaign_id"]))
        if c.timeline is not None:
            self.timeline.append(c.timeline)
            if self.collect_leads:
                self.touched_leads.add(c.timeline.lead_id)
        if c.group_member is not None:
            self.groups.add(c.group_member)
        if c.new_audience is not None:
            self.audiences.add(c.new_audience[1])
            self.touched_campaigns.add(c.new_audience)  # its summary is recomputed: the audience adds rows

    def finish(self) -> Writes:
        """The statements' parameters (rows in a stable order: concurrent writers lock rows in one order)."""
        return Writes(
            changes=self._changes() if self.changes else [],
            timeline=self.timeline,
            upserts={
                spec.table: rows(spec, patches.values())
                for spec in domain.SPECS
                if (patches := self.reduced[spec.table]) and spec not in self.hold
            },
            held={spec.table: patches for spec in self.hold if (patches := self.reduced[spec.table])},
            groups=sorted(self.groups, key=lambda g: (g[0], g[1].int, g[2].int)),
            audience_campaigns=sorted(self.audiences, key=lambda u: u.int),
            touched_leads=self._touched_leads(),
            touched_campaigns=sorted(self.touched_campaigns, key=lambda c: (c[0], c[1].int)),
        )

    def _touched_leads(self) -> list[UUID]:
        """Every lead whose ``lead_state`` or ``lead_campaign`` rows the batch may change (the summaries' delta
        reads their rows before and after): the leads of its row patches, of its timeline and of its groups
        (membership derived from a group adds rows)."""
        if not self.collect_leads:
            return []
        leads = set(self.touched_leads)
        for patches in (self.lead_state, self.lead_campaign):
            leads.update(p["lead_id"] for p in patches.values())
        leads.update(g[2] for g in self.groups)
        return sorted(leads, key=lambda u: u.int)

    def _changes(self) -> list[Change]:
        """One change per touched lead (with its campaign when the event had one), campaign, account and search."""
        r = self.reduced
        out: list[Change] = []
        in_campaign: set[tuple[str, UUID]] = set()
        for p in r[domain.LEAD_CAMPAIGN.table].values():
            out.append((p["workspace_id"], "lead", p["lead_id"], p["campaign_id"], None, None))
            in_campaign.add((p["workspace_id"], p["lead_id"]))
        for p in r[domain.LEAD_STATE.table].values():
            if (p["workspace_id"], p["lead_id"]) not in in_campaign:
                out.append((p["workspace_id"], "lead", p["lead_id"], None, None, None))
        for p in r[domain.CAMPAIGNS.table].values():
            out.append((p["workspace_id"], "campaign", None, p["campaign_id"], None, None))
        for p in r[domain.ACCOUNTS.table].values():
            out.append((p["workspace_id"], "account", None, None, p["account_id"], None))
        for p in r[domain.ACCOUNT_CAMPAIGNS.table].values():
            out.append((p["workspace_id"], "account", None, p["campaign_id"], p["account_id"], None))
        for p in r[domain.SEARCHES.table].values():
            out.append((p["workspace_id"], "search", None, None, None, p["search_id"]))
        return out
