"""The one dead-letter publisher: a record a consumer gives up on goes to ``<topic>.dlq`` unchanged, with
the error and where it came from in ``dlq_*`` headers (``leadstream dlq`` reads and re-drives them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from leadstream_schemas import headers_dict

from ..broker import create_broker
from ..faults import KAFKA_RECORD_REFUSALS, Backoff
from ..headers import DLQ_HEADER_PREFIX
from ..metrics import DLQ_TOTAL
from ..outbox import faststream_correlation_id
from ..scrub import scrub_text
from ..settings import RuntimeSettings
from .policy import Abandoned

log = logging.getLogger(__name__)

DLQ_CODES = (
    "handler_error",
    "undecodable",
    # leadstream_schemas.DecodeError codes
    "invalid_json",
    "invalid_header",
    "missing_header",
    "unsupported_specversion",
    "unknown_type",
    "invalid_field",
    "upcast_failed",
)
"""The error codes a consumer dead-letters with; their ``leadstream_dlq_total`` series start at 0 (see
:meth:`DeadLetterPublisher.count_from_zero`)."""


def dead_letter_headers(
    record: ConsumerRecord[Any, Any], code: str, message: str, *, group_id: str, attempts: int
) -> dict[str, str]:
    """The headers of a record's dead-letter copy: its own headers plus the error and where it came from.

    ``message`` is scrubbed (:func:`~services.runtime.scrub.scrub_text`): no personal data in headers."""
    headers = headers_dict(record.headers)
    headers.update(
        {
            f"{DLQ_HEADER_PREFIX}error_code": code,
            # Exception and provider texts quote what they were given (names, emails): headers carry no personal data.
            f"{DLQ_HEADER_PREFIX}error_message": scrub_text(message, limit=4000),
            f"{DLQ_HEADER_PREFIX}original_topic": record.topic,
            f"{DLQ_HEADER_PREFIX}original_partition": str(record.partition),
            f"{DLQ_HEADER_PREFIX}original_offset": str(record.offset),
            f"{DLQ_HEADER_PREFIX}consumer_group": group_id,
            f"{DLQ_HEADER_PREFIX}attempts": str(attempts),
            f"{DLQ_HEADER_PREFIX}failed_at": datetime.now(UTC).isoformat(),
        }
    )
    return headers


class DeadLetterPublisher:
    """Publishes records to their topic's DLQ for one consumer group.

    A publish is retried (with backoff, without limit) until the broker takes it: a record is never
    passed without its dead letter. A record that fitted its topic but not with the error headers added
    is dead-lettered without its value (``dlq_value_omitted`` says so; it stays readable at its original
    offset). ``broker`` None: a broker of its own is connected on first use (readers without a service).
    """

    def __init__(self, settings: RuntimeSettings, group_id: str, broker: KafkaBroker | None = None) -> None:
        self.settings = settings
        self.group_id = group_id
        self.broker = broker
        self._own = broker is None
        self.healthy = True
        """False while a publish is failing (the consumer reports not-ready meanwhile)."""

    def count_from_zero(self, topics: Sequence[str]) -> None:
        """Start the dead-letter counters of ``topics`` at 0: Prometheus' ``increase()`` cannot see the first
        dead letter of a series that appears with it (the alert on dead letters would miss it)."""
        for topic in topics:
            for code in DLQ_CODES:
                DLQ_TOTAL.labels(self.settings.service_name, topic, code)

    async def publish(
        self,
        record: ConsumerRecord[Any, Any],
        code: str,
        message: str,
        *,
        attempts: int,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Dead-letter ``record`` with the error ``code`` and ``message``; returns once the broker has it
        (raises :class:`~.policy.Abandoned` when ``stop`` is set before)."""
        headers = dead_letter_headers(record, code, message, group_id=self.group_id, attempts=attempts)
        value = record.value  # unchanged: a tombstone stays a tombstone
        backoff = Backoff(self.settings.consumer_backoff_initial_s, self.settings.consumer_backoff_max_s)
        while True:
            try:
                broker = await self._broker()
                await broker.publish(
                    value, record.topic + ".dlq", key=record.key, headers=headers,
                    correlation_id=faststream_correlation_id(headers),
                )  # fmt: skip
                break
            except KAFKA_RECORD_REFUSALS as exc:
                if value is None:  # even the headers alone: passing the record beats stalling the partition
                    log.error("the DLQ refuses the dead letter; passing the record", extra={"error": repr(exc)})
                    break
                # The record fitted its topic but not with the error headers added. Retrying would stall
                # the partition forever; the value stays readable at its original offset.
                value = None
                headers[f"{DLQ_HEADER_PREFIX}value_omitted"] = (
                    f"{type(exc).__name__}: too large with the error headers; read it at the original offset"
                )
            except Exception as exc:
                self.healthy = False
                log.warning("dead-letter publish failed; retrying", extra={"error": repr(exc)})
                if await backoff.wait(stop):
                    raise Abandoned("stopping before the dead letter was written") from exc
        self.healthy = True  # the broker took it: a failed attempt above no longer makes us unready
        DLQ_TOTAL.labels(self.settings.service_name, record.topic, code).inc()
        log.error(
            "record dead-lettered",
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "code": code},
        )

    async def _broker(self) -> KafkaBroker:
        if self.broker is None:
            broker = create_broker(self.settings)
            await broker.connect()
            self.broker = broker
        return self.broker

    async def close(self) -> None:
        """Stop the broker this publisher connected itself (not a service's)."""
        if self._own and self.broker is not None:
            await self.broker.stop()
            self.broker = None
