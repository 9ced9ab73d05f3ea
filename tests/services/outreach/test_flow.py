"""A campaign end to end on the real broker and database, driven by a fake clock."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from leadstream_schemas import Hook, MessageApproved, MessageGenerated
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from services.outreach.adapters import InvitationLimitReached, SendRequest, SendResult
from services.outreach.adapters.simulated import LinkedInBehaviour, SimulatedLinkedIn
from services.outreach.store import texts
from services.runtime.clock import FakeClock
from services.runtime.providers import ProviderError, RateLimited, SimulationProfile
from tests.services.outreach.support import MakeSettings, StartService, approvals, lead_events, of_type, start_outreach
from tests.support.kafka import wait_for

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


async def test_standard_connect_runs_to_completion(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        sim_accept_rate=1.0,
        sim_reply_rate=0.0,
        sim_out_of_office_rate=0.0,
    )
    account = await o.account()
    group = uuid.uuid4()
    campaign = await o.api(
        "POST",
        "/v1/campaigns",
        201,
        json={
            "name": "Flow",
            "audience": {"type": "source_group", "ref": str(group)},
            "workflow": "Standard connect",
            "delivery": {"active_days": "every_day", "start_hour": 0, "end_hour": 24},
            "account_ids": [account],
        },
    )
    cid = campaign["campaign_id"]
    assert campaign["state"] == "pending"
    launched = await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    assert launched["state"] == "running"
    lead_ids, events = lead_events(group, 3)
    await o.produce(events)
    await o.wait_enrolled(cid, 3)
    await o.produce(
        approvals(cid, lead_ids, "invite", "invite")
        + approvals(cid, lead_ids, "message", "message")
        + approvals(cid, lead_ids, "follow_up", "message")
    )

    async def texts_stored() -> bool:
        async with o.service.engine.connect() as conn:
            stored = await conn.scalar(
                select(func.count()).select_from(texts).where(texts.c.workspace_id == o.workspace)
            )
            return (stored or 0) >= 9

    await wait_for(texts_stored, timeout_s=60, what="approved texts")
    await o.drive(MONDAY + timedelta(days=3))
    got = await o.events()
    assert len(of_type(got, "LeadEnrolled")) == 3
    assert {e.data.lead_id for e in of_type(got, "InviteSent")} == set(lead_ids)
    assert len(of_type(got, "InviteAccepted")) == 3
    assert len(of_type(got, "MessageSent")) == 6
    assert {e.data.lead_id for e in of_type(got, "LeadCompleted")} == set(lead_ids)
    names = [type(e.data).__name__ for e in got]
    assert [n for n in names if n.startswith("Campaign") and n != "CampaignAudienceRunRequested"] == [
        "CampaignCreated",
        "CampaignLaunched",
        "CampaignFinished",
    ]
    details = await o.api("GET", f"/v1/campaigns/{cid}", 200)
    assert details["state"] == "finished"
    assert details["sent"] == {"invite": 3, "message": 6}


class _Faulty(SimulatedLinkedIn):
    """The simulated provider, except that named leads hit a bug, a permanent provider error, or a rate
    limit that never lifts (30 minutes to wait each time)."""

    def __init__(self, crash: set[uuid.UUID], refuse: set[uuid.UUID], limited: set[uuid.UUID]) -> None:
        super().__init__(
            SimulationProfile(transient_error_rate=0.0, latency_ms=(0, 0)), LinkedInBehaviour(connected_rate=0.0)
        )
        self.crash, self.refuse, self.limited = crash, refuse, limited
        self.limited_calls: list[datetime] = []
        self.clock: FakeClock | None = None
        """When set, a rate limit's answer takes 7 seconds of campaign time to come (it is settled after the call)."""

    async def send_invite(self, req: SendRequest, now: datetime) -> SendResult:
        if uuid.UUID(req.lead.lead_id) in self.crash:
            raise RuntimeError("provider client bug")
        if uuid.UUID(req.lead.lead_id) in self.refuse:
            raise ProviderError("profile is private", transient=False, status=403)
        if uuid.UUID(req.lead.lead_id) in self.limited:
            self.limited_calls.append(now)
            if self.clock is not None:
                self.clock.set(self.clock.now() + timedelta(seconds=7))
            raise RateLimited(retry_after_s=1800)
        return await super().send_invite(req, now)


