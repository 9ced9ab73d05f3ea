"""Find or start the real servers tests need: Kafka (KAFKA_BOOTSTRAP_SERVERS) and Postgres (DATABASE_URL).

Order: the environment variables; else testcontainers when a Docker engine answers; else the
project's own local scripts (deploy/local/infra.sh up), which start a real broker and database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Infra:
    """Where the servers are."""

    kafka_bootstrap_servers: str
    database_url: str


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _from_testcontainers() -> Infra:  # pragma: no cover - only on machines with Docker
    from testcontainers.core.container import DockerContainer
    from testcontainers.postgres import PostgresContainer

    pg = PostgresContainer("postgres:16", username="leadstream", password="leadstream", dbname="leadstream")
    pg.start()
    kafka = (
        DockerContainer("apache/kafka:4.1.1")
        .with_exposed_ports(9092)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
    )
    kafka.start()
    host = kafka.get_container_host_ip()
    port = kafka.get_exposed_port(9092)
    url = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql+asyncpg://")
    return Infra(f"{host}:{port}", url)


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
    if _docker_answers() and os.environ.get("LEADSTREAM_USE_TESTCONTAINERS", "1") == "1":
        return _from_testcontainers()
    subprocess.run(["bash", str(ROOT / "deploy/local/infra.sh"), "up"], check=True, cwd=ROOT)
    env = _read_env_file(ROOT / ".run/env")
    return Infra(kafka or env["KAFKA_BOOTSTRAP_SERVERS"], db or env["DATABASE_URL"])


async def drop_database(admin_dsn: str, name: str, *, timeout_s: float = 30.0, retry_s: float = 0.2) -> None:
    """Drop a test database, retrying while a backend we may not terminate holds it.

    ``WITH (FORCE)`` terminates our own sessions, but an autovacuum worker runs as the bootstrap superuser,
    which the test role may not signal: that worker finishes within moments, so the drop is retried.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            if time.monotonic() > deadline:
                raise
        finally:
            await conn.close()
        await asyncio.sleep(retry_s)
