"""The line an analyst gets when a filter of ``replay`` or ``export`` matched nothing in the window it read.

A ``--campaign`` or ``--workspace`` that exists nowhere in the log (a typo, an id of another cluster) cannot be
told before reading, and gives an empty result: without a word, that reads as "nothing happened then". Once the
whole window is read the command knows, and says in one line on stderr which filter matched no event, the window
it read, how much it held and, cheaply, what there was instead (the workspaces or campaigns with the most events).
The exit status stays 0: the command ran as asked, and a script tells an empty result by the line (or by the
counts it already printed), as ``export`` has always said of an id no event has.
"""

from __future__ import annotations

from datetime import datetime

from services.runtime.consuming.sightings import Sightings

HINTS = 3
"""Workspaces or campaigns named in a hint (those with the most events)."""


def read_span(since: datetime | None, until: datetime | None, *, start: str = "the start of the log") -> str:
    """``between <since> and <until>`` with the ends that were not given named (``start``: where reading began)."""
    first = since.isoformat() if since is not None else start
    last = until.isoformat() if until is not None else "the end of the log"
    return f"between {first} and {last}"


def _count(n: int, noun: str, more: bool) -> str:
    return f"{'at least ' if more else ''}{n:,} {noun}{'' if n == 1 else 's'}"


def _most(counts: dict[str, int], *, quote: bool = False) -> str:
    """The ids with the most events, ``id (n)``, at most :data:`HINTS` of them (``quote``: as workspaces are
    written, ``'acme'``)."""
    top = sorted(((n, key) for key, n in counts.items() if n), key=lambda kn: (-kn[0], kn[1]))
    return ", ".join(f"{key!r} ({n:,})" if quote else f"{key} ({n:,})" for n, key in top[:HINTS])


def no_match(
    seen: Sightings,
    *,
    span: str,
    kept: int | None = None,
    time_filtered: bool = False,
) -> str | None:
    """The line for a read whose filters (``seen.workspace``, ``seen.campaign``, a time window when
    ``time_filtered``) matched no event, or None when they matched some (or nothing was filtered).

    ``span`` is the window read (:func:`read_span`, with the topics when not all). ``kept``: the events both id filters
    matched together, when the command keeps only those (an export: a workspace and a campaign that each have
    events, but not together, are named as such); None when it keeps other events too (a rebuild keeps the events
    of no campaign)."""
    workspace, campaign = seen.workspace, seen.campaign
    if workspace is None and campaign is None and not time_filtered:
        return None
    if seen.events == 0 and seen.records == 0 and not time_filtered:
        return None  # nothing to read at all (an empty log, a named export with nothing new): no filter's doing
    if seen.events == 0:  # the time window itself was empty: say that, whatever the ids
        ids = [f"workspace {workspace!r}"] if workspace is not None else []
        ids += [f"campaign {campaign}"] if campaign is not None else []
        what = f"no event{' of ' + ' and '.join(ids) if ids else ''} {span}"
        if seen.records:
            return f"{what} (read {_count(seen.records, 'event', False)}, none of them in that window)"
        return f"{what} (there was no event to read there)"
    read = f"read {_count(seen.events, 'event', False)} of " + _count(
        sum(1 for n in seen.workspaces.values() if n), "workspace", seen.more_workspaces
    )
    if workspace is not None and seen.of_workspace() == 0:
        also = f", and none of campaign {campaign}" if campaign is not None and seen.of_campaign() == 0 else ""
        hint = _most(seen.workspaces, quote=True)
        return f"no event of workspace {workspace!r}{also} {span} ({read}; most events: {hint})"
    if campaign is not None and seen.of_campaign() == 0:
        campaigns = _count(sum(1 for n in seen.campaigns.values() if n), "campaign", seen.more_campaigns)
        hint = f"; most events: {_most(seen.campaigns)}" if any(seen.campaigns.values()) else ""
        return f"no event of campaign {campaign} {span} ({read}, {campaigns}{hint})"
    if workspace is not None and campaign is not None and kept == 0:
        where = _most(seen.campaign_workspaces, quote=True)
        events = _count(seen.of_campaign(), "event", False)
        return f"no event of campaign {campaign} in workspace {workspace!r} {span}: its {events} are in {where}"
    return None
