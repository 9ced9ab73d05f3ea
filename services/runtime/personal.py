"""Personal data in events, encrypted per person; erasure by destroying the person's key (crypto-shredding).

The one key store every service reaches through the runtime: schema ``personal_keys`` (its own migration
line, ``keystore_migrations``), one row per person (workspace and lead) with a 256-bit AES-GCM data key.
Keys never leave Postgres: Kafka carries only ciphertext (:mod:`leadstream_schemas.personal` says which
fields are personal and what a token looks like).

- Writing: :func:`seal_rows` (called by :func:`services.runtime.outbox.add_to_outbox`, in the writer's
  transaction) creates the keys of the batch's people in one statement, reads them in one more, and
  replaces each personal string with a token. The associated data binds a token to its workspace and lead,
  so a token copied into another person's event does not decrypt. A person already erased gets
  ``[erased]`` instead: nothing personal about them reaches the log again.
- Reading: a :class:`PersonalReader` looks the people of a batch of records up in one query (cached for
  ``ttl_s``), then :meth:`PersonalReader.open` gives each record's value with its tokens decrypted. For an
  erased person every personal path reads ``[erased]``, tokens and plaintext alike: events written before
  encryption (plaintext on the log) are redacted on read, which is the upcaster of the old records.
- Keys at rest: every data key is stored wrapped (AES-GCM) with a key-encryption key derived from
  ``LEADSTREAM_KEY_ENCRYPTION_KEY`` (:class:`KeyWrapper`): the first key of the list wraps new data keys, every key
  of it unwraps, so a KEK is rotated by putting the new one first and running ``leadstream keys rewrap``
  (:func:`rewrap`) before the old one is dropped. A copy of the database alone (a backup, a replica) opens
  nothing.
- Erasing: :func:`erase` destroys the key (the row stays, with ``erased_at``: a tombstone that also covers a
  person who never had a key); the caller emits ``LeadErased`` so that views and stores blank what they
  copied.

Records of types without personal fields, and of people with a key but no token in the value, are passed
through untouched (one ``in`` test on the bytes), so the projection's replay keeps its fast path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from leadstream_schemas import Envelope, LeadErased
from leadstream_schemas.envelope import H_SUBJECT, H_TYPE, H_WORKSPACE, NAMESPACE
from leadstream_schemas.personal import ERASED, TOKEN_MARK, TOKEN_PREFIX, map_personal, personal_paths, redact
from leadstream_schemas.personal import Path as PayloadPath
from sqlalchemy import Column, DateTime, LargeBinary, MetaData, Table, Text, func, select, update
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .faults import Unavailable, sqlstate_of
from .headers import header_of, header_text

SCHEMA = "personal_keys"
MIGRATIONS_DIR = Path(__file__).parent / "keystore_migrations"

keystore_metadata = MetaData(schema=SCHEMA)
person_keys = Table(
    "person_keys",
    keystore_metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("lead_id", PgUUID(as_uuid=True), primary_key=True),
    Column("data_key", LargeBinary, nullable=True),  # NULL once erased
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=True),
)

Person = tuple[str, str]
"""(workspace id, lead id as canonical text)."""

Keys = Mapping[Person, bytes | None]
"""A person's data key, or None when they are erased (a person absent has no key yet)."""

NONCE_BYTES = 12
NO_KEY_STORE = frozenset({"42P01", "3F000"})
"""SQLSTATEs of a database whose key store was never migrated (undefined table, invalid schema name)."""
_TOKEN = re.compile(rb'"' + re.escape(TOKEN_PREFIX.encode()) + rb'([A-Za-z0-9_\-]+={0,2})"')
ERASED_TYPE = LeadErased.event_type


@lru_cache(maxsize=512)
def _paths(event_type: str) -> tuple[PayloadPath, ...]:
    return personal_paths(event_type)


def _aad(person: Person) -> bytes:
    return f"{person[0]}|{person[1]}".encode()


