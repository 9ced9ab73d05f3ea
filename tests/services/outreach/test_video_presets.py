"""The personalised video is ready before the first invite or message on every preset, Warm intro included
(it starts with a like and a comment, which need no video): the invite or message waits for it up to the
failsafe deadline and carries it, and so does every invite and message after it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from leadstream_schemas import InviteSent, VideoGenerated, decode
from sqlalchemy import select

from services.outreach.domain.workflow import resolve_workflow
from services.outreach.store import sends, timers, videos
from services.runtime.personal import PersonalReader
from tests.services.outreach.support import MakeSettings, StartService, approvals, lead_events, of_type, start_outreach
from tests.support.kafka import read_until, wait_for

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


async def test_the_video_link_is_sealed_on_the_topic_read_in_plain_and_erased_with_the_lead(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    """The link points at a video rendered for this one person (contract 1.3.0: a personal path). Outreach reads it
    in plain from a plaintext VideoGenerated (a record from before 1.3.0), sends the invite with it, and writes it
    sealed on the topic; erasing the lead leaves ``[erased]`` in its videos and sends and to every key-store reader."""
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, video_wait_minutes=60)
    account = await o.account()
    group = uuid.uuid4()
    body = {
        "name": "sealed video",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": "standard_connect",
        "delivery": OPEN,
        "account_ids": [account],
        "video": {"template_id": "vt-intro", "segments": [{"field": "first_name", "fallback": "there"}]},
    }
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    [lead], events = lead_events(group, 1, tag=o.workspace)
    for step in resolve_workflow("standard_connect", default_note=True, email_fallback=False).to_model().text_steps():
        assert step.channel is not None
        events.extend(approvals(cid, [lead], step.id, step.channel.value))
    video = VideoGenerated(lead_id=lead, campaign_id=uuid.UUID(cid), video_job_id=uuid.uuid4(), video_url=VIDEO_URL)
    await o.produce([*events, video])
    await o.wait_enrolled(cid, 1)

    async def video_known() -> bool:
        async with o.service.engine.connect() as conn:
            return await conn.scalar(select(videos.c.video_url).where(videos.c.lead_id == lead)) == VIDEO_URL

    await wait_for(video_known, timeout_s=60, what="outreach to read the plaintext link")
    await o.drive(MONDAY + timedelta(hours=2))
    [invite] = of_type(await o.events(lambda e: getattr(e.data, "lead_id", None) == lead), "InviteSent")
    assert invite.data.video_url == VIDEO_URL  # read back through the key store: the plain link

    lead_topic = o.prefix + "leadstream.lead.v1"
    wanted = InviteSent.event_type.encode()

    def ours(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == str(lead).encode() and dict(r.headers).get("ce_type") == wanted]

    records = await read_until(o.settings.kafka_bootstrap_servers, [lead_topic], lambda rs: bool(ours(rs)))
    [raw] = ours(records)
    assert json.loads(raw.value)["video_url"].startswith("pii1:")
    assert VIDEO_URL.encode() not in raw.value

    await o.api("POST", f"/v1/leads/{lead}/erasure", 202)
    async with o.service.engine.connect() as conn:
        kept = (await conn.execute(select(videos.c.status, videos.c.video_url).where(videos.c.lead_id == lead))).all()
        stored = (await conn.execute(select(sends.c.event).where(sends.c.lead_id == lead))).scalars().all()
    assert [(r.status, r.video_url) for r in kept] == [("ready", "[erased]")]
    assert VIDEO_URL not in json.dumps(stored)
    reader = PersonalReader.on_engine(o.service.engine)  # a reader of its own: the helpers' cache knows the key
    person = reader.person(raw.headers)
    await reader.load([person])
    sent = decode(reader.open(raw.value, raw.headers, person), raw.headers).data
    assert isinstance(sent, InviteSent) and sent.video_url == "[erased]"
