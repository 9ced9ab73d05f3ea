"""The projection's pure logic: commutative merges, stage labels, summaries, activity categories."""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from leadstream_schemas import (
    Action,
    ActionFailed,
    ActionSkipped,
    CampaignCreated,
    Envelope,
    InviteSent,
    LeadAddedToSourceGroup,
    LeadDiscovered,
    LeadSource,
    Replied,
    SkipReason,
)

from services.projection import domain
from services.projection.domain import LEAD_CAMPAIGN, LEAD_STATE, MergeSpec, merge_patch
from services.projection.workload import EPOCH, generate

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def env(data: Any, minutes: float = 0, ws: str = "ws") -> Envelope[Any]:
    return Envelope.new(data, workspace_id=ws, source="test", time=T0 + timedelta(minutes=minutes))


def patches_of(spec: MergeSpec, n: int = 400) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Patches of ``spec``'s table from a generated log, grouped by row key."""
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in generate(leads=12, campaigns=3, seed=2).envelopes[:n]:
        for s, key, patch in domain.contribution(e).patches:
            if s is spec:
                out.setdefault(key, []).append(patch)
    return out


@pytest.mark.parametrize("spec", [LEAD_STATE, LEAD_CAMPAIGN])
def test_merging_is_order_independent(spec: MergeSpec) -> None:
    rng = random.Random(3)
    for patches in patches_of(spec).values():
        results = []
        for _ in range(5):
            shuffled = list(patches)
            rng.shuffle(shuffled)
            acc = dict(shuffled[0])
            for p in shuffled[1:]:
                merge_patch(spec, acc, p)
            results.append(domain.row_values(spec, acc))
        assert all(r == results[0] for r in results)


def test_last_writer_wins_by_event_time_not_arrival() -> None:
    lead = uuid.uuid4()
    early = domain.contribution(env(InviteSent(lead_id=lead, campaign_id=uuid.uuid4()), minutes=1))
    late = domain.contribution(env(Replied(lead_id=lead, channel="message", received_at=T0), minutes=2))
    (_, _, p_early), (_, _, p_late) = early.patches[0], late.patches[0]
    acc = dict(p_late)
    merge_patch(LEAD_STATE, acc, p_early)  # the earlier fact arrives last
    assert acc["label"] == "replied" and acc["replied"] and acc["pipeline_rank"] == 7
    assert acc["first_event_at"] == T0 + timedelta(minutes=1) and acc["event_count"] == 2


def test_order_key_sorts_by_time_then_lifecycle_then_id() -> None:
    eid = uuid.uuid4()
    same_time = [domain.order_key(T0, t, eid) for t in (LeadDiscovered.event_type, InviteSent.event_type)]
    assert same_time[0] < same_time[1]
    assert domain.order_key(T0, Replied.event_type, eid) < domain.order_key(
        T0 + timedelta(microseconds=1), LeadDiscovered.event_type, eid
    )
    other_zone = T0.astimezone(domain.UTC).replace(tzinfo=None)
    assert domain.order_key(other_zone, InviteSent.event_type, eid) == domain.order_key(T0, InviteSent.event_type, eid)


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        (SkipReason.blocked, "email_blocked"),
        (SkipReason.dry_run, "email_dry_run"),
        (SkipReason.no_contact, "email_no_contact"),
        (SkipReason.suppressed, "email_suppressed"),
        (SkipReason.duplicate, "email_duplicate"),
        (SkipReason.limit_reached, "email_skipped"),
    ],
)
def test_email_skip_reasons_have_their_own_stage(reason: SkipReason, label: str) -> None:
    rank, got, summary = domain.lead_details(ActionSkipped(lead_id=uuid.uuid4(), action=Action.email, reason=reason))
    assert (rank, got) == (5, label)
    assert got in domain.WORKFLOW_LABELS and summary.startswith("Email skipped: ")


def test_a_send_with_an_unknown_outcome_says_it_may_have_been_sent() -> None:
    lost = ActionFailed(lead_id=uuid.uuid4(), action=Action.email, reason="outcome_unknown", detail="SMTP: no lookup")
    refused = ActionFailed(lead_id=uuid.uuid4(), action=Action.email, reason="provider_error", detail="550")
    assert domain.lead_details(lost) == (
        5,
        "email_failed",
        "Email may have been sent: its outcome is unknown; not sent again (SMTP: no lookup)",
    )
    assert domain.lead_details(refused)[2] == "Email failed: provider_error (550)"


