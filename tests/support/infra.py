"""Find or start the real servers tests need: Kafka (KAFKA_BOOTSTRAP_SERVERS) and Postgres (DATABASE_URL).

Order: the two environment variables when both are set; else ``LEADSTREAM_TEST_INFRA`` picks how to start them:

- ``local`` (default): the project's own scripts (deploy/local/infra.sh up) start a real broker and database on
  this machine and leave them running for the next session;
- ``containers``: testcontainers starts apache/kafka and postgres:16 with a Docker engine, for this session only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import asyncpg

from leadstream_cli.processes import free_port
from tests.support.kafka import wait_for

ROOT = Path(__file__).resolve().parents[2]
INFRA_ENV = "LEADSTREAM_TEST_INFRA"
MODES = ("local", "containers")
KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:16"
CONTAINER_START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Infra:
    """Where the servers are."""

    kafka_bootstrap_servers: str
    database_url: str


def infra_mode(env: dict[str, str] | None = None) -> str:
    """``local`` or ``containers``, from LEADSTREAM_TEST_INFRA; anything else is refused with the choices."""
    mode = (env if env is not None else os.environ).get(INFRA_ENV, "local").strip() or "local"
    if mode not in MODES:
        raise ValueError(f"{INFRA_ENV}={mode!r}: choose one of {', '.join(MODES)}")
    return mode


def kafka_container_env(host: str, host_port: int) -> dict[str, str]:
    """A single-node KRaft broker whose HOST listener is advertised as ``host:host_port``, the port mapped to it.

    A client bootstraps on the mapped port and then connects to whatever the broker advertises: advertising the
    container's own port (what the broker does by default) sends it to a port nothing listens on. The broker's
    own traffic stays on PLAINTEXT inside the container.
    """
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:29092",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://localhost:9092,HOST://{host}:{host_port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }


async def _kafka_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


async def _postgres_answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _containers_ready(dsn: str, bootstrap: str) -> None:
    """Poll the containers on their real protocols until both answer (a container starts before its server)."""
    timeout_s = CONTAINER_START_TIMEOUT_S
    await wait_for(partial(_postgres_answers, dsn), timeout_s=timeout_s, interval_s=0.5, what="postgres container")
    await wait_for(partial(_kafka_answers, bootstrap), timeout_s=timeout_s, interval_s=0.5, what="kafka container")


def _from_testcontainers() -> Infra:  # pragma: no cover - needs a Docker engine (none on CI)
    """Kafka and Postgres in containers for this session (stopped by Ryuk, testcontainers' reaper, at exit)."""
    from testcontainers.core.container import DockerContainer

    pg_port, kafka_port = free_port(), free_port()
    pg = (
        DockerContainer(POSTGRES_IMAGE)
        .with_env("POSTGRES_USER", "leadstream")
        .with_env("POSTGRES_PASSWORD", "leadstream")
        .with_env("POSTGRES_DB", "leadstream")
        .with_bind_ports(5432, pg_port)
    )
    kafka = DockerContainer(KAFKA_IMAGE).with_bind_ports(29092, kafka_port)
    pg.start()
    host = pg.get_container_host_ip()
    for key, value in kafka_container_env(host, kafka_port).items():
        kafka.with_env(key, value)
    kafka.start()
    dsn = f"postgresql://leadstream:leadstream@{host}:{pg_port}/leadstream"
    bootstrap = f"{host}:{kafka_port}"
    asyncio.run(_containers_ready(dsn, bootstrap))
    return Infra(bootstrap, dsn.replace("postgresql://", "postgresql+asyncpg://"))


def _read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip().removeprefix("export ").strip()] = v.strip().strip('"').strip("'")
    return out


def ensure_infra() -> Infra:
    """Servers for this test session (started if needed; left running for the next session)."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    db = os.environ.get("DATABASE_URL")
    if kafka and db:
        return Infra(kafka, db)
    if infra_mode() == "containers":
        return _from_testcontainers()
    subprocess.run(["bash", str(ROOT / "deploy/local/infra.sh"), "up"], check=True, cwd=ROOT)
    env = _read_env_file(ROOT / ".run/env")
    return Infra(kafka or env["KAFKA_BOOTSTRAP_SERVERS"], db or env["DATABASE_URL"])


def plain_dsn(url: str) -> str:
    """An asyncpg DSN for a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def create_database(server_url: str, prefix: str) -> str:
    """A new, empty database named ``<prefix><random>`` on the server of ``server_url``; returns its URL."""
    from sqlalchemy.engine import make_url

    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(plain_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    from tests.support import personal

    personal.register(url)  # tests decode what services there encrypted (tests/support/personal.py)
    return url


async def drop_database(admin_dsn: str, name: str, *, timeout_s: float = 30.0, retry_s: float = 0.2) -> None:
    """Drop a test database, retrying while a backend we may not terminate holds it.

    ``WITH (FORCE)`` terminates our own sessions, but an autovacuum worker runs as the bootstrap superuser,
    which the test role may not signal: that worker finishes within moments, so the drop is retried.
    """
    from tests.support import personal

    personal.unregister(name)

    async def drop() -> BaseException | None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError) as exc:
            return exc
        finally:
            await conn.close()
        return None

    await wait_for(
        drop, until=lambda error: error is None, timeout_s=timeout_s, interval_s=retry_s, what=f"DROP {name}"
    )
