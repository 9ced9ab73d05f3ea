"""The batch applier's fast path: a batch's contributions folded into one row per view row.

:func:`.domain.reduce_views` is the specification: each distinct event once, every row folded from a
neutral row. The applier does the same work in pieces: a batch's contributions are folded per row
(:class:`BatchReducer`), a rebuild holds the lead rows back across batches and folds the batches
together (:func:`fold_into`), and the rows are written with upserts that merge by the same rules in
SQL (``store.upsert_sql``). Because every merge commutes, the pieces give the same rows as the
reference for the same events in any order, batching and duplication; the property tests in
``tests/services/projection/test_fastpath.py`` check it on generated event streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from . import domain
from .domain import Contribution, MergeSpec, Patch, TimelineRow, merge_patch, row_values

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
        self.timeline: list[TimelineRow] = []
        self.groups: set[tuple[str, UUID, UUID]] = set()
        self.audiences: set[UUID] = set()
        self.touched_leads: set[UUID] = set()
        self.touched_campaigns: set[tuple[str, UUID]] = set()

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
            touched_leads=list(self.touched_leads),
            touched_campaigns=sorted(self.touched_campaigns, key=lambda c: (c[0], c[1].int)),
        )

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
