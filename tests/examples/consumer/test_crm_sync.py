"""The downstream example consumer on the real broker: events produced through the contract end up as CRM
contacts, offsets are committed after the contacts are saved, and a restart goes on from there."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from leadstream_schemas import (
    LEAD,
    Channel,
    Envelope,
    Event,
    InviteSent,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadProfileEnriched,
    LeadSource,
    LeadUnsubscribed,
    MessageSent,
    Replied,
)

from examples.consumer import crm_sync
from tests.support.infra import Infra
from tests.support.kafka import produce, produce_events, wait_for

WS = "ws-crm-example"


def env(data: Event, workspace: str = WS) -> Envelope[Any]:
    return Envelope.new(data, workspace_id=workspace, source="leadstream/test")


def step(cls: type[Any], lead: uuid.UUID, **fields: Any) -> Any:
    return cls(lead_id=lead, campaign_id=uuid.uuid4(), account_id=uuid.uuid4(), step_id="s1", **fields)


@asynccontextmanager
async def running(infra: Infra, topic_prefix: str, out: Path) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        crm_sync.run(infra.kafka_bootstrap_servers, WS, out, topic_prefix=topic_prefix, stop=stop)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def contacts(out: Path) -> dict[str, Any]:
    return dict(json.loads(out.read_text())) if out.exists() else {}


def has(out: Path, check: Callable[[dict[str, Any]], bool]) -> Callable[[], bool]:
    return lambda: check(contacts(out))


async def committed_to_end(infra: Infra, topic: str) -> bool:
    """Whether the example's group committed every partition of ``topic`` up to its end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    reader = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap_servers, group_id=None)
    await admin.start()
    await reader.start()
    try:
        parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        ends = await reader.end_offsets(parts)
        committed = await admin.list_consumer_group_offsets(f"crm-sync-{WS}")
        return bool(parts) and all((committed[tp].offset if tp in committed else 0) == ends[tp] for tp in parts)
    finally:
        await reader.stop()
        await admin.close()


@pytest.fixture
async def own_prefix(infra: Infra, topic_prefix: str) -> str:
    """A lead topic of this test's own: the session's is read by other tests that do not expect a broken record."""
    prefix = f"{topic_prefix}crm{uuid.uuid4().hex[:6]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefix + LEAD.name, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    return prefix


async def test_the_crm_sync_example_keeps_one_contact_per_lead(infra: Infra, own_prefix: str, tmp_path: Path) -> None:
    topic_prefix = own_prefix
    topic = topic_prefix + LEAD.name
    out = tmp_path / "crm.json"
    ada, bo, carl = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await produce_events(
        infra.kafka_bootstrap_servers,
        topic_prefix,
        [
            env(LeadDiscovered(lead_id=ada, source=LeadSource.manual, full_name="Ada Adler", company="Northwind")),
            env(
                LeadProfileEnriched(lead_id=ada, full_name="Ada Adler", role="Head of Sales", company_name="Northwind")
            ),
            env(LeadEmailEnriched(lead_id=ada, email="ada@northwind.example")),
            env(step(InviteSent, ada)),
            env(step(Replied, ada, channel=Channel.message, received_at=datetime(2026, 1, 5, tzinfo=UTC))),
            env(LeadDiscovered(lead_id=bo, source=LeadSource.csv, full_name="Bo Berg")),
            env(LeadUnsubscribed(lead_id=bo)),
            env(LeadDiscovered(lead_id=carl, source=LeadSource.csv, full_name="Not ours"), workspace="ws-other"),
        ],
    )
    # A record that is not an event: the example skips it and goes on.
    await produce(
        infra.kafka_bootstrap_servers, topic, [(str(ada).encode(), b"not json", [("ce_specversion", b"1.0")])]
    )

    async with running(infra, topic_prefix, out):
        await wait_for(has(out, lambda c: c.get(str(bo), {}).get("do_not_contact")), what="Bo unsubscribed")
        await wait_for(has(out, lambda c: c.get(str(ada), {}).get("stage") == "replied"), what="Ada replied")
        await wait_for(lambda: committed_to_end(infra, topic), what="offsets committed after saving")
    saved = contacts(out)
    assert saved[str(ada)] == {
        "name": "Ada Adler",
        "title": "Head of Sales",
        "company": "Northwind",
        "email": "ada@northwind.example",
        "stage": "replied",
    }
    assert saved[str(bo)] == {"name": "Bo Berg", "stage": "new", "do_not_contact": True}
    assert str(carl) not in saved  # another workspace's lead

    # A restart goes on from the committed offsets: it does not read the earlier events again.
    del saved[str(ada)]
    crm_sync.save(out, saved)
    dan = uuid.uuid4()
    later = [env(step(MessageSent, ada, text="Thanks!")), env(LeadDiscovered(lead_id=dan, source=LeadSource.csv))]
    await produce_events(infra.kafka_bootstrap_servers, topic_prefix, later)
    async with running(infra, topic_prefix, out):
        await wait_for(has(out, lambda c: str(dan) in c and str(ada) in c), what="the events after the restart")
        await wait_for(lambda: committed_to_end(infra, topic), what="offsets committed after saving")
    assert contacts(out)[str(ada)] == {"stage": "contacted"}  # only the new event, not Ada's history again
    assert contacts(out)[str(dan)] == {"stage": "new"}


def test_applying_an_event_twice_changes_nothing_and_stages_only_move_forward() -> None:
    lead = uuid.uuid4()
    replied = env(step(Replied, lead, channel=Channel.email, received_at=datetime(2026, 1, 5, tzinfo=UTC)))
    contacts_: dict[str, dict[str, Any]] = {}
    for e in (
        replied,
        replied,
        env(step(MessageSent, lead, text="hi")),
        env(LeadEmailEnriched(lead_id=lead, email="x@y.example")),
    ):
        crm_sync.apply(contacts_, e)
    assert contacts_ == {str(lead): {"stage": "replied", "email": "x@y.example"}}
