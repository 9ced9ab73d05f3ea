"""How long an idle timer loop naps (:func:`services.runtime.timers.idle_nap_s`): a table of cases and the bounds
it keeps whatever it is given; the bounds of its setting, ``timer_idle_max_s``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.runtime.clock import FakeClock, ScaledClock, SystemClock, pace_of
from services.runtime.settings import RuntimeSettings
from services.runtime.timers import idle_nap_s

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _in(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("next_due", "pace", "expected"),
    [
        (None, None, 0.2),  # a clock moved by hand (tests): poll as ever
        (_in(1), None, 0.2),
        (None, 1.0, 2.0),  # nothing due within the horizon: the longest nap
        (_in(1), 1.0, 1.0),  # until the row is due
        (_in(0.05), 1.0, 0.2),  # never shorter than the poll interval
        (_in(-30), 1.0, 0.2),  # overdue (locked by another replica, or due meanwhile)
        (_in(30), 1.0, 2.0),  # never longer than the idle maximum
        (_in(1800), 1800.0, 1.0),  # campaign time: half an hour at 1800x is one real second
        (_in(7200), 1800.0, 2.0),
    ],
)
def test_the_nap_for_each_case(next_due: datetime | None, pace: float | None, expected: float) -> None:
    nap = idle_nap_s(NOW, next_due, pace=pace, poll_interval_s=0.2, idle_max_s=2.0)
    assert nap == pytest.approx(expected)


def test_a_poll_interval_above_the_idle_maximum_wins() -> None:
    assert idle_nap_s(NOW, None, pace=1.0, poll_interval_s=5.0, idle_max_s=2.0) == 5.0


@given(
    due_in=st.one_of(st.none(), st.floats(-1e6, 1e6)),
    pace=st.one_of(st.none(), st.floats(0.01, 1e5)),
    poll=st.floats(0.001, 10.0),
    idle_max=st.floats(0.001, 60.0),
)
def test_the_nap_is_bounded_and_never_past_the_next_due_row(
    due_in: float | None, pace: float | None, poll: float, idle_max: float
) -> None:
    next_due = None if due_in is None else _in(due_in)
    nap = idle_nap_s(NOW, next_due, pace=pace, poll_interval_s=poll, idle_max_s=idle_max)
    assert poll <= nap <= max(poll, idle_max)
    if pace is None:
        assert nap == poll
    elif next_due is not None:
        # Woken no later than the row is due in real time, unless the poll interval is longer.
        assert nap <= max(poll, (next_due - NOW).total_seconds() / pace)


def test_the_pace_of_each_clock() -> None:
    assert pace_of(SystemClock()) == 1.0
    assert pace_of(ScaledClock(NOW, 1800.0)) == 1800.0
    assert pace_of(FakeClock()) is None  # moves only when told: nothing to sleep until


@pytest.mark.parametrize("value", [0.0, 0.01, 61.0, -1.0])
def test_an_idle_maximum_out_of_range_is_refused_by_name(value: float) -> None:
    with pytest.raises(ValidationError, match="timer_idle_max_s"):
        RuntimeSettings(timer_idle_max_s=value)


def test_the_idle_maximum_defaults_to_two_seconds() -> None:
    assert RuntimeSettings().timer_idle_max_s == 2.0
