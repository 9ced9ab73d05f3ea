"""Schema revisions across versions, on the real Postgres.

- ``migrate_on_start`` off: a service checks its schemas and refuses (clearly) one that is behind;
- a schema at a NEWER revision (rolling update, ``helm rollback``) runs older code when the newer migrations
  are expand-only, and refuses it when one declares ``oldest_code_revision`` past that code;
- a role with data-only (DML) grants runs a service: the runtime user needs no DDL rights.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from services.discovery.app import build as build_discovery
from services.discovery.settings import DiscoverySettings
from services.discovery.store import leads
from services.runtime import auth, personal
from services.runtime.migrations import (
    COMPAT_TABLE,
    RUNTIME_MIGRATIONS_DIR,
    SchemaBehind,
    SchemaIncompatible,
    check_schema,
    oldest_code_revision,
    prepare_schema,
    upgrade_service,
)
from services.runtime.service import Service
from services.video.app import MIGRATIONS as VIDEO_MIGRATIONS
from services.video.app import build as build_video
from services.video.settings import VideoSettings
from tests.conftest import SettingsFactory
from tests.services.discovery.support import client_for
from tests.support.infra import Infra, create_database, drop_database, plain_dsn
from tests.support.kafka import wait_for

StartService = Callable[[Service], Awaitable[Service]]


_plain = plain_dsn


@pytest.fixture
async def fresh_db(infra: Infra) -> AsyncIterator[str]:
    """A database of this test's own (schemas at no revision yet)."""
    url = await create_database(infra.database_url, "leadstream_mig_")
    yield url
    await drop_database(plain_dsn(infra.database_url), make_url(url).database or "")


def _newer_code(tmp_path: Path, *revisions: tuple[str, str]) -> Path:
    """A copy of video's migrations plus ``(revision, body)`` migrations after its head: a newer release."""
    newer = tmp_path / "migrations"
    shutil.copytree(VIDEO_MIGRATIONS, newer, ignore=shutil.ignore_patterns("__pycache__"))
    down = ScriptDirectory(str(VIDEO_MIGRATIONS)).get_current_head()
    for rev, body in revisions:
        (newer / "versions" / f"{rev}_newer.py").write_text(
            f'"""A migration of a newer release."""\n\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
            f"revision = {rev!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n{body}\n\n"
            "def downgrade() -> None:\n    pass\n"
        )
        down = rev
    return newer


EXPAND = (
    "\n\ndef upgrade() -> None:\n"
    "    op.add_column('jobs', sa.Column('studio_region', sa.Text(), nullable=True), schema='video')\n"
)
# Drops nothing here, but declares itself a contract migration: code before it must not run on it.
CONTRACT = "oldest_code_revision = '0900'\n\n\ndef upgrade() -> None:\n    op.execute('SELECT 1')\n"


async def test_without_migrate_on_start_a_schema_behind_is_refused_with_what_to_do(
    fresh_db: str, make_settings: SettingsFactory
) -> None:
    service = build_video(make_settings("video", VideoSettings, database_url=fresh_db, migrate_on_start=False))
    try:
        with pytest.raises(SchemaBehind, match=r"schema 'identity' is at revision \(none\).*leadstream migrate"):
            await service.migrate()
        await prepare_schema(auth.MIGRATIONS_DIR, fresh_db, auth.IDENTITY_SCHEMA, migrate=True)
        with pytest.raises(SchemaBehind, match="schema 'personal_keys' is at revision"):
            await service.migrate()
        await prepare_schema(personal.MIGRATIONS_DIR, fresh_db, personal.SCHEMA, migrate=True)
        with pytest.raises(SchemaBehind, match="schema 'video' is at revision"):
            await service.migrate()
        await prepare_schema(VIDEO_MIGRATIONS, fresh_db, "video", migrate=True)
        # The runtime's own tables in the schema have their own line: behind until `leadstream migrate` runs it.
        with pytest.raises(
            SchemaBehind, match="schema 'video' is at revision \\(none\\), this code's head is runtime_"
        ):
            await service.migrate()
        await prepare_schema(RUNTIME_MIGRATIONS_DIR, fresh_db, "video", migrate=True)
        await service.migrate()  # all current now: nothing raised
        assert (await check_schema(VIDEO_MIGRATIONS, fresh_db, "video")).state == "current"
        assert (await check_schema(RUNTIME_MIGRATIONS_DIR, fresh_db, "video")).state == "current"
    finally:
        await service.engine.dispose()


async def test_an_older_pod_runs_on_a_newer_expand_only_schema(
    fresh_db: str, make_settings: SettingsFactory, start_service: StartService, tmp_path: Path
) -> None:
    newer = _newer_code(tmp_path, ("0900", EXPAND))
    await prepare_schema(auth.MIGRATIONS_DIR, fresh_db, auth.IDENTITY_SCHEMA, migrate=True)
    await prepare_schema(newer, fresh_db, "video", migrate=True)  # the new release's migrate Job

    checked = await check_schema(VIDEO_MIGRATIONS, fresh_db, "video")
    assert (checked.revision, checked.state, checked.oldest_code) == ("0900", "newer_compatible", "0001")
    # The older release's pod (with or without migrate-on-start) starts instead of crash-looping.
    for migrate_on_start in (True, False):
        settings = make_settings("video", VideoSettings, database_url=fresh_db, migrate_on_start=migrate_on_start)
        service = await start_service(build_video(settings))
        assert service.started.is_set()
        failed = await service.readiness()
        assert failed == {}, failed
        await service.stop()
    # Nothing was downgraded by the older code.
    assert (await check_schema(newer, fresh_db, "video")).state == "current"


