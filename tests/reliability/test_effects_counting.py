"""The effect counter the fault tests rely on finds what it is meant to find: a fact applied twice (two ids),
a lead that never reached a stage, and it counts a re-published record (same id) as a copy on the wire only.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from typing import Any

from aiokafka import ConsumerRecord
from leadstream_schemas import (
    Envelope,
    InviteSent,
    LeadCompleted,
    LeadDiscovered,
    LeadEmailNotFound,
    LeadEnrichmentFailed,
    LeadEnrolled,
    LeadProfileEnriched,
    LeadSource,
    VideoFailed,
    encode,
)

from tests.support.campaign import CampaignRun
from tests.support.effects import Observed, compare, count_topic, lead_facts

_offsets = itertools.count()
WS = "ws-count"
CAMPAIGN = uuid.uuid4()
ACCOUNT = uuid.uuid4()


def _record(env: Envelope[Any]) -> ConsumerRecord[Any, Any]:
    key, value, headers = encode(env)
    return ConsumerRecord("leadstream.lead.v1", 0, next(_offsets), 0, 0, key, value, None, 0, 0, headers)


def _lead_story(lead: uuid.UUID) -> list[Envelope[Any]]:
    """Every stage of a lead, each once (the video stage as a failure, the profile as an enrichment failure)."""
    found = Envelope.new(
        LeadDiscovered(lead_id=lead, source=LeadSource.manual, full_name="Ada", company="Acme"),
        workspace_id=WS,
        source="test",
    )
    facts = [
        LeadEnrichmentFailed(lead_id=lead, stage="profile", reason="not_found"),
        LeadEmailNotFound(lead_id=lead, reason="not_found"),
        LeadEnrolled(lead_id=lead, campaign_id=CAMPAIGN, account_id=ACCOUNT),
        VideoFailed(lead_id=lead, campaign_id=CAMPAIGN, video_job_id=uuid.uuid4(), reason="timeout"),
        InviteSent(lead_id=lead, campaign_id=CAMPAIGN, account_id=ACCOUNT, step_id="invite", with_note=False),
        LeadCompleted(lead_id=lead, campaign_id=CAMPAIGN, steps_done=1),
    ]
    return [found, *(found.caused(f, source="test") for f in facts)]


def _run(leads: int) -> CampaignRun:
    return CampaignRun(WS, "token", str(CAMPAIGN), str(uuid.uuid4()), leads)


def test_a_clean_story_counts_nothing_lost_or_duplicated_and_copies_apart() -> None:
    story = _lead_story(uuid.uuid4())
    records = [_record(e) for e in story] + [_record(story[5])]  # the invite re-published by the relay
    effects = count_topic(records, _run(1))
    assert (effects.lost, effects.duplicated) == ([], [])
    assert (effects.events, effects.sends, effects.wire_copies) == (len(story), 1, 1)


def test_a_fact_with_a_second_id_is_a_duplicated_effect() -> None:
    lead = uuid.uuid4()
    story = _lead_story(lead)
    again = Envelope.new(
        InviteSent(lead_id=lead, campaign_id=CAMPAIGN, account_id=ACCOUNT, step_id="invite", with_note=False),
        workspace_id=WS,
        source="test",
    )
    effects = count_topic([_record(e) for e in [*story, again]], _run(1))
    assert len(effects.duplicated) == 1 and InviteSent.event_type in effects.duplicated[0]
    assert effects.lost == []


def test_a_lead_missing_a_stage_and_a_lead_never_found_are_lost() -> None:
    story = [e for e in _lead_story(uuid.uuid4()) if not isinstance(e.data, LeadProfileEnriched | LeadEnrichmentFailed)]
    effects = count_topic([_record(e) for e in story], _run(2))
    assert sorted(p.split(" ")[-1] for p in effects.lost if "never reached" in p) == ["profile"]
    assert "2 leads searched for, 1 found" in effects.lost


def test_a_view_or_a_provider_showing_more_than_the_topic_is_duplicated_and_less_is_lost() -> None:
    lead = uuid.uuid4()
    records = [_record(e) for e in _lead_story(lead)]
    facts = lead_facts(records, WS)[0]
    ids = [f.event_id for f in facts]
    summary = dict.fromkeys(
        ["invites_sent", "messages_sent", "emails_sent", "videos_generated", "failed_actions", "skipped_actions"], 0
    )
    summary.update(invites_sent=1, replied=0, completed=1)
    run = _run(1)

    clean = count_topic(records, run)
    compare(clean, facts, run, Observed(Counter({(str(lead), "invite"): 1}), 0, {str(lead): ids}, summary))
    assert (clean.lost, clean.duplicated) == ([], [])

    twice = count_topic(records, run)
    seen = Observed(Counter({(str(lead), "invite"): 2}), 0, {str(lead): [*ids, ids[0], str(uuid.uuid4())]}, summary)
    compare(twice, facts, run, seen)
    assert len(twice.duplicated) == 3, twice.duplicated  # the provider's second invite, a repeat, an unknown id

    short = count_topic(records, run)
    compare(short, facts, run, Observed(Counter(), 0, {str(lead): ids[1:]}, {**summary, "invites_sent": 0}))
    assert len(short.lost) == 3, short.lost  # the invite at the provider, the timeline, the summary
