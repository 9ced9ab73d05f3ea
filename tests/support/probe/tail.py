"""A Kafka tail for tests: one consumer that keeps reading topics from the beginning and accumulates
records, so a test can wait for several conditions in turn without re-reading the topic each time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord

Records = list[ConsumerRecord[Any, Any]]


class Tail:
    """``async with Tail(bootstrap, topics) as t: await t.until(lambda recs: ..., timeout_s=60)``."""

    def __init__(self, bootstrap: str, topics: Sequence[str], keep: Callable[[ConsumerRecord[Any, Any]], bool]) -> None:
        self.consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
        )
        self.keep = keep
        self.records: Records = []

    async def __aenter__(self) -> Tail:
        await self.consumer.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.consumer.stop()

    async def poll(self) -> None:
        """Read what arrived (waits at most 100 ms)."""
        batch = await self.consumer.getmany(timeout_ms=100)
        for recs in batch.values():
            self.records.extend(r for r in recs if self.keep(r))

    async def catch_up(self, *, timeout_s: float = 60) -> None:
        """Read until every partition is at least where it ended when called: whatever was on the topics then
        is in :attr:`records` (read what other systems show first, then catch up, to compare them)."""
        ends = await self.consumer.end_offsets(list(self.consumer.assignment()))
        deadline = time.monotonic() + timeout_s
        while True:
            behind = [tp for tp, end in ends.items() if await self.consumer.position(tp) < end]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s catching up on {behind}")
            await self.poll()

    async def until(self, done: Callable[[Records], bool], *, timeout_s: float, what: str) -> Records:
        """Read until ``done(records)`` holds; AssertionError at the deadline, saying what was awaited."""
        deadline = time.monotonic() + timeout_s
        while not done(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; kept {len(self.records)}")
            await self.poll()
        return self.records
