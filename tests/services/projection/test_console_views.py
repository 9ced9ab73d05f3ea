"""What the console reads from the projection: drafts and their review, profile, accounts, inbox, onboarding,
and the change log the live applier keeps (pure folds, then the applier on a fresh schema)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import given
from hypothesis import strategies as st
from leadstream_schemas import (
    AccountConnected,
    AccountLeaseAcquired,
    AccountLeaseReleased,
    AccountStatusChanged,
    Audience,
    CampaignCreated,
    CampaignLaunched,
    Channel,
    Envelope,
    Event,
    Hook,
    LeadDiscovered,
    LeadProfileEnriched,
    LeadSource,
    MessageApproved,
    MessageEdited,
    MessageGenerated,
    MessageRejected,
    Position,
    Post,
)

from services.projection import domain
from services.projection.checksum import views_checksum
from services.projection.handlers import BatchApplier
from services.projection.live import parse_event_id, resume

from .helpers import NewSchema, as_items

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WS = "ws-console"


def env(data: Event, at: datetime, ws: str = WS) -> Envelope[Any]:
    return Envelope.new(data, workspace_id=ws, source="leadstream/test", time=at)


def row(e: Envelope[Any]) -> domain.DetailRow:
    c = domain.contribution(e)
    assert c.timeline is not None
    return domain.DetailRow(e.type, e.time, c.timeline.campaign_id, c.timeline.step_id, c.timeline.detail)


HOOK = Hook(kind="recent_post", detail="Post on outbound", reason="posted 3 days ago")


def generated(lead: uuid.UUID, camp: uuid.UUID, draft: uuid.UUID, text: str, *, review: bool) -> MessageGenerated:
    return MessageGenerated(
        lead_id=lead,
        campaign_id=camp,
        draft_id=draft,
        channel=Channel.invite,
        step_id="invite",
        text=text,
        hook=HOOK,
        char_limit=200,
        needs_review=review,
    )


def test_outreach_folds_drafts_and_reviews_even_when_a_regeneration_shares_the_rejections_time() -> None:
    lead, camp = uuid.uuid4(), uuid.uuid4()
    a, b = uuid.uuid4(), uuid.uuid4()
    events = [
        env(generated(lead, camp, a, "First try", review=True), T0),
        # The reviewer rejects draft A; messaging writes B in the same transaction: one clock reading, and
        # the generation sorts before the rejection (lifecycle order). The rejection still belongs to A.
        env(
            MessageRejected(
                lead_id=lead, campaign_id=camp, draft_id=a, channel=Channel.invite, step_id="invite", reason="too long"
            ),
            T0 + timedelta(minutes=5),
        ),
        env(generated(lead, camp, b, "Second try", review=True), T0 + timedelta(minutes=5)),
    ]
    rows = sorted((row(e) for e in events), key=lambda r: (r.event_time, domain.TYPE_RANK[r.event_type], r.event_type))
    [step] = domain.lead_outreach(rows)
    assert (step.draft_id, step.text, step.review_state) == (str(b), "Second try", "pending_review")
    assert step.rejection_reason == "too long" and step.drafts == 2
    assert step.hook["kind"] == "recent_post" and step.hook["reason"] == "posted 3 days ago"

    edited = env(
        MessageEdited(
            lead_id=lead, campaign_id=camp, draft_id=b, channel=Channel.invite, step_id="invite", text="Edited by me"
        ),
        T0 + timedelta(minutes=9),
    )
    [step] = domain.lead_outreach([*rows, row(edited)])
    assert (step.review_state, step.text, step.reviewed_at) == ("edited", "Edited by me", edited.time)

    auto = uuid.uuid4()
    other = [
        env(generated(lead, camp, auto, "No review", review=False), T0),
        env(
            MessageApproved(
                lead_id=lead,
                campaign_id=camp,
                draft_id=auto,
                channel=Channel.invite,
                step_id="invite",
                text="No review",
                auto=True,
            ),
            T0,
        ),
    ]
    [step] = domain.lead_outreach([row(e) for e in other])
    assert step.review_state == "auto_approved" and not step.needs_review


def test_profile_detail_keeps_what_the_lead_row_does_not() -> None:
    lead = uuid.uuid4()
    profile = LeadProfileEnriched(
        lead_id=lead,
        full_name="Ada Adler",
        role="VP Sales",
        company_name="Northwind",
        company_size="51-200",
        company_industry="Software",
        recent_posts=[Post(text="Outbound is not dead", topic="outbound")],
        work_history=[Position(title="Head of Sales", company="Bluepeak")],
        skills=["Negotiation", "SaaS"],
    )
    got = domain.lead_profile([row(env(profile, T0))])
    assert got is not None
    assert (got["role"], got["company_size"], got["company_industry"]) == ("VP Sales", "51-200", "Software")
    assert got["recent_posts"][0]["text"] == "Outbound is not dead"
    assert got["work_history"][0]["company"] == "Bluepeak" and got["skills"] == ["Negotiation", "SaaS"]
    assert domain.lead_profile([]) is None


def test_inbox_lists_what_needs_a_person_most_urgent_first() -> None:
    a1, a2, c1, c2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert [i.kind for i in domain.inbox([], [])] == ["connect_account"]
    items = domain.inbox(
        [
            domain.AccountFact(a1, "Sam SDR", "credentials", False, False, ("Q1 push",)),
            domain.AccountFact(a2, "Kim AE", "ok", True, False),
        ],
        [
            domain.CampaignFact(c1, "Q1 push", "paused", "account_reconnect_required", 3, 2, ("Kim AE",)),
            domain.CampaignFact(c2, "Agencies", "needs_review", "account x was deleted", 0, 0),
        ],
    )
    assert [i.kind for i in items] == [
        "reconnect_account",
        "campaign_needs_review",
        "campaign_paused_by_limit",
        "drafts_waiting",
        "failed_actions",
    ]
    assert items[0].account_id == a1 and "reconnect" in (items[0].detail or "") and "Q1 push" in (items[0].detail or "")
    assert items[1].detail == "account x was deleted" and items[1].campaign_id == c2
    assert items[3].title == "3 drafts waiting for review" and items[3].count == 3
    assert domain.account_health("limit_reached", False, False) == "limited"
    assert domain.account_health("message_limit_reached", False, False) == "limited"
    assert domain.account_health("verification_failed", False, False) == "reconnect_required"
    assert "verify" in domain.ACCOUNT_STATUS_REASONS["verification_failed"]
    assert "message limit" in domain.ACCOUNT_STATUS_REASONS["message_limit_reached"]
    assert "Kim AE" in (items[2].detail or "") and "next active window" in (items[2].detail or "")
    # An account paused by a limit is connected: no "connect an account" item.
    limited = domain.AccountFact(a2, "Kim AE", "message_limit_reached", False, False)
    assert [i.kind for i in domain.inbox([limited], [])] == []
    assert domain.account_health("auth_required", False, False) == "reconnect_required"
    assert domain.account_health("ok", True, True) == "deleted"


def test_onboarding_steps() -> None:
    steps = domain.onboarding(None, None, None)
    assert [(s.key, s.done) for s in steps] == [
        ("workspace_ready", True),
        ("account_connected", False),
        ("campaign_launched", False),
    ]
    assert all(s.done for s in domain.onboarding(T0, T0, T0 + timedelta(hours=1)))


@given(st.text(max_size=100))
def test_any_last_event_id_is_a_position_or_none_never_an_error(value: str) -> None:
    # The stream's Last-Event-ID and ?after= come from clients; the fuzz walk leaves the endless stream out.
    parsed = parse_event_id(value)
    if parsed is not None:
        text = value.strip()
        assert text.isascii() and tuple(int(part) for part in text.split("-", 1)) == parsed


def test_resume_positions() -> None:
    assert parse_event_id("12-40") == (12, 40) and parse_event_id("x-1") is None and parse_event_id("12") is None
    assert parse_event_id("1²-3") is None and parse_event_id("\u0661\u0662-3") is None  # digits, but not ASCII ones
    assert resume(None, 12, 50, 0).seq == 50 and not resume(None, 12, 50, 0).reset
    assert resume((12, 40), 12, 50, 0) == resume((12, 40), 12, 50, 40)  # the next one (41) is still there
    assert not resume((12, 40), 12, 50, 0).reset and resume((12, 40), 12, 50, 0).seq == 40
    for last, pruned in (((11, 40), 0), ((12, 39), 40), ((12, 51), 0)):  # another epoch, pruned, ahead
        pos = resume(last, 12, 50, pruned)
        assert pos.reset and pos.seq == 50, (last, pruned)


def _world() -> tuple[list[Envelope[Any]], dict[str, uuid.UUID]]:
    ids = {k: uuid.uuid4() for k in ("a1", "a2", "camp", "lead1", "lead2", "d1", "d2", "group")}
    ev: list[Envelope[Any]] = [
        env(AccountConnected(account_id=ids["a1"], display_name="Sam SDR"), T0),
        env(AccountConnected(account_id=ids["a2"], display_name="Kim AE"), T0 + timedelta(seconds=1)),
        env(
            CampaignCreated(
                campaign_id=ids["camp"],
                name="Q1 push",
                audience=Audience(type="source_group", ref=str(ids["group"])),
                account_ids=[ids["a1"], ids["a2"]],
            ),
            T0 + timedelta(minutes=1),
        ),
        env(CampaignLaunched(campaign_id=ids["camp"], account_ids=[ids["a1"], ids["a2"]]), T0 + timedelta(minutes=2)),
        env(AccountLeaseAcquired(account_id=ids["a1"], campaign_id=ids["camp"]), T0 + timedelta(minutes=2)),
        env(AccountLeaseAcquired(account_id=ids["a2"], campaign_id=ids["camp"]), T0 + timedelta(minutes=2)),
        env(
            AccountStatusChanged(account_id=ids["a1"], status="credentials", previous="connected", healthy=False),
            T0 + timedelta(minutes=30),
        ),
        env(AccountLeaseReleased(account_id=ids["a1"], campaign_id=ids["camp"]), T0 + timedelta(minutes=30)),
    ]
    for lead, draft in (("lead1", "d1"), ("lead2", "d2")):
        ev.append(
            env(
                LeadDiscovered(
                    lead_id=ids[lead], source=LeadSource.signals, source_group_id=ids["group"], full_name=lead
                ),
                T0 + timedelta(minutes=3),
            )
        )
        ev.append(env(generated(ids[lead], ids["camp"], ids[draft], "Hi", review=True), T0 + timedelta(minutes=4)))
    ev.append(
        env(
            MessageApproved(
                lead_id=ids["lead1"],
                campaign_id=ids["camp"],
                draft_id=ids["d1"],
                channel=Channel.invite,
                step_id="invite",
                text="Hi",
            ),
            T0 + timedelta(minutes=6),
        )
    )
    return ev, ids


async def test_views_of_accounts_and_drafts_are_order_independent_and_the_live_log_records_changes(
    pg: asyncpg.Connection, new_schema: NewSchema
) -> None:
    events, ids = _world()
    ordered, shuffled = await new_schema(), await new_schema()
    live = BatchApplier(ordered, changes=True)
    result = await live.apply(pg, as_items(events), {})
    assert result.applied == len(events)
    mixed = list(events)
    random.Random(7).shuffle(mixed)
    await BatchApplier(shuffled).apply(pg, as_items(mixed), {})
    assert (await views_checksum(pg, ordered.schema)).digest == (await views_checksum(pg, shuffled.schema)).digest

    s = ordered.schema
    accounts = {
        r["display_name"]: r
        for r in await pg.fetch(f'SELECT display_name, status, connected_at, status_changed_at FROM "{s}".accounts')
    }
    assert accounts["Sam SDR"]["status"] == "credentials"
    assert accounts["Sam SDR"]["status_changed_at"] == T0 + timedelta(minutes=30)
    assert accounts["Sam SDR"]["connected_at"] == T0
    uses = {
        (r["account_id"], r["leased"], r["assigned"])
        for r in await pg.fetch(f'SELECT account_id, leased, assigned FROM "{s}".account_campaigns')
    }
    assert uses == {(ids["a1"], False, True), (ids["a2"], True, True)}
    pending = await pg.fetchval(
        f'SELECT drafts_pending FROM "{s}".campaign_summary WHERE campaign_id = $1', ids["camp"]
    )
    assert pending == 1  # two drafts needed review, one was approved

    # One change per touched row, in the workspace; only the applier asked to keep a log wrote one.
    changes = await pg.fetch(f'SELECT seq, workspace_id, kind, lead_id, campaign_id FROM "{s}".changes ORDER BY seq')
    assert {c["workspace_id"] for c in changes} == {WS}
    assert {(c["kind"], c["lead_id"], c["campaign_id"]) for c in changes if c["kind"] == "lead"} == {
        ("lead", ids["lead1"], ids["camp"]),
        ("lead", ids["lead2"], ids["camp"]),
    }
    assert {c["kind"] for c in changes} == {"lead", "campaign", "account"}
    assert await pg.fetchval(f'SELECT count(*) FROM "{shuffled.schema}".changes') == 0
