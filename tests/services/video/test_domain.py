"""Video's pure logic: templates, variable mapping with fallbacks, deadlines and callback decisions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from leadstream_schemas import LeadProfileEnriched

from services.video import domain as d


def test_template_is_read_defensively() -> None:
    raw = {
        "template_id": "t1",
        "segments": [
            {"name": "n", "field": "first_name", "fallback": "friend"},
            "junk",
            {"field": "city"},
            {"name": "", "field": ""},
        ],
    }
    t = d.parse_template(raw)
    assert t is not None and t.template_id == "t1"
    assert t.segments == (d.Segment("n", "first_name", "friend"), d.Segment("city", "city", None))
    assert d.parse_template(None) is None
    only_id = d.parse_template(None, "tpl-2")
    assert only_id is not None and only_id.template_id == "tpl-2" and only_id.segments == ()


def test_variables_map_lead_fields_with_fallbacks() -> None:
    t = d.VideoTemplate(
        "t",
        (
            d.Segment("hi", "first_name", "there"),
            d.Segment("town", "city", "your city"),
            d.Segment("job", "headline", None),
            d.Segment("odd", "company", "your company"),
        ),
    )
    profile = LeadProfileEnriched(
        lead_id=uuid.uuid4(), full_name="Ada Adler", role="CTO", company_name="Acme", city="  "
    )
    variables, fallbacks = d.map_variables(t, d.lead_fields(profile))
    assert variables == {"hi": "Ada", "town": "your city", "job": "CTO at Acme", "odd": "your company"}
    assert fallbacks == ["town", "odd"]
    none_vars, none_fallbacks = d.map_variables(t, d.lead_fields(None))
    assert none_vars["hi"] == "there" and none_vars["job"] == "you" and len(none_fallbacks) == 4


def test_job_id_is_stable_per_lead_and_campaign() -> None:
    c, lead = uuid.uuid4(), uuid.uuid4()
    assert d.job_id(c, lead) == d.job_id(c, lead) != d.job_id(uuid.uuid4(), lead)


def test_deadline_and_due() -> None:
    t0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    dl = d.deadline(t0, 90)
    assert dl == t0 + timedelta(seconds=90)
    assert not d.is_due("rendering", dl, t0 + timedelta(seconds=89))
    assert d.is_due("rendering", dl, dl) and d.is_due("queued", dl, dl)
    assert not d.is_due("generated", dl, dl + timedelta(days=1))


def test_callbacks_are_parsed() -> None:
    ext = uuid.uuid4()
    ok = d.parse_callback(
        {
            "type": "video.completed",
            "data": {"video_id": "v1", "external_id": str(ext), "download_url": "https://x/v.mp4"},
        }
    )
    assert ok.kind == "completed" and ok.external_id == ext and ok.video_url == "https://x/v.mp4"
    failed = d.parse_callback({"type": "video.failed", "data": {"video_id": "v1", "error": {"message": "boom"}}})
    assert failed.kind == "failed" and failed.error == "boom" and failed.external_id is None
    bad_payloads: list[Any] = [
        [],
        {"type": "video.completed"},
        {"type": "video.completed", "data": {}},
        {"type": "video.completed", "data": {"video_id": "v"}},
        {"type": "x", "data": {"video_id": "v"}},
        {"type": "video.failed", "data": {"external_id": "not-a-uuid"}},
    ]
    for bad in bad_payloads:
        with pytest.raises(ValueError):
            d.parse_callback(bad)


def test_first_outcome_wins_and_late_callbacks_are_named() -> None:
    assert d.callback_decision("queued", None) == "accept"
    assert d.callback_decision("rendering", None) == "accept"
    assert d.callback_decision("failed", "timeout") == "late"
    assert d.callback_decision("generated", None) == "duplicate"
    assert d.callback_decision("failed", "provider_error") == "duplicate"
