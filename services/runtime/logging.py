"""Structured JSON logs: one object per line with the service, level, message, the context of the work in hand
and any ids given in ``extra``.

Every line carries ``trace_id`` and ``span_id`` (of the current span: an HTTP request, a handled event, a timer)
and ``lead_id``, ``campaign_id`` and ``correlation_id`` (of the event or timer being handled, set with
:func:`log_context` by the consumer core and :func:`~services.runtime.telemetry.work_span`); each is null
where it does not apply. Personal data never goes into logs: pass ids (lead, campaign, correlation), not
names or emails. Every handler scrubs what it emits anyway (:class:`~services.runtime.scrub.ScrubFilter`):
message arguments, ``extra`` values and exceptions lose emails, URLs, quoted values and names; the templates
and keys stay.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from opentelemetry import trace

from .scrub import ScrubFilter

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
CONTEXT_KEYS = ("trace_id", "span_id", "lead_id", "campaign_id", "correlation_id")
"""Keys every JSON line has (null where they do not apply)."""
_NO_IDS: tuple[str | None, str | None, str | None] = (None, None, None)
_ids: ContextVar[tuple[str | None, str | None, str | None]] = ContextVar("leadstream_log_ids", default=_NO_IDS)


@contextmanager
def log_context(
    *, lead_id: str | None = None, campaign_id: str | None = None, correlation_id: str | None = None
) -> Iterator[None]:
    """Put these ids in every log line written inside the block (in this task and the tasks it starts)."""
    token = _ids.set((lead_id, campaign_id, correlation_id))
    try:
        yield
    finally:
        _ids.reset(token)


class ContextFilter(logging.Filter):
    """Stamps each record with the current trace and span and the ids of :func:`log_context`.

    A handler's filter runs where the line is logged, so it sees that task's context. The stamp is kept in
    ``record._context`` (underscored: other filters leave it alone, e.g. one that rewrites ``extra`` values).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        lead, campaign, correlation = _ids.get()
        record._context = {
            "trace_id": format(ctx.trace_id, "032x") if ctx.is_valid else None,
            "span_id": format(ctx.span_id, "016x") if ctx.is_valid else None,
            "lead_id": lead,
            "campaign_id": campaign,
            "correlation_id": correlation,
        }
        return True


def _context(record: logging.LogRecord) -> dict[str, str | None]:
    return getattr(record, "_context", None) or dict.fromkeys(CONTEXT_KEYS)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; the context keys, then ``extra`` fields, become top-level keys."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_context(record),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    """Human-readable lines (``LEADSTREAM_LOG_JSON=false``) ending with the trace id when there is one."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = _context(record)["trace_id"]
        return f"{line} [trace {trace_id}]" if trace_id else line


def configure_logging(service: str, level: str = "INFO", json_logs: bool = True) -> None:
    """Route all logging to stderr, as JSON lines when ``json_logs``, each with its context (module docstring)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(ScrubFilter())
    handler.setFormatter(JsonFormatter(service) if json_logs else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "faststream"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
