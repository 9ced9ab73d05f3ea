"""The projection's batch consumer: undecodable records go to the topic's DLQ and the stream goes on."""

from __future__ import annotations

import uuid

import asyncpg
from leadstream_schemas import LEAD, Envelope, LeadDiscovered, LeadSource, encode, headers_dict

from services.projection.app import build
from services.projection.checksum import dsn
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.support.kafka import produce, read_until, wait_for

from .helpers import produce_all


async def test_poison_record_is_dead_lettered_and_the_stream_goes_on(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    settings = isolated.settings()
    service = await start_service(build(settings))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="assignment")
    lead = uuid.uuid4()
    before = Envelope.new(
        LeadDiscovered(lead_id=lead, source=LeadSource.manual, full_name="A"), workspace_id="w", source="test"
    )
    key, _, headers = encode(before)
    topic = settings.topic_name(LEAD.name)
    bad_value = b'{"lead_id": "not-a-uuid", "source": "manual"}'
    poison = [(key, bad_value, headers), (key, b"\xff not json", headers)]
    await produce(settings.kafka_bootstrap_servers, topic, poison)
    after = Envelope.new(
        LeadDiscovered(lead_id=lead, source=LeadSource.manual, full_name="B"), workspace_id="w", source="test"
    )
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, [before, after])

    dead = await read_until(settings.kafka_bootstrap_servers, [topic + ".dlq"], lambda recs: len(recs) >= 2)
    codes = sorted(headers_dict(r.headers)["dlq_error_code"] for r in dead)
    assert codes == ["invalid_field", "invalid_json"]
    first = headers_dict(dead[0].headers)
    assert first["dlq_original_topic"] == topic and first["dlq_consumer_group"] == settings.group_id
    assert first["ce_id"] == str(before.id) and dead[0].key == key

    conn = await asyncpg.connect(dsn(settings.database_url))
    try:

        async def applied() -> bool:
            return await conn.fetchval("SELECT count(*) FROM projection.timeline WHERE lead_id = $1", lead) == 2

        await wait_for(applied, timeout_s=60, what="the events after the poison records")
        stored = await conn.fetchval("SELECT sum(next_offset) FROM projection.offsets WHERE topic = $1", topic)
        assert stored == 4  # the dead-lettered records are consumed too: nothing stalls
    finally:
        await conn.close()
