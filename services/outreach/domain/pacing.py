"""Invite pacing: presets, manual limits, the launch guard and evenly spread send slots. Pure.

Limits count invites per account across all of its campaigns. A weekly pace (Conservative, 15 a
week) is also spread over the active days so a week's invites do not all go out on Monday. Inside
a window the day's invites are spread evenly instead of leaving in one burst at opening time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

MANUAL_RANGE = (10, 75)
GUARD_RANGE = (1, 79)


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


def quota_left(daily_cap: int, weekly_limit: int | None, sent_today: int, sent_this_week: int) -> int:
    """How many more invites the account may send today (a weekly pace also caps the week)."""
    left = daily_cap - sent_today
    if weekly_limit is not None:
        left = min(left, weekly_limit - sent_this_week)
    return max(0, left)


def next_slot(window_start: datetime, window_end: datetime, daily_cap: int, last_sent_at: datetime | None) -> datetime:
    """The earliest time the account's next invite may go: one ``window / daily_cap`` gap after its last
    invite, and not before the window opens (a late launch sends at the same rhythm, not in a burst)."""
    if daily_cap <= 0:
        return window_end
    gap = (window_end - window_start) / daily_cap
    if last_sent_at is None:
        return window_start
    return max(window_start, last_sent_at + gap)
