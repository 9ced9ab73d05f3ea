"""The ``leadstream`` command starts without importing what its commands run on.

Every invocation imports leadstream_cli.main and, through it, every command's module (typer needs their signatures
for ``--help`` and for parsing). A heavy import at the top of any of them costs every command, ``--help`` included;
each command imports its own dependencies when it runs (see leadstream_cli.main's docstring). ``views schemas``
reads services.projection.rebuilds, not the rebuild machinery of services.projection.replay. ``export``, ``dlq``,
``topics apply`` and ``outbox`` run on aiokafka's clients (services.runtime.kafka), not on the services' FastStream
broker (services.runtime.broker) and what it pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from leadstream_cli.catalog import SERVICES
from services.projection.workload import generate
from tests.services.projection.helpers import produce_all
from tests.support.infra import plain_dsn

ROOT = Path(__file__).resolve().parents[2]

HEAVY = (
    "aiokafka",
    "alembic",
    "asyncpg",
    "faststream",
    "httpx",
    "leadstream_schemas",
    "pyarrow",
    "pydantic",
    "pydantic_settings",
    "sqlalchemy",
)
"""Top-level packages that only some commands need, each costing tens to hundreds of milliseconds to import."""

SERVICE_ONLY = ("alembic", "fastapi", "faststream", "opentelemetry", "starlette", "uvicorn")
"""What the services run on (the FastStream broker, the HTTP app, tracing) and migrations, which the commands that only
read or write Kafka and Postgres never need: FastStream alone pulls in uvicorn and OpenTelemetry's API."""

# What the `leadstream` entry point does before parsing: import the app; then what --help and parsing do: build the
# click command of every command and subcommand from its typer signature (resolving every option's type).
PROBE = """
import json, sys
import leadstream_cli.main
after_import = sorted(sys.modules)
import typer.main
typer.main.get_command(leadstream_cli.main.app)
print(json.dumps({"import": after_import, "command": sorted(sys.modules)}))
"""


# Run one command (its arguments are the script's) as `leadstream` does, then list what it loaded.
RUN = """
import json, sys
from leadstream_cli.main import app
try:
    app(sys.argv[1:], prog_name="leadstream")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def run_command(env: dict[str, str], *args: str) -> tuple[int, str, list[str]]:
    """Run a ``leadstream`` command in a fresh interpreter: its exit code, its output and the modules it loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", RUN, *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    *output, last = proc.stdout.splitlines()
    loaded = json.loads(last)
    return loaded["code"], "\n".join(output) + proc.stderr, loaded["modules"]


def _heavy(modules: list[str], among: tuple[str, ...] = HEAVY) -> list[str]:
    """The packages of ``among`` (HEAVY by default) among the loaded modules."""
    return sorted({name.split(".")[0] for name in modules} & set(among))


def test_the_cli_imports_no_command_dependencies_to_start() -> None:
    # A fresh interpreter: this test process has imported all of them already.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    loaded = json.loads(out)
    assert "leadstream_cli.dlq" in loaded["import"] and "leadstream_cli.outbox" in loaded["import"]  # all mounted
    assert _heavy(loaded["import"]) == []
    assert _heavy(loaded["command"]) == []


def test_views_schemas_lists_the_schemas_without_the_rebuild_machinery(subprocess_env: dict[str, str]) -> None:
    # It reads Postgres only: no Kafka client, consumer pipeline (FastStream), migrations (alembic) or SQLAlchemy.
    code, output, modules = run_command(subprocess_env, "views", "schemas")
    table = output.splitlines()
    assert code == 0, output
    assert "schema" in table[1] and "finished" in table[1]  # the listing's header: the command ran
    assert _heavy(modules) == ["asyncpg", "pydantic", "pydantic_settings"]  # its driver and settings


async def test_export_runs_on_aiokafka_without_the_service_machinery(
    subprocess_env: dict[str, str], own_topic_prefix: str, tmp_path: Path
) -> None:
    # A real run over one lead's events: read, decoded, decrypted and written, with no FastStream on the way.
    events = generate(leads=1, campaigns=1, seed=7).envelopes
    lead_events = [e for e in events if e.type.startswith("leadstream.lead.")]
    await produce_all(subprocess_env["KAFKA_BOOTSTRAP_SERVERS"], own_topic_prefix, events)
    env = {**subprocess_env, "LEADSTREAM_TOPIC_PREFIX": own_topic_prefix}
    code, output, modules = run_command(env, "export", "--out", str(tmp_path / "out"), "--topic", "lead")
    assert code == 0, output
    assert f"wrote {len(lead_events)} events" in output
    assert {"aiokafka", "asyncpg", "pyarrow", "sqlalchemy"} <= set(_heavy(modules))  # what it runs on
    assert _heavy(modules, SERVICE_ONLY) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # A code no dead letter has: the whole DLQ is read, and the answer does not depend on the session's other tests.
        (("dlq", "list", "--topic", "lead", "--error-code", "no_such_code"), "no dead letters match"),
        (("topics", "apply", "--dry-run"), "dry run: nothing changed"),
        (("outbox", "list"), "parked"),
    ],
    ids=["dlq list", "topics apply", "outbox list"],
)
def test_kafka_commands_run_without_the_service_machinery(
    subprocess_env: dict[str, str], args: tuple[str, ...], says: str
) -> None:
    code, output, modules = run_command(subprocess_env, *args)
    assert code == 0, output
    assert says in output  # the command ran to its end
    assert "aiokafka" in _heavy(modules)  # the Kafka client it runs on
    assert _heavy(modules, SERVICE_ONLY) == []


async def test_migrate_migrates_every_service_without_importing_their_apps(
    subprocess_env: dict[str, str], own_database: str
) -> None:
    # It used to import every services.<name>.app only to find its migrations folder: the whole service (FastStream
    # and its broker, uvicorn, every route) for all eight, where a deploy's migrate Job needs alembic and the tables.
    # (FastAPI itself still comes in: services.runtime.plans keeps its table beside its routes.)
    code, output, modules = run_command({**subprocess_env, "DATABASE_URL": own_database}, "migrate")
    assert code in (0, None), output
    assert all(f"migrated {name}" in output for name in SERVICES), output
    assert "alembic" in _heavy(modules)  # what it runs on
    assert [m for m in modules if m.endswith(".app") and m.startswith("services.")] == []
    assert _heavy(modules, ("faststream", "uvicorn")) == []
    conn = await asyncpg.connect(plain_dsn(own_database))
    try:
        schemas = {r[0] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
    finally:
        await conn.close()
    assert set(SERVICES) <= schemas
