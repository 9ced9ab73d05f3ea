"""What a reply says, read without I/O: an out-of-office answer and the date it says the lead is back, and who
counts as the same company when one lead replies.

Out-of-office answers are recognised by the headers mailboxes put on automatic replies (``Auto-Submitted``,
``X-Autoreply``, ``Precedence: auto_reply``...), by their subjects ("Out of office", "Automatic reply") and by the
phrases they are written in; a real reply that only mentions a holiday is not one (the phrases are those of an
absence notice, and a question mark or an answer to the message makes it a reply). The return date is read
from English forms: weekdays ("back on Monday", "until Friday"), relative ones ("back tomorrow", "next week",
"in two weeks", "in 3 days"), day and month in either order with or without a year ("until 3 March", "returning
March 3rd, 2026", "back on the 5th"), ISO dates (2026-03-03) and day.month.year (03.03.2026). "Until X" and
"back on X" mean back on X; "through X" and a range's end ("from 1 to 5 March") mean back the day after.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .schedule import DAY_NAMES

# -- out of office -------------------------------------------------------------------------------------------

_AUTO_HEADERS = {
    "auto-submitted": re.compile(r"auto-(replied|generated)", re.I),
    "x-autoreply": re.compile(r".+"),
    "x-autorespond": re.compile(r".+"),
    "x-auto-response-suppress": re.compile(r"\b(oof|autoreply|all)\b", re.I),
    "precedence": re.compile(r"auto[_-]?reply", re.I),
}
_SUBJECT = re.compile(
    r"\b(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|away from (the )?office|on (annual )?leave|"
    r"abwesenheit|absence)\b",
    re.I,
)
_BODY = re.compile(
    r"\b(i am|i'm|i will be|i'll be|currently)\b[^.!?\n]{0,40}\b(out of (the )?office|away|on (annual |parental )?"
    r"leave|on (vacation|holiday)|travell?ing|offline|off work)\b|\bout of (the )?office\b|\bautomatic reply\b|"
    r"\bwith (limited|no) access to (e-?mail|messages)\b",
    re.I,
)


def is_out_of_office(text: str | None, subject: str | None = None, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a reply is an automatic absence notice (not a person answering)."""
    for name, value in (headers or {}).items():
        pattern = _AUTO_HEADERS.get(name.lower())
        if pattern is not None and value and pattern.search(value) and not value.strip().lower().startswith("no"):
            return True
    if subject and _SUBJECT.search(subject):
        return True
    body = text or ""
    return bool(_BODY.search(body))


# -- the return date ------------------------------------------------------------------------------------------

DEFAULT_PAUSE_DAYS = 7
"""How long an out-of-office answer that names no return date pauses the lead."""
MAX_PAUSE_DAYS = 60
"""The longest pause, whatever date an answer names."""

_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
_WEEKDAYS = (
    {name: i for i, name in enumerate(DAY_NAMES)}
    | {full: i for i, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
    | {"tues": 1, "wednes": 2, "thur": 3, "thurs": 3}
)
_NUMBERS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<year>20\d\d))?"
_WEEKDAY = r"(?P<weekday>" + "|".join(sorted(_WEEKDAYS, key=len, reverse=True)) + r")\b"

# What follows a cue: "until", "back", "return" ... -> how many days after the named date the lead is back.
_CUES = [
    (re.compile(r"\b(through|thru|to|till|-)\s+(the\s+)?(?=\S)", re.I), 1),  # through X: back the day after
    (
        re.compile(
            r"\b(until|til|till|back|return(ing)?|returns|in the office|reachable|available)\b"
            r"(\s+(on|from|by|to the office on|in the office on|to work on|at work on))?\s+(the\s+)?",
            re.I,
        ),
        0,
    ),
]
_ABSOLUTE = [
    re.compile(r"^(?P<iso>20\d\d-\d\d-\d\d)\b"),
    re.compile(r"^(?P<dmy>[0-3]?\d\.[01]?\d\.20\d\d)\b"),
    re.compile(r"^(?:" + _WEEKDAY + r",?\s+)?" + _DAY + r"\s+(?:of\s+)?" + _MONTH + _YEAR + r"\b", re.I),
    re.compile(r"^(?:" + _WEEKDAY + r",?\s+)?" + _MONTH + r"\s+" + _DAY + _YEAR + r"\b", re.I),
    re.compile(r"^" + _DAY + r"\b(?!\s*(?:days?|weeks?|hours?|am|pm|:))", re.I),
]
_RELATIVE = [
    (re.compile(r"^tomorrow\b", re.I), "tomorrow"),
    (re.compile(r"^(the\s+)?(beginning of\s+|start of\s+)?next\s+week\b", re.I), "next_week"),
    (re.compile(r"^(next\s+)?" + _WEEKDAY, re.I), "weekday"),
    (re.compile(r"^in\s+(?P<n>\d+|a|one|two|three|four|five|six|seven|eight)\s+(?P<unit>days?|weeks?)\b", re.I), "in"),
]
_STANDALONE = re.compile(
    r"\b(back|return(ing)?|returns)\s+(?P<what>tomorrow|next\s+week|in\s+(\d+|a|one|two|three|four|five|six|seven|eight)"
    r"\s+(days?|weeks?))\b",
    re.I,
)


