"""Reading replies: out-of-office answers and their return dates, the same company, a lead's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from services.outreach.domain.replies import (
    company_key,
    is_out_of_office,
    pause_until,
    return_date,
)
from services.outreach.domain.schedule import Schedule, parse_active_days
from services.outreach.domain.timezones import timezone_of

THURSDAY = date(2026, 3, 5)  # received on a Thursday


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("I'm out of the office until Monday with limited access to email.", date(2026, 3, 9)),
        ("I am away and will be back on Tuesday.", date(2026, 3, 10)),
        ("Out of office. Back on Thursday.", date(2026, 3, 12)),  # said on a Thursday: next week's
        ("I'm out of office and back tomorrow.", date(2026, 3, 6)),
        ("I am on holiday, back next week.", date(2026, 3, 9)),
        ("I am on parental leave and will return in two weeks.", date(2026, 3, 19)),
        ("I'm travelling, back in 3 days", date(2026, 3, 8)),
        ("I am out of the office until 16 March 2026.", date(2026, 3, 16)),
        ("I'm on annual leave until March 16th, returning to the office then.", date(2026, 3, 16)),
        ("Out of office until Monday 16 March.", date(2026, 3, 16)),
        ("I will be back in the office on 2026-03-23.", date(2026, 3, 23)),
        ("Abwesend. I am out of office until 23.03.2026", date(2026, 3, 23)),
        ("I'm out of the office from 2 March to 13 March.", date(2026, 3, 14)),  # a range's end: back the day after
        ("I am away through Friday 13 March.", date(2026, 3, 14)),
        ("I'm on vacation until the 20th.", date(2026, 3, 20)),
        ("I'm away until 3 February.", date(2027, 2, 3)),  # past this year: next year's
        ("I am out of the office with limited access to messages.", None),
        ("Out of office until further notice.", None),
    ],
)
def test_return_dates_in_english(text: str, back: date | None) -> None:
    assert return_date(text, THURSDAY) == back


def test_out_of_office_is_told_from_headers_subjects_and_words_not_from_replies() -> None:
    assert is_out_of_office("", headers={"Auto-Submitted": "auto-replied"})
    assert is_out_of_office("", headers={"X-Autoreply": "yes"})
    assert is_out_of_office("", headers={"Precedence": "auto_reply"})
    assert not is_out_of_office("Thanks!", headers={"Auto-Submitted": "no"})
    assert is_out_of_office("", subject="Automatic reply: Quick question")
    assert is_out_of_office("", subject="Out of Office: Re: intro")
    assert is_out_of_office("I'm currently out of the office until Monday.")
    assert is_out_of_office("I am on annual leave and will respond when I return.")
    assert not is_out_of_office("Sounds good - let's talk after my vacation next month?")
    assert not is_out_of_office("Thanks for reaching out - happy to chat next week.")
    assert not is_out_of_office(None)


def test_a_pause_starts_on_the_return_day_in_the_zone_with_a_default_and_a_cap() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    received = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    assert pause_until(date(2026, 3, 9), received, berlin, default_days=7, max_days=60) == datetime(
        2026, 3, 8, 23, 0, tzinfo=UTC
    )
    assert pause_until(None, received, berlin, default_days=7, max_days=60) == datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
    assert pause_until(date(2027, 1, 1), received, berlin, default_days=7, max_days=60) == datetime(
        2026, 5, 4, 10, 0, tzinfo=UTC
    )


def test_the_same_company_by_name_or_work_domain() -> None:
    assert company_key("Acme GmbH", None) == company_key("ACME", "x@other.com") == "name:acme"
    assert company_key("Northwind Labs, Inc.", None) == company_key("northwind labs", None)
    assert company_key(None, "ada@acme.io") == "domain:acme.io"
    assert company_key(None, "ada@gmail.com") is None
    assert company_key("", None) is None


def test_time_zones_from_locations() -> None:
    assert timezone_of("Munich, Bavaria, Germany") == "Europe/Berlin"
    assert timezone_of("Greater London Area") == "Europe/London"
    assert timezone_of("San Francisco Bay Area") == "America/Los_Angeles"
    assert timezone_of("Austin, TX") == "America/Chicago"
    assert timezone_of("Cambridge, Massachusetts, United States") == "America/New_York"
    assert timezone_of("Cambridge, England, United Kingdom") == "Europe/London"
    assert timezone_of("Germany") == "Europe/Berlin"
    assert timezone_of("Remote") is None and timezone_of("") is None and timezone_of(None) is None


def test_a_lead_schedule_moves_windows_not_quota_days() -> None:
    campaign = Schedule(parse_active_days("weekdays"), 9, 17, "Europe/Berlin")
    lead = campaign.for_lead("America/New_York")
    monday_noon_utc = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # 13:00 Berlin, 07:00 New York
    assert campaign.is_open(monday_noon_utc) and not lead.is_open(monday_noon_utc)
    assert lead.next_window(monday_noon_utc)[0] == datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    late = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)  # Tuesday in Berlin, still Monday 18:30 in New York
    assert lead.local_day(late) == date(2026, 1, 6)  # quota days are the campaign's
    assert lead.next_window(late)[0] == datetime(2026, 1, 6, 14, 0, tzinfo=UTC)
    assert campaign.for_lead(None) is campaign


def test_an_inbound_email_is_read_as_a_reply() -> None:
    from services.outreach.domain.inbound import parse_email

    raw = (
        b"From: Ada Adler <ADA@Acme.example>\r\nTo: sales@ours.example\r\nCc: team@ours.example\r\n"
        b"Subject: Re: Hi Ada\r\nDate: Mon, 02 Mar 2026 09:15:00 +0100\r\nMessage-ID: <r1@acme.example>\r\n"
        b"In-Reply-To: <abc@ours.example>\r\nReferences: <zzz@ours.example> <abc@ours.example>\r\n"
        b"Auto-Submitted: no\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Happy to talk.\r\n\r\nOn Mon, 2 Mar 2026 Sales wrote:\r\n> our pitch\r\n> more\r\n"
    )
    mail = parse_email(raw)
    assert (mail.key, mail.sender, mail.subject) == ("<r1@acme.example>", "ada@acme.example", "Re: Hi Ada")
    assert mail.references == ("<abc@ours.example>", "<zzz@ours.example>")
    assert mail.recipients == ("sales@ours.example", "team@ours.example")
    assert mail.received_at == datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
    assert mail.text == "Happy to talk." and mail.headers == {"auto-submitted": "no"} and not mail.bounce
    bounce = parse_email(b"From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered\r\n\r\nfailed\r\n")
    assert bounce.bounce and bounce.text == "" and bounce.key.startswith("sha256:")
