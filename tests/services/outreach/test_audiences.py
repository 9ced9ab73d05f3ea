"""Audiences that keep working, on outreach's side (fake clock, real broker and database): a campaign runs its
audience two hours before each invite window, and takes on late joiners of its audience when it is resumed
or extended after it finished."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from leadstream_schemas import SearchFinished, SearchResumed, SearchStarted
from sqlalchemy import select

from services.outreach.store import leads, searches
from tests.services.outreach.support import MakeSettings, Outreach, StartService, lead_events, of_type, start_outreach
from tests.support.kafka import wait_for

MONDAY_5AM = datetime(2026, 1, 5, 5, 0, tzinfo=UTC)
LIKE_ONLY = {"steps": [{"id": "like", "action": "like"}], "edges": []}


async def _campaign(o: Outreach, search: uuid.UUID, delivery: dict[str, object]) -> str:
    account = await o.account()
    body = {
        "name": "keeps working",
        "audience": {"type": "saved_search", "ref": str(search)},
        "workflow": LIKE_ONLY,
        "delivery": delivery,
        "account_ids": [account],
    }
    return str((await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"])


async def _ready(o: Outreach, lead_id: uuid.UUID) -> None:
    async def ready() -> bool:
        async with o.service.engine.connect() as conn:
            return bool(await conn.scalar(select(leads.c.ready).where(leads.c.lead_id == lead_id)))

    await wait_for(ready, timeout_s=60, what="the lead ready")


async def _state(o: Outreach, cid: str, state: str) -> bool:
    return bool((await o.api("GET", f"/v1/campaigns/{cid}", 200))["state"] == state)


async def test_a_campaign_runs_its_audience_two_hours_before_each_invite_window(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY_5AM)
    search, group = uuid.uuid4(), uuid.uuid4()
    await o.produce(
        [SearchStarted(search_id=search, source_group_id=group, kind="people", name="s", criteria={}, target_count=9)]
    )
    # Weekdays 09:00-17:00 in Berlin (08:00 UTC in winter): audience runs at 06:00 UTC.
    cid = await _campaign(o, search, {"active_days": "weekdays", "start_hour": 9, "timezone": "Europe/Berlin"})
    launched = await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    assert (launched["state"], launched["next_run_at"]) == ("scheduled", "2026-01-05T06:00:00+00:00")
    assert not of_type(await o.events(), "CampaignAudienceRunRequested")
    await o.drive(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))  # Monday to Saturday noon
    runs = of_type(await o.events(), "CampaignAudienceRunRequested")
    # One run per weekday window, each two hours before it (the first starts the campaign); none at the weekend.
    assert [(e.time, e.data.window_start) for e in runs] == [
        (datetime(2026, 1, d, 6, 0, tzinfo=UTC), datetime(2026, 1, d, 8, 0, tzinfo=UTC)) for d in range(5, 10)
    ]
    assert {(e.data.audience.type, e.data.audience.ref) for e in runs} == {("saved_search", str(search))}
    assert len({e.id for e in runs}) == 5
    # The next one waits for Monday's window; a paused campaign's run waits for the campaign.
    await o.api("POST", f"/v1/campaigns/{cid}/pause", 200)
    await o.drive(datetime(2026, 1, 13, 12, 0, tzinfo=UTC))
    assert len(of_type(await o.events(), "CampaignAudienceRunRequested")) == 5
    await o.api("POST", f"/v1/campaigns/{cid}/resume", 200)
    await o.drive(datetime(2026, 1, 13, 12, 0, tzinfo=UTC))
    late = of_type(await o.events(), "CampaignAudienceRunRequested")[5:]
    # The overdue run catches up with the window at hand (Tuesday's, open now), then Wednesday's comes in time.
    assert [e.data.window_start for e in late] == [datetime(2026, 1, 13, 8, 0, tzinfo=UTC)]
    assert await o.ctx.runner.next_due_at() == datetime(2026, 1, 14, 6, 0, tzinfo=UTC)


async def test_late_joiners_are_enrolled_when_a_finished_campaign_is_resumed_or_extended(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY_5AM)
    search, group = uuid.uuid4(), uuid.uuid4()
    await o.produce(
        [SearchStarted(search_id=search, source_group_id=group, kind="people", name="s", criteria={}, target_count=2)]
    )
    cid = await _campaign(o, search, {"active_days": "every_day", "start_hour": 0, "end_hour": 24})
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    first, events = lead_events(group, 2, tag=f"{o.workspace}-a")
    await o.produce([*events, SearchFinished(search_id=search, reason="exhausted", total_new=2)])
    await o.wait_enrolled(cid, 2)
    await o.drive(MONDAY_5AM + timedelta(hours=1))
    await wait_for(lambda: _state(o, cid, "finished"), timeout_s=60, what="the campaign finished")

    # A late joiner of the audience is not enrolled by the finished campaign ...
    (late,), events = lead_events(group, 1, tag=f"{o.workspace}-b")
    await o.produce(events)
    await _ready(o, late)
    await o.drive(MONDAY_5AM + timedelta(hours=2))
    assert await o.enrolled(cid) == 2
    # ... until it is resumed: it runs again, enrolls the late joiner and runs its audience at once.
    resumed = await o.api("POST", f"/v1/campaigns/{cid}/resume", 200)
    assert resumed["state"] == "running" and resumed["leads"]["enrolled"] == 3
    # Its search runs again (discovery found it exhausted): the campaign stays open while it looks.
    await o.produce(
        [
            SearchResumed(
                search_id=search, run=2, reason="campaign_audience_run", campaign_id=uuid.UUID(cid), target_count=2
            )
        ]
    )

    async def search_live() -> bool:
        async with o.service.engine.connect() as conn:
            return (await conn.scalar(select(searches.c.finished).where(searches.c.search_id == search))) is False

    await wait_for(search_live, timeout_s=60, what="the search running again")
    await o.drive(MONDAY_5AM + timedelta(hours=3))
    assert await _state(o, cid, "running"), "its audience's search still runs"
    await o.produce([SearchFinished(search_id=search, reason="exhausted", total_new=3)])
    await wait_for(lambda: _state(o, cid, "finished"), timeout_s=60, what="finished again")

    # Extending it: CampaignExtended for discovery, and the next late joiner is enrolled at once.
    (later,), events = lead_events(group, 1, tag=f"{o.workspace}-c")
    await o.produce(events)
    await _ready(o, later)
    await o.drive(MONDAY_5AM + timedelta(hours=4))
    assert await o.enrolled(cid) == 3
    assert (await o.client.post(f"/v1/campaigns/{cid}/extend", json={"additional_leads": 0})).status_code == 422
    extended = await o.api("POST", f"/v1/campaigns/{cid}/extend", 200, json={"additional_leads": 25})
    assert extended["state"] == "running" and extended["leads"]["enrolled"] == 4
    await o.drive(MONDAY_5AM + timedelta(hours=5))
    got = await o.events()
    assert [(e.data.additional_leads, e.data.audience.ref) for e in of_type(got, "CampaignExtended")] == [
        (25, str(search))
    ]
    assert [e.data.reason for e in of_type(got, "CampaignResumed")] == ["resumed_finished", "extended"]
    liked = {e.data.lead_id for e in of_type(got, "PostLiked")}
    assert liked == {*first, late, later}
    runs = of_type(got, "CampaignAudienceRunRequested")
    resume_time = next(e.time for e in of_type(got, "CampaignResumed"))
    assert any(e.time == resume_time for e in runs), "a resumed campaign runs its audience at once"
    assert (
        await o.client.post(f"/v1/campaigns/{uuid.uuid4()}/extend", json={"additional_leads": 5})
    ).status_code == 404
