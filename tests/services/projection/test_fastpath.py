"""The projection's fast paths agree with the reference: its decoder with the contract's ``decode()``,
the shape-compiled merges with :func:`merge_patch`, and a rebuilt plan with the contributions."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from leadstream_schemas import (
    DecodeError,
    Envelope,
    Event,
    InviteSent,
    LeadDiscovered,
    LeadSource,
    MessageSent,
    decode,
    encode,
)
from leadstream_schemas.envelope import H_CAUSATION, H_CORRELATION, H_ID, H_SPECVERSION, H_TIME, H_TYPE, H_WORKSPACE

from services.projection import domain, handlers
from services.projection.checksum import views_checksum
from services.projection.decoding import DecodedEvent, decode_record
from services.projection.domain import SPECS, MergeSpec, merge_patch
from services.projection.handlers import BatchApplier
from services.projection.store import views_for
from services.projection.workload import generate

from .helpers import NewSchema, apply_all, as_items

Headers = list[tuple[str, bytes | None]]
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def record(data: Event | None = None, campaign: bool = True) -> tuple[bytes, Headers]:
    lead = uuid.uuid4()
    payload = data or InviteSent(lead_id=lead, campaign_id=uuid.uuid4() if campaign else None, note="Hi {there}")
    root = Envelope.new(payload, workspace_id="ws-1", source="test", time=T0)
    env = root.caused(payload, source="test", time=T0)  # correlation and causation headers set
    _, value, headers = encode(env)
    return value, list(headers)


def replace(headers: Headers, name: str, value: bytes | None) -> Headers:
    return [(n, value if n == name else v) for n, v in headers]


def drop(headers: Headers, name: str) -> Headers:
    return [(n, v) for n, v in headers if n != name]


def verdict(fn: Callable[[bytes | None, Headers], Any], value: bytes | None, headers: Headers) -> tuple[Any, ...]:
    """What a decoder makes of a record: the projection's view of the event, or the error."""
    try:
        env = fn(value, headers)
    except DecodeError as exc:
        return ("error", exc.code, exc.message)
    return ("ok", str(env.id), env.type, env.time, env.workspace_id, env.campaign_id, env.data)


VALUE, HEADERS = record()
CASES: dict[str, tuple[bytes | None, Headers]] = {
    "valid": (VALUE, HEADERS),
    "no campaign": record(campaign=False),
    "lead discovered": record(LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.csv, full_name="A B")),
    "uppercase id": (VALUE, replace(HEADERS, H_ID, dict(HEADERS)[H_ID].upper())),  # type: ignore[union-attr]
    "braced id": (VALUE, replace(HEADERS, H_ID, b"{" + dict(HEADERS)[H_ID] + b"}")),  # type: ignore[operator]
    "bad id": (VALUE, replace(HEADERS, H_ID, b"not-a-uuid")),
    "bad correlation": (VALUE, replace(HEADERS, H_CORRELATION, b"nope")),
    "hex causation": (VALUE, replace(HEADERS, H_CAUSATION, uuid.uuid4().hex.encode())),
    "missing type": (VALUE, drop(HEADERS, H_TYPE)),
    "missing workspace": (VALUE, drop(HEADERS, H_WORKSPACE)),
    "empty header": (VALUE, replace(HEADERS, H_WORKSPACE, None)),
    "specversion": (VALUE, replace(HEADERS, H_SPECVERSION, b"0.3")),
    "unknown type": (VALUE, replace(HEADERS, H_TYPE, b"leadstream.lead.nope.v1")),
    "other type's payload": (VALUE, replace(HEADERS, H_TYPE, MessageSent.event_type.encode())),
    "tombstone": (None, HEADERS),
    "not json": (b"\xff not json", HEADERS),
    "invalid field": (b'{"lead_id": "x"}', HEADERS),
    "json array": (b"[1]", HEADERS),
    "bad time": (VALUE, replace(HEADERS, H_TIME, b"yesterday")),
    "bare time": (VALUE, replace(HEADERS, H_TIME, b"2026-01-05T08:00:00")),
    "offset time": (VALUE, replace(HEADERS, H_TIME, b"2026-01-05T09:00:00+01:00")),
    "non-utf8 workspace": (VALUE, replace(HEADERS, H_WORKSPACE, b"ws-\xff")),
    "non-utf8 type": (VALUE, replace(HEADERS, H_TYPE, b"\xfe")),
    "repeated header": (VALUE, [*HEADERS, (H_WORKSPACE, b"ws-2")]),
    "nul in a field": (VALUE.replace(b"Hi {there}", b"Hi \\u0000"), HEADERS),
    "lone surrogate": (VALUE.replace(b"Hi {there}", b"Hi \\udc00"), HEADERS),
    "text that looks like an escape": (VALUE.replace(b"Hi {there}", b"Hi \\\\u0000"), HEADERS),
    "older record past a bound": (VALUE.replace(b"Hi {there}", b"x" * 5000), HEADERS),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_projection_decoder_agrees_with_the_contract(case: str) -> None:
    value, headers = CASES[case]
    mine = verdict(decode_record, value, headers)
    assert mine == verdict(decode, value, headers)
    if case == "valid":
        assert mine[0] == "ok" and mine[1] == dict(HEADERS)[H_ID].decode()  # type: ignore[union-attr]
    if case in ("bad id", "bad correlation", "not json", "unknown type", "nul in a field", "lone surrogate"):
        assert mine[0] == "error"
    if case in ("text that looks like an escape", "older record past a bound"):
        assert mine[0] == "ok"


