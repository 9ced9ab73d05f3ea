"""Replay and export on the real broker and database, driven through the ``leadstream`` command.

- a rebuild from offset 0 has exactly the live views' checksum; promoting it swaps it in while the
  live service runs, and the service goes on applying new events into the promoted views;
- upcasters apply during a replay (an old event version is read as the current one).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import typer
from leadstream_schemas import LEAD, Envelope, InviteSent, LeadDiscovered, LeadEvent, LeadSource, encode
from leadstream_schemas.upcasting import UPCASTERS, upcaster

from leadstream_cli.replay import parse_time
from services.projection.app import build
from services.projection.checksum import dsn
from services.projection.replay import rebuild
from services.projection.workload import EPOCH, generate
from services.runtime.auth import create_token
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.support.kafka import produce, wait_for

LEADSTREAM = Path(sys.executable).with_name("leadstream")


async def cli_raw(world: Any, *args: str) -> tuple[int, str, str]:
    """Run ``leadstream ARGS`` on the test's database and topics; returns (exit code, stdout, stderr)."""
    env = world.env(dict(os.environ))
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    proc = await asyncio.create_subprocess_exec(
        str(LEADSTREAM), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def cli(world: Any, *args: str) -> str:
    """Run ``leadstream ARGS``; returns stdout, fails on a non-zero exit."""
    code, out, err = await cli_raw(world, *args)
    assert code == 0, f"leadstream {' '.join(args)} exited {code}:\n{out}\n{err}"
    return out


async def digest(world: Any, schema: str) -> dict[str, Any]:
    return dict(json.loads(await cli(world, "views", "checksum", "--schema", schema, "--json")))


async def test_rebuild_matches_live_views_and_promotes_atomically(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    first = generate(leads=30, campaigns=3, seed=1)
    settings = isolated.settings()
    service = await start_service(build(settings))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="assignment")
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, first.envelopes)
    await wait_for(lambda: consumer.applied >= len(first.envelopes), timeout_s=90, what="live views caught up")

    out = await cli(isolated, "replay", "--from-beginning", "--into", "r1")
    assert "rebuilt projection_r1" in out and f"{len(first.envelopes):,}" in out
    live, rebuilt = await digest(isolated, "projection"), await digest(isolated, "projection_r1")
    assert rebuilt["digest"] == live["digest"], (live, rebuilt)
    assert rebuilt["tables"]["timeline"]["rows"] == sum(isinstance(e.data, LeadEvent) for e in first.envelopes)

    # Events produced after the rebuild read its end offsets: the promoted views must still get them.
    later = generate(leads=6, campaigns=1, seed=2, start=EPOCH + timedelta(days=3))
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, later.envelopes)
    total = len(first.envelopes) + len(later.envelopes)
    await wait_for(lambda: consumer.applied >= total, timeout_s=90, what="live views got the later events")
    token = await create_token(service.engine, "ws-1")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://t") as http:

        def visible(lead: uuid.UUID) -> Any:
            async def check() -> bool:
                return (await http.get(f"/v1/leads/{lead}", headers=auth)).status_code == 200

            return check

        # The same queries run before and after the swap (cached statements must follow the rename).
        assert await visible(later.lead_ids[0])()
        out = await cli(isolated, "replay", "--promote", "r1")
        assert "promoted projection_r1 -> projection" in out and "projection_retired_" in out
        await wait_for(visible(later.lead_ids[0]), timeout_s=60, what="the later events re-read into the new views")

        more = generate(leads=5, campaigns=1, seed=3, start=EPOCH + timedelta(days=6))
        await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, more.envelopes)
        await wait_for(visible(more.lead_ids[-1]), timeout_s=60, what="a new lead in the promoted views")
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:

        async def settled() -> bool:
            n = await conn.fetchval("SELECT count(*) FROM projection.seen_events")
            return n == total + len(more.envelopes)

        await wait_for(settled, timeout_s=60, what="every event in the promoted views")
    finally:
        await conn.close()
    await cli(isolated, "replay", "--from-beginning", "--into", "r2")
    live, rebuilt = await digest(isolated, "projection"), await digest(isolated, "projection_r2")
    assert rebuilt["digest"] == live["digest"], (live, rebuilt)
    schemas = await cli(isolated, "views", "schemas")
    assert "projection_r2" in schemas and "projection_retired_" in schemas


async def test_upcasters_apply_during_replay(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    old_type = "leadstream.lead.invite_sent.v0"

    @upcaster(old_type, InviteSent.event_type)
    def _v0_to_v1(payload: dict[str, Any]) -> dict[str, Any]:
        # v0 called the lead "lead" and the note "message".
        return {"lead_id": payload["lead"], "campaign_id": payload.get("campaign"), "note": payload["message"]}

    try:
        settings = isolated.settings()
        lead_id = uuid.uuid4()
        discovered = Envelope.new(
            LeadDiscovered(lead_id=lead_id, source=LeadSource.manual, full_name="Old Timer"),
            workspace_id="ws-up",
            source="test",
            time=EPOCH,
        )
        await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, [discovered])
        # A v0 record as an old producer wrote it (CloudEvents headers, the old payload shape).
        current = Envelope.new(
            InviteSent(lead_id=lead_id, note="x"),
            workspace_id="ws-up",
            source="test",
            time=EPOCH + timedelta(minutes=5),
        )
        key, _, headers = encode(current)
        headers = [(k, old_type.encode() if k == "ce_type" else v) for k, v in headers]
        value = json.dumps({"lead": str(lead_id), "message": "Hello from v0"}).encode()
        await produce(settings.kafka_bootstrap_servers, settings.topic_name(LEAD.name), [(key, value, headers)])

        report = await rebuild(settings, "up")
        assert report.applied == 2 and report.dead_lettered == 0
        conn = await asyncpg.connect(dsn(settings.database_url))
        try:
            rows = await conn.fetch(
                "SELECT event_type, summary FROM projection_up.timeline WHERE lead_id = $1 "
                "ORDER BY event_time, type_rank",
                lead_id,
            )
            assert [r["event_type"] for r in rows] == [LeadDiscovered.event_type, InviteSent.event_type]
            assert rows[1]["summary"] == "Invite sent from account {account} with note: Hello from v0"
            state = await conn.fetchrow(
                "SELECT stage, pipeline_rank FROM projection_up.lead_state WHERE lead_id = $1", lead_id
            )
            assert state["stage"] == "invite_sent" and state["pipeline_rank"] == 5
        finally:
            await conn.close()
    finally:
        UPCASTERS.pop(old_type, None)


def test_times_for_since_and_until() -> None:
    now = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    assert parse_time("7d", now=now) == now - timedelta(days=7)
    assert parse_time("90m", now=now) == now - timedelta(minutes=90)
    assert parse_time("2026-01-05T08:00:00Z") == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert parse_time("2026-01-05T08:00:00+02:00") == datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    assert parse_time("2026-01-05") == datetime(2026, 1, 5, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_time("yesterday")


async def test_unclear_or_impossible_requests_fail_with_a_message(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    code, _, err = await cli_raw(isolated, "replay", "--into", "x")
    assert code == 2 and "--from-beginning" in err
    code, _, err = await cli_raw(isolated, "replay", "--from-beginning", "--into", "x", "--promote", "y")
    assert code == 2 and "exactly one of" in err
    code, out, _ = await cli_raw(isolated, "replay", "--promote", "nope")
    assert code == 1 and "no rebuild named 'nope'" in out
    code, out, _ = await cli_raw(isolated, "views", "checksum", "--schema", "projection_nope")
    assert code == 1 and "does not exist" in out
