"""The webhooks service's Prometheus metrics (served on ``/metrics`` with the runtime's)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter(
    "leadstream_webhook_attempts_total",
    "Delivery attempts by outcome (delivered, http_error, timeout, connection_error, refused_target, invalid_url)",
    ["outcome"],
)
ATTEMPT_SECONDS = Histogram("leadstream_webhook_attempt_seconds", "Duration of a delivery attempt")
DELIVERIES = Counter(
    "leadstream_webhook_deliveries_total",
    "Deliveries that ended: delivered, failed (given up), or cancelled (type no longer selected)",
    ["status"],
)
ENQUEUED = Counter("leadstream_webhook_enqueued_total", "Deliveries queued (one per event and matching subscription)")
ENDPOINTS_DISABLED = Counter(
    "leadstream_webhook_disables_total", "Subscriptions disabled, by reason (failing, operator)", ["reason"]
)
DISABLED_NOW = Gauge("leadstream_webhook_disabled_endpoints", "Subscriptions disabled now, by reason", ["reason"])
BACKLOG = Gauge("leadstream_webhook_backlog", "Pending deliveries (queued, retrying, or held by a disabled endpoint)")
