"""The error classifier on errors the real Postgres (through SQLAlchemy and through asyncpg) and the real
broker raise, and the backoff's delays."""

from __future__ import annotations

import asyncio
import gc
import random
import sys

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.runtime.faults import (
    Backoff,
    Fault,
    backoff_delay,
    cancel_and_wait,
    classify,
    retry_after,
    sleep_unless_stopped,
)
from services.runtime.providers import ProviderError, RateLimited


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _sa_error(database_url: str, sql: str, *setup: str) -> BaseException:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for stmt in setup:
                await conn.execute(text(stmt))
            await conn.execute(text(sql))
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError(f"{sql!r} did not fail")


async def _pg_error(database_url: str, sql: str, *args: object) -> BaseException:
    conn = await asyncpg.connect(_plain(database_url))
    try:
        await conn.execute(sql, *args)
    except Exception as exc:
        return exc
    finally:
        await conn.close()
    raise AssertionError(f"{sql!r} did not fail")


@pytest.mark.parametrize(
    ("sql", "setup", "expected"),
    [
        ("SELECT 1/0", (), Fault.RECORD),  # 22012
        ("SELECT chr(0)", (), Fault.RECORD),  # 54000: NUL is refused
        ("SELECT 'x'::int", (), Fault.RECORD),  # 22P02
        ("SELECT * FROM no_such_table_anywhere", (), Fault.RECORD),  # 42P01: a handler's SQL bug
        ("CREATE TEMP TABLE t_ro (x int)", ("SET TRANSACTION READ ONLY",), Fault.TRANSIENT),  # 25006
        ("SELECT pg_sleep(2)", ("SET LOCAL statement_timeout = '50ms'",), Fault.TRANSIENT),  # 57014
    ],
)
async def test_sqlalchemy_errors_by_sqlstate(
    database_url: str, sql: str, setup: tuple[str, ...], expected: Fault
) -> None:
    assert classify(await _sa_error(database_url, sql, *setup)) is expected


async def test_asyncpg_errors_by_sqlstate(database_url: str) -> None:
    assert classify(await _pg_error(database_url, "SELECT $1::text", "a\x00b")) is Fault.RECORD
    assert classify(await _pg_error(database_url, "SELECT 1/0")) is Fault.RECORD
    # asyncpg's own client-side refusal of a value (a str for an integer parameter)
    assert classify(await _pg_error(database_url, "SELECT $1::int", "seven")) is Fault.RECORD


async def test_copy_refusals_are_record_faults(database_url: str) -> None:
    # Binary COPY (the projection's writes): asyncpg refuses a value it cannot encode on the client side
    # with a plain TypeError, and Postgres refuses a NUL in text with 22021; neither is an outage.
    conn = await asyncpg.connect(_plain(database_url))
    try:
        await conn.execute("CREATE TEMP TABLE copy_faults (n int, s text)")
        for record in [("seven", "x"), (1, "a\x00b")]:
            with pytest.raises(Exception) as caught:
                await conn.copy_records_to_table("copy_faults", records=[record])
            assert classify(caught.value) is Fault.RECORD, caught.value
    finally:
        await conn.close()


