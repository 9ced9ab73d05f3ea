"""Enrollment and the first action: duplicates across campaigns, URL audiences, the video wait, and the
provider's invitation and message limits pausing an account instead of failing leads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from leadstream_schemas import (
    LeadAddedToSourceGroup,
    LeadSource,
    SearchFinished,
    SearchStarted,
    SkipReason,
    VideoGenerated,
)
from sqlalchemy import select

from services.outreach.store import enrollments, texts, timers
from tests.services.outreach.support import MakeSettings, StartService, approvals, lead_events, of_type, start_outreach
from tests.support.kafka import wait_for

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OPEN = {"active_days": "every_day", "start_hour": 0, "end_hour": 24}
INVITE_ONLY = {"steps": [{"id": "invite", "action": "invite", "note": False}], "edges": []}


async def test_a_lead_in_two_campaigns_proceeds_in_one(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    account = await o.account()
    group = uuid.uuid4()
    ids = []
    for name in ("first", "second"):
        body = {
            "name": name,
            "audience": {"type": "source_group", "ref": str(group)},
            "workflow": INVITE_ONLY,
            "delivery": OPEN,
            "account_ids": [account],
        }
        cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
        await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
        ids.append(uuid.UUID(cid))
    leads, events = lead_events(group, 3, tag=o.workspace)
    await o.produce(events)
    for cid in ids:
        await o.wait_enrolled(str(cid), 3)
    await o.drive(MONDAY + timedelta(hours=3))  # one invite every 72 minutes (20 a day over 24 hours)
    got = await o.events()
    enrolled = {e.data.lead_id: e.data.campaign_id for e in of_type(got, "LeadEnrolled")}
    assert set(enrolled) == set(leads)
    duplicates = {
        (e.data.lead_id, e.data.campaign_id)
        for e in of_type(got, "ActionSkipped")
        if e.data.reason == SkipReason.duplicate
    }
    assert duplicates == {(lead, next(c for c in ids if c != enrolled[lead])) for lead in leads}
    assert sorted((e.data.lead_id, e.data.campaign_id) for e in of_type(got, "InviteSent")) == sorted(enrolled.items())


async def test_linkedin_url_audience_finishes_after_its_search(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    account = await o.account()
    url = "https://www.linkedin.com/search/results/people/?keywords=revops"
    search, group = uuid.uuid4(), uuid.uuid4()
    await o.produce(
        [
            SearchStarted(
                search_id=search,
                source_group_id=group,
                kind="linkedin_url",
                name="revops",
                criteria={"url": url},
                target_count=2,
            )
        ]
    )
    body = {
        "name": "url",
        "audience": {"type": "linkedin_url", "ref": url},
        "workflow": INVITE_ONLY,
        "delivery": OPEN,
        "account_ids": [account],
    }
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    _, events = lead_events(group, 2, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 2)
    await o.drive(MONDAY + timedelta(hours=2))
    assert len(of_type(await o.events(), "LeadCompleted")) == 2
    assert (await o.api("GET", f"/v1/campaigns/{cid}", 200))["state"] == "running"  # the search still runs
    await o.produce([SearchFinished(search_id=search, reason="target_reached", total_new=2)])

    async def finished() -> bool:
        return (await o.api("GET", f"/v1/campaigns/{cid}", 200))["state"] == "finished"

    await wait_for(finished, timeout_s=60, what="campaign finished")


async def test_first_action_waits_for_the_video(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        video_wait_minutes=60,
        link_allowed_hosts="video.example",
    )
    account = await o.account()
    group = uuid.uuid4()
    body = {
        "name": "video",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": INVITE_ONLY,
        "delivery": {**OPEN, "pace": "high_volume"},
        "account_ids": [account],
        "video": {"template_id": "vt-intro", "segments": [{"field": "city", "fallback": "your city"}]},
    }
    created = await o.api("POST", "/v1/campaigns", 201, json=body)
    cid = created["campaign_id"]
    assert created["video"]["template_id"] == "vt-intro"
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    (with_video, forged, late), events = lead_events(group, 3, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 3)
    # Every first action starts waiting for its video. Said of this campaign's timers, not by how many timers the
    # run ran: that counts every workspace's, and the consumer may have just scheduled some for records the
    # session's earlier tests left on the topics (read after start_outreach cancelled theirs).
    await o.run()
    async with o.service.engine.connect() as conn:
        waits = await conn.execute(
            select(timers.c.lead_id, timers.c.state, timers.c.waiting_for).where(
                timers.c.lead_id.in_([with_video, forged, late])
            )
        )
        assert sorted((str(lead), state, on) for lead, state, on in waits) == sorted(
            (str(lead), "waiting", "video") for lead in (with_video, forged, late)
        )
    videos = [(with_video, "https://video.example/v/1.mp4"), (forged, "https://evil.example/v/1.mp4")]
    await o.produce(
        [
            VideoGenerated(lead_id=lead, campaign_id=uuid.UUID(cid), video_job_id=uuid.uuid4(), video_url=url)
            for lead, url in videos
        ]
    )

    async def woken() -> bool:
        async with o.service.engine.connect() as conn:
            states = await conn.scalars(select(timers.c.state).where(timers.c.lead_id.in_([with_video, forged])))
            return list(states) == ["pending", "pending"]

    await wait_for(woken, timeout_s=60, what="video wake-up")
    await o.drive(MONDAY + timedelta(hours=2))
    got = {e.data.lead_id: e for e in of_type(await o.events(), "InviteSent")}
    assert got[with_video].data.video_url == "https://video.example/v/1.mp4"
    # A link on a host that is not allowed is never sent: the invite goes at once, without it. The two invites
    # woken together keep the invite rhythm: one at once, the other at its turn, both before the late one.
    assert got[forged].data.video_url is None
    assert min(got[with_video].time, got[forged].time) == MONDAY
    assert max(got[with_video].time, got[forged].time) < MONDAY + timedelta(minutes=60)
    assert got[late].data.video_url is None and got[late].time == MONDAY + timedelta(minutes=60)
    created_event = of_type(await o.events(), "CampaignCreated")[0].data
    video = created_event.video
    assert video is not None and video.template_id == "vt-intro"
    assert [(s.name, s.field, s.fallback) for s in video.segments] == [("city", "city", "your city")]


async def test_invitation_limit_pauses_the_account_not_the_leads(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, sim_invite_limit_per_week=2)
    account = await o.account()
    group = uuid.uuid4()
    body = {
        "name": "limit",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": INVITE_ONLY,
        "delivery": {"active_days": "every_day", "start_hour": 8, "end_hour": 16},
        "account_ids": [account],
    }
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    _, events = lead_events(group, 4, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 4)
    await o.drive(MONDAY + timedelta(hours=10))
    got = await o.events()
    assert len(of_type(got, "InviteSent")) == 2
    assert not of_type(got, "ActionFailed")
    changed = of_type(got, "AccountStatusChanged")
    assert [(e.data.status, e.data.healthy) for e in changed] == [("limit_reached", False)]
    info = await o.api("GET", f"/v1/accounts/{account}", 200)
    assert info["limit_paused_until"] == "2026-01-06T08:00:00+00:00"  # the next window, not a failure
    async with o.service.engine.connect() as conn:
        states = [
            r.state
            for r in await conn.execute(select(enrollments.c.state).where(enrollments.c.campaign_id == uuid.UUID(cid)))
        ]
        waiting = [
            r.state
            for r in await conn.execute(
                select(timers.c.state).where(
                    timers.c.campaign_id == uuid.UUID(cid), timers.c.kind == "step", timers.c.state != "done"
                )
            )
        ]
    assert sorted(states) == ["active", "active", "completed", "completed"]
    assert waiting == ["pending", "pending"]
    # Tuesday's audience run (two hours before the window) comes first, then the waiting invites at 08:00.
    assert await o.ctx.runner.next_due_at() == datetime(2026, 1, 6, 6, 0, tzinfo=UTC)
    await o.drive(datetime(2026, 1, 6, 6, 0, tzinfo=UTC))
    assert await o.ctx.runner.next_due_at() == datetime(2026, 1, 6, 8, 0, tzinfo=UTC)


async def test_message_limit_pauses_the_account_until_its_next_window(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        sim_message_limit_per_week=2,
        sim_connected_rate=1.0,
        sim_reply_rate=0.0,
        sim_out_of_office_rate=0.0,
    )
    account = await o.account()
    group = uuid.uuid4()
    body = {
        "name": "message limit",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": {"steps": [{"id": "message", "action": "message"}], "edges": []},
        "delivery": {"active_days": "every_day", "start_hour": 8, "end_hour": 16},
        "account_ids": [account],
    }
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    leads, events = lead_events(group, 4, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 4)
    await o.produce(approvals(cid, leads, "message", "message"))

    async def approved() -> bool:
        async with o.service.engine.connect() as conn:
            return (
                len((await conn.execute(select(texts.c.lead_id).where(texts.c.campaign_id == uuid.UUID(cid)))).all())
                == 4
            )

    await wait_for(approved, timeout_s=60, what="four approved messages")
    await o.drive(MONDAY + timedelta(hours=10))
    got = await o.events()
    assert len(of_type(got, "MessageSent")) == 2  # the provider's weekly message limit
    assert not of_type(got, "ActionFailed") and not of_type(got, "ActionSkipped")
    changed = of_type(got, "AccountStatusChanged")
    assert [(e.data.status, e.data.healthy, e.data.until) for e in changed] == [
        ("message_limit_reached", False, datetime(2026, 1, 6, 8, 0, tzinfo=UTC))
    ]
    info = await o.api("GET", f"/v1/accounts/{account}", 200)
    assert (info["status"], info["limit_paused_until"]) == ("message_limit_reached", "2026-01-06T08:00:00+00:00")
    async with o.service.engine.connect() as conn:
        waiting = (
            await conn.execute(
                select(timers.c.state, timers.c.due_at).where(
                    timers.c.campaign_id == uuid.UUID(cid), timers.c.kind == "step", timers.c.state != "done"
                )
            )
        ).all()
    # The leads wait for the account's next window; they are not failed.
    assert sorted(w.state for w in waiting) == ["pending", "pending"]
    resumes = await o.ctx.runner.next_due_at()
    assert resumes is not None and MONDAY + timedelta(hours=10) < resumes <= datetime(2026, 1, 6, 8, 0, tzinfo=UTC)


async def test_connections_decide_invites_and_messages(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, sim_connected_rate=1.0)
    account = await o.account()
    connected_group = uuid.uuid4()
    direct = await o.api(
        "POST",
        "/v1/campaigns",
        201,
        json={
            "name": "direct",
            "audience": {"type": "source_group", "ref": str(connected_group)},
            "workflow": "direct_connect",
            "strategy": {"invite_note": False},
            "delivery": OPEN,
            "account_ids": [account],
        },
    )
    assert direct["workflow"]["steps"][0] == {
        "id": "invite",
        "action": "invite",
        "needs_text": False,
        "channel": None,
        "note": False,
        "accept_timeout_hours": 168,
    }
    await o.api("POST", f"/v1/campaigns/{direct['campaign_id']}/launch", 200)
    (friend,), events = lead_events(connected_group, 1, tag=o.workspace)
    await o.produce([*events, *approvals(direct["campaign_id"], [friend], "message", "message")])
    await o.wait_enrolled(direct["campaign_id"], 1)

    async def approved() -> bool:
        async with o.service.engine.connect() as conn:
            return bool(await conn.scalar(select(texts.c.status).where(texts.c.lead_id == friend)))

    await wait_for(approved, timeout_s=60, what="approved message")
    await o.drive(MONDAY + timedelta(hours=3))
    got = await o.events()
    skipped = [(e.data.step_id, e.data.reason) for e in of_type(got, "ActionSkipped")]
    assert skipped == [("invite", SkipReason.already_connected)]
    sent = of_type(got, "MessageSent")
    assert [(e.data.lead_id, e.time) for e in sent] == [(friend, MONDAY + timedelta(hours=1))]
    assert not of_type(got, "InviteSent")


async def test_message_connected_skips_strangers(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, sim_connected_rate=0.0)
    account = await o.account()
    group = uuid.uuid4()
    cid = (
        await o.api(
            "POST",
            "/v1/campaigns",
            201,
            json={
                "name": "connected only",
                "audience": {"type": "source_group", "ref": str(group)},
                "workflow": "Message connected leads",
                "delivery": OPEN,
                "account_ids": [account],
            },
        )
    )["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    (stranger,), events = lead_events(group, 1, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 1)
    await o.drive(MONDAY + timedelta(days=1))
    got = await o.events()
    assert [(e.data.lead_id, e.data.step_id, e.data.reason) for e in of_type(got, "ActionSkipped")] == [
        (stranger, "message", SkipReason.not_accepted),
        (stranger, "follow_up", SkipReason.not_accepted),
    ]
    assert [e.data.steps_done for e in of_type(got, "LeadCompleted")] == [0]
    assert not of_type(got, "MessageSent")


async def test_known_lead_added_to_another_group_joins_that_audience(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    account = await o.account()
    first_group, second_group = uuid.uuid4(), uuid.uuid4()
    leads, events = lead_events(first_group, 2, tag=o.workspace + "joined")
    body = {
        "name": "second group",
        "audience": {"type": "source_group", "ref": str(second_group)},
        "workflow": INVITE_ONLY,
        "delivery": OPEN,
        "account_ids": [account],
    }
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    # Only the first lead is found again by the second search; discovery announces the new membership.
    joined = LeadAddedToSourceGroup(lead_id=leads[0], source=LeadSource.search, source_group_id=second_group)
    await o.produce([*events, joined])
    await o.wait_enrolled(cid, 1)
    got = await o.events()
    assert {e.data.lead_id for e in of_type(got, "LeadEnrolled") if str(e.data.campaign_id) == cid} == {leads[0]}
