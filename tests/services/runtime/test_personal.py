"""Personal fields encrypted per person in the outbox, read back through the key store, and crypto-shredded.

On the real database (the probe service's engine, whose start migrated the key store)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from leadstream_schemas import (
    Envelope,
    LeadDiscovered,
    LeadErased,
    LeadSource,
    MessageApproved,
    MessageSent,
    VideoRequested,
    decode,
    encode,
)
from leadstream_schemas.personal import ERASED, TOKEN_PREFIX
from sqlalchemy import select

from services.runtime import personal
from services.runtime.outbox import outbox_rows
from services.runtime.personal import KeyStoreError, KeyWrapper, PersonalReader, keys_on, person_keys
from tests.services.runtime.conftest import Probe
from tests.support.kafka import wait_for
from tests.support.probe.app import WORKSPACE
from tests.support.probe.helpers import effect_origins, send

NAME, EMAIL, URL = "Wilhelmina Crypto-Shred", "wilhelmina.shred@erasure.example", "https://linkedin.com/in/wilhelmina"


@dataclass
class Record:
    """What a reader needs of a consumer record."""

    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]  # a header may come without a value


def _discovered(ws: str, lead: uuid.UUID) -> Envelope[LeadDiscovered]:
    data = LeadDiscovered(
        lead_id=lead, source=LeadSource.manual, full_name=NAME, email=EMAIL, linkedin_url=URL, title="Analyst"
    )
    return Envelope.new(data, workspace_id=ws, source="test")


async def _written(probe: Probe, envs: list[Envelope[Any]]) -> list[Record]:
    """The records ``envs`` become, as add_to_outbox writes them (sealed in a transaction of their own)."""
    rows = outbox_rows(envs)
    async with probe.service.engine.begin() as conn:
        await personal.seal_rows(
            conn, rows, [personal.person_of_event(e.subject, e.workspace_id, e.type) for e in envs]
        )
    return [Record(r["value"], [(k, v.encode()) for k, v in r["headers"]]) for r in rows]


async def personal_keys_of(probe: Probe, ws: str, lead: uuid.UUID) -> bytes | None:
    async with probe.service.engine.connect() as conn:
        return (await personal.fetch_keys(conn, [(ws, lead)])).get((ws, str(lead)))


async def test_personal_fields_are_encrypted_in_the_outbox_and_read_back_through_the_key_store(probe: Probe) -> None:
    ws, lead = f"ws-{uuid.uuid4().hex[:8]}", uuid.uuid4()
    env = _discovered(ws, lead)
    video = Envelope.new(
        VideoRequested(
            lead_id=lead, video_job_id=uuid.uuid4(), template_id="intro", variables={"first_name": "Wilhelmina"}
        ),
        workspace_id=ws,
        source="test",
    )
    [record, video_record] = await _written(probe, [env, video])
    assert record.value is not None and video_record.value is not None
    # On the wire: no personal string in clear, a token at each personal path, the rest untouched.
    for secret in (NAME, EMAIL, URL, "Wilhelmina"):
        assert secret.encode() not in record.value + video_record.value
    payload = json.loads(record.value)
    assert all(payload[f].startswith(TOKEN_PREFIX) for f in ("full_name", "email", "linkedin_url"))
    assert payload["title"] == "Analyst" and payload["lead_id"] == str(lead)
    assert json.loads(video_record.value)["variables"]["first_name"].startswith(TOKEN_PREFIX)
    # Anyone can decode the record (tokens are strings); only the key store gives the plaintext back.
    assert decode(record.value, record.headers).data.full_name.startswith(TOKEN_PREFIX)  # type: ignore[attr-defined]
    reader = PersonalReader.on_engine(probe.service.engine)
    opened = await reader.open_records([record, video_record])
    assert decode(opened[0], record.headers).data == env.data
    assert decode(opened[1], video_record.headers).data == video.data
    async with probe.service.engine.connect() as conn:
        [key] = (await conn.execute(select(person_keys).where(person_keys.c.lead_id == lead))).all()
    assert key.workspace_id == ws and key.erased_at is None
    # Stored wrapped with the key-encryption key (version, KEK id, nonce, 32-byte key + tag), never as the key.
    wrapper = personal.current_wrapper()
    assert len(key.data_key) == 1 + 8 + 12 + 32 + 16 and wrapper.is_current(key.data_key)
    assert (await personal_keys_of(probe, ws, lead)) == wrapper.unwrap((ws, str(lead)), key.data_key)


async def test_a_token_is_bound_to_its_person(probe: Probe) -> None:
    ws, lead, other = f"ws-{uuid.uuid4().hex[:8]}", uuid.uuid4(), uuid.uuid4()
    [record] = await _written(probe, [_discovered(ws, lead)])
    await _written(probe, [_discovered(ws, other)])  # the other person has a key of their own
    # The same bytes presented as the other lead's, or another workspace's: the key or the AAD does not match.
    as_other = [(k, str(other).encode() if k == "ce_subject" else v) for k, v in record.headers]
    as_ws = [(k, b"ws-elsewhere" if k == "workspaceid" else v) for k, v in record.headers]
    reader = PersonalReader.on_engine(probe.service.engine)
    for headers in (as_other, as_ws):
        [value] = await reader.open_records([Record(record.value, headers)])
        data = decode(value, headers).data
        assert (data.full_name, data.email, data.title) == (ERASED, ERASED, "Analyst")  # type: ignore[attr-defined]


def _counting_reader(probe: Probe, leave_sealed: set[str]) -> tuple[PersonalReader, list[list[uuid.UUID]]]:
    """A reader on the probe's key store that leaves ``leave_sealed`` sealed, and the leads each lookup asked for."""
    asked: list[list[uuid.UUID]] = []

    async def fetch(leads: list[uuid.UUID]) -> Any:
        asked.append(leads)
        async with probe.service.engine.connect() as conn:
            return await keys_on(conn)(leads)

    return PersonalReader(fetch, leave_sealed=leave_sealed), asked


