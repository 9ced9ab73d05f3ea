"""Delivery pacing on the real broker and database: per-account limits across campaigns (invites, messages;
emails per sending mailbox), sends spread across the window with jitter, active days and hours in the
campaign's time zone, and an audience split that never gives a lead to two accounts."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from services.outreach.store import texts, timers
from services.outreach.timers import LIVE
from tests.services.outreach.support import (
    MakeSettings,
    Outreach,
    StartService,
    approvals,
    lead_events,
    of_type,
    start_outreach,
)
from tests.support.kafka import wait_for

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


async def _campaign(
    o: Outreach, name: str, group: uuid.UUID, workflow: Any, delivery: dict[str, Any], accounts: list[Any]
) -> Any:
    """Create a campaign on a source group (201 expected); returns its body."""
    body = {
        "name": name,
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": workflow,
        "delivery": delivery,
        "account_ids": accounts,
    }
    return await o.api("POST", "/v1/campaigns", 201, json=body)


async def test_recommended_pace_on_two_accounts(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=THURSDAY_EVENING)
    a, b = await o.account("a"), await o.account("b")
    group, other_group = uuid.uuid4(), uuid.uuid4()
    main = await _campaign(o, "Forty", group, INVITE_ONLY, DELIVERY, [a, b])
    side = await _campaign(o, "Side", other_group, INVITE_ONLY, DELIVERY, [a])
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
    # 20 invites spread over the 8-hour window: 24 minutes apart, less up to 30% jitter
    assert min(gaps) >= timedelta(minutes=24) * 0.7 and len(set(gaps)) > 1
    states = [
        type(e.data).__name__
        for e in got
        if e.data.__class__.__name__.startswith("Campaign")
        and e.data.__class__.__name__ != "CampaignAudienceRunRequested"  # not a state change
        and e.data.campaign_id == uuid.UUID(main["campaign_id"])
    ]
    assert states == ["CampaignCreated", "CampaignScheduled", "CampaignLaunched", "CampaignFinished"]
    leases = [e for e in of_type(got, "AccountLeaseAcquired") if e.data.campaign_id == uuid.UUID(main["campaign_id"])]
    assert {e.data.account_id for e in leases} == {uuid.UUID(a), uuid.UUID(b)}


MONDAY_OPEN = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
MESSAGE_ONLY = {"steps": [{"id": "message", "action": "message"}], "edges": []}
NO_REPLIES: dict[str, Any] = {"sim_connected_rate": 1.0, "sim_reply_rate": 0.0, "sim_out_of_office_rate": 0.0}


def _spread(load: int, cap: int, days: list[str]) -> dict[str, int]:
    """What ``load`` capped sends look like day by day: the cap each day, the rest on the last."""
    return {day: min(cap, load - cap * i) for i, day in enumerate(days) if load - cap * i > 0}


async def _wait_texts(o: Outreach, n: int) -> None:
    async def stored() -> bool:
        async with o.service.engine.connect() as conn:
            mine = texts.c.workspace_id == o.workspace
            return (await conn.scalar(select(func.count()).select_from(texts).where(mine)) or 0) >= n

    await wait_for(stored, timeout_s=60, what=f"{n} approved texts")


async def test_message_cap_per_account_defers_the_rest_to_the_next_day(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY_OPEN, **NO_REPLIES)
    a, b = await o.account("a"), await o.account("b")
    group, other_group = uuid.uuid4(), uuid.uuid4()
    capped = {**DELIVERY, "daily_message_limit": 2}
    main = await _campaign(o, "Messages", group, MESSAGE_ONLY, capped, [a, b])
    side = await _campaign(o, "Side messages", other_group, MESSAGE_ONLY, capped, [a])
    assert main["delivery"]["daily_message_limit"] == 2
    assert main["delivery"]["daily_email_limit"] == 80  # the Recommended default
    for c in (main, side):
        assert (await o.api("POST", f"/v1/campaigns/{c['campaign_id']}/launch", 200))["state"] == "running"
    leads, events = lead_events(group, 6, tag=o.workspace)
    side_leads, side_events = lead_events(other_group, 2, tag=o.workspace)
    await o.produce(events + side_events)
    await o.wait_enrolled(main["campaign_id"], 6)
    await o.wait_enrolled(side["campaign_id"], 2)
    await o.produce(
        approvals(main["campaign_id"], leads, "message", "message")
        + approvals(side["campaign_id"], side_leads, "message", "message")
    )
    await _wait_texts(o, 8)

    await o.drive(datetime(2026, 1, 6, 7, 0, tzinfo=UTC))  # Tuesday 08:00 in Berlin, before the window
    sent_monday = len(of_type(await o.events(), "MessageSent"))
    async with o.service.engine.connect() as conn:
        waiting = (
            await conn.execute(
                select(timers.c.state, timers.c.due_at).where(
                    timers.c.workspace_id == o.workspace, timers.c.kind == "step", timers.c.state.in_(LIVE)
                )
            )
        ).all()
    # over the cap: deferred (not failed, not skipped) to the next day's window, Tuesday 09:00 in Berlin
    assert len(waiting) == 8 - sent_monday > 0
    assert {(w.state, w.due_at) for w in waiting} == {("pending", datetime(2026, 1, 6, 8, 0, tzinfo=UTC))}

    await o.drive(datetime(2026, 1, 10, 0, 0, tzinfo=UTC))  # through Friday
    got = await o.events()
    assert not of_type(got, "ActionFailed") and not of_type(got, "ActionSkipped")
    owner = {e.data.lead_id: e.data.account_id for e in of_type(got, "LeadEnrolled")}
    messages = of_type(got, "MessageSent")
    assert sorted(e.data.lead_id for e in messages) == sorted(leads + side_leads)  # every lead once, none lost
    per_day: dict[uuid.UUID, Counter[str]] = {uuid.UUID(a): Counter(), uuid.UUID(b): Counter()}
    for e in messages:
        local = e.time.astimezone(BERLIN)
        assert local.weekday() < 5 and 9 <= local.hour < 17, f"message sent outside the window at {local}"
        assert e.data.account_id == owner[e.data.lead_id]
        per_day[e.data.account_id][local.date().isoformat()] += 1
    weekdays = [f"2026-01-{d:02d}" for d in range(5, 10)]
    for account, days in per_day.items():
        load = sum(1 for lead in owner.values() if lead == account)
        # the cap spans both of a's campaigns: each day the cap, the rest the next day
        assert dict(days) == _spread(load, 2, weekdays), (account, load, days)
    for c in (main, side):
        assert (await o.api("GET", f"/v1/campaigns/{c['campaign_id']}", 200))["state"] == "finished"


async def test_email_cap_counts_per_sending_mailbox_across_campaigns(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings, start_service, topic_prefix, start=MONDAY_OPEN, email_real_sends=True, **NO_REPLIES
    )
    await o.api("POST", "/v1/accounts", 201, json={"provider": "email", "sender_email": "sales@ours.example"})
    a, b = await o.account("a"), await o.account("b")
    graph = {
        "steps": [{"id": "message", "action": "message"}, {"id": "email", "action": "email"}],
        "edges": [{"from": "message", "to": "email", "delay_minutes": 5}],
    }
    delivery = {
        "active_days": "every_day",
        "start_hour": 0,
        "end_hour": 24,
        "daily_email_limit": 2,
        "email_fallback": {"sender_email": "Sales@Ours.example", "subject": "Hi {first_name}", "body": "Hello"},
    }
    campaigns, everyone = [], []
    for account in (a, b):  # two campaigns on two LinkedIn accounts, one mailbox
        group = uuid.uuid4()
        body = {
            "name": f"Email {account[:4]}",
            "audience": {"type": "source_group", "ref": str(group)},
            "workflow": graph,
            "delivery": delivery,
            "account_ids": [account],
        }
        cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
        await o.api("POST", f"/v1/campaigns/{cid}/launch", 200, json={"confirm_email_fallback": True})
        leads, events = lead_events(group, 3, tag=f"{o.workspace}{account[:4]}")
        await o.produce(events)
        await o.wait_enrolled(cid, 3)
        await o.produce(
            approvals(cid, leads, "message", "message") + approvals(cid, leads, "email", "email", subject="Hi")
        )
        campaigns.append(cid)
        everyone += leads
    await _wait_texts(o, 12)
    await o.drive(MONDAY_OPEN + timedelta(days=4))
    got = await o.events()
    emails = of_type(got, "EmailSent")
    assert sorted(e.data.lead_id for e in emails) == sorted(everyone)  # every lead once, none lost
    assert {e.data.account_id for e in emails} == {uuid.UUID(a), uuid.UUID(b)}
    per_day = Counter(e.time.date().isoformat() for e in emails)
    # one mailbox: 2 a day in total, whichever LinkedIn account's campaign the email belongs to
    assert dict(per_day) == {"2026-01-05": 2, "2026-01-06": 2, "2026-01-07": 2}
    assert len(of_type(got, "MessageSent")) == 6  # messages keep their own (default) cap


async def test_messages_and_emails_are_spread_across_the_window_with_jitter(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings, start_service, topic_prefix, start=MONDAY_OPEN, email_real_sends=True, **NO_REPLIES
    )
    await o.api("POST", "/v1/accounts", 201, json={"provider": "email", "sender_email": "sales@ours.example"})
    account = await o.account()
    group = uuid.uuid4()
    graph = {
        "steps": [{"id": "message", "action": "message"}, {"id": "email", "action": "email"}],
        "edges": [{"from": "message", "to": "email", "delay_minutes": 5}],
    }
    delivery = {
        **DELIVERY,  # 09:00-17:00 in Berlin: 6 a day are 80 minutes apart, less up to 30% jitter
        "daily_message_limit": 6,
        "daily_email_limit": 6,
        "email_fallback": {"sender_email": "sales@ours.example", "subject": "Hi {first_name}", "body": "Hello"},
    }
    c = await _campaign(o, "Spread", group, graph, delivery, [account])
    await o.api("POST", f"/v1/campaigns/{c['campaign_id']}/launch", 200, json={"confirm_email_fallback": True})
    leads, events = lead_events(group, 6, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(c["campaign_id"], 6)
    await o.produce(
        approvals(c["campaign_id"], leads, "message", "message")
        + approvals(c["campaign_id"], leads, "email", "email", subject="Hi")
    )
    await _wait_texts(o, 12)
    await o.drive(datetime(2026, 1, 6, 0, 0, tzinfo=UTC))  # Monday only

    got = await o.events()
    gap = timedelta(hours=8) / 6
    for kind in ("MessageSent", "EmailSent"):
        times = sorted(e.time for e in of_type(got, kind))
        assert len(times) == 6, (kind, times)  # the day's cap fits in the day's window
        for t in times:
            local = t.astimezone(BERLIN)
            assert local.date().isoformat() == "2026-01-05" and 9 <= local.hour < 17, (kind, local)
        gaps = [b - a for a, b in pairwise(times)]
        assert all(gap * 0.7 <= g <= gap for g in gaps), (kind, gaps)  # spread, never a burst
        assert len(set(gaps)) > 1, (kind, gaps)  # with jitter: not a machine-regular rhythm
    assert not of_type(got, "ActionFailed") and not of_type(got, "ActionSkipped")