async def test_an_older_pod_refuses_a_schema_that_declares_it_too_old(
    fresh_db: str, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    newer = _newer_code(tmp_path, ("0900", EXPAND), ("0901", CONTRACT))
    assert oldest_code_revision(ScriptDirectory(str(newer)), "0901") == "0900"
    assert oldest_code_revision(ScriptDirectory(str(newer)), "0900") == "0001"
    await prepare_schema(auth.MIGRATIONS_DIR, fresh_db, auth.IDENTITY_SCHEMA, migrate=True)
    await prepare_schema(newer, fresh_db, "video", migrate=True)

    service = build_video(make_settings("video", VideoSettings, database_url=fresh_db))
    try:
        with pytest.raises(SchemaIncompatible, match=r"revision 0901.*needs code at revision 0900 or later"):
            await service.migrate()
    finally:
        await service.engine.dispose()
    conn = await asyncpg.connect(_plain(fresh_db))
    try:
        rows = await conn.fetch(f"SELECT revision, oldest_code_revision FROM video.{COMPAT_TABLE} ORDER BY revision")
    finally:
        await conn.close()
    # Recorded for the revision the run ended at (the one older code will find).
    assert [tuple(r) for r in rows] == [("0901", "0900")]


def test_a_declaration_must_name_the_revision_itself_or_an_earlier_one(tmp_path: Path) -> None:
    newer = _newer_code(tmp_path, ("0900", "oldest_code_revision = '0999'\n" + EXPAND))
    with pytest.raises(RuntimeError, match=r"oldest_code_revision '0999' is not 0900 or one before it"):
        oldest_code_revision(ScriptDirectory(str(newer)), "0900")


DML_ONLY = """
GRANT CONNECT, TEMPORARY ON DATABASE "{db}" TO {role};
GRANT USAGE ON SCHEMA identity, personal_keys, discovery TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA identity, personal_keys, discovery TO {role};
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA identity, personal_keys, discovery TO {role};
"""
# DROP OWNED BY needs membership in the role; the grants are taken back one by one instead.
REVOKE_DML = """
REVOKE ALL ON ALL SEQUENCES IN SCHEMA identity, personal_keys, discovery FROM {role};
REVOKE ALL ON ALL TABLES IN SCHEMA identity, personal_keys, discovery FROM {role};
REVOKE ALL ON SCHEMA identity, personal_keys, discovery FROM {role};
REVOKE ALL ON DATABASE "{db}" FROM {role};
"""


@pytest.fixture
async def dml_role(fresh_db: str) -> AsyncIterator[tuple[str, str]]:
    """(role, database URL) of a login role with only the data grants docs/operations.md lists."""
    role = f"ls_runtime_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    await prepare_schema(auth.MIGRATIONS_DIR, fresh_db, auth.IDENTITY_SCHEMA, migrate=True)
    await prepare_schema(personal.MIGRATIONS_DIR, fresh_db, personal.SCHEMA, migrate=True)
    discovery_dir = Path(build_discovery.__code__.co_filename).parent / "migrations"
    await upgrade_service(discovery_dir, fresh_db, "discovery")  # as `leadstream migrate` does
    owner = await asyncpg.connect(_plain(fresh_db))
    try:
        await owner.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await owner.execute(DML_ONLY.format(db=make_url(fresh_db).database, role=role))
    finally:
        await owner.close()
    url = make_url(fresh_db).set(username=role, password=password).render_as_string(hide_password=False)
    yield role, url
    owner = await asyncpg.connect(_plain(fresh_db))
    try:
        await owner.execute(REVOKE_DML.format(db=make_url(fresh_db).database, role=role))
        await owner.execute(f"DROP ROLE {role}")
    finally:
        await owner.close()


async def test_a_role_with_only_data_grants_runs_a_service_without_migrate_on_start(
    dml_role: tuple[str, str], make_settings: SettingsFactory, start_service: StartService
) -> None:
    role, url = dml_role
    conn = await asyncpg.connect(_plain(url))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE discovery.not_allowed (id int)")
    finally:
        await conn.close()

    settings: Any = make_settings("discovery", DiscoverySettings, database_url=url, migrate_on_start=False)
    service = await start_service(build_discovery(settings))
    async with await client_for(service, f"ws-{uuid.uuid4().hex[:8]}") as client:
        added = await client.post("/v1/leads", json={"linkedin_url": "https://www.linkedin.com/in/dml-only"})
        assert added.status_code == 201, added.text

    async def outbox_drained() -> bool:
        async with service.engine.connect() as c:
            return await c.scalar(select(func.count()).select_from(service.tables.outbox)) == 0

    await wait_for(outbox_drained, what="the relay publishing and deleting the outbox row as the DML-only role")
    async with service.engine.connect() as c:
        assert await c.scalar(select(func.count()).select_from(leads)) == 1
        assert await c.scalar(select(func.current_user())) == role
    assert await service.readiness() == {}
