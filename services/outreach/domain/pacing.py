"""Pacing: invite presets, manual limits, the launch guard (and the caps a launch overrides), evenly spread
invite slots, and the daily caps of LinkedIn messages and emails. Pure.

Invite limits count invites per LinkedIn account across all of its campaigns. A weekly pace
(Conservative, 15 a week) is also spread over the active days so a week's invites do not all go out
on Monday. Messages are capped per LinkedIn account and emails per sending mailbox, per local
day, across all campaigns; each preset has defaults and a campaign may override them. A step over
its cap waits for the next day's window; likes and comments are not paced.

Inside a window the day's invites, messages and emails are spread across it instead of leaving in one
burst at opening time: about ``window / daily cap`` apart, with jitter (a machine-regular rhythm is what
providers' automation detection looks for). Each gap is shortened by up to :data:`JITTER` of itself and
the day's first send is delayed by up to that much, so the day's cap always fits in the window. The
jitter of a slot is drawn from its sender, day and number (:func:`slot_jitter`): a step that is checked
again finds the same slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from services.runtime.providers import seeded_rng

MANUAL_RANGE = (10, 75)
GUARD_RANGE = (1, 79)
# LinkedIn restricts accounts well before 150 messages a day; mailboxes sending more than ~200 cold
# emails a day lose their reputation (and Google/Microsoft treat them as bulk senders).
MESSAGE_RANGE = (1, 150)
EMAIL_RANGE = (1, 200)
JITTER = 0.3
"""The share of a gap between two sends that varies: gaps are between 70% and 100% of ``window / daily cap``."""


class PacingError(ValueError):
    """An invalid pace; ``field`` is the path of the offending value and the message names the range."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


@dataclass(frozen=True)
class Pace:
    """``limit`` invites per ``period`` for one account."""

    name: str
    limit: int
    period: Literal["day", "week"] = "day"

    def daily_cap(self, active_days_per_week: int) -> int:
        """How many invites one account may send on one active day."""
        if self.period == "day":
            return self.limit
        return max(1, math.ceil(self.limit / max(1, active_days_per_week)))

    @property
    def weekly_limit(self) -> int | None:
        """The week's cap of a weekly pace (None for a daily pace)."""
        return self.limit if self.period == "week" else None

    def describe(self) -> str:
        """E.g. ``"Recommended: 20 invites per day"``."""
        return f"{PRESET_TITLES.get(self.name, 'Manual')}: {self.limit} invites per {self.period}"


PRESETS: dict[str, Pace] = {
    "conservative": Pace("conservative", 15, "week"),
    "recommended": Pace("recommended", 20, "day"),
    "high_volume": Pace("high_volume", 50, "day"),
}
PRESET_TITLES = {"conservative": "Conservative", "recommended": "Recommended", "high_volume": "High volume"}


def pace_from(delivery: dict[str, Any]) -> Pace:
    """The pace of delivery settings: a preset, or ``manual`` with ``daily_limit`` of 10-75."""
    name = str(delivery.get("pace", "recommended")).strip().lower().replace(" ", "_").replace("-", "_")
    if name in PRESETS:
        return PRESETS[name]
    if name != "manual":
        raise PacingError("delivery.pace", f"unknown pace {name!r}; one of: {', '.join(PRESETS)}, manual")
    limit = delivery.get("daily_limit")
    lo, hi = MANUAL_RANGE
    if isinstance(limit, bool) or not isinstance(limit, int) or not lo <= limit <= hi:
        raise PacingError("delivery.daily_limit", f"a manual daily limit must be between {lo} and {hi}, got {limit}")
    return Pace("manual", limit, "day")


def launch_guard(daily_cap: int) -> None:
    """Refuse a launch whose daily invite cap is outside 1-79 (what an account can safely send)."""
    lo, hi = GUARD_RANGE
    if not lo <= daily_cap <= hi:
        raise PacingError("daily_limit", f"the daily invite limit must be between {lo} and {hi}, got {daily_cap}")


def launch_delivery(
    delivery: dict[str, Any],
    *,
    daily_limit: int | None = None,
    daily_message_limit: int | None = None,
    daily_email_limit: int | None = None,
) -> dict[str, Any]:
    """A campaign's stored delivery settings with the caps a launch overrides, each checked by the launch
    guard: invites 1-79 a day (a manual pace from then on), messages and emails within their channel's range.
    PacingError names the launch field that is out of bounds, with the bounds."""
    out = dict(delivery)
    cap = daily_limit if daily_limit is not None else int(delivery["daily_cap"])
    launch_guard(cap)
    if daily_limit is not None:
        out.update(
            pace="manual",
            pace_label=f"Manual: {cap} invites per day",
            daily_limit=cap,
            daily_cap=cap,
            weekly_limit=None,
        )
    for limit, value in (
        (CHANNEL_LIMITS["message"], daily_message_limit),
        (CHANNEL_LIMITS["email"], daily_email_limit),
    ):
        if value is None:
            continue
        lo, hi = limit.bounds
        if isinstance(value, bool) or not lo <= value <= hi:
            raise PacingError(
                limit.field,
                f"the {limit.field.replace('_', ' ')} must be between {lo} and {hi} {limit.unit} per day, got {value}",
            )
        out[limit.field] = value
    return out


