"""What a consumer does after a failure: the decision as a pure function (:func:`after_failure`), the one
check that needs I/O (:func:`judge`: is a SUSPECT error an outage?), and the loop that applies them
(:class:`Retry`, for both modes). See docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from ..faults import AttemptTimedOut, Backoff, Fault, classify, retry_after, sleep_unless_stopped
from ..settings import RuntimeSettings

T = TypeVar("T")
log = logging.getLogger(__name__)

DATABASE_CHECK_TIMEOUT_S = 5.0
"""How long the database may take to answer ``SELECT 1`` when an error could be an outage."""


class PermanentError(Exception):
    """Raised by a handler for a record that can never succeed: dead-lettered without retries."""


class Abandoned(Exception):
    """Work given up without effect: the consumer stops, lost the partition, must poll again first, or
    pauses the partition for ``pause_s`` (a rate limit); the record is read again."""

    def __init__(self, reason: str, pause_s: float = 0.0) -> None:
        super().__init__(reason)
        self.pause_s = pause_s


class Act(StrEnum):
    """The three answers to a failed attempt."""

    RETRY = "retry"
    """Wait ``delay_s``, then try again."""
    DEAD_LETTER = "dead_letter"
    """Give up on the record: to the DLQ with the error; everything behind it goes on."""
    PAUSE = "pause"
    """A wait too long to sit through: stop reading the partition for ``delay_s`` and read the record again."""


@dataclass(frozen=True)
class Step:
    """What to do after a failed attempt, and whether the attempt counts towards the limit."""

    act: Act
    delay_s: float = 0.0
    counted: bool = False


def after_failure(
    fault: Fault,
    attempts: int,
    *,
    max_attempts: int,
    backoff_s: float,
    wait_s: float | None = None,
    inline_max_s: float,
    permanent: bool = False,
) -> Step:
    """The step after an attempt failed with ``fault`` (SUSPECT already judged), ``attempts`` earlier
    counted failures before it.

    TRANSIENT: retry without limit (not counted). THROTTLED: wait as asked (``wait_s``, else
    ``backoff_s``) without counting, inline up to ``inline_max_s``, else pause the partition. RECORD:
    retry with backoff until ``max_attempts`` attempts failed (``permanent``: at once), then dead-letter.
    """
    if fault is Fault.TRANSIENT or fault is Fault.SUSPECT:
        return Step(Act.RETRY, backoff_s)
    if fault is Fault.THROTTLED:
        delay = backoff_s if wait_s is None else wait_s
        return Step(Act.RETRY if delay <= inline_max_s else Act.PAUSE, delay)
    if permanent or attempts + 1 >= max_attempts:
        return Step(Act.DEAD_LETTER, counted=True)
    return Step(Act.RETRY, backoff_s, counted=True)


async def judge(exc: BaseException, ping: Callable[[], Awaitable[object]]) -> Fault:
    """``classify(exc)``, with a SUSPECT error settled by asking the database: no answer within
    :data:`DATABASE_CHECK_TIMEOUT_S` makes it TRANSIENT (an outage), an answer makes it the record's."""
    fault = classify(exc)
    if fault is not Fault.SUSPECT:
        return fault
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_S):
            await ping()
    except Exception:
        return Fault.TRANSIENT
    return Fault.RECORD


async def within(attempt: Callable[[], Awaitable[T]], deadline_s: float) -> T:
    """``await attempt()``, cancelled once ``deadline_s`` seconds went by: then :class:`AttemptTimedOut`
    (TRANSIENT), whatever the cancellation made of it; a timeout of the attempt's own passes as it is.

    A connection that never answers again (its server's side gone after a network fault, the client's socket
    still open) raises nothing, ever: without a deadline the attempt, and the consumer behind it, would wait for
    good while reporting healthy (tests/reliability/test_projection_db_outage.py leaves one half-open)."""
    deadline = asyncio.timeout(deadline_s)
    try:
        async with deadline:
            return await attempt()
    except Exception as exc:
        if deadline.expired():
            raise AttemptTimedOut(f"did not finish within {deadline_s:g} s; cancelled, without effect") from exc
        raise


class Retry:
    """Runs an attempt until it succeeds, retrying by cause (:func:`after_failure`): the per-record mode's
    handler transactions and the batch mode's batches alike. Each failure is logged as ``what`` failed."""

    def __init__(self, settings: RuntimeSettings, ping: Callable[[], Awaitable[object]], what: str) -> None:
        self.settings = settings
        self.ping = ping
        self.what = what
        self.working = True
        """False while a transient failure is being retried (the consumer reports not-ready meanwhile)."""

    async def __call__(
        self,
        attempt: Callable[[], Awaitable[T]],
        max_attempts: int = 1,
        *,
        stop: asyncio.Event | None = None,
        inline_max_s: float = math.inf,
        go_on: Callable[[], bool] = lambda: True,
        give_up: Callable[[BaseException, int], Awaitable[T]] | None = None,
        extra: Mapping[str, object] | None = None,
        what: str | None = None,
        deadline_s: float | None = None,
        giving_up: str = "dead-lettering",
    ) -> T:
        """``await attempt()`` until it succeeds; a record fault that used its ``max_attempts`` (a
        :class:`PermanentError` at once) goes to ``give_up(error, attempts)``, or is raised without one.
        Failures are logged as ``what`` (default: the retry's own) failed, the last with ``giving_up`` (what
        ``give_up`` does). An attempt still running after
        ``deadline_s`` is cancelled (:func:`within`) and retried as an outage.

        Raises :class:`Abandoned` when a wait is too long to sit through (the partition pauses for it), when
        ``stop`` is set during a wait, or when ``go_on()`` says after it that the work may no longer be done.
        """
        backoff: Backoff | None = None  # made at the first failure: its seeded RNG cost 15 us of every success
        failed = 0
        what = what or self.what
        while True:
            try:
                result = await (attempt() if deadline_s is None else within(attempt, deadline_s))
            except Exception as exc:
                fault = await judge(exc, self.ping)
                if backoff is None:
                    backoff = Backoff(self.settings.consumer_backoff_initial_s, self.settings.consumer_backoff_max_s)
                step = after_failure(
                    fault,
                    failed,
                    max_attempts=max_attempts,
                    backoff_s=backoff.next_delay(),
                    wait_s=retry_after(exc),
                    inline_max_s=inline_max_s,
                    permanent=isinstance(exc, PermanentError),
                )
                failed += step.counted
                self.working = fault is not Fault.TRANSIENT
                details = dict(extra or {}, fault=fault, error=repr(exc), attempt=failed, delay=step.delay_s)
                if step.act is Act.DEAD_LETTER:
                    if give_up is None:
                        raise
                    log.error("%s; %s", what, giving_up, extra=details)
                    return await give_up(exc, failed)
                log.warning("%s; %s", what, step.act, extra=details)
                if step.act is Act.PAUSE:
                    raise Abandoned("rate limited", pause_s=step.delay_s) from exc
                if await sleep_unless_stopped(stop, step.delay_s) or not go_on():
                    raise Abandoned("stopping, revoked, or time to poll again") from exc
            else:
                self.working = True
                return result
