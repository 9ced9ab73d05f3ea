"""The console's pure logic: badges, where inbox items are resolved, safe redirects, numbers, times, live events."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.console import domain
from services.console.sse import SseEvent, parse

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_badges_always_carry_text_and_a_tone() -> None:
    assert domain.badge(domain.CAMPAIGN_STATES, "needs_review") == domain.Badge("Needs review", "bad")
    assert domain.badge(domain.ACCOUNT_HEALTH, "reconnect_required").tone == "bad"
    assert domain.badge(domain.CAMPAIGN_STATES, "brand_new_state") == domain.Badge("Brand new state", "muted")
    assert domain.stage_tone("invite_failed") == "bad" and domain.stage_tone("replied") == "good"
    assert domain.stage_tone("email_no_contact") == "muted" and domain.stage_tone("message_pending") == "warn"
    assert domain.stage_tone("invite_sent") == "info"


def test_each_inbox_item_links_where_it_is_resolved() -> None:
    c, a = uuid.uuid4(), uuid.uuid4()
    assert domain.inbox_link("reconnect_account", None, a) == (f"/accounts#account-{a}", "Reconnect")
    # Straight to the campaign's review queue in the Messaging Lab (not its page, one click away from it).
    assert domain.inbox_link("drafts_waiting", c, None) == (f"/campaigns/{c}/lab", "Review drafts")
    assert domain.inbox_link("failed_actions", c, None)[0] == f"/campaigns/{c}#results"
    assert domain.inbox_link("campaign_needs_review", c, None)[0] == f"/campaigns/{c}"
    assert domain.inbox_link("connect_account", None, None)[0] == "/accounts"
    # The checklist's "Launch your first campaign" opens the builder (the campaign list had no way to launch).
    assert domain.ONBOARDING_LINKS["campaign_launched"][0] == "/campaigns/new"


def test_after_sign_in_only_paths_of_this_site() -> None:
    assert domain.safe_next("/campaigns?q=a") == "/campaigns?q=a"
    for hostile in ("https://evil.example/", "//evil.example", "/\\evil.example", "", None, "campaigns"):
        assert domain.safe_next(hostile) == "/", hostile


def test_numbers_and_relative_times() -> None:
    assert domain.number(1234567) == "1,234,567" and domain.number(None) == "—"
    assert domain.percent(0.4) == "40%" and domain.percent(0.0525) == "5.2%" and domain.percent(0.125) == "12%"
    assert domain.relative(NOW - timedelta(seconds=10), NOW) == "just now"
    assert domain.relative(NOW - timedelta(minutes=5), NOW) == "5 min ago"
    assert domain.relative(NOW - timedelta(hours=3), NOW) == "3 h ago"
    assert domain.relative(NOW + timedelta(hours=2), NOW) == "in 2 h"
    assert domain.relative(NOW - timedelta(days=3), NOW) == "3 d ago"
    assert domain.zone("Europe/Berlin") == "Europe/Berlin" and domain.zone("Mars/Base") == "UTC"
    assert domain.local_time(NOW, "Europe/Berlin") == "02 Mar 2026, 13:00"


def test_a_page_hears_only_the_changes_it_shows() -> None:
    lead, camp, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    change = {"kind": "lead", "lead_id": str(lead), "campaign_id": str(camp)}
    assert domain.live_events(domain.Watch(lead=lead), change) == ["lead"]
    assert domain.live_events(domain.Watch(lead=other), change) == []
    assert domain.live_events(domain.Watch(campaign=camp), change) == ["campaign"]
    assert domain.live_events(domain.Watch(home=True, campaigns=True), change) == ["home", "campaigns"]
    assert domain.live_events(domain.Watch(accounts=True), change) == []
    assert domain.live_events(domain.Watch(accounts=True), {"kind": "account", "account_id": "x"}) == ["accounts"]
    # A reset refreshes everything the page shows.
    assert domain.live_events(domain.Watch(lead=lead, home=True), None) == ["lead", "home"]


async def _lines(*lines: str):  # type: ignore[no-untyped-def]
    for line in lines:
        yield line


async def test_server_sent_events_are_parsed_as_the_standard_says() -> None:
    stream = _lines(
        ": ping",
        "id: 7-1",
        "event: change",
        'data: {"kind":',
        'data: "lead"}',
        "",
        "event: nothing",  # no data: not dispatched
        "",
        "data:no space",
        "",
    )
    events = [e async for e in parse(stream)]
    assert events == [
        SseEvent("change", '{"kind":\n"lead"}', "7-1"),
        SseEvent("message", "no space", "7-1"),  # the last id carries over
    ]


def test_why_a_campaign_is_paused_reads_as_words() -> None:
    assert domain.state_reason("account_reconnect_required") == "Waiting for its LinkedIn account to be reconnected"
    assert domain.state_reason("account x was deleted; the campaign has no account left") == (
        "account x was deleted; the campaign has no account left"
    )
    assert domain.state_reason("some_new_reason") == "some new reason" and domain.state_reason(None) == ""


def test_the_time_base_is_the_projections_clock_moving_at_its_scale() -> None:
    base = domain.time_base("2026-03-02T12:00:00+00:00", "1800", seen=100.0)
    assert base == domain.TimeBase(NOW, 100.0, 1800.0)
    # Two seconds of the console's time later, campaign time has moved an hour.
    assert base.now(102.0) == NOW + timedelta(hours=1)
    assert base.now(99.0) == NOW  # a monotonic clock read before the answer never moves time back
    # An event stamped on that clock half an hour ago reads "30 min ago", never "in ...".
    assert domain.relative(NOW + timedelta(minutes=30), base.now(102.0)) == "30 min ago"
    assert domain.time_base("2026-03-02T12:00:00+00:00", None, seen=0.0) == domain.TimeBase(NOW, 0.0, 1.0)


def test_a_missing_or_unreadable_time_base_is_none() -> None:
    assert domain.time_base(None, "1", 0.0) is None
    assert domain.time_base("yesterday", "1", 0.0) is None
    assert domain.time_base("2026-03-02T12:00:00", "1", 0.0) is None  # no time zone
    assert domain.time_base("2026-03-02T12:00:00+00:00", "fast", 0.0) is None
    assert domain.time_base("2026-03-02T12:00:00+00:00", "-2", 0.0) is None
    assert domain.time_base("x" * 65, "1", 0.0) is None


def test_waits_and_edges_read_as_people_say_them() -> None:
    assert [domain.wait_label(m) for m in (45, 60, 90, 24 * 60, 168 * 60, 170 * 60)] == [
        "45 min",
        "1 h",
        "1 h 30 min",
        "24 h",
        "168 h",
        "7 d 2 h",
    ]
    assert domain.edge_label("accepted", 48 * 60) == "accepted + 48 h"
    assert domain.edge_label("not_accepted", 60) == "not accepted · 1 h"
    assert domain.edge_label("always", 720) == "after 12 h"


def test_a_workflow_is_drawn_left_to_right_by_distance_with_what_cannot_run_last() -> None:
    steps: list[dict[str, Any]] = [
        {"id": "invite", "action": "invite", "note": True},
        {"id": "message", "action": "message"},
        {"id": "follow_up", "action": "message"},
        {"id": "email", "action": "email"},
    ]
    edges: list[dict[str, Any]] = [
        {"from": "invite", "to": "message", "condition": "accepted", "delay_minutes": 1440},
        {"from": "message", "to": "follow_up", "condition": "always", "delay_minutes": 720},
    ]
    drawing = domain.draw(steps, edges, "invite", ["email"])
    x = {n.id: n.x for n in drawing.nodes}
    assert x["invite"] < x["message"] < x["follow_up"] < x["email"]
    by_id = {n.id: n for n in drawing.nodes}
    assert by_id["invite"].detail == "with a note" and by_id["follow_up"].detail == "Follow-up"
    assert by_id["email"].unreachable and not by_id["message"].unreachable
    assert [(link.label, link.tone) for link in drawing.links] == [("accepted + 24 h", "good"), ("after 12 h", "info")]
    # A label sits between its two steps, with room for it (the gap is wider than "accepted + 168 h").
    assert all(by_id["invite"].x + domain.NODE_W < link.lx < by_id["follow_up"].x for link in drawing.links[:1])
    assert domain.COL_GAP >= 110 and drawing.width == max(n.x for n in drawing.nodes) + domain.NODE_W + 16


def test_a_review_queue_reads_lead_by_lead_in_the_order_the_steps_are_sent() -> None:
    @dataclass
    class Draft:
        lead_id: uuid.UUID
        step_id: str

    ana, ben = uuid.uuid4(), uuid.uuid4()
    queue = [
        Draft(ben, "follow_up"),
        Draft(ana, "message"),
        Draft(ben, "invite"),
        Draft(ana, "custom"),
        Draft(ana, "invite"),
        Draft(ben, "message"),
    ]
    ordered = [(d.lead_id, d.step_id) for d in domain.review_order(queue)]
    assert ordered == [
        (ben, "invite"),
        (ben, "message"),
        (ben, "follow_up"),
        (ana, "invite"),
        (ana, "message"),
        (ana, "custom"),  # a step it does not know goes last, not first
    ]


def test_homes_empty_campaign_panel_offers_the_next_step_of_the_workspace() -> None:
    no_account = domain.campaigns_next_step(account_connected=False, campaigns_total=0)
    assert (no_account.href, no_account.action) == ("/accounts", "Connect a LinkedIn account")
    connected = domain.campaigns_next_step(account_connected=True, campaigns_total=0)
    assert (connected.href, connected.action) == ("/campaigns/new", "Build a campaign")
    assert "accounts" not in connected.text.lower()
    assert domain.campaigns_next_step(account_connected=True, campaigns_total=3).href == "/campaigns"


def test_a_lead_can_be_blocked_by_what_it_has_and_never_by_a_mail_provider_of_everyone() -> None:
    work = domain.block_choices("Jane.Doe@Acme.example", "https://www.linkedin.com/in/jane-doe")
    assert [(c.kind, c.value) for c in work] == [
        ("email", "Jane.Doe@Acme.example"),
        ("profile_url", "https://www.linkedin.com/in/jane-doe"),
        ("domain", "acme.example"),
    ]
    personal = domain.block_choices("jane@gmail.com", None)
    assert [c.kind for c in personal] == ["email"]  # blocking gmail.com would silence a whole audience
    assert domain.block_choices(None, "  ") == []


def test_a_message_step_is_named_as_the_lab_names_it_everywhere() -> None:
    assert domain.step_name("follow_up", "message") == "Follow-up"
    assert domain.step_name("message", "message") == "First message"
    assert domain.step_name("invite", "invite") == "Invite note"
    assert domain.unavailable_message("messaging").startswith("leadstream's messaging service did not answer")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://www.linkedin.com/in/ada", True),
        ("HTTP://videos.studio.example/v/1.mp4", True),
        ("[erased]", False),  # an erased person's link (crypto-shredding): text, never an href
        ("javascript:alert(1)", False),
        ("", False),
        (None, False),
    ],
)
def test_only_an_http_url_is_a_web_link(value: str | None, expected: bool) -> None:
    assert domain.is_web_link(value) is expected


def test_every_stored_link_in_a_template_is_an_href_only_when_it_is_a_web_link() -> None:
    # Links the pages show come from providers and the views: after an erasure they read [erased], and a provider
    # could write anything. Each href="{{ x.something_url }}" sits inside {% if x.something_url is web_link %}.
    templates = Path(domain.__file__).parent / "templates"
    checked = 0
    for page in templates.rglob("*.html"):
        for line in page.read_text().splitlines():
            for expr in re.findall(r'href="\{\{ ([\w.]+url) \}\}"', line):
                checked += 1
                assert f"{{% if {expr} is web_link %}}" in line, (page.name, line.strip())
    assert checked >= 8
