"""OpenTelemetry traces and the HTTP metrics: a trace follows a lead across services through ``traceparent``.

Every :class:`~services.runtime.service.Service` calls :func:`instrument_service`, which wires it all:

- **HTTP**: the FastAPI instrumentation starts a server span per request, continuing the caller's
  ``traceparent`` header; events the request emits carry that span's traceparent
  (:meth:`Service.new_envelope <services.runtime.service.Service.new_envelope>`). :class:`HttpMetrics` counts
  requests and their latency per route template (``leadstream_http_requests_total``,
  ``leadstream_http_request_duration_seconds``). Probes and scrapes (``/healthz``, ``/readyz``, ``/metrics``)
  are neither traced nor counted: a 503 from ``/readyz`` is the readiness alert's business.
- **Kafka**, through the outbox: an event's ``traceparent`` header is written with its outbox row; the
  consumer core handles each event in a span that continues it (:func:`event_span`), and events emitted
  there carry that span's traceparent. The projection's live batches record one span per event, after
  the batch committed (:func:`record_batch_spans`); its rebuilds record none.
- **Background work** (timers, search pages): rows that start work later store the traceparent of
  what scheduled them; the work runs in a span continuing it (:func:`work_span`).
- **Libraries**: httpx (provider and service calls: client spans, ``traceparent`` sent along) and asyncpg
  (queries, without their parameters, only while spans are exported: see below). HTTP spans keep no query
  string, and failures are exported by their error class only (:class:`ErrorClassOnly`): either can hold
  personal data. A database query outside any traced work (the outbox relay's and the timers' polling) is not
  recorded: it would be a trace of one span, many times a second; the batch consumer's queries, which are
  never part of traced work, skip the instrumentation altogether (:func:`untraced_queries`).

Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
is set, configured by the standard ``OTEL_*`` variables (:func:`export_spans`); with neither set, the spans of
requests and events are created and dropped (log lines carry their ids, outgoing calls their traceparent), and
neither a span per query nor the projection's span per event is made: nobody would see them, and the query
spans alone were 10-16 % of the projection's CPU under the live benchmark's load (py-spy, ``bench/results``).
Every log line carries the current trace and span ids (:mod:`services.runtime.logging`); the spans and log
contexts here add the lead, campaign and correlation ids of the work in hand, never personal data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from leadstream_schemas import Envelope
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, Status
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logging import log_context
from .metrics import HTTP_REQUESTS, HTTP_SECONDS

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord
    from fastapi import FastAPI

_propagator = TraceContextTextMapPropagator()
_configured = False
_exporting = False
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probes and scrapes: no span, no HTTP metrics."""


