"""What the console's actions need from outreach: plan gates with an upgrade, idempotent create and launch,
the simulated provider's hosted page (connect and reconnect), "check again" of a pending account, the
launch plan (where each lead will go) and replacing a deleted account to resolve a campaign that needs review."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from services.runtime.auth import create_token
from tests.services.outreach.support import (
    MakeSettings,
    Outreach,
    StartService,
    lead_events,
    of_type,
    signed,
    start_outreach,
)
from tests.support.kafka import wait_for

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OPEN = {"active_days": "every_day", "start_hour": 0, "end_hour": 24, "pace": "high_volume"}


def _campaign(account: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "c",
        "audience": {"type": "source_group", "ref": str(uuid.uuid4())},
        "delivery": OPEN,
        "account_ids": [account],
    }
    body.update(extra)
    return body


async def _client_of_new_workspace(o: Outreach) -> httpx.AsyncClient:
    token = await create_token(o.service.engine, f"ws-new-{uuid.uuid4().hex[:8]}")
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=o.service.app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_plan_gates_name_the_field_and_an_upgrade_unlocks_them(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    client = await _client_of_new_workspace(o)
    plan = (await client.get("/v1/plan")).json()
    assert (
        plan["plan"] == "starter"
        and plan["features"] == []
        and {p["name"] for p in plan["plans"]}
        == {
            "starter",
            "scale",
        }
    )
    account = (await client.post("/v1/accounts", json={"provider": "linkedin", "display_name": "Ada"})).json()
    video = _campaign(account["account_id"], video={"template_id": "vt-1", "segments": []})
    refused = await client.post("/v1/campaigns", json=video)
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["code"] == "plan_required" and problem["field"] == "video"
    assert problem["errors"] == [{"field": "video", "message": problem["detail"].removeprefix("video: ")}]
    assert problem["upgrade"] == {"add_on": "video", "label": "add Personalised video"}
    sender = await client.post("/v1/accounts", json={"provider": "email", "sender_email": "sales@acme.example"})
    assert sender.status_code == 403 and sender.json()["field"] == "provider"
    assert sender.json()["upgrade"]["add_on"] == "email_sender"
    # nothing was made by the refused requests
    assert [a["provider"] for a in (await client.get("/v1/accounts")).json()["items"]] == ["linkedin"]

    empty = await client.post("/v1/plan/upgrade", json={})
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "plan"
    upgraded = (await client.post("/v1/plan/upgrade", json={"add_ons": ["video"]})).json()
    assert upgraded["add_ons"] == ["video"] and upgraded["features"] == ["video"] and upgraded["plan"] == "starter"
    assert (await client.post("/v1/campaigns", json=video)).status_code == 201
    scale = (await client.post("/v1/plan/upgrade", json={"plan": "scale"})).json()
    assert scale["plan"] == "scale" and scale["features"] == ["email_sender", "video"]
    lower = (await client.post("/v1/plan/upgrade", json={"plan": "starter"})).json()
    assert lower["plan"] == "scale", "an upgrade never downgrades"
    sender = await client.post("/v1/accounts", json={"provider": "email", "sender_email": "sales@acme.example"})
    assert sender.status_code == 201, sender.text
    await client.aclose()


async def test_a_doubled_create_and_launch_make_one_campaign_launched_once(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    account = await o.account("a")
    body = _campaign(account, name="double click")
    headers = {"Idempotency-Key": "builder-1:campaign"}
    first, second = await asyncio.gather(
        o.client.post("/v1/campaigns", json=body, headers=headers),
        o.client.post("/v1/campaigns", json=body, headers=headers),
    )
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json()["campaign_id"] == second.json()["campaign_id"]
    assert "true" in (first.headers.get("Idempotent-Replayed"), second.headers.get("Idempotent-Replayed"))
    campaign = first.json()["campaign_id"]
    reused = await o.client.post("/v1/campaigns", json={**body, "name": "another"}, headers=headers)
    assert reused.status_code == 422 and reused.json()["field"] == "Idempotency-Key"
    assert [c["campaign_id"] for c in (await o.api("GET", "/v1/campaigns", 200))["items"]] == [campaign]

    launch = {"Idempotency-Key": "launch-1"}
    a, b = await asyncio.gather(
        o.client.post(f"/v1/campaigns/{campaign}/launch", json={}, headers=launch),
        o.client.post(f"/v1/campaigns/{campaign}/launch", json={}, headers=launch),
    )
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json()["state"] == b.json()["state"] == "running"
    again = await o.client.post(f"/v1/campaigns/{campaign}/launch", json={})
    assert again.status_code == 409, "without the key a second launch is refused as before"
    launched = await o.events(lambda e: type(e.data).__name__ == "CampaignLaunched")
    assert len(launched) == 1


async def test_hosted_page_connects_and_reconnects_and_returns_to_the_console(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    o.ctx.linkedin.callback_transport = httpx.ASGITransport(app=o.service.app)  # type: ignore[attr-defined]
    back = "http://console.example/accounts"
    pending = await o.api(
        "POST",
        "/v1/accounts",
        202,
        json={"provider": "linkedin", "display_name": "Ada", "hosted": True, "return_url": back},
    )
    account = pending["account_id"]
    assert (await o.api("POST", f"/v1/accounts/{account}/refresh", 200))["status"] == "pending"  # not done yet
    link = urlsplit(pending["auth_url"])
    assert link.path == f"/sim/linkedin/hosted/{account}"
    page = await o.client.get(link.path + "?" + link.query)
    assert page.status_code == 200 and "Connect your LinkedIn account" in page.text
    query = {k: v[0] for k, v in parse_qs(link.query, keep_blank_values=True).items()}
    forged = await o.client.post(link.path, data={**query, "return_url": "http://evil.example/", "action": "connect"})
    assert forged.status_code == 403
    done = await o.client.post(link.path, data={**query, "action": "connect"})
    assert done.status_code == 303 and done.headers["location"] == f"{back}?account={account}&hosted=connected"
    assert (await o.api("GET", f"/v1/accounts/{account}", 200))["status"] == "connected"

    # Reconnect: a campaign paused by CREDENTIALS runs again once the hosted reconnect completes.
    cid = (await o.api("POST", "/v1/campaigns", 201, json=_campaign(account)))["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    credentials = signed(o.settings, {"account_id": account, "status": "CREDENTIALS"})
    await o.api("POST", "/v1/webhooks/accounts", 200, **credentials)
    assert (await o.api("GET", f"/v1/campaigns/{cid}", 200))["state"] == "paused"
    again = await o.api("POST", f"/v1/accounts/{account}/reconnect-link", 200, json={"return_url": back})
    link = urlsplit(again["auth_url"])
    query = {k: v[0] for k, v in parse_qs(link.query, keep_blank_values=True).items()}
    assert query["kind"] == "reconnect"
    assert "Reconnect your LinkedIn account" in (await o.client.get(link.path + "?" + link.query)).text
    done = await o.client.post(link.path, data={**query, "action": "connect"})
    assert done.headers["location"].endswith("hosted=reconnected")
    assert (await o.api("GET", f"/v1/accounts/{account}", 200))["healthy"] is True
    assert (await o.api("GET", f"/v1/campaigns/{cid}", 200))["state"] == "running"
    other = await _client_of_new_workspace(o)
    assert (await other.post(f"/v1/accounts/{account}/reconnect-link", json={})).status_code == 404
    await other.aclose()


async def test_check_again_connects_an_account_whose_callback_was_lost(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    pending = await o.api("POST", "/v1/accounts", 202, json={"provider": "linkedin", "hosted": True})
    account = pending["account_id"]
    assert (await o.api("POST", f"/v1/accounts/{account}/refresh", 200))["healthy"] is False
    o.ctx.linkedin.hosted_done(account)  # type: ignore[attr-defined]  # the user finished; the callback got lost
    checked = await o.api("POST", f"/v1/accounts/{account}/refresh", 200)
    assert checked["status"] == "connected" and checked["healthy"] is True
    got = await o.events(lambda e: getattr(e.data, "account_id", None) == uuid.UUID(account))
    assert [type(e.data).__name__ for e in got] == ["AccountConnectionRequested", "AccountConnected"]


async def test_launch_plan_and_replacing_a_deleted_account(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    a, b, c = await o.account("a"), await o.account("b"), await o.account("c")
    group = uuid.uuid4()
    leads, events = lead_events(group, 6, tag=o.workspace)
    await o.produce(events)
    body = _campaign(a, audience={"type": "source_group", "ref": str(group)}, account_ids=[a, b])
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]

    async def members() -> bool:
        plan = await o.api("GET", f"/v1/campaigns/{cid}/launch-plan", 200)
        return bool(plan["leads"]["ready"] == 6)

    await wait_for(members, timeout_s=60, what="the audience known to outreach")
    plan = await o.api("GET", f"/v1/campaigns/{cid}/launch-plan", 200)
    by_account = {x["account_id"]: x for x in plan["accounts"]}
    assert set(by_account) == {a, b} and all(x["active"] for x in by_account.values())
    assert sum(x["leads"] for x in by_account.values()) == 6
    assert {x["lead_id"] for x in plan["assignments"]} == {str(x) for x in leads}
    assert all(x["account_id"] in (a, b) and x["status"] == "ready" for x in plan["assignments"])

    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    await o.wait_enrolled(cid, 6)
    on_a = [x["lead_id"] for x in plan["assignments"] if x["account_id"] == a]
    await o.api("DELETE", f"/v1/accounts/{a}", 204)
    await o.api("DELETE", f"/v1/accounts/{b}", 204)
    details = await o.api("GET", f"/v1/campaigns/{cid}", 200)
    assert details["state"] == "needs_review" and "was deleted" in details["message"]

    refused = await o.client.put(f"/v1/campaigns/{cid}/accounts", json={"account_ids": [c, a]})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "account_ids.1"
    d = await o.account("d")
    await o.api("POST", "/v1/webhooks/accounts", 200, **signed(o.settings, {"account_id": d, "status": "CREDENTIALS"}))
    refused = await o.client.put(f"/v1/campaigns/{cid}/accounts", json={"account_ids": [d]})
    assert refused.status_code == 409 and refused.json()["errors"][0]["field"] == "account_ids"
    fixed = await o.api("PUT", f"/v1/campaigns/{cid}/accounts", 200, json={"account_ids": [c]})
    assert fixed["state"] == "running" and fixed["message"] is None
    assert {w["account_id"]: w["state"] for w in fixed["workers"]} == {a: "stopped", b: "stopped", c: "active"}
    leads = (await o.api("GET", f"/v1/campaigns/{cid}/leads", 200, params={"limit": 200}))["items"]
    enrolled = {x["lead_id"]: x["account_id"] for x in leads}
    assert set(enrolled.values()) == {c} and set(on_a) <= set(enrolled)
    resumed = await o.events(lambda e: type(e.data).__name__ == "CampaignResumed")
    assert [e.data.reason for e in resumed] == ["accounts_replaced"]
    leased = of_type(await o.events(), "AccountLeaseAcquired")
    assert uuid.UUID(c) in {e.data.account_id for e in leased}
    other = await _client_of_new_workspace(o)
    assert (await other.get(f"/v1/campaigns/{cid}/launch-plan")).status_code == 404
    assert (await other.put(f"/v1/campaigns/{cid}/accounts", json={"account_ids": [c]})).status_code == 404
    await other.aclose()


async def test_a_workflow_is_validated_and_drawn_before_the_campaign_exists(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    body = {"workflow": {"preset": "standard_connect", "without": ["message"]}, "email_fallback": True}
    graph = (await o.api("POST", "/v1/workflows/validate", 200, json=body))["graph"]
    assert [s["id"] for s in graph["steps"]] == ["invite", "follow_up", "email"]
    assert graph["unreachable"] == ["follow_up"] and len(graph["warnings"]) == 3
    bad = await o.client.post(
        "/v1/workflows/validate", json={"workflow": {"preset": "direct_connect", "spacing_minutes": 1}}
    )
    assert bad.status_code == 422 and bad.json()["errors"] == [
        {"field": "workflow.spacing_minutes", "message": "step spacing (minutes) must be between 5 and 720, got 1"}
    ]
    account = await o.account("a")
    options = {"preset": "direct_connect", "invite_wait_hours": 3}
    created = await o.api("POST", "/v1/campaigns", 201, json=_campaign(account, workflow=options))
    assert created["workflow"]["preset"] == "direct_connect"
    assert created["workflow"]["edges"][0]["delay_minutes"] == 180
