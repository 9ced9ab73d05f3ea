"""Every log line carries the trace and span ids and the lead, campaign and correlation ids of the work in hand
(null where they do not apply); the consumer core's lines about an event name it and its trace."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from services.runtime.logging import CONTEXT_KEYS, ContextFilter, JsonFormatter, log_context
from tests.services.runtime.conftest import Probe
from tests.support.kafka import wait_for
from tests.support.probe.helpers import discovered, effect_origins, raw, send


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose lines go through the services' handler set-up (filter and JSON formatter) into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger(f"test.logging.{uuid.uuid4().hex[:8]}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, out
    logger.removeHandler(handler)


def parsed(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_carries_the_span_and_the_ids_of_its_context(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    logger.info("outside")
    tracer = TracerProvider().get_tracer("test")
    lead, campaign, correlation = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    with tracer.start_as_current_span("work") as span, log_context(lead_id=lead, campaign_id=campaign):
        logger.info("inside", extra={"correlation_id": correlation})
        ctx = span.get_span_context()
    outside, inside = parsed(out)
    assert {k: outside[k] for k in CONTEXT_KEYS} == dict.fromkeys(CONTEXT_KEYS)
    assert inside["trace_id"] == format(ctx.trace_id, "032x") and inside["span_id"] == format(ctx.span_id, "016x")
    assert (inside["lead_id"], inside["campaign_id"]) == (lead, campaign)
    assert inside["correlation_id"] == correlation  # an explicit extra wins over the context
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaked out of the block


async def test_the_consumer_lines_about_an_event_name_it_and_its_trace(probe: Probe) -> None:
    logger = logging.getLogger("services.runtime.consuming.policy")  # the retries' lines
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter("probe"))
    logger.addHandler(handler)
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    campaign = uuid.uuid4()
    env = discovered(campaign_id=campaign, traceparent=f"00-{trace_id}-{parent}-01")
    probe.handler.fail(env.id, lambda: ValueError("a record fault"), times=1)
    try:
        await send(probe.bootstrap, probe.lead_topic, [raw(env)])
        await wait_for(lambda: effect_origins(probe.service.engine, env.id), what="the event handled after a retry")
    finally:
        logger.removeHandler(handler)
    [retry] = [line for line in parsed(out) if line.get("event_id") == str(env.id)]
    assert str(retry["msg"]).startswith("handler failed")
    assert retry["lead_id"] == str(env.data.lead_id) and retry["campaign_id"] == str(campaign)
    assert retry["correlation_id"] == str(env.id)  # a root event correlates to itself
    assert retry["trace_id"] == trace_id and retry["span_id"] == parent
