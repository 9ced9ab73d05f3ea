"""Structured JSON logs: one object per line with the service, level, message and any ids given in ``extra``.

Personal data never goes into logs: pass ids (lead, campaign, correlation), not names or emails. Every
handler scrubs what it emits anyway (:class:`~services.runtime.scrub.ScrubFilter`): message arguments,
``extra`` values and exceptions lose emails, URLs, quoted values and names; the templates and keys stay.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from .scrub import ScrubFilter

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; ``extra`` fields become top-level keys."""

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
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out)


def configure_logging(service: str, level: str = "INFO", json_logs: bool = True) -> None:
    """Route all logging to stderr, as JSON lines when ``json_logs``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ScrubFilter())
    if json_logs:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "faststream"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
