"""The personalised video is ready before the first invite or message on every preset, Warm intro included
(it starts with a like and a comment, which need no video): the invite or message waits for it up to the
failsafe deadline and carries it, and so does every invite and message after it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadstream_schemas import VideoGenerated
from sqlalchemy import select

from services.outreach.domain.workflow import resolve_workflow
from services.outreach.store import timers
from tests.services.outreach.support import MakeSettings, StartService, approvals, lead_events, of_type, start_outreach
from tests.support.kafka import wait_for

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OPEN = {"active_days": "every_day", "start_hour": 0, "end_hour": 24, "pace": "high_volume"}
VIDEO_URL = "https://videos.studio.example/v/lead.mp4"  # a host the video links may come from
# When the preset's first invite or message is due after enrolment: Warm intro likes at once, comments an hour
# later and invites twelve hours after that; the others start with their invite or message.
FIRST_VIDEO_STEP = {
    "warm_intro": ("invite", timedelta(hours=13)),
    "standard_connect": ("invite", timedelta(0)),
    "direct_connect": ("invite", timedelta(0)),
    "message_connected": ("message", timedelta(0)),
}


@pytest.mark.parametrize("preset", sorted(FIRST_VIDEO_STEP))
async def test_the_first_invite_or_message_waits_for_the_video_and_carries_it(
    preset: str, make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        video_wait_minutes=3 * 24 * 60,
        sim_connected_rate=1.0 if preset == "message_connected" else 0.0,  # its leads are connections already
    )
    account = await o.account()
    group = uuid.uuid4()
    body = {
        "name": preset,
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": preset,
        "delivery": OPEN,
        "account_ids": [account],
        "video": {"template_id": "vt-intro", "segments": [{"field": "first_name", "fallback": "there"}]},
    }
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    [lead], events = lead_events(group, 1, tag=o.workspace)
    text_steps = resolve_workflow(preset, default_note=True, email_fallback=False).to_model().text_steps()
    for step in text_steps:
        assert step.channel is not None
        events.extend(approvals(cid, [lead], step.id, step.channel.value))
    await o.produce(events)
    await o.wait_enrolled(cid, 1)

    action, due_after = FIRST_VIDEO_STEP[preset]
    waited_until = MONDAY + due_after + timedelta(hours=2)
    await o.drive(waited_until)
    got = await o.events()
    assert not of_type(got, "InviteSent") and not of_type(got, "MessageSent"), "sent before the video was ready"
    if preset == "warm_intro":  # the like and the comment went at their time: they carry no video
        assert [e.time for e in of_type(got, "PostLiked")] == [MONDAY]
        assert [e.time for e in of_type(got, "CommentPosted")] == [MONDAY + timedelta(hours=1)]

    async with o.service.engine.connect() as conn:
        waiting = (
            await conn.execute(select(timers.c.step_id, timers.c.waiting_for).where(timers.c.lead_id == lead))
        ).all()
    assert (action, "video") in [(r.step_id, r.waiting_for) for r in waiting]

    await o.produce(
        [VideoGenerated(lead_id=lead, campaign_id=uuid.UUID(cid), video_job_id=uuid.uuid4(), video_url=VIDEO_URL)]
    )

    async def woken() -> bool:
        async with o.service.engine.connect() as conn:
            rows = await conn.execute(
                select(timers.c.state).where(timers.c.lead_id == lead, timers.c.step_id == action)
            )
            return [r.state for r in rows] == ["pending"]

    await wait_for(woken, timeout_s=60, what="the step waiting for the video woken")
    await o.drive(waited_until + timedelta(days=3))
    got = await o.events()
    carriers = sorted(of_type(got, "InviteSent") + of_type(got, "MessageSent"), key=lambda e: e.time)
    assert carriers and type(carriers[0].data).__name__ == ("InviteSent" if action == "invite" else "MessageSent")
    assert carriers[0].time == waited_until  # sent when the video arrived, not before
    without = [(type(e.data).__name__, e.data.step_id) for e in carriers if e.data.video_url != VIDEO_URL]
    assert without == []  # every invite and message carries the video
