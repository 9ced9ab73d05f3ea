"""The campaign API: validation (422s name the range), workspace scoping, list, launch guard, transitions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.outreach.app import build
from services.runtime.auth import create_token
from tests.services.outreach.support import MakeSettings, Outreach, StartService, of_type, start_outreach

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@pytest.fixture
async def o(make_settings: MakeSettings, start_service: StartService, topic_prefix: str) -> Outreach:
    return await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)


def _campaign(account: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Q1 founders",
        "audience": {"type": "source_group", "ref": str(uuid.uuid4())},
        "workflow": "standard_connect",
        "account_ids": [account],
    }
    body.update(changes)
    return body


async def _error(o: Outreach, body: dict[str, Any]) -> tuple[str, str]:
    problem = await o.api("POST", "/v1/campaigns", 422, json=body)
    return problem["errors"][0]["field"], problem["detail"]


async def test_out_of_range_values_are_422s_naming_the_range(o: Outreach) -> None:
    a = await o.account()
    spacing = {
        "steps": [{"id": "l", "action": "like"}, {"id": "c", "action": "comment"}],
        "edges": [{"from": "l", "to": "c", "delay_minutes": 721}],
    }
    assert await _error(o, _campaign(a, workflow=spacing)) == (
        "workflow.edges[0].delay_minutes",
        "workflow.edges[0].delay_minutes: step spacing (minutes) must be between 5 and 720, got 721",
    )
    wait = {
        "steps": [{"id": "i", "action": "invite"}, {"id": "m", "action": "message"}],
        "edges": [{"from": "i", "to": "m", "condition": "accepted", "wait_hours": 169}],
    }
    field, detail = await _error(o, _campaign(a, workflow=wait))
    assert field == "workflow.edges[0].wait_hours" and "between 1 and 168" in detail
    field, detail = await _error(o, _campaign(a, delivery={"pace": "manual", "daily_limit": 76}))
    assert field == "delivery.daily_limit" and "between 10 and 75" in detail
    field, detail = await _error(o, _campaign(a, delivery={"pace": "manual", "daily_limit": 9}))
    assert "between 10 and 75" in detail
    field, detail = await _error(o, _campaign(a, delivery={"start_hour": 24}))
    assert field == "delivery.start_hour" and "between 0 and 23" in detail
    field, detail = await _error(o, _campaign(a, delivery={"timezone": "Mars/Olympus"}))
    assert field == "delivery.timezone" and "unknown time zone" in detail
    field, detail = await _error(o, _campaign(a, workflow="spray_and_pray"))
    assert field == "workflow" and "unknown preset" in detail
    field, detail = await _error(o, _campaign(a, account_ids=[str(uuid.uuid4())]))
    assert field == "account_ids.0"
    field, detail = await _error(
        o, _campaign(a, workflow="standard_connect", audience={"type": "source_group", "ref": "not-a-uuid"})
    )
    assert field == "audience" and "UUID" in detail
    email_graph = {
        "steps": [{"id": "i", "action": "invite"}, {"id": "e", "action": "email"}],
        "edges": [{"from": "i", "to": "e", "condition": "not_accepted"}],
    }
    field, detail = await _error(o, _campaign(a, workflow=email_graph))
    assert field == "delivery.email_fallback"
    field, detail = await _error(
        o,
        _campaign(
            a,
            workflow=email_graph,
            delivery={"email_fallback": {"sender_email": "nobody@ours.example", "subject": "s", "body": "b"}},
        ),
    )
    assert field == "delivery.email_fallback.sender_email" and "not a verified sender" in detail


async def test_message_and_email_caps_default_by_pace_and_overrides_are_checked(o: Outreach) -> None:
    a = await o.account()
    for pace, messages, emails in (("conservative", 30, 40), ("high_volume", 100, 150)):
        delivery = (await o.api("POST", "/v1/campaigns", 201, json=_campaign(a, delivery={"pace": pace})))["delivery"]
        assert (delivery["daily_message_limit"], delivery["daily_email_limit"]) == (messages, emails)
    custom = {"pace": "high_volume", "daily_message_limit": 1, "daily_email_limit": 200}
    delivery = (await o.api("POST", "/v1/campaigns", 201, json=_campaign(a, delivery=custom)))["delivery"]
    assert (delivery["daily_message_limit"], delivery["daily_email_limit"]) == (1, 200)
    for field, bad, text in (
        ("daily_message_limit", 0, "between 1 and 150 messages per day, got 0"),
        ("daily_message_limit", 151, "between 1 and 150 messages per day, got 151"),
        ("daily_email_limit", 0, "between 1 and 200 emails per day, got 0"),
        ("daily_email_limit", 201, "between 1 and 200 emails per day, got 201"),
    ):
        where, detail = await _error(o, _campaign(a, delivery={field: bad}))
        assert where == f"delivery.{field}" and text in detail, (where, detail)


async def test_launch_guard_names_1_to_79(o: Outreach) -> None:
    a = await o.account()
    cid = (await o.api("POST", "/v1/campaigns", 201, json=_campaign(a)))["campaign_id"]
    for bad in (0, 80):
        problem = await o.api("POST", f"/v1/campaigns/{cid}/launch", 422, json={"daily_limit": bad})
        assert "between 1 and 79" in problem["detail"]
    for field, bad, text in (
        ("daily_message_limit", 0, "between 1 and 150 messages per day, got 0"),
        ("daily_message_limit", 151, "between 1 and 150 messages per day, got 151"),
        ("daily_email_limit", 201, "between 1 and 200 emails per day, got 201"),
    ):
        problem = await o.api("POST", f"/v1/campaigns/{cid}/launch", 422, json={field: bad, "daily_limit": 5})
        assert [e["field"] for e in problem["errors"]] == [field] and text in problem["detail"], problem
    assert (await o.api("GET", f"/v1/campaigns/{cid}", 200))["state"] == "pending"  # a refused launch changes nothing
    launched = await o.api(
        "POST",
        f"/v1/campaigns/{cid}/launch",
        200,
        json={"daily_limit": 5, "daily_message_limit": 12, "daily_email_limit": 7},
    )
    assert launched["pace"] == "Manual: 5 invites per day" and launched["delivery"]["daily_cap"] == 5
    caps = (launched["delivery"]["daily_message_limit"], launched["delivery"]["daily_email_limit"])
    assert caps == (12, 7)
    assert (await o.api("POST", f"/v1/campaigns/{cid}/launch", 409))["code"] == "invalid_state"


async def test_workspaces_are_isolated_and_lists_search(o: Outreach) -> None:
    a = await o.account()
    cid = (await o.api("POST", "/v1/campaigns", 201, json=_campaign(a, name="Berlin founders")))["campaign_id"]
    await o.api("POST", "/v1/campaigns", 201, json=_campaign(a, name="London CTOs"))
    found = (await o.api("GET", "/v1/campaigns", 200, params={"q": "berlin"}))["items"]
    assert [c["name"] for c in found] == ["Berlin founders"]
    assert found[0]["audience_type"] == "source_group" and found[0]["state"] == "pending"
    assert found[0]["pace"] == "Recommended: 20 invites per day" and found[0]["next_run_at"] is None
    token = await create_token(o.service.engine, "ws-other")
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=o.service.app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {token}"},
    )
    for method, path in (
        ("GET", f"/v1/campaigns/{cid}"),
        ("POST", f"/v1/campaigns/{cid}/launch"),
        ("POST", f"/v1/campaigns/{cid}/pause"),
        ("DELETE", f"/v1/campaigns/{cid}"),
        ("GET", f"/v1/accounts/{a}"),
    ):
        resp = await other.request(method, path)
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json()["code"] == "not_found"
    assert (await other.get("/v1/campaigns")).json() == {"items": [], "next": None}
    # A filter on a state or kind that does not exist is a 422 naming it, not an empty page or a missing entry.
    # (Both made at the same instant of the test's clock: their order is their random ids'.)
    pending = (await o.api("GET", "/v1/campaigns", 200, params={"state": "pending"}))["items"]
    assert sorted(c["name"] for c in pending) == ["Berlin founders", "London CTOs"]
    bogus = await o.api("GET", "/v1/campaigns", 422, params={"state": "bogus"})
    assert [e["field"] for e in bogus["errors"]] == ["state"]
    kind = await o.api("DELETE", "/v1/blocklist", 422, params={"kind": "bogus", "value": "acme.com"})
    assert [e["field"] for e in kind["errors"]] == ["kind"]
    await o.api("POST", "/v1/blocklist", 201, json={"kind": "domain", "value": "acme.com"})
    await o.api("DELETE", "/v1/blocklist", 204, params={"kind": "domain", "value": "acme.com"})
    # An entry that could never match anyone is refused, saying what its kind expects (it was kept as typed).
    not_email = await o.api("POST", "/v1/blocklist", 422, json={"kind": "email", "value": "ada.acme.com"})
    assert [e["field"] for e in not_email["errors"]] == ["value"]
    assert "email address" in not_email["errors"][0]["message"], not_email
    assert (await o.api("GET", "/v1/blocklist", 200))["items"] == []
    assert (await o.client.get("/v1/campaigns", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_transitions_leases_and_skipped_accounts(o: Outreach) -> None:
    a, b = await o.account("a"), await o.account("b")
    # b needs reconnecting: launching skips it with a message
    from tests.services.outreach.support import signed

    await o.api("POST", "/v1/webhooks/accounts", 200, **signed(o.settings, {"account_id": b, "status": "CREDENTIALS"}))
    body = _campaign(a, account_ids=[a, b], delivery={"active_days": "every_day", "start_hour": 0, "end_hour": 24})
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
    launched = await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    assert launched["state"] == "running"
    assert list(launched["skipped_accounts"]) == [b] and "reconnect" in launched["skipped_accounts"][b]
    assert [w["account_id"] for w in launched["workers"]] == [a]
    assert (await o.api("GET", f"/v1/accounts/{a}", 200))["leases"] == [cid]
    paused = await o.api("POST", f"/v1/campaigns/{cid}/pause", 200)
    assert paused["state"] == "paused" and paused["pause_reason"] == "user"
    assert (await o.api("GET", f"/v1/accounts/{a}", 200))["leases"] == []
    assert (await o.api("POST", f"/v1/campaigns/{cid}/resume", 200))["state"] == "running"
    await o.api("DELETE", f"/v1/campaigns/{cid}", 204)
    assert (await o.api("GET", f"/v1/accounts/{a}", 200))["leases"] == []
    await o.api("GET", f"/v1/campaigns/{cid}", 404)
    got = await o.events(lambda e: getattr(e.data, "campaign_id", None) == uuid.UUID(cid))
    names = [type(e.data).__name__ for e in got]
    assert [n for n in names if n.startswith("Campaign") and n != "CampaignAudienceRunRequested"] == [
        "CampaignCreated",
        "CampaignLaunched",
        "CampaignPaused",
        "CampaignResumed",
        "CampaignDeleted",
    ]
    assert [n for n in names if n.startswith("AccountLease")] == [
        "AccountLeaseAcquired",
        "AccountLeaseReleased",
        "AccountLeaseAcquired",
        "AccountLeaseReleased",
    ]
    launched_event = of_type(got, "CampaignLaunched")[0].data
    assert launched_event.account_ids == [uuid.UUID(a)] and list(launched_event.skipped_accounts) == [b]
    created = of_type(got, "CampaignCreated")[0].data
    assert created.workflow is not None and created.workflow.preset == "standard_connect"
    assert [s.id for s in created.workflow.text_steps()] == ["invite", "message", "follow_up"]
    assert created.strategy.review is False
    assert created.delivery.daily_cap == 20 and created.account_ids == [uuid.UUID(a), uuid.UUID(b)]


async def test_presets_are_documented(o: Outreach) -> None:
    presets = await o.api("GET", "/v1/workflow-presets", 200)
    assert [p["title"] for p in presets] == [
        "Warm intro",
        "Standard connect",
        "Direct connect",
        "Message connected leads",
    ]
    assert all(p["description"] and p["graph"]["steps"] for p in presets)


def _untyped(doc: dict[str, Any], schema: dict[str, Any], at: str, seen: set[str]) -> list[str]:
    """Where an answer's schema is "an object" without its fields (a ``dict[str, Any]``): an object needs
    ``properties`` or typed values (``additionalProperties`` with a schema)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return []
        seen.add(name)
        return _untyped(doc, doc["components"]["schemas"][name], f"{at}({name})", seen)
    found: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for i, part in enumerate(schema.get(key, [])):
            found += _untyped(doc, part, f"{at}.{key}[{i}]", seen)
    if schema.get("type") == "array":
        found += _untyped(doc, schema.get("items", {}), f"{at}[]", seen)
    if schema.get("type") == "object" or "properties" in schema:
        values = schema.get("additionalProperties")
        if "properties" not in schema and not isinstance(values, dict):
            found.append(at)
        for name, prop in schema.get("properties", {}).items():
            found += _untyped(doc, prop, f"{at}.{name}", seen)
        if isinstance(values, dict):
            found += _untyped(doc, values, f"{at}.*", seen)
    return found


