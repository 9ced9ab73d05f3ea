"""Messaging follows the campaign's sequence versions and A/B variants: a lead moved to a new version gets the
drafts of the steps it lacks (also when its LeadEnrolled comes before the CampaignUpdated, on another topic),
and each lead's draft of a step with variants is written with its variant's template and names it."""

from __future__ import annotations

import uuid
from typing import Any

from leadstream_schemas import CampaignUpdated, LeadEnrolled

from services.messaging.app import build
from services.outreach.domain.workflow import resolve_workflow
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

V2 = {
    "steps": [
        {"id": "invite", "action": "invite"},
        {"id": "message", "action": "message"},
        {
            "id": "follow_up",
            "action": "message",
            "variants": [{"id": "a", "template": "hiring_manager"}, {"id": "b", "template": "business_opportunity"}],
        },
    ],
    "edges": [
        {"from": "invite", "to": "message", "condition": "accepted", "wait_hours": 1},
        {"from": "message", "to": "follow_up", "delay_minutes": 60},
    ],
}


def _drafts(records: list[Any], lead: uuid.UUID) -> dict[str, Any]:
    return {e.data.step_id: e.data for e in events(records, {lead}, "message_generated.v1")}


async def test_moved_leads_get_the_new_versions_drafts_with_their_variant(
    make_settings: Any, start_service: Any, own_topic_prefix: str
) -> None:
    topic_prefix = own_topic_prefix
    s = quiet_settings(make_settings, topic_prefix)
    await start_service(build(s, clock=FakeClock()))
    campaign, moved, early, fresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    graph = resolve_workflow(V2, default_note=True, email_fallback=False)
    v2 = graph.to_model().model_copy(update={"version": 2})

    def again(lead: uuid.UUID) -> LeadEnrolled:  # what outreach emits for a lead that moved to version 2
        return LeadEnrolled(
            lead_id=lead,
            campaign_id=campaign,
            account_id=uuid.uuid4(),
            workflow_version=2,
            variants=graph.variants_for(str(lead)),
        )

    first = [env(campaign_created(campaign, review=False))]
    first += [env(profile(lead)) for lead in (moved, early, fresh)]
    first += [env(enrolled(moved, campaign)), env(again(early))]  # early's v2 enrolment before the update
    await produce_events(s.kafka_bootstrap_servers, topic_prefix, first)

    def v1_written(records: list[Any]) -> bool:
        return set(_drafts(records, moved)) == {"invite", "message"}

    records = await read_until(s.kafka_bootstrap_servers, [topic_prefix + LEAD_TOPIC], v1_written)
    assert _drafts(records, early) == {}  # waiting for the CampaignUpdated of its version

    update = CampaignUpdated(campaign_id=campaign, workflow=v2, moved_leads=2)
    second = [env(again(moved)), env(update), env(LeadEnrolled(**{**again(fresh).model_dump(), "prepared": True}))]
    await produce_events(s.kafka_bootstrap_servers, topic_prefix, second)

    def all_written(records: list[Any]) -> bool:
        return all("follow_up" in _drafts(records, lead) for lead in (moved, early, fresh))

    records = await read_until(s.kafka_bootstrap_servers, [topic_prefix + LEAD_TOPIC], all_written)
    moved_drafts = events(records, {moved}, "message_generated.v1")
    assert sorted(d.data.step_id for d in moved_drafts) == ["follow_up", "invite", "message"]  # none twice
    assert set(_drafts(records, early)) == set(_drafts(records, fresh)) == {"invite", "message", "follow_up"}
    templates = {"a": "hiring_manager", "b": "business_opportunity"}
    for lead in (moved, early, fresh):
        draft = _drafts(records, lead)["follow_up"]
        chosen = graph.variants_for(str(lead))["follow_up"]
        assert draft.variant == chosen and draft.template == templates[chosen]
        assert _drafts(records, lead)["message"].variant is None  # a step without variants
