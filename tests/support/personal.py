"""Reading records as the services do: personal fields decrypted through the runtime's key store.

Events carry personal fields encrypted (``services.runtime.personal``). A test that reads a topic and checks a
name, an email or a text decodes with :func:`decode_opened` (or opens records with :func:`opened`): the
person's key is looked up in the databases the services under test use, which their fixtures
:func:`register`. The helpers are synchronous (the test helpers that decode are): the lookup runs on a
thread of its own, a few milliseconds per new person.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from leadstream_schemas import Envelope, Event, decode
from leadstream_schemas.personal import TOKEN_MARK
from sqlalchemy.engine import make_url

from services.projection.checksum import dsn
from services.runtime.personal import SCHEMA, PersonalReader

R = TypeVar("R")

DATABASES: list[str] = []
"""Databases whose key store the services under test write to (most recent first)."""


def register(database_url: str) -> None:
    """Look keys up in ``database_url`` too (a fixture that gives services a database calls this)."""
    if database_url not in DATABASES:
        DATABASES.insert(0, database_url)


def unregister(database_name: str) -> None:
    """Forget a database being dropped."""
    DATABASES[:] = [u for u in DATABASES if make_url(u).database != database_name]


async def _fetch(leads: list[UUID]) -> list[tuple[str, UUID, bytes | None]]:
    out: list[tuple[str, UUID, bytes | None]] = []
    for url in list(DATABASES):
        if {r[1] for r in out} >= set(leads):
            break  # a lead's key is in one database: the most recent ones are asked first
        try:
            conn = await asyncpg.connect(dsn(url))
        except (OSError, asyncpg.PostgresError):
            continue  # a database dropped by its fixture
        try:
            rows = await conn.fetch(
                f"SELECT workspace_id, lead_id, data_key FROM {SCHEMA}.person_keys WHERE lead_id = ANY($1::uuid[])",
                leads,
            )
        except asyncpg.UndefinedTableError:
            rows = []
        finally:
            await conn.close()
        out += [(r[0], r[1], r[2]) for r in rows]
    return out


# Keys do not change while a test reads them (erasure tests read through readers of their own).
_reader = PersonalReader(_fetch, ttl_s=600.0)
_pool = ThreadPoolExecutor(1, thread_name_prefix="key-lookup")


def _load(records: Iterable[tuple[bytes | None, Any]]) -> list[Any]:
    """The records' people; looked up (once each) only for values that hold a token: the event loop the
    services under test share waits meanwhile, so plaintext records cost nothing."""
    people = [_reader.person(h) if v is not None and TOKEN_MARK in v else None for v, h in records]
    if any(people):
        _pool.submit(asyncio.run, _reader.load(people)).result(timeout=60)
    return people


def opened(records: Sequence[R]) -> list[R]:
    """``records`` (dataclasses with ``value`` and ``headers``, like aiokafka's) with their tokens decrypted."""
    people = _load([(r.value, r.headers) for r in records])  # type: ignore[attr-defined]
    return [
        dataclasses.replace(r, value=_reader.open(r.value, r.headers, p))  # type: ignore[type-var, attr-defined]
        for r, p in zip(records, people, strict=True)
    ]


def decode_opened(value: bytes | None, headers: Any) -> Envelope[Event]:
    """``decode()`` of a record whose personal fields are decrypted first (as every service reads it)."""
    [person] = _load([(value, headers)])
    return decode(_reader.open(value, headers, person), headers)
