"""Builders of the events messaging consumes, and readers of what it emits (for the messaging tests)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from leadstream_schemas import (
    Audience,
    CampaignCreated,
    Delivery,
    EmailFallback,
    Envelope,
    Event,
    LeadEnrolled,
    LeadProfileEnriched,
    Strategy,
    VideoSegment,
    VideoSettings,
    Workflow,
)

from services.messaging.settings import MessagingSettings
from services.outreach.domain.workflow import resolve_workflow
from tests.support.personal import decode_opened

WS = "ws-msg"
LEAD_TOPIC = "leadstream.lead.v1"


def quiet_settings(make_settings: Any, topic_prefix: str) -> MessagingSettings:
    """Messaging with a generator that never fails and answers in 1-5 ms, on ``topic_prefix``: a test's own topics
    (``own_topic_prefix``), since on the session's it first drafted for every lead the session's other tests had
    enrolled (a full run under load: the test's own drafts not there after 90 s)."""
    return make_settings(
        "messaging",
        MessagingSettings,
        topic_prefix=topic_prefix,
        sim_error_rate=0.0,
        sim_latency_ms_min=1,
        sim_latency_ms_max=5,
    )


def env(data: Event, workspace: str = WS) -> Envelope[Any]:
    """A root envelope as another service would produce it."""
    return Envelope.new(data, workspace_id=workspace, source="test")


def campaign_created(
    campaign_id: uuid.UUID,
    *,
    review: bool,
    workflow: Workflow | None = None,
    video: bool = False,
    email_fallback: bool = False,
    invite_note: bool = True,
) -> CampaignCreated:
    """A campaign with a strategy profile, a workflow (outreach's direct connect: invite, message, with an email
    fallback step when asked) and optionally a video."""
    if workflow is None:
        workflow = resolve_workflow(
            "direct_connect", default_note=invite_note, email_fallback=email_fallback
        ).to_model()
    fallback = EmailFallback(sender_email="sdr@acme.example", subject="Hi {first_name}", body="Hello {city|there}")
    return CampaignCreated(
        campaign_id=campaign_id,
        name="Q1 outbound",
        audience=Audience(type="source_group", ref=str(uuid.uuid4())),
        workflow=workflow,
        strategy=Strategy(
            offer="We help sales teams book more meetings with researched first lines",
            proof="Acme doubled its reply rate in six weeks",
            tone="friendly",
            call_to_action="Open to a quick chat?",
            review=review,
            invite_note=invite_note,
        ),
        delivery=Delivery(email_fallback=fallback if email_fallback else None),
        account_ids=[uuid.uuid4()],
        video=(
            VideoSettings(
                template_id="tpl-1", segments=[VideoSegment(name="name", field="first_name", fallback="there")]
            )
            if video
            else None
        ),
    )


def profile(lead_id: uuid.UUID, *, hook: str = "post", city: str | None = "Berlin") -> LeadProfileEnriched:
    """A profile whose best hook is a recent post, a career move, a milestone, or nothing (``none``)."""
    posts = [
        {
            "text": "We rebuilt our outbound motion and pipeline doubled.",
            "topic": "outbound pipeline",
            "posted_on": "2026-01-01",
            "url": f"https://linkedin.example/posts/{lead_id}",
        }
    ]
    history = [
        {"title": "Head of Sales", "company": "Northwind Labs", "started_on": "2025-12-01"},
        {"title": "Account Executive", "company": "Bluepeak", "started_on": "2019-01-01", "ended_on": "2025-11-30"},
    ]
    milestones = [{"kind": "funding", "detail": "Northwind Labs raised a Series B", "occurred_on": "2025-12-20"}]
    if hook != "post":
        posts = []
    if hook in {"milestone", "none"}:
        history = [{"title": "Head of Sales", "company": "Northwind Labs", "started_on": "2020-01-01"}]
    if hook == "none":
        milestones = []
    return LeadProfileEnriched.model_validate(
        {
            "lead_id": lead_id,
            "full_name": "Ada Adler",
            "first_name": "Ada",
            "last_name": "Adler",
            "headline": "Head of Sales at Northwind Labs",
            "role": "Head of Sales",
            "company_name": "Northwind Labs",
            "city": city,
            "linkedin_url": f"https://linkedin.example/in/{lead_id}",
            "recent_posts": posts,
            "work_history": history,
            "company_milestones": milestones,
        }
    )


def enrolled(lead_id: uuid.UUID, campaign_id: uuid.UUID) -> LeadEnrolled:
    """The lead entered the campaign on some account."""
    return LeadEnrolled(lead_id=lead_id, campaign_id=campaign_id, account_id=uuid.uuid4())


def events(
    records: Sequence[ConsumerRecord[Any, Any]], lead_ids: set[uuid.UUID], type_suffix: str = ""
) -> list[Envelope[Any]]:
    """Decoded lead events of the given leads (optionally only one type, by suffix like 'message_generated.v1')."""
    out = []
    keys = {str(x).encode() for x in lead_ids}
    for r in records:
        if r.key not in keys:
            continue
        e = decode_opened(r.value, r.headers)
        if e.type.endswith(type_suffix):
            out.append(e)
    return out