def encrypt(key: bytes, person: Person, plaintext: str) -> str:
    """A token for ``plaintext`` (AES-GCM, a random 96-bit nonce, bound to ``person``); an empty string stays empty.

    An empty string holds nothing personal, and left as it is a reader that does not decrypt still tells it from a
    text: the projection, which keeps some personal fields sealed until they are read, words a summary by whether a
    field holds anything ("without a note")."""
    if not plaintext or plaintext.startswith(TOKEN_PREFIX):
        return plaintext  # empty, or already a token (an event re-emitted as read)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), _aad(person))
    return TOKEN_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt(key: bytes | None, person: Person, token: str | bytes) -> str:
    """The plaintext of a token, or ``[erased]`` when it cannot be read (no key, another person's, damaged)."""
    raw = token.encode() if isinstance(token, str) else token
    if raw.startswith(TOKEN_PREFIX.encode()):
        raw = raw[len(TOKEN_PREFIX) :]
    if key is None:
        return ERASED
    try:
        data = base64.urlsafe_b64decode(raw)
        return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(person)).decode()
    except (InvalidTag, ValueError):
        return ERASED


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# -- wrapping data keys at rest ---------------------------------------------------------------------

WRAP_VERSION = b"\x01"
KEK_ID_BYTES = 8
DATA_KEY_BYTES = 32
_KEK_INFO = b"leadstream personal_keys key-encryption key v1"


class KeyStoreError(Unavailable):
    """A stored data key cannot be unwrapped: its key-encryption key is not configured, or the row is damaged.

    A configuration error, never a record's fault (the classifier's TRANSIENT): readers retry (and log it)
    instead of dead-lettering."""


def derive_kek(secret: str) -> bytes:
    """The 256-bit key-encryption key of a ``LEADSTREAM_KEY_ENCRYPTION_KEY`` entry (HKDF-SHA256 of the secret)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEK_INFO).derive(secret.encode())


def kek_id(kek: bytes) -> bytes:
    """A KEK's identifier, stored with each data key it wraps (a hash: it says nothing of the key)."""
    return hashlib.sha256(b"leadstream kek id|" + kek).digest()[:KEK_ID_BYTES]


def _wrap_aad(person: Person) -> bytes:
    return b"leadstream data key|" + _aad(person)  # a wrapped key moved to another person's row does not open


class KeyWrapper:
    """Wraps data keys with the newest key-encryption key and unwraps them with any configured one.

    Stored form: ``0x01 | KEK id (8 bytes) | nonce (12) | AES-GCM(KEK, data key, workspace and lead)``. A stored
    value of exactly 32 bytes is a data key from before wrapping existed (read as it is; :func:`rewrap` wraps it).
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("a KeyWrapper needs at least one key-encryption key")
        self._keks = {kek_id(k): AESGCM(k) for k in (derive_kek(s) for s in secrets)}
        self.current_id = kek_id(derive_kek(secrets[0]))
        """The id of the KEK new data keys are wrapped with (the first of the list)."""

    def wrap(self, person: Person, data_key: bytes) -> bytes:
        """``data_key`` as stored: wrapped with the newest KEK, bound to ``person``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keks[self.current_id].encrypt(nonce, data_key, _wrap_aad(person))
        return WRAP_VERSION + self.current_id + nonce + sealed

    def unwrap(self, person: Person, stored: bytes) -> bytes:
        """The data key of a stored value; :class:`KeyStoreError` when no configured KEK opens it."""
        stored = bytes(stored)
        if len(stored) == DATA_KEY_BYTES:
            return stored  # not wrapped yet (written before key-encryption keys existed)
        if not stored.startswith(WRAP_VERSION):
            raise KeyStoreError(f"the data key of {person[0]}/{person[1]} is in an unknown format")
        ident = stored[1 : 1 + KEK_ID_BYTES]
        aead = self._keks.get(ident)
        if aead is None:
            raise KeyStoreError(
                f"the data key of {person[0]}/{person[1]} is wrapped with key-encryption key {ident.hex()}, which "
                "LEADSTREAM_KEY_ENCRYPTION_KEY does not hold (keep a replaced key in the list until "
                "`leadstream keys rewrap` has run)"
            )
        body = stored[1 + KEK_ID_BYTES :]
        try:
            return aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], _wrap_aad(person))
        except InvalidTag:
            raise KeyStoreError(f"the data key of {person[0]}/{person[1]} does not open (damaged or moved)") from None

    def is_current(self, stored: bytes) -> bool:
        """Whether ``stored`` is wrapped with the newest KEK already."""
        return bytes(stored[: 1 + KEK_ID_BYTES]) == WRAP_VERSION + self.current_id


