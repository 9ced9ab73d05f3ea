"""Personal fields encrypted per person in the outbox, read back through the key store, and crypto-shredded.

On the real database (the probe service's engine, whose start migrated the key store)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from leadstream_schemas import (
    Envelope,
    LeadDiscovered,
    LeadErased,
    LeadSource,
    MessageSent,
    VideoRequested,
    decode,
    encode,
)
from leadstream_schemas.personal import ERASED, TOKEN_PREFIX
from sqlalchemy import select

from services.runtime import personal
from services.runtime.outbox import outbox_rows
from services.runtime.personal import PersonalReader, person_keys
from tests.services.runtime.conftest import Probe

NAME, EMAIL, URL = "Wilhelmina Crypto-Shred", "wilhelmina.shred@erasure.example", "https://linkedin.com/in/wilhelmina"


@dataclass
class Record:
    """What a reader needs of a consumer record."""

    value: bytes | None
    headers: list[tuple[str, bytes]]


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
    assert key.workspace_id == ws and len(key.data_key) == 32 and key.erased_at is None


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