async def test_a_reader_leaves_the_types_it_is_told_to_sealed_and_looks_no_key_up_for_them(probe: Probe) -> None:
    ws, lead = f"ws-{uuid.uuid4().hex[:8]}", uuid.uuid4()
    approved = Envelope.new(
        MessageApproved(lead_id=lead, draft_id=uuid.uuid4(), channel="message", text=f"Hi {NAME}"),
        workspace_id=ws,
        source="test",
    )
    [discovered, approval] = await _written(probe, [_discovered(ws, lead), approved])
    assert approval.value is not None and TOKEN_PREFIX.encode() in approval.value
    reader, asked = _counting_reader(probe, {MessageApproved.event_type})
    # Alone, the approval is passed through as it is, and nobody's key is looked up.
    assert await reader.open_records([approval]) == [approval.value] and asked == []
    # Beside a record of a type it reads, that one is opened as ever.
    opened = await reader.open_records([discovered, approval])
    assert decode(opened[0], discovered.headers).data.full_name == NAME  # type: ignore[attr-defined]
    assert opened[1] == approval.value and asked == [[lead]]
    # An erasure is never left sealed: it marks its person erased for the records after it.
    with pytest.raises(ValueError, match="erasure"):
        _counting_reader(probe, {LeadErased.event_type})


