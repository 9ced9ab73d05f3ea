"""Messaging on the real broker and database: enrolled leads get drafts within limits that name their hook."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from leadstream_schemas import Channel, Edge, LeadEnrichmentFailed, LeadPostMatched, Post, Step, Workflow

from services.messaging.app import build
from services.messaging.settings import MessagingSettings
from services.runtime.clock import FakeClock
from tests.services.messaging.helpers import (
    LEAD_TOPIC,
    campaign_created,
    enrolled,
    env,
    events,
    profile,
    quiet_settings,
)
from tests.support.kafka import produce_events, read_until

LIMITS = {"invite": 200, "message": 500, "email": 2000, "comment": 300}


async def test_enrolled_leads_get_drafts_within_limits_naming_their_hook(
    make_settings: Any, start_service: Any, own_topic_prefix: str
) -> None:
    topic_prefix = own_topic_prefix
    s = quiet_settings(make_settings, topic_prefix)
    await start_service(build(s, clock=FakeClock()))
    auto_video = uuid.uuid4()  # review off, personalised video: invite notes <= 130, auto-approved
    reviewed = uuid.uuid4()  # review on: drafts wait in the Lab
    late_campaign = uuid.uuid4()  # its CampaignCreated arrives after the enrolment
    hooks = {"post": uuid.uuid4(), "career": uuid.uuid4(), "milestone": uuid.uuid4(), "none": uuid.uuid4()}
    profile_after = uuid.uuid4()  # enrolled before its profile arrives
    failed = uuid.uuid4()  # profile enrichment failed: generic drafts
    reviewed_lead = uuid.uuid4()
    late_lead = uuid.uuid4()

    first = [env(campaign_created(auto_video, review=False, video=True)), env(campaign_created(reviewed, review=True))]
    first += [env(profile(lead, hook=h)) for h, lead in hooks.items()]
    first += [env(enrolled(lead, auto_video)) for lead in hooks.values()]
    first += [
        env(enrolled(profile_after, auto_video)),
        env(profile(reviewed_lead)),
        env(enrolled(reviewed_lead, reviewed)),
    ]
    first += [
        env(enrolled(failed, auto_video)),
        env(LeadEnrichmentFailed(lead_id=failed, stage="profile", reason="provider_error")),
    ]
    first += [env(profile(late_lead)), env(enrolled(late_lead, late_campaign))]
    await produce_events(s.kafka_bootstrap_servers, topic_prefix, first)
    await produce_events(
        s.kafka_bootstrap_servers,
        topic_prefix,
        [env(profile(profile_after, hook="career")), env(campaign_created(late_campaign, review=False))],
    )

    auto_leads = {*hooks.values(), profile_after, failed, late_lead}
    all_leads = auto_leads | {reviewed_lead}

    def done(records: list[Any]) -> bool:
        generated = events(records, all_leads, "message_generated.v1")
        approved = events(records, auto_leads, "message_approved.v1")
        return len(generated) >= 2 * len(all_leads) and len(approved) >= 2 * len(auto_leads)

    records = await read_until(s.kafka_bootstrap_servers, [topic_prefix + LEAD_TOPIC], done, timeout_s=90)
    generated = events(records, all_leads, "message_generated.v1")
    approved = {e.data.draft_id: e for e in events(records, all_leads, "message_approved.v1")}

    by_lead: dict[uuid.UUID, dict[str, Any]] = {}
    for e in generated:
        g = e.data
        by_lead.setdefault(g.lead_id, {})[g.step_id] = g
        limit = 130 if (g.channel.value == "invite" and g.campaign_id == auto_video) else LIMITS[g.channel.value]
        assert g.char_limit == limit
        assert 0 < len(g.text) <= limit, (g.channel, len(g.text), g.text)
        assert g.hook.detail and g.hook.reason
        assert "{" not in g.text
        assert e.workspace_id == "ws-msg"
    assert all(set(steps) == {"invite", "message"} for steps in by_lead.values()), by_lead
    assert len(generated) == 2 * len(all_leads)  # exactly once per lead and step, whatever the arrival order

    assert by_lead[hooks["post"]]["message"].hook.kind == "recent_post"
    assert "outbound pipeline" in by_lead[hooks["post"]]["message"].text
    assert by_lead[hooks["career"]]["invite"].hook.kind == "career_move"
    assert by_lead[profile_after]["invite"].hook.kind == "career_move"
    assert by_lead[hooks["milestone"]]["message"].hook.kind == "company_milestone"
    none_hook = by_lead[hooks["none"]]["message"].hook
    assert none_hook.kind == "role_company" and none_hook.fallback and "no genuine hook" in none_hook.reason
    assert by_lead[failed]["message"].hook.fallback and "Hi there" in by_lead[failed]["message"].text

    for lead in auto_leads:
        for g in by_lead[lead].values():
            a = approved[g.draft_id].data
            assert a.auto is True and a.text == g.text and a.step_id == g.step_id and a.channel == g.channel
            assert not g.needs_review
    for g in by_lead[reviewed_lead].values():
        assert g.needs_review and g.draft_id not in approved
        assert g.char_limit == LIMITS[g.channel.value]


async def test_transient_generator_failures_are_retried_without_duplicate_drafts(
    make_settings: Any, start_service: Any, own_topic_prefix: str
) -> None:
    topic_prefix = own_topic_prefix
    s = make_settings(
        "messaging",
        MessagingSettings,
        topic_prefix=topic_prefix,
        sim_error_rate=0.3,
        sim_latency_ms_min=1,
        sim_latency_ms_max=3,
        consumer_max_attempts=15,
    )
    await start_service(build(s, clock=FakeClock()))
    camp = uuid.uuid4()
    leads = {uuid.uuid4() for _ in range(4)}
    batch = [env(campaign_created(camp, review=False))]
    for lead in leads:
        batch += [env(profile(lead)), env(enrolled(lead, camp))]
    await produce_events(s.kafka_bootstrap_servers, topic_prefix, batch)
    records = await read_until(
        s.kafka_bootstrap_servers,
        [topic_prefix + LEAD_TOPIC],
        lambda recs: len(events(recs, leads, "message_approved.v1")) >= 2 * len(leads),
    )
    generated = events(records, leads, "message_generated.v1")
    assert sorted((e.data.lead_id, e.data.step_id) for e in generated) == sorted(
        (lead, step) for lead in leads for step in ("invite", "message")
    )


async def test_a_lead_found_by_a_posts_watch_is_written_to_on_the_post_that_matched(
    make_settings: Any, start_service: Any, own_topic_prefix: str
) -> None:
    topic_prefix = own_topic_prefix
    s = quiet_settings(make_settings, topic_prefix)
    await start_service(build(s, clock=FakeClock()))
    campaign, watched, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    workflow = Workflow(
        start="comment",
        steps=[
            Step(id="comment", action="comment", needs_text=True, channel=Channel.comment, mode="auto"),
            Step(id="message", action="message", needs_text=True, channel=Channel.message),
        ],
        edges=[Edge(source="comment", target="message", delay_minutes=60)],
    )
    post = Post(
        text="Honestly struggling with outbound since our SDR left. Any sequencer you would recommend?",
        topic="struggling with outbound",
        posted_on=date(2026, 1, 4),
        url="https://www.linkedin.com/feed/update/urn:li:activity:7000000000000000001",
    )
    matched = LeadPostMatched(
        lead_id=watched,
        source_group_id=uuid.uuid4(),
        post=post,
        language="pain",
        matched=["struggling with outbound", "sequencer"],
    )
    # The watched lead's profile has another, older post: the matched one is the hook all the same.
    await produce_events(
        s.kafka_bootstrap_servers,
        topic_prefix,
        [
            env(campaign_created(campaign, review=False, workflow=workflow)),
            env(matched),
            env(profile(watched)),
            env(enrolled(watched, campaign)),
            env(profile(other)),
            env(enrolled(other, campaign)),
        ],
    )
    leads = {watched, other}

    def done(records: list[Any]) -> bool:
        return len(events(records, leads, "message_generated.v1")) >= 4

    records = await read_until(s.kafka_bootstrap_servers, [topic_prefix + LEAD_TOPIC], done, timeout_s=90)
    drafts = {(e.data.lead_id, e.data.step_id): e.data for e in events(records, leads, "message_generated.v1")}
    message = drafts[(watched, "message")]
    assert message.hook.kind == "recent_post" and "struggling with outbound" in message.hook.detail
    assert "pain language" in message.hook.reason and "'sequencer'" in message.hook.reason
    assert "struggling with outbound" in message.text
    comment = drafts[(watched, "comment")]
    assert (
        comment.hook.detail == "post on 'struggling with outbound' (1 day ago)"
    )  # the matched post, not the older one
    # A lead without a matched post keeps the profile's hook.
    assert "outbound pipeline" in drafts[(other, "message")].hook.detail
