"""The decision after a failed attempt (a pure function) and the database check of a suspect error."""

from __future__ import annotations

import asyncio
import itertools

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.runtime.consuming.policy import Act, Step, after_failure, judge, within
from services.runtime.db import ping
from services.runtime.faults import AttemptTimedOut, Fault, classify
from services.runtime.notify import dsn
from services.runtime.providers import RateLimited
from tests.support.kafka import wait_for
from tests.support.probe.proxy import TcpProxy


def step(fault: Fault, attempts: int, *, wait_s: float | None = None, permanent: bool = False) -> Step:
    return after_failure(
        fault, attempts, max_attempts=3, backoff_s=0.4, wait_s=wait_s, inline_max_s=3.0, permanent=permanent
    )


def test_transient_is_retried_without_limit_and_without_counting() -> None:
    assert step(Fault.TRANSIENT, 0) == Step(Act.RETRY, 0.4, counted=False)
    assert step(Fault.TRANSIENT, 1_000) == Step(Act.RETRY, 0.4, counted=False)


def test_a_record_fault_is_retried_up_to_the_limit_then_dead_lettered() -> None:
    assert step(Fault.RECORD, 0) == Step(Act.RETRY, 0.4, counted=True)
    assert step(Fault.RECORD, 1) == Step(Act.RETRY, 0.4, counted=True)
    assert step(Fault.RECORD, 2) == Step(Act.DEAD_LETTER, counted=True)  # the third attempt failed
    assert step(Fault.RECORD, 0, permanent=True) == Step(Act.DEAD_LETTER, counted=True)


def test_a_rate_limit_waits_as_asked_inline_up_to_the_cap_then_pauses_never_counted() -> None:
    assert step(Fault.THROTTLED, 50, wait_s=2.0) == Step(Act.RETRY, 2.0, counted=False)
    assert step(Fault.THROTTLED, 50, wait_s=3.0) == Step(Act.RETRY, 3.0, counted=False)
    assert step(Fault.THROTTLED, 50, wait_s=3.5) == Step(Act.PAUSE, 3.5, counted=False)
    assert step(Fault.THROTTLED, 0) == Step(Act.RETRY, 0.4, counted=False)  # no wait named: the backoff


async def test_a_suspect_error_is_an_outage_only_when_the_database_does_not_answer(database_url: str) -> None:
    up = create_async_engine(database_url)
    down = create_async_engine("postgresql+asyncpg://x:y@127.0.0.1:1/none")
    try:
        assert await judge(ConnectionResetError(), lambda: ping(up)) is Fault.RECORD
        assert await judge(ConnectionResetError(), lambda: ping(down)) is Fault.TRANSIENT
        assert await judge(ValueError(), lambda: ping(down)) is Fault.RECORD  # not suspect: not asked
    finally:
        await up.dispose()
        await down.dispose()


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), Fault.TRANSIENT),
        (RuntimeError("a bug"), Fault.RECORD),
        (RateLimited(1.0), Fault.THROTTLED),
        (AttemptTimedOut("did not finish"), Fault.TRANSIENT),
    ],
)
async def test_only_suspect_errors_are_checked_against_the_database(exc: BaseException, fault: Fault) -> None:
    async def never() -> None:
        raise AssertionError("the database is asked only about suspect errors")

    assert await judge(exc, never) is fault


async def test_an_attempt_past_its_deadline_is_cancelled_and_is_an_outage() -> None:
    cancelled = asyncio.Event()

    async def hangs() -> None:  # a statement on a half-open connection: no answer, no error, ever
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(AttemptTimedOut) as raised:
        await within(hangs, 0.05)
    assert cancelled.is_set()
    assert classify(raised.value) is Fault.TRANSIENT


async def test_a_timeout_of_the_attempts_own_within_the_deadline_is_not_the_deadlines() -> None:
    async def own_timeout() -> None:  # e.g. a provider call that timed out: suspect, judged like any other
        raise TimeoutError("the provider did not answer")

    async def quick() -> int:
        return 7

    with pytest.raises(TimeoutError) as raised:
        await within(own_timeout, 30)
    assert not isinstance(raised.value, AttemptTimedOut)
    assert classify(raised.value) is Fault.SUSPECT
    assert await within(quick, 30) == 7


async def test_a_copy_paused_for_writing_when_its_connection_dies_is_given_up_at_the_deadline(
    database_url: str,
) -> None:
    """The likeliest way the projection stalled after a Postgres kill under load (tests/reliability/
    test_fleet_faults.py, once): a batch's COPY that the server reads slower than it is sent pauses for writing
    (asyncpg waits for the transport's ``resume_writing``), and a connection lost meanwhile never resumes it.
    asyncpg 0.32 then waits for ever on a closed connection, with no error and no timeout (its
    ``command_timeout`` does not cover that wait): the batch, and the consumer behind it, stood still while
    healthy. :func:`within` ends it.

    If this test fails because the COPY raised a connection error by itself, asyncpg fixed the hang: the deadline
    stays useful for the half-open cases (tests/reliability/test_*_db_outage.py)."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    conn = await asyncpg.connect(
        dsn(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)), command_timeout=60
    )
    try:
        await conn.execute("CREATE TEMPORARY TABLE copied (a text)")
        # The binary COPY's signature starts its data: from there the proxy reads nothing (the server's side goes).
        frozen = proxy.freeze_at(b"PGCOPY\n", drain=False)
        copy = asyncio.ensure_future(
            conn.copy_records_to_table("copied", records=itertools.repeat(("x" * 1000,), 200_000))
        )
        await wait_for(frozen.is_set, timeout_s=30, what="the COPY's data frozen")
        protocol = conn._protocol  # the state this test is about: asyncpg has no public word for it
        await wait_for(lambda: not protocol.writing_allowed.is_set(), timeout_s=30, what="the COPY paused")
        await proxy.cut()  # the connection dies while the COPY waits to write (the kernel says so: reset)
        await wait_for(conn.is_closed, timeout_s=30, what="asyncpg to see the connection closed")
        with pytest.raises(AttemptTimedOut):  # closed, and the COPY still waited a second later
            await within(lambda: copy, 1.0)
        assert copy.cancelled()
    finally:
        conn.terminate()
        await proxy.cut()
