"""OpenTelemetry tracing: a trace follows a lead across services through the ``traceparent`` header.

Each handled event runs in a span whose parent is the event's ``traceparent``; events emitted inside
carry the span's own ``traceparent``. Spans are exported over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, configured by the
standard ``OTEL_*`` variables; with neither set, spans are created and dropped, which costs little.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from leadstream_schemas import Envelope
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_configured = False


def configure_tracing(service: str) -> None:
    """Install a tracer provider named after the service (once per process)."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"leadstream-{service}"}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


@contextmanager
def event_span(service: str, env: Envelope[Any]) -> Iterator[trace.Span]:
    """A consumer span for handling ``env``, child of the producer's trace when it has one."""
    parent = _propagator.extract({"traceparent": env.traceparent}) if env.traceparent else None
    tracer = trace.get_tracer(f"leadstream.{service}")
    with tracer.start_as_current_span(
        f"handle {env.type}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.message.id": str(env.id),
            "leadstream.event_type": env.type,
            "leadstream.subject": env.subject,
        },
    ) as span:
        yield span


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None outside a sampled span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")
