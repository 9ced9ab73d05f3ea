"""Injected time. Domain code never reads the system clock; it is handed a :class:`Clock`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


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


def pace_of(clock: Clock) -> float | None:
    """How many seconds ``clock`` moves by itself per real second: 1 for the system clock, the scale of a
    :class:`ScaledClock`; None for a clock that moves only when told (:class:`FakeClock`, or one this module does
    not know), for which a wait until some time of its own cannot be worked out (the timer loop polls instead)."""
    return scale_of(clock) if isinstance(clock, SystemClock | ScaledClock) else None


def scale_of(clock: Clock) -> float:
    """How many times faster than real time ``clock`` runs (1 for the system clock and a hand-moved one)."""
    scale = getattr(clock, "scale", 1.0)
    return float(scale) if isinstance(scale, int | float) and scale > 0 else 1.0


TIME_HEADER = "X-Leadstream-Time"
SCALE_HEADER = "X-Leadstream-Clock-Scale"


class ClockHeaders:
    """ASGI middleware: every HTTP answer says what time it is by the service's clock (``X-Leadstream-Time``,
    ISO 8601) and how fast that clock runs (``X-Leadstream-Clock-Scale``).

    A caller that shows the service's timestamps (the console shows the projection's) measures "3 h ago" on
    the same time base as the events, even when its own clock is configured differently (a demo's campaign
    clock runs 1800 times faster than the wall clock)."""

    def __init__(self, app: Any, clock: Clock) -> None:
        self.app = app
        self.clock = clock
        self.scale = f"{scale_of(clock):g}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Any) -> None:
            if message.get("type") == "http.response.start":
                headers = [
                    *message.get("headers", []),
                    (TIME_HEADER.lower().encode(), self.clock.now().isoformat().encode()),
                    (SCALE_HEADER.lower().encode(), self.scale),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, stamped)
