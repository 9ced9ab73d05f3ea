"""Replies stop a lead at once: nothing is sent afterwards, not even a step that was already due."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from leadstream_schemas import Envelope, Replied
from sqlalchemy import func, select

from services.outreach.store import leads, suppressions, texts, timers
from tests.services.outreach.support import (
    MakeSettings,
    Outreach,
    StartService,
    approvals,
    lead_events,
    of_type,
    signed,
    start_outreach,
)
from tests.support.kafka import produce_events, wait_for

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
TWO_MESSAGES = {
    "steps": [{"id": "m1", "action": "message"}, {"id": "m2", "action": "message"}],
    "edges": [{"from": "m1", "to": "m2", "delay_minutes": 5}],
}
ALWAYS_OPEN = {"active_days": "every_day", "start_hour": 0, "end_hour": 24}
SENDS = {"InviteSent", "MessageSent", "EmailSent", "PostLiked", "CommentPosted"}


async def _campaign(o: Outreach, group: uuid.UUID, workflow: dict[str, Any]) -> str:
    account = await o.account()
    body = await o.api(
        "POST",
        "/v1/campaigns",
        201,
        json={
            "name": "Replies",
            "audience": {"type": "source_group", "ref": str(group)},
            "workflow": workflow,
            "delivery": ALWAYS_OPEN,
            "account_ids": [account],
        },
    )
    await o.api("POST", f"/v1/campaigns/{body['campaign_id']}/launch", 200)
    return str(body["campaign_id"])


async def _texts(o: Outreach, n: int) -> None:
    async def stored() -> bool:
        async with o.service.engine.connect() as conn:
            return (
                int(
                    await conn.scalar(
                        select(func.count()).select_from(texts).where(texts.c.workspace_id == o.workspace)
                    )
                    or 0
                )
                >= n
            )

    await wait_for(stored, timeout_s=60, what=f"{n} approved texts")


async def test_reply_cancels_an_already_due_step(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        sim_connected_rate=1.0,
        sim_reply_rate=0.0,
        sim_out_of_office_rate=0.0,
    )
    # One lead per campaign and account: each account's first message of the day goes at once (an account's
    # messages are spread across the window), so both leads are at m2 together.
    cids, leads = [], []
    for n in range(2):
        group = uuid.uuid4()
        cid = await _campaign(o, group, TWO_MESSAGES)
        (lead,), events = lead_events(group, 1, tag=f"{o.workspace}{n}")
        await o.produce(events)
        await o.wait_enrolled(cid, 1)
        await o.produce(approvals(cid, [lead], "m1", "message") + approvals(cid, [lead], "m2", "message"))
        cids.append(cid)
        leads.append(lead)
    (cid, _), (replier, other) = cids, leads
    await _texts(o, 4)
    # m1 to both leads: said by this workspace's sends, not by how many timers the run ran (every workspace's,
    # and the consumer may have just scheduled some for records the session's earlier tests left on the topics).
    assert await o.run() >= 2
    assert len(of_type(await o.events(), "MessageSent")) == 2
    o.clock.advance(timedelta(minutes=10))  # m2 is now due for both, but has not run yet
    async with o.service.engine.connect() as conn:
        due = await conn.scalar(
            select(func.count())
            .select_from(timers)
            .where(
                timers.c.step_id == "m2",
                timers.c.state == "pending",
                timers.c.due_at <= o.clock.now(),
                timers.c.workspace_id == o.workspace,
            )
        )
    assert due == 2
    account = next(e.data.account_id for e in of_type(await o.events(), "LeadEnrolled") if e.data.lead_id == replier)
    hook = {"event": "message_received", "account_id": str(account), "lead_id": str(replier), "text": "Interested!"}
    answer = await o.api("POST", "/v1/webhooks/linkedin", 200, **signed(o.settings, hook))
    assert answer == {"status": "replied", "campaigns": [cid]}
    await o.drive(MONDAY + timedelta(days=2))

    got = await o.events()
    replied = of_type(got, "Replied")
    assert [(e.data.lead_id, e.data.campaign_id, e.data.excerpt) for e in replied] == [
        (replier, uuid.UUID(cid), "Interested!")
    ]
    # Outreach's consumer leaves replies sealed (it never reads their excerpt): built so through consume(sealed=).
    assert o.service.consumers[0].personal.leave_sealed == {Replied.event_type}
    after = [e for e in got if getattr(e.data, "lead_id", None) == replier and e.time >= replied[0].time]
    assert not [e for e in after if type(e.data).__name__ in SENDS]
    sent = of_type(got, "MessageSent")
    assert sorted((e.data.lead_id, e.data.step_id) for e in sent) == sorted(
        [(replier, "m1"), (other, "m1"), (other, "m2")]
    )
    assert [e.data.lead_id for e in of_type(got, "LeadCompleted")] == [other]
    assert sorted(str(e.data.campaign_id) for e in of_type(got, "CampaignFinished")) == sorted(cids)
    async with o.service.engine.connect() as conn:
        row = (
            await conn.execute(
                select(timers.c.state, timers.c.outcome).where(timers.c.lead_id == replier, timers.c.step_id == "m2")
            )
        ).one()
    assert tuple(row) == ("cancelled", "replied")
    bad = signed(o.settings, hook)
    bad["headers"]["webhook-signature"] = "v1,AAAA"
    assert (await o.client.post("/v1/webhooks/linkedin", **bad)).status_code == 401


async def test_simulated_replies_follow_the_clock(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings, start_service, topic_prefix, start=MONDAY, sim_connected_rate=1.0, sim_reply_rate=1.0
    )
    group = uuid.uuid4()
    slow = {"steps": TWO_MESSAGES["steps"], "edges": [{"from": "m1", "to": "m2", "delay_minutes": 720}]}
    cid = await _campaign(o, group, slow)
    leads, events = lead_events(group, 4, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 4)
    await o.produce(approvals(cid, leads, "m1", "message") + approvals(cid, leads, "m2", "message"))
    await _texts(o, 8)
    await o.drive(MONDAY + timedelta(days=1))
    got = await o.events()
    replied = {e.data.lead_id: e for e in of_type(got, "Replied")}
    assert set(replied) == set(leads)  # every simulated lead answers within 8 hours (reply_rate 1.0)
    for lead, reply in replied.items():
        assert reply.time > MONDAY
        assert not [
            e
            for e in got
            if getattr(e.data, "lead_id", None) == lead and e.time > reply.time and type(e.data).__name__ in SENDS
        ]
    assert {e.data.step_id for e in of_type(got, "MessageSent")} == {"m1"}


async def test_a_linkedin_webhook_cannot_reach_a_lead_of_another_workspace(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    account = await o.account()  # workspace A's provider account
    # A lead of workspace B, known to outreach.
    (foreign,), events = lead_events(uuid.uuid4(), 1, tag="b" + o.workspace)
    other = Envelope.new(events[0], workspace_id=f"{o.workspace}-b", source="test", time=o.clock.now())
    await produce_events(o.settings.kafka_bootstrap_servers, o.prefix, [other])

    async def known() -> bool:
        async with o.service.engine.connect() as conn:
            return bool(await conn.scalar(select(func.count()).where(leads.c.lead_id == foreign)))

    await wait_for(known, timeout_s=60, what="workspace B's lead in outreach")
    url = events[0].linkedin_url  # type: ignore[attr-defined]
    for hook in (
        {"event": "message_received", "account_id": account, "lead_id": str(foreign), "text": "stop"},
        {"event": "message_received", "account_id": account, "user_profile_url": url, "text": "stop"},
        {"event": "new_relation", "account_id": account, "lead_id": str(foreign)},
    ):
        r = await o.client.post("/v1/webhooks/linkedin", **signed(o.settings, hook))
        assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    # An email provider's key does not sign LinkedIn webhooks.
    hook = {"event": "message_received", "account_id": account, "lead_id": str(foreign)}
    assert (await o.client.post("/v1/webhooks/linkedin", **signed(o.settings, hook, "email"))).status_code == 401
    assert not of_type(await o.events(), "Replied")


async def test_a_webhook_field_of_the_wrong_type_or_length_is_a_422_naming_it(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    """The provider webhooks read their bodies by hand: a list where the profile URL belongs was a 500 (and a
    provider retries a 500 for ever), a 50,000-character workspace id was stored as given. Each is now a 422 that
    names the field, like any request model's, and nothing is recorded."""
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    account = await o.account()
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("linkedin", {"event": "new_relation", "account_id": account, "user_profile_url": ["x"]}, "user_profile_url"),
        ("linkedin", {"event": "message_received", "account_id": account, "lead_id": "x", "text": ["hi"]}, "text"),
        ("linkedin", {"event": "message_received", "account_id": {"id": account}}, "account_id"),
        ("linkedin", {"event": "message_received", "account_id": "a" * 201}, "account_id"),
        ("email", {"type": "bounce", "workspace_id": "w" * 50_000, "email": "a@b.io"}, "workspace_id"),
        ("email", {"type": "bounce", "workspace_id": o.workspace, "email": ["a@b.io"]}, "email"),
        ("email", {"type": "bounce", "workspace_id": o.workspace}, "email"),
        ("email", {"type": "reply", "workspace_id": o.workspace, "email": "a@b.io", "text": {"t": 1}}, "text"),
    ]
    for provider, hook, field in cases:
        r = await o.client.post(f"/v1/webhooks/{provider}", **signed(o.settings, hook, provider))  # type: ignore[arg-type]
        assert r.status_code == 422, (hook, r.status_code, r.text[:300])
        assert [e["field"] for e in r.json()["errors"]][:1] == [field], (hook, r.text[:300])
    async with o.service.engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count()).select_from(suppressions).where(func.length(suppressions.c.workspace_id) > 200)
        )
    assert stored == 0
    # What a provider sends is still read: a bounce of this workspace suppresses the address.
    hook = {"type": "bounce", "workspace_id": o.workspace, "email": "A@B.io", "extra": {"ignored": True}}
    assert (await o.api("POST", "/v1/webhooks/email", 200, **signed(o.settings, hook, "email"))) == {
        "status": "suppressed",
        "reason": "bounced",
    }
