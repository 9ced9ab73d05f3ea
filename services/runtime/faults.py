"""What a failure means, and how long to wait before trying again: the one error classifier and the
one backoff of the runtime.

Every loop that retries (the consumer core, the outbox relay, the durable timers, the provider
clients) asks :func:`classify` what an exception is, and waits with :class:`Backoff` (or
:func:`sleep_unless_stopped`, or :func:`nap` when idle); work that a stop abandons runs in :func:`unless_stopped`:

==================  ===============================================  ==========================================
class               examples                                         what the loop does
==================  ===============================================  ==========================================
``TRANSIENT``       database or broker unreachable; SQLSTATE 08       retry without limit, report not-ready,
                    (connection), 40 (serialization failure,          never dead-letter: it is not the record's
                    deadlock), 53 (too many connections, disk         fault
                    full), 57 (statement timeout, admin shutdown,
                    cannot connect now), 58 (I/O), 25006
                    (read-only after a failover), 55P03 (lock
                    timeout); a pool timeout; SQLAlchemy's
                    connection errors without a SQLSTATE; a broker
                    error other than a refusal of the record itself;
                    :class:`Unavailable` (the key store's missing
                    key-encryption key); :class:`AttemptTimedOut`
                    (an attempt past its deadline: e.g. a
                    connection that never answers again)
``RECORD``          decode or validation errors; SQLSTATE 22          bounded retries, then dead-letter (or
                    (data: bad encoding, NUL, out of range), 23       park) with the error; everything behind
                    (constraint), 42 (a handler's own SQL bug);       it goes on
                    asyncpg's client-side data errors; a record
                    the broker refuses (too large, invalid); a
                    provider's error; any other exception (a bug)
``SUSPECT``         a refused or reset connection, a timeout          ask the dependency (``SELECT 1``): if it
                    (``OSError``) not raised through the database     does not answer, TRANSIENT, else RECORD
                    driver: an outage raises them, but so does a
                    handler's call to a provider
``THROTTLED``       a provider's rate limit (``retry_after_s``)       wait as asked without using an attempt;
                                                                      never dead-lettered for being throttled
==================  ===============================================  ==========================================

The classifier looks through wrappers (SQLAlchemy's ``DBAPIError.orig`` and ``__cause__``), so a
deadlock is a deadlock whether asyncpg or SQLAlchemy raised it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import asyncpg
from aiokafka import errors as kafka_errors
from sqlalchemy import exc as sa_exc

T = TypeVar("T")


class Unavailable(Exception):
    """Raised by a dependency that answers but cannot serve for a reason of its own, never the record's (the key
    store without the key-encryption key a stored key needs): TRANSIENT, so nothing is dead-lettered for it."""


class AttemptTimedOut(TimeoutError):
    """An attempt that did not finish within its deadline and was cancelled (rolled back, without effect): a
    connection that never answers again (half-open after a network fault) or a database that does not. TRANSIENT:
    retried on fresh connections without limit, never the record's fault."""


class Fault(StrEnum):
    """Why something failed, which decides how it is retried (see the module's table)."""

    TRANSIENT = "transient"
    RECORD = "record"
    SUSPECT = "suspect"
    THROTTLED = "throttled"


TRANSIENT_SQLSTATE_CLASSES: dict[str, str] = {
    "08": "connection exception",
    "40": "transaction rollback (serialization failure, deadlock)",
    "53": "insufficient resources (too many connections, disk full, out of memory)",
    "57": "operator intervention (statement timeout, admin shutdown, cannot connect now)",
    "58": "system error (I/O)",
}
"""SQLSTATE classes (first two characters) that say the database, not the record, is the problem."""

TRANSIENT_SQLSTATES: dict[str, str] = {
    "25006": "read-only SQL transaction (connected to a replica, e.g. after a failover)",
    "55P03": "lock not available (lock timeout)",
}
"""Single SQLSTATEs of other classes that are transient too."""

KAFKA_RECORD_REFUSALS: tuple[type[kafka_errors.KafkaError], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidMessageError,
    kafka_errors.InvalidTimestampError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.PolicyViolationError,
)
"""Broker (or client) answers that refuse a record for what it is: sending it again cannot succeed."""