def _next_weekday(after: date, weekday: int) -> date:
    """The first ``weekday`` strictly after ``after`` ("back on Monday" said on a Monday means next Monday)."""
    days = (weekday - after.weekday()) % 7
    return after + timedelta(days=days or 7)


def _on_or_after(received: date, month: int, day: int, year: int | None) -> date | None:
    """A day-and-month date, in the year given, else the first such date not before ``received``."""
    try:
        if year is not None:
            return date(year, month, day)
        found = date(received.year, month, day)
        return found if found >= received else date(received.year + 1, month, day)
    except ValueError:
        return None


def _day_of_month(received: date, day: int) -> date | None:
    """ "Back on the 5th": the next date with that day of the month (this month or the next)."""
    for months in range(3):
        year, month = received.year + (received.month - 1 + months) // 12, (received.month - 1 + months) % 12 + 1
        try:
            found = date(year, month, day)
        except ValueError:
            continue
        if found > received:
            return found
    return None


def _read_date(phrase: str, received: date) -> date | None:
    """The date at the start of ``phrase`` (what follows a cue), relative to ``received``."""
    phrase = phrase.strip()
    for pattern in _ABSOLUTE:
        m = pattern.match(phrase)
        if m is None:
            continue
        groups = m.groupdict()
        if groups.get("iso"):
            try:
                return date.fromisoformat(groups["iso"])
            except ValueError:
                return None
        if groups.get("dmy"):
            d, mo, y = (int(x) for x in groups["dmy"].split("."))
            try:
                return date(y, mo, d)
            except ValueError:
                return None
        day = int(groups["day"])
        if groups.get("month"):
            month = _MONTHS[groups["month"].lower().rstrip(".")]
            year = int(groups["year"]) if groups.get("year") else None
            return _on_or_after(received, month, day, year)
        return _day_of_month(received, day) if 1 <= day <= 31 else None
    for pattern, kind in _RELATIVE:
        m = pattern.match(phrase)
        if m is None:
            continue
        if kind == "tomorrow":
            return received + timedelta(days=1)
        if kind == "next_week":
            return _next_weekday(received, 0)
        if kind == "weekday":
            return _next_weekday(received, _WEEKDAYS[m.group("weekday").lower()])
        n = m.group("n").lower()
        count = int(n) if n.isdigit() else _NUMBERS[n]
        unit = 7 if m.group("unit").lower().startswith("week") else 1
        return received + timedelta(days=count * unit)
    return None


def return_date(text: str | None, received: date) -> date | None:
    """The date an out-of-office answer says the lead is back (None when it names none that is after ``received``)."""
    if not text:
        return None
    candidates: list[date] = []
    for m in _STANDALONE.finditer(text):
        found = _read_date(m.group("what"), received)
        if found is not None:
            candidates.append(found)
    for cue, after in _CUES:
        for m in cue.finditer(text):
            found = _read_date(text[m.end() : m.end() + 60], received)
            if found is not None:
                candidates.append(found + timedelta(days=after))
    future = [d for d in candidates if d > received]
    # An absence notice names its end last when it names a range ("from 1 March until 5 March").
    return max(future) if future else None


def pause_until(
    return_on: date | None, received_at: datetime, tz: ZoneInfo, *, default_days: int, max_days: int
) -> datetime:
    """When a paused lead's sequence goes on: the start of its return day (in ``tz``), else ``default_days`` after
    the answer; never more than ``max_days`` away (an absence notice may name a date far off by mistake)."""
    latest = received_at + timedelta(days=max_days)
    if return_on is None:
        return min(received_at + timedelta(days=default_days), latest)
    start = datetime.combine(return_on, time(0), tzinfo=tz).astimezone(UTC)
    return min(max(start, received_at), latest)


# -- the same company ------------------------------------------------------------------------------------------

_FREE_MAIL = frozenset(
    "gmail.com googlemail.com yahoo.com hotmail.com outlook.com live.com msn.com icloud.com me.com aol.com "
    "gmx.de gmx.net web.de proton.me protonmail.com mail.com yandex.ru t-online.de".split()
)
_SUFFIXES = re.compile(
    r"\b(inc|incorporated|llc|l\.l\.c|ltd|limited|gmbh|ag|sa|s\.a|sas|bv|b\.v|nv|plc|corp|corporation|co|company|"
    r"group|holding|holdings|se|oy|ab|as|aps|srl|spa|kg|ug)\b\.?",
    re.I,
)


def company_key(company: str | None, email: str | None = None) -> str | None:
    """Who counts as the same company: the company name without legal suffixes, case or punctuation, else the
    domain of a work email address (never a free-mail domain). None when neither says."""
    if company:
        name = _SUFFIXES.sub(" ", company.lower())
        name = re.sub(r"[^\w]+", " ", name).strip()
        if name:
            return f"name:{name}"
    if email and "@" in email:
        domain = email.rsplit("@", 1)[1].strip().lower()
        if domain and domain not in _FREE_MAIL:
            return f"domain:{domain}"
    return None
