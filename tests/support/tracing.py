"""Spans recorded in this process, for tests of in-process services (the trace test across processes
receives them over OTLP/HTTP instead: :mod:`tests.support.otlp`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.runtime.telemetry import ErrorClassOnly, export_spans

_exporter: InMemorySpanExporter | None = None


def recorder() -> InMemorySpanExporter:
    """An in-memory exporter on the process's tracer provider, which a :class:`Service` installs (built first);
    it gets the spans as the services export them (:class:`ErrorClassOnly`)."""
    global _exporter
    if _exporter is None:
        _exporter = InMemorySpanExporter()
        export_spans(SimpleSpanProcessor(ErrorClassOnly(_exporter)))
    return _exporter


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test (a session-wide service must have been built before)."""
    exporter = recorder()
    exporter.clear()
    yield exporter
    exporter.clear()


def by_span_id(finished: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    """Finished spans by their span id in hex (as in a traceparent)."""
    return {format(s.context.span_id, "016x"): s for s in finished if s.context is not None}


def parent_id(span: ReadableSpan) -> str | None:
    """A span's parent span id in hex, or None for a root."""
    return format(span.parent.span_id, "016x") if span.parent is not None else None
