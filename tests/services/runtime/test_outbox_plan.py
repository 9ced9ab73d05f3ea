"""The relay's decisions as pure functions: how a round is planned and what its outcome means."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.structs import TopicPartition

from services.runtime.outbox import ChainResult, OutboxRow, judge, plan_round, record_headers


def row(i: int, key: bytes, size: int = 10, topic: str = "t.leadstream.lead.v1") -> OutboxRow:
    stored = [["ce_id", str(uuid.uuid4())], ["correlationid", "c"]]
    return OutboxRow(i, uuid.uuid4(), topic, key, b"x" * size, record_headers(stored), datetime.now(UTC), stored)


def test_record_headers_add_faststreams_correlation_id_from_the_contracts() -> None:
    assert record_headers([["ce_id", "e"], ["correlationid", "c"]])[-1] == ("correlation_id", b"c")
    assert record_headers([["ce_id", "e"]])[-1] == ("correlation_id", b"e")
    # Rows stored since encode() writes it themselves keep their one header.
    stored = [["ce_id", "e"], ["correlationid", "c"], ["correlation_id", "c"]]
    assert record_headers(stored) == [("ce_id", b"e"), ("correlationid", b"c"), ("correlation_id", b"c")]


def test_a_round_is_one_chain_per_partition_in_outbox_order_and_sets_aside_what_is_too_large() -> None:
    rows = [row(1, b"a"), row(2, b"b"), row(3, b"a", size=5000), row(4, b"a"), row(5, b"b")]
    plan = plan_round(rows, lambda topic, key: 0 if key == b"a" else 1, max_record_bytes=1024)
    assert plan.too_large == [rows[2]]
    assert plan.chains == {
        TopicPartition("t.leadstream.lead.v1", 0): [rows[0], rows[3]],
        TopicPartition("t.leadstream.lead.v1", 1): [rows[1], rows[4]],
    }


def test_the_verdict_parks_refusals_isolates_refused_batches_and_retries_the_rest() -> None:
    a = [row(i, b"a") for i in range(1, 4)]
    b = [row(i, b"b") for i in range(4, 7)]
    c = [row(i, b"c") for i in range(7, 9)]
    big = row(9, b"d", size=5000)
    plan = plan_round([*a, *b, *c, big], lambda t, k: {b"a": 0, b"b": 1, b"c": 2, b"d": 0}[k], max_record_bytes=1024)
    results = [
        ChainResult(sent=[a[0]], failed=[a[1]], error=MessageSizeTooLargeError()),  # a single row refused: park
        ChainResult(sent=[], failed=b[:2], error=RecordListTooLargeError()),  # a batch of two refused: isolate
        ChainResult(sent=[c[0]], failed=[c[1]], error=KafkaConnectionError()),  # not the row's fault: retry
    ]
    verdict = judge(plan, results, max_record_bytes=1024)
    assert verdict.published == [a[0], c[0]]
    assert [(r, type(e).__name__) for r, e in verdict.park] == [
        (big, "MessageSizeTooLargeError"),  # larger than outbox_max_record_bytes: never sent
        (a[1], "MessageSizeTooLargeError"),
    ]
    assert "outbox_max_record_bytes (1024)" in str(verdict.park[0][1])
    assert verdict.isolate == {b[0].id, b[1].id}
    assert isinstance(verdict.retry_error, KafkaConnectionError)
    assert verdict.restart_producer  # a failed batch leaves a gap in the producer's sequence


def test_a_clean_round_publishes_everything_and_keeps_the_producer() -> None:
    rows = [row(1, b"a"), row(2, b"a")]
    plan = plan_round(rows, lambda t, k: 0, max_record_bytes=1024)
    verdict = judge(plan, [ChainResult(sent=rows)], max_record_bytes=1024)
    assert verdict.published == rows and verdict.park == [] and verdict.isolate == frozenset()
    assert verdict.retry_error is None and not verdict.restart_producer
