"""Pacing and schedule windows (pure, times passed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from services.outreach.domain.compliance import (
    Contact,
    assign_account,
    blocked_by,
    normalise_block_value,
    render_template,
    suppression,
)
from services.outreach.domain.pacing import (
    PacingError,
    channel_cap,
    channel_limits,
    launch_delivery,
    launch_guard,
    next_slot,
    pace_from,
    quota_left,
    send_decision,
    slot_jitter,
)
from services.outreach.domain.schedule import Schedule, ScheduleError, parse_active_days


def test_pace_presets() -> None:
    assert pace_from({"pace": "Conservative"}).limit == 15
    assert pace_from({"pace": "conservative"}).period == "week"
    assert pace_from({"pace": "recommended"}).daily_cap(5) == 20
    assert pace_from({"pace": "high volume"}).daily_cap(7) == 50
    assert pace_from({"pace": "conservative"}).daily_cap(5) == 3
    assert pace_from({"pace": "manual", "daily_limit": 10}).limit == 10
    assert pace_from({"pace": "manual", "daily_limit": 75}).limit == 75


@pytest.mark.parametrize("limit", [9, 76, None, "20"])
def test_manual_limit_outside_10_75(limit: object) -> None:
    with pytest.raises(PacingError, match="between 10 and 75"):
        pace_from({"pace": "manual", "daily_limit": limit})


@pytest.mark.parametrize(("cap", "ok"), [(0, False), (1, True), (79, True), (80, False)])
def test_launch_guard(cap: int, ok: bool) -> None:
    if ok:
        launch_guard(cap)
    else:
        with pytest.raises(PacingError, match="between 1 and 79"):
            launch_guard(cap)


def test_launch_overrides_caps_within_the_guard() -> None:
    stored = {"pace": "recommended", "daily_cap": 20, "daily_message_limit": 50, "daily_email_limit": 80}
    assert launch_delivery(stored) == stored
    got = launch_delivery(stored, daily_message_limit=150, daily_email_limit=1)
    assert (got["daily_cap"], got["daily_message_limit"], got["daily_email_limit"]) == (20, 150, 1)
    assert stored["daily_message_limit"] == 50  # the stored settings are not changed in place
    manual = launch_delivery(stored, daily_limit=79)
    assert (manual["pace"], manual["daily_cap"], manual["weekly_limit"]) == ("manual", 79, None)
    for kwargs, field, text in (
        ({"daily_limit": 80}, "daily_limit", "between 1 and 79"),
        ({"daily_message_limit": 151}, "daily_message_limit", "between 1 and 150 messages per day, got 151"),
        ({"daily_email_limit": 0}, "daily_email_limit", "between 1 and 200 emails per day, got 0"),
    ):
        with pytest.raises(PacingError) as refused:
            launch_delivery(stored, **kwargs)
        assert refused.value.field == field and text in refused.value.message


def test_quota_left_day_and_week() -> None:
    rec = pace_from({"pace": "recommended"})
    assert rec.weekly_limit is None
    assert quota_left(rec.daily_cap(5), rec.weekly_limit, sent_today=19, sent_this_week=90) == 1
    assert quota_left(20, None, sent_today=20, sent_this_week=20) == 0
    cons = pace_from({"pace": "conservative"})
    assert quota_left(3, cons.weekly_limit, sent_today=0, sent_this_week=14) == 1
    assert quota_left(3, cons.weekly_limit, sent_today=0, sent_this_week=15) == 0
    assert quota_left(cons.daily_cap(5), cons.weekly_limit, sent_today=3, sent_this_week=3) == 0


def test_next_slot_spreads_invites() -> None:
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    end = start + timedelta(hours=8)
    assert next_slot(start, end, 20, None) == start
    assert next_slot(start, end, 20, start) == start + timedelta(minutes=24)
    late = start + timedelta(hours=6)
    assert next_slot(start, end, 20, late) == late + timedelta(minutes=24)
    assert next_slot(start, end, 20, start - timedelta(days=1)) == start


def test_slots_have_jitter_and_the_day_still_fits() -> None:
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    end = start + timedelta(hours=8)
    gap = timedelta(minutes=24)  # 8 hours / 20
    assert next_slot(start, end, 20, None, 1.0) == start + gap * 0.3  # the day's first send waits up to 30% of a gap
    assert next_slot(start, end, 20, start, 1.0) == start + gap * 0.7  # a gap shortened by up to 30%
    assert next_slot(start, end, 20, start - timedelta(hours=20), 0.5) == start + gap * 0.15  # yesterday's last send
    day = start.date()
    assert slot_jitter("a:message", day, 3) == slot_jitter("a:message", day, 3)  # the same slot when checked again
    draws = {slot_jitter(sender, day, n) for sender in ("a:message", "b:message") for n in range(10)}
    assert len(draws) == 20 and all(0 <= j < 1 for j in draws)
    for cap in (1, 3, 20, 79, 150):  # a whole day of sends on jittered slots fits in the window
        slots: list[datetime] = []
        for n in range(cap):
            slots.append(next_slot(start, end, cap, slots[-1] if slots else None, slot_jitter("a:invite", day, n)))
        even = (end - start) / cap
        assert start <= slots[0] <= start + even * 0.3 and slots[-1] < end, cap
        assert all(even * 0.7 <= b - a <= even for a, b in pairwise(slots)), cap


@pytest.mark.parametrize(
    ("pace", "messages", "emails"),
    [("conservative", 30, 40), ("recommended", 50, 80), ("high_volume", 100, 150), ("manual", 50, 80)],
)
def test_message_and_email_caps_per_pace(pace: str, messages: int, emails: int) -> None:
    assert channel_limits({"pace": pace}, pace) == {"daily_message_limit": messages, "daily_email_limit": emails}


def test_message_and_email_cap_overrides() -> None:
    limits = channel_limits({"daily_message_limit": 1, "daily_email_limit": 200}, "conservative")
    assert limits == {"daily_message_limit": 1, "daily_email_limit": 200}
    assert channel_limits({"daily_message_limit": 150}, "high_volume")["daily_message_limit"] == 150


@pytest.mark.parametrize(
    ("delivery", "field", "range_text"),
    [
        ({"daily_message_limit": 0}, "delivery.daily_message_limit", "between 1 and 150 messages per day, got 0"),
        ({"daily_message_limit": 151}, "delivery.daily_message_limit", "between 1 and 150 messages per day"),
        ({"daily_message_limit": "20"}, "delivery.daily_message_limit", "between 1 and 150"),
        ({"daily_message_limit": True}, "delivery.daily_message_limit", "between 1 and 150"),
        ({"daily_email_limit": 201}, "delivery.daily_email_limit", "between 1 and 200 emails per day, got 201"),
        ({"daily_email_limit": -5}, "delivery.daily_email_limit", "between 1 and 200"),
    ],
)
def test_cap_overrides_outside_their_range(delivery: dict[str, object], field: str, range_text: str) -> None:
    with pytest.raises(PacingError, match=range_text) as err:
        channel_limits(delivery, "recommended")
    assert err.value.field == field


def test_channel_cap_of_each_action() -> None:
    stored = {"pace": "high_volume", "daily_message_limit": 7, "daily_email_limit": 9, "daily_cap": 50}
    assert channel_cap("message", stored) == 7
    assert channel_cap("email", stored) == 9
    for unpaced in ("invite", "like", "comment"):  # invites are paced by the Pace; likes and comments are not
        assert channel_cap(unpaced, stored) is None
    legacy = {"pace": "conservative", "daily_cap": 3}  # stored before the caps existed: the pace's defaults
    assert (channel_cap("message", legacy), channel_cap("email", legacy)) == (30, 40)
    assert channel_cap("message", {}) == 50


def test_send_decision_defers_to_the_next_day_once_the_cap_is_spent() -> None:
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    window = (start, start + timedelta(hours=8))
    tomorrow = start + timedelta(days=1)
    now = start + timedelta(hours=2)
    assert send_decision(now, window, tomorrow, daily_cap=3, sent_today=2) is None
    assert send_decision(now, window, tomorrow, daily_cap=3, sent_today=3) == tomorrow
    # without spread a message or email goes right after the previous one
    assert send_decision(now, window, tomorrow, daily_cap=3, sent_today=1, last_sent_at=now) is None


def test_send_decision_for_invites_keeps_rhythm_and_week() -> None:
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    window = (start, start + timedelta(hours=8))
    tomorrow = start + timedelta(days=1)
    now = start + timedelta(hours=1)

    def invite(at: datetime, sent: int, last: datetime | None, cap: int = 20, week: int = 0) -> datetime | None:
        weekly = 15 if cap == 3 else None
        return send_decision(
            at,
            window,
            tomorrow,
            daily_cap=cap,
            sent_today=sent,
            weekly_limit=weekly,
            sent_this_week=week,
            last_sent_at=last,
            spread=True,
        )

    last = now - timedelta(minutes=4)
    assert invite(now, 1, last) == last + timedelta(minutes=24)  # 8 hours / 20 invites
    assert invite(now, 1, now - timedelta(hours=1)) is None
    late = window[1] - timedelta(minutes=10)
    assert invite(late, 5, late) == tomorrow  # the next slot would fall after the window closes
    assert invite(now, 0, None, cap=3, week=15) == tomorrow  # the weekly limit is spent
    assert invite(now, 0, None, cap=3, week=14) is None


def test_active_days() -> None:
    assert parse_active_days("weekdays") == frozenset(range(5))
    assert parse_active_days("every_day") == frozenset(range(7))
    assert parse_active_days(["Mon", "wednesday"]) == frozenset({0, 2})
    with pytest.raises(ScheduleError, match="unknown day"):
        parse_active_days(["funday"])


def test_window_in_campaign_time_zone() -> None:
    sched = Schedule(days=frozenset(range(5)), start_hour=9, end_hour=17, timezone="Europe/Berlin")
    monday_0759_utc = datetime(2026, 1, 5, 7, 59, tzinfo=UTC)  # 08:59 in Berlin
    assert not sched.is_open(monday_0759_utc)
    assert sched.is_open(monday_0759_utc + timedelta(minutes=1))
    assert not sched.is_open(datetime(2026, 1, 5, 16, 0, tzinfo=UTC))  # 17:00 Berlin
    assert sched.next_open(monday_0759_utc) == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert sched.audience_run_at(datetime(2026, 1, 5, 5, 0, tzinfo=UTC)) == datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    friday_evening = datetime(2026, 1, 9, 17, 0, tzinfo=UTC)
    assert sched.next_open(friday_evening) == datetime(2026, 1, 12, 8, 0, tzinfo=UTC)
    saturday = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
    assert not sched.is_open(saturday)


def test_next_day_window_skips_the_rest_of_today_and_weekends() -> None:
    sched = Schedule(days=frozenset(range(5)), start_hour=9, end_hour=17, timezone="UTC")
    friday_noon = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
    assert sched.next_day_window(friday_noon)[0] == datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
    friday_early = datetime(2026, 1, 9, 6, 0, tzinfo=UTC)
    assert sched.next_day_window(friday_early)[0] == datetime(2026, 1, 12, 9, 0, tzinfo=UTC)


def test_window_across_daylight_saving() -> None:
    sched = Schedule(days=frozenset(range(7)), start_hour=9, end_hour=17, timezone="Europe/Berlin")
    before = sched.window_on(datetime(2026, 3, 28).date())[0]
    after = sched.window_on(datetime(2026, 3, 30).date())[0]
    assert before.hour == 8 and after.hour == 7  # 09:00 CET is 08:00 UTC, 09:00 CEST is 07:00 UTC


def test_schedule_validation_names_ranges() -> None:
    with pytest.raises(ScheduleError, match="between 0 and 23"):
        Schedule(days=frozenset({0}), start_hour=24)
    with pytest.raises(ScheduleError, match="unknown time zone"):
        Schedule(days=frozenset({0}), timezone="Mars/Olympus")


def test_every_day_full_window() -> None:
    sched = Schedule(days=frozenset(range(7)), start_hour=0, end_hour=24, timezone="UTC")
    assert sched.is_open(datetime(2026, 1, 10, 23, 59, tzinfo=UTC))


def test_blocklist_matches_domain_email_and_profile() -> None:
    contact = Contact("l1", email="Ada@Mail.Acme.com", linkedin_url="https://www.linkedin.com/in/Ada/")
    assert blocked_by(contact, [("domain", "acme.com")]) == "domain acme.com"
    assert blocked_by(contact, [("email", "ada@mail.acme.com")]) == "email ada@mail.acme.com"
    assert blocked_by(contact, [("profile_url", "linkedin.com/in/ada")]) == "profile_url linkedin.com/in/ada"
    assert blocked_by(contact, [("domain", "other.com")]) is None


@pytest.mark.parametrize(
    ("kind", "typed"),
    [
        ("domain", "https://www.Mail.Acme.com/careers"),
        ("domain", "@acme.com"),
        ("email", " Ada@Mail.Acme.com "),
        ("profile_url", "https://www.linkedin.com/in/Ada/?trk=x"),
        ("profile_url", "linkedin.com/in/ada"),
    ],
)
def test_a_kept_blocklist_entry_blocks_the_contact_it_names(kind: str, typed: str) -> None:
    contact = Contact("l1", email="ada@mail.acme.com", linkedin_url="https://linkedin.com/in/ada")
    stored = normalise_block_value(kind, typed)
    assert stored is not None
    assert blocked_by(contact, [(kind, stored)]) == f"{kind} {stored}"


@pytest.mark.parametrize(
    ("kind", "typed"),
    [
        ("domain", "acme"),
        ("domain", "acme .com"),
        ("domain", "ada@acme.com"),
        ("email", "ada.acme.com"),
        ("email", "@acme.com"),
        ("email", "ada@acme"),
        ("email", "ada lovelace@acme.com"),
        ("profile_url", "linkedin.com"),
        ("profile_url", "https://linkedin.com/"),
        ("profile_url", "ada adler"),
    ],
)
def test_a_value_that_could_never_match_is_not_a_blocklist_entry(kind: str, typed: str) -> None:
    # Kept, it would read as blocking someone while blocking no one.
    assert normalise_block_value(kind, typed) is None


def test_assignment_is_deterministic_and_spreads() -> None:
    accounts = ["a", "b"]
    picks = [assign_account(f"lead-{i}", accounts) for i in range(200)]
    assert picks == [assign_account(f"lead-{i}", list(reversed(accounts))) for i in range(200)]
    assert 70 < picks.count("a") < 130


def test_render_template() -> None:
    assert render_template("Hi {first_name}, {{ company }}{missing}!", {"first_name": "Ada", "company": "X"}) == (
        "Hi Ada, X!"
    )


def test_suppression_scope() -> None:
    assert suppression("invite", "unsubscribed", None, None) == ("lead unsubscribed", True)
    assert suppression("invite", None, "a@x.com", "unsubscribed") == ("address a@x.com unsubscribed", True)
    assert suppression("invite", None, "a@x.com", "bounced") is None
    assert suppression("email", None, "a@x.com", "bounced") == ("address a@x.com bounced", False)
    assert suppression("email", None, "a@x.com", None) is None
