"""The projection's change stream and console views over real HTTP, on the real broker and database.

Events produced to Kafka reach an open Server-Sent Events stream; a client that reconnects with
``Last-Event-ID`` gets exactly what it missed; an id from another log gets a reset; another workspace's
changes never arrive. The new read endpoints answer from the same events.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from leadstream_schemas import (
    AccountConnected,
    AccountStatusChanged,
    Audience,
    CampaignCreated,
    CampaignLaunched,
    Channel,
    Envelope,
    Event,
    Hook,
    InviteSent,
    LeadDiscovered,
    LeadProfileEnriched,
    LeadSource,
    MessageGenerated,
)

from services.console.sse import SseEvent, parse
from services.projection.app import build
from services.runtime.auth import create_token
from services.runtime.clock import FakeClock
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.support.kafka import produce_events, wait_for
from tests.support.local_http import serve

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def env(data: Event, ws: str, at: datetime) -> Envelope[Any]:
    return Envelope.new(data, workspace_id=ws, source="leadstream/test", time=at)


async def events_of(http: httpx.AsyncClient, headers: dict[str, str], out: list[SseEvent]) -> None:
    async with http.stream("GET", "/v1/changes/stream", headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        async for event in parse(r.aiter_lines()):
            out.append(event)


async def _until(events: list[SseEvent], pred: Any, what: str) -> SseEvent:
    async def found() -> SseEvent | None:
        return next((e for e in events if pred(e)), None)

    return await wait_for(found, timeout_s=60, interval_s=0.05, what=what)


async def test_changes_stream_live_and_resume_without_gaps(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    settings = isolated.settings()
    service = await start_service(build(settings, clock=FakeClock(NOW)))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="partition assignment")
    await wait_for(lambda: service.app.state.changes.listening, timeout_s=30, what="LISTEN connection")
    token = await create_token(service.engine, "ws-a")
    other = await create_token(service.engine, "ws-b")
    a = {"Authorization": f"Bearer {token}"}
    leads = [uuid.uuid4() for _ in range(4)]

    async def discover(i: int, ws: str = "ws-a") -> None:
        data = LeadDiscovered(lead_id=leads[i], source=LeadSource.manual, full_name=f"Lead {i}")
        await produce_events(settings.kafka_bootstrap_servers, settings.topic_prefix, [env(data, ws, NOW)])

    async with serve(service.app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        seen: list[SseEvent] = []
        theirs: list[SseEvent] = []
        reader = asyncio.create_task(events_of(http, a, seen))
        spy = asyncio.create_task(events_of(http, {"Authorization": f"Bearer {other}"}, theirs))
        try:
            # The stream starts at the head; an event produced now arrives on the open stream.
            await wait_for(
                lambda: len(service.app.state.changes._waiters) == 2, timeout_s=30, what="both streams following"
            )
            await discover(0)
            first = await _until(seen, lambda e: e.event == "change", "the first change on the stream")
            body = json.loads(first.data)
            assert body["kind"] == "lead" and body["lead_id"] == str(leads[0])
        finally:
            reader.cancel()
        # While disconnected: two more changes. Reconnecting after the first one's id gets both, in order.
        await discover(1)
        await discover(2)
        await wait_for(lambda: consumer.applied >= 3, timeout_s=60, what="the changes made while disconnected applied")
        resumed: list[SseEvent] = []
        again = asyncio.create_task(events_of(http, {**a, "Last-Event-ID": first.id or ""}, resumed))
        try:
            wanted = {str(leads[1]), str(leads[2])}

            def changed() -> set[str]:
                return {json.loads(e.data).get("lead_id") for e in resumed if e.event == "change"}

            await wait_for(changed, until=lambda got: wanted <= got, timeout_s=30, what="the missed changes")
            # Both, once each, nothing from before the id (the two leads' partitions may apply in one batch, in
            # partition order: the log's order across partitions is not the producer's).
            missed = [json.loads(e.data)["lead_id"] for e in resumed if e.event == "change"]
            assert sorted(missed[:2]) == sorted(wanted) and str(leads[0]) not in missed
            ids = [int((e.id or "0-0").split("-")[1]) for e in resumed]
            assert ids == sorted(ids) and ids[0] > int((first.id or "").split("-")[1])
        finally:
            again.cancel()
        # An id from another log (another epoch) is answered with a reset.
        stale: list[SseEvent] = []
        old = asyncio.create_task(events_of(http, {**a, "Last-Event-ID": "1-5"}, stale))
        try:
            reset = await _until(stale, lambda e: e.event == "reset", "a reset for an id of another epoch")
            assert reset.id and reset.id.split("-")[0] == (first.id or "").split("-")[0]
        finally:
            old.cancel()
        # Another workspace's change reaches its own stream only.
        await discover(3, ws="ws-b")
        await _until(theirs, lambda e: json.loads(e.data).get("lead_id") == str(leads[3]), "ws-b's change")
        spy.cancel()
        assert all(json.loads(e.data).get("lead_id") != str(leads[3]) for e in seen + resumed)
        assert (await http.get("/v1/changes/stream")).status_code == 401


async def test_console_views_over_http(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    settings = isolated.settings()
    service = await start_service(build(settings, clock=FakeClock(NOW)))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="partition assignment")
    token = await create_token(service.engine, "ws-v")
    outsider = await create_token(service.engine, "ws-w")
    acc, camp, group, lead, draft = (uuid.uuid4() for _ in range(5))
    t = NOW - timedelta(days=2)
    log = [
        env(AccountConnected(account_id=acc, display_name="Sam SDR"), "ws-v", t),
        env(
            CampaignCreated(
                campaign_id=camp,
                name="Q1 RevOps",
                audience=Audience(type="source_group", ref=str(group)),
                account_ids=[acc],
            ),
            "ws-v",
            t,
        ),
        env(CampaignLaunched(campaign_id=camp, account_ids=[acc]), "ws-v", t + timedelta(minutes=1)),
        env(
            LeadDiscovered(lead_id=lead, source=LeadSource.signals, source_group_id=group, full_name="Ada Adler"),
            "ws-v",
            t + timedelta(minutes=2),
        ),
        env(
            LeadProfileEnriched(
                lead_id=lead, full_name="Ada Adler", role="VP Sales", company_name="Northwind", company_size="51-200"
            ),
            "ws-v",
            t + timedelta(minutes=3),
        ),
        env(
            MessageGenerated(
                lead_id=lead,
                campaign_id=camp,
                draft_id=draft,
                channel=Channel.invite,
                step_id="invite",
                text="Hi Ada",
                hook=Hook(kind="role_company", detail="VP Sales at Northwind", reason="no posts"),
                needs_review=True,
            ),
            "ws-v",
            t + timedelta(minutes=4),
        ),
        env(InviteSent(lead_id=lead, campaign_id=camp, account_id=acc, step_id="invite"), "ws-v", NOW),
        env(
            AccountStatusChanged(account_id=acc, status="credentials", previous="connected", healthy=False),
            "ws-v",
            NOW,
        ),
    ]
    await produce_events(settings.kafka_bootstrap_servers, settings.topic_prefix, log)
    await wait_for(lambda: consumer.applied >= len(log), timeout_s=60, what="the log applied")
    async with (
        serve(service.app) as url,
        httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http,
    ):
        detail = (await http.get(f"/v1/leads/{lead}")).json()
        assert detail["profile"]["role"] == "VP Sales" and detail["profile"]["company_size"] == "51-200"
        [step] = detail["outreach"]
        assert (step["text"], step["review_state"], step["campaign_name"]) == ("Hi Ada", "pending_review", "Q1 RevOps")
        assert step["hook"]["detail"] == "VP Sales at Northwind"

        series = (await http.get(f"/v1/campaigns/{camp}/series", params={"days": 3, "tz": "Europe/Berlin"})).json()
        assert [d["invites"] for d in series["days"]] == [0, 0, 1] and series["timezone"] == "Europe/Berlin"
        assert (await http.get(f"/v1/campaigns/{camp}/series", params={"tz": "Mars/Olympus"})).status_code == 422
        stages = (await http.get(f"/v1/campaigns/{camp}/stages")).json()["stages"]
        assert stages == [{"stage": "invite_sent", "label": "invite sent", "count": 1}]

        [account] = (await http.get("/v1/accounts")).json()["items"]
        assert account["health"] == "reconnect_required" and "reconnect" in account["reason"]
        assert account["campaigns"] == [
            {"campaign_id": str(camp), "name": "Q1 RevOps", "state": "running", "leased": False}
        ]
        onboarding = (await http.get("/v1/onboarding")).json()
        assert onboarding["complete"] and [s["done"] for s in onboarding["steps"]] == [True, True, True]
        kinds = [i["kind"] for i in (await http.get("/v1/inbox")).json()["items"]]
        assert kinds == ["reconnect_account", "drafts_waiting"]
        home = (await http.get("/v1/home")).json()
        assert home["inbox"]["items"][0]["kind"] == "reconnect_account" and home["onboarding"]["complete"]
        one = (await http.get(f"/v1/campaigns/{camp}")).json()
        assert (one["name"], one["state"], one["audience_type"]) == ("Q1 RevOps", "running", "source_group")
        found = (await http.get("/v1/campaigns", params={"q": "revops"})).json()["items"]
        assert [c["campaign_id"] for c in found] == [str(camp)]
        assert (await http.get("/v1/campaigns", params={"q": "nothing like it"})).json()["items"] == []

        w = {"Authorization": f"Bearer {outsider}"}
        for path in (
            f"/v1/campaigns/{camp}",
            f"/v1/campaigns/{camp}/series",
            f"/v1/campaigns/{camp}/stages",
            f"/v1/leads/{lead}",
        ):
            assert (await http.get(path, headers=w)).status_code == 404, path
        assert (await http.get("/v1/accounts", headers=w)).json()["items"] == []
        empty = (await http.get("/v1/onboarding", headers=w)).json()
        assert empty["next_step"] == "account_connected" and not empty["complete"]
        assert [i["kind"] for i in (await http.get("/v1/inbox", headers=w)).json()["items"]] == ["connect_account"]
