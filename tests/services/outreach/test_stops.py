"""Smarter stops on the real broker and database with a fake clock: an out-of-office answer pauses the lead
until the date it names and the sequence resumes then; a reply can stop the lead's colleagues; active hours
can be each lead's own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from leadstream_schemas import LeadDiscovered, LeadEmailNotFound, LeadProfileEnriched, LeadSource, Post, SkipReason
from sqlalchemy import select

from services.outreach.store import enrollments
from tests.services.outreach.support import MakeSettings, Outreach, StartService, of_type, start_outreach

MONDAY = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
OPEN = {"active_days": "every_day", "start_hour": 0, "end_hour": 24}
TWO_LIKES = {
    "steps": [{"id": "first", "action": "like"}, {"id": "second", "action": "like"}],
    "edges": [{"from": "first", "to": "second", "delay_minutes": 120}],
}
QUIET: dict[str, Any] = {"sim_reply_rate": 0.0, "sim_out_of_office_rate": 0.0, "sim_accept_rate": 0.0}


def _lead(
    group: uuid.UUID, tag: str, *, company: str = "Acme", location: str | None = None
) -> tuple[uuid.UUID, list[Any]]:
    lead_id = uuid.uuid5(group, tag)
    url = f"https://www.linkedin.com/in/{tag}-{lead_id.hex[:6]}"
    return lead_id, [
        LeadDiscovered(
            lead_id=lead_id,
            source=LeadSource.search,
            source_group_id=group,
            linkedin_url=url,
            full_name=tag.title(),
            company=company,
            location=location,
        ),
        LeadProfileEnriched(
            lead_id=lead_id,
            full_name=tag.title(),
            company_name=company,
            recent_posts=[Post(text="A post", url=f"{url}/p")],
        ),
        LeadEmailNotFound(lead_id=lead_id, reason="not_found"),
    ]


async def _campaign(o: Outreach, group: uuid.UUID, delivery: dict[str, Any], workflow: Any = TWO_LIKES) -> str:
    account = await o.account()
    body = {
        "name": "stops",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": workflow,
        "delivery": delivery,
        "account_ids": [account],
    }
    cid = str((await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"])
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    return cid


async def _states(o: Outreach, cid: str) -> dict[uuid.UUID, str]:
    async with o.service.engine.connect() as conn:
        rows = await conn.execute(
            select(enrollments.c.lead_id, enrollments.c.state).where(enrollments.c.campaign_id == uuid.UUID(cid))
        )
        return {r.lead_id: r.state for r in rows}


async def test_an_out_of_office_answer_pauses_the_lead_until_it_is_back(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, **QUIET)
    group = uuid.uuid4()
    dated, events = _lead(group, f"dated-{o.workspace}")
    undated, more = _lead(group, f"undated-{o.workspace}")
    cid = await _campaign(o, group, OPEN)
    await o.produce([*events, *more])
    await o.wait_enrolled(cid, 2)
    await o.drive(MONDAY + timedelta(minutes=30))  # both first likes go at once
    # Monday 08:30: one answers with a return date, the other without one.
    text = "Thank you for your message. I am out of the office until Thursday 5 March with no access to email."
    await o.api("POST", f"/v1/campaigns/{cid}/leads/{dated}/reply", 200, json={"text": text, "channel": "email"})
    vague = "Automatic reply: I am currently on annual leave and will respond when I return."
    await o.api("POST", f"/v1/campaigns/{cid}/leads/{undated}/reply", 200, json={"text": vague})
    got = await o.events()
    assert not of_type(got, "Replied"), "an absence notice is not a reply"
    paused = {e.data.lead_id: e.data for e in of_type(got, "LeadPaused")}
    assert paused[dated].until == datetime(2026, 3, 5, 0, 0, tzinfo=UTC)
    assert str(paused[dated].return_on) == "2026-03-05" and paused[dated].channel == "email"
    assert paused[undated].return_on is None
    assert paused[undated].until == MONDAY + timedelta(minutes=30) + timedelta(days=7)  # the default pause

    # Nothing goes to them while they are away (the second like was due at 10:00 Monday).
    await o.drive(datetime(2026, 3, 4, 23, 59, tzinfo=UTC))
    seconds = [e for e in of_type(await o.events(), "PostLiked") if e.data.step_id == "second"]
    assert seconds == []
    assert await _states(o, cid) == {dated: "active", undated: "active"}
    # Back on Thursday: the sequence resumes at the start of the day.
    await o.drive(datetime(2026, 3, 5, 1, 0, tzinfo=UTC))
    got = await o.events()
    resumed = of_type(got, "LeadResumed")
    assert [(e.data.lead_id, e.time) for e in resumed] == [(dated, datetime(2026, 3, 5, 0, 0, tzinfo=UTC))]
    liked = [(e.data.lead_id, e.time) for e in of_type(got, "PostLiked") if e.data.step_id == "second"]
    assert liked == [(dated, datetime(2026, 3, 5, 0, 0, tzinfo=UTC))]
    assert (await _states(o, cid))[dated] == "completed"

    # A real reply while paused stops the lead for good.
    await o.api("POST", f"/v1/campaigns/{cid}/leads/{undated}/reply", 200, json={"text": "Not interested, thanks"})
    await o.drive(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    got = await o.events()
    assert [e.data.lead_id for e in of_type(got, "Replied")] == [undated]
    assert len(of_type(got, "LeadResumed")) == 1 and (await _states(o, cid))[undated] == "replied"
    assert (await o.api("GET", f"/v1/campaigns/{cid}", 200))["state"] == "finished"


async def test_a_reply_stops_the_leads_colleagues_when_the_campaign_asks(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, **QUIET)
    group = uuid.uuid4()
    replier, a = _lead(group, f"ann-{o.workspace}", company="Acme GmbH")
    colleague, b = _lead(group, f"ben-{o.workspace}", company="ACME")
    stranger, c = _lead(group, f"cara-{o.workspace}", company="Bluepeak")
    stopping = await _campaign(o, group, {**OPEN, "stop_company_on_reply": True})
    details = await o.api("GET", f"/v1/campaigns/{stopping}", 200)
    assert details["delivery"]["stop_company_on_reply"] is True
    await o.produce([*a, *b, *c])
    await o.wait_enrolled(stopping, 3)
    await o.drive(MONDAY + timedelta(minutes=30))
    await o.api("POST", f"/v1/campaigns/{stopping}/leads/{replier}/reply", 200, json={"text": "Yes, let's talk"})
    await o.drive(MONDAY + timedelta(hours=4))
    got = await o.events()
    skipped = [e.data for e in of_type(got, "ActionSkipped") if e.data.reason == SkipReason.company_replied]
    assert [(s.lead_id, s.step_id, s.campaign_id) for s in skipped] == [(colleague, "second", uuid.UUID(stopping))]
    assert "Acme GmbH" in (skipped[0].detail or "")
    assert await _states(o, stopping) == {replier: "replied", colleague: "stopped", stranger: "completed"}
    second_likes = {e.data.lead_id for e in of_type(got, "PostLiked") if e.data.step_id == "second"}
    assert second_likes == {stranger}


async def test_a_campaign_without_the_option_keeps_writing_to_colleagues(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, **QUIET)
    group = uuid.uuid4()
    replier, a = _lead(group, f"ann-{o.workspace}", company="Acme")
    colleague, b = _lead(group, f"ben-{o.workspace}", company="Acme")
    cid = await _campaign(o, group, OPEN)
    await o.produce([*a, *b])
    await o.wait_enrolled(cid, 2)
    await o.drive(MONDAY + timedelta(minutes=30))
    await o.api("POST", f"/v1/campaigns/{cid}/leads/{replier}/reply", 200, json={"text": "Sure"})
    await o.drive(MONDAY + timedelta(hours=4))
    assert await _states(o, cid) == {replier: "replied", colleague: "completed"}


async def test_active_hours_in_each_leads_time_zone(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, **QUIET)
    group = uuid.uuid4()
    berlin, a = _lead(group, f"berlin-{o.workspace}", location="Berlin, Germany")
    new_york, b = _lead(group, f"ny-{o.workspace}", location="New York, NY")
    nowhere, c = _lead(group, f"remote-{o.workspace}", location="Remote")
    one_like = {"steps": [{"id": "first", "action": "like"}], "edges": []}
    delivery = {"active_days": "weekdays", "start_hour": 9, "end_hour": 17, "timezone": "Europe/Berlin"}
    cid = await _campaign(o, group, {**delivery, "lead_timezones": True}, one_like)
    plain_group = uuid.uuid4()
    plain_ny, d = _lead(plain_group, f"ny-plain-{o.workspace}", location="New York, NY")
    plain = await _campaign(o, plain_group, delivery, one_like)
    await o.produce([*a, *b, *c, *d])
    await o.wait_enrolled(cid, 3)
    await o.wait_enrolled(plain, 1)
    await o.drive(MONDAY + timedelta(hours=12))
    liked = {e.data.lead_id: e.time for e in of_type(await o.events(), "PostLiked")}
    # 09:00 in Berlin is 08:00 UTC; 09:00 in New York is 14:00 UTC; unknown places keep the campaign's zone.
    assert liked[berlin] == MONDAY and liked[nowhere] == MONDAY
    assert liked[new_york] == MONDAY + timedelta(hours=6)
    assert liked[plain_ny] == MONDAY, "without the option the campaign's hours apply to everyone"