def test_every_answer_declares_its_fields() -> None:
    """Typed models on the wire: every JSON answer of outreach is described field by field in its OpenAPI document,
    so a client (the console, the CLI, a fuzzer) reads what the document says instead of guessing."""
    doc = build().app.openapi()
    untyped: list[str] = []
    answers = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op.get("responses", {}).items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                if not status.startswith("2") or schema is None:
                    continue
                answers += 1
                untyped += _untyped(doc, schema, f"{method.upper()} {path} {status}", set())
    assert answers >= 30, answers  # the walk reached the routes
    assert not untyped, "\n".join(untyped)


async def test_typed_answers_keep_their_shape(o: Outreach) -> None:
    """The models describe what the routes sent before they were typed, byte for byte where clients look: a step's
    action-specific fields are absent (not null) for other actions, edges say from/to, times keep their offset."""
    standard = next(p for p in await o.api("GET", "/v1/workflow-presets", 200) if p["name"] == "standard_connect")
    steps = {s["id"]: s for s in standard["graph"]["steps"]}
    assert set(steps["invite"]) == {"id", "action", "needs_text", "channel", "note", "accept_timeout_hours"}
    assert steps["message"] == {"id": "message", "action": "message", "needs_text": True, "channel": "message"}
    assert set(standard["graph"]["edges"][0]) == {"from", "to", "condition", "delay_minutes"}
    assert standard["graph"]["preset"] == "standard_connect" and standard["graph"]["unreachable"] == []
    made = await o.api("POST", "/v1/accounts", 201, json={"provider": "linkedin", "display_name": "shape"})
    assert made["auth_url"] is None and made["created_at"] == MONDAY.isoformat()
    listed = (await o.api("GET", "/v1/accounts", 200))["items"]
    assert "auth_url" not in listed[0] and listed[0]["account_id"] == made["account_id"]
    cid = (await o.api("POST", "/v1/campaigns", 201, json=_campaign(made["account_id"])))["campaign_id"]
    detail = await o.api("GET", f"/v1/campaigns/{cid}", 200)
    assert detail["created_at"] == MONDAY.isoformat() and detail["launched_at"] is None
    assert detail["leads"] == {"enrolled": 0} and detail["drafts"] == {"generated": 0, "approved": 0}
    assert detail["delivery"]["pace"] == "recommended" and detail["strategy"]["invite_note"] is True


