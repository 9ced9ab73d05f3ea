"""Prometheus metrics every service exposes on ``/metrics``.

The alert rules and the dashboard (deploy/helm/leadstream/files) query these names; tests/deploy/test_metrics_queried.py
checks that each one they query is on a running service's ``/metrics``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from prometheus_client import Counter, Gauge, Histogram

BUILD_INFO = Gauge(
    "leadstream_build_info",
    "1 for every service process from its start (before it connects to anything), with the leadstream version it runs",
    ["service", "version"],
)

HANDLED = Counter("leadstream_events_handled_total", "Events handled", ["service", "event_type", "outcome"])
UNWANTED = Counter(
    "leadstream_events_unwanted_total",
    "Events skipped because the service's interest said it had nothing to do with them (e.g. no webhook selects them)",
    ["service", "event_type"],
)
HANDLER_SECONDS = Histogram("leadstream_handler_seconds", "Handler latency", ["service", "event_type"])
AFTER_WAITS = Counter(
    "leadstream_events_waited_total",
    "Times an event was put back until its group had done the records other topics held when it was read "
    "(EventConsumer's after: e.g. a search's end waiting for the leads it found)",
    ["service", "event_type"],
)
BATCHES = Counter(
    "leadstream_batches_total", "Batches a batch consumer committed (the projection's transactions)", ["service"]
)
BATCH_RECORDS = Counter(
    "leadstream_batch_records_total",
    "Records of the batches a batch consumer committed (over leadstream_batches_total: the mean batch)",
    ["service"],
)
DLQ_TOTAL = Counter("leadstream_dlq_total", "Records sent to a dead-letter topic", ["service", "topic", "code"])
CONSUMER_LAG = Gauge(
    "leadstream_consumer_lag",
    "Records behind the log end, per partition this member owns (measured on a timer, also while it is stuck)",
    ["service", "topic", "partition"],
)
CONSUMER_TOPICS_MISSING = Gauge(
    "leadstream_consumer_topics_missing",
    "Topics a consumer group member subscribes to that the cluster does not have (nothing of them is assigned or "
    "consumed until they exist; /readyz says which)",
    ["service", "group"],
)
OUTBOX_BACKLOG = Gauge(
    "leadstream_outbox_backlog",
    "Events waiting in the outbox (counted every second, also while publishing fails)",
    ["service"],
)
OUTBOX_PUBLISHED = Counter("leadstream_outbox_published_total", "Events published by the relay", ["service"])
OUTBOX_PARKED = Gauge("leadstream_outbox_parked", "Outbox rows parked: the broker refused them", ["service"])
OUTBOX_PARKED_TOTAL = Counter(
    "leadstream_outbox_refused_total",
    "Outbox rows the broker refused and the relay parked",
    ["service", "topic", "error"],
)
SENDS = Counter(
    "leadstream_sends_total",
    "Outreach sends by outcome: sent (the provider performed it) or failed (the step gave up)",
    ["account", "action", "outcome"],
)
READY = Gauge("leadstream_ready", "1 while /readyz passes, 0 while it fails (set at each probe)", ["service"])
HTTP_REQUESTS = Counter(
    "leadstream_http_requests_total",
    "HTTP requests served, by route template (not the raw path) and status",
    ["service", "route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "leadstream_http_request_duration_seconds",
    "HTTP request latency until the response is sent, by route template",
    ["service", "route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def leadstream_version() -> str:
    """The installed ``leadstream`` distribution's version (``unknown`` when it is not installed)."""
    try:
        return package_version("leadstream")
    except PackageNotFoundError:
        return "unknown"


def export_build_info(service: str) -> None:
    """Put ``leadstream_build_info{service, version} 1`` on ``/metrics``: a series every process has from its first
    scrape on, whatever it has done (``leadstream_ready`` appears with the first readiness probe, most others with
    a first event or request), so the dashboard lists a freshly installed release and its services from it."""
    BUILD_INFO.labels(service, leadstream_version()).set(1)
