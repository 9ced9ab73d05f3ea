"""The decision after a failed attempt (a pure function) and the database check of a suspect error."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from services.runtime.consuming.policy import Act, Step, after_failure, judge, within
from services.runtime.db import ping
from services.runtime.faults import AttemptTimedOut, Fault, classify
from services.runtime.providers import RateLimited


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
