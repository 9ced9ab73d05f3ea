"""Bad input and handler faults on the real broker: poison records and failing handlers end on the
DLQ with their error, infrastructure errors are retried without limit, and the stream never stalls.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import RecordMetadata
from leadstream_schemas import Envelope, InviteSent, LeadDiscovered, LeadErased, encode
from leadstream_schemas.upcasting import UPCASTERS
from sqlalchemy.exc import OperationalError

from services.runtime.consumer import HandlerContext, PermanentError, RetryLater, ignorable
from services.runtime.personal import KeyStoreError
from tests.services.runtime.conftest import Probe
from tests.support.kafka import read_until, wait_for
from tests.support.probe.helpers import (
    caused_by,
    dead_letters_of,
    discovered,
    effect_origins,
    headers_of,
    processed_count,
    raw,
    send,
)

Records = list[ConsumerRecord[Any, Any]]


async def _dead_letters(probe: Probe, origins: list[RecordMetadata]) -> dict[int, dict[str, str]]:
    """Read the DLQ until every origin has a dead letter; returns origin offset -> DLQ headers."""
    recs = await read_until(
        probe.bootstrap,
        [probe.dlq_topic],
        lambda rs: all(dead_letters_of(rs, o, probe.settings.group_id) for o in origins),
        timeout_s=60,
    )
    out = {}
    for origin in origins:
        letters = dead_letters_of(recs, origin, probe.settings.group_id)
        assert len(letters) == 1, f"offset {origin.offset} dead-lettered {len(letters)} times"
        out[origin.offset] = headers_of(letters[0])
    return out


async def _handled(probe: Probe, event_id: uuid.UUID) -> Records:
    """Wait until the probe handled ``event_id`` and its emitted event reached Kafka."""
    await wait_for(lambda: effect_origins(probe.service.engine, event_id), timeout_s=60, what=f"effect of {event_id}")
    return await read_until(probe.bootstrap, [probe.lead_topic], lambda rs: bool(caused_by(rs, event_id)))


async def test_poison_records_are_dead_lettered_and_the_next_record_is_processed(probe: Probe) -> None:
    good = discovered(full_name="Grace Hopper")
    key, value, headers = raw(good)
    poison_env = discovered(good.data.lead_id)
    _, poison_value, poison_headers = raw(poison_env)
    unknown = [(k, v if k != "ce_type" else b"leadstream.lead.teleported.v1") for k, v in poison_headers]
    no_id = [(k, v) for k, v in poison_headers if k != "ce_id"]
    bad_field = json.dumps({**json.loads(poison_value), "source": "carrier-pigeon"}).encode()
    cases = [
        ("invalid_json", b'{"lead_id": ', poison_headers, "not valid JSON"),
        ("unknown_type", poison_value, unknown, "leadstream.lead.teleported.v1"),
        ("missing_header", poison_value, no_id, "ce_id"),
        ("invalid_field", bad_field, poison_headers, "source"),
    ]
    # One key, so every record lands on one partition: the valid one comes after all the poison.
    sent = await send(
        probe.bootstrap, probe.lead_topic, [(key, v, h) for _, v, h, _ in cases] + [(key, value, headers)]
    )
    assert len({md.partition for md in sent}) == 1

    letters = await _dead_letters(probe, sent[:-1])
    for (code, _, _, needle), origin in zip(cases, sent, strict=False):
        h = letters[origin.offset]
        assert h["dlq_error_code"] == code
        assert needle in h["dlq_error_message"], h["dlq_error_message"]
        assert h["dlq_original_topic"] == probe.lead_topic
        assert h["dlq_original_partition"] == str(origin.partition)
        assert h["dlq_original_offset"] == str(origin.offset)
        assert h["dlq_attempts"] == "0"  # schema-invalid: dead-lettered at once, never retried
        assert h["dlq_consumer_group"] == probe.settings.group_id
    dlq = await read_until(
        probe.bootstrap, [probe.dlq_topic], lambda rs: bool(dead_letters_of(rs, sent[0], probe.settings.group_id))
    )
    letter = dead_letters_of(dlq, sent[0], probe.settings.group_id)[0]
    assert letter.value == b'{"lead_id": ' and letter.key == key  # the record itself, unchanged

    out = await _handled(probe, good.id)
    assert len(caused_by(out, good.id)) == 1
    assert await effect_origins(probe.service.engine, good.id) == ["event"]


async def test_failing_handler_is_retried_a_bounded_number_of_times_then_dead_lettered(probe: Probe) -> None:
    bad = discovered()
    later = discovered(bad.data.lead_id)  # same key: same partition, right behind the failing record
    probe.handler.fail(bad.id, lambda: RuntimeError("boom"))
    sent = await send(probe.bootstrap, probe.lead_topic, [raw(bad), raw(later)])
    assert sent[0].partition == sent[1].partition

    h = (await _dead_letters(probe, sent[:1]))[sent[0].offset]
    max_attempts = probe.settings.consumer_max_attempts
    assert probe.handler.attempts[bad.id] == max_attempts
    assert h["dlq_error_code"] == "handler_error"
    assert h["dlq_attempts"] == str(max_attempts)
    assert "RuntimeError: boom" in h["dlq_error_message"]
    assert h["ce_id"] == str(bad.id)  # the original CloudEvents headers travel with the dead letter

    await _handled(probe, later.id)
    # Every failed attempt wrote a row and emitted an event in its transaction; all were rolled back.
    assert await effect_origins(probe.service.engine, bad.id) == []
    assert await processed_count(probe.service.engine, bad.id) == 0
    assert await effect_origins(probe.service.engine, later.id) == ["event"]


async def test_permanent_error_is_dead_lettered_without_retry(probe: Probe) -> None:
    bad, later = discovered(), discovered()
    probe.handler.fail(bad.id, lambda: PermanentError("lead cannot be processed"))
    sent = await send(probe.bootstrap, probe.lead_topic, [raw(bad)])
    h = (await _dead_letters(probe, sent))[sent[0].offset]
    assert probe.handler.attempts[bad.id] == 1
    assert h["dlq_error_code"] == "handler_error"
    assert h["dlq_attempts"] == "1"
    assert "PermanentError: lead cannot be processed" in h["dlq_error_message"]
    await send(probe.bootstrap, probe.lead_topic, [raw(later)])
    await _handled(probe, later.id)


def _outage() -> BaseException:
    return OperationalError("SELECT 1", None, ConnectionRefusedError("connection refused"))


@pytest.mark.parametrize(
    "error",
    [_outage, lambda: RetryLater(0.01, "provider says wait")],
    ids=["database_outage", "rate_limit"],
)
async def test_what_is_not_the_records_fault_is_retried_without_limit_never_dead_lettered(
    probe: Probe, error: Callable[[], BaseException]
) -> None:
    # An outage (infrastructure) or a rate limit (each a short wait sat through inline) is not the record's
    # fault: more failed attempts than a poison record is allowed, and the event is handled, not
    # dead-lettered (a rate-limited one used to be, as retry_exhausted).
    env = discovered()
    times = probe.settings.consumer_max_attempts + 2
    probe.handler.fail(env.id, error, times=times)
    marker_key, _, marker_headers = raw(discovered(env.data.lead_id))
    sent = await send(probe.bootstrap, probe.lead_topic, [raw(env), (marker_key, b"not json", marker_headers)])
    await _handled(probe, env.id)
    assert probe.handler.attempts[env.id] == times + 1
    assert await effect_origins(probe.service.engine, env.id) == ["event"]
    # The poison record behind it on the same partition reached the DLQ, so a dead letter of the
    # event (written before it) would be there too: there is none.
    await _dead_letters(probe, sent[1:])
    dlq = await read_until(
        probe.bootstrap, [probe.dlq_topic], lambda rs: bool(dead_letters_of(rs, sent[1], probe.settings.group_id))
    )
    assert dead_letters_of(dlq, sent[0], probe.settings.group_id) == []
    assert probe.service.consumers[0].healthy


async def test_transient_failure_then_success_is_handled_once(probe: Probe) -> None:
    env = discovered()
    probe.handler.fail(env.id, lambda: RuntimeError("flaky"), times=probe.settings.consumer_max_attempts - 1)
    await send(probe.bootstrap, probe.lead_topic, [raw(env)])
    out = await _handled(probe, env.id)
    assert probe.handler.attempts[env.id] == probe.settings.consumer_max_attempts
    assert await effect_origins(probe.service.engine, env.id) == ["event"]
    assert len(caused_by(out, env.id)) == 1


async def test_a_handler_timing_out_while_the_database_answers_is_bounded_not_an_outage(probe: Probe) -> None:
    # TimeoutError and ConnectionError are OSErrors, like a dropped database connection; with the
    # database answering they are the handler's own failure (a provider that hangs), so they are retried
    # a bounded number of times and dead-lettered instead of stalling the partition forever.
    bad = discovered()
    later = discovered(bad.data.lead_id)  # same key: same partition, right behind the failing record
    probe.handler.fail(bad.id, lambda: TimeoutError("provider did not answer in 10 s"))
    sent = await send(probe.bootstrap, probe.lead_topic, [raw(bad), raw(later)])
    h = (await _dead_letters(probe, sent[:1]))[sent[0].offset]
    assert probe.handler.attempts[bad.id] == probe.settings.consumer_max_attempts
    assert h["dlq_error_code"] == "handler_error"
    assert "TimeoutError: provider did not answer" in h["dlq_error_message"]
    await _handled(probe, later.id)
    assert probe.service.consumers[0].healthy


async def test_same_event_delivered_twice_has_one_effect(probe: Probe) -> None:
    env = discovered(full_name="Ada Lovelace")
    marker = discovered(env.data.lead_id)  # same partition, after both copies
    record = encode(env)
    await send(probe.bootstrap, probe.lead_topic, [record, record, raw(marker)])
    out = await _handled(probe, marker.id)
    # Per-partition order: once the marker's output is on Kafka, anything the copies caused is too.
    assert len(caused_by(out, env.id)) == 1
    assert await effect_origins(probe.service.engine, env.id) == ["event"]
    assert await processed_count(probe.service.engine, env.id) == 1


async def test_deeply_nested_record_is_dead_lettered_not_a_stall(probe: Probe) -> None:
    # Deeply nested JSON makes a JSON parser raise RecursionError rather than a JSON error; the
    # contract's decoder reports it as invalid JSON, so the record is dead-lettered and the loop goes on.
    good = discovered()
    key, _, headers = raw(discovered(good.data.lead_id))
    nested = b"[" * 200_000 + b"]" * 200_000
    sent = await send(probe.bootstrap, probe.lead_topic, [(key, nested, headers), raw(good)])
    h = (await _dead_letters(probe, sent[:1]))[sent[0].offset]
    assert h["dlq_error_code"] == "invalid_json"
    assert "nested too deeply" in h["dlq_error_message"]
    assert h["dlq_attempts"] == "0"
    await _handled(probe, good.id)


async def test_record_that_crashes_the_decoder_is_dead_lettered_not_a_stall(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A decoder failure nobody foresaw (here: an error raised for one poisoned payload) would fail the
    # same way on every re-read: the consumer dead-letters it as undecodable instead of restarting forever.
    import services.runtime.consumer as consumer_module

    real_decode = consumer_module.decode

    def exploding_decode(value: bytes | None, headers: Any) -> Any:
        if value == b'{"boom": true}':
            raise MemoryError("simulated decoder crash")
        return real_decode(value, headers)

    monkeypatch.setattr(consumer_module, "decode", exploding_decode)
    good = discovered()
    key, _, headers = raw(discovered(good.data.lead_id))
    sent = await send(probe.bootstrap, probe.lead_topic, [(key, b'{"boom": true}', headers), raw(good)])
    h = (await _dead_letters(probe, sent[:1]))[sent[0].offset]
    assert h["dlq_error_code"] == "undecodable"
    assert "MemoryError" in h["dlq_error_message"]
    assert h["dlq_attempts"] == "0"
    await _handled(probe, good.id)


async def test_record_too_large_for_the_dlq_is_dead_lettered_without_its_value(probe: Probe) -> None:
    # A record that just fits the topic no longer fits once the error headers are added: the dead
    # letter keeps the headers (the record stays readable at its original offset) instead of stalling.
    good = discovered()
    key = str(good.data.lead_id).encode()
    big = os.urandom(1_048_200)  # incompressible, and not JSON
    sent = await send(probe.bootstrap, probe.lead_topic, [(key, big, []), raw(good)], max_request_size=2 * 1024 * 1024)
    h = (await _dead_letters(probe, sent[:1]))[sent[0].offset]
    assert h["dlq_error_code"] == "missing_header"
    assert "original offset" in h["dlq_value_omitted"]
    await _handled(probe, good.id)


class _FlakyPublisher:
    """Wraps the real broker: the first ``failures`` publishes raise as if the broker were unreachable."""

    def __init__(self, broker: Any, failures: int) -> None:
        self.broker = broker
        self.failures = failures
        self.calls = 0

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaConnectionError("simulated broker hiccup")
        return await self.broker.publish(*args, **kwargs)


async def test_dead_letter_publish_is_retried_through_a_broker_hiccup_and_readiness_recovers(probe: Probe) -> None:
    consumer = probe.service.consumers[0]
    flaky = _FlakyPublisher(consumer.dead_letters.broker, failures=2)
    consumer.dead_letters.broker = flaky  # type: ignore[assignment]
    try:
        key, _, headers = raw(discovered())
        sent = await send(probe.bootstrap, probe.lead_topic, [(key, b"not json", headers)])
        h = (await _dead_letters(probe, sent))[sent[0].offset]
    finally:
        consumer.dead_letters.broker = flaky.broker
    assert h["dlq_error_code"] == "invalid_json"
    assert flaky.calls == 3
    # Not left "unready" by the failed attempts once the dead letter is written (the test may read it from the
    # DLQ a moment before the publisher hears the broker's ack).
    await wait_for(lambda: consumer.healthy, timeout_s=10, what="readiness back after the dead letter")


@pytest.mark.parametrize("cause", ["configuration", "record"])
async def test_a_failed_key_lookup_is_retried_by_cause(
    probe: Probe, monkeypatch: pytest.MonkeyPatch, cause: str
) -> None:
    # The key store missing a key-encryption key is not the record's fault: retried past the attempt limit,
    # never dead-lettered. A lookup failing for one record (a bug) is: after its attempts, and the next goes on.
    consumer = probe.service.consumers[0]
    env = discovered()
    lead = str(env.data.lead_id)
    max_attempts = probe.settings.consumer_max_attempts
    failures = max_attempts + 2 if cause == "configuration" else max_attempts
    calls: list[int] = []
    real_load = consumer.personal.load

    async def load(people: Any) -> None:
        if any(p is not None and p[1] == lead for p in people) and len(calls) < failures:
            calls.append(1)
            raise KeyStoreError("no key-encryption key opens it") if cause == "configuration" else ValueError("bug")
        await real_load(people)

    monkeypatch.setattr(consumer.personal, "load", load)
    later = discovered(env.data.lead_id)  # same key: right behind it
    marker_key, _, marker_headers = raw(discovered(env.data.lead_id))
    sent = await send(
        probe.bootstrap, probe.lead_topic, [raw(env), raw(later), (marker_key, b"not json", marker_headers)]
    )
    await _handled(probe, later.id)
    assert len(calls) == failures
    letters = await _dead_letters(probe, sent[2:])  # the poison marker behind both: the DLQ is read up to it
    assert letters[sent[2].offset]["dlq_error_code"] == "invalid_json"
    dlq = await read_until(
        probe.bootstrap, [probe.dlq_topic], lambda rs: bool(dead_letters_of(rs, sent[2], probe.settings.group_id))
    )
    mine = dead_letters_of(dlq, sent[0], probe.settings.group_id)
    if cause == "configuration":
        assert mine == []
        assert await effect_origins(probe.service.engine, env.id) == ["event"]
    else:
        assert [headers_of(r)["dlq_error_code"] for r in mine] == ["key_lookup"]
        assert headers_of(mine[0])["dlq_attempts"] == str(max_attempts)
        assert "ValueError: bug" in headers_of(mine[0])["dlq_error_message"]
        assert await effect_origins(probe.service.engine, env.id) == []


async def test_records_of_types_not_handled_are_skipped_undecoded_and_poison_of_handled_types_still_dead_lettered(
    probe: Probe,
) -> None:
    """The probe handles ``LeadDiscovered`` only: a broken record typed as another contract event is skipped
    (its services decode it), the same bytes typed as ``LeadDiscovered`` are dead-lettered, and the stream goes on."""
    good = discovered(full_name="Ada Lovelace")
    key, value, headers = raw(good)
    other = InviteSent(lead_id=good.data.lead_id, campaign_id=uuid.uuid4(), account_id=uuid.uuid4())
    _, _, other_headers = raw(Envelope.new(other, workspace_id=good.workspace_id, source="test"))
    _, _, poison_headers = raw(discovered(good.data.lead_id))
    sent = await send(
        probe.bootstrap,
        probe.lead_topic,
        [(key, b'{"lead_id": ', other_headers), (key, b'{"lead_id": ', poison_headers), (key, value, headers)],
    )
    assert len({md.partition for md in sent}) == 1  # in this order on one partition

    # The dead letter of the second record is published before the third record is handled, and the first
    # record was done before it: once it is there, the DLQ holds all this group will ever write about the first.
    dlq = await read_until(
        probe.bootstrap, [probe.dlq_topic], lambda rs: bool(dead_letters_of(rs, sent[1], probe.settings.group_id))
    )
    assert headers_of(dead_letters_of(dlq, sent[1], probe.settings.group_id)[0])["dlq_error_code"] == "invalid_json"
    assert dead_letters_of(dlq, sent[0], probe.settings.group_id) == []
    out = await _handled(probe, good.id)
    assert len(caused_by(out, good.id)) == 1


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        (InviteSent.event_type, True),  # a current type the consumer does not handle
        (LeadDiscovered.event_type, False),  # handled
        (LeadErased.event_type, False),  # always decoded: it marks the person erased in the key cache
        ("leadstream.lead.teleported.v1", False),  # unknown: decoded, and dead-lettered as such
        (None, False),  # no type header: decoded, and dead-lettered as such
    ],
)
def test_ignorable_skips_only_current_contract_types_not_handled(event_type: str | None, expected: bool) -> None:
    headers = [("ce_id", b"x")] + ([] if event_type is None else [("ce_type", event_type.encode())])
    assert ignorable(headers, {LeadDiscovered.event_type}) is expected


def test_ignorable_never_skips_an_old_version_that_is_upcast() -> None:
    old, (new, _) = next(iter(UPCASTERS.items()))
    assert ignorable([("ce_type", old.encode())], set()) is False  # the upcast type might be handled
    assert ignorable([("ce_type", new.encode())], set()) is True


async def test_a_poll_of_records_the_service_ignores_does_not_wake_the_relay(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waking the outbox relay makes it read the outbox (a query). A service that ignores most of a topic woke it
    after every poll, reading its empty outbox as often as records came in: only a handler that emitted wakes it."""
    consumer = probe.service.consumers[0]
    wakes: list[str] = []
    wake = probe.service.relay.wake

    def counted(payload: str = "") -> None:
        wakes.append(payload)
        wake(payload)

    monkeypatch.setattr(probe.service.relay, "wake", counted)
    lead = uuid.uuid4()
    handled = discovered(lead)  # the same key: the same partition, after them
    handled_ws = handled.workspace_id
    ignored = [
        Envelope.new(
            InviteSent(lead_id=lead, campaign_id=uuid.uuid4(), account_id=uuid.uuid4()),
            workspace_id=handled_ws,
            source="test",
        )
        for _ in range(5)
    ]
    sent = await send(probe.bootstrap, probe.lead_topic, [raw(env) for env in ignored])
    tp = TopicPartition(probe.lead_topic, sent[-1].partition)
    # Done with them (what the loop records as done for the partition; the lag gauge's source).
    await wait_for(lambda: consumer._done(tp), until=lambda done: (done or 0) > sent[-1].offset, what="ignored")
    assert wakes == []
    await send(probe.bootstrap, probe.lead_topic, [raw(handled)])
    await _handled(probe, handled.id)
    assert wakes, "the handler's emitted event woke the relay"


