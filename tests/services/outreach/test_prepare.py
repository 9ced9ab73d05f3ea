"""Prepare, review, launch: a prepared campaign enrolls its ready leads without starting their sequences (their
drafts are written and reviewed first); the launch starts them with the approved drafts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from services.outreach.store import enrollments, leads, timers
from tests.services.outreach.support import MakeSettings, StartService, approvals, lead_events, of_type, start_outreach
from tests.support.kafka import wait_for

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OPEN = {"active_days": "every_day", "start_hour": 0, "end_hour": 24, "pace": "high_volume"}


async def test_prepare_review_then_launch_with_the_approved_drafts(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    account = await o.account()
    group = uuid.uuid4()
    body = {
        "name": "reviewed first",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": "direct_connect",  # invite with a note, then a message once accepted
        "delivery": OPEN,
        "account_ids": [account],
    }
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
    (first, second), events = lead_events(group, 2, tag=o.workspace)
    await o.produce(events[: len(events) // 2])  # the first lead, discovered and enriched

    async def first_ready() -> bool:
        async with o.service.engine.connect() as conn:
            return bool(await conn.scalar(select(leads.c.ready).where(leads.c.lead_id == first)))

    await wait_for(first_ready, timeout_s=60, what="first lead ready")
    prepared = await o.api("POST", f"/v1/campaigns/{cid}/prepare", 200)
    assert prepared["state"] == "prepared" and prepared["leads"] == {"enrolled": 1, "prepared": 1}
    assert (await o.api("POST", f"/v1/campaigns/{cid}/prepare", 409))["code"] == "invalid_state"
    assert (await o.api("POST", f"/v1/campaigns/{cid}/pause", 409))["code"] == "invalid_state"

    await o.produce(events[len(events) // 2 :])  # a lead ready after the preparation is prepared as well
    await o.wait_enrolled(cid, 2)
    # Nothing of a prepared campaign is due: no step is scheduled before launch. (Timers other tests of the session
    # left due may run here: the runner serves every workspace, so the check is on this campaign's rows.)
    await o.run()
    async with o.service.engine.connect() as conn:
        states = dict((await conn.execute(select(enrollments.c.lead_id, enrollments.c.state))).all())
        steps = await conn.scalar(select(func.count()).where(timers.c.campaign_id == uuid.UUID(cid)))
    assert {states[first], states[second]} == {"prepared"} and steps == 0
    enrolled = of_type(await o.events(), "LeadEnrolled")
    assert {e.data.lead_id for e in enrolled} == {first, second} and all(e.data.prepared for e in enrolled)
    [prep] = of_type(await o.events(), "CampaignPrepared")
    assert prep.data.leads == 1 and prep.data.account_ids == [uuid.UUID(account)]

    # The review in the Messaging Lab: messaging writes the drafts on LeadEnrolled; approved ones reach outreach.
    await o.produce(approvals(cid, [first, second], "invite", "invite"))
    await o.produce(approvals(cid, [first, second], "message", "message"))

    async def reviewed() -> bool:
        return (await o.api("GET", f"/v1/campaigns/{cid}", 200))["drafts"] == {"generated": 0, "approved": 4}

    await wait_for(reviewed, timeout_s=60, what="approved drafts known to outreach")
    assert not of_type(await o.events(), "InviteSent")  # reviewed, still nothing sent

    launched = await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    assert launched["state"] == "running" and launched["leads"] == {"enrolled": 2, "active": 2}
    await o.drive(MONDAY + timedelta(hours=2))
    got = await o.events()
    invites = {e.data.lead_id: e for e in of_type(got, "InviteSent")}
    assert set(invites) == {first, second}
    assert all(e.data.note == "Hi Lead, a note for step invite" for e in invites.values())
    [launch] = of_type(got, "CampaignLaunched")
    assert all(e.time >= launch.time for e in invites.values())
