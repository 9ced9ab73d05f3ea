"""Shared fixtures: the real Kafka broker and Postgres, an isolated topic prefix and database per
test session, settings for a service, and services started in-process.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from services.runtime.consuming.loop import GroupConsumer
from services.runtime.kafka import apply_topics, create_admin
from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings
from tests.support import cpu_report
from tests.support.infra import Infra, create_database, drop_database, ensure_infra, plain_dsn
from tests.support.kafka import wait_for
from tests.support.servers import DedicatedServers

TEST_PARTITIONS = 3

# Tests run in development: unset secrets get their development values and /docs is served. Tests of the
# production policy pass env="production" themselves; services started as processes inherit this.
os.environ["LEADSTREAM_ENV"] = "development"
# Consumers fetch as Kafka's own clients do by default (answered at the first record, an idle fetch held 500 ms)
# instead of the services' batching default (16 KiB or 50 ms: cheaper under steady traffic, twenty fetches a second
# when idle). The suite is mostly idle services on two busy cores: idle fetching was a tenth of a core per fleet in
# the services and a sixteenth in the broker, halved this way, and each hop of a test's lead is answered at once.
# The services' defaults are measured where they matter, in `make bench`. (Set either to run with other values.)
os.environ.setdefault("LEADSTREAM_CONSUMER_FETCH_MIN_BYTES", "1")
os.environ.setdefault("LEADSTREAM_CONSUMER_FETCH_MAX_WAIT_MS", "500")


# Packages whose tests share one expensive package-scoped fixture (a fleet of every service): run on one worker.
SHARED_PACKAGES = ("tests/e2e/console/",)


def test_group(nodeid: str) -> str:
    """The unit ``make test`` hands to one worker: a test module, or a whole package of :data:`SHARED_PACKAGES`."""
    path = nodeid.split("::", 1)[0]
    return next((p for p in SHARED_PACKAGES if path.startswith(p)), path)


# The longest modules first, so that on several workers none of them starts last and alone (a fleet fault test
# runs for minutes); the deployment tests run last: on a new machine .ci/run builds their tools (helm, kubeconform)
# in the background meanwhile. Note: with `--dist loadfile` xdist (3.8) hands the groups out by their number of
# tests, most first, unless `--no-loadscope-reorder` is given, so `make test` does not follow this order (its
# workers still end within a minute of each other: see tests.support.cpu_report).
HEAVY_FIRST = ("tests/reliability/", "tests/e2e/", "tests/cli/")


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    if path.startswith("tests/deploy/"):
        return len(HEAVY_FIRST) + 1
    return next((i for i, p in enumerate(HEAVY_FIRST) if path.startswith(p)), len(HEAVY_FIRST))


def pytest_configure(config: pytest.Config) -> None:
    """``LEADSTREAM_TEST_CPU=<dir>``: write each test's CPU there (:mod:`tests.support.cpu_report`)."""
    cpu_report.register(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the session: the heaviest groups first (a stable sort: modules keep their own order)."""
    items.sort(key=_rank)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadfile`` (what ``make test`` runs): one worker per :func:`test_group`, so a module- or
    package-scoped fixture (a fleet of services, a dedicated broker) starts once, as in a serial run.

    (``--dist loadgroup`` with marks would say the same, but xdist 3.8 renames the node id to carry the group and
    pytest 9.2 no longer reads the attribute it sets; a scheduler is xdist's documented hook.) Each worker is a
    session of its own: its own database and topic prefix (the fixtures below), so workers never share data."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

    return ModuleGroups(config, log)


@pytest.fixture(scope="session")
def infra() -> Infra:
    """The real servers (found through the environment, or started by deploy/local)."""
    return ensure_infra()


@pytest.fixture(scope="session")
async def database_url(infra: Infra) -> AsyncIterator[str]:
    """A fresh database for this test session, dropped afterwards."""
    url = await create_database(infra.database_url, "leadstream_test_")
    yield url
    await drop_database(plain_dsn(infra.database_url), make_url(url).database or "")


@pytest.fixture
async def own_database(infra: Infra) -> AsyncIterator[str]:
    """A fresh database for one test (e.g. a fleet whose timers and tables no other test may share)."""
    url = await create_database(infra.database_url, "leadstream_test_")
    yield url
    await drop_database(plain_dsn(infra.database_url), make_url(url).database or "")


@pytest.fixture(scope="session")
async def topic_prefix(infra: Infra) -> AsyncIterator[str]:
    """A topic prefix unique to this session, with every contract topic (and DLQ) created under it.

    Every topic under it (tests' own too) is deleted at the end, unless LEADSTREAM_TEST_KEEP_TOPICS=1: a
    developer's broker would otherwise keep thousands of partitions of past runs and start ever more slowly.
    """
    prefix = f"t{uuid.uuid4().hex[:8]}."
    settings = _settings(infra.kafka_bootstrap_servers, "", prefix, "admin")
    await apply_topics(settings, partitions=TEST_PARTITIONS)
    yield prefix
    if os.environ.get("LEADSTREAM_TEST_KEEP_TOPICS") != "1":
        await _delete_topics(settings, prefix)


@pytest.fixture
async def own_topic_prefix(infra: Infra, topic_prefix: str) -> str:
    """A topic prefix of this test's own, inside the session's (deleted with it), every contract topic created.

    For a test whose consumers must not first work through what the session's other tests produced: a service's
    group is the same for every test of a session, and the lead topic carries their leads.
    """
    prefix = f"{topic_prefix}{uuid.uuid4().hex[:6]}."
    await apply_topics(_settings(infra.kafka_bootstrap_servers, "", prefix, "admin"), partitions=TEST_PARTITIONS)
    return prefix


async def _delete_topics(settings: RuntimeSettings, prefix: str) -> None:
    admin = create_admin(settings, client_id="leadstream-test-cleanup")
    await admin.start()
    try:
        mine = [name for name in await admin.list_topics() if name.startswith(prefix)]
        for start in range(0, len(mine), 100):
            await admin.delete_topics(mine[start : start + 100])
    finally:
        await admin.close()


def _settings(
    kafka: str, db: str, prefix: str, service: str, cls: type[RuntimeSettings] = RuntimeSettings, **overrides: Any
) -> RuntimeSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka,
        "database_url": db,
        "topic_prefix": prefix,
        "service_name": service,
        "topic_partitions": TEST_PARTITIONS,
        "consumer_backoff_initial_s": 0.05,
        "consumer_backoff_max_s": 0.5,
        "consumer_max_attempts": 3,
        "log_json": False,
    }
    values.update(overrides)
    return cls(**values)


SettingsFactory = Callable[..., Any]


@pytest.fixture(scope="session")
def make_settings(infra: Infra, database_url: str, topic_prefix: str) -> SettingsFactory:
    """``make_settings(service_name, cls=SettingsClass, **overrides)`` -> settings on the test servers."""

    def factory(service: str, cls: type[RuntimeSettings] = RuntimeSettings, **overrides: Any) -> Any:
        return _settings(infra.kafka_bootstrap_servers, database_url, topic_prefix, service, cls, **overrides)

    return factory


def _assigned(consumer: GroupConsumer) -> bool:
    # A consumer that refuses to consume (the projection's views of another cluster) never gets partitions.
    return bool(consumer.blocked) or (consumer.consumer is not None and bool(consumer.consumer.assignment()))


@pytest.fixture
async def start_service() -> AsyncIterator[Callable[[Service], Any]]:
    """``await start_service(service)`` starts a built service in-process; all are stopped at test end."""
    started: list[Service] = []

    async def start(service: Service) -> Service:
        await service.start()
        started.append(service)
        for consumer in service.consumers:
            await wait_for(partial(_assigned, consumer), timeout_s=60, what=f"partitions for {consumer.group_id}")
        return service

    yield start
    for service in reversed(started):
        with contextlib.suppress(Exception):
            await service.stop()


@pytest.fixture(scope="session")
def subprocess_env(infra: Infra, database_url: str, topic_prefix: str) -> dict[str, str]:
    """Environment for services started as separate processes in this session."""
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
            "DATABASE_URL": database_url,
            "LEADSTREAM_TOPIC_PREFIX": topic_prefix,
            "LEADSTREAM_TOPIC_PARTITIONS": str(TEST_PARTITIONS),
            "LEADSTREAM_METRICS_PORT": "0",  # a free port: several runs share the machine
        }
    )
    return env


@pytest.fixture(scope="module")
async def dedicated_servers() -> AsyncIterator[DedicatedServers]:
    """A Kafka broker and a Postgres server of the module's own (free ports, state in a temporary folder), for
    tests that kill them; the shared servers are never touched. Stopped by their PIDs after the module."""
    servers = DedicatedServers.create()
    try:
        await servers.up()
        yield servers
    finally:
        await servers.down()
