"""A/B variants in outreach: each lead's variant of a step is assigned deterministically at enrolment, named in
LeadEnrolled, and carried by the send of that step."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.outreach.domain.workflow import assign_variant
from tests.services.outreach.support import MakeSettings, StartService, approvals, lead_events, of_type, start_outreach

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OPEN = {"active_days": "every_day", "start_hour": 0, "end_hour": 24, "pace": "high_volume"}
HELLO: dict[str, Any] = {
    "id": "hello",
    "action": "message",
    "variants": [{"id": "warm", "template": "hiring_manager"}, {"id": "direct", "template": "hm-1"}],
}
AB: dict[str, Any] = {
    "steps": [
        HELLO,
        {"id": "nudge", "action": "message"},
    ],
    "edges": [{"from": "hello", "to": "nudge", "delay_minutes": 60}],
}


async def test_each_lead_gets_its_variant_and_the_send_names_it(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings, start_service, topic_prefix, start=MONDAY, sim_connected_rate=1.0, sim_reply_rate=0.0
    )  # no lead answers: every lead gets both messages
    account = await o.account()
    # A source group whose six leads use both variants (leads' ids derive from the group; one variant alone for
    # all six happens once in 32 random groups).
    group, leads, events = next(
        (g, ls, es)
        for g in (uuid.uuid4() for _ in range(100))
        for ls, es in [lead_events(g, 6, tag=o.workspace)]
        if len({assign_variant(str(lead), "hello", ["warm", "direct"]) for lead in ls}) == 2
    )
    body = {
        "name": "a/b",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": AB,
        "delivery": OPEN,
        "account_ids": [account],
    }
    created = await o.api("POST", "/v1/campaigns", 201, json=body)
    cid = created["campaign_id"]
    assert [v["id"] for v in created["workflow"]["steps"][0]["variants"]] == ["warm", "direct"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    for step in ("hello", "nudge"):
        events.extend(approvals(cid, leads, step, "message"))
    await o.produce(events)
    await o.wait_enrolled(cid, 6)
    await o.drive(MONDAY + timedelta(days=2))
    got = await o.events()
    expected = {lead: assign_variant(str(lead), "hello", ["warm", "direct"]) for lead in leads}
    assert len(set(expected.values())) == 2  # both variants are in use among these leads
    assert {e.data.lead_id: e.data.variants for e in of_type(got, "LeadEnrolled")} == {
        lead: {"hello": v} for lead, v in expected.items()
    }
    sent = {(e.data.lead_id, e.data.step_id): e.data.variant for e in of_type(got, "MessageSent")}
    assert {lead: sent[(lead, "hello")] for lead in leads} == expected
    nudges = [variant for (_, step), variant in sent.items() if step == "nudge"]
    assert nudges and set(nudges) == {None}  # a step without variants names none
    bad = {**AB, "steps": [{**HELLO, "variants": [{"id": "solo"}]}, {"id": "nudge", "action": "message"}]}
    problem = await o.api("POST", "/v1/campaigns", 422, json={**body, "workflow": bad})
    assert problem["errors"][0]["field"] == "workflow.steps[0].variants"
