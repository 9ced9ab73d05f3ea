"""Prometheus metrics every service exposes on ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HANDLED = Counter("leadstream_events_handled_total", "Events handled", ["service", "event_type", "outcome"])
HANDLER_SECONDS = Histogram("leadstream_handler_seconds", "Handler latency", ["service", "event_type"])
DLQ_TOTAL = Counter("leadstream_dlq_total", "Records sent to a dead-letter topic", ["service", "topic", "code"])
CONSUMER_LAG = Gauge("leadstream_consumer_lag", "Records behind the log end", ["service", "topic", "partition"])
OUTBOX_BACKLOG = Gauge("leadstream_outbox_backlog", "Events waiting in the outbox", ["service"])
OUTBOX_PUBLISHED = Counter("leadstream_outbox_published_total", "Events published by the relay", ["service"])
OUTBOX_PARKED = Gauge("leadstream_outbox_parked", "Outbox rows parked: the broker refused them", ["service"])
OUTBOX_PARKED_TOTAL = Counter(
    "leadstream_outbox_refused_total",
    "Outbox rows the broker refused and the relay parked",
    ["service", "topic", "error"],
)
SENDS = Counter("leadstream_sends_total", "Outreach sends per account and action", ["account", "action"])
READY = Gauge("leadstream_ready", "1 while /readyz passes, 0 while it fails (set at each probe)", ["service"])