_wrapper: KeyWrapper | None = None


def configure(wrapper: KeyWrapper | None) -> KeyWrapper | None:
    """Use ``wrapper`` in this process from now on (a service does it with its settings); returns the previous one.
    None: derive it again from the environment when next needed."""
    global _wrapper
    previous, _wrapper = _wrapper, wrapper
    return previous


def current_wrapper() -> KeyWrapper:
    """The process's :class:`KeyWrapper`: the one configured, else one from ``LEADSTREAM_KEY_ENCRYPTION_KEY``
    (its development value in development; outside it, unset is refused)."""
    if _wrapper is None:
        from .settings import RuntimeSettings

        configure(RuntimeSettings().key_wrapper())
    assert _wrapper is not None
    return _wrapper


# -- the key store ----------------------------------------------------------------------------------


def _people_rows(people: Iterable[Person]) -> list[tuple[str, UUID]]:
    return sorted({(ws, UUID(lead)) for ws, lead in people})  # sorted: concurrent writers lock in one order


async def ensure_keys(
    conn: AsyncConnection, people: Iterable[Person], now: datetime | None = None, wrapper: KeyWrapper | None = None
) -> Keys:
    """The keys of ``people``, created (in the caller's transaction) for those who have none yet."""
    rows = _people_rows(people)
    if not rows:
        return {}
    wrapper = wrapper or current_wrapper()
    created = now or datetime.now(UTC)
    await conn.execute(
        insert(person_keys)
        .values(
            [
                {
                    "workspace_id": ws,
                    "lead_id": lead,
                    "data_key": wrapper.wrap((ws, str(lead)), AESGCM.generate_key(256)),
                    "created_at": created,
                }
                for ws, lead in rows
            ]
        )
        .on_conflict_do_nothing()
    )
    return await fetch_keys(conn, rows, wrapper)


async def fetch_keys(
    conn: AsyncConnection,
    people: Iterable[Person] | Iterable[tuple[str, UUID]],
    wrapper: KeyWrapper | None = None,
) -> Keys:
    """The stored keys of ``people`` (one query), unwrapped: bytes, None when erased, absent when there is none."""
    wanted = {(ws, str(lead)) for ws, lead in people}
    if not wanted:
        return {}
    wrapper = wrapper or current_wrapper()
    t = person_keys
    result = await conn.execute(
        select(t.c.workspace_id, t.c.lead_id, t.c.data_key).where(
            t.c.lead_id.in_(sorted({UUID(lead) for _, lead in wanted}))
        )
    )
    return {
        person: None if row.data_key is None else wrapper.unwrap(person, row.data_key)
        for row in result
        if (person := (row.workspace_id, str(row.lead_id))) in wanted
    }


async def erase(conn: AsyncConnection, workspace_id: str, lead_id: UUID, now: datetime | None = None) -> bool:
    """Destroy the person's data key (a tombstone row when they had none); False when already erased."""
    when = now or datetime.now(UTC)
    t = person_keys
    before = await conn.execute(
        select(t.c.erased_at).where(t.c.workspace_id == workspace_id, t.c.lead_id == lead_id).with_for_update()
    )
    row = before.first()
    if row is not None and row.erased_at is not None:
        return False
    stmt = insert(t).values(workspace_id=workspace_id, lead_id=lead_id, data_key=None, created_at=when, erased_at=when)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[t.c.workspace_id, t.c.lead_id], set_={"data_key": None, "erased_at": when}
        )
    )
    return True


