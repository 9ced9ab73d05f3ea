"""A ``--workspace`` or ``--campaign`` that exists nowhere in the log (a typo), or a time window that holds no event,
given to ``leadstream export``, ``leadstream replay`` or a pod rebuild (``replay start`` / ``replay worker``), on the
real broker and database.

The command reads the whole window, keeps nothing and exits 0 as before; once it has read everything it says, in one
line on stderr, which filter matched no event, the window it read, how many events of how many workspaces that was,
and the workspaces or campaigns with the most events. A filter that matched something says nothing; stdout (the
report a script reads) is unchanged. A pod rebuild counts across its workers and across a worker's restart.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from leadstream_schemas import LEAD

from services.projection.workload import generate
from services.runtime.consuming.sightings import DISTINCT_CAP, Sightings
from tests.cli.test_replay_export import cli_raw
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.services.projection.test_pods import worker

WHOLE_LOG = "between the start of the log and the end of the log"


def owner(env: Any) -> str | None:
    """An event's campaign as the readers take it: its payload's, else its envelope's."""
    value = getattr(env.data, "campaign_id", None) or env.campaign_id
    return str(value) if value else None


async def ran(world: Any, *args: str) -> tuple[str, str]:
    """``leadstream ARGS`` exits 0; returns (stdout, stderr)."""
    code, out, err = await cli_raw(world, *args)
    assert code == 0, f"leadstream {' '.join(args)} exited {code}:\n{out}\n{err}"
    return out, err


def one_note(err: str) -> str:
    """The single ``note:`` line on stderr, joined back if the terminal wrapped it."""
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, err
    return notes[0]


