"""The outbox relay is woken by Postgres LISTEN/NOTIFY, with a slow poll as its fallback (real broker and database).

- a commit by another process (its own engine: this relay is not told in-process) wakes the relay, whose poll
  is an hour away: only the notification can have made it publish;
- a stop ends the idle relay at once, not at its next poll (an hour away; a SIGTERM must not wait for it);
- a row written without a notification (as if it was lost while the LISTEN connection was down) is published
  by the poll;
- the channel stays within Postgres's identifier limit and is one per schema.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from leadstream_schemas import LEAD, Envelope, LeadProfileEnriched

from services.runtime.db import create_engine
from services.runtime.notify import MAX_CHANNEL_BYTES
from services.runtime.outbox import add_to_outbox, outbox_channel, outbox_rows
from services.runtime.service import Service
from tests.conftest import SettingsFactory
from tests.support.kafka import read_until, wait_for
from tests.support.outbox import event_ids
from tests.support.probe.app import ProbeSettings, build
from tests.support.probe.fixtures import probe_topics
from tests.support.probe.store import SCHEMA


async def _relay_with_poll(
    make_settings: SettingsFactory, topic_prefix: str, start_service: Any, poll_s: float
) -> Service:
    """A probe service of its own (schema, topics) whose relay polls every ``poll_s``; started, relay idle."""
    name = f"probe-notify-{uuid.uuid4().hex[:6]}"
    prefix = await probe_topics(topic_prefix, make_settings, name=name)
    settings = make_settings(name, ProbeSettings, topic_prefix=prefix, outbox_poll_interval_s=poll_s)
    service: Service = build(settings, group_suffix=name)
    await start_service(service)
    relay = service.relay
    # Listening (so the wake-up of its connection has been given) and waiting with nothing pending: from
    # here on only a notification or the poll starts a round.
    await wait_for(lambda: relay.listening and relay.idle, what="the relay listening and idle")
    return service


@pytest.fixture
async def hour_poll(make_settings: SettingsFactory, topic_prefix: str, start_service: Any) -> AsyncIterator[Service]:
    yield await _relay_with_poll(make_settings, topic_prefix, start_service, poll_s=3600.0)


@pytest.fixture
async def quick_poll(make_settings: SettingsFactory, topic_prefix: str, start_service: Any) -> AsyncIterator[Service]:
    yield await _relay_with_poll(make_settings, topic_prefix, start_service, poll_s=0.2)


def _event() -> Envelope[LeadProfileEnriched]:
    return Envelope.new(
        LeadProfileEnriched(lead_id=uuid.uuid4(), full_name="Mary Jackson"), workspace_id="ws", source="t"
    )


async def _published(service: Service, event_id: uuid.UUID) -> None:
    topic = service.settings.topic_name(LEAD.name)
    records = await read_until(
        service.settings.kafka_bootstrap_servers, [topic], lambda rs: event_id in event_ids(rs), timeout_s=60
    )
    assert event_id in event_ids(records)


async def test_a_commit_elsewhere_wakes_the_relay_without_waiting_for_its_poll(hour_poll: Service) -> None:
    service = hour_poll
    env = _event()
    other = create_engine(service.settings.database_url)  # another replica's engine: no in-process wake-up
    try:
        # The probe's tables name the schema "probe"; this probe's statements go to its own (see build()).
        translated = other.execution_options(schema_translate_map={SCHEMA: service.settings.db_schema})
        async with translated.begin() as conn:
            assert await add_to_outbox(conn, service.tables, [env]) == 1
    finally:
        await other.dispose()
    await _published(service, env.id)  # the poll is an hour away: the NOTIFY at commit woke it


async def test_a_stop_ends_an_idle_relay_without_waiting_for_its_poll(hour_poll: Service) -> None:
    service = hour_poll
    (relay_task,) = [t for t in service._bg if isinstance(t, asyncio.Task) and t.get_name() == "relay"]
    service.request_stop()  # what SIGTERM does; the poll is an hour away: only the stop can end the wait
    await wait_for(relay_task.done, what="the idle relay ended by the stop")
    assert relay_task.exception() is None


async def test_a_row_without_a_notification_is_published_by_the_poll(quick_poll: Service) -> None:
    service = quick_poll
    env = _event()
    # A plain INSERT sends no NOTIFY: what a notification lost while the relay's LISTEN connection was down leaves.
    async with service.engine.begin() as conn:
        await conn.execute(service.tables.outbox.insert().values(outbox_rows([env])))
    await _published(service, env.id)


def test_the_channel_is_one_per_schema_and_a_valid_identifier() -> None:
    assert outbox_channel("outreach") == "leadstream.outbox.outreach"
    assert outbox_channel("outreach") != outbox_channel("discovery")
    assert outbox_channel(None) == "leadstream.outbox.public"
    assert len(outbox_channel("x" * 100).encode()) <= MAX_CHANNEL_BYTES