def test_summaries_are_human_and_safe_to_format() -> None:
    account = uuid.uuid4()
    invite = InviteSent(lead_id=uuid.uuid4(), account_id=account, note="Loved your {post} on outbound")
    _, label, summary = domain.lead_details(invite)
    assert label == "invite_sent"
    rendered = domain.render_summary(summary, "Jane (LinkedIn)", account)
    assert rendered == "Invite sent from account Jane (LinkedIn) with note: Loved your {post} on outbound"
    assert domain.render_summary(summary, None, account).startswith(f"Invite sent from account {str(account)[:8]} ")
    _, _, discovered = domain.lead_details(
        LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.signals, full_name="Ada Adler", company="Bluepeak")
    )
    assert domain.render_summary(discovered, None, None) == "Ada Adler (Bluepeak) discovered via signals"


@pytest.mark.parametrize(
    "text",
    [
        "plain words",
        " leading",
        "trailing ",
        "double  space",
        "tab\there",
        "new\nline",
        "no\u00a0break",
        "ideographic\u3000space",
        "x",
        " ",
        "{braces} and a long tail " * 20,
    ],
)
def test_user_text_in_summaries_has_its_whitespace_collapsed(text: str) -> None:
    expected = " ".join(text.split())
    if len(expected) > 280:
        expected = expected[:279] + "…"
    assert domain._esc(text) == expected.replace("{", "{{").replace("}", "}}")


def test_a_lead_events_timeline_campaign_is_its_payloads_else_its_headers_parsed() -> None:
    """The timeline's campaign (leadstream_schemas.event_campaign as a UUID): the payload's as it is, else the
    header's parsed; an empty or malformed header is no campaign; a payload that disagrees with the header wins."""
    lead, payload, header = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cases: list[tuple[uuid.UUID | None, str | None, uuid.UUID | None]] = [
        (payload, None, payload),
        (payload, str(header), payload),  # both, disagreeing
        (None, str(header), header),
        (None, str(header).upper(), header),  # parsed, not compared as text
        (None, None, None),
        (None, "", None),
        (None, "not-a-uuid", None),
    ]
    for in_payload, in_header, expected in cases:
        sent = env(InviteSent(lead_id=lead, campaign_id=in_payload, account_id=uuid.uuid4()))
        row = domain.contribution(dataclasses.replace(sent, campaign_id=in_header)).timeline
        assert row is not None and row.campaign_id == expected, (in_payload, in_header)
        if in_payload is not None:
            assert row.campaign_id is in_payload  # no text round trip


def test_lead_event_before_its_campaign_still_joins_the_audience() -> None:
    group = uuid.uuid4()
    campaign = CampaignCreated(campaign_id=uuid.uuid4(), name="C", audience={"type": "source_group", "ref": str(group)})
    lead = LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.search, source_group_id=group)
    c_lead, c_campaign = domain.contribution(env(lead)), domain.contribution(env(campaign, minutes=-5))
    assert c_lead.group_member == ("ws", group, lead.lead_id)
    assert c_campaign.new_audience == ("ws", campaign.campaign_id)


def test_known_lead_added_to_another_group_joins_that_audience() -> None:
    group = uuid.uuid4()
    joined = LeadAddedToSourceGroup(lead_id=uuid.uuid4(), source=LeadSource.csv, source_group_id=group)
    assert domain.contribution(env(joined)).group_member == ("ws", group, joined.lead_id)
    rank, label, summary = domain.lead_details(joined)
    assert (rank, label) == (1, None)  # it is not a new stage of the lead
    assert domain.render_summary(summary, None, None) == "Found again via csv; added to another source group"


def test_activity_categories() -> None:
    now = EPOCH + timedelta(days=3)
    wait = timedelta(hours=24)
    assert domain.activity_category("resolved", now, now, wait) == "matched"
    assert domain.activity_category("invite_sent", now - timedelta(hours=1), now, wait) == "invite_sent"
    assert domain.activity_category("invite_sent", now - timedelta(days=2), now, wait) == "waiting_acceptance"
    assert domain.activity_category("workflow_running", now, now, wait, invite_accepted=True) == "engaged"
    assert domain.activity_category("workflow_running", now, now, wait) == "processing"
    assert domain.activity_category("email_suppressed", now, now, wait) == "skipped"
    assert domain.activity_category("replied", now, now, wait) == "engaged"
    assert domain.activity_category("completed", now, now, wait) == "message_sent"
    assert domain.count_categories(["matched", "matched", "skipped"]) == {
        **dict.fromkeys(domain.ACTIVITY_CATEGORIES, 0),
        "matched": 2,
        "skipped": 1,
    }


def test_rates() -> None:
    assert domain.rate(0, 0) == 0.0
    assert domain.rate(1, 3) == 0.3333