async def rewrap(
    engine: AsyncEngine, wrapper: KeyWrapper | None = None, *, batch: int = 1000, workspace: str | None = None
) -> tuple[int, int]:
    """Wrap every stored data key (of ``workspace``, or all) not wrapped with the newest KEK yet with it (in batches,
    one transaction each); returns (keys re-wrapped, keys left as they were). After it, older KEKs can leave the
    list. A key that no configured KEK opens stops it with :class:`KeyStoreError` (nothing of that batch changes)."""
    wrapper = wrapper or current_wrapper()
    t = person_keys
    done = kept = 0
    after: tuple[str, UUID] | None = None
    while True:
        async with engine.begin() as conn:
            query = select(t.c.workspace_id, t.c.lead_id, t.c.data_key).where(t.c.data_key.is_not(None))
            if workspace is not None:
                query = query.where(t.c.workspace_id == workspace)
            if after is not None:
                query = query.where(func.row(t.c.workspace_id, t.c.lead_id) > func.row(*after))
            rows = (
                await conn.execute(query.order_by(t.c.workspace_id, t.c.lead_id).limit(batch).with_for_update())
            ).all()
            if not rows:
                return done, kept
            for row in rows:
                if wrapper.is_current(row.data_key):
                    kept += 1
                    continue
                person = (row.workspace_id, str(row.lead_id))
                stored = wrapper.wrap(person, wrapper.unwrap(person, row.data_key))
                where = (t.c.workspace_id == row.workspace_id) & (t.c.lead_id == row.lead_id)
                await conn.execute(update(t).where(where).values(data_key=stored))
                done += 1
            after = (rows[-1].workspace_id, rows[-1].lead_id)


async def workspaces_of(conn: AsyncConnection, lead_id: UUID) -> tuple[list[str], list[str]]:
    """(workspaces holding a key of ``lead_id``, workspaces where it is erased already)."""
    t = person_keys
    rows = (await conn.execute(select(t.c.workspace_id, t.c.erased_at).where(t.c.lead_id == lead_id))).all()
    return [r.workspace_id for r in rows if r.erased_at is None], [r.workspace_id for r in rows if r.erased_at]


def erasure_envelope(
    workspace_id: str, lead_id: UUID, *, source: str, via: Literal["api", "cli"], time: datetime | None = None
) -> Envelope[LeadErased]:
    """The ``LeadErased`` event of a person, with an id derived from workspace and lead (one per person:
    the API and the CLI, or a repeated request, emit the same event)."""
    event = LeadErased(lead_id=lead_id, via=via)
    event_id = uuid.uuid5(NAMESPACE, f"erased:{workspace_id}:{lead_id}|{event.event_type}")
    return Envelope.new(event, workspace_id=workspace_id, source=source, time=time, id=event_id)


# -- writing ----------------------------------------------------------------------------------------


def person_of_event(topic_key: str, workspace_id: str, event_type: str) -> Person | None:
    """The person an event is about, when its type has personal fields (its key is the lead id)."""
    return (workspace_id, topic_key) if _paths(event_type) else None


def seal_value(value: bytes, event_type: str, person: Person, key: bytes | None) -> bytes:
    """``value`` with each personal string encrypted with ``key`` (``[erased]`` when the person is erased)."""
    paths = _paths(event_type)
    if not paths:
        return value
    payload = json.loads(value)
    if key is None:
        redact(payload, paths)
    else:
        map_personal(payload, paths, lambda s: encrypt(key, person, s))
    return _dump(payload)


async def seal_rows(conn: AsyncConnection, rows: Sequence[dict[str, Any]], people: Sequence[Person | None]) -> None:
    """Encrypt the personal fields of encoded outbox ``rows`` (in place), ``people[i]`` being row i's person."""
    wanted = {p for p in people if p is not None}
    if not wanted:
        return
    keys = await ensure_keys(conn, wanted)
    for row, person in zip(rows, people, strict=True):
        if person is not None:
            event_type = next(v for k, v in row["headers"] if k == H_TYPE)
            row["value"] = seal_value(row["value"], event_type, person, keys.get(person))


