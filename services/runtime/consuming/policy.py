"""What a consumer does after a failure: the decision as a pure function (:func:`after_failure`), and the
one check that needs I/O (:func:`judge`: is a SUSPECT error an outage?). See docs/reliability.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from ..faults import Fault, classify

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
