"""What the runtime's tracing records: a query inside traced work is a child span of it, one outside any (the
outbox relay's and the timers' polling) is not recorded at all; HTTP spans (served and called) keep no query
string; failures are exported by error class only."""

from __future__ import annotations

import uuid

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.services.runtime.conftest import Probe
from tests.support.kafka import wait_for
from tests.support.local_http import serve
from tests.support.probe.helpers import discovered, effect_origins, raw, send
from tests.support.tracing import parent_id, spans

__all__ = ["spans"]  # the fixture


async def test_queries_are_spans_of_the_work_they_belong_to_and_orphans_are_dropped(
    probe: Probe, spans: InMemorySpanExporter
) -> None:
    async with probe.service.engine.connect() as conn:
        await conn.execute(text("SELECT 1 AS polled"))  # outside any traced work
        with trace.get_tracer("test").start_as_current_span("work") as work:
            await conn.execute(text("SELECT 2 AS traced"))
    work_id = format(work.get_span_context().span_id, "016x")
    queries = [
        s for s in spans.get_finished_spans() if s.instrumentation_scope and "asyncpg" in s.instrumentation_scope.name
    ]
    assert queries, "no query span was recorded"
    assert all(parent_id(q) == work_id for q in queries), [(q.name, parent_id(q)) for q in queries]
    statements = [str(dict(q.attributes or {}).get("db.statement") or dict(q.attributes or {})) for q in queries]
    assert any("traced" in st for st in statements) and not any("polled" in st for st in statements)


async def test_http_spans_keep_no_query_string(probe: Probe, spans: InMemorySpanExporter) -> None:
    # A query string can hold personal data (a search for a name): the span says the route, not the query.
    body = {"lead_id": str(uuid.uuid4()), "full_name": "Grace Hopper"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=probe.service.app), base_url="http://t") as http:
        assert (await http.post("/v1/probe/effects?q=Grace+Hopper", json=body)).status_code == 202
    server = await wait_for(
        lambda: [s for s in spans.get_finished_spans() if s.name == "POST /v1/probe/effects"], what="the server span"
    )
    values = [str(v) for s in server for v in dict(s.attributes or {}).values()]
    assert values and not [v for v in values if "Grace" in v or "q=" in v], values


async def test_a_failed_attempt_is_an_error_span_without_the_message(probe: Probe, spans: InMemorySpanExporter) -> None:
    # An exception's message can quote personal data; the exported span says the error class only.
    env = discovered()
    probe.handler.fail(env.id, lambda: ValueError("refused 'Katherine Johnson'"), times=1)
    await send(probe.bootstrap, probe.lead_topic, [raw(env)])
    await wait_for(lambda: effect_origins(probe.service.engine, env.id), what="the event handled after a retry")

    eid = str(env.id)

    def attempts() -> list[ReadableSpan]:
        mine = [s for s in spans.get_finished_spans() if dict(s.attributes or {}).get("messaging.message.id") == eid]
        return mine if len(mine) == 2 else []

    failed, handled = await wait_for(attempts, what="both attempts' spans")
    assert failed.status.status_code is StatusCode.ERROR and handled.status.status_code is StatusCode.UNSET
    assert failed.status.description is None
    [event] = failed.events
    assert (event.name, dict(event.attributes or {})) == ("exception", {"exception.type": "ValueError"})
    assert parent_id(failed) is None and parent_id(handled) is None  # the event had no trace: each a root


async def test_outgoing_calls_are_client_spans_without_their_query(probe: Probe, spans: InMemorySpanExporter) -> None:
    async def answer(request: Request) -> Response:
        return Response(request.headers.get("traceparent", ""))

    async with serve(Starlette(routes=[Route("/lookup", answer)])) as url:
        with trace.get_tracer("test").start_as_current_span("work") as work:
            async with httpx.AsyncClient() as client:
                sent = (await client.get(f"{url}/lookup", params={"email": "grace@example.com"})).text
    [call] = [s for s in spans.get_finished_spans() if s.kind is trace.SpanKind.CLIENT and "asyncpg" not in str(s.name)]
    assert parent_id(call) == format(work.get_span_context().span_id, "016x")
    assert sent.split("-")[2] == format(call.context.span_id, "016x")  # the callee gets the call's traceparent
    values = [str(v) for v in dict(call.attributes or {}).values()]
    assert f"{url}/lookup" in values and not [v for v in values if "grace" in v or "email=" in v], values
