"""Delivery pacing on the real broker and database: per-account limits across campaigns, active days and
hours in the campaign's time zone, and an audience split that never gives a lead to two accounts."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from tests.services.outreach.support import MakeSettings, StartService, lead_events, of_type, start_outreach

BERLIN = ZoneInfo("Europe/Berlin")
THURSDAY_EVENING = datetime(2026, 1, 8, 20, 0, tzinfo=UTC)
INVITE_ONLY = {"steps": [{"id": "invite", "action": "invite", "note": False}], "edges": []}
DELIVERY = {
    "pace": "recommended",
    "active_days": "weekdays",
    "start_hour": 9,
    "end_hour": 17,
    "timezone": "Europe/Berlin",
}


async def test_recommended_pace_on_two_accounts(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=THURSDAY_EVENING)
    a, b = await o.account("a"), await o.account("b")
    group, other_group = uuid.uuid4(), uuid.uuid4()
    main = await o.api(
        "POST",
        "/v1/campaigns",
        201,
        json={
            "name": "Forty",
            "audience": {"type": "source_group", "ref": str(group)},
            "workflow": INVITE_ONLY,
            "delivery": DELIVERY,
            "account_ids": [a, b],
        },
    )
    side = await o.api(
        "POST",
        "/v1/campaigns",
        201,
        json={
            "name": "Side",
            "audience": {"type": "source_group", "ref": str(other_group)},
            "workflow": INVITE_ONLY,
            "delivery": DELIVERY,
            "account_ids": [a],
        },
    )
    assert main["pace"] == "Recommended: 20 invites per day"
    for c in (main, side):
        launched = await o.api("POST", f"/v1/campaigns/{c['campaign_id']}/launch", 200)
        # Thursday 21:00 in Berlin: the audience run is two hours before Friday's 09:00 window
        assert launched["state"] == "scheduled"
        assert launched["next_run_at"] == "2026-01-09T06:00:00+00:00"
    leads, events = lead_events(group, 40, tag=o.workspace)
    side_leads, side_events = lead_events(other_group, 10, tag=o.workspace)
    await o.produce(events + side_events)
    await o.drive(datetime(2026, 1, 9, 5, 0, tzinfo=UTC))
    assert await o.enrolled(main["campaign_id"]) == 0  # scheduled campaigns do not enroll before their run
    await o.drive(datetime(2026, 1, 9, 6, 0, tzinfo=UTC))
    await o.wait_enrolled(main["campaign_id"], 40)
    await o.wait_enrolled(side["campaign_id"], 10)
    await o.drive(datetime(2026, 1, 13, 0, 0, tzinfo=UTC))  # Friday, the weekend, Monday

    got = await o.events()
    enrolled = of_type(got, "LeadEnrolled")
    assert len(enrolled) == 50
    owner = {e.data.lead_id: e.data.account_id for e in enrolled}
    assert len(owner) == 50  # one enrollment (one account) per lead
    assert {owner[lead] for lead in leads} == {uuid.UUID(a), uuid.UUID(b)}
    invites = of_type(got, "InviteSent")
    assert sorted(e.data.lead_id for e in invites) == sorted(leads + side_leads)  # every lead, exactly once
    assert all(e.data.account_id == owner[e.data.lead_id] for e in invites)
    per_day: Counter[tuple[uuid.UUID, str]] = Counter()
    for e in invites:
        local = e.time.astimezone(BERLIN)
        assert local.weekday() < 5 and 9 <= local.hour < 17, f"invite sent outside the window at {local}"
        per_day[(e.data.account_id, local.date().isoformat())] += 1
    assert max(per_day.values()) <= 20, per_day
    load_a = sum(1 for lead in leads if owner[lead] == uuid.UUID(a)) + 10
    assert per_day[(uuid.UUID(a), "2026-01-09")] == min(20, load_a)  # the limit spans both of a's campaigns
    assert sum(n for (acct, day), n in per_day.items() if day == "2026-01-12") == 50 - sum(
        n for (acct, day), n in per_day.items() if day == "2026-01-09"
    )
    times_a = sorted(e.time for e in invites if e.data.account_id == uuid.UUID(a))
    gaps = [t2 - t1 for t1, t2 in pairwise(times_a) if t1.date() == t2.date()]
    assert min(gaps) >= timedelta(minutes=24)  # 20 invites spread over the 8-hour window
    states = [
        type(e.data).__name__
        for e in got
        if e.data.__class__.__name__.startswith("Campaign") and e.data.campaign_id == uuid.UUID(main["campaign_id"])
    ]
    assert states == ["CampaignCreated", "CampaignScheduled", "CampaignLaunched", "CampaignFinished"]
    leases = [e for e in of_type(got, "AccountLeaseAcquired") if e.data.campaign_id == uuid.UUID(main["campaign_id"])]
    assert {e.data.account_id for e in leases} == {uuid.UUID(a), uuid.UUID(b)}