async def test_export_names_the_filter_that_matched_nothing_and_what_there_was(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    settings = isolated.settings()
    log = generate(leads=12, campaigns=2, workspaces=2, seed=21).envelopes
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    per_workspace = Counter(e.workspace_id for e in log)
    assert set(per_workspace) == {"ws-1", "ws-2"}
    per_campaign = Counter(c for e in log if (c := owner(e)) is not None)
    campaign_ws = {c: {e.workspace_id for e in log if owner(e) == c} for c in per_campaign}
    ws1_campaign = next(c for c, wss in campaign_ws.items() if wss == {"ws-1"})
    ws2_campaign = next(c for c, wss in campaign_ws.items() if wss == {"ws-2"})
    out_dir = str(tmp_path / "x")

    # A workspace no event has: exit 0, nothing written, and one line naming it with the workspaces there were.
    out, err = await ran(isolated, "export", "--out", out_dir, "--workspace", "ws-9")
    note = one_note(err)
    assert f"note: no event of workspace 'ws-9' {WHOLE_LOG} (read {len(log):,} events of 2 workspaces" in note, note
    for ws, n in per_workspace.items():
        assert f"'{ws}' ({n:,})" in note, note
    assert "wrote 0 events" in out and "note:" not in out, out

    # A campaign no event has: the campaigns with the most events are the hint.
    typo = str(uuid.uuid4())
    _, err = await ran(isolated, "export", "--out", out_dir, "--campaign", typo)
    note = one_note(err)
    assert f"no event of campaign {typo} {WHOLE_LOG} (read {len(log):,} events of 2 workspaces, 2 campaigns" in note
    assert f"{ws1_campaign} ({per_campaign[ws1_campaign]:,})" in note, note

    # Both exist, but not together: where the campaign's events are.
    _, err = await ran(isolated, "export", "--out", out_dir, "--workspace", "ws-1", "--campaign", ws2_campaign)
    note = one_note(err)
    assert f"no event of campaign {ws2_campaign} in workspace 'ws-1' {WHOLE_LOG}" in note, note
    assert f"its {per_campaign[ws2_campaign]:,} events are in 'ws-2' ({per_campaign[ws2_campaign]:,})" in note, note

    # One topic: the window names it, and counts only its events.
    _, err = await ran(isolated, "export", "--out", out_dir, "--topic", "lead", "--workspace", "nope")
    note = one_note(err)
    lead_events = sum(1 for e in log if e.topic == LEAD.name)
    assert f"no event of workspace 'nope' {WHOLE_LOG} in {LEAD.name} (read {lead_events:,} events" in note, note

    # A time window without events: said as such, whatever the ids.
    _, err = await ran(isolated, "export", "--out", out_dir, "--until", "2001-01-01T00:00:00Z")
    note = one_note(err)
    assert "no event between the start of the log and 2001-01-01T00:00:00+00:00" in note, note
    assert f"(read {len(log):,} events, none of them in that window)" in note, note

    # Filters that match say nothing.
    out, err = await ran(isolated, "export", "--out", out_dir, "--workspace", "ws-1", "--campaign", ws1_campaign)
    assert "note:" not in err + out and f"wrote {per_campaign[ws1_campaign]:,} events" in out, out + err


async def test_a_rebuild_names_a_campaign_that_matched_nothing_with_one_or_more_readers(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    settings = isolated.settings()
    log = generate(leads=20, campaigns=3, seed=22).envelopes
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    per_campaign = Counter(c for e in log if (c := owner(e)) is not None)
    biggest, most = per_campaign.most_common(1)[0]
    typo = str(uuid.uuid4())

    for workers in ("1", "2"):  # in this process, and counted by two worker processes then merged
        out, err = await ran(
            isolated, "replay", "--from-beginning", "--campaign", typo, "--into", f"typo{workers}", "--workers", workers
        )
        note = one_note(err)
        assert f"no event of campaign {typo} {WHOLE_LOG} (read {len(log):,} events of 1 workspace, 3 campaigns" in note
        assert f"most events: {biggest} ({most:,})" in note, note
        assert "rebuilt projection_typo" in out and "note:" not in out, out

    out, err = await ran(isolated, "replay", "--from-beginning", "--campaign", biggest, "--into", "real")
    assert "note:" not in out + err and "rebuilt projection_real" in out, out + err

    # A --since after every event: nothing in the window.
    out, err = await ran(isolated, "replay", "--since", "2030-01-01T00:00:00Z", "--into", "later")
    assert "no event between 2030-01-01T00:00:00+00:00 and the end of the log" in one_note(err), err


async def test_a_pod_rebuild_counts_across_its_workers_and_a_restart(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    settings = isolated.settings()
    log = generate(leads=60, campaigns=3, seed=16).envelopes
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    typo = str(uuid.uuid4())
    await ran(
        isolated, "replay", "start", "--into", "pods", "--workers", "2", "--batch", "20", "--from-beginning",
        "--campaign", typo,
    )  # fmt: skip

    # Worker 0 is killed after its third batch, worker 1 reads its share, worker 0 starts again and completes it.
    code, out = await worker(isolated, "pods", 0, LEADSTREAM_PROJECTION_CRASH_AFTER_BATCHES="3")
    assert code == -9, out
    code, out = await worker(isolated, "pods", 1)
    assert code == 0 and "note:" not in out, out  # it read only its share: it cannot know yet
    code, out = await worker(isolated, "pods", 0)
    assert code == 0 and "this worker completed it" in out, out
    # Every event counted once, those of the batches committed before the kill included.
    assert f"no event of campaign {typo} {WHOLE_LOG} (read {len(log):,} events of 1 workspace" in one_note(out), out

    campaign = next(c for e in log if (c := owner(e)) is not None)
    await ran(
        isolated, "replay", "start", "--into", "real", "--workers", "1", "--from-beginning", *("--campaign", campaign)
    )
    code, out = await worker(isolated, "real", 0)
    assert code == 0 and "this worker completed it" in out and "note:" not in out, out


def test_the_count_is_bounded_and_keeps_the_filters_ids() -> None:
    seen = Sightings(workspace="wanted")
    for i in range(DISTINCT_CAP + 5):
        seen.add(f"ws-{i}", None)
    seen.add("wanted", None)
    assert len(seen.workspaces) == DISTINCT_CAP and seen.more_workspaces
    assert seen.of_workspace() == 1 and seen.events == DISTINCT_CAP + 6

    other = Sightings(workspace="wanted")
    other.add("wanted", "c1")
    seen.merge(other)
    assert seen.of_workspace() == 2 and seen.events == DISTINCT_CAP + 7
    assert Sightings.from_json(seen.to_json()) == seen