def test_an_upcast_type_still_goes_through_the_upcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    from leadstream_schemas import upcasting

    old = "leadstream.lead.invite_sent.v0"
    monkeypatch.setitem(upcasting.UPCASTERS, old, (InviteSent.event_type, lambda p: {**p, "note": "upcast"}))
    value, headers = record()
    decoded = decode_record(value, replace(headers, H_TYPE, old.encode()))
    assert isinstance(decoded.data, InviteSent) and decoded.data.note == "upcast"
    assert decoded.type == InviteSent.event_type


def test_an_envelope_and_its_record_contribute_the_same() -> None:
    for env in generate(leads=6, campaigns=2, seed=4).envelopes:
        value, headers = encode(env)[1:]
        a, b = domain.contribution(env), domain.contribution(decode_record(value, headers))
        if a.timeline is None:
            assert b.timeline is None
        else:
            assert b.timeline is not None and b.timeline.event_id == str(a.timeline.event_id)
            assert a.timeline[1:] == b.timeline[1:]
        assert a.patches == b.patches


@pytest.mark.parametrize("spec", SPECS)
def test_shape_compiled_merge_equals_the_reference(spec: MergeSpec) -> None:
    rng = random.Random(5)
    grouped: dict[Any, list[dict[str, Any]]] = {}
    for e in generate(leads=12, campaigns=3, seed=2).envelopes:
        for s, key, patch in domain.contribution(e).patches:
            if s is spec:
                grouped.setdefault(key, []).append(patch)
    assert grouped
    for patches in grouped.values():
        a, b = dict(patches[0]), dict(patches[0])
        for p in rng.sample(patches, len(patches)):
            merge_patch(spec, a, p)
            spec.merge_shaped(b, p)
        assert domain.row_values(spec, a) == domain.row_values(spec, b)


def test_decoded_records_and_envelopes_plan_the_same_writes() -> None:
    log = generate(leads=8, campaigns=2, seed=6).envelopes
    applier = BatchApplier(views_for("projection_tplan"))
    from_envelopes = applier.plan(as_items(log))
    items = as_items(log)
    for it in items:
        assert it.envelope is not None and not isinstance(it.envelope, DecodedEvent)
        value, headers = encode(it.envelope)[1:]
        it.envelope = decode_record(value, headers)
    from_records = applier.plan(items)
    assert list(from_envelopes.events) == list(from_records.events)
    assert from_envelopes.writes.upserts == from_records.writes.upserts
    assert [r[1:] for r in from_envelopes.writes.timeline] == [r[1:] for r in from_records.writes.timeline]
    assert [str(r[0]) for r in from_envelopes.writes.timeline] == [r[0] for r in from_records.writes.timeline]


async def test_staged_and_array_upserts_build_the_same_views(
    pg: asyncpg.Connection, new_schema: NewSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = generate(leads=30, campaigns=3, seed=8).envelopes
    arrays, staged, mixed = await new_schema(), await new_schema(), await new_schema()
    monkeypatch.setattr(handlers, "STAGE_MIN_ROWS", 10**9)
    await apply_all(pg, arrays, as_items(log), batch=60)
    monkeypatch.setattr(handlers, "STAGE_MIN_ROWS", 1)
    await apply_all(pg, staged, as_items(log), batch=60)
    # Twice through the same session: the staging tables are drained by each upsert.
    await apply_all(pg, staged, as_items(log), batch=60)
    monkeypatch.setattr(handlers, "STAGE_MIN_ROWS", 20)
    await apply_all(pg, mixed, as_items(log), batch=500)
    a = await views_checksum(pg, arrays.schema)
    assert a.tables == (await views_checksum(pg, staged.schema)).tables
    assert a.tables == (await views_checksum(pg, mixed.schema)).tables
    assert await pg.fetchval("SELECT count(*) FROM pg_temp.projection_stage_lead_state") == 0