async def test_a_deadlock_is_transient(database_url: str) -> None:
    a = await asyncpg.connect(_plain(database_url))
    b = await asyncpg.connect(_plain(database_url))
    try:
        await a.execute("CREATE TABLE IF NOT EXISTS faults_deadlock (id int primary key, v int)")
        await a.execute("INSERT INTO faults_deadlock VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING")
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        await a.execute("UPDATE faults_deadlock SET v = v + 1 WHERE id = 1")
        await b.execute("UPDATE faults_deadlock SET v = v + 1 WHERE id = 2")
        results = await asyncio.gather(
            a.execute("UPDATE faults_deadlock SET v = v + 1 WHERE id = 2"),
            b.execute("UPDATE faults_deadlock SET v = v + 1 WHERE id = 1"),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and getattr(errors[0], "sqlstate", None) == "40P01"
        assert classify(errors[0]) is Fault.TRANSIENT
        for t in (ta, tb):
            await t.rollback()
    finally:
        await a.close()
        await b.close()


async def test_a_pool_timeout_is_transient(database_url: str) -> None:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    try:
        async with engine.connect():
            with pytest.raises(Exception) as caught:
                async with engine.connect():
                    pass
        assert classify(caught.value) is Fault.TRANSIENT
    finally:
        await engine.dispose()


async def test_an_unreachable_database_is_transient_or_suspect(database_url: str) -> None:
    engine = create_async_engine("postgresql+asyncpg://x:y@127.0.0.1:1/none")
    try:
        with pytest.raises(Exception) as caught:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    # A refused connection could be a provider's as well as the database's: the loop asks the database.
    assert classify(caught.value) in {Fault.TRANSIENT, Fault.SUSPECT}
    assert classify(ConnectionRefusedError()) is Fault.SUSPECT
    assert classify(TimeoutError()) is Fault.SUSPECT
    # Through SQLAlchemy's driver layer it is the database's own connection, not a provider's call.
    assert classify(sa_exc.OperationalError("SELECT 1", None, ConnectionRefusedError())) is Fault.TRANSIENT


def test_broker_errors() -> None:
    assert classify(kafka_errors.MessageSizeTooLargeError()) is Fault.RECORD
    assert classify(kafka_errors.RecordTooLargeError()) is Fault.RECORD
    assert classify(kafka_errors.KafkaConnectionError()) is Fault.TRANSIENT
    assert classify(kafka_errors.NotLeaderForPartitionError()) is Fault.TRANSIENT
    assert classify(kafka_errors.KafkaTimeoutError()) is Fault.TRANSIENT


def test_wrapped_errors_are_looked_through() -> None:
    try:
        try:
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock")
        except Exception as inner:
            raise RuntimeError("while handling") from inner
    except RuntimeError as outer:
        assert classify(outer) is Fault.TRANSIENT


def test_provider_errors() -> None:
    assert classify(ProviderError("refused", transient=False)) is Fault.RECORD
    assert classify(ProviderError("503", transient=True)) is Fault.RECORD  # bounded retries, then DLQ
    limited = RateLimited(12.5)
    assert classify(limited) is Fault.THROTTLED
    assert retry_after(limited) == 12.5
    assert retry_after(ValueError()) is None
    assert classify(ValueError("a bug")) is Fault.RECORD


def test_backoff_delays() -> None:
    assert [backoff_delay(n, 0.2, 1.0) for n in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_delay(10_000, 0.2, 5.0) == 5.0  # no overflow on long outages
    rng = random.Random(7)
    jittered = [backoff_delay(3, 1.0, 100.0, 0.5, rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in jittered)
    assert len(set(jittered)) > 100  # replicas that failed together do not retry together
    b = Backoff(0.1, 0.4, jitter=0)
    assert [b.next_delay() for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    b.reset()
    assert b.next_delay() == 0.1


async def test_sleep_unless_stopped_returns_at_once_when_stopped() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await sleep_unless_stopped(stop, 3600) is True
    fresh = asyncio.Event()
    assert await sleep_unless_stopped(fresh, 0) is False


async def test_cancel_and_wait_ends_a_task_whose_first_cancellation_was_dropped() -> None:
    """A loop like the consumer's lag timer: it waits for work with ``wait_for``, round after round. A cancel that
    arrives just as the awaited work completes is dropped by Python 3.11's ``wait_for`` (it returns the work's
    result), and the loop goes on; ``cancel_and_wait`` cancels again and the task ends."""
    work_done = asyncio.Event()
    rounds: list[int] = []

    async def lag_timer() -> None:
        while True:
            rounds.append(await asyncio.wait_for(_when_set(work_done), timeout=3600))
            work_done.clear()

    task = asyncio.create_task(lag_timer())
    await asyncio.sleep(0)  # the timer waits for its work
    work_done.set()
    await asyncio.sleep(0)  # the work completes; the timer is due to resume with its result
    async with asyncio.timeout(30):  # a regression fails here instead of hanging the run
        await cancel_and_wait([task], again_after_s=0.05)
    assert task.cancelled()
    if sys.version_info < (3, 12):
        # The first cancel was dropped (the timer finished that round and began the next), so this is the case the
        # helper is for; Python 3.12's wait_for honours it (then the timer ends in the round it was in).
        assert rounds == [1]


async def _when_set(event: asyncio.Event) -> int:
    await event.wait()
    return 1


async def test_cancel_and_wait_returns_for_tasks_already_done_or_ending_at_once() -> None:
    ready, never = asyncio.Event(), asyncio.Event()
    ready.set()
    done = asyncio.create_task(_when_set(ready))
    await done
    waiting = asyncio.create_task(_when_set(never))
    await asyncio.sleep(0)  # it waits for an event nobody sets
    async with asyncio.timeout(30):
        await cancel_and_wait([done, waiting])
    assert done.result() == 1 and waiting.cancelled()


async def test_cancel_and_wait_retrieves_what_the_tasks_ended_with() -> None:
    """A task that failed is not reported by asyncio as an exception nobody retrieved (as ``gather(...,
    return_exceptions=True)``, which the helper replaced, did not report it)."""
    unretrieved: list[str] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(str(context.get("message"))))
    try:

        async def fails() -> None:
            raise ValueError("lost")

        failed = asyncio.create_task(fails())
        await asyncio.wait([failed])
        await cancel_and_wait([failed])
        unchecked = asyncio.create_task(fails())
        await asyncio.wait([unchecked])
        del failed, unchecked
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert unretrieved == ["Task exception was never retrieved"]  # the task the helper never saw, only
