"""The batch consumer's garbage-collection pacer: automatic collection off while it runs, a young collection
after enough records or seconds, a full one at most every ``full_every_s``, cycles still freed; the collector
as it was after ``stop``. The pacer's clock is the test's (no timing is involved)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from services.runtime.consuming.batch import GcPacer


class Cycle:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection that starts while the test runs."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)


def test_young_collections_on_the_beat_and_a_full_one_when_it_is_due(collections: list[int]) -> None:
    now = [100.0]
    pacer = GcPacer(every_records=10, every_s=5.0, full_every_s=60.0, monotonic=lambda: now[0])
    was_enabled = gc.isenabled()
    pacer.start()
    try:
        assert collections == [2] and not gc.isenabled()
        collections.clear()
        pacer.tick(9)
        assert collections == []  # neither enough records nor time
        pacer.tick(1)
        assert collections == [1]  # enough records: the young generations only
        now[0] += 4.9
        pacer.tick()
        assert collections == [1]
        now[0] += 0.1
        pacer.tick()
        assert collections == [1, 1]  # enough time
        now[0] = 160.0
        pacer.tick()
        assert collections == [1, 1, 2]  # a minute since the last full collection
        now[0] += 5.0
        pacer.tick()
        assert collections == [1, 1, 2, 1]
    finally:
        pacer.stop()
    assert gc.isenabled() == was_enabled


def test_a_cycle_made_while_the_pacer_runs_is_freed_by_its_collections(collections: list[int]) -> None:
    now = [0.0]
    pacer = GcPacer(every_records=1, every_s=5.0, full_every_s=60.0, monotonic=lambda: now[0])
    pacer.start()
    try:
        young = weakref.ref(Cycle())
        assert young() is not None  # automatic collection is off: nothing else frees it
        pacer.tick(1)
        assert young() is None
        held = [Cycle()]
        old = weakref.ref(held[0])
        pacer.tick(1)  # it outlives a young collection (into the oldest generation), then becomes garbage
        held.clear()
        now[0] = 60.0
        pacer.tick(1)
        assert old() is None and collections[-1] == 2
    finally:
        pacer.stop()


def test_a_pacer_with_full_every_s_zero_always_collects_everything(collections: list[int]) -> None:
    now = [0.0]
    pacer = GcPacer(every_records=5, every_s=30.0, full_every_s=0.0, monotonic=lambda: now[0])
    pacer.start()
    try:
        collections.clear()
        pacer.tick(5)
        now[0] = 30.0
        pacer.tick()
        assert collections == [2, 2]  # a rebuild's pacer, as before young collections existed
    finally:
        pacer.stop()
