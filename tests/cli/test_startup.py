"""The ``leadstream`` command starts without importing what its commands run on.

Every invocation imports leadstream_cli.main and, through it, every command's module (typer needs their signatures
for ``--help`` and for parsing). A heavy import at the top of any of them costs every command, ``--help`` included;
each command imports its own dependencies when it runs (see leadstream_cli.main's docstring). ``views schemas``
reads services.projection.rebuilds, not the rebuild machinery of services.projection.replay.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


VIEWS_SCHEMAS = """
import json, sys
from leadstream_cli.main import app
try:
    app(["views", "schemas"], prog_name="leadstream")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _heavy(modules: list[str]) -> list[str]:
    """The packages of HEAVY among the loaded modules."""
    return sorted({name.split(".")[0] for name in modules} & set(HEAVY))


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
    proc = subprocess.run(
        [sys.executable, "-c", VIEWS_SCHEMAS],
        cwd=ROOT,
        env={**subprocess_env, "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    *table, last = proc.stdout.splitlines()
    loaded = json.loads(last)
    assert loaded["code"] == 0, proc.stdout + proc.stderr
    assert "schema" in table[1] and "finished" in table[1]  # the listing's header: the command ran
    assert _heavy(loaded["modules"]) == ["asyncpg", "pydantic", "pydantic_settings"]  # its driver and settings
