"""Smoke-test a Kafka broker with aiokafka: the calls leadstream relies on.

    .venv/bin/python deploy/local/smoke.py [--bootstrap 127.0.0.1:19092]

Default bootstrap: $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:19092. Every check runs even if
an earlier one failed; each prints OK or FAIL with the error. Exit 0 when all required
checks pass. Creates topics named leadstream.smoke.<random>.* and deletes them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition, __version__
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.structs import OffsetAndMetadata

RESULTS: list[tuple[str, bool, bool, str]] = []  # name, ok, required, detail


async def check(
    name: str, fn: Callable[[], Awaitable[object]], *, required: bool = True, limit_s: float = 30
) -> object | None:
    try:
        result = await asyncio.wait_for(fn(), limit_s)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        RESULTS.append((name, False, required, detail))
        print(f"FAIL {name}: {detail}", flush=True)
        if os.environ.get("SMOKE_TRACEBACK"):
            traceback.print_exc()
        return None
    RESULTS.append((name, True, required, ""))
    shown = "" if result is None else f" -> {result!r}"[:300]
    print(f"OK   {name}{shown}", flush=True)
    return result


async def main(bootstrap: str) -> int:
    run = uuid.uuid4().hex[:8]
    topic = f"leadstream.smoke.{run}.v1"
    topic2 = f"leadstream.smoke.{run}.dlq"
    group = f"leadstream-smoke-{run}"
    print(f"aiokafka {__version__}, bootstrap {bootstrap}, topic {topic}", flush=True)

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    await check("admin.start", admin.start)

    async def create() -> object:
        resp = await admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=6,
                    replication_factor=1,
                    topic_configs={"retention.ms": "-1", "min.insync.replicas": "1"},
                ),
                NewTopic(topic2, num_partitions=3, replication_factor=1),
            ]
        )
        errors = [t for t in getattr(resp, "topic_errors", []) if t[1] != 0]
        if errors:
            raise RuntimeError(f"topic errors: {errors}")
        return type(resp).__name__

    await check("admin.create_topics (with configs)", create)

    async def create_again() -> object:
        # creating an existing topic must answer TOPIC_ALREADY_EXISTS (36), not hang or crash
        try:
            resp = await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
        except Exception as exc:
            return f"raised {type(exc).__name__}"
        return [t[1] for t in getattr(resp, "topic_errors", [])]

    await check("admin.create_topics (existing topic)", create_again)

    async def topics_listed() -> object:
        names = await admin.list_topics()
        if topic not in names:
            raise RuntimeError(f"{topic} not in {names}")
        return len(names)

    await check("admin.list_topics", topics_listed)
    await check("admin.describe_topics", lambda: admin.describe_topics([topic]))
    await check("admin.describe_cluster", admin.describe_cluster)

    async def describe_cfg() -> object:
        resp = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        text = repr(resp)
        if "retention.ms" not in text:
            raise RuntimeError("retention.ms not in the answer")
        return "retention.ms present"

    await check("admin.describe_configs (topic)", describe_cfg)
    await check(
        "admin.describe_configs (broker)",
        lambda: admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")]),
        required=False,
    )
    await check(
        "admin.alter_configs (topic)",
        lambda: admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic2, configs={"retention.ms": "3600000"})]
        ),
        required=False,
    )
    await check(
        "admin.create_partitions",
        lambda: admin.create_partitions({topic2: NewPartitions(total_count=4)}),
        required=False,
    )

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type="gzip",
        linger_ms=5,
    )
    await check("producer.start (acks=all, idempotent, gzip)", producer.start)

    async def produce() -> object:
        metas = []
        for i in range(30):
            key = f"lead-{i % 5}".encode()
            headers = [("ce_type", b"leadstream.smoke.v1"), ("ce_id", uuid.uuid4().hex.encode())]
            metas.append(await producer.send_and_wait(topic, f'{{"n":{i}}}'.encode(), key=key, headers=headers))
        batch = producer.create_batch()
        batch.append(key=b"k", value=b"v", timestamp=None)
        await producer.send_batch(batch, topic2, partition=0)
        return f"30 records, last offset {metas[-1].offset} partition {metas[-1].partition}"

    await check("producer.send_and_wait x30 (+headers)", produce)
    await check("producer.stop", producer.stop)

    # consumer group: consume, commit, re-join, check the committed position is honoured
    async def consume_commit() -> object:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        await consumer.start()
        try:
            got: list[Any] = []
            while len(got) < 20:
                batches = await consumer.getmany(timeout_ms=1000, max_records=20 - len(got))
                for records in batches.values():
                    got.extend(records)
            if not all(dict(r.headers).get("ce_type") == b"leadstream.smoke.v1" for r in got):
                raise RuntimeError("headers lost")
            offsets: dict[TopicPartition, int] = {}
            for r in got:
                tp = TopicPartition(r.topic, r.partition)
                offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
            committed = {tp: await consumer.committed(tp) for tp in offsets}
            if committed != offsets:
                raise RuntimeError(f"committed {committed} != {offsets}")
        finally:
            await consumer.stop()

        consumer2 = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer2.start()
        try:
            rest: list[Any] = []
            while len(rest) < 10:
                batches = await consumer2.getmany(timeout_ms=1000)
                for records in batches.values():
                    rest.extend(records)
            await consumer2.commit()
        finally:
            await consumer2.stop()
        if len(rest) != 10:
            raise RuntimeError(f"after commit expected the 10 remaining records, got {len(rest)}")
        return "20 committed, 10 remaining re-delivered to the group"

    await check("consumer group: consume, commit, committed(), rejoin", consume_commit, limit_s=60)

    async def group_offsets() -> object:
        offsets = await admin.list_consumer_group_offsets(group)
        total = sum(o.offset for o in offsets.values())
        if total != 30:
            raise RuntimeError(f"sum of committed offsets {total} != 30: {offsets}")
        return f"{len(offsets)} partitions, sum 30"

    await check("admin.list_consumer_group_offsets", group_offsets)

    async def groups() -> object:
        listed = await admin.list_consumer_groups()
        if not any(g[0] == group for g in listed):
            raise RuntimeError(f"{group} not in {listed}")
        return f"{len(listed)} groups"

    await check("admin.list_consumer_groups", groups, required=False)
    await check("admin.describe_consumer_groups", lambda: admin.describe_consumer_groups([group]), required=False)

    async def seek_and_read() -> object:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(6)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            begins = await consumer.beginning_offsets(tps)
            times = await consumer.offsets_for_times({tp: 0 for tp in tps})
            consumer.seek(tps[0], 0)
            return f"end offsets sum {sum(ends.values())}, begin {sum(begins.values())}, times {len(times)}"
        finally:
            await consumer.stop()

    await check("consumer assign/seek/end_offsets/offsets_for_times", seek_and_read)

    async def transactions() -> object:
        txp = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"smoke-tx-{run}")
        await txp.start()
        try:
            async with txp.transaction():
                await txp.send(topic2, b"in-tx", partition=0)
            return "committed"
        finally:
            await txp.stop()

    await check("transactional producer", transactions, required=False)

    await check(
        "admin.delete_records",
        lambda: admin.delete_records({TopicPartition(topic2, 0): RecordsToDelete(before_offset=1)}),
        required=False,
    )
    await check("admin.delete_topics", lambda: admin.delete_topics([topic, topic2]))
    await check("admin.close", admin.close)

    failed_required = [r for r in RESULTS if not r[1] and r[2]]
    failed_optional = [r for r in RESULTS if not r[1] and not r[2]]
    passed = sum(1 for r in RESULTS if r[1])
    print(
        f"smoke: {passed} passed, {len(failed_required) + len(failed_optional)} failed "
        f"({len(failed_optional)} optional)"
    )
    return 1 if failed_required else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
    )
    sys.exit(asyncio.run(main(parser.parse_args().bootstrap)))
