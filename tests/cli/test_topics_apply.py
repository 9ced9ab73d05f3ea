"""``leadstream topics apply`` on the real broker, run as the command deploy jobs run.

- it prints one row per topic (topic, outcome, details) and exits 0 when nothing drifts;
- drift (a partition increase that was not allowed, fewer partitions than present) exits 1 and changes
  nothing; ``--allow-partition-increase`` adds the partitions; ``--dry-run`` only reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.runtime.kafka import all_topics
from services.runtime.settings import RuntimeSettings
from tests.conftest import SettingsFactory
from tests.support.kafka import wait_for

LEADSTREAM = Path(sys.executable).with_name("leadstream")


class Topics:
    """A topic prefix of the test's own, the ``leadstream`` command on it, and a look at the broker."""

    def __init__(self, settings: RuntimeSettings, env: dict[str, str], admin: AIOKafkaAdminClient) -> None:
        self.settings = settings
        self.env = env
        self.admin = admin
        self.names = [n for n, _, _ in all_topics(settings)]

    async def apply(self, *args: str) -> tuple[int, dict[str, tuple[str, str]], str]:
        """Run ``leadstream topics apply ARGS``: (exit code, topic -> (outcome, details), whole output)."""
        proc = await asyncio.create_subprocess_exec(
            str(LEADSTREAM),
            "topics",
            "apply",
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
        text = out.decode()
        rows = {}
        for line in text.splitlines():
            cells = [c.strip() for c in line.split("│")]
            if len(cells) == 5 and cells[1] in self.names:
                rows[cells[1]] = (cells[2], cells[3])
        return int(proc.returncode or 0), rows, text

    async def partitions(self) -> list[int]:
        """Partition count of each of the prefix's topics (0 for a missing one)."""
        metadata = {t["topic"]: len(t["partitions"]) for t in await self.admin.describe_topics()}
        return [metadata.get(n, 0) for n in self.names]


@pytest.fixture
async def topics(make_settings: SettingsFactory, subprocess_env: dict[str, str]) -> AsyncIterator[Topics]:
    """A fresh topic prefix (no topics yet) with 2 desired partitions; its topics are deleted afterwards."""
    prefix = f"{subprocess_env['LEADSTREAM_TOPIC_PREFIX']}cli{uuid.uuid4().hex[:6]}-"
    settings = make_settings("admin", topic_prefix=prefix, topic_partitions=2)
    env = {
        **subprocess_env,
        "LEADSTREAM_TOPIC_PREFIX": prefix,
        "LEADSTREAM_TOPIC_PARTITIONS": "2",
        "COLUMNS": "220",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    world = Topics(settings, env, admin)
    yield world
    with contextlib.suppress(Exception):
        await admin.delete_topics(world.names)
    await admin.close()


async def test_creates_every_topic_then_reports_all_exist_and_exits_zero(topics: Topics) -> None:
    code, rows, out = await topics.apply()
    assert code == 0, out
    assert rows == dict.fromkeys(topics.names, ("created", "2 partitions, replication factor 1")), out

    await wait_for(lambda: _all_at(topics, 2), what="every topic in the metadata")
    code, rows, out = await topics.apply()
    assert code == 0, out
    assert rows == dict.fromkeys(topics.names, ("exists", "")), out


async def test_drift_exits_non_zero_until_the_increase_is_allowed(topics: Topics) -> None:
    assert (await topics.apply())[0] == 0
    await wait_for(lambda: _all_at(topics, 2), what="every topic in the metadata")

    code, rows, out = await topics.apply("--partitions", "3")
    assert code == 1, out
    assert {outcome for outcome, _ in rows.values()} == {"drift"} and len(rows) == len(topics.names), out
    assert all("--allow-partition-increase" in details for _, details in rows.values()), out
    assert "drift: 8 topic(s)" in out

    code, rows, out = await topics.apply("--partitions", "3", "--allow-partition-increase", "--dry-run")
    assert code == 0, out
    assert "dry run: nothing changed" in out
    assert rows == dict.fromkeys(topics.names, ("would update", "partitions 2 -> 3")), out
    assert await topics.partitions() == [2] * len(topics.names)

    code, rows, out = await topics.apply("--partitions", "3", "--allow-partition-increase")
    assert code == 0, out
    assert rows == dict.fromkeys(topics.names, ("updated", "partitions 2 -> 3")), out
    await wait_for(lambda: _all_at(topics, 3), what="every topic at 3 partitions")

    code, rows, out = await topics.apply("--partitions", "2", "--allow-partition-increase")
    assert code == 1, out
    assert rows == dict.fromkeys(topics.names, ("drift", "partitions 3, desired 2: Kafka cannot remove partitions")), (
        out
    )
    assert await topics.partitions() == [3] * len(topics.names)


async def _all_at(topics: Topics, partitions: int) -> bool:
    return await topics.partitions() == [partitions] * len(topics.names)
