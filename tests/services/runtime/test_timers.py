"""The durable-timer claim loop on the real database: replicas share rows, failures by class (record faults
back off then give up, throttles wait without an attempt, transient database errors are not recorded and
make the loop not-ready), work after the commit, stop and wake; an idle loop naps until the next row is due
(bounded), a loop on a hand-moved clock polls."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, insert, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.clock import Clock, FakeClock, ScaledClock, SystemClock
from services.runtime.faults import Fault
from services.runtime.providers import ProviderError, RateLimited
from services.runtime.service import Service
from services.runtime.timers import DurableTimers, Failure, Schedule, Then
from tests.services.runtime.conftest import Probe
from tests.support.kafka import wait_for
from tests.support.statements import Statements, counting_statements

Work = Callable[[AsyncConnection, Row[Any], datetime], Awaitable[Then[Any] | None]]


@dataclass
class Rows:
    """A table of due rows of one test, and what the loops did with them."""

    service: Service
    table: Table
    clock: FakeClock = field(default_factory=FakeClock)  # the loops' clock, unless a test gives its own
    failures: list[tuple[int, Failure]] = field(default_factory=list)
    claims: int = 0

    async def add(self, n: int, *, due: datetime | None = None, conn: AsyncConnection | None = None) -> list[int]:
        if conn is not None:
            result = await conn.execute(
                insert(self.table).returning(self.table.c.id),
                [{"due_at": due or self.clock.now(), "state": "due"} for _ in range(n)],
            )
            return [r.id for r in result]
        async with self.service.engine.begin() as conn:
            result = await conn.execute(
                insert(self.table).returning(self.table.c.id),
                [{"due_at": due or self.clock.now(), "state": "due"} for _ in range(n)],
            )
            return [r.id for r in result]

    async def get(self, row_id: int) -> Row[Any]:
        async with self.service.engine.connect() as conn:
            return (await conn.execute(select(self.table).where(self.table.c.id == row_id))).one()

    def claimable(self, now: datetime) -> Any:
        self.claims += 1
        t = self.table.c
        return select(self.table).where(t.state == "due", t.due_at <= now).order_by(t.due_at, t.id)

    async def failed(self, conn: AsyncConnection, row: Row[Any], failure: Failure) -> None:
        self.failures.append((row.id, failure))
        if failure.retry_at is None:
            await conn.execute(update(self.table).where(self.table.c.id == row.id).values(state="given_up"))

    def timers(
        self,
        run: Work,
        name: str = "test",
        *,
        clock: Clock | None = None,
        idle_max_s: float | None = None,
        **overrides: Any,
    ) -> DurableTimers:
        schedule = Schedule(max_attempts=3, retry_initial_s=10.0, retry_max_s=60.0, poll_interval_s=0.05)
        return DurableTimers(
            name=name,
            service=self.service,
            table=self.table,
            due=self.table.c.due_at,
            attempts=self.table.c.attempts,
            claimable=self.claimable,
            run=run,
            failed=self.failed,
            schedule=replace(schedule, **overrides),
            clock=clock or self.clock,
            idle_max_s=idle_max_s,
        )

    async def done(self, conn: AsyncConnection, row: Row[Any], state: str = "done") -> None:
        await conn.execute(update(self.table).where(self.table.c.id == row.id).values(state=state))


@asynccontextmanager
async def _rows(probe: Probe) -> AsyncIterator[Rows]:
    table = Table(
        f"timers_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("due_at", DateTime(timezone=True), nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("state", Text, nullable=False),
    )
    async with probe.service.engine.begin() as conn:
        await conn.run_sync(table.create)
    try:
        yield Rows(probe.service, table)
    finally:
        async with probe.service.engine.begin() as conn:
            await conn.run_sync(table.drop)


@pytest.fixture
async def rows(probe: Probe) -> AsyncIterator[Rows]:
    """A fresh table of due rows in the probe service's database."""
    async with _rows(probe) as made:
        yield made


