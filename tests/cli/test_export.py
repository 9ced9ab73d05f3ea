"""``leadstream export`` on the real broker: a Hive-partitioned Parquet dataset with typed columns per event type,
incremental by name, filtered by workspace, published atomically, and refusing to skip undecodable records
silently. Read back with DuckDB as an analyst would."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
from leadstream_schemas import LEAD, encode

from services.projection.workload import EPOCH, generate
from tests.cli.test_replay_export import cli, cli_raw
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.support.kafka import produce

EVERY_FILE = "*/*/*.parquet"
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_queries() -> list[str]:
    """The SQL blocks of the README's warehouse export section, as an analyst would paste them."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### The warehouse export") : text.index("### A continuous feed")]
    return [block.split("```", 1)[0] for block in section.split("```sql\n")[1:]]


def query(sql: str) -> list[tuple[Any, ...]]:
    db = duckdb.connect()
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def dataset(out: Path) -> str:
    return f"read_parquet('{out}/{EVERY_FILE}', hive_partitioning = true, union_by_name = true)"


async def test_export_is_partitioned_typed_incremental_filtered_and_atomic(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    settings = isolated.settings()
    first = generate(leads=30, campaigns=2, workspaces=2, seed=4)
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, first.envelopes)
    # A record that cannot be decoded, between the good ones.
    key, _, headers = encode(first.envelopes[0])
    await produce(settings.kafka_bootstrap_servers, settings.topic_name(LEAD.name), [(key, b"{not json", headers)])
    out = tmp_path / "warehouse"

    # Skipping it silently is refused: nothing is published and no position is kept.
    code, text, _ = await cli_raw(isolated, "export", "--out", str(out), "--name", "nightly")
    assert code == 3, text
    assert "invalid_json" in text and "nothing was published" in text
    assert not list(out.glob("type=*")) and not (out / "_exports" / "nightly.json").exists()
    assert not list(out.glob("_tmp-*"))

    text = await cli(isolated, "export", "--out", str(out), "--name", "nightly", "--allow-skipped")
    assert "1 undecodable skipped (allowed)" in text
    types = Counter(e.type for e in first.envelopes)
    assert dict(query(f"SELECT type, count(*) FROM {dataset(out)} GROUP BY type")) == dict(types)
    # Hive partitions: the event type and the event's UTC date.
    days = {(e.type, e.time.date().isoformat()) for e in first.envelopes}
    assert set(query(f"SELECT DISTINCT type, date::VARCHAR FROM {dataset(out)}")) == days
    # Typed columns per event type: the envelope, then the payload flattened.
    generated = f"read_parquet('{out}/type=leadstream.lead.message_generated.v1/*/*.parquet')"
    described = {name: kind for name, kind, *_ in query(f"DESCRIBE SELECT * FROM {generated}")}
    assert described["event_time"] == "TIMESTAMP WITH TIME ZONE"
    assert described["kafka_offset"] == "BIGINT"
    assert described["hook__kind"] == "VARCHAR" and described["needs_review"] == "BOOLEAN"
    wanted = {
        (str(e.id), e.data.hook.kind) for e in first.envelopes if e.type == "leadstream.lead.message_generated.v1"
    }
    assert set(query(f"SELECT event_id, hook__kind FROM {generated}")) == wanted
    # The README's queries run on it and answer what they say.
    funnel, hooks, invites = (query(sql.replace("'warehouse/", f"'{out}/")) for sql in readme_queries())
    lead_events = [e for e in first.envelopes if e.topic == LEAD.name]
    for campaign_id, enrolled, invited, _accepted, replied in funnel:
        of_campaign = [e for e in lead_events if str(e.data.campaign_id) == campaign_id]
        assert enrolled == len({e.data.lead_id for e in of_campaign if e.type == "leadstream.lead.enrolled.v1"})
        assert replied == len({e.data.lead_id for e in of_campaign if e.type == "leadstream.lead.replied.v1"})
        assert enrolled >= invited >= replied
    assert sum(row[4] for row in funnel) > 0, "the workload has replies"
    assert {row[0] for row in hooks} == {
        e.data.hook.kind for e in lead_events if e.type == "leadstream.lead.message_generated.v1"
    }
    assert sum(row[2] for row in invites) == types["leadstream.lead.invite_sent.v1"]
    state = json.loads((out / "_exports" / "nightly.json").read_text())
    assert sum(state["positions"].values()) == len(first.envelopes) + 1

    # Incremental: the next run exports only what came since (the bad record is behind the position now).
    later = generate(leads=6, campaigns=1, workspaces=2, seed=5, start=EPOCH + timedelta(days=3))
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, later.envelopes)
    before = tmp_path / "nightly.before.json"
    shutil.copy(out / "_exports" / "nightly.json", before)
    text = await cli(isolated, "export", "--out", str(out), "--name", "nightly")
    assert f"wrote {len(later.envelopes):,} events" in text
    every = len(first.envelopes) + len(later.envelopes)
    assert query(f"SELECT count(*), count(DISTINCT event_id) FROM {dataset(out)}") == [(every, every)]

    # A run that stopped before storing its position is repeated from the same offsets: it writes the same file
    # names and replaces its own files, so no event is exported twice.
    shutil.copy(before, out / "_exports" / "nightly.json")
    await cli(isolated, "export", "--out", str(out), "--name", "nightly")
    assert query(f"SELECT count(*), count(DISTINCT event_id) FROM {dataset(out)}") == [(every, every)]

    # A named export keeps selecting the same events: another filter under its name is refused.
    code, text, _ = await cli_raw(isolated, "export", "--out", str(out), "--name", "nightly", "--workspace", "ws-2")
    assert code == 1 and "another --name" in text

    # One workspace only.
    ws2 = tmp_path / "ws2"
    await cli(isolated, "export", "--out", str(ws2), "--workspace", "ws-2", "--topic", "lead", "--allow-skipped")
    expected = sum(1 for e in [*first.envelopes, *later.envelopes] if e.workspace_id == "ws-2" and e.topic == LEAD.name)
    assert expected > 0
    assert query(f"SELECT count(*), count(DISTINCT workspace_id), min(workspace_id) FROM {dataset(ws2)}") == [
        (expected, 1, "ws-2")
    ]


async def test_unknown_topics_and_names_are_refused(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    code, _, err = await cli_raw(isolated, "export", "--topic", "nope", "--out", str(tmp_path))
    assert code == 2 and "unknown topic" in err
    code, _, err = await cli_raw(isolated, "export", "--name", "../etc", "--out", str(tmp_path))
    assert code == 2 and "--name" in err
