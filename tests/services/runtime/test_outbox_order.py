"""The outbox relay on the real broker and Postgres: per-key commit order, partial failures, parked rows.

- Two transactions writing one key: the relay publishes their events in the order they committed.
- A record the broker refuses (the topic's ``max.message.bytes`` is small) in the middle of a key's
  events: it is parked with the error, the key's other events are published in order and only once,
  the service stays ready, and ``leadstream outbox retry`` publishes it once the limit is raised.
- A failed batch in the middle of a partition's rows: nothing behind it is sent before it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError
from leadstream_schemas import LEAD, Envelope, LeadProfileEnriched
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.kafka import desired_topics
from services.runtime.outbox import add_to_outbox, outbox_rows
from services.runtime.service import Service
from tests.conftest import SettingsFactory
from tests.services.runtime.conftest import Probe
from tests.support.kafka import read_until, wait_for
from tests.support.outbox import event_ids, failing_batches
from tests.support.probe.app import ProbeSettings, build
from tests.support.probe.fixtures import probe_topics

LEADSTREAM = Path(sys.executable).with_name("leadstream")
SMALL_LIMIT = 8192
"""``max.message.bytes`` of the test's lead topic: a batch of a few ordinary events fits, the big one does not."""


def enriched(lead: UUID, name: str, headline: str | None = None) -> Envelope[LeadProfileEnriched]:
    """A root ``LeadProfileEnriched`` for ``lead`` (the key)."""
    return Envelope.new(
        LeadProfileEnriched(lead_id=lead, full_name=name, headline=headline), workspace_id="ws-outbox", source="test"
    )


def too_big_for_the_topic(lead: UUID) -> tuple[Envelope[LeadProfileEnriched], dict[str, Any]]:
    """An event and its outbox row whose headline (16 KB of random base64, ~12 KB gzipped) the topic refuses.

    The row is written as the outbox stores it, past the contract's bounds: the point is a record the
    broker refuses, whatever let it into the outbox.
    """
    env = enriched(lead, "Big")
    [row] = outbox_rows([env])
    payload = json.loads(row["value"])
    payload["headline"] = base64.b64encode(os.urandom(12_000)).decode()
    row["value"] = json.dumps(payload).encode()
    return env, row


async def insert_rows(conn: AsyncConnection, service: Service, rows: list[dict[str, Any]]) -> None:
    """Insert ready outbox rows in one statement (ids in list order), as add_to_outbox would."""
    await conn.execute(service.tables.outbox.insert().values(rows))


@dataclass
class OutboxWorld:
    """A probe with a schema and topics of its own, whose lead topic takes records of at most ``SMALL_LIMIT``."""

    service: Service
    name: str
    env: dict[str, str]

    @property
    def settings(self) -> ProbeSettings:
        """The probe's settings."""
        return self.service.settings  # type: ignore[return-value]

    @property
    def lead_topic(self) -> str:
        """The physical lead topic."""
        return self.settings.topic_name(LEAD.name)

    async def read(self, done: Callable[[list[UUID]], bool]) -> list[UUID]:
        """The event ids on the lead topic, from the beginning, once ``done(ids)`` holds."""
        records = await read_until(
            self.settings.kafka_bootstrap_servers, [self.lead_topic], lambda rs: done(event_ids(rs)), timeout_s=60
        )
        return event_ids(records)

    async def set_limit(self, max_message_bytes: int) -> None:
        """Set the lead topic's ``max.message.bytes`` (keeping the configs the reconciler manages)."""
        [desired] = [d for d in desired_topics(self.settings) if d.name == self.lead_topic]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            configs = {**desired.configs, "max.message.bytes": str(max_message_bytes)}
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, self.lead_topic, configs)])
        finally:
            await admin.close()

    async def cli(self, *args: str, expect: int = 0, stdin: bytes | None = None) -> str:
        """Run ``leadstream outbox ARGS``; its stdout (fails unless it exits ``expect``)."""
        proc = await asyncio.create_subprocess_exec(
            str(LEADSTREAM),
            "outbox",
            *args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=120)
        assert proc.returncode == expect, (
            f"leadstream outbox {' '.join(args)} exited {proc.returncode}:\n{out!r}\n{err!r}"
        )
        return out.decode()

    def metric(self, name: str, **labels: str) -> float:
        """A sample of this service's metrics (0 when absent)."""
        return REGISTRY.get_sample_value(name, {"service": self.name, **labels}) or 0.0