@pytest.fixture
async def other_rows(probe: Probe) -> AsyncIterator[Rows]:
    """A second table, for a loop to compare with."""
    async with _rows(probe) as made:
        yield made


@asynccontextmanager
async def counting(rows: Rows) -> AsyncIterator[Statements]:
    """Count the statements about ``rows``' table while inside."""
    async with counting_statements(rows.service.engine, rows.table.name) as seen:
        yield seen


@asynccontextmanager
async def looping(timers: DurableTimers) -> AsyncIterator[None]:
    """Run ``timers.loop`` while inside."""
    stop = asyncio.Event()
    task = asyncio.create_task(timers.loop(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def _statement_timeout(conn: AsyncConnection) -> None:
    """Raise a real transient database error (57014, statement timeout) in ``conn``'s transaction."""
    await conn.execute(text("SET LOCAL statement_timeout = '10ms'"))
    await conn.execute(text("SELECT pg_sleep(1)"))


async def test_two_replicas_share_the_rows_and_run_each_once(rows: Rows) -> None:
    ids = await rows.add(40)
    ran: Counter[int] = Counter()
    both = asyncio.Event()

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        ran[row.id] += 1
        if len(ran) >= 2:
            both.set()
        # The first row of each replica is held until the other one holds a row too: two claims at once,
        # the second skipping the row the first has locked.
        await asyncio.wait_for(both.wait(), timeout=10)
        await rows.done(conn, row)

    a, b = rows.timers(run, "a"), rows.timers(run, "b")
    counts = await asyncio.gather(a.run_due(), b.run_due())
    assert sorted(ran) == sorted(ids) and set(ran.values()) == {1}
    assert sum(counts) == 40 and min(counts) > 0, counts


async def test_a_failing_row_backs_off_then_gives_up_and_holds_no_other(rows: Rows) -> None:
    bad, good = await rows.add(2)

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        await rows.done(conn, row, "half-done" if row.id == bad else "done")
        if row.id == bad:
            raise RuntimeError("a bug")  # its half-done work is rolled back

    timers = rows.timers(run)
    assert await timers.run_due() == 2
    assert (await rows.get(good)).state == "done"
    first = await rows.get(bad)
    assert (first.state, first.attempts, first.due_at) == ("due", 1, rows.clock.now() + timedelta(seconds=10))
    assert await timers.run_once() is None  # not due before its backoff
    rows.clock.advance(timedelta(seconds=10))
    assert await timers.run_due() == 1
    assert (await rows.get(bad)).due_at == rows.clock.now() + timedelta(seconds=20)  # doubled
    rows.clock.advance(timedelta(seconds=20))
    assert await timers.run_due() == 1
    last = await rows.get(bad)
    assert (last.state, last.attempts) == ("given_up", 3)
    assert [(f.attempts, f.retry_at is None, f.fault) for _, f in rows.failures] == [
        (1, False, Fault.RECORD),
        (2, False, Fault.RECORD),
        (3, True, Fault.RECORD),
    ]
    assert rows.failures[-1][1].detail == "RuntimeError: a bug"


async def test_a_failure_is_not_recorded_on_a_row_another_replica_ran_meanwhile(rows: Rows) -> None:
    # Between a failed run's rollback and the recording of its failure the row is unlocked: another replica may
    # claim it and finish it. Its outcome stands; the failure is not counted on it.
    (row_id,) = await rows.add(1)
    calls: Counter[str] = Counter()

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        calls["runs"] += 1
        if calls["runs"] == 1:
            raise RuntimeError("the first replica's run fails")
        await rows.done(conn, row)

    a, b = rows.timers(run, "a"), rows.timers(run, "b")
    judge = a._fault

    async def b_runs_first(exc: BaseException) -> Fault:
        assert await b.run_once() is not None  # the other replica claims the unlocked row and finishes it
        return await judge(exc)

    a._fault = b_runs_first  # type: ignore[method-assign]
    assert await a.run_once() is not None
    done = await rows.get(row_id)
    assert (done.state, done.attempts, calls["runs"]) == ("done", 0, 2)
    assert rows.failures == []


async def test_a_throttled_row_waits_as_asked_without_an_attempt(rows: Rows) -> None:
    (row_id,) = await rows.add(1)

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        raise RateLimited(retry_after_s=3600)

    await rows.timers(run, max_retry_after_s=90).run_due()
    row = await rows.get(row_id)
    assert (row.state, row.attempts, row.due_at) == ("due", 0, rows.clock.now() + timedelta(seconds=90))
    assert rows.failures[0][1].fault is Fault.THROTTLED


async def test_a_permanent_provider_error_gives_up_at_once(rows: Rows) -> None:
    (row_id,) = await rows.add(1)

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        raise ProviderError("403 forbidden", transient=False, status=403)

    await rows.timers(run).run_due()
    assert ((await rows.get(row_id)).state, len(rows.failures)) == ("given_up", 1)


async def test_a_transient_database_error_is_not_recorded_and_makes_the_loop_not_ready(rows: Rows) -> None:
    (row_id,) = await rows.add(1)
    outage = asyncio.Event()
    outage.set()
    tries = 0

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        nonlocal tries
        tries += 1
        if outage.is_set():
            await _statement_timeout(conn)
        await rows.done(conn, row)

    timers = rows.timers(run)
    with pytest.raises(Exception, match="statement timeout"):
        await timers.run_once()
    assert ((await rows.get(row_id)).attempts, rows.failures) == (0, [])  # nothing recorded, no attempt used

    stop = asyncio.Event()
    loop = asyncio.create_task(timers.loop(stop))
    try:
        await wait_for(lambda: not timers.healthy and tries >= 3, what="the loop retrying, not ready")
        outage.clear()
        await wait_for(lambda: timers.healthy, what="the loop ready again")
        assert (await rows.get(row_id)).state == "done"
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=10)
    assert (await rows.get(row_id)).attempts == 0 and rows.failures == []


async def test_work_after_the_commit_is_recorded_once_the_database_answers(rows: Rows) -> None:
    (row_id,) = await rows.add(1)
    calls: list[str] = []
    records = 0

    async def call() -> str:
        calls.append((await rows.get(row_id)).state)  # what another connection sees: the claim committed
        return "answer"

    async def record(conn: AsyncConnection, result: str, now: datetime) -> None:
        nonlocal records
        records += 1
        if records == 1:
            await _statement_timeout(conn)
        await conn.execute(update(rows.table).where(rows.table.c.id == row_id).values(state=result))

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> Then[str]:
        await rows.done(conn, row, "intent")
        return Then(call, record)

    await rows.timers(run).run_due()
    assert calls == ["intent"]  # called once, after the intent committed
    assert (records, (await rows.get(row_id)).state) == (2, "answer")


async def test_stop_abandons_a_claim_in_progress(rows: Rows) -> None:
    (row_id,) = await rows.add(1)
    started = asyncio.Event()

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        await rows.done(conn, row, "half-done")
        started.set()
        await asyncio.Event().wait()  # a provider that never answers

    stop = asyncio.Event()
    loop = asyncio.create_task(rows.timers(run).loop(stop))
    await asyncio.wait_for(started.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(loop, timeout=5)
    assert (await rows.get(row_id)).state == "due"  # rolled back: claimed again after a restart


def marking(rows: Rows) -> tuple[Any, asyncio.Event]:
    """A ``run`` that marks its row done and sets the returned event."""
    ran = asyncio.Event()

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        await rows.done(conn, row)
        ran.set()

    return run, ran


async def test_wake_runs_a_row_that_just_became_due(rows: Rows) -> None:
    await rows.add(1, due=rows.clock.now() + timedelta(hours=1))
    run, ran = marking(rows)
    timers = rows.timers(run, poll_interval_s=3600)
    stop = asyncio.Event()
    loop = asyncio.create_task(timers.loop(stop))
    try:
        await wait_for(lambda: rows.claims >= 1, what="a first look (nothing due yet; then idle for an hour)")
        rows.clock.advance(timedelta(hours=1))
        timers.wake()
        await asyncio.wait_for(ran.wait(), timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=10)


async def _never(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
    raise AssertionError(f"row {row.id} ran: none was due")


async def test_an_idle_loop_on_a_running_clock_claims_far_less_often_than_it_polls(
    rows: Rows, other_rows: Rows
) -> None:
    # Two idle loops side by side, both polling every 0.05 s: one on a hand-moved clock (polls at every interval),
    # one on the real clock, which naps until the next row is due (none: its idle maximum, 1 s). The window is
    # the polling loop's 60 claims (3 s or more), not a time.
    polling = other_rows.timers(_never, "polling", poll_interval_s=0.05)
    idle = rows.timers(_never, "idle", clock=SystemClock(), poll_interval_s=0.05, idle_max_s=1.0)
    await rows.add(1, due=datetime.now(UTC) + timedelta(days=1))  # beyond the horizon: changes nothing
    async with counting(other_rows) as polled, counting(rows) as seen, looping(polling), looping(idle):
        await wait_for(lambda: polled.claims >= 60, what="60 polls of the polling loop")
        claims, looks = seen.claims, seen.looks
    # Before: 60 claims, as many as the polling loop's. Now one a second at most (3-4, and its first).
    assert claims <= 15, (claims, polled.claims)
    assert looks <= claims  # one look ahead per empty claim, in its transaction


async def test_an_idle_loop_naps_until_the_next_row_is_due(rows: Rows) -> None:
    # Half an hour of campaign time ahead at 1800x: one real second. The idle maximum (60 s) is far beyond the
    # deadline: the row runs because the loop napped until it was due, not because it looked again.
    clock = ScaledClock(datetime.now(UTC), 1800.0)
    due = clock.now() + timedelta(minutes=30)
    await rows.add(1, due=due)
    ran: list[datetime] = []

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        await rows.done(conn, row)
        ran.append(now)

    async with counting(rows) as seen, looping(rows.timers(run, clock=clock, poll_interval_s=0.05, idle_max_s=60.0)):
        await wait_for(lambda: ran, timeout_s=30, what="the row run when due, without a wake")
    assert ran[0] >= due
    assert seen.claims <= 10, seen.claims  # not polled for: a look, a nap until due, the claim (and maybe one early)


async def test_a_row_another_process_makes_due_is_claimed_within_the_idle_maximum(rows: Rows) -> None:
    run, ran = marking(rows)
    clock = SystemClock()
    async with counting(rows) as seen, looping(rows.timers(run, clock=clock, idle_max_s=1.0)):
        await wait_for(lambda: seen.claims >= 1, what="a first look: nothing due, a nap of the idle maximum")
        await rows.add(1, due=clock.now())  # no wake: as if another replica or the CLI had written it
        await asyncio.wait_for(ran.wait(), timeout=20)


async def test_wake_runs_a_row_at_once_on_a_running_clock(rows: Rows) -> None:
    run, ran = marking(rows)
    clock = SystemClock()
    timers = rows.timers(run, clock=clock, idle_max_s=60.0)
    async with counting(rows) as seen, looping(timers):
        await wait_for(lambda: seen.claims >= 1, what="a first look: nothing due, a nap of a minute")
        await rows.add(1, due=clock.now())
        timers.wake()
        await asyncio.wait_for(ran.wait(), timeout=20)


async def test_a_loop_on_a_hand_moved_clock_polls_as_before(rows: Rows) -> None:
    # A FakeClock makes rows due by moving, without a wake: the loop keeps looking every poll interval (and never
    # looks ahead), whatever its idle maximum.
    await rows.add(1, due=rows.clock.now() + timedelta(hours=1))
    run, ran = marking(rows)
    async with counting(rows) as seen, looping(rows.timers(run, poll_interval_s=0.05, idle_max_s=3600.0)):
        await wait_for(lambda: seen.claims >= 5, what="five polls while nothing is due")
        rows.clock.advance(timedelta(hours=1))
        await asyncio.wait_for(ran.wait(), timeout=20)
    assert seen.looks == 0  # no look ahead
