"""``leadstream dlq list`` and ``leadstream dlq redrive`` on the real broker, run as an operator runs them.

Dead letters are produced straight to ``<topic>.dlq`` with the headers the consumers write
(``dead_letter_headers``): two error codes, two consumer groups, and one whose value was omitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from leadstream_schemas import LEAD, Envelope, LeadDiscovered, LeadSource, encode

from services.runtime.consuming.deadletter import dead_letter_headers
from services.runtime.headers import DLQ_HEADER_PREFIX
from tests.conftest import SettingsFactory
from tests.support.kafka import produce, read_until, wait_for

LEADSTREAM = Path(sys.executable).with_name("leadstream")
PARTITIONS = 2
Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


class Dlq:
    """A topic prefix of the test's own with the lead topic and its DLQ, and the ``leadstream`` command on it."""

    def __init__(self, bootstrap: str, prefix: str, env: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.env = env
        self.topic = prefix + LEAD.name
        self.dlq = self.topic + ".dlq"
        self.next_offset = 0

    async def cli(self, *args: str, expect: int = 0) -> tuple[str, str]:
        """Run ``leadstream dlq ARGS``; (stdout, stderr), failing unless it exits ``expect``."""
        proc = await asyncio.create_subprocess_exec(
            str(LEADSTREAM), "dlq", *args, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == expect, f"leadstream dlq {' '.join(args)} exited {proc.returncode}:\n{out!r}\n{err!r}"
        return out.decode(), err.decode()

    async def list_json(self, *args: str) -> list[dict[str, Any]]:
        """The JSON lines of ``dlq list --topic lead --json ARGS``."""
        out, _ = await self.cli("list", "--topic", "lead", "--json", *args)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def dead_letter(self, original: Raw, code: str, group: str, *, omit_value: bool = False) -> Raw:
        """The DLQ record a consumer of ``group`` writes for ``original`` (as if read at the next offset)."""
        key, value, headers = original
        record: ConsumerRecord[Any, Any] = ConsumerRecord(
            self.topic, 1, self.next_offset, 0, 0, key, value, None, 0, 0, tuple(headers)
        )
        self.next_offset += 1
        message = f"{code}: it went wrong\non two lines"
        dlq_headers = dead_letter_headers(record, code, message, group_id=group, attempts=3)
        if omit_value:
            dlq_headers[f"{DLQ_HEADER_PREFIX}value_omitted"] = "RecordTooLargeError: too large with the error headers"
        return key, None if omit_value else value, [(k, v.encode()) for k, v in dlq_headers.items()]

    async def originals(self) -> int:
        """Records in the original topic now (the CLI has exited after the broker's acks: nothing is in flight)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(self.topic, p) for p in range(PARTITIONS)])
            return sum(ends.values())
        finally:
            await consumer.stop()


@pytest.fixture
async def dlq(make_settings: SettingsFactory, subprocess_env: dict[str, str]) -> AsyncIterator[Dlq]:
    """A fresh prefix with ``leadstream.lead.v1`` and its ``.dlq`` (2 partitions each), deleted afterwards."""
    prefix = f"{subprocess_env['LEADSTREAM_TOPIC_PREFIX']}dlq{uuid.uuid4().hex[:6]}-"
    bootstrap = make_settings("admin").kafka_bootstrap_servers
    env = {**subprocess_env, "LEADSTREAM_TOPIC_PREFIX": prefix, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    world = Dlq(bootstrap, prefix, env)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (world.topic, world.dlq)])

    async def created() -> bool:
        described = await admin.describe_topics([world.topic, world.dlq])
        return all(d.get("error_code") == 0 and len(d.get("partitions") or ()) == PARTITIONS for d in described)

    await wait_for(created, timeout_s=30, what="the test topics")
    yield world
    with contextlib.suppress(Exception):
        await admin.delete_topics([world.topic, world.dlq])

    await admin.close()


def lead_event(name: str, time: datetime | None = None) -> tuple[Envelope[Any], Raw]:
    """A valid LeadDiscovered record plus a header of no contract (it must survive the round trip)."""
    env = Envelope.new(
        LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.manual, full_name=name),
        workspace_id="ws-dlq",
        source="test",
        time=time or datetime.now(UTC).replace(microsecond=0),
    )
    key, value, headers = encode(env)
    return env, (key, value, [*headers, ("x-origin", b"\x00raw")])


async def test_list_shows_dead_letters_with_their_fields_and_filters(dlq: Dlq) -> None:
    env, handled = lead_event("Ada")
    garbage: Raw = (b"k-garbage", b"not json", [("ce_id", b"not-a-uuid")])
    _, big = lead_event("Big")
    await produce(
        dlq.bootstrap,
        dlq.dlq,
        [
            dlq.dead_letter(handled, "handler_error", "leadstream-enrichment"),
            dlq.dead_letter(garbage, "invalid_json", "leadstream-outreach"),
            dlq.dead_letter(big, "handler_error", "leadstream-outreach", omit_value=True),
        ],
    )

    rows = await dlq.list_json()
    assert len(rows) == 3, rows
    by_code = {(r["error_code"], r["consumer_group"]): r for r in rows}
    ada = by_code[("handler_error", "leadstream-enrichment")]
    assert ada["event_type"] == env.type and ada["event_id"] == str(env.id)
    assert ada["original_topic"] == dlq.topic and ada["original_partition"] == 1
    assert ada["attempts"] == 3 and ada["value_omitted"] is False
    assert ada["error_message"] == "handler_error: it went wrong\non two lines"
    assert datetime.fromisoformat(ada["failed_at"]).tzinfo is not None
    assert by_code[("invalid_json", "leadstream-outreach")]["event_type"] is None
    assert by_code[("handler_error", "leadstream-outreach")]["value_omitted"] is True
    assert sorted(r["original_offset"] for r in rows) == [0, 1, 2]

    only_invalid = await dlq.list_json("--error-code", "invalid_json")
    assert [r["error_code"] for r in only_invalid] == ["invalid_json"]
    outreach = await dlq.list_json("--group", "leadstream-outreach")
    assert sorted(r["error_code"] for r in outreach) == ["handler_error", "invalid_json"]
    both = await dlq.list_json("--group", "leadstream-outreach", "--error-code", "handler_error")
    assert [r["value_omitted"] for r in both] == [True]
    assert len(await dlq.list_json("--limit", "1")) == 1

    table, _ = await dlq.cli("list", "--topic", "leadstream.lead.v1")
    assert "3 dead letters: handler_error 2, invalid_json 1" in table, table
    assert str(env.id) in table and f"{LEAD.name}:1:0" in table and "lead.discovered.v1" in table, table
    out, err = await dlq.cli("list", "--topic", "lead", "--error-code", "nope", "--json")
    assert out == "" and "no dead letters match" in err


async def test_redrive_publishes_matching_dead_letters_once_without_dlq_headers(dlq: Dlq) -> None:
    _, first = lead_event("First")
    _, second = lead_event("Second")
    _, big = lead_event("Big")
    garbage: Raw = (b"k-garbage", b"not json", [("ce_id", b"not-a-uuid")])
    await produce(
        dlq.bootstrap,
        dlq.dlq,
        [
            dlq.dead_letter(first, "handler_error", "leadstream-enrichment"),
            dlq.dead_letter(garbage, "invalid_json", "leadstream-outreach"),
            dlq.dead_letter(big, "handler_error", "leadstream-enrichment", omit_value=True),
            dlq.dead_letter(second, "handler_error", "leadstream-messaging"),
        ],
    )

    out, _ = await dlq.cli("redrive", "--topic", "lead", "--error-code", "handler_error", "--dry-run")
    assert "would re-drive 2 dead letters" in out and "skipped 1 with dlq_value_omitted" in out, out
    assert await dlq.originals() == 0

    out, _ = await dlq.cli("redrive", "--topic", "lead", "--error-code", "handler_error")
    assert "re-drove 2 dead letters" in out and "skipped 1 with dlq_value_omitted" in out, out
    assert f"leadstream-dlq-redrive.{dlq.dlq}.error_code=handler_error" in out, out
    records = await read_until(dlq.bootstrap, [dlq.topic], lambda rs: len(rs) >= 2, timeout_s=30)
    assert sorted((r.key, r.value, list(r.headers)) for r in records) == sorted([first, second])
    assert not [h for r in records for h, _ in r.headers if h.startswith(DLQ_HEADER_PREFIX)]

    out, _ = await dlq.cli("redrive", "--topic", "lead", "--error-code", "handler_error")
    assert "no dead letters match" in out, out
    assert await dlq.originals() == 2

    _, third = lead_event("Third")
    await produce(dlq.bootstrap, dlq.dlq, [dlq.dead_letter(third, "handler_error", "leadstream-enrichment")])
    out, _ = await dlq.cli("redrive", "--topic", "lead", "--error-code", "handler_error")
    assert "re-drove 1 dead letters" in out and "skipped" not in out, out
    assert await dlq.originals() == 3

    out, _ = await dlq.cli("redrive", "--topic", "lead", "--group", "leadstream-outreach")
    assert "re-drove 1 dead letters" in out and "invalid_json 1" in out, out
    records = await read_until(dlq.bootstrap, [dlq.topic], lambda rs: len(rs) >= 4, timeout_s=30)
    assert garbage in [(r.key, r.value, list(r.headers)) for r in records]
    assert await dlq.originals() == 4

    again = ("redrive", "--topic", "lead", "--error-code", "handler_error", "--from-beginning", "--dry-run")
    out, _ = await dlq.cli(*again)
    assert "would re-drive 3 dead letters" in out, out
    assert await dlq.originals() == 4


async def test_dead_letters_older_than_the_dedupe_memory_are_not_redriven_by_default(dlq: Dlq) -> None:
    # Consumers remember handled ids for LEADSTREAM_PROCESSED_EVENTS_RETENTION_DAYS (30): an event older than
    # that may have been handled by a group that forgot it, and re-driving it would apply it twice.
    old = datetime.now(UTC) - timedelta(days=40)
    _, ancient = lead_event("Ancient", time=old)
    _, recent = lead_event("Recent")
    await produce(
        dlq.bootstrap,
        dlq.dlq,
        [
            dlq.dead_letter(ancient, "handler_error", "leadstream-enrichment"),
            dlq.dead_letter(recent, "handler_error", "leadstream-enrichment"),
        ],
    )
    out, _ = await dlq.cli("redrive", "--topic", "lead")
    assert "re-drove 1 dead letters" in out and "skipped 1 whose event is older" in out, out
    records = await read_until(dlq.bootstrap, [dlq.topic], lambda rs: len(rs) >= 1, timeout_s=30)
    assert [(r.key, r.value) for r in records] == [recent[:2]]
    out, _ = await dlq.cli("redrive", "--topic", "lead", "--allow-stale", "--from-beginning")
    assert "re-drove 2 dead letters" in out and "older" not in out, out
    assert await dlq.originals() == 3


async def test_unknown_or_missing_topic_exits_one(dlq: Dlq) -> None:
    _, err = await dlq.cli("list", "--topic", "nope", expect=1)
    assert "unknown topic 'nope'" in err
    dlq.env["LEADSTREAM_TOPIC_PREFIX"] = dlq.prefix + "missing-"
    _, err = await dlq.cli("redrive", "--topic", "lead", expect=1)
    assert "does not exist" in err
