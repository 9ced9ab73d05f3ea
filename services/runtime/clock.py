"""Injected time. Domain code never reads the system clock; it is handed a :class:`Clock`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time (UTC, timezone-aware)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock tests move by hand: time stands still until :meth:`advance` or :meth:`set`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new time."""
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (must be timezone-aware)."""
        if when.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware datetime")
        self._now = when


class ScaledClock:
    """Time that runs ``scale`` times faster than real time from ``epoch`` on (demo and end-to-end runs).

    Every process given the same epoch and scale agrees on the time, so a 5-minute step spacing can
    pass in half a second of real time while the services still reason in campaign time.
    """

    def __init__(self, epoch: datetime, scale: float) -> None:
        if epoch.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware epoch")
        self.epoch = epoch
        self.scale = scale

    def now(self) -> datetime:
        real = datetime.now(UTC)
        return self.epoch + (real - self.epoch) * self.scale


def clock_from_settings(scale: float, epoch: datetime | None) -> Clock:
    """The clock a service process uses: the system clock, or a scaled one when ``scale`` is not 1."""
    if scale == 1.0:
        return SystemClock()
    return ScaledClock(epoch or datetime.now(UTC), scale)
