"""Editing a running campaign: PATCH makes a new version of its sequence; leads that had not started move to
it at that safe point, leads already in the sequence finish on their version, and events record the version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.outreach.domain.workflow import LiveStep, moves_to_new_version
from tests.services.outreach.support import MakeSettings, StartService, approvals, lead_events, of_type, start_outreach

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OPEN = {"active_days": "every_day", "start_hour": 0, "end_hour": 24, "pace": "high_volume"}
V1 = {
    "steps": [{"id": "invite", "action": "invite", "note": False}, {"id": "m1", "action": "message"}],
    "edges": [{"from": "invite", "to": "m1", "condition": "accepted", "wait_hours": 1}],
}
V2 = {
    "steps": [
        {"id": "like", "action": "like"},
        {"id": "invite", "action": "invite", "note": False},
        {"id": "m2", "action": "message"},
    ],
    "edges": [
        {"from": "like", "to": "invite", "delay_minutes": 5},
        {"from": "invite", "to": "m2", "condition": "accepted", "wait_hours": 1},
    ],
}


def test_the_safe_point_rule() -> None:
    first = [LiveStep("step", "invite")]
    assert moves_to_new_version("prepared", 0, False, False, [], "invite")
    assert moves_to_new_version("active", 0, False, False, first, "invite")
    assert moves_to_new_version("active", 0, False, False, [LiveStep("step", "invite", "video")], "invite")
    assert not moves_to_new_version("active", 1, False, False, first, "invite")  # a step was performed
    assert not moves_to_new_version("active", 0, False, True, first, "invite")  # a send was made or skipped
    assert not moves_to_new_version("active", 0, True, False, [], "invite")  # already accepted
    assert not moves_to_new_version("active", 0, False, False, [LiveStep("step", "invite", "send")], "invite")
    assert not moves_to_new_version("active", 0, False, False, [LiveStep("accept_wait", "invite")], "invite")
    assert not moves_to_new_version("replied", 0, False, False, [], "invite")


async def test_an_edit_moves_unstarted_leads_and_lets_started_ones_finish(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, sim_accept_rate=1.0)
    account = await o.account()
    group = uuid.uuid4()
    body = {
        "name": "edited while running",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": V1,
        "delivery": OPEN,
        "account_ids": [account],
    }
    created = await o.api("POST", "/v1/campaigns", 201, json=body)
    cid = created["campaign_id"]
    assert created["workflow_version"] == 1
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    leads, events = lead_events(group, 2, tag=o.workspace)
    for step in ("m1", "m2"):
        events.extend(approvals(cid, leads, step, "message"))
    await o.produce(events)
    await o.wait_enrolled(cid, 2)
    await o.run()  # invites keep their rhythm: one lead is invited now, the other waits for its turn
    [invited] = of_type(await o.events(), "InviteSent")
    started = invited.data.lead_id
    [waiting] = [lead for lead in leads if lead != started]
    assert invited.data.workflow_version == 1

    bad = await o.api("PATCH", f"/v1/campaigns/{cid}", 422, json={"workflow": {"steps": []}})
    assert bad["errors"][0]["field"] == "workflow.steps"
    edited = await o.api("PATCH", f"/v1/campaigns/{cid}", 200, json={"workflow": V2})
    assert edited["workflow_version"] == 2 and [s["id"] for s in edited["workflow"]["steps"]] == [
        "like",
        "invite",
        "m2",
    ]
    [updated] = of_type(await o.events(), "CampaignUpdated")
    assert updated.data.workflow.version == 2 and (updated.data.moved_leads, updated.data.staying_leads) == (1, 1)
    again = {e.data.lead_id: e.data for e in of_type(await o.events(), "LeadEnrolled") if e.data.workflow_version == 2}
    assert list(again) == [waiting]

    await o.drive(MONDAY + timedelta(days=3))
    got = await o.events()

    def steps(name: str, lead: uuid.UUID) -> list[tuple[str, int | None]]:
        return [(e.data.step_id, e.data.workflow_version) for e in of_type(got, name) if e.data.lead_id == lead]

    # The started lead finishes version 1: its message is v1's; it never likes (a v2 step).
    assert steps("InviteSent", started) == [("invite", 1)]
    assert steps("MessageSent", started) == [("m1", 1)]
    assert steps("PostLiked", started) == []
    # The waiting lead moved at its safe point: it runs version 2 from its first step.
    assert steps("PostLiked", waiting) == [("like", 2)]
    assert steps("InviteSent", waiting) == [("invite", 2)]
    assert steps("MessageSent", waiting) == [("m2", 2)]
    page = await o.api("GET", f"/v1/campaigns/{cid}/leads", 200)
    leads_now = {r["lead_id"]: r for r in page["items"]}
    assert leads_now[str(started)]["state"] == leads_now[str(waiting)]["state"] == "completed"
    assert (leads_now[str(started)]["workflow_version"], leads_now[str(waiting)]["workflow_version"]) == (1, 2)
