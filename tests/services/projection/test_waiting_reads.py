"""Waiting timeline reads (``GET /v1/leads/{id}/timeline?wait=``) over real HTTP, on the real broker and database,
and the change hub's wake-ups that answer them.

A read waiting for a lead that is not known yet answers with the lead's first event once it is applied, woken
in the applying process (not by its own notification, which it skips) or by a notification from another
process naming the lead; a conditional read answers 304 while the page is unchanged and 200 as soon as it
changes; bad ``wait`` values are refused naming the field; reads over the process's limit get 503.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from leadstream_schemas import Envelope, Event, InviteSent, LeadDiscovered, LeadSource
from sqlalchemy.ext.asyncio import create_async_engine

from services.projection.api import Timeline, TimelineItem, etag_matches, timeline_answer
from services.projection.app import build
from services.projection.checksum import dsn
from services.projection.live import ChangeHub
from services.projection.store import NOTICE_LEADS_MAX, notice, notice_sql, views
from services.runtime.auth import create_token
from services.runtime.clock import FakeClock
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.support.kafka import produce_events, wait_for
from tests.support.local_http import serve

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WOKEN_WITHIN_S = 20.0
"""A read asked to wait 30 s that answers within this of the event being produced was woken by its commit (not a
timing assertion: the event takes milliseconds to apply; the margin only tells a wake-up from the wait's end)."""


def env(data: Event, ws: str) -> Envelope[Any]:
    return Envelope.new(data, workspace_id=ws, source="leadstream/test", time=NOW)


# -- pure parts ---------------------------------------------------------------------------------------------


def test_notice_reads_the_applier_payload_and_the_bare_workspace_of_older_replicas() -> None:
    assert notice('{"w": "ws-a", "o": "abc", "b": 7}') == notice('{"w":"ws-a","o":"abc","b":7}')
    n = notice('{"w": "ws-a", "o": "abc", "b": 7}')
    assert (n.workspace, n.origin, n.batch) == ("ws-a", "abc", 7)
    assert n.leads is None  # names no leads: any of the workspace's may have changed
    lead = uuid.uuid4()
    assert notice(f'{{"w": "ws-a", "o": "abc", "b": 7, "l": ["{lead}"]}}').leads == {lead}
    assert notice('{"w": "ws-a", "o": "abc", "b": 7, "l": []}').leads == frozenset()
    assert notice("ws-a").workspace == "ws-a" and notice("ws-a").origin is None and notice("ws-a").leads is None
    assert notice('{"w": "ws-a", "o": "abc", "b": 7, "l": ["not a uuid"]}').workspace.startswith("{")
    # Not the applier's JSON: the whole payload is the workspace (as an older replica sends it).
    assert notice('{"w": "ws-a"}').workspace == '{"w": "ws-a"}'
    assert notice("{not json").workspace == "{not json"


def test_etag_matching_is_weak_and_takes_lists_and_star() -> None:
    tag = 'W/"abc"'
    assert etag_matches('W/"abc"', tag) and etag_matches('"abc"', tag) and etag_matches('"x", W/"abc"', tag)
    assert etag_matches("*", tag)
    assert not etag_matches(None, tag) and not etag_matches("", tag) and not etag_matches('"abd"', tag)


def test_timeline_answer_waits_only_for_an_unknown_lead_an_empty_page_or_an_unchanged_one() -> None:
    lead = uuid.uuid4()
    item = TimelineItem(
        event_id=uuid.uuid4(),
        type="InviteSent",
        time=NOW,
        summary="Invite sent",
        campaign_id=None,
        campaign_name=None,
        account_id=None,
        account_name=None,
        step_id=None,
    )
    full, empty = Timeline(lead_id=lead, items=[item]), Timeline(lead_id=lead, items=[])
    assert timeline_answer(None, None).status == 404 and timeline_answer(None, None).waits
    assert timeline_answer(empty, None).status == 200 and timeline_answer(empty, None).waits
    first = timeline_answer(full, None)
    assert first.status == 200 and not first.waits and first.etag.startswith('W/"')
    again = timeline_answer(full, first.etag)
    assert again.status == 304 and again.waits and again.etag == first.etag and again.response().body == b""
    # Another page, another tag: the old tag no longer matches.
    other = timeline_answer(Timeline(lead_id=lead, items=[item, item]), first.etag)
    assert other.status == 200 and other.etag != first.etag


async def test_a_notification_names_the_changed_leads_up_to_a_bound(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    payload = notice_sql("w", "'me'", "3", "lead")
    conn = await asyncpg.connect(dsn(isolated.database_url))
    try:
        for count in (0, 3, NOTICE_LEADS_MAX, NOTICE_LEADS_MAX + 1):
            leads = [uuid.uuid4() for _ in range(count)]
            rows = [*leads, *leads[:1], None]  # a lead twice, a change of no lead (a campaign's)
            sql = f"SELECT {payload} FROM (SELECT 'ws-a' AS w, unnest($1::uuid[]) AS lead) x GROUP BY w"
            n = notice(await conn.fetchval(sql, rows))
            assert (n.workspace, n.origin, n.batch) == ("ws-a", "me", 3)
            assert n.leads == (set(leads) if count <= NOTICE_LEADS_MAX else None)
    finally:
        await conn.close()


async def test_hub_wakes_a_lead_from_its_own_commit_and_skips_that_commits_notification() -> None:
    engine = create_async_engine("postgresql+asyncpg://unused@127.0.0.1:9/unused")  # never connects here
    hub = ChangeHub(views, engine, engine, "postgresql://unused@127.0.0.1:9/unused")
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    with hub.watching("ws-a", mine) as woken, hub.watching("ws-a", theirs) as bystander:
        assert hub.watches == 2
        hub.committed(1, [("ws-a", mine), ("ws-b", None)])
        assert woken.is_set() and not bystander.is_set()  # only the lead the batch changed
        woken.clear()
        hub.notified(f'{{"w": "ws-a", "o": "{hub.origin}", "b": 1}}')  # that batch's own notification: skipped
        assert not woken.is_set() and not bystander.is_set()
        # Its notification again, or one of a batch this process did not wake for (its commit's answer was
        # lost): every watch of the workspace is woken, as by another process's.
        hub.notified(f'{{"w": "ws-a", "o": "{hub.origin}", "b": 1}}')
        assert woken.is_set() and bystander.is_set()
        woken.clear()
        bystander.clear()
        hub.notified('{"w": "ws-b", "o": "another", "b": 1}')
        assert not woken.is_set() and not bystander.is_set()  # another workspace
        hub.notified(f'{{"w": "ws-a", "o": "another", "b": 1, "l": ["{theirs}"]}}')  # names its leads
        assert bystander.is_set() and not woken.is_set()
        bystander.clear()
        hub.notified('{"w": "ws-a", "o": "another", "b": 2, "l": null}')  # names none: all of the workspace
        assert woken.is_set() and bystander.is_set()
    assert hub.watches == 0 and not hub._leads


# -- over HTTP ----------------------------------------------------------------------------------------------


async def _service(world: Isolated, start_service: StartService, **overrides: Any) -> tuple[Any, dict[str, str]]:
    settings = world.settings(**overrides)
    service = await start_service(build(settings, clock=FakeClock(NOW)))
    await wait_for(lambda: service.app.state.projection.assigned_once, timeout_s=60, what="partition assignment")
    await wait_for(lambda: service.app.state.changes.listening, timeout_s=30, what="LISTEN connection")
    token = await create_token(service.engine, "ws-a")
    return service, {"Authorization": f"Bearer {token}"}


async def _produce(world: Isolated, *events: Envelope[Any]) -> None:
    await produce_events(world.kafka, world.prefix, list(events))


@pytest.mark.parametrize("woken_by", ["own commit", "notification"])
async def test_a_waiting_read_answers_with_the_leads_first_event(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
    woken_by: str,
) -> None:
    service, auth = await _service(isolated, start_service)
    hub: ChangeHub = service.app.state.changes
    applier = service.app.state.projection.checkpoint.applier
    if woken_by == "notification":
        # As if another replica applied it: nothing wakes the watch in-process, only the commit's NOTIFY.
        applier.committed = None
    else:
        hub.notified = lambda payload: None  # type: ignore[method-assign]  # only the in-process wake-up is left
    lead = uuid.uuid4()
    async with serve(service.app) as url, httpx.AsyncClient(base_url=url, timeout=60, headers=auth) as http:
        assert (await http.get(f"/v1/leads/{lead}/timeline")).status_code == 404  # not known: at once
        waiting = asyncio.create_task(http.get(f"/v1/leads/{lead}/timeline", params={"wait": 30}))
        await wait_for(lambda: hub.watches == 1, timeout_s=30, what="the read waiting")
        found = LeadDiscovered(lead_id=lead, source=LeadSource.manual, full_name="Ada Adler")
        await _produce(isolated, env(found, "ws-a"))
        # Woken, not timed out: a read that was not woken answers only when its 30 s are up (then from a fresh look,
        # which would show the event too).
        await wait_for(waiting.done, timeout_s=WOKEN_WITHIN_S, what="the waiting read woken by the commit")
        r = await waiting
        assert r.status_code == 200, r.text
        assert [item["event_id"] for item in r.json()["items"]] and r.headers["ETag"].startswith('W/"')
        assert hub.watches == 0


async def test_a_conditional_read_waits_while_unchanged_and_answers_the_change(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    service, auth = await _service(isolated, start_service)
    hub: ChangeHub = service.app.state.changes
    lead, campaign, account = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _produce(isolated, env(LeadDiscovered(lead_id=lead, source=LeadSource.manual, full_name="Ada"), "ws-a"))
    async with serve(service.app) as url, httpx.AsyncClient(base_url=url, timeout=60, headers=auth) as http:
        path = f"/v1/leads/{lead}/timeline"
        first = await wait_for(lambda: http.get(path), until=lambda r: r.status_code == 200, what="the lead")
        tag = first.headers["ETag"]
        # Unchanged: 304 at once without `wait`, and after the wait with it (no change came).
        assert (await http.get(path, headers={"If-None-Match": tag})).status_code == 304
        quiet = await http.get(path, params={"wait": 0.2}, headers={"If-None-Match": tag})
        assert quiet.status_code == 304 and quiet.headers["ETag"] == tag and quiet.content == b""
        # A change while it waits: answered with the new page and its new tag.
        waiting = asyncio.create_task(http.get(path, params={"wait": 30}, headers={"If-None-Match": tag}))
        await wait_for(lambda: hub.watches == 1, timeout_s=30, what="the read waiting")
        await _produce(isolated, env(InviteSent(lead_id=lead, campaign_id=campaign, account_id=account), "ws-a"))
        await wait_for(waiting.done, timeout_s=WOKEN_WITHIN_S, what="the waiting read woken by the change")
        changed = await waiting
        assert changed.status_code == 200 and changed.headers["ETag"] != tag
        assert len(changed.json()["items"]) == len(first.json()["items"]) + 1
        # Another workspace's token never sees the lead, waiting or not.
        other = {"Authorization": f"Bearer {await create_token(service.engine, 'ws-b')}"}
        assert (await http.get(path, params={"wait": 0.1}, headers=other)).status_code == 404


async def test_wait_is_bounded_and_so_are_the_waiting_reads(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    service, auth = await _service(isolated, start_service, projection_watches_max=1)
    hub: ChangeHub = service.app.state.changes
    path = f"/v1/leads/{uuid.uuid4()}/timeline"
    async with serve(service.app) as url, httpx.AsyncClient(base_url=url, timeout=60, headers=auth) as http:
        for bad in ("31", "-1", "soon"):
            r = await http.get(path, params={"wait": bad})
            assert r.status_code == 422 and "wait" in r.text, r.text
        assert (await http.get(path, headers={"If-None-Match": "x" * 1001})).status_code == 422
        waiting = asyncio.create_task(http.get(path, params={"wait": 30}))
        await wait_for(lambda: hub.watches == 1, timeout_s=30, what="the read waiting")
        over = await http.get(path, params={"wait": 5})
        assert over.status_code == 503 and over.headers["Retry-After"] == "1"
        assert over.json()["code"] == "too_many_waiting"
        assert (await http.get(path)).status_code == 404  # a read that does not wait is not limited
        # The service stopping answers a waiting read as it stands, at once.
        hub.stopping.set()
        hub.wake()
        assert (await waiting).status_code == 404
