"""The durable-timer claim loop on the real database: replicas share rows, failures by class (record faults
back off then give up, throttles wait without an attempt, transient database errors are not recorded and
make the loop not-ready), work after the commit, stop and wake."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, insert, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.clock import FakeClock
from services.runtime.faults import Fault
from services.runtime.providers import ProviderError, RateLimited
from services.runtime.service import Service
from services.runtime.timers import DurableTimers, Failure, Schedule, Then
from tests.services.runtime.conftest import Probe
from tests.support.kafka import wait_for

Work = Callable[[AsyncConnection, Row[Any], datetime], Awaitable[Then[Any] | None]]


@dataclass
class Rows:
    """A table of due rows of one test, and what the loops did with them."""

    service: Service
    table: Table
    clock: FakeClock = field(default_factory=FakeClock)
    failures: list[tuple[int, Failure]] = field(default_factory=list)
    claims: int = 0

    async def add(self, n: int, *, due: datetime | None = None) -> list[int]:
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

    def timers(self, run: Work, name: str = "test", **overrides: Any) -> DurableTimers:
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
            clock=self.clock,
        )

    async def done(self, conn: AsyncConnection, row: Row[Any], state: str = "done") -> None:
        await conn.execute(update(self.table).where(self.table.c.id == row.id).values(state=state))


@pytest.fixture
async def rows(probe: Probe) -> AsyncIterator[Rows]:
    """A fresh table of due rows in the probe service's database."""
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
    yield Rows(probe.service, table)
    async with probe.service.engine.begin() as conn:
        await conn.run_sync(table.drop)


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


async def test_wake_runs_a_row_that_just_became_due(rows: Rows) -> None:
    await rows.add(1, due=rows.clock.now() + timedelta(hours=1))
    ran = asyncio.Event()

    async def run(conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        await rows.done(conn, row)
        ran.set()

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
