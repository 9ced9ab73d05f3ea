"""What the runtime's tracing records on the real database: a query inside traced work is a child span of it;
one outside any (the outbox relay's and the timers' polling) is not recorded at all."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from tests.services.runtime.conftest import Probe
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
