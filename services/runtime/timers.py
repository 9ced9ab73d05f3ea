"""Durable timers: Postgres rows that say some work is due, and the one loop that claims and runs them.

A service's domain says WHAT is claimable: a ``select`` of its due rows in the order to run them
(outreach's step timers, discovery's searches, enrichment's parked stages, video's jobs). This module
says HOW they are claimed, run, retried and backed off:

- **claim**: one row at a time with ``FOR UPDATE SKIP LOCKED`` in its own transaction, so any number of
  replicas share the rows and a crash loses nothing (an uncommitted claim is simply claimed again);
- **run**: the domain's ``run(conn, row, now)`` works in the claim's transaction. Work with an effect
  outside the database that must not be repeated (a provider send) commits an intent there and returns
  :class:`Then`: its ``call`` runs after the commit, outside any transaction, and its result is
  recorded in a second transaction, retried while the database is unreachable;
- **failures**, by :func:`~services.runtime.faults.classify`:

  ===============  ============================================================================
  TRANSIENT        nothing is recorded: the loop reports not-ready and backs off; the row is
                   claimed again once the database answers (retried without limit)
  THROTTLED        retried when the provider asked, without using an attempt
  RECORD           attempt + 1, retried after an exponential backoff; after ``max_attempts``
                   (at once for a permanent :class:`ProviderError`) the domain gives up
  ===============  ============================================================================

  A failure is recorded in a new transaction on the row locked again: the helper sets the row's
  ``attempts`` column to the new count and (when retried) its ``due`` column to the retry time, then
  the domain's ``failed(conn, row, failure)`` adds what it must (the error, or on giving up the events
  that end the work, which must make the row unclaimable); a SUSPECT error (a refused connection, a
  timeout) is TRANSIENT when the database does not answer ``SELECT 1``, else RECORD;
- **stop**: honoured between rows; a claim in progress is abandoned (rolled back, no effect), a call
  already made is recorded;
- **traces**: given ``traceparent`` (a row's stored traceparent: of what made the row due, written with
  it), the run and its call continue that trace, so a trace follows the work across the wait; the log
  lines meanwhile carry the row's lead and campaign ids (columns of those names, when it has them);
- :meth:`DurableTimers.wake`: look now, something just became due; :meth:`DurableTimers.serve` runs
  the loop as the service's background task and reports not-ready while it fails;
- **idle**: a claim that finds nothing asks, in its transaction, when the next row becomes claimable within
  ``timer_idle_max_s`` (real seconds, converted to the service's campaign clock) and the loop naps until then:
  at least ``poll_interval_s``, at most ``timer_idle_max_s`` (:func:`idle_nap_s`), or until :meth:`wake` or
  stop. Idle, each loop costs Postgres a claim every ``timer_idle_max_s`` (2 s) instead of every poll interval
  (0.2-0.5 s). So a row made due in this process must :meth:`wake` the loop once the write committed (every
  write that makes a row due sooner than that does: a handler through
  :meth:`~.consumer.HandlerContext.after_commit`, the commands and API routes after their transaction; a row
  due later needs no wake, the loop looks again before it is due). A wake before the commit could be met by
  a look that does not see the row yet, then a nap of up to ``timer_idle_max_s``. A row another process
  makes due (another replica, the CLI) is claimed within ``timer_idle_max_s``, or when due if that is later.
  With a clock that moves only when told (:class:`~.clock.FakeClock`, the tests) the loop looks every
  ``poll_interval_s``, as a moved clock makes rows due without a wake.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, DateTime, Select, Table, and_, func, literal, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from .clock import Clock, pace_of
from .consuming.policy import Act, after_failure, judge
from .db import ping
from .faults import Backoff, Fault, backoff_delay, nap, retry_after, unless_stopped
from .providers import ProviderError
from .service import Service
from .telemetry import work_span

log = logging.getLogger(__name__)

T = TypeVar("T")


def idle_nap_s(
    now: datetime,
    next_due: datetime | None,
    *,
    pace: float | None,
    poll_interval_s: float,
    idle_max_s: float,
) -> float:
    """Real seconds an idle timer loop waits before its next claim (unless woken or stopped meanwhile).

    ``next_due``: no later than the earliest time a row becomes claimable, as the loop's look ahead found it
    (None: nothing within ``idle_max_s``); ``pace``: campaign seconds per real second of the loop's clock
    (:func:`~.clock.pace_of`; None: a clock moved by hand, which no nap can wait for). The nap lasts until
    ``next_due``, at least ``poll_interval_s`` (a row due sooner waits that long, as it always did) and at most
    ``idle_max_s`` (which bounds how late a row another process made due is seen); ``poll_interval_s`` exactly
    for a hand-moved clock."""
    if pace is None:
        return poll_interval_s
    longest = max(poll_interval_s, idle_max_s)
    if next_due is None:
        return longest
    until_due = (next_due - now).total_seconds() / pace
    return min(longest, max(poll_interval_s, until_due))


@dataclass(frozen=True)
class Then(Generic[T]):
    """Work to finish after the claim committed: ``call()`` outside any transaction (e.g. a provider send
    whose intent the claim committed), then ``record(conn, result, now)`` in a new transaction."""

    call: Callable[[], Awaitable[T]]
    record: Callable[[AsyncConnection, T, datetime], Awaitable[None]]


@dataclass(frozen=True)
class Failure:
    """A failed run of a row, as recorded: ``retry_at`` None means give up."""

    error: BaseException
    fault: Fault
    attempts: int
    retry_at: datetime | None
    now: datetime

    @property
    def detail(self) -> str:
        """The error as one line for a log, a column or an event (500 characters at most)."""
        return f"{type(self.error).__name__}: {self.error}"[:500]


Claimable = Callable[[datetime], Select[Any]]
Run = Callable[[AsyncConnection, Row[Any], datetime], Awaitable["Then[Any] | None"]]
Failed = Callable[[AsyncConnection, Row[Any], Failure], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """How a timer table is worked: a failed run is retried ``max_attempts`` times in all after a backoff of
    ``retry_initial_s`` doubling up to ``retry_max_s``, a provider's retry-after obeyed up to
    ``max_retry_after_s``; the idle loop looks for due rows no more often than every ``poll_interval_s`` (real
    seconds; every ``poll_interval_s`` with a clock moved by hand, see the module's docstring).

    Built from a service's settings once (e.g. ``DiscoverySettings.search_schedule()``), not field by field."""

    max_attempts: int
    retry_initial_s: float
    retry_max_s: float
    poll_interval_s: float
    max_retry_after_s: float = float("inf")


@dataclass(eq=False, kw_only=True)
class DurableTimers:
    """Claims and runs the due rows of one table of ``service`` (see the module's docstring).

    ``due`` and ``attempts`` are the table's columns of the next try and of the attempts used so far;
    ``schedule`` says how often rows are looked for and failed runs retried. :meth:`serve` runs :meth:`loop`
    as the service's background task; ``run_once()`` / ``run_due()`` step it (tests with a fake clock).

    ``claimable_at``: an expression over ``claimable``'s tables never later than when a row becomes claimable
    (the idle loop naps until its earliest value). The default, the ``due`` column, is that for any domain whose
    ``claimable`` requires ``due <= now`` (or ``due`` NULL, which counts as now): a row is claimable once every
    one of its times is past, so not before its ``due``. A domain with a branch claimable without ``due`` past
    (video's deadlines), or whose rows wait on another time too (discovery's scheduled searches, on their next
    run), names its own: a default earlier than the row's real time makes the idle loop look every poll
    interval. ``idle_max_s``: the longest idle nap (default: the service's ``timer_idle_max_s``).
    """

    name: str
    service: Service
    table: Table
    due: Column[Any]
    attempts: Column[Any]
    claimable: Claimable
    run: Run
    failed: Failed
    schedule: Schedule
    clock: Clock | None = None  # default: the service's clock
    traceparent: Callable[[Row[Any]], str | None] | None = None  # the trace a row's run continues (module doc)
    claimable_at: ColumnElement[Any] | None = None  # default: ``due`` (see the class docstring)
    idle_max_s: float | None = None  # default: the service's timer_idle_max_s
    healthy: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        clock = self.clock or self.service.clock
        self.now = clock.now
        self.pace = pace_of(clock)
        self.idle_max = self.idle_max_s if self.idle_max_s is not None else self.service.settings.timer_idle_max_s
        self.backoff = Backoff(
            self.schedule.poll_interval_s,
            max(self.service.settings.consumer_backoff_max_s, self.schedule.poll_interval_s),
        )
        self._wake = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._calling = False

    # -- control ---------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for due rows now: something just became due, in a transaction that has committed (a wake during the
        loop's look makes it look again at once)."""
        self._wake.set()

    def serve(self) -> None:
        """Run :meth:`loop` as a background task of the service, and report not-ready while it fails."""

        async def check() -> str | None:
            return None if self.healthy else "cannot run due timers (database unreachable; see the logs)"

        check.__name__ = f"timers:{self.name}"
        self.service.add_task(self.loop)
        self.service.add_readiness_check(check)

    async def loop(self, stop: asyncio.Event) -> None:
        """Background task: run due rows until ``stop``; when idle, nap until the next row is due, within the
        bounds of :func:`idle_nap_s`, or until :meth:`wake`. A transient failure makes the loop not-ready and back
        off until the database answers."""
        self._stop = stop
        while not stop.is_set():
            self._wake.clear()
            try:
                # A claim in progress is abandoned (rolled back) at a stop; a call already made is recorded.
                stepped = await unless_stopped(stop, self._step(look_ahead=True), cancel=lambda: not self._calling)
            except Exception as exc:
                self.healthy = False
                log.warning("%s: timer loop failed; retrying", self.name, extra={"error": repr(exc)})
                await self.backoff.wait(stop)
                continue
            self.healthy = True
            self.backoff.reset()
            if stepped is None:  # stopping
                continue
            row, next_due = stepped
            if row is None:  # idle: look again when the next row is due (bounded), or when woken
                seconds = idle_nap_s(
                    self.now(),
                    next_due,
                    pace=self.pace,
                    poll_interval_s=self.schedule.poll_interval_s,
                    idle_max_s=self.idle_max,
                )
                await nap(stop, self._wake, seconds)

    async def run_due(self, limit: int = 10_000) -> int:
        """Run rows while any is due (up to ``limit``; not after stop); returns how many ran."""
        ran = 0
        while ran < limit and not (self._stop is not None and self._stop.is_set()):
            if await self.run_once() is None:
                break
            ran += 1
        return ran

    async def run_once(self) -> Row[Any] | None:
        """Claim the first due row and run it; returns it (None when none is due). Raises on a transient fault."""
        row, _ = await self._step(look_ahead=False)
        return row

    async def _step(self, *, look_ahead: bool) -> tuple[Row[Any] | None, datetime | None]:
        """:meth:`run_once`; when nothing is due and ``look_ahead`` (with a clock that moves by itself), also when
        the next row becomes claimable within the idle maximum (:meth:`_next_due`), in the claim's transaction."""
        now = self.now()
        claimed: Row[Any] | None = None
        try:
            async with self.service.engine.begin() as conn:
                claimed = (await conn.execute(self._claim(now))).first()
                if claimed is None:
                    if not look_ahead or self.pace is None:
                        return None, None
                    return None, await conn.scalar(self._next_due(now))
                with self._span(claimed, "run"):
                    then = await self.run(conn, claimed, now)
        except Exception as exc:
            if claimed is None:
                raise
            await self._record_failure(claimed, exc, now, still_claimable=True)
            return claimed, None
        self.service.wake_relay()
        if then is not None:
            with self._span(claimed, "call"):
                await self._finish(claimed, then)
        return claimed, None

    # -- internals -------------------------------------------------------------------------------

    def _span(self, row: Row[Any], what: str) -> AbstractContextManager[Any]:
        traceparent = self.traceparent(row) if self.traceparent is not None else None
        return work_span(
            self.service.name,
            f"{self.name} {what}",
            traceparent,
            lead_id=getattr(row, "lead_id", None),
            campaign_id=getattr(row, "campaign_id", None),
            attributes={"leadstream.timers": self.name, "leadstream.timer_kind": str(getattr(row, "kind", ""))},
        )

    def _claim(self, now: datetime) -> Select[Any]:
        return self.claimable(now).limit(1).with_for_update(of=self.table, skip_locked=True)

    def _next_due(self, now: datetime) -> Select[Any]:
        """The earliest ``claimable_at`` of the rows claimable within the idle maximum (NULL: none).

        Not the first row in the domain's order: that order is not always by due time (discovery's searches run
        the least recently worked on first), and the loop must not nap past any row. Rows claimable already (locked
        by another replica, or due since the claim) give ``now``: the loop looks again after the poll interval."""
        assert self.pace is not None
        horizon = timedelta(seconds=self.idle_max * self.pace)
        at = self.claimable_at if self.claimable_at is not None else self.due
        earliest = func.min(func.coalesce(at, literal(now, DateTime(timezone=True))))
        return self.claimable(now + horizon).order_by(None).with_only_columns(earliest, maintain_column_froms=True)

    def _key(self, row: Row[Any]) -> ColumnElement[bool]:
        return and_(*[c == getattr(row, c.name) for c in self.table.primary_key.columns])

    async def _finish(self, row: Row[Any], then: Then[Any]) -> None:
        """Make the call, then record its result; a database outage meanwhile is waited out (until stop)."""
        self._calling = True
        try:
            try:
                result = await then.call()
            except Exception as exc:
                await self._record_failure(row, exc, self.now())
                return
            while True:
                now = self.now()
                try:
                    async with self.service.engine.begin() as conn:
                        await then.record(conn, result, now)
                except Exception as exc:
                    if await self._fault(exc) is not Fault.TRANSIENT:
                        await self._record_failure(row, exc, now)
                        return
                    self.healthy = False
                    log.warning("%s: cannot record a call's result; retrying", self.name, extra={"error": repr(exc)})
                    if await self.backoff.wait(self._stop):
                        return  # stopping: what the call did is left to the domain's reconciliation
                    continue
                self.healthy = True
                self.backoff.reset()
                self.service.wake_relay()
                return
        finally:
            self._calling = False

    async def _fault(self, exc: BaseException) -> Fault:
        return await judge(exc, lambda: ping(self.service.engine))

    def _failure(self, exc: BaseException, fault: Fault, used: int, now: datetime) -> Failure:
        """The consumers' decision (:func:`~.consuming.policy.after_failure`), with a row's waits: any length."""
        step = after_failure(
            fault,
            used,
            max_attempts=self.schedule.max_attempts,
            backoff_s=backoff_delay(used, self.schedule.retry_initial_s, self.schedule.retry_max_s),
            wait_s=min(retry_after(exc) or 0.0, self.schedule.max_retry_after_s),
            inline_max_s=math.inf,
            permanent=isinstance(exc, ProviderError) and not exc.transient,
        )
        retry_at = None if step.act is Act.DEAD_LETTER else now + timedelta(seconds=step.delay_s)
        return Failure(exc, fault, used + step.counted, retry_at, now)

    async def _record_failure(
        self, row: Row[Any], exc: BaseException, now: datetime, *, still_claimable: bool = False
    ) -> None:
        """Record a failed run on the row locked again (skipped when another replica holds it now).

        ``still_claimable``: the run's transaction was rolled back, so the row is as it was claimed unless another
        replica ran it in the meantime (it is unlocked between the rollback and this): then the row is no longer
        claimable and its outcome is that replica's (a delivery counted a failed attempt after another loop had
        delivered it). A failed call after the commit is recorded whatever its row looks like now."""
        fault = await self._fault(exc)
        if fault is Fault.TRANSIENT:
            raise exc
        bug = fault is Fault.RECORD and not isinstance(exc, ProviderError)
        log.warning("%s: work failed (%s)", self.name, fault, extra={"error": repr(exc)}, exc_info=bug)
        where = self._key(row)
        try:
            async with self.service.engine.begin() as conn:
                claimable = self.claimable(now) if still_claimable else select(self.table)
                relock = claimable.where(where).with_for_update(of=self.table, skip_locked=True)
                fresh = (await conn.execute(relock)).first()
                if fresh is None:
                    return
                failure = self._failure(exc, fault, int(getattr(fresh, self.attempts.name) or 0), now)
                values: dict[str, Any] = {self.attempts.name: failure.attempts}
                if failure.retry_at is not None:
                    values[self.due.name] = failure.retry_at
                await conn.execute(update(self.table).where(where).values(**values))
                await self.failed(conn, fresh, failure)
        except Exception as error:
            if await self._fault(error) is Fault.TRANSIENT:
                raise
            # The domain could not record it: keep the row from being claimed again and again meanwhile.
            log.exception("%s: recording a failure failed", self.name)
            later = now + timedelta(seconds=self.schedule.retry_max_s)
            async with self.service.engine.begin() as conn:
                await conn.execute(update(self.table).where(where).values(**{self.due.name: later}))
            return
        self.service.wake_relay()