# -- reading ----------------------------------------------------------------------------------------

Fetch = Callable[[list[UUID]], Awaitable[Iterable[tuple[str, UUID, bytes | None]]]]
"""Reads (workspace, lead, stored key or None) rows for lead ids: the key store through SQLAlchemy or asyncpg
(the reader unwraps them)."""

_NO_KEY = b""


def _facts(headers: Any) -> tuple[str | None, str | None, Any]:
    """(type, workspace, raw subject) of a record's headers (Kafka's list of pairs, or a mapping; the last value
    of a repeated name, as a dict of them has). This runs for every record of a replay: one ``dict()`` and three
    lookups cost a third of a loop over the pairs in Python (and ``isinstance(headers, Mapping)``, an ABC check,
    costs as much as the dict).

    A header without a value is passed over, as the contract's decoder does (``headers_dict``): a name repeated
    with None last would otherwise hide the value before it, and the reader would see another type than the
    decoder (a sealed record left sealed, an erasure not seen as one). Only a record with one of the three present
    but empty pays for looking again.
    """
    h = headers if type(headers) is dict else dict(headers or ())
    event_type, ws, subject = h.get(H_TYPE), h.get(H_WORKSPACE), h.get(H_SUBJECT)
    if h is not headers and (
        (event_type is None and H_TYPE in h)
        or (ws is None and H_WORKSPACE in h)
        or (subject is None and H_SUBJECT in h)
    ):
        h = {name: value for name, value in headers if value is not None}
        event_type, ws, subject = h.get(H_TYPE), h.get(H_WORKSPACE), h.get(H_SUBJECT)
    return header_text(event_type), header_text(ws), subject


_SUBJECTS: dict[Any, str | None] = {}
"""Canonical lead ids by raw ``ce_subject`` (parsing a UUID costs more than the rest of a record's lookup)."""


def _lead_of(subject: Any) -> str | None:
    """The canonical lead id a subject names, or None when it is not a UUID."""
    try:
        return _SUBJECTS[subject]
    except KeyError:
        pass
    except TypeError:  # unhashable: not a header value
        return None
    text = header_text(subject)
    try:
        lead = str(UUID(text)) if text is not None else None
    except ValueError:
        lead = None
    if len(_SUBJECTS) > 100_000:  # bounded
        _SUBJECTS.clear()
    _SUBJECTS[subject] = lead
    return lead


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64url_decode(token: bytes) -> bytes:
    """``base64.urlsafe_b64decode`` without its three Python layers (half its cost, once per token read); a
    malformed token raises ``binascii.Error``, a ``ValueError``, as there."""
    return binascii.a2b_base64(token.translate(_URLSAFE))


def _json_string(text: str) -> bytes:
    """``text`` as a JSON string (the common case, printable without quotes or backslashes, without json)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return b'"' + text.encode() + b'"'
    return json.dumps(text, ensure_ascii=False).encode()


def _opened(aead: AESGCM, aad: bytes, token: bytes) -> str:
    """The plaintext of a token's base64url (without its prefix), or :data:`ERASED` when it does not open."""
    try:
        data = _b64url_decode(token)
        return aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad).decode()
    except (InvalidTag, ValueError):
        return ERASED


def keys_on(conn: AsyncConnection) -> Fetch:
    """Key lookups on ``conn`` (SQLAlchemy), for :meth:`PersonalReader.load`."""

    async def fetch(leads: list[UUID]) -> list[tuple[str, UUID, bytes | None]]:
        t = person_keys
        result = await conn.execute(select(t.c.workspace_id, t.c.lead_id, t.c.data_key).where(t.c.lead_id.in_(leads)))
        return [(r.workspace_id, r.lead_id, r.data_key) for r in result]

    return fetch