async def test_after_commit_calls_run_once_the_handler_committed_never_for_a_rolled_back_attempt(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler's ``ctx.after_commit(call)`` (how handlers wake timer loops) runs after its transaction committed,
    once per call however often it was registered, and not for an attempt that rolled back; a call that raises is
    logged and neither stops the others nor the event."""
    consumer = probe.service.consumers[0]
    inner = consumer.handlers[LeadDiscovered.event_type]
    flaky, steady = discovered(), discovered()
    seen: list[tuple[uuid.UUID, str, bool]] = []  # (event, call, whether its transaction was over)

    async def handler(env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        if env.id in (flaky.id, steady.id):

            def call(name: str) -> Callable[[], None]:
                def run() -> None:
                    seen.append((env.id, name, ctx.conn.closed))
                    if name == "broken":
                        raise RuntimeError("a wake's own bug")

                return run

            wake, broken, last = call("wake"), call("broken"), call("last")
            ctx.after_commit(wake)
            ctx.after_commit(broken)
            ctx.after_commit(wake)  # registered twice: called once
            ctx.after_commit(last)
        await inner(env, ctx)

    monkeypatch.setitem(consumer.handlers, LeadDiscovered.event_type, handler)
    probe.handler.fail(flaky.id, lambda: RuntimeError("flaky"), times=1)  # its first attempt rolls back
    await send(probe.bootstrap, probe.lead_topic, [raw(flaky), raw(steady)])
    await _handled(probe, flaky.id)
    await _handled(probe, steady.id)
    await wait_for(lambda: len(seen) >= 6, what="the after-commit calls of both events")
    assert probe.handler.attempts[flaky.id] == 2
    for event in (flaky, steady):
        assert [(name, over) for eid, name, over in seen if eid == event.id] == [
            ("wake", True),
            ("broken", True),
            ("last", True),
        ]
        assert await effect_origins(probe.service.engine, event.id) == ["event"]
    assert consumer.healthy
