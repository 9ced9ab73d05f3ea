"""Active days and hours in the campaign's time zone. Pure: every function is handed ``now``.

A campaign sends only inside its window: on an active day, from ``start_hour`` to ``end_hour``
local time (zoneinfo, so daylight-saving changes are handled). The audience run (enrolling the
day's leads so their messages are written and approved in time) starts two hours before a window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS = frozenset(range(5))
EVERY_DAY = frozenset(range(7))
AUDIENCE_LEAD = timedelta(hours=2)


class ScheduleError(ValueError):
    """Invalid active days, hours or time zone; ``field`` is the path of the offending value."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


def parse_active_days(value: Any) -> frozenset[int]:
    """``"weekdays"``, ``"every_day"`` or a list of day names (``["mon", "wed"]``) -> weekday numbers."""
    if value in (None, "weekdays"):
        return WEEKDAYS
    if value in ("every_day", "everyday", "all"):
        return EVERY_DAY
    if isinstance(value, list | tuple) and value:
        days = set()
        for d in value:
            key = str(d).strip().lower()[:3]
            if key not in DAY_NAMES:
                raise ScheduleError("delivery.active_days", f"unknown day {d!r}; use {', '.join(DAY_NAMES)}")
            days.add(DAY_NAMES.index(key))
        return frozenset(days)
    raise ScheduleError("delivery.active_days", "use 'weekdays', 'every_day' or a non-empty list of day names")


def zone(name: str) -> ZoneInfo:
    """The time zone called ``name``; ScheduleError when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            "delivery.timezone", f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')"
        ) from None


@dataclass(frozen=True)
class Schedule:
    """When a campaign may send: active weekdays (0 = Monday) and local hours [start_hour, end_hour).

    ``timezone`` places the windows; ``day_timezone`` (the campaign's own, when the windows are a lead's:
    :meth:`for_lead`) places the days that daily and weekly quotas count, so an account's quota is one quota
    whatever the time zones of its leads.
    """

    days: frozenset[int]
    start_hour: int = 9
    end_hour: int = 17
    timezone: str = "UTC"
    day_timezone: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start_hour <= 23:
            raise ScheduleError("delivery.start_hour", f"start hour must be between 0 and 23, got {self.start_hour}")
        if not 1 <= self.end_hour <= 24 or self.end_hour <= self.start_hour:
            raise ScheduleError(
                "delivery.end_hour", f"end hour must be between {self.start_hour + 1} and 24, got {self.end_hour}"
            )
        if not self.days:
            raise ScheduleError("delivery.active_days", "at least one active day is needed")
        zone(self.timezone)

    @classmethod
    def from_delivery(cls, delivery: dict[str, Any]) -> Schedule:
        """The schedule of a campaign's delivery settings."""
        return cls(
            days=parse_active_days(delivery.get("active_days", "weekdays")),
            start_hour=int(delivery.get("start_hour", 9)),
            end_hour=int(delivery.get("end_hour", 17)),
            timezone=str(delivery.get("timezone", "UTC")),
        )

    @property
    def tz(self) -> ZoneInfo:
        """The time zone of the windows."""
        return zone(self.timezone)

    @property
    def day_tz(self) -> ZoneInfo:
        """The time zone of quota days (the campaign's)."""
        return zone(self.day_timezone or self.timezone)

    def for_lead(self, timezone: str | None) -> Schedule:
        """The same days and hours in a lead's time zone (``None``: unchanged); quota days stay the campaign's."""
        if not timezone or timezone == self.timezone:
            return self
        return replace(self, timezone=timezone, day_timezone=self.day_timezone or self.timezone)

    def local_day(self, now: datetime) -> date:
        """The campaign-local calendar day of ``now`` (the day quotas count)."""
        return now.astimezone(self.day_tz).date()

    def _window_day(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    def window_on(self, day: date) -> tuple[datetime, datetime]:
        """The UTC bounds of the window on local ``day`` (whether or not the day is active)."""
        start = datetime.combine(day, time(self.start_hour), tzinfo=self.tz)
        if self.end_hour == 24:
            end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
        else:
            end = datetime.combine(day, time(self.end_hour), tzinfo=self.tz)
        return start.astimezone(UTC), end.astimezone(UTC)

    def is_open(self, now: datetime) -> bool:
        """True when ``now`` is inside an active window."""
        day = self._window_day(now)
        if day.weekday() not in self.days:
            return False
        start, end = self.window_on(day)
        return start <= now < end

    def next_window(self, now: datetime) -> tuple[datetime, datetime]:
        """The window containing ``now``, else the next one to open."""
        day = self._window_day(now)
        for offset in range(8):
            d = day + timedelta(days=offset)
            if d.weekday() not in self.days:
                continue
            start, end = self.window_on(d)
            if now < end:
                return start, end
        raise AssertionError("an active day always occurs within a week")  # pragma: no cover

    def next_open(self, now: datetime) -> datetime:
        """``now`` when the window is open, else when the next one opens."""
        start, _ = self.next_window(now)
        return max(start, now)

    def next_day_window(self, now: datetime) -> tuple[datetime, datetime]:
        """The first window on a local day after today's (where a day's quota is spent, sending resumes)."""
        start, end = self.next_window(now)
        if self._window_day(start) == self._window_day(now):
            return self.next_window(end)
        return start, end

    def audience_run_at(self, now: datetime) -> datetime:
        """When the audience run for the next window happens: two hours before it opens (``now`` when
        that moment has passed or the window is open)."""
        start, _ = self.next_window(now)
        return max(start - AUDIENCE_LEAD, now)

    def active_days_per_week(self) -> int:
        """How many days a week the campaign sends."""
        return len(self.days)

    def week_start(self, now: datetime) -> date:
        """Monday of the campaign-local week of ``now``."""
        day = self.local_day(now)
        return day - timedelta(days=day.weekday())