async def test_oversized_and_unstorable_input_is_refused_at_the_edge(o: Outreach) -> None:
    """The requests of issue 11: a 2 MB strategy.offer was accepted (and its event stalled the outbox), a reply
    holding a NUL was accepted (and stalled the projection). Both are refused now, naming what is wrong."""
    a = await o.account()
    huge = await o.api("POST", "/v1/campaigns", 413, json=_campaign(a, strategy={"offer": "x" * 2_000_000}))
    assert huge["code"] == "payload_too_large"
    long = await o.api("POST", "/v1/campaigns", 422, json=_campaign(a, strategy={"offer": "x" * 4001}))
    assert [e["field"] for e in long["errors"]] == ["strategy.offer"] and "4000" in long["detail"]
    nul = await o.api("POST", "/v1/campaigns", 422, json=_campaign(a, strategy={"offer": "a\x00b"}))
    assert [e["field"] for e in nul["errors"]] == ["strategy.offer"] and "NUL" in nul["detail"]
    created = await o.api("POST", "/v1/campaigns", 201, json=_campaign(a, strategy={"offer": "x" * 4000}))
    reply = await o.api(
        "POST", f"/v1/campaigns/{created['campaign_id']}/leads/{uuid.uuid4()}/reply", 422, json={"text": "hi\x00"}
    )
    assert [e["field"] for e in reply["errors"]] == ["text"] and "NUL" in reply["detail"]
