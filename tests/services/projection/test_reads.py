"""The API's reads on the real database: the statements one read sends (one for a lead's timeline: no pool check,
no BEGIN/ROLLBACK, the lead's existence asked only when the page is empty; one for each read of the change log),
and a pooled connection the server ended, which the next read must survive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Header
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from services.projection.api import build_router
from services.projection.live import ChangeHub
from services.projection.store import Views
from services.projection.workload import EPOCH, Workload, generate
from services.runtime import auth
from services.runtime.clock import FakeClock
from services.runtime.db import create_engine
from services.runtime.errors import install_problem_handlers
from services.runtime.pagination import encode_cursor
from tests.support.kafka import wait_for

from .helpers import NewSchema, apply_all, as_items

SESSION_STATEMENTS = ("BEGIN", "ROLLBACK", "COMMIT", ";")
"""What a read sent besides its queries before: the pool's check (``BEGIN; ; ROLLBACK`` on asyncpg) and the
transaction around the read."""


@dataclass
class Wire:
    """What the read engine sent: every statement (SQLAlchemy's, and asyncpg's own BEGIN/ROLLBACK/ping),
    the server pids of the connections it opened and the disconnects it handled."""

    sent: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    disconnects: int = 0


@dataclass
class World:
    views: Views
    log: Workload
    engine: AsyncEngine
    wire: Wire
    http: httpx.AsyncClient

    async def get(self, path: str, ws: str, **params: Any) -> httpx.Response:
        """GET ``path`` as workspace ``ws``; the statements it sent are in ``wire.sent`` afterwards."""
        self.wire.sent.clear()
        return await self.http.get(path, headers={"X-Workspace": ws}, params=params)

    def lead(self, ws: str) -> UUID:
        return next(lead for lead in self.log.lead_ids if self.log.lead_workspace[lead] == ws)

    def campaign(self, ws: str) -> UUID:
        return next(c for c in self.log.campaign_ids if self.log.campaign_workspace[c] == ws)


def watch(engine: AsyncEngine) -> Wire:
    """Record what ``engine`` sends. SQLAlchemy runs its statements as asyncpg prepared statements (seen by
    ``before_cursor_execute``); asyncpg's query logger sees the rest (transaction control, the pool's ping)."""
    wire = Wire()

    @event.listens_for(engine.sync_engine, "connect")
    def connected(dbapi_conn: Any, record: Any) -> None:
        raw = dbapi_conn.driver_connection
        wire.pids.append(raw.get_server_pid())
        raw.add_query_logger(lambda q: wire.sent.append(q.query))

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def statement(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        wire.sent.append(sql)

    @event.listens_for(engine.sync_engine, "handle_error")
    def failed(ctx: Any) -> None:
        wire.disconnects += bool(ctx.is_disconnect)

    return wire


@pytest.fixture
async def world(pg: asyncpg.Connection, new_schema: NewSchema, database_url: str) -> AsyncIterator[World]:
    """Views of a generated log in two workspaces, served by the projection's routes through a read engine
    (``X-Workspace`` stands in for the token: token resolution is not what these tests count)."""
    views = await new_schema()
    log = generate(leads=12, campaigns=2, workspaces=2, seed=17)
    await apply_all(pg, views, as_items(log.envelopes), batch=50)
    # The timeline read asks for the lead's existence only when the page is empty: that is right only if every
    # lead with timeline rows has its lead_state row (the batch writes both).
    orphans = await pg.fetchval(
        f"SELECT count(*) FROM (SELECT DISTINCT workspace_id, lead_id FROM {views.schema}.timeline) t "
        f"WHERE NOT EXISTS (SELECT 1 FROM {views.schema}.lead_state s "
        "WHERE s.workspace_id = t.workspace_id AND s.lead_id = t.lead_id)"
    )
    assert orphans == 0
    engine = create_engine(database_url, reads=True)
    wire = watch(engine)
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(build_router(views, engine, FakeClock(EPOCH + timedelta(days=30)), timedelta(hours=72)))

    async def workspace(x_workspace: str = Header()) -> str:
        return x_workspace

    app.dependency_overrides[auth.workspace_id] = workspace
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield World(views, log, engine, wire, http)
    await engine.dispose()


async def test_a_timeline_read_of_a_lead_with_events_sends_one_statement(world: World) -> None:
    ws = world.log.workspace_ids[0]
    lead = world.lead(ws)
    path = f"/v1/leads/{lead}/timeline"
    await world.get(path, ws)  # the first read on a connection prepares its statement; count the next one
    r = await world.get(path, ws)
    assert r.status_code == 200, r.text
    assert r.json()["items"], "the lead has events"
    assert len(world.wire.sent) == 1, world.wire.sent  # before: BEGIN ; ROLLBACK BEGIN exists timeline ROLLBACK
    assert "timeline" in world.wire.sent[0]


async def test_an_unknown_lead_is_a_404_naming_it_and_an_empty_page_of_a_known_lead_is_200(
    world: World, pg: asyncpg.Connection
) -> None:
    ws, other = world.log.workspace_ids[:2]
    unknown = uuid4()
    r = await world.get(f"/v1/leads/{unknown}/timeline", ws)
    assert r.status_code == 404 and str(unknown) in r.json()["detail"]
    assert len(world.wire.sent) == 2, world.wire.sent  # the empty page, then the lead's existence
    assert not set(world.wire.sent) & set(SESSION_STATEMENTS)

    theirs = world.lead(other)  # another workspace's lead stays unknown here
    r = await world.get(f"/v1/leads/{theirs}/timeline", ws)
    assert r.status_code == 404 and str(theirs) in r.json()["detail"]
    assert (await world.get(f"/v1/leads/{theirs}/timeline", other)).json()["items"]

    lead = world.lead(ws)
    last = await pg.fetchrow(
        f"SELECT event_time, type_rank, event_id FROM {world.views.schema}.timeline "
        "WHERE workspace_id = $1 AND lead_id = $2 ORDER BY event_time DESC, type_rank DESC, event_id DESC LIMIT 1",
        ws,
        lead,
    )
    past_the_end = encode_cursor([last["event_time"].isoformat(), last["type_rank"], str(last["event_id"])])
    r = await world.get(f"/v1/leads/{lead}/timeline", ws, after=past_the_end)
    assert r.status_code == 200, r.text
    assert r.json() == {"lead_id": str(lead), "items": [], "next": None}


async def test_no_read_route_checks_its_connection_or_opens_a_transaction(world: World) -> None:
    ws = world.log.workspace_ids[0]
    lead, campaign = world.lead(ws), world.campaign(ws)
    paths = [
        f"/v1/leads/{lead}",
        "/v1/campaigns",
        f"/v1/campaigns/{campaign}",
        f"/v1/campaigns/{campaign}/summary",
        f"/v1/campaigns/{campaign}/results",
        f"/v1/campaigns/{campaign}/series",
        f"/v1/campaigns/{campaign}/stages",
        f"/v1/campaigns/{campaign}/variants",
        "/v1/onboarding",
        "/v1/accounts",
        "/v1/home",
        "/v1/activity",
        "/v1/inbox",
    ]
    for path in paths:
        r = await world.get(path, ws)
        assert r.status_code == 200, (path, r.text)
        assert world.wire.sent, path
        assert not [s for s in world.wire.sent if s.strip().upper() in SESSION_STATEMENTS], (path, world.wire.sent)


async def test_the_change_streams_reads_of_the_log_send_one_statement_each(
    world: World, pg: asyncpg.Connection, database_url: str
) -> None:
    """Every stream of a workspace reads the log after each announced commit: one round trip, not a pool check and
    a transaction around it (six)."""
    ws = world.log.workspace_ids[0]
    await pg.execute(  # a rebuild's applier keeps no change log: two changes as the live applier writes them
        f"INSERT INTO {world.views.schema}.changes (workspace_id, kind, lead_id) "
        "VALUES ($1, 'lead', $2), ($1, 'lead', $3)",
        ws,
        world.lead(ws),
        uuid4(),
    )
    writes = create_engine(database_url)  # checked at checkout, transactional: for the hub's pruning only
    written = watch(writes)
    hub = ChangeHub(world.views, writes, world.engine, database_url)
    try:
        await hub.read(ws, 0)  # the first read on a connection prepares its statement; count the next ones
        await hub.position(None)
        world.wire.sent.clear()
        changes = await hub.read(ws, 0)
        assert [c.lead_id for c in changes][:1] == [world.lead(ws)] and len(changes) == 2, changes
        assert len(world.wire.sent) == 1 and "changes" in world.wire.sent[0], world.wire.sent
        world.wire.sent.clear()
        position = await hub.position(None)
        assert position.seq >= changes[-1].seq and not position.reset
        assert len(world.wire.sent) == 1, world.wire.sent
        assert not written.sent, written.sent
    finally:
        await writes.dispose()


async def test_a_read_on_a_pooled_connection_the_server_ended_still_answers(
    world: World, pg: asyncpg.Connection
) -> None:
    ws = world.log.workspace_ids[0]
    path = f"/v1/leads/{world.lead(ws)}/timeline"
    assert (await world.get(path, ws)).status_code == 200
    pooled = list(world.wire.pids)
    assert pooled
    for pid in pooled:  # what an operator's pg_terminate_backend, a server restart or an idle timeout does
        assert await pg.fetchval("SELECT pg_terminate_backend($1)", pid)

    async def gone() -> bool:
        return not await pg.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pooled)

    await wait_for(gone, timeout_s=30, what="the terminated backends to exit")
    r = await world.get(path, ws)
    assert r.status_code == 200, r.text
    assert r.json()["items"]
    assert world.wire.disconnects == 1  # the read met the dead connection and went on with a new one
    assert len(world.wire.pids) == len(pooled) + 1
