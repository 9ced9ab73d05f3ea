"""The outbox on the real broker: emitted events reach Kafka as CloudEvents 1.0 binary records, byte for
byte as encoded, with every contract header, and their values validate against the committed JSON Schemas.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaConnectionError
from leadstream_schemas import Envelope, LeadProfileEnriched, decode, derive_id, encode
from leadstream_schemas.personal import TOKEN_PREFIX
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.runtime.outbox import add_to_outbox
from services.runtime.personal import PersonalReader
from tests.services.runtime.conftest import Probe
from tests.support.kafka import read_until, wait_for
from tests.support.outbox import failing_batches
from tests.support.personal import decode_opened
from tests.support.probe.app import enriched_for
from tests.support.probe.helpers import caused_by, discovered, headers_of, raw, send
from tests.support.tracing import by_span_id, parent_id, spans

__all__ = ["spans"]  # the fixture

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas" / "jsonschema"
CONTRACT_HEADERS = {
    "ce_specversion",
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_time",
    "ce_subject",
    "content-type",
    "workspaceid",
    "campaignid",
    "correlationid",
    "causationid",
    "traceparent",
}
# FastStream's publish always adds this one; the relay sets it to the event's correlation id.
FASTSTREAM_HEADERS = {"correlation_id"}


def _validate_against_committed_schema(record: ConsumerRecord[Any, Any]) -> None:
    event_type = headers_of(record)["ce_type"]
    schema = json.loads((SCHEMAS / f"{event_type}.json").read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER).validate(json.loads(record.value))


def _with_id(records: list[ConsumerRecord[Any, Any]], event_id: uuid.UUID) -> list[ConsumerRecord[Any, Any]]:
    return [r for r in records if headers_of(r).get("ce_id") == str(event_id)]


async def test_emitted_event_has_every_cloudevents_header_and_the_encoded_bytes(
    probe: Probe, spans: InMemorySpanExporter
) -> None:
    # No tracing set up here: the service did it (the test once did it itself, and the services did not).
    trace_id, parent_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    campaign = uuid.uuid4()
    env = discovered(full_name="Katherine Johnson", campaign_id=campaign, traceparent=f"00-{trace_id}-{parent_span}-01")
    await send(probe.bootstrap, probe.lead_topic, [raw(env)])

    out = await read_until(probe.bootstrap, [probe.lead_topic], lambda rs: bool(caused_by(rs, env.id)))
    [record] = caused_by(out, env.id)
    h = headers_of(record)
    assert set(h) == CONTRACT_HEADERS | FASTSTREAM_HEADERS
    assert len(record.headers) == len(h), "a header appears twice"
    expected = env.caused(enriched_for(env.data), source="leadstream/probe")
    assert h["ce_specversion"] == "1.0"
    assert h["ce_id"] == str(derive_id(env.id, LeadProfileEnriched.event_type)) == str(expected.id)
    assert h["ce_type"] == "leadstream.lead.profile_enriched.v1"
    assert h["ce_source"] == "leadstream/probe"
    assert datetime.fromisoformat(h["ce_time"]).tzinfo is not None
    assert h["ce_subject"] == str(env.data.lead_id)
    assert h["content-type"] == "application/json"
    assert h["workspaceid"] == "ws-probe"
    assert h["campaignid"] == str(campaign)
    assert h["correlationid"] == str(env.id) == h["correlation_id"]
    assert h["causationid"] == str(env.id)
    version, tp_trace, tp_span, flags = h["traceparent"].split("-")
    assert (version, tp_trace, flags) == ("00", trace_id, "01")
    # The handler's own span, a child of the producer's, in the same trace.
    handler_span = await wait_for(lambda: by_span_id(spans.get_finished_spans()).get(tp_span), what="handler span")
    assert handler_span.name == "handle leadstream.lead.discovered.v1" and handler_span.kind is SpanKind.CONSUMER
    assert parent_id(handler_span) == parent_span
    assert handler_span.attributes is not None and handler_span.attributes["leadstream.lead_id"] == h["ce_subject"]
    # FastStream did not touch the value or the key: they are what encode() produced, with the personal fields
    # encrypted (services.runtime.personal); the key store gives them back.
    key, value, _ = encode(expected)
    assert record.key == key == str(env.data.lead_id).encode()
    assert b"Katherine" not in record.value and json.loads(record.value)["full_name"].startswith(TOKEN_PREFIX)
    [opened] = await PersonalReader.on_engine(probe.service.engine).open_records([record])
    assert opened == value
    _validate_against_committed_schema(record)
    assert decode(opened, record.headers).data == enriched_for(env.data)


async def test_event_emitted_from_http_reaches_kafka_and_validates(probe: Probe, spans: InMemorySpanExporter) -> None:
    # It passed before any code read an incoming traceparent: it set up tracing itself, which a service did not
    # do in-process, and FastAPI's own telemetry then continues the caller's trace whenever a tracer provider
    # is installed. Now the service sets tracing up, and the event's parent must be the request's server span.
    lead, trace_id, caller_span = uuid.uuid4(), uuid.uuid4().hex, uuid.uuid4().hex[:16]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=probe.service.app), base_url="http://t") as http:
        resp = await http.post(
            "/v1/probe/effects",
            json={"lead_id": str(lead), "full_name": "Mary Jackson"},
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
    assert resp.status_code == 202, resp.text
    event_id = uuid.UUID(resp.json()["event_id"])

    out = await read_until(probe.bootstrap, [probe.lead_topic], lambda rs: bool(_with_id(rs, event_id)))
    [record] = _with_id(out, event_id)
    h = headers_of(record)
    assert CONTRACT_HEADERS - set(h) == {"causationid", "campaignid"}  # a root event outside any campaign
    _, tp_trace, tp_span, _ = h["traceparent"].split("-")
    assert tp_trace == trace_id  # the caller's trace continues into the event
    server = await wait_for(lambda: by_span_id(spans.get_finished_spans()).get(tp_span), what="the server span")
    assert server.name == "POST /v1/probe/effects" and server.kind is SpanKind.SERVER
    assert parent_id(server) == caller_span
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "opentelemetry.instrumentation.fastapi"
    assert h["correlationid"] == h["ce_id"] == h["correlation_id"]
    assert h["ce_subject"] == str(lead) and record.key == str(lead).encode()
    _validate_against_committed_schema(record)
    env = decode_opened(record.value, record.headers)
    assert env.causation_id is None
    assert isinstance(env.data, LeadProfileEnriched) and env.data.full_name == "Mary Jackson"

    async def outbox_empty() -> bool:
        return await probe.service.relay.backlog() == 0

    await wait_for(outbox_empty, what="published rows to leave the outbox")


async def test_rows_left_in_the_outbox_are_published_in_order(probe: Probe) -> None:
    # As after a crash between commit and publish: rows in the outbox nobody woke the relay for.
    lead = uuid.uuid4()
    envs = [
        Envelope.new(LeadProfileEnriched(lead_id=lead, full_name=f"Person {i}"), workspace_id="ws", source="test")
        for i in range(5)
    ]
    async with probe.service.engine.begin() as conn:
        assert await add_to_outbox(conn, probe.service.tables, envs) == 5
        assert await add_to_outbox(conn, probe.service.tables, envs[:2]) == 0  # an id already there is ignored
    ids = [str(e.id) for e in envs]

    def published(rs: list[ConsumerRecord[Any, Any]]) -> list[str]:
        return [headers_of(r)["ce_id"] for r in rs if headers_of(r).get("ce_id") in ids]

    out = await read_until(probe.bootstrap, [probe.lead_topic], lambda rs: len(published(rs)) >= 5)
    assert published(out) == ids
    outbox = probe.service.tables.outbox

    async def rows_deleted() -> bool:
        async with probe.service.engine.connect() as conn:
            query = select(outbox.c.event_id).where(outbox.c.event_id.in_([e.id for e in envs]))
            return (await conn.execute(query)).first() is None

    await wait_for(rows_deleted, what="published rows to leave the outbox")


async def test_relay_keeps_rows_through_a_failed_publish_and_recovers(probe: Probe) -> None:
    relay = probe.service.relay
    lead = uuid.uuid4()
    env = Envelope.new(LeadProfileEnriched(lead_id=lead, full_name="Dorothy Vaughan"), workspace_id="ws", source="t")
    # The first batch of this event fails as if the broker were unreachable; the relay keeps the row.
    async with failing_batches(relay, lambda batch: env.id in batch.event_ids, KafkaConnectionError) as faults:
        async with probe.service.engine.begin() as conn:
            await add_to_outbox(conn, probe.service.tables, [env])
        relay.wake()
        out = await read_until(probe.bootstrap, [probe.lead_topic], lambda rs: bool(_with_id(rs, env.id)))
    assert faults.failed == 1 and faults.sent >= 1  # the failed attempt, then the one that went through
    assert len(_with_id(out, env.id)) == 1
    await wait_for(lambda: relay.healthy, what="the relay to report healthy again")


async def test_the_backlog_gauge_rises_while_the_relay_cannot_publish(probe: Probe) -> None:
    # A broker outage is when the backlog grows: the gauge must say so while every publish fails.
    relay = probe.service.relay

    def backlog() -> float | None:
        return REGISTRY.get_sample_value("leadstream_outbox_backlog", {"service": probe.settings.service_name})

    envs = [
        Envelope.new(LeadProfileEnriched(lead_id=uuid.uuid4(), full_name="Mae Jemison"), workspace_id="ws", source="t")
        for _ in range(3)
    ]
    ids = {e.id for e in envs}
    await wait_for(lambda: backlog() == 0, what="an empty outbox first")
    async with failing_batches(
        relay, lambda batch: bool(ids & set(batch.event_ids)), KafkaConnectionError, times=1_000_000
    ) as faults:
        async with probe.service.engine.begin() as conn:
            await add_to_outbox(conn, probe.service.tables, envs)
        relay.wake()
        await wait_for(lambda: faults.failed >= 2 and not relay.healthy, what="the relay failing, again and again")
        await wait_for(lambda: backlog() == 3, what="the backlog gauge to count the rows it cannot publish")
    await wait_for(lambda: backlog() == 0, what="the backlog gauge back to 0 once the rows are published")