@pytest.fixture
async def world(
    make_settings: SettingsFactory, topic_prefix: str, subprocess_env: dict[str, str], start_service: Any
) -> AsyncIterator[OutboxWorld]:
    """A fresh outbox probe (own schema, topics and consumer group) with a small lead-topic limit."""
    name = f"probe-outbox-{uuid.uuid4().hex[:6]}"
    prefix = await probe_topics(topic_prefix, make_settings, name=name)
    settings = make_settings(
        name, ProbeSettings, topic_prefix=prefix, outbox_max_batch_bytes=65_536, outbox_poll_interval_s=0.02
    )
    service = build(settings, group_suffix=name)
    world = OutboxWorld(service, name, {**subprocess_env, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    await world.set_limit(SMALL_LIMIT)
    await start_service(service)
    yield world


async def test_one_keys_events_are_published_in_the_order_their_transactions_committed(probe: Probe) -> None:
    """The first writer holds its transaction open and waits until the second one either commits (the old
    relay: ids in insert order, commits in the other order) or waits for the key. Kafka must show commit order."""
    service = probe.service
    lead = uuid.uuid4()
    first, second = enriched(lead, "First"), enriched(lead, "Second")
    committed: list[UUID] = []
    first_inserted = asyncio.Event()
    second_pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def blocked_on_the_key(pid: int) -> bool:
        async with service.engine.connect() as conn:
            query = "SELECT wait_event FROM pg_stat_activity WHERE pid = :pid AND wait_event_type = 'Lock'"
            return await conn.scalar(text(query), {"pid": pid}) == "advisory"

    async def write_first() -> None:
        async with service.engine.begin() as conn:
            await add_to_outbox(conn, service.tables, [first])  # draws the smaller id
            first_inserted.set()
            pid = await second_pid
            await wait_for(
                lambda: bool(committed) or blocked_on_the_key(pid),
                timeout_s=30,
                what="the second writer to commit or to wait for the key",
            )
        committed.append(first.id)

    async def write_second() -> None:
        await first_inserted.wait()
        async with service.engine.begin() as conn:
            second_pid.set_result(await conn.scalar(text("SELECT pg_backend_pid()")))
            await add_to_outbox(conn, service.tables, [second])
        committed.append(second.id)

    await asyncio.wait_for(asyncio.gather(write_first(), write_second()), timeout=60)
    service.relay.wake()
    ids = {first.id, second.id}
    records = await read_until(probe.bootstrap, [probe.lead_topic], lambda rs: ids <= set(event_ids(rs)), timeout_s=60)
    published = [i for i in event_ids(records) if i in ids]
    assert committed == [first.id, second.id]  # the second writer waited for the key
    assert published == committed


async def test_a_record_the_broker_refuses_is_parked_and_the_rest_go_on_in_order(world: OutboxWorld) -> None:
    service = world.service
    lead, other_lead = uuid.uuid4(), uuid.uuid4()
    before = [enriched(lead, f"Before {i}") for i in range(5)]
    big, big_row = too_big_for_the_topic(lead)
    after = [enriched(lead, f"After {i}") for i in range(5)]
    elsewhere = [enriched(other_lead, f"Other {i}") for i in range(3)]
    # One statement: ids in this order; the big row shares a producer batch with its neighbours.
    async with service.engine.begin() as conn:
        await insert_rows(conn, service, [*outbox_rows(before), big_row, *outbox_rows(after), *outbox_rows(elsewhere)])
    service.relay.wake()
    committed = time.monotonic()

    expected = [e.id for e in (*before, *after)]
    ids = await world.read(lambda got: set(expected) | {e.id for e in elsewhere} <= set(got))
    report("outbox: a refused record mid-key, the rest published", time.monotonic() - committed)
    assert [i for i in ids if i in set(expected)] == expected  # in order, each once: nothing re-sent
    assert set(e.id for e in elsewhere) <= set(ids)
    assert big.id not in ids

    parked = json.loads(await world.cli("list", "--service", world.name, "--json"))
    assert parked["event_id"] == str(big.id) and parked["event_type"] == LeadProfileEnriched.event_type
    assert parked["error"] == "MessageSizeTooLargeError"
    assert parked["topic"] == LEAD.name and parked["key"] == str(lead)
    assert parked["size"] > SMALL_LIMIT
    assert await service.readiness() == {}  # the relay goes on: the service is ready
    assert world.metric("leadstream_outbox_refused_total", topic=LEAD.name, error="MessageSizeTooLargeError") == 1
    await wait_for(lambda: world.metric("leadstream_outbox_parked") == 1, what="the parked-rows gauge")
    await wait_for(lambda: world.metric("leadstream_outbox_backlog") == 0, what="the backlog gauge")
    table = await world.cli("list", "--service", world.name)
    assert str(big.id) in table and "lead.profile_enriched.v1" in table and "MessageSizeTooLargeError" in table

    # Later events of the key are published at once; the parked one does not hold them back.
    later = enriched(lead, "Later")
    async with service.engine.begin() as conn:
        await add_to_outbox(conn, service.tables, [later])
    service.relay.wake()
    ids = await world.read(lambda got: later.id in got)

    # Retried before the limit is raised: refused and parked again, nothing else disturbed.
    assert "moved back to the outbox: 1 parked row(s)" in await world.cli("retry", "--service", world.name, str(big.id))
    await wait_for(
        lambda: world.metric("leadstream_outbox_refused_total", topic=LEAD.name, error="MessageSizeTooLargeError") == 2,
        what="the row to be parked again",
    )

    await world.set_limit(1_048_588)
    assert "moved back to the outbox: 1 parked row(s)" in await world.cli("retry", "--service", world.name, "--all")
    retried = time.monotonic()
    ids = await world.read(lambda got: big.id in got)
    report("outbox: parked record published after `outbox retry` returned", time.monotonic() - retried)
    assert ids.count(big.id) == 1 and ids.index(big.id) > ids.index(later.id)  # at the end: it was retried
    assert await world.cli("list", "--service", world.name, "--json") == ""
    await wait_for(lambda: world.metric("leadstream_outbox_parked") == 0, what="the parked-rows gauge")
    await world.cli("retry", "--service", world.name, str(big.id), expect=1)  # no longer parked


async def test_drop_asks_first_and_deletes_parked_rows(world: OutboxWorld) -> None:
    service = world.service
    big, big_row = too_big_for_the_topic(uuid.uuid4())
    async with service.engine.begin() as conn:
        await insert_rows(conn, service, [big_row])
    service.relay.wake()
    parked = service.tables.outbox_parked

    async def parked_ids() -> set[UUID]:
        async with service.engine.connect() as conn:
            return set(await conn.scalars(select(parked.c.event_id)))

    await wait_for(lambda: _is(parked_ids(), {big.id}), what="the big row to be parked")
    await world.cli("drop", "--service", world.name, str(big.id), stdin=b"n\n", expect=1)  # answered no
    assert await parked_ids() == {big.id}
    assert "dropped 1 parked row(s)" in await world.cli("drop", "--service", world.name, "--all", "--yes")
    assert await parked_ids() == set()
    await world.cli("drop", "--service", world.name, expect=2)  # neither ids nor --all


async def test_a_failed_batch_stops_the_rest_of_its_partition_until_it_is_published(world: OutboxWorld) -> None:
    """Rows of one key span several producer batches; the second batch fails (the broker unreachable for it).
    Nothing behind it may reach the partition before it, and nothing is published twice."""
    service = world.service
    lead = uuid.uuid4()
    envs = [enriched(lead, f"Person {i}", headline="x" * 900) for i in range(100)]
    second_batch: set[UUID] = set()

    def second(batch: Any) -> bool:
        if not second_batch and envs[0].id not in batch.event_ids and set(batch.event_ids) & {e.id for e in envs}:
            second_batch.update(batch.event_ids)
        return bool(second_batch) and set(batch.event_ids) == second_batch

    async with failing_batches(service.relay, second, KafkaConnectionError) as faults:
        async with service.engine.begin() as conn:
            await add_to_outbox(conn, service.tables, envs)
        service.relay.wake()
        committed = time.monotonic()
        expected = [e.id for e in envs]
        ids = await world.read(lambda got: set(expected) <= set(got))
        report("outbox: a failed batch mid-partition, all published", time.monotonic() - committed)
    assert faults.failed == 1 and second_batch
    assert [i for i in ids if i in set(expected)] == expected  # in order, each once
    sent_ids = [i for batch in faults.batches for i in batch if i in set(expected)]
    first_of_second = min(expected.index(i) for i in second_batch)
    # Between the failure and the retry of the failed rows, no later row of the key was handed to the broker.
    retried_at = sent_ids.index(expected[first_of_second])
    assert all(expected.index(i) < first_of_second for i in sent_ids[:retried_at])
    await wait_for(lambda: service.relay.healthy, what="the relay to be healthy again")


def report(what: str, seconds: float) -> None:
    """A figure for docs/reliability.md (shown with ``pytest -s``; never asserted: no timed assertions)."""
    print(f"[reliability] {what}: {seconds:.2f} s")


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
