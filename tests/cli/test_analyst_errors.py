"""What an analyst's mistakes do to ``leadstream replay`` and ``leadstream export``, on the real broker and database.

A wrong setting or argument (a broker or database that is not there, a key missing outside development, --until
before --since, an output folder that is a file) is named in one line, with a non-zero exit and no traceback, and
leaves nothing behind: the same rebuild name works again without --replace. A rebuild interrupted with Ctrl-C is
marked failed (``views schemas`` does not show it running) and the same command with --replace rebuilds it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

import asyncpg

from services.projection.checksum import dsn
from services.projection.workload import generate
from tests.cli.test_replay_export import LEADSTREAM, cli, cli_raw
from tests.services.projection.fixtures import Isolated, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.support.kafka import wait_for

TRACEBACK = re.compile(r"Traceback|\.py:\d+ in ")
"""A Python traceback, plain or as typer's rich panel draws it (each frame a ``file.py:LINE in function``)."""


class Elsewhere:
    """The test's world with some environment variables changed (a wrong setting)."""

    def __init__(self, world: Isolated, **changes: str) -> None:
        self.world, self.changes = world, changes

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**self.world.env(base), **self.changes}


async def refused(world: Any, *args: str, names: str) -> None:
    """``leadstream ARGS`` fails with one line naming ``names`` and no traceback."""
    code, out, err = await cli_raw(world, *args)
    both = out + err
    assert code != 0, f"leadstream {' '.join(args)} exited 0:\n{both}"
    assert not TRACEBACK.search(both), both
    assert names in both, f"leadstream {' '.join(args)} did not name {names!r}:\n{both}"


async def test_bad_settings_and_arguments_are_named_and_leave_nothing_behind(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    settings = isolated.settings()
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, generate(leads=4, campaigns=1).envelopes)
    nowhere_db = settings.database_url.rsplit("/", 1)[0] + "/leadstream_no_such_database"
    unreachable_db = "postgresql+asyncpg://leadstream:leadstream@127.0.0.1:1/leadstream"
    no_broker = Elsewhere(isolated, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    production = Elsewhere(isolated, LEADSTREAM_ENV="production", LEADSTREAM_KEY_ENCRYPTION_KEY="")

    await refused(no_broker, "replay", "--from-beginning", "--into", "nobroker", names="KAFKA_BOOTSTRAP_SERVERS")
    await refused(no_broker, "export", "--out", str(tmp_path / "a"), names="KAFKA_BOOTSTRAP_SERVERS")
    for url in (nowhere_db, unreachable_db):
        await refused(
            Elsewhere(isolated, DATABASE_URL=url), "replay", "--from-beginning", "--into", "x", names="DATABASE_URL"
        )
        await refused(Elsewhere(isolated, DATABASE_URL=url), "views", "schemas", names="DATABASE_URL")
        await refused(
            Elsewhere(isolated, DATABASE_URL=url), "export", "--out", str(tmp_path / "b"), names="DATABASE_URL"
        )
    # Two workers: the missing key must be refused before they read, not met by each as a failing batch.
    await refused(
        production, "replay", "--from-beginning", "--into", "nokey", "--workers", "2", names="KEY_ENCRYPTION_KEY"
    )
    await refused(production, "export", "--out", str(tmp_path / "c"), names="KEY_ENCRYPTION_KEY")
    window = ("--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z")
    await refused(isolated, "replay", *window, "--into", "window", names="--until")
    await refused(isolated, "export", "--out", str(tmp_path / "d"), *window, names="--until")
    await refused(isolated, "replay", "--from-beginning", "--into", "Odd-Name;", names="--into")
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    await refused(isolated, "export", "--out", str(a_file), names=str(a_file))
    assert a_file.read_text() == "not a folder"

    # Nothing was left: every one of those names is free again.
    schemas = await cli(isolated, "views", "schemas")
    assert "projection_nobroker" not in schemas and "projection_nokey" not in schemas, schemas
    assert "projection_window" not in schemas, schemas
    await cli(isolated, "replay", "--from-beginning", "--into", "nobroker")


async def test_an_interrupted_rebuild_is_marked_failed_and_runs_again(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
) -> None:
    settings = isolated.settings()
    await produce_all(
        settings.kafka_bootstrap_servers, settings.topic_prefix, generate(leads=40, campaigns=2).envelopes
    )
    env = isolated.env(dict(os.environ))
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    # One record per transaction in one process: slow enough to be interrupted half way.
    proc = await asyncio.create_subprocess_exec(
        str(LEADSTREAM),
        *("replay", "--from-beginning", "--into", "halfway", "--batch", "1", "--workers", "1"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Ctrl-C as a terminal sends it, even when this test runs where SIGINT is ignored (inherited otherwise).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:

        async def reading() -> bool:
            try:
                return bool(await conn.fetchval("SELECT count(*) > 0 FROM projection_halfway.timeline"))
            except asyncpg.UndefinedTableError:
                return False

        await wait_for(reading, timeout_s=60, what="the rebuild reading")
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        both = out.decode() + err.decode()
        assert proc.returncode == 130, both
        assert not TRACEBACK.search(both) and "interrupted" in both and "--replace" in both, both
        status = await conn.fetchval("SELECT value #>> '{}' FROM projection_halfway.replay_info WHERE key = 'status'")
        assert status == "failed"
    finally:
        await conn.close()
    assert "halfway" in await cli(isolated, "replay", "--from-beginning", "--into", "halfway", "--replace")