async def test_a_consumer_leaves_the_types_its_service_names_sealed_and_looks_no_key_up_for_them(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer whose reader leaves a type sealed (what ``Service.consume(..., sealed=[...])`` builds; outreach's
    wiring is asserted in its reply test), on the real broker: the handler gets that type's tokens as they are, and
    no key lookup is made for it (outreach's replies: a query less per reply)."""
    consumer = probe.service.consumers[0]
    lead = uuid.uuid4()
    [record] = await _written(probe, [_discovered(WORKSPACE, lead)])
    assert record.value is not None and TOKEN_PREFIX.encode() in record.value
    reader, asked = _counting_reader(probe, {LeadDiscovered.event_type})
    monkeypatch.setattr(consumer, "personal", reader)
    seen: list[Envelope[Any]] = []
    handler = consumer.handlers[LeadDiscovered.event_type]

    async def seeing(env: Envelope[Any], ctx: Any) -> None:
        seen.append(env)
        await handler(env, ctx)

    monkeypatch.setitem(consumer.handlers, LeadDiscovered.event_type, seeing)
    key = str(lead).encode()
    headers = [(k, v) for k, v in record.headers if v is not None]  # as written: every header has its value
    await send(probe.bootstrap, probe.lead_topic, [(key, record.value, headers)])
    await wait_for(lambda: [e for e in seen if e.data.lead_id == lead], timeout_s=60, what="the sealed event handled")
    [env] = [e for e in seen if e.data.lead_id == lead]
    assert env.data.full_name.startswith(TOKEN_PREFIX) and env.data.email.startswith(TOKEN_PREFIX)
    assert not any(lead in leads for leads in asked)
    # ``seen`` has the event once the handler starts; its effect is there once the consumer's transaction commits.
    origins = await wait_for(
        lambda: effect_origins(probe.service.engine, env.id), what="the handler's effect committed"
    )
    assert origins == ["event"]


async def test_erasure_shreds_tokens_and_old_plaintext_and_later_writes(probe: Probe) -> None:
    ws, lead, bystander = f"ws-{uuid.uuid4().hex[:8]}", uuid.uuid4(), uuid.uuid4()
    sealed, kept = await _written(probe, [_discovered(ws, lead), _discovered(ws, bystander)])
    # An event written before encryption: plaintext on the log.
    old = Envelope.new(MessageSent(lead_id=lead, text=f"Hi {NAME}, see {URL}"), workspace_id=ws, source="old")
    _, old_value, old_headers = encode(old)
    legacy = Record(old_value, old_headers)
    reader = PersonalReader.on_engine(probe.service.engine)
    before = await reader.open_records([sealed, legacy])
    assert decode(before[1], legacy.headers).data.text.startswith("Hi Wilhelmina")  # type: ignore[attr-defined]

    async with probe.service.engine.begin() as conn:
        assert await personal.erase(conn, ws, lead) is True
    async with probe.service.engine.begin() as conn:
        assert await personal.erase(conn, ws, lead) is False  # once
    async with probe.service.engine.connect() as conn:
        [row] = (await conn.execute(select(person_keys).where(person_keys.c.lead_id == lead))).all()
    assert row.data_key is None and row.erased_at is not None

    fresh = PersonalReader.on_engine(probe.service.engine)
    after = await fresh.open_records([sealed, legacy, kept])
    data = decode(after[0], sealed.headers).data
    assert (data.full_name, data.email, data.linkedin_url) == (ERASED, ERASED, ERASED)  # type: ignore[attr-defined]
    assert data.title == "Analyst" and data.lead_id == lead  # type: ignore[attr-defined]
    assert decode(after[1], legacy.headers).data.text == ERASED  # type: ignore[attr-defined]
    assert decode(after[2], kept.headers).data.full_name == NAME  # type: ignore[attr-defined]  # not them
    for value in after[:2]:
        assert value is not None and NAME.encode() not in value and EMAIL.encode() not in value

    # A cached reader learns it from LeadErased (the record that follows the erasure on the lead's partition).
    erased_env = personal.erasure_envelope(ws, lead, source="test", via="cli")
    _, erased_value, erased_headers = encode(erased_env)
    assert isinstance(decode(erased_value, erased_headers).data, LeadErased)
    cached = await reader.open_records([Record(erased_value, erased_headers), sealed])
    assert decode(cached[1], sealed.headers).data.full_name == ERASED  # type: ignore[attr-defined]
    assert erased_env.id == personal.erasure_envelope(ws, lead, source="api", via="api").id

    # Nothing personal about them is written again: no new key, [erased] in place of the data.
    [later] = await _written(probe, [_discovered(ws, lead)])
    assert later.value is not None
    assert json.loads(later.value)["full_name"] == ERASED and TOKEN_PREFIX.encode() not in later.value
    async with probe.service.engine.connect() as conn:
        [row] = (await conn.execute(select(person_keys).where(person_keys.c.lead_id == lead))).all()
    assert row.data_key is None


async def test_a_person_who_never_had_a_key_can_be_erased(probe: Probe) -> None:
    ws, lead = f"ws-{uuid.uuid4().hex[:8]}", uuid.uuid4()
    old = Envelope.new(MessageSent(lead_id=lead, text=f"Hello {NAME}"), workspace_id=ws, source="old")
    _, value, headers = encode(old)
    async with probe.service.engine.begin() as conn:
        assert await personal.erase(conn, ws, lead) is True  # a tombstone
        holding, erased = await personal.workspaces_of(conn, lead)
    assert (holding, erased) == ([], [ws])
    [opened] = await PersonalReader.on_engine(probe.service.engine).open_records([Record(value, headers)])
    assert decode(opened, headers).data.text == ERASED  # type: ignore[attr-defined]


OLD_KEK, NEW_KEK = "old-key-encryption-key-" + "o" * 20, "new-key-encryption-key-" + "n" * 20


async def _stored(probe: Probe, ws: str, lead: uuid.UUID) -> bytes:
    async with probe.service.engine.connect() as conn:
        value = await conn.scalar(
            select(person_keys.c.data_key).where(person_keys.c.workspace_id == ws, person_keys.c.lead_id == lead)
        )
    assert value is not None
    return bytes(value)


async def test_data_keys_are_wrapped_and_the_key_encryption_key_rotates(probe: Probe) -> None:
    ws, lead, later = f"ws-{uuid.uuid4().hex[:8]}", uuid.uuid4(), uuid.uuid4()
    old, both, new = KeyWrapper([OLD_KEK]), KeyWrapper([NEW_KEK, OLD_KEK]), KeyWrapper([NEW_KEK])
    async with probe.service.engine.begin() as conn:
        keys = await personal.ensure_keys(conn, [(ws, str(lead))], wrapper=old)
    data_key = keys[(ws, str(lead))]
    assert data_key is not None and len(data_key) == 32
    stored = await _stored(probe, ws, lead)
    assert data_key not in stored and old.is_current(stored) and not both.is_current(stored)
    # Without the KEK that wrapped it, the key does not open, and the error names the setting (no key material).
    with pytest.raises(KeyStoreError, match="LEADSTREAM_KEY_ENCRYPTION_KEY does not hold") as err:
        new.unwrap((ws, str(lead)), stored)
    assert OLD_KEK not in str(err.value) and data_key.hex() not in str(err.value)
    # A wrapped key moved to another person's row does not open either.
    with pytest.raises(KeyStoreError, match="does not open"):
        old.unwrap((ws, str(uuid.uuid4())), stored)

    # During the rotation window both open; new data keys are wrapped with the new KEK.
    async with probe.service.engine.begin() as conn:
        during = await personal.ensure_keys(conn, [(ws, str(lead)), (ws, str(later))], wrapper=both)
    assert during[(ws, str(lead))] == data_key
    assert new.is_current(await _stored(probe, ws, later))

    # The re-wrap moves every key to the new KEK (the old one can then leave the list); a second run has nothing left.
    # (Of this workspace: the database is shared with other tests, whose keys the development KEK wraps.)
    assert await personal.rewrap(probe.service.engine, both, batch=1, workspace=ws) == (1, 1)
    assert await personal.rewrap(probe.service.engine, both, workspace=ws) == (0, 2)
    async with probe.service.engine.connect() as conn:
        after = await personal.fetch_keys(conn, [(ws, lead), (ws, later)], wrapper=new)
    assert after[(ws, str(lead))] == data_key and after[(ws, str(later))] == during[(ws, str(later))]
    reader = PersonalReader.on_engine(probe.service.engine, wrapper=new)
    sealed = personal.encrypt(data_key, (ws, str(lead)), NAME)
    payload = json.dumps({"lead_id": str(lead), "source": "manual", "full_name": sealed}).encode()
    env = _discovered(ws, lead)
    _, _, headers = encode(env)
    [opened] = await reader.open_records([Record(payload, headers)])
    assert opened is not None and json.loads(opened)["full_name"] == NAME
    # An erased key stays erased through a re-wrap (there is nothing to wrap).
    async with probe.service.engine.begin() as conn:
        assert await personal.erase(conn, ws, later)
    assert await personal.rewrap(probe.service.engine, new, workspace=ws) == (0, 1)
    async with probe.service.engine.connect() as conn:
        assert (await personal.fetch_keys(conn, [(ws, later)], wrapper=new)) == {(ws, str(later)): None}


def test_a_data_key_stored_before_wrapping_still_opens() -> None:
    raw = bytes(range(32))
    assert KeyWrapper([NEW_KEK]).unwrap(("ws", str(uuid.uuid4())), raw) == raw  # `keys rewrap` wraps it
    assert not KeyWrapper([NEW_KEK]).is_current(raw)


async def test_decrypted_texts_come_back_exactly_whatever_they_hold() -> None:
    ws, lead = "ws-texts", uuid.uuid4()
    key = AESGCM.generate_key(256)
    wrapper = KeyWrapper([NEW_KEK])
    texts = ['Hi "Zoë",\nsee C:\\path\t\u2028 ok', "plain words", "", "emoji \U0001f600"]

    async def fetch(leads: list[uuid.UUID]) -> list[tuple[str, uuid.UUID, bytes | None]]:
        return [(ws, lead, wrapper.wrap((ws, str(lead)), key))]

    reader = PersonalReader(fetch, wrapper=wrapper)
    for text in texts:
        env = Envelope.new(MessageSent(lead_id=lead, text=text), workspace_id=ws, source="test")
        _, value, headers = encode(env)
        sealed = personal.seal_value(value, env.type, (ws, str(lead)), key)
        assert text == "" or text.encode() not in sealed
        [opened] = await reader.open_records([Record(sealed, headers)])
        assert opened is not None and decode(opened, headers).data.text == text  # type: ignore[attr-defined]


@dataclass
class OneSealed:
    """A reader whose key store holds one person's key, and a ``MessageSent`` of that person sealed with it."""

    reader: PersonalReader
    person: tuple[str, str]
    sealed: bytes
    headers: list[tuple[str, bytes]]
    type: str


def _one_sealed(ws: str) -> OneSealed:
    lead = uuid.uuid4()
    key = AESGCM.generate_key(256)
    wrapper = KeyWrapper([NEW_KEK])

    async def fetch(leads: list[uuid.UUID]) -> list[tuple[str, uuid.UUID, bytes | None]]:
        return [(ws, lead, wrapper.wrap((ws, str(lead)), key))]

    env = Envelope.new(MessageSent(lead_id=lead, text=f"Hi {NAME}"), workspace_id=ws, source="test")
    _, value, headers = encode(env)
    sealed = personal.seal_value(value, env.type, (ws, str(lead)), key)
    assert sealed is not None
    return OneSealed(PersonalReader(fetch, wrapper=wrapper), (ws, str(lead)), sealed, list(headers), env.type)


async def test_a_record_with_its_type_twice_is_opened_as_the_type_the_decoder_reads() -> None:
    """Two ``ce_type`` headers: the contract's decoder takes the last, and so does the reader. Taking the first (an
    erasure's type here) made it forget the person's key as erased: the record and every later one of that person,
    in that process, came out ``[erased]``."""
    one = _one_sealed("ws-twice")
    twice = [("ce_type", LeadErased.event_type.encode()), *one.headers]
    assert decode(one.sealed, twice).type == one.type
    await one.reader.load([one.person])
    for _ in range(2):
        opened = one.reader.open(one.sealed, twice, one.person)
        assert opened is not None and decode(opened, twice).data.text == f"Hi {NAME}"  # type: ignore[attr-defined]


async def test_a_header_without_a_value_hides_nothing_from_the_reader_as_from_the_decoder() -> None:
    """A ``ce_type`` repeated with no value last: the decoder passes over the empty one and reads the type before it,
    and so must the reader. Seeing no type, it left the record sealed: the timeline got the token, not the text."""
    one = _one_sealed("ws-empty")
    emptied = [*one.headers, ("ce_type", None), ("workspaceid", None)]
    assert decode(one.sealed, emptied).type == one.type
    [opened] = await one.reader.open_records([Record(one.sealed, emptied)])
    assert opened is not None and decode(opened, emptied).data.text == f"Hi {NAME}"  # type: ignore[attr-defined]