def quota_left(daily_cap: int, weekly_limit: int | None, sent_today: int, sent_this_week: int) -> int:
    """How many more invites the account may send today (a weekly pace also caps the week)."""
    left = daily_cap - sent_today
    if weekly_limit is not None:
        left = min(left, weekly_limit - sent_this_week)
    return max(0, left)


def slot_jitter(sender: str, day: date, sent_today: int) -> float:
    """The jitter (0-1) of a sender's next slot: drawn from the sender, its local day and how many it sent that
    day, so it is the same each time the step is checked and different from slot to slot."""
    return seeded_rng(0, "slot", sender, day.isoformat(), sent_today).random()


def next_slot(
    window_start: datetime, window_end: datetime, daily_cap: int, last_sent_at: datetime | None, jitter: float = 0.0
) -> datetime:
    """The earliest time the sender's next send may go: one ``window / daily_cap`` gap after its last send,
    shortened by ``jitter`` x :data:`JITTER` of the gap, and not before the window opens (a late launch sends at
    the same rhythm, not in a burst); the day's first send waits ``jitter`` x :data:`JITTER` of a gap after the
    opening. Without jitter the gaps are exactly even."""
    if daily_cap <= 0:
        return window_end
    gap = (window_end - window_start) / daily_cap
    if last_sent_at is None or last_sent_at < window_start:
        return window_start + gap * (JITTER * jitter)
    return max(window_start, last_sent_at + gap * (1 - JITTER * jitter))


# Daily caps per preset: messages per LinkedIn account, emails per sending mailbox. The manual pace
# (which sets invites only) keeps the Recommended caps.
DAILY_MESSAGE_LIMITS = {"conservative": 30, "recommended": 50, "high_volume": 100, "manual": 50}
DAILY_EMAIL_LIMITS = {"conservative": 40, "recommended": 80, "high_volume": 150, "manual": 80}


@dataclass(frozen=True)
class ChannelLimit:
    """How one paced channel is capped: its delivery field, the allowed range and the preset defaults."""

    field: str
    unit: str
    bounds: tuple[int, int]
    defaults: dict[str, int]

    def resolve(self, delivery: dict[str, Any], pace_name: str) -> int:
        """The override in ``delivery`` (validated against ``bounds``), else the pace's default."""
        value = delivery.get(self.field)
        if value is None:
            return self.defaults.get(pace_name, self.defaults["recommended"])
        lo, hi = self.bounds
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise PacingError(
                f"delivery.{self.field}", f"{self.field} must be between {lo} and {hi} {self.unit} per day, got {value}"
            )
        return value


CHANNEL_LIMITS: dict[str, ChannelLimit] = {
    "message": ChannelLimit("daily_message_limit", "messages", MESSAGE_RANGE, DAILY_MESSAGE_LIMITS),
    "email": ChannelLimit("daily_email_limit", "emails", EMAIL_RANGE, DAILY_EMAIL_LIMITS),
}


def channel_limits(delivery: dict[str, Any], pace_name: str) -> dict[str, int]:
    """The effective daily caps of a campaign's delivery settings, keyed by their delivery field
    (``daily_message_limit``, ``daily_email_limit``); PacingError names an out-of-range override."""
    return {c.field: c.resolve(delivery, pace_name) for c in CHANNEL_LIMITS.values()}


def channel_cap(action: str, delivery: dict[str, Any]) -> int | None:
    """The daily cap of a ``message`` or ``email`` step under a campaign's stored delivery settings; None
    for actions without one (invites are paced by :class:`Pace`; likes and comments are not paced). A
    campaign stored before these caps existed gets its pace's default."""
    limit = CHANNEL_LIMITS.get(action)
    if limit is None:
        return None
    stored = delivery.get(limit.field)
    if isinstance(stored, int) and not isinstance(stored, bool):
        return stored
    return limit.defaults.get(str(delivery.get("pace", "recommended")), limit.defaults["recommended"])


def send_decision(
    now: datetime,
    window: tuple[datetime, datetime],
    next_day_start: datetime,
    *,
    daily_cap: int,
    sent_today: int,
    weekly_limit: int | None = None,
    sent_this_week: int = 0,
    last_sent_at: datetime | None = None,
    spread: bool = False,
    jitter: float = 0.0,
) -> datetime | None:
    """None when the step may send at ``now``, else when to try again: ``next_day_start`` (the next day's
    window) once the day's quota is spent, or, with ``spread``, the sender's next slot (:func:`next_slot`)."""
    if quota_left(daily_cap, weekly_limit, sent_today, sent_this_week) <= 0:
        return next_day_start
    if not spread:
        return None
    window_start, window_end = window
    slot = next_slot(window_start, window_end, daily_cap, last_sent_at, jitter)
    if slot >= window_end:
        return next_day_start
    return slot if slot > now else None
