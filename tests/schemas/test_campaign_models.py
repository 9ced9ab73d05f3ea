"""The typed campaign models: CampaignCreated v2 carries Workflow, Delivery and VideoSettings, and a v1 record
(free-form JSON) decodes as v2 through the one upcaster that knows v1's shapes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from leadstream_schemas import (
    CampaignCreated,
    CampaignCreatedV1,
    Delivery,
    Envelope,
    Workflow,
    decode,
    encode,
)
from leadstream_schemas.events.campaign_upcast import delivery_v1, video_v1, workflow_v1
from pydantic import ValidationError

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def _decode_v1(**fields: Any) -> CampaignCreated:
    old = CampaignCreatedV1(
        campaign_id=uuid.uuid4(),
        name="c",
        audience={"type": "source_group", "ref": str(uuid.uuid4())},
        **fields,
    )
    _, value, headers = encode(Envelope.new(old, workspace_id="ws", source="leadstream/outreach", time=T0))
    data = decode(value, headers).data
    assert isinstance(data, CampaignCreated)
    return data


def test_a_v1_record_of_outreach_decodes_as_typed_v2() -> None:
    """What outreach wrote in v1 (its Graph.to_dict and delivery dict) reads back with nothing to guess."""
    data = _decode_v1(
        workflow={
            "preset": "standard_connect",
            "start": "invite",
            "steps": [
                {"id": "invite", "action": "invite", "needs_text": True, "channel": "invite", "note": True},
                {"id": "message", "action": "message", "needs_text": True, "channel": "message"},
                {"id": "email", "action": "email", "subject": "Hi", "body": "Hello {first_name}"},
            ],
            "edges": [
                {"from": "invite", "to": "message", "condition": "accepted", "delay_minutes": 1440},
                {"from": "invite", "to": "email", "condition": "not_accepted", "delay_minutes": 60},
            ],
            "warnings": [],
            "unreachable": [],
        },
        delivery={
            "pace": "recommended",
            "daily_cap": 20,
            "active_days": ["mon", "tue"],
            "start_hour": 8,
            "end_hour": 18,
            "timezone": "Europe/Paris",
            "email_fallback": {"sender_email": "me@acme.example", "subject": "Hi", "body": "B"},
            "dry_run": True,
        },
        video_template={"template_id": "intro", "segments": [{"name": "first", "field": "first_name"}]},
        video_template_id="intro",
    )
    wf = data.workflow
    assert wf is not None and wf.preset == "standard_connect" and wf.start == "invite" and wf.version == 1
    assert [(s.id, s.action, s.needs_text, s.channel) for s in wf.steps] == [
        ("invite", "invite", True, "invite"),
        ("message", "message", True, "message"),
        ("email", "email", True, "email"),
    ]
    assert wf.steps[2].subject == "Hi" and wf.steps[0].accept_timeout_hours == 168
    assert [(e.source, e.target, e.condition, e.delay_minutes) for e in wf.edges] == [
        ("invite", "message", "accepted", 1440),
        ("invite", "email", "not_accepted", 60),
    ]
    assert data.delivery.timezone == "Europe/Paris" and data.delivery.start_hour == 8 and data.delivery.dry_run
    assert data.delivery.email_fallback is not None and data.delivery.email_fallback.sender_email == "me@acme.example"
    assert data.video is not None and data.video.template_id == "intro"
    assert [(s.name, s.field) for s in data.video.segments] == [("first", "first_name")]


def test_the_v1_guesses_live_in_the_upcaster_only() -> None:
    """nodes/type/config/if/wait_hours, email instead of email_fallback, name instead of preset: read once, here."""
    wf = workflow_v1(
        {
            "name": "legacy",
            "nodes": [
                {"id": "a", "type": "invite", "config": {"with_note": False}},
                {"id": "b", "type": "like"},
                {"id": "c", "type": "message", "if": "accepted", "wait_hours": 2},
                {"id": "d", "type": "teleport"},
            ],
        }
    )
    assert wf is not None
    model = Workflow.model_validate(wf)
    assert model.preset == "legacy"
    assert [(s.id, s.action, s.needs_text) for s in model.steps] == [
        ("a", "invite", False),
        ("b", "like", False),
        ("c", "message", True),
    ]
    assert [(e.source, e.target, e.condition, e.delay_minutes) for e in model.edges] == [
        ("a", "b", "always", 0),
        ("a", "c", "accepted", 120),
    ]
    assert [s.id for s in model.text_steps()] == ["c"]
    assert workflow_v1({"preset": "standard_connect"}) is None  # no step list: no sequence to read
    delivery = Delivery.model_validate(
        delivery_v1({"email": {"sender_email": "x@y.example"}, "start_time": "08:30", "daily_invites": 15})
    )
    assert delivery.email_fallback is not None and delivery.start_hour == 8 and delivery.daily_cap == 15
    assert video_v1(None, None) is None
    assert video_v1(None, "vt")["template_id"] == "vt"  # type: ignore[index]


def test_a_v1_record_without_steps_has_no_workflow() -> None:
    data = _decode_v1(workflow={"preset": "invite_message_email"})
    assert data.workflow is None and data.video is None


def test_the_typed_models_refuse_what_readers_could_not_act_on() -> None:
    with pytest.raises(ValidationError) as bad:
        Workflow.model_validate({"start": "s", "steps": [{"id": "s", "action": "teleport"}]})
    assert bad.value.errors()[0]["loc"] == ("steps", 0, "action")
    with pytest.raises(ValidationError):
        Workflow.model_validate({"start": "s", "steps": [{"id": "s", "action": "like"}] * 51})


def test_the_v2_golden_payload_is_what_outreach_builds() -> None:
    """The golden v2 record decodes to models whose helpers answer without a dict in sight."""
    from tests.schemas.test_golden import record

    value, headers = record("leadstream.campaign.created.v2")
    data = decode(value, headers).data
    assert isinstance(data, CampaignCreated) and data.workflow is not None
    assert [s.id for s in data.workflow.text_steps()] == ["invite", "message", "follow_up", "email"]
    message = data.workflow.step("message")
    assert message is not None and [v.id for v in message.variants] == ["a", "b"]
    assert json.loads(value)["workflow"]["edges"][0]["source"] == "invite"