class _NoOrphanQueries(Sampler):
    """Root sampler: a database query that is part of no traced work (the relay's and the timers' polling, many
    times a second) is dropped; every other root span is recorded, an outgoing HTTP call too (its traceparent
    then tells the callee to record). Spans with a parent follow the parent's decision (:class:`ParentBased`)."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT and attributes and ("db.system" in attributes or "db.system.name" in attributes):
            return SamplingResult(Decision.DROP)
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "NoOrphanQueries"


def configure_tracing(service: str) -> None:
    """Install a tracer provider named after the service and instrument httpx (once per process); with an OTLP
    endpoint set, export the spans there (:func:`export_spans`, which also instruments asyncpg)."""
    global _configured
    if _configured:
        return
    _configured = True
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"leadstream-{service}"}),
        sampler=ParentBased(root=_NoOrphanQueries()),
    )
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(request_hook=_without_query, async_request_hook=_async_without_query)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        export_spans(BatchSpanProcessor(ErrorClassOnly(OTLPSpanExporter())))


def export_spans(processor: SpanProcessor) -> None:
    """Send the process's finished spans to ``processor`` (after :func:`configure_tracing`), and from now on make
    the spans that only matter to someone who reads them: one per database query, one per event a live batch
    applied (:func:`record_batch_spans`)."""
    global _exporting
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        raise RuntimeError(f"no tracer provider was installed (configure_tracing first): {provider!r}")
    provider.add_span_processor(processor)
    if not _exporting:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor(capture_parameters=False).instrument()
        _exporting = True


def untraced_queries() -> AbstractContextManager[None]:
    """Run database work that is never part of a trace (a batch consumer's transactions: its records' spans are
    recorded after the commit, :func:`record_batch_spans`) without the query instrumentation: the sampler would
    drop those spans anyway, after the instrumentation had built each one's name and attributes. (It turns every
    instrumentation off, so keep outgoing HTTP calls out of it: they would go without their traceparent.)"""
    return suppress_instrumentation()


_URL_KEYS = ("http.url", "url.full")


def _without_query(span: trace.Span, *_: object) -> None:
    """Drop the query string from an HTTP span's URL attributes: it can hold personal data (a search for a
    name, an address looked up), which never goes into telemetry. The route or path says what was called."""
    attributes = getattr(span, "attributes", None)
    if not span.is_recording() or not attributes:
        return
    for key in _URL_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, value.split("?", 1)[0])
    if "url.query" in attributes:
        span.set_attribute("url.query", "")


async def _async_without_query(span: trace.Span, *_: object) -> None:
    _without_query(span)


class ErrorClassOnly(SpanExporter):
    """Exports spans with their failures told by error class only: an exception's message (a provider's
    answer, a value Postgres refused, ``Key (email)=(...)``) can quote personal data, which never goes into
    telemetry. Exception events keep ``exception.type``; status descriptions are dropped."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([_error_class_only(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _error_class_only(span: ReadableSpan) -> ReadableSpan:
    if not span.status.description and not any(e.name == "exception" for e in span.events):
        return span
    events = [
        Event(e.name, {k: v for k, v in (e.attributes or {}).items() if k == "exception.type"}, e.timestamp)
        if e.name == "exception"
        else e
        for e in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def instrument_service(app: FastAPI, service: str) -> None:
    """Everything a service gets (see the module docstring): tracing, and the app's spans and metrics."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    configure_tracing(service)
    app.add_middleware(HttpMetrics, service=service)
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls=",".join(f"{path}$" for path in sorted(UNTRACED_PATHS)),
        exclude_spans=["receive", "send"],
        server_request_hook=_without_query,
    )


class HttpMetrics:
    """ASGI middleware: ``leadstream_http_requests_total`` and ``leadstream_http_request_duration_seconds``.

    The route label is the matched route's template (``/v1/campaigns/{campaign_id}``), never the raw path
    (ids would make a series per request); a request no route matched is ``unmatched``. A request whose
    handler raised before any response counts as 500, as Starlette answers it.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(self.service, route, method, str(status)).inc()
            HTTP_SECONDS.labels(self.service, route, method).observe(time.perf_counter() - started)


def _parent(traceparent: str | None) -> Context | None:
    return _propagator.extract({"traceparent": traceparent}) if traceparent else None


def event_ids(env: Envelope[Any]) -> dict[str, str | None]:
    """The lead, campaign and correlation ids of an event, for spans and log lines."""
    lead = getattr(env.data, "lead_id", None)
    return {
        "lead_id": str(lead) if lead is not None else None,
        "campaign_id": str(env.campaign_id) if env.campaign_id is not None else None,
        "correlation_id": str(env.correlation_id or env.id),
    }


@contextmanager
def event_context(env: Envelope[Any]) -> Iterator[None]:
    """While an event is handled (all its attempts, its dead letter): log lines carry its ids, and its trace
    (the producer's span) is the current context, so each attempt's :func:`event_span` is its child."""
    parent = _parent(env.traceparent)
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with log_context(**event_ids(env)):
            yield
    finally:
        if token is not None:
            otel_context.detach(token)


@contextmanager
def event_span(service: str, env: Envelope[Any]) -> Iterator[trace.Span]:
    """A consumer span for one attempt at handling ``env``, child of the producer's span when it has one."""
    tracer = trace.get_tracer(f"leadstream.{service}")
    attributes: dict[str, str] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.message.id": str(env.id),
        "leadstream.event_type": env.type,
        "leadstream.subject": env.subject,
        "leadstream.workspace_id": env.workspace_id,
    }
    attributes.update({f"leadstream.{k}": v for k, v in event_ids(env).items() if v is not None})
    with tracer.start_as_current_span(
        f"handle {env.type}", context=_parent(env.traceparent), kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


@contextmanager
def work_span(
    service: str,
    name: str,
    traceparent: str | None,
    *,
    lead_id: object = None,
    campaign_id: object = None,
    correlation_id: object = None,
    attributes: dict[str, str] | None = None,
) -> Iterator[trace.Span]:
    """A span for background work (a timer, a search page), continuing the trace stored with its row when
    there is one; its ids are in the span and in every log line meanwhile."""
    ids = {
        "lead_id": str(lead_id) if lead_id is not None else None,
        "campaign_id": str(campaign_id) if campaign_id is not None else None,
        "correlation_id": str(correlation_id) if correlation_id is not None else None,
    }
    attrs = dict(attributes or {})
    attrs.update({f"leadstream.{k}": v for k, v in ids.items() if v is not None})
    tracer = trace.get_tracer(f"leadstream.{service}")
    with (
        log_context(**ids),
        tracer.start_as_current_span(name, context=_parent(traceparent), attributes=attrs) as span,
    ):
        yield span


def record_batch_spans(service: str, records: Sequence[ConsumerRecord[Any, Any]], start_ns: int) -> None:
    """One span per record of a batch that just committed, child of the record's ``traceparent``, from
    ``start_ns`` to now (the batch's transaction). Only while spans are exported: a live consumer's
    records are then part of their traces; otherwise this costs nothing per record."""
    if not _exporting:
        return
    tracer = trace.get_tracer(f"leadstream.{service}")
    end_ns = time.time_ns()
    for r in records:
        headers = dict(r.headers or ())
        tp = headers.get("traceparent")
        if not tp:
            continue
        event_type = headers.get("ce_type", b"").decode(errors="replace")
        span = tracer.start_span(
            f"project {event_type}",
            context=_parent(tp.decode(errors="replace")),
            kind=SpanKind.CONSUMER,
            start_time=start_ns,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": r.topic,
                "messaging.kafka.offset": r.offset,
                "leadstream.event_type": event_type,
            },
        )
        span.end(end_time=end_ns)


def continued(traceparent: str | None) -> str | None:
    """``traceparent`` continued: the current span's when it belongs to that trace (work continuing it), else
    ``traceparent`` itself (e.g. a callback request of another trace, acting on the work)."""
    current = current_traceparent()
    if traceparent is None or (current is not None and current.split("-")[1] == traceparent.split("-")[1]):
        return current
    return traceparent


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None outside a span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")
