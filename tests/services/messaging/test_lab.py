"""The Messaging Lab through its API on the real broker and database: approve, edit, reject, templates, strategy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from leadstream_schemas import Envelope

from services.messaging.app import build
from services.messaging.settings import MessagingSettings
from services.outreach.domain.workflow import resolve_workflow
from services.runtime.auth import create_token
from services.runtime.clock import FakeClock
from services.runtime.pagination import encode_cursor
from services.runtime.service import Service
from tests.services.messaging.helpers import LEAD_TOPIC, WS, campaign_created, enrolled, env, events, profile
from tests.support.kafka import produce_events, read_until, wait_for


@pytest.fixture
async def lab(
    make_settings: Any, start_service: Any, own_topic_prefix: str
) -> AsyncIterator[tuple[Service, httpx.AsyncClient, httpx.AsyncClient]]:
    """The service, a client of workspace ws-msg, and a client of another workspace; on the test's own topics
    (``own_topic_prefix``, which the test produces to): on the session's, messaging first drafted for every lead
    the session's other tests had enrolled before it reached the test's (as the pipeline test did)."""
    s = make_settings(
        "messaging",
        MessagingSettings,
        topic_prefix=own_topic_prefix,
        sim_error_rate=0.0,
        sim_latency_ms_min=1,
        sim_latency_ms_max=5,
    )
    service = await start_service(build(s, clock=FakeClock()))
    mine = await create_token(service.engine, WS)
    other = await create_token(service.engine, "ws-other")
    transport = httpx.ASGITransport(app=service.app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {mine}"}) as a,
        httpx.AsyncClient(transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {other}"}) as b,
    ):
        yield service, a, b


async def pending(client: httpx.AsyncClient, campaign_id: uuid.UUID, n: int) -> list[dict[str, Any]]:
    """Poll the review queue until it holds ``n`` drafts."""

    async def check() -> list[dict[str, Any]] | None:
        r = await client.get(f"/v1/campaigns/{campaign_id}/drafts", params={"status": "pending"})
        if r.status_code == 200 and len(r.json()["items"]) >= n:
            return list(r.json()["items"])
        return None

    return list(await wait_for(check, timeout_s=60, what=f"{n} pending drafts"))


async def lead_events(service: Service, prefix: str, lead: uuid.UUID, want: dict[str, int]) -> list[Envelope[Any]]:
    """Read the lead's events until at least ``want[type_suffix]`` of each type arrived."""

    def done(records: list[Any]) -> bool:
        return all(len(events(records, {lead}, t)) >= n for t, n in want.items())

    records = await read_until(service.settings.kafka_bootstrap_servers, [prefix + LEAD_TOPIC], done)
    return events(records, {lead})


