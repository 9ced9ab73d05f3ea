"""What a read of the log saw, so that a filter that matched nothing can say what there was instead.

A rebuild restricted to one campaign, or an export of one workspace, with an id that exists nowhere in the log
reads everything and keeps nothing: without a word, that looks like "that campaign had no events then". The
readers (``leadstream export``, :mod:`services.projection.replay` and its pod workers) count what they read in
their time window in a :class:`Sightings`, and the CLI names the filter that matched nothing and what the window
held instead (``leadstream_cli/nomatch.py``).

Pure data, no I/O: it is merged across worker processes (pickled) and pod workers (JSON in ``replay_info``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DISTINCT_CAP = 1000
"""Distinct workspaces (and campaigns) counted: a hint needs the few largest, and a log of more workspaces
than this is reported as "at least" that many. The ids a filter asks for are always counted."""


@dataclass
class Sightings:
    """Events read in a time window: how many, per workspace and per campaign (bounded, see
    :data:`DISTINCT_CAP`), and the workspaces of the events of ``campaign`` (the filter's, when given)."""

    workspace: str | None = None
    """The workspace filter: its count is kept even once :data:`DISTINCT_CAP` others were seen."""
    campaign: str | None = None
    """The campaign filter (likewise)."""
    records: int = 0
    """Events decoded, in the time window or not."""
    events: int = 0
    """Events in the time window (what the id filters chose from)."""
    workspaces: dict[str, int] = field(default_factory=dict)
    campaigns: dict[str, int] = field(default_factory=dict)
    campaign_workspaces: dict[str, int] = field(default_factory=dict)
    """Where the events of :attr:`campaign` are: their count per workspace."""
    more_workspaces: bool = False
    """More distinct workspaces were seen than :data:`DISTINCT_CAP`."""
    more_campaigns: bool = False

    def __post_init__(self) -> None:
        # The filters' own ids are in the maps from the start, so that the cap never leaves them out.
        if self.workspace is not None:
            self.workspaces.setdefault(self.workspace, 0)
        if self.campaign is not None:
            self.campaigns.setdefault(self.campaign, 0)

    def add(self, workspace: str, campaign: str | None) -> None:
        """Count an event of the time window: its workspace and its campaign (None: it belongs to none)."""
        self.events += 1
        if not _bump(self.workspaces, workspace, 1):
            self.more_workspaces = True
        if campaign is None:
            return
        if not _bump(self.campaigns, campaign, 1):
            self.more_campaigns = True
        if campaign == self.campaign:
            self.campaign_workspaces[workspace] = self.campaign_workspaces.get(workspace, 0) + 1

    def of_workspace(self) -> int:
        """Events of the workspace filter in the window."""
        return self.workspaces.get(self.workspace, 0) if self.workspace is not None else self.events

    def of_campaign(self) -> int:
        """Events of the campaign filter in the window."""
        return self.campaigns.get(self.campaign, 0) if self.campaign is not None else self.events

    def merge(self, other: Sightings) -> None:
        """Count ``other`` (another reader's share of the same window, with the same filters) in."""
        self.records += other.records
        self.events += other.events
        for mine, theirs in (
            (self.workspaces, other.workspaces),
            (self.campaigns, other.campaigns),
            (self.campaign_workspaces, other.campaign_workspaces),
        ):
            for key, n in theirs.items():
                if not _bump(mine, key, n):
                    if mine is self.workspaces:
                        self.more_workspaces = True
                    else:
                        self.more_campaigns = True
        self.more_workspaces = self.more_workspaces or other.more_workspaces
        self.more_campaigns = self.more_campaigns or other.more_campaigns

    def to_json(self) -> dict[str, Any]:
        """As JSON (a pod worker keeps it in ``replay_info``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Sightings:
        """What :meth:`to_json` wrote."""
        return cls(**value)


def _bump(counts: dict[str, int], key: str, n: int) -> bool:
    """Add ``n`` to ``key``'s count unless it is a new key past :data:`DISTINCT_CAP` (then False: not counted)."""
    if key in counts or len(counts) < DISTINCT_CAP:
        counts[key] = counts.get(key, 0) + n
        return True
    return False
