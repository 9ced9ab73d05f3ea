"""Sessions and sign-in links on the real database: encrypted tokens, hashed ids, expiry, single use, sign-out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.console.app import MIGRATIONS
from services.console.sessions import SessionStore, Vault, same
from services.console.store import SCHEMA, sessions, sign_in_links
from services.runtime.clock import FakeClock
from services.runtime.db import create_engine
from services.runtime.migrations import upgrade

TOKEN = "ls_example-token-of-a-workspace"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade(MIGRATIONS, database_url, SCHEMA)
    e = create_engine(database_url)
    yield e
    await e.dispose()


def test_the_vault_signs_and_encrypts_with_the_secret() -> None:
    vault, other = Vault("one secret"), Vault("another secret")
    signed = vault.sign("abc")
    assert vault.unsign(signed) == "abc" and other.unsign(signed) is None and vault.unsign(signed + "x") is None
    blob = vault.encrypt(TOKEN)
    assert TOKEN.encode() not in blob and vault.decrypt(blob) == TOKEN and other.decrypt(blob) is None
    assert same("a", "a") and not same("a", "b") and not same(None, None) and not same("", "")


async def test_a_session_lives_until_it_expires_or_is_ended(engine: AsyncEngine) -> None:
    clock = FakeClock()
    store = SessionStore(engine, Vault("k"), clock, ttl=timedelta(hours=1), link_ttl=timedelta(minutes=5))
    session = await store.create("ws-1", TOKEN)
    found = await store.get(session.id)
    assert found is not None and (found.workspace_id, found.token) == ("ws-1", TOKEN)
    async with engine.connect() as conn:
        row = (await conn.execute(select(sessions).where(sessions.c.workspace_id == "ws-1"))).one()
    assert session.id not in row.id_hash and TOKEN.encode() not in row.token  # hashed id, encrypted token
    assert (
        await SessionStore(engine, Vault("other key"), clock, timedelta(hours=1), timedelta(1)).get(session.id) is None
    )
    clock.advance(timedelta(minutes=61))
    assert await store.get(session.id) is None
    clock.advance(timedelta(minutes=-61))
    await store.end(session.id)
    assert await store.get(session.id) is None and await store.get(None) is None


async def test_a_sign_in_link_works_once_and_not_after_it_expires(engine: AsyncEngine) -> None:
    clock = FakeClock()
    store = SessionStore(engine, Vault("k"), clock, ttl=timedelta(hours=1), link_ttl=timedelta(minutes=5))
    code, expires = await store.create_link("ws-2", TOKEN)
    assert expires == clock.now() + timedelta(minutes=5)
    link = await store.peek_link(code)
    assert link is not None and link.workspace_id == "ws-2"
    assert await store.use_link(code) == ("ws-2", TOKEN)
    assert await store.use_link(code) is None and await store.peek_link(code) is None
    late, _ = await store.create_link("ws-2", TOKEN)
    clock.advance(timedelta(minutes=6))
    assert await store.peek_link(late) is None and await store.use_link(late) is None
    async with engine.connect() as conn:
        stored = (await conn.execute(select(sign_in_links.c.code_hash))).scalars().all()
    assert code not in stored and late not in stored


def test_a_rotated_key_opens_what_the_old_one_made_and_new_ones_use_the_new_key() -> None:
    old, rotating, new_only = Vault("the old key"), Vault(["the new key", "the old key"]), Vault("the new key")
    blob, signed = old.encrypt("ls_token"), old.sign("session-1")
    assert rotating.decrypt(blob) == "ls_token" and rotating.unsign(signed) == "session-1"
    made, stamped = rotating.encrypt("ls_token"), rotating.sign("session-2")
    assert new_only.decrypt(made) == "ls_token" and new_only.unsign(stamped) == "session-2"
    assert old.decrypt(made) is None and old.unsign(stamped) is None  # made with the new (first) key
    assert new_only.decrypt(blob) is None and new_only.unsign(signed) is None  # the old key dropped: gone
