"""Outbox test helpers: broker failures injected into the relay's producer, and the relay's records read back.

The producer stays the real one (real broker, real batches); a test only decides which record batches
fail before they are sent, and with which error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.runtime.outbox import OutboxRelay


class RecordingBatch:
    """A real record batch that remembers the event ids (``ce_id``) appended to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.event_ids: list[UUID] = []

    def append(self, *, timestamp: int | None, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]) -> Any:
        """Append as the real batch does; remember the event id when it fitted."""
        metadata = self.inner.append(timestamp=timestamp, key=key, value=value, headers=headers)
        if metadata is not None:
            self.event_ids.append(UUID(dict(headers)["ce_id"].decode()))
        return metadata

    def close(self) -> None:
        """Close the real batch."""
        self.inner.close()


@dataclass
class Faults:
    """What the injected failures did: ``failed`` batches refused here, ``sent`` batches handed to the broker."""

    should_fail: Callable[[RecordingBatch], bool]
    error: Callable[[str], BaseException]
    remaining: int
    failed: int = 0
    sent: int = 0
    batches: list[list[UUID]] = field(default_factory=list)
    """The event ids of every batch handed to the broker, in the order they were sent."""


class FaultyProducer:
    """The relay's real producer, except for the batches ``faults`` makes fail before they are sent."""

    def __init__(self, real: AIOKafkaProducer, faults: Faults) -> None:
        self.real = real
        self.faults = faults

    def create_batch(self) -> RecordingBatch:
        """A real batch that records its event ids."""
        return RecordingBatch(self.real.create_batch())

    async def send_batch(self, batch: RecordingBatch, topic: str, *, partition: int) -> Any:
        """Fail as planned, else send the real batch."""
        f = self.faults
        if f.remaining > 0 and f.should_fail(batch):
            f.remaining -= 1
            f.failed += 1
            raise f.error(f"injected failure of the batch of {len(batch.event_ids)} record(s)")
        f.sent += 1
        f.batches.append(list(batch.event_ids))
        return await self.real.send_batch(batch.inner, topic, partition=partition)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@contextlib.asynccontextmanager
async def failing_batches(
    relay: OutboxRelay,
    should_fail: Callable[[RecordingBatch], bool],
    error: Callable[[str], BaseException],
    *,
    times: int = 1,
) -> AsyncIterator[Faults]:
    """While inside, the relay's producers (it makes a new one after a failure) fail ``times`` batches chosen by
    ``should_fail`` with ``error(message)``, before the broker sees them; every other batch is sent for real."""
    faults = Faults(should_fail, error, times)
    original = relay.create_producer
    relay.create_producer = lambda: FaultyProducer(original(), faults)  # type: ignore[method-assign]
    await relay.close()  # the next round starts a faulty producer
    try:
        yield faults
    finally:
        relay.create_producer = original  # type: ignore[method-assign]
        faults.remaining = 0


def event_ids(records: Sequence[ConsumerRecord[Any, Any]]) -> list[UUID]:
    """The ``ce_id`` of each record that has a valid one, in order (other tests put poison on shared topics)."""
    ids = []
    for record in records:
        with contextlib.suppress(KeyError, ValueError, UnicodeDecodeError):
            ids.append(UUID(dict(record.headers)["ce_id"].decode()))
    return ids