class PersonalReader:
    """Decrypts the personal fields of records read from the log; see the module. One per consumer or tool."""

    def __init__(
        self,
        fetch: Fetch | None = None,
        *,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wrapper: KeyWrapper | None = None,
        leave_sealed: Container[str] = frozenset(),
    ) -> None:
        if ERASED_TYPE in leave_sealed:
            raise ValueError("an erasure is always read: it marks its person erased for the records after it")
        self.leave_sealed = leave_sealed
        """Event types whose values this reader passes through unopened: the consumer reads none of their personal
        fields as it consumes them (the projection's types without ``EventProjection.opens_personal``, whose texts it
        opens when they are read; a service's ``consume(..., sealed=)``), so neither a key lookup nor a decryption."""
        self._fetch = fetch
        self._wrapper = wrapper
        self.ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[Person, tuple[float, bytes | None]] = {}
        self._ciphers: dict[Person, tuple[bytes, AESGCM, bytes]] = {}

    @classmethod
    def on_engine(
        cls,
        engine: AsyncEngine,
        *,
        ttl_s: float = 30.0,
        wrapper: KeyWrapper | None = None,
        leave_sealed: Container[str] = frozenset(),
    ) -> PersonalReader:
        """A reader whose lookups go through a SQLAlchemy engine."""

        async def fetch(leads: list[UUID]) -> Iterable[tuple[str, UUID, bytes | None]]:
            async with engine.connect() as conn:
                return await keys_on(conn)(leads)

        return cls(fetch, ttl_s=ttl_s, wrapper=wrapper, leave_sealed=leave_sealed)

    @classmethod
    def on_asyncpg(
        cls, pool: Callable[[], Any], *, ttl_s: float = 30.0, leave_sealed: Container[str] = frozenset()
    ) -> PersonalReader:
        """A reader whose lookups go through an asyncpg pool (``pool()`` gives it when a lookup runs)."""

        async def fetch(leads: list[UUID]) -> list[tuple[str, UUID, bytes | None]]:
            rows = await pool().fetch(
                f"SELECT workspace_id, lead_id, data_key FROM {SCHEMA}.person_keys WHERE lead_id = ANY($1::uuid[])",
                leads,
            )
            return [(r[0], r[1], r[2]) for r in rows]

        return cls(fetch, ttl_s=ttl_s, leave_sealed=leave_sealed)

    def person(self, headers: Any, only: Container[str] | None = None) -> Person | None:
        """The person a record is about, when its type has personal fields or erases someone (and is one of
        ``only``, when given: a consumer need not look keys up for records it ignores)."""
        about = self.about(headers, only)
        return about[1] if about is not None else None

    def about(self, headers: Any, only: Container[str] | None = None) -> tuple[str, Person] | None:
        """(event type, person) of a record, as :meth:`person` decides."""
        if type(headers) is dict and self.leave_sealed:
            # The type first: a record left sealed needs nothing else (most of a projection replay's records). A
            # value there is the last of its name and not None, so the one the decoder reads too.
            raw = headers.get(H_TYPE)
            if raw is not None and header_text(raw) in self.leave_sealed:
                return None
        event_type, ws, subject = _facts(headers)
        if event_type is None or not (_paths(event_type) or event_type == ERASED_TYPE):
            return None
        if only is not None and event_type not in only:
            return None
        if event_type in self.leave_sealed:
            return None
        if ws is None or subject is None:
            return None
        lead = _lead_of(subject)
        return (event_type, (ws, lead)) if lead is not None else None

    async def load(self, people: Iterable[Person | None], fetch: Fetch | None = None) -> None:
        """Look up (one query) the people not cached or cached longer than ``ttl_s`` ago (through ``fetch`` when
        given: a read that holds a connection looks keys up on it, :func:`keys_on`).

        A database without the key store (never migrated: nothing was ever encrypted there, nobody erased)
        holds no keys."""
        now = self._clock()
        missing = {p for p in people if p is not None and now - self._cache.get(p, (-1e18, None))[0] > self.ttl_s}
        if not missing:
            return
        fetch = fetch or self._fetch
        if fetch is None:
            raise TypeError("this reader has no key store of its own: pass load() a fetch (keys_on)")
        leads = sorted({UUID(lead) for _, lead in missing})
        try:
            rows = await fetch(leads)
        except Exception as exc:
            if sqlstate_of(exc) not in NO_KEY_STORE:
                raise
            rows = []
        wrapper = self._wrapper or current_wrapper()
        found = {
            (ws, str(lead)): None if key is None else wrapper.unwrap((ws, str(lead)), key) for ws, lead, key in rows
        }
        for p in missing:
            self._cache[p] = (now, found[p] if p in found else _NO_KEY)
        if len(self._cache) > 200_000:  # bounded: the oldest half goes
            for p, _ in sorted(self._cache.items(), key=lambda kv: kv[1][0])[: len(self._cache) // 2]:
                del self._cache[p]

    def forget(self, person: Person, *, erased: bool = False) -> None:
        """Drop a cached key (``erased``: remember the person as erased until the next lookup)."""
        if erased:
            self._cache[person] = (self._clock(), None)
        else:
            self._cache.pop(person, None)

    def open(
        self, value: bytes | None, headers: Any, person: Person | None = None, event_type: str | None = None
    ) -> bytes | None:
        """``value`` with its tokens decrypted, or every personal path ``[erased]`` for an erased person.

        The person must have been :meth:`load`-ed. A value that is not a JSON object is returned as it is
        (the decoder says what is wrong with it)."""
        if person is None:
            about = self.about(headers)
            if about is None:
                return value
            event_type, person = about
        if value is None:
            return value
        if event_type is None:  # the type the decoder reads: the last of a repeated header
            event_type = header_of(headers, H_TYPE) or ""
        if event_type == ERASED_TYPE:
            self.forget(person, erased=True)
            return value
        key = self._key(person)
        if key is None:  # erased: tokens and old plaintext alike
            try:
                payload = json.loads(value)
            except ValueError:
                return value
            return _dump(redact(payload, _paths(event_type))) if isinstance(payload, dict) else value
        if TOKEN_MARK not in value:
            return value
        if not key:  # no key for tokens: they cannot be read
            return _TOKEN.sub(lambda m: _json_string(ERASED), value)
        _, aead, aad = self._cipher(person, key)
        return _TOKEN.sub(lambda m: _json_string(_opened(aead, aad, m.group(1))), value)

    def text(self, person: Person, token: str) -> str:
        """The plaintext of one token of a :meth:`load`-ed person; :data:`ERASED` when the person is erased, has no
        key, or the token does not open (another person's, damaged)."""
        key = self._key(person)
        if not key:
            return ERASED
        _, aead, aad = self._cipher(person, key)
        return _opened(aead, aad, token.removeprefix(TOKEN_PREFIX).encode())

    def _key(self, person: Person) -> bytes | None:
        """The loaded person's data key: None when erased, empty when they have none (or were never loaded)."""
        cached = self._cache.get(person)
        return cached[1] if cached is not None else _NO_KEY

    def _cipher(self, person: Person, key: bytes) -> tuple[bytes, AESGCM, bytes]:
        """The person's AESGCM and associated data: one per person (building it costs as much as a decrypt)."""
        cipher = self._ciphers.get(person)
        if cipher is None or cipher[0] is not key:
            if len(self._ciphers) > 200_000:
                self._ciphers.clear()
            cipher = self._ciphers[person] = (key, AESGCM(key), _aad(person))
        return cipher

    async def open_records(
        self, records: Sequence[Any], headers: Sequence[Mapping[str, Any]] | None = None
    ) -> list[bytes | None]:
        """The values of ``records`` (with ``.value`` and ``.headers``) opened, their people looked up at once.
        ``headers``: the records' headers as dicts, in order, when the caller has them (a replay's decoder
        reads the same dicts). An unreachable key store raises: the caller's retry (the consumer core's)
        waits it out."""
        if headers is None:
            headers = [r.headers for r in records]
        about = [self.about(h) for h in headers]
        await self.load({a[1] for a in about if a is not None})
        return [
            r.value if a is None else self.open(r.value, h, a[1], a[0])
            for r, h, a in zip(records, headers, about, strict=True)
        ]