def sqlstate_fault(sqlstate: str) -> Fault:
    """The class of a Postgres error code (``"40P01"`` -> TRANSIENT, ``"22021"`` -> RECORD)."""
    if sqlstate in TRANSIENT_SQLSTATES or sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES:
        return Fault.TRANSIENT
    return Fault.RECORD


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (SQLAlchemy's ``orig``, explicit ``raise ... from``), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "orig", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__


def _sqlstate(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def classify(exc: BaseException) -> Fault:
    """What ``exc`` says about its cause; see the module's table."""
    suspect = False
    for e in _chain(exc):
        if getattr(e, "retry_after_s", None) is not None:
            return Fault.THROTTLED
        if isinstance(e, Unavailable | AttemptTimedOut):
            return Fault.TRANSIENT
        code = _sqlstate(e)
        if code is not None:
            return sqlstate_fault(code)
        if isinstance(e, sa_exc.TimeoutError):  # the connection pool had no connection to give
            return Fault.TRANSIENT
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return Fault.TRANSIENT
        if isinstance(e, asyncpg.InterfaceError):
            # asyncpg's client-side data errors (a value it cannot encode) are ValueErrors: the record's
            # fault. Its other interface errors are about the connection (closed, in a bad state).
            return Fault.RECORD if isinstance(e, ValueError) else Fault.TRANSIENT
        if isinstance(e, asyncpg.exceptions.InternalClientError):  # e.g. a statement cache gone stale
            return Fault.TRANSIENT
        if isinstance(e, KAFKA_RECORD_REFUSALS):
            return Fault.RECORD
        if isinstance(e, kafka_errors.KafkaError):
            return Fault.TRANSIENT
        if isinstance(e, ConnectionError | TimeoutError | OSError):
            suspect = True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        # A driver-level connection problem without a SQLSTATE: SQLAlchemy raised it for the database's
        # connection (a refused or reset one included), not for a handler's own call to a provider.
        return Fault.TRANSIENT
    if suspect:
        return Fault.SUSPECT
    return Fault.RECORD


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE ``exc`` or what it wraps carries (None when it is not a database error)."""
    return next((code for e in _chain(exc) if (code := _sqlstate(e)) is not None), None)


def describe(exc: BaseException) -> str:
    """An error as a dead letter or a log line tells it: type, SQLSTATE when it has one, and message."""
    code = sqlstate_of(exc)
    return f"{type(exc).__name__}{f' (SQLSTATE {code})' if code else ''}: {exc}"


def retry_after(exc: BaseException) -> float | None:
    """The wait a THROTTLED error asks for, in seconds (None when it names none)."""
    for e in _chain(exc):
        value = getattr(e, "retry_after_s", None)
        if value is not None:
            return max(float(value), 0.0)
    return None


def backoff_delay(
    attempt: int, initial_s: float, max_s: float, jitter: float = 0.0, rng: random.Random | None = None
) -> float:
    """The wait before retry number ``attempt + 1``: ``initial_s * 2**attempt`` capped at ``max_s``.

    ``jitter`` (0..1) takes up to that fraction off at random, so replicas that failed together do not
    retry together; 0 gives the plain exponential delay (deterministic, for tests).
    """
    base = min(initial_s * 2 ** min(attempt, 62), max_s)
    if jitter <= 0:
        return float(base)
    return float(base * (1 - min(jitter, 1.0) * (rng or random).random()))


@dataclass
class Backoff:
    """Exponential backoff with jitter for a retry loop: ``await backoff.wait(stop)`` after each failure,
    ``backoff.reset()`` after a success."""

    initial_s: float
    max_s: float
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The next wait (and count the attempt)."""
        delay = backoff_delay(self.attempt, self.initial_s, self.max_s, self.jitter, self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial_s``."""
        self.attempt = 0

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Sleep the next delay, or less when ``stop`` is set meanwhile; True when stopped."""
        return await sleep_unless_stopped(stop, self.next_delay())


async def sleep_unless_stopped(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when ``stop`` is set (a SIGTERM must not wait)."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def nap(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """An idle loop's wait: until ``wake`` is set (new work), ``stop`` is set (a SIGTERM must not wait for the
    next poll) or ``seconds`` pass."""
    if stop.is_set() or wake.is_set():
        return
    woken = asyncio.ensure_future(wake.wait())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({woken, stopped}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        stopped.cancel()


async def unless_stopped(
    stop: asyncio.Event, work: Awaitable[T], *, cancel: Callable[[], bool] = lambda: True
) -> T | None:
    """``await work`` unless ``stop`` is set first: then it is cancelled (its transaction rolls back) and None is
    returned, unless ``cancel()`` says its effect is under way (then it is awaited to the end)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done() and cancel():
        await cancel_and_wait([task])
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error  # it failed while it was being cancelled: as awaiting it would have raised
        return None
    return await task


CANCEL_AGAIN_S = 1.0
"""How long :func:`cancel_and_wait` gives a cancelled task to end before cancelling it again."""


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], *, again_after_s: float = CANCEL_AGAIN_S) -> None:
    """Cancel ``tasks`` and return once every one has ended, cancelling again each still running ``again_after_s``
    later.

    One ``cancel()`` does not always end a task: on Python 3.11, ``asyncio.wait_for`` drops a cancellation that
    arrives just as the work it waits for completes (it returns the work's result instead; CPython gh-86296, fixed in
    3.12), and the task goes on. A loop in such a task (a timer that sleeps and measures) then runs for ever, and
    whoever awaits it after one cancel waits for ever: a consumer whose poll loop failed waited so for its lag
    timer and never restarted (found by the Postgres-outage test, 2026-12-06). Cancelling again ends it.

    What the tasks ended with is retrieved, as ``gather(..., return_exceptions=True)`` would: the caller reads it from
    a task when it matters, and asyncio does not log an error nobody asked for as never retrieved."""
    every = list(tasks)
    pending = {t for t in every if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_after_s)
    for task in every:
        if not task.cancelled():
            task.exception()