async def test_failing_steps_end_the_lead_not_the_campaign(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    group = uuid.uuid4()
    crash, refuse, fine, limited = (uuid.uuid5(group, f"lead-x{i}") for i in range(4))
    provider = _Faulty({crash}, {refuse}, {limited})
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        timer_max_attempts=2,
        rate_limited_give_up_h=3,
        linkedin=provider,
    )
    provider.clock = o.clock
    account = await o.account()
    cid = (
        await o.api(
            "POST",
            "/v1/campaigns",
            201,
            json={
                "name": "Faults",
                "audience": {"type": "source_group", "ref": str(group)},
                "workflow": {"steps": [{"id": "invite", "action": "invite", "note": False}]},
                "delivery": {
                    "active_days": "every_day",
                    "start_hour": 0,
                    "end_hour": 24,
                    "pace": "manual",
                    "daily_limit": 75,
                },
                "account_ids": [account],
            },
        )
    )["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    leads, events = lead_events(group, 4, tag="x")
    assert leads == [crash, refuse, fine, limited]
    await o.produce(events)
    await o.wait_enrolled(cid, 4)
    await o.drive(MONDAY + timedelta(hours=6))
    got = await o.events()
    failed = {e.data.lead_id: e.data for e in of_type(got, "ActionFailed")}
    assert failed[crash].reason == "internal_error" and "provider client bug" in (failed[crash].detail or "")
    assert failed[refuse].reason == "provider_error" and not failed[refuse].retryable
    assert [e.data.lead_id for e in of_type(got, "InviteSent")] == [fine]
    # Rate-limited: retried no sooner than told (30 minutes; exactly 30 when nothing else of the account is due,
    # in the next test: here a retry may also wait for the account's next pacing slot, taken by the other leads'
    # sends), without using up attempts, and given up at the first call 3 hours after the first refusal.
    calls = provider.limited_calls
    assert all(b - a >= timedelta(minutes=30) for a, b in pairwise(calls))
    assert calls[-2] - calls[0] < timedelta(hours=3) <= calls[-1] - calls[0]
    assert failed[limited].reason == "rate_limited" and not failed[limited].retryable
    assert f"rate-limited since {calls[0].isoformat()}" in (failed[limited].detail or "")
    page = await o.api("GET", f"/v1/campaigns/{cid}/leads", 200, params={"limit": 200})
    leads_view = {x["lead_id"]: x["state"] for x in page["items"]}
    assert leads_view == {str(crash): "failed", str(refuse): "failed", str(fine): "completed", str(limited): "failed"}
    assert (await o.api("GET", f"/v1/campaigns/{cid}", 200))["state"] == "finished"
    # leadstream_sends_total of this account: the invite sent, and the three steps that gave up (a bug's too).
    sends = {
        outcome: REGISTRY.get_sample_value(
            "leadstream_sends_total", {"account": account, "action": "invite", "outcome": outcome}
        )
        for outcome in ("sent", "failed")
    }
    assert sends == {"sent": 1, "failed": 3}


class _LimitedThenPaused(SimulatedLinkedIn):
    """Rate-limits every invite to ``lead`` (30 minutes to wait), except that the second answer is the weekly
    invitation limit, which pauses the account until its next day's window. Other leads' invites are the
    simulation's: the service may also run steps of leads the session's earlier tests left on the topics, which
    must neither take the second answer nor move the clock."""

    def __init__(self, lead: uuid.UUID) -> None:
        super().__init__(
            SimulationProfile(transient_error_rate=0.0, latency_ms=(0, 0)), LinkedInBehaviour(connected_rate=0.0)
        )
        self.lead = str(lead)
        self.invite_calls: list[datetime] = []
        self.clock: FakeClock | None = None
        """When set, each answer takes 7 seconds of campaign time to come (it is settled after the call)."""

    async def send_invite(self, req: SendRequest, now: datetime) -> SendResult:
        if req.lead.lead_id != self.lead:
            return await super().send_invite(req, now)
        self.invite_calls.append(now)
        if self.clock is not None:
            self.clock.set(self.clock.now() + timedelta(seconds=7))
        if len(self.invite_calls) == 2:
            raise InvitationLimitReached("weekly invitation limit reached")
        raise RateLimited(retry_after_s=1800)


async def test_a_spell_of_rate_limits_is_counted_from_its_own_start(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    """A rate limit, then an account pause of most of a day, then rate limits again: the give-up time
    counts from the first refusal after the pause, not from the one before it. The only lead of its account,
    so nothing else's pacing slot delays a retry: each comes exactly as told, counted from the call (its answer
    was settled 7 s later), without using up attempts."""
    group = uuid.uuid4()
    provider = _LimitedThenPaused(uuid.uuid5(group, "lead-rl0"))  # the one lead of lead_events(group, 1, tag="rl")
    o = await start_outreach(
        make_settings, start_service, topic_prefix, start=MONDAY, rate_limited_give_up_h=3, linkedin=provider
    )
    provider.clock = o.clock
    account = await o.account()
    cid = (
        await o.api(
            "POST",
            "/v1/campaigns",
            201,
            json={
                "name": "Limits",
                "audience": {"type": "source_group", "ref": str(group)},
                "workflow": {"steps": [{"id": "invite", "action": "invite", "note": False}]},
                "delivery": {
                    "active_days": "every_day",
                    "start_hour": 0,
                    "end_hour": 24,
                    "pace": "manual",
                    "daily_limit": 75,
                },
                "account_ids": [account],
            },
        )
    )["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    (lead,), events = lead_events(group, 1, tag="rl")
    assert str(lead) == provider.lead
    await o.produce(events)
    await o.wait_enrolled(cid, 1)
    await o.drive(MONDAY + timedelta(hours=36))
    calls = provider.invite_calls
    assert calls[2] - calls[1] > timedelta(hours=3)  # the account pause
    after_pause = calls[2:]
    assert len(after_pause) == 7 and all(b - a == timedelta(minutes=30) for a, b in pairwise(after_pause))
    (failed,) = [e.data for e in of_type(await o.events(), "ActionFailed")]
    assert failed.lead_id == lead and failed.reason == "rate_limited"
    assert f"rate-limited since {after_pause[0].isoformat()}" in (failed.detail or "")


async def test_comment_drafts_wait_for_approval(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    account = await o.account()
    group = uuid.uuid4()
    cid = (
        await o.api(
            "POST",
            "/v1/campaigns",
            201,
            json={
                "name": "Drafts",
                "audience": {"type": "source_group", "ref": str(group)},
                "workflow": {"steps": [{"id": "comment", "action": "comment", "mode": "draft"}]},
                "delivery": {"active_days": "every_day", "start_hour": 0, "end_hour": 24},
                "account_ids": [account],
            },
        )
    )["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    (lead,), events = lead_events(group, 1, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 1)
    hook = Hook(kind="recent_post", detail="post", reason="recent")
    draft = MessageGenerated(
        lead_id=lead,
        campaign_id=uuid.UUID(cid),
        draft_id=uuid.uuid4(),
        channel="comment",
        step_id="comment",
        text="Nice post!",
        hook=hook,
        needs_review=True,
    )
    await o.produce([draft])

    async def stored(status: str) -> bool:
        async with o.service.engine.connect() as conn:
            return (await conn.scalar(select(texts.c.status).where(texts.c.lead_id == lead))) == status

    await wait_for(lambda: stored("generated"), timeout_s=60, what="draft stored")
    await o.drive(MONDAY + timedelta(hours=1))
    got = await o.events()
    assert [(e.data.text, e.data.post_url.endswith("/post/1")) for e in of_type(got, "CommentDrafted")] == [
        ("Nice post!", True)
    ]
    assert not of_type(got, "CommentPosted")
    await o.produce(
        [
            MessageApproved(
                lead_id=lead,
                campaign_id=uuid.UUID(cid),
                draft_id=draft.draft_id,
                channel="comment",
                step_id="comment",
                text="Nice post, Lead!",
            )
        ]
    )
    await wait_for(lambda: stored("approved"), timeout_s=60, what="approval stored")
    await o.drive(MONDAY + timedelta(hours=2))
    got = await o.events()
    assert [e.data.text for e in of_type(got, "CommentPosted")] == ["Nice post, Lead!"]
    assert len(of_type(got, "CommentDrafted")) == 1


async def test_two_replicas_share_the_timers(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    same: dict[str, Any] = {"sim_accept_rate": 1.0, "sim_reply_rate": 0.0, "sim_out_of_office_rate": 0.0}
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, **same)
    replica = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, clock=o.clock, **same)
    accounts = [await o.account(f"a{i}") for i in range(3)]
    group = uuid.uuid4()
    cid = (
        await o.api(
            "POST",
            "/v1/campaigns",
            201,
            json={
                "name": "Replicas",
                "audience": {"type": "source_group", "ref": str(group)},
                "workflow": "direct_connect",
                "delivery": {
                    "active_days": "every_day",
                    "start_hour": 0,
                    "end_hour": 24,
                    "pace": "manual",
                    "daily_limit": 75,
                },
                "account_ids": accounts,
            },
        )
    )["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    leads, events = lead_events(group, 12, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 12)
    await o.produce(approvals(cid, leads, "invite", "invite") + approvals(cid, leads, "message", "message"))

    async def texts_stored() -> bool:
        async with o.service.engine.connect() as conn:
            return (
                int(
                    await conn.scalar(
                        select(func.count()).select_from(texts).where(texts.c.campaign_id == uuid.UUID(cid))
                    )
                    or 0
                )
                == 24
            )

    await wait_for(texts_stored, timeout_s=60, what="approved texts")
    end = MONDAY + timedelta(days=2)
    ran: list[int] = []
    while o.clock.now() < end:
        counts = await asyncio.gather(o.run(), replica.run(), o.run(), replica.run())
        ran.extend(counts)
        nxt = await o.ctx.runner.next_due_at()
        o.clock.set(min(max(nxt, o.clock.now() + timedelta(seconds=1)), end) if nxt else end)
    got = await o.events()
    per_step = Counter(
        (e.data.lead_id, e.data.step_id)
        for e in got
        if type(e.data).__name__ in {"InviteSent", "MessageSent", "ActionSkipped"}
    )
    assert per_step == Counter({(lead, step): 1 for lead in leads for step in ("invite", "message")})
    assert sum(ran) > 0
