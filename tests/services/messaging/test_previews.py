"""Message previews (written, not saved), bulk approval and checking an edit without saving it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from services.messaging.store import drafts
from tests.services.messaging.helpers import campaign_created, enrolled, env, profile
from tests.services.messaging.test_lab import lab, pending  # noqa: F401  (the fixture)
from tests.support.kafka import produce_events, wait_for

STANDARD = [
    {"id": "invite", "action": "invite"},
    {"id": "message", "action": "message"},
    {"id": "follow_up", "action": "message"},
]
STRATEGY = {
    "offer": "We help sales teams book more meetings",
    "call_to_action": "Open to a quick chat?",
    "template": "business_opportunity",
}


async def test_previews_write_each_step_for_sample_leads_and_save_nothing(lab: Any, own_topic_prefix: str) -> None:  # noqa: F811
    service, client, other = lab
    topic_prefix = own_topic_prefix  # the lab's topics
    known = uuid.uuid4()
    await produce_events(service.settings.kafka_bootstrap_servers, topic_prefix, [env(profile(known))])

    async def stored() -> bool:
        r = await client.post("/v1/previews", json={"steps": STANDARD, "leads": [{"lead_id": str(known)}]})
        return bool(r.json()["leads"][0]["enriched"])

    await wait_for(stored, timeout_s=60, what="the profile stored by messaging")
    body = {
        "strategy": STRATEGY,
        "steps": [{"id": "like", "action": "like"}, *STANDARD],
        "leads": [
            {"lead_id": str(known)},
            {"full_name": "Bo Berg", "first_name": "Bo", "headline": "VP Sales at Dataforge", "city": "Amsterdam"},
        ],
    }
    r = await client.post("/v1/previews", json=body)
    assert r.status_code == 200, r.text
    ada, bo = r.json()["leads"]
    assert ada["name"] == "Ada Adler" and ada["enriched"] is True and bo["enriched"] is False
    assert [s["step_id"] for s in ada["steps"]] == ["invite", "message", "follow_up"]  # a like has no text
    invite = ada["steps"][0]
    assert invite["char_limit"] == 200 and invite["length"] == len(invite["text"]) <= 200
    assert invite["limit_label"] == "invite note limit of 200 characters" and invite["over_limit"] is False
    assert invite["hook"]["kind"] == "recent_post" and invite["template"] == "business_opportunity"
    assert bo["steps"][1]["text"].startswith("Hi Bo,") or bo["steps"][1]["text"].startswith("Hello Bo,")
    assert bo["steps"][0]["hook"]["fallback"] is True
    assert ada["steps"][1]["char_limit"] == 500

    # a personalised video shortens the invite note; an unsaved template body is used with its variables
    video = await client.post(
        "/v1/previews",
        json={**body, "video": True, "template": {"body": "Saw you are in {city|your city} leading {headline}."}},
    )
    note = video.json()["leads"][1]["steps"][0]
    assert note["char_limit"] == 130 and note["length"] <= 130 and note["template"] == "custom"
    message = video.json()["leads"][1]["steps"][1]["text"]
    assert "Saw you are in Amsterdam leading VP Sales at Dataforge." in message

    # light personalisation off: two leads get the same choice of words around their own details
    plain = {
        **body,
        "strategy": {**STRATEGY, "personalise": False},
        "leads": [{"full_name": f"Lead {i}", "first_name": "Sam", "headline": "CTO"} for i in range(2)],
    }
    first, second = (await client.post("/v1/previews", json=plain)).json()["leads"]
    assert [s["text"] for s in first["steps"]] == [s["text"] for s in second["steps"]]

    # errors name the field; another workspace sees only its own profiles
    bad = await client.post("/v1/previews", json={**body, "template": {"body": "Hi {job_title}"}})
    assert bad.status_code == 422 and bad.json()["field"] == "template.body"
    assert bad.json()["errors"][0]["field"] == "template.body"
    none = await client.post("/v1/previews", json={**body, "leads": []})
    assert none.status_code == 422 and none.json()["errors"][0]["field"] == "leads"
    unknown = await client.post("/v1/previews", json={**body, "strategy": {"template": "nope"}})
    assert unknown.status_code == 422 and unknown.json()["field"] == "strategy.template"
    theirs = await other.post("/v1/previews", json={"steps": STANDARD, "leads": [{"lead_id": str(known)}]})
    assert theirs.json()["leads"][0]["enriched"] is False
    async with service.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(drafts).where(drafts.c.lead_id == known)) == 0


async def test_bulk_approve_and_an_edit_checked_without_saving(lab: Any, own_topic_prefix: str) -> None:  # noqa: F811
    service, client, other = lab
    topic_prefix = own_topic_prefix  # the lab's topics
    campaign = uuid.uuid4()
    leads = [uuid.uuid4() for _ in range(3)]
    await produce_events(
        service.settings.kafka_bootstrap_servers,
        topic_prefix,
        [env(campaign_created(campaign, review=True))]
        + [env(e) for lead in leads for e in (profile(lead), enrolled(lead, campaign))],
    )
    queue = await pending(client, campaign, 6)  # an invite note and a message for each lead
    invite = next(d for d in queue if d["channel"] == "invite")
    assert invite["limit_label"] == "invite note limit of 200 characters"

    over = await client.post(f"/v1/drafts/{invite['draft_id']}/edit?dry_run=true", json={"text": "y" * 201})
    assert over.status_code == 422 and over.json()["code"] == "over_limit"
    assert over.json()["detail"] == "text is 201 characters, over the invite note limit of 200 characters"
    fits = await client.post(
        f"/v1/drafts/{invite['draft_id']}/edit?dry_run=true", json={"text": "Hi {first_name}, good to meet you."}
    )
    assert fits.status_code == 200 and fits.json()["text"] == "Hi Ada, good to meet you."
    assert fits.json()["status"] == "pending"
    assert (await client.get(f"/v1/drafts/{invite['draft_id']}")).json()["text"] == invite["text"]

    chosen = [d["draft_id"] for d in queue[:2]]
    await client.post(f"/v1/drafts/{chosen[0]}/approve")
    r = await client.post(f"/v1/campaigns/{campaign}/drafts/approve", json={"draft_ids": chosen})
    assert r.status_code == 200, r.text
    assert [d["draft_id"] for d in r.json()["approved"]] == [chosen[1]] and r.json()["skipped"] == 1
    assert (await other.post(f"/v1/campaigns/{campaign}/drafts/approve", json={})).status_code == 404
    rest = await client.post(f"/v1/campaigns/{campaign}/drafts/approve", json={})
    assert len(rest.json()["approved"]) == 4 and rest.json()["skipped"] == 0
    left = await client.get(f"/v1/campaigns/{campaign}/drafts", params={"status": "pending"})
    assert left.json()["items"] == []
    too_many = await client.post(
        f"/v1/campaigns/{campaign}/drafts/approve", json={"draft_ids": [str(uuid.uuid4()) for _ in range(501)]}
    )
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "draft_ids"


async def test_an_unknown_step_channel_mode_or_template_is_a_422_naming_it(lab: Any) -> None:  # noqa: F811
    """A step's unknown ``channel``, ``mode`` or ``template`` was silently ignored (the preview wrote something
    else than the campaign would); like an unknown ``strategy.template`` it is a 422 naming the field's path."""
    _, client, _ = lab
    lead = {"full_name": "Bo Berg", "first_name": "Bo", "headline": "VP Sales at Dataforge"}
    comment = {"id": "comment", "action": "comment", "needs_text": True, "channel": "comment", "mode": "draft"}
    message = {"id": "message", "action": "message", "needs_text": True, "channel": "message"}
    known = {"steps": [comment, {**message, "template": "hiring_manager"}], "leads": [lead]}
    r = await client.post("/v1/previews", json=known)
    assert r.status_code == 200, r.text
    assert {s["step_id"]: s["template"] for s in r.json()["leads"][0]["steps"]}["message"] == "hiring_manager"
    for steps, field, code in (
        ([comment, {**message, "channel": "linkedin"}], "steps.1.channel", "invalid_request"),
        ([{**comment, "mode": "manual"}, message], "steps.0.mode", "invalid_request"),
        ([comment, {**message, "template": "nope"}], "steps.1.template", "unknown_template"),
    ):
        r = await client.post("/v1/previews", json={"steps": steps, "leads": [lead]})
        assert r.status_code == 422, (field, r.status_code, r.text[:300])
        problem = r.json()
        assert problem["code"] == code and [e["field"] for e in problem["errors"]] == [field], problem
