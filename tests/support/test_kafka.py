"""tests/support/kafka.py: ``wait_for``, the one poll every test waits with."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.support.kafka import wait_for


async def test_it_polls_a_sync_or_async_predicate_until_it_holds() -> None:
    calls = itertools.count(1)
    assert await wait_for(lambda: next(calls) >= 3, timeout_s=30, interval_s=0.01) is True
    assert next(calls) == 4

    async def value() -> int:
        return 7

    assert await wait_for(value, until=lambda v: v == 7, timeout_s=30) == 7


async def test_at_the_deadline_it_fails_with_the_last_value_or_returns_it() -> None:
    calls = itertools.count(1)
    with pytest.raises(AssertionError, match=r"waiting for never-ready; last value 1"):
        await wait_for(lambda: next(calls), until=lambda n: n > 5, timeout_s=0, what="never-ready")
    assert next(calls) == 2  # asked once even without time to wait
    assert await wait_for(lambda: 4, until=lambda n: n > 5, timeout_s=0, at_deadline="return") == 4


async def test_not_before_makes_a_duration_a_lower_bound() -> None:
    calls = itertools.count(1)
    not_before = time.monotonic() + 0.2
    assert await wait_for(lambda: next(calls), not_before=not_before, timeout_s=30, interval_s=0.01)
    assert time.monotonic() >= not_before
    assert next(calls) > 2  # it kept asking meanwhile: the value must hold at the end of the wait, not only at first
