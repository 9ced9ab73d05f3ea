"""What the runtime's tracing records: a query inside traced work is a child span of it, one outside any (the
outbox relay's and the timers' polling) is not recorded at all, a batch consumer's are not even made, and none
is made while spans go nowhere; HTTP spans (served and called) keep no query string; failures are exported by
error class only."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.runtime.consuming.batch import TP, ApplyResult, BatchPipeline, DeadLetter, RecordKey
from services.runtime.consuming.deadletter import DeadLetterPublisher
from services.runtime.settings import RuntimeSettings
from tests.services.runtime.conftest import Probe
from tests.support.infra import ROOT
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


class QueryingCheckpoint:
    """Applies a batch by running one query on the probe's database (``SELECT <offset> AS batch_query``)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def prepare(
        self, records: Sequence[ConsumerRecord[Any, Any]], refused: Mapping[RecordKey, tuple[str, str]] | None = None
    ) -> list[int]:
        return [r.offset for r in records]

    async def apply(
        self, prepared: list[int], expected: Mapping[TP, int | None], dead_letter: DeadLetter
    ) -> ApplyResult:
        async with self.probe.service.engine.connect() as conn:
            await conn.execute(text(f"SELECT {prepared[0]} AS batch_query"))
        return ApplyResult(applied=len(prepared), next_offsets={("t", 0): prepared[-1] + 1})

    async def ping(self) -> None:
        return None


async def test_a_batch_consumers_queries_make_no_span(probe: Probe, spans: InMemorySpanExporter) -> None:
    # Its transactions are part of no traced work (each record's span is recorded after the commit): their query
    # spans would be dropped, so they are not made. Here a traced span is current, so a made one would be recorded.
    settings = RuntimeSettings(service_name="batch-test")
    pipeline: BatchPipeline[list[int]] = BatchPipeline(
        QueryingCheckpoint(probe), DeadLetterPublisher(settings, "batch-test"), settings
    )
    record = ConsumerRecord("t", 0, 41, 0, 0, None, b"", b"", 0, 0, ())
    with trace.get_tracer("test").start_as_current_span("work"):
        result = await pipeline.apply([record], None, {})
        async with probe.service.engine.connect() as conn:
            await conn.execute(text("SELECT 2 AS traced"))
    assert result.applied == 1 and result.next_offsets == {("t", 0): 42}
    statements = [str(dict(s.attributes or {})) for s in spans.get_finished_spans()]
    assert any("traced" in st for st in statements), statements  # query spans are made outside the batch
    assert not any("batch_query" in st for st in statements), statements


def test_query_spans_are_made_only_while_spans_are_exported(tmp_path: Path) -> None:
    # A process (with no OTEL_EXPORTER_OTLP_* endpoint) instruments its queries only once something exports spans:
    # a span per query that nobody reads costs the projection a tenth of its CPU under load. Its own process, as
    # the test session's services have long installed an exporter.
    script = tmp_path / "tracing.py"
    script.write_text(
        textwrap.dedent("""
            import asyncpg.connection
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            from services.runtime.telemetry import configure_tracing, export_spans

            def wrapped() -> bool:
                return hasattr(asyncpg.connection.Connection.execute, "__wrapped__")

            configure_tracing("probe")
            before = wrapped()
            export_spans(SimpleSpanProcessor(InMemorySpanExporter()))
            print(before, wrapped())
        """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
    out = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "True"], out.stderr


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
