"""The launch summary (templates/partials/launch_summary.html) reads a campaign's strategy, delivery and video as the
console's typed models, from an answer shaped by outreach's own response model. Rendered with StrictUndefined: a
field the template reads that the model does not have (renamed on one side) fails here instead of rendering blank."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from html import unescape
from typing import Any

import pytest
from jinja2 import StrictUndefined

from services.console import models
from services.console.web import page_templates
from services.outreach.models import CampaignDetailOut


def _answer(**parts: Any) -> models.CampaignDetail:
    """Outreach's ``GET /v1/campaigns/{id}`` answer (through its response model), read by the console."""
    sent = CampaignDetailOut.model_validate(
        {
            "campaign_id": uuid.uuid4(),
            "name": "Spring outreach",
            "state": "pending",
            "message": None,
            "pause_reason": None,
            "audience": {"type": "saved_search", "ref": str(uuid.uuid4())},
            "audience_type": "saved_search",
            "pace": None,
            "next_run_at": None,
            "account_ids": [],
            "created_at": datetime(2026, 12, 1, tzinfo=UTC),
            "workflow": {
                "preset": "standard_connect",
                "start": "invite",
                "steps": [{"id": "invite", "action": "invite", "needs_text": False}],
                "edges": [],
                "warnings": [],
                "unreachable": [],
            },
            "workflow_version": 1,
            "warnings": [],
            "skipped_accounts": {},
            "workers": [],
            "leads": {"enrolled": 0},
            "drafts": {"generated": 0, "approved": 0},
            "sent": {},
            "launched_at": None,
            **parts,
        }
    )
    return models.CampaignDetail.model_validate_json(sent.model_dump_json(by_alias=True))


def _summary(campaign: models.CampaignDetail) -> str:
    env = page_templates().env.overlay(undefined=StrictUndefined)
    html = env.get_template("partials/launch_summary.html").render(campaign=campaign, group=None, search=None)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def test_every_part_of_a_full_campaign_is_shown() -> None:
    campaign = _answer(
        strategy={"template": "hiring_manager", "review": True, "invite_note": False, "personalise": False},
        delivery={
            "pace": "manual",
            "pace_label": "Manual: 30 invites per day",
            "daily_cap": 30,
            "active_days": ["monday", "wednesday"],
            "start_hour": 8,
            "end_hour": 16,
            "timezone": "Europe/Paris",
            "email_fallback": {"sender_email": "sales@northwind.example", "subject": "Hi", "body": "Hello"},
            "dry_run": True,
        },
        video={
            "template_id": "vt-intro",
            "segments": [
                {"name": "greeting", "field": "first_name", "fallback": "friend"},
                {"name": "place", "field": "city"},
            ],
        },
    )
    text = _summary(campaign)
    assert "Hiring manager · invites without a note · the same wording for everyone · every draft reviewed" in text
    assert "Manual: 30 invites per day · monday, wednesday, 08:00-16:00 Europe/Paris" in text
    assert "Email fallback from sales@northwind.example (dry run)" in text
    assert "Video vt-intro · greeting ← first name (or “friend”), place ← city" in text


@pytest.mark.parametrize("template", [None, "a3f1c2d4-custom"])
def test_defaults_own_template_no_fallback_no_video(template: str | None) -> None:
    campaign = _answer(
        strategy={"template": template},
        delivery={"pace_label": "Recommended: 20 invites per day", "active_days": ["monday"]},
        video=None,
    )
    text = _summary(campaign)
    words = "Professional introduction" if template is None else "Your own template"
    assert f"{words} · invites with a note · light personalisation · sent as written" in text
    assert "Recommended: 20 invites per day · monday, 09:00-17:00 UTC" in text
    assert "Email fallback off" in text and "Video none" in text