async def test_approve_edit_reject_flows(lab: Any, own_topic_prefix: str) -> None:
    topic_prefix = own_topic_prefix
    service, client, other = lab
    campaign, lead = uuid.uuid4(), uuid.uuid4()
    await produce_events(
        service.settings.kafka_bootstrap_servers,
        topic_prefix,
        [
            env(campaign_created(campaign, review=True, video=True, email_fallback=True)),
            env(profile(lead)),
            env(enrolled(lead, campaign)),
        ],
    )
    drafts = {d["step_id"]: d for d in await pending(client, campaign, 3)}
    assert set(drafts) == {"invite", "message", "email"}
    invite, message, email = drafts["invite"], drafts["message"], drafts["email"]
    assert invite["char_limit"] == 130 and invite["length"] <= 130
    assert invite["hook"]["kind"] == "recent_post"
    assert email["subject"]

    # another workspace sees none of it
    assert (await other.get(f"/v1/campaigns/{campaign}/drafts")).status_code == 404
    assert (await other.post(f"/v1/drafts/{invite['draft_id']}/approve")).status_code == 404
    assert (await client.post(f"/v1/drafts/{uuid.uuid4()}/approve")).status_code == 404

    # approve
    r = await client.post(f"/v1/drafts/{invite['draft_id']}/approve")
    assert r.status_code == 200 and r.json()["status"] == "approved"
    again = await client.post(f"/v1/drafts/{invite['draft_id']}/approve")
    assert again.status_code == 409 and again.json()["code"] == "draft_not_pending"

    # edit over the limit: 422 naming the limit, nothing changes
    too_long = "x" * 501
    r = await client.post(f"/v1/drafts/{message['draft_id']}/edit", json={"text": too_long})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "over_limit" and body["limit"] == 500 and body["length"] == 501
    assert "message limit of 500 characters" in body["detail"]
    r = await client.post(f"/v1/drafts/{invite['draft_id']}/edit", json={"text": "short"})
    assert r.status_code == 409
    assert (await client.post(f"/v1/drafts/{message['draft_id']}/edit", json={"text": ""})).status_code == 422
    r = await client.post(f"/v1/drafts/{message['draft_id']}/edit", json={"text": "Hi", "subject": "no"})
    assert r.status_code == 422 and r.json()["code"] == "subject_not_allowed"
    r = await client.get(f"/v1/drafts/{message['draft_id']}")
    assert r.json()["status"] == "pending" and r.json()["text"] == message["text"]

    # edit within the limit (variables are filled for the lead)
    edited_text = "Hi {first_name}, loved your post on pipelines. Open to a chat in {city|your city}?"
    r = await client.post(f"/v1/drafts/{message['draft_id']}/edit", json={"text": edited_text})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "edited"
    assert r.json()["text"] == "Hi Ada, loved your post on pipelines. Open to a chat in Berlin?"

    # reject: a new draft replaces it
    r = await client.post(f"/v1/drafts/{email['draft_id']}/reject", json={"reason": "too casual, be more formal"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["rejected"]["status"] == "rejected" and out["rejected"]["reason"] == "too casual, be more formal"
    replacement = out["replacement"]
    assert replacement["draft_id"] != email["draft_id"] and replacement["replaces"] == email["draft_id"]
    assert replacement["status"] == "pending" and replacement["attempt"] == 2 and replacement["channel"] == "email"
    assert replacement["text"].startswith("Dear Ada,")
    queue = await pending(client, campaign, 1)
    assert [d["draft_id"] for d in queue] == [replacement["draft_id"]]
    assert (await client.post(f"/v1/drafts/{email['draft_id']}/reject", json={"reason": "x"})).status_code == 409
    assert (await client.post(f"/v1/drafts/{replacement['draft_id']}/reject", json={})).status_code == 422

    got = await lead_events(
        service,
        topic_prefix,
        lead,
        {"message_generated.v1": 4, "message_approved.v1": 1, "message_edited.v1": 1, "message_rejected.v1": 1},
    )
    by_type: dict[str, list[Any]] = {}
    for e in got:
        by_type.setdefault(e.type.split(".")[-2], []).append(e)
    approved = by_type["message_approved"][0].data
    assert str(approved.draft_id) == invite["draft_id"] and approved.auto is False and approved.text == invite["text"]
    edited = by_type["message_edited"][0].data
    assert str(edited.draft_id) == message["draft_id"] and edited.text.startswith("Hi Ada, loved your post")
    rejected_env = by_type["message_rejected"][0]
    assert str(rejected_env.data.draft_id) == email["draft_id"] and rejected_env.data.reason.startswith("too casual")
    regenerated = [e for e in by_type["message_generated"] if str(e.data.draft_id) == replacement["draft_id"]]
    assert len(regenerated) == 1 and regenerated[0].causation_id == rejected_env.id
    assert regenerated[0].data.step_id == "email" and regenerated[0].data.needs_review
    assert all(e.workspace_id == WS for e in got)


async def test_comment_drafts_go_through_the_same_queue(lab: Any, own_topic_prefix: str) -> None:
    topic_prefix = own_topic_prefix
    service, client, _ = lab
    campaign, lead, no_post_lead = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    workflow = resolve_workflow(
        {
            "steps": [
                {"id": "comment-1", "action": "comment", "mode": "draft"},
                {"id": "invite-1", "action": "invite"},
            ],
            "edges": [{"from": "comment-1", "to": "invite-1"}],
        },
        default_note=True,
        email_fallback=False,
    ).to_model()
    await produce_events(
        service.settings.kafka_bootstrap_servers,
        topic_prefix,
        [
            env(campaign_created(campaign, review=False, workflow=workflow)),
            env(profile(lead)),
            env(profile(no_post_lead, hook="career")),
            env(enrolled(lead, campaign)),
            env(enrolled(no_post_lead, campaign)),
        ],
    )
    queue = await pending(client, campaign, 1)
    assert len(queue) == 1  # review is off for invites; only the comment waits; no post, no comment draft
    comment = queue[0]
    assert comment["channel"] == "comment" and comment["lead_id"] == str(lead)
    assert comment["post_url"] == f"https://linkedin.example/posts/{lead}"
    r = await client.post(f"/v1/drafts/{comment['draft_id']}/approve")
    assert r.status_code == 200
    got = await lead_events(
        service,
        topic_prefix,
        lead,
        {"message_approved.v1": 2, "message_generated.v1": 2},
    )
    # CommentDrafted belongs to outreach (it knows the account and when the step is due), not messaging.
    assert not any(e.type.endswith("comment_drafted.v1") for e in got)
    drafted = next(e.data for e in got if e.type.endswith("message_generated.v1") and e.data.step_id == "comment-1")
    assert drafted.text == comment["text"] and drafted.channel.value == "comment"
    approvals = {e.data.step_id: e.data for e in got if e.type.endswith("message_approved.v1")}
    assert approvals["invite-1"].auto is True
    assert approvals["comment-1"].auto is False and approvals["comment-1"].channel.value == "comment"
    other = await lead_events(service, topic_prefix, no_post_lead, {"message_approved.v1": 1})
    assert {e.data.step_id for e in other if e.type.endswith("message_generated.v1")} == {"invite-1"}


async def test_templates_and_strategy(lab: Any, own_topic_prefix: str) -> None:
    topic_prefix = own_topic_prefix
    service, client, other = lab
    r = await client.post(
        "/v1/templates",
        json={"name": "hm-1", "category": "hiring_manager", "body": "Hi {first_name}, as {job_title} at {company}..."},
    )
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "unknown_template_variable" and problem["variable"] == "job_title"
    assert "{job_title}" in problem["detail"]
    r = await client.post(
        "/v1/templates", json={"name": "hm-1", "category": "hiring_manager", "body": "Hi", "subject": "{title}"}
    )
    assert r.status_code == 422 and r.json()["variable"] == "title"
    r = await client.post("/v1/templates", json={"name": "hm-1", "category": "nope", "body": "Hi"})
    assert r.status_code == 422 and "category" in r.json()["detail"]

    body = "Hiring managers in {city|your region} tell me the hardest seat to fill is {headline|yours}."
    r = await client.post("/v1/templates", json={"name": "hm-1", "category": "hiring_manager", "body": body})
    assert r.status_code == 201, r.text
    template = r.json()
    assert template["variables"] == ["city", "headline"]
    assert (
        await client.post("/v1/templates", json={"name": "hm-1", "category": "hiring_manager", "body": "x"})
    ).status_code == 409
    for i in range(3):
        r = await client.post("/v1/templates", json={"name": f"zz-{i}", "category": "hiring_manager", "body": "x"})
        assert r.status_code == 201
    names: list[str] = []
    after: str | None = None
    while True:  # pages of 2: built-ins first, then the workspace's, each by name
        page = (await client.get("/v1/templates", params={"limit": 2, **({"after": after} if after else {})})).json()
        names += [t["name"] for t in page["items"]]
        if (after := page["next"]) is None:
            break
    builtin = ["business_opportunity", "candidate_outreach", "hiring_manager", "professional_introduction"]
    assert builtin == sorted(n for n in names if n in builtin) and names[-4:] == ["hm-1", "zz-0", "zz-1", "zz-2"]
    assert len(names) == len(set(names))
    assert [t["name"] for t in (await other.get("/v1/templates", params={"limit": 200})).json()["items"]] == sorted(
        n for n in names if not n.startswith(("hm-", "zz-"))
    )
    assert (await other.get(f"/v1/templates/{template['template_id']}")).status_code == 404

    campaign, lead = uuid.uuid4(), uuid.uuid4()
    await produce_events(
        service.settings.kafka_bootstrap_servers,
        topic_prefix,
        [env(campaign_created(campaign, review=True, invite_note=False))],
    )

    async def strategy() -> dict[str, Any] | None:
        r = await client.get(f"/v1/campaigns/{campaign}/strategy")
        return dict(r.json()) if r.status_code == 200 else None

    current = await wait_for(strategy, timeout_s=60, what="campaign strategy")
    assert current["offer"].startswith("We help") and current["review"] is True
    assert [s["step_id"] for s in current["steps"]] == ["message"]  # invites without a note need no draft
    assert (await other.get(f"/v1/campaigns/{campaign}/strategy")).status_code == 404

    new = {
        "offer": "We find candidates",
        "proof": "",
        "tone": "formal",
        "call_to_action": "Shall we talk?",
        "template": "nope",
        "review": True,
        "invite_note": True,
    }
    r = await client.put(f"/v1/campaigns/{campaign}/strategy", json=new)
    assert r.status_code == 422 and r.json()["code"] == "unknown_template"
    assert [e["field"] for e in r.json()["errors"]] == ["template"]  # named in errors, as every 422 does
    assert (await other.put(f"/v1/campaigns/{campaign}/strategy", json={**new, "template": None})).status_code == 404
    r = await client.put(f"/v1/campaigns/{campaign}/strategy", json={**new, "template": template["template_id"]})
    assert r.status_code == 200, r.text
    # Which steps need a text is the workflow's (outreach sends this campaign's invites without a note): a
    # strategy's invite_note shapes workflows made from then on, not this one.
    assert [s["step_id"] for s in r.json()["steps"]] == ["message"]

    await produce_events(
        service.settings.kafka_bootstrap_servers,
        topic_prefix,
        [env(profile(lead, city=None)), env(enrolled(lead, campaign))],
    )
    drafts = {d["step_id"]: d for d in await pending(client, campaign, 1)}
    message = drafts["message"]
    assert message["template"] == "hm-1"
    assert "Hiring managers in your region" in message["text"]
    assert message["text"].startswith("Dear Ada,") and message["text"].endswith("Shall we talk?")


async def test_a_template_cursor_this_api_did_not_make_is_a_422(lab: Any) -> None:
    """The templates' cursor is (0 built-in | 1 workspace, name, id): one that decodes but whose id is not a UUID,
    or whose first value is not 0 or 1, was a 500. It is a 422 naming ``after``, as a garbled cursor is."""
    _, client, _ = lab
    for forged in ([1, "a", "not-a-uuid"], [True, "a", "b"], [10**30, "a", ""], [1, "a"], "garbage"):
        after = forged if isinstance(forged, str) else encode_cursor(forged)
        r = await client.get("/v1/templates", params={"after": after})
        assert r.status_code == 422, (forged, r.status_code, r.text[:200])
        assert r.json()["code"] == "invalid_cursor" and r.json()["errors"][0]["field"] == "after"
    first = (await client.get("/v1/templates", params={"limit": 1})).json()
    assert (await client.get("/v1/templates", params={"after": first["next"]})).status_code == 200
