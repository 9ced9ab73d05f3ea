"""The projection's fast paths agree with their references: its decoder with the contract's ``decode()``,
and the batch applier (:mod:`services.projection.fastpath` and the SQL upserts) with the reference
reducer (:func:`services.projection.domain.reduce_views`) on generated event streams with duplicates,
out-of-order arrival and any batching."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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

from services.projection import domain, fastpath, handlers
from services.projection.checksum import views_checksum
from services.projection.decoding import DecodedEvent, decode_record, header_dicts
from services.projection.domain import SPECS, MergeSpec
from services.projection.handlers import BatchApplier
from services.projection.store import TIMELINE_COLUMNS, views_for
from services.projection.workload import generate

from .helpers import NewSchema, apply_all, as_items, payload_values

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


@dataclass
class Record:
    """What ``header_dicts`` reads of a consumer record."""

    headers: Headers


def drop(headers: Headers, name: str) -> Headers:
    return [(n, v) for n, v in headers if n != name]


def verdict(fn: Callable[[bytes | None, Any], Any], value: bytes | None, headers: Any) -> tuple[Any, ...]:
    """What a decoder makes of a record: the projection's view of the event, or the error."""
    try:
        env = fn(value, headers)
    except DecodeError as exc:
        return ("error", exc.code, exc.message)
    return ("ok", str(env.id), env.type, env.time, env.workspace_id, env.campaign_id, payload_values(env.data))


VALUE, HEADERS = record()
CASES: dict[str, tuple[bytes | None, Headers]] = {
    "valid": (VALUE, HEADERS),
    "no campaign": record(campaign=False),
    "lead discovered": record(LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.csv, full_name="A B")),
    "uppercase id": (VALUE, replace(HEADERS, H_ID, dict(HEADERS)[H_ID].upper())),  # type: ignore[union-attr]
    "braced id": (VALUE, replace(HEADERS, H_ID, b"{" + dict(HEADERS)[H_ID] + b"}")),  # type: ignore[operator]
    "bad id": (VALUE, replace(HEADERS, H_ID, b"not-a-uuid")),
    "bad correlation": (VALUE, replace(HEADERS, H_CORRELATION, b"nope")),
    "correlation is the id": (VALUE, replace(HEADERS, H_CORRELATION, dict(HEADERS)[H_ID])),
    "bad id, also the correlation": (VALUE, replace(replace(HEADERS, H_ID, b"nope"), H_CORRELATION, b"nope")),
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
    assert verdict(decode_record, value, header_dicts([Record(headers)])[0]) == mine  # a replay's batch path
    if case == "valid":
        assert mine[0] == "ok" and mine[1] == dict(HEADERS)[H_ID].decode()  # type: ignore[union-attr]
    if case in (
        "bad id",
        "bad correlation",
        "bad id, also the correlation",
        "not json",
        "unknown type",
        "nul in a field",
        "lone surrogate",
    ):
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


# -- the batch applier against the reference reducer ------------------------------------------------

LOGS = [generate(leads=8, campaigns=2, workspaces=w, seed=seed).envelopes for seed, w in ((1, 1), (2, 2), (3, 1))]


@dataclass
class Delivery:
    """A log as a consumer may receive it: some of its events, in any order, some twice, in batches."""

    events: list[Envelope[Any]]
    batch_sizes: list[int]

    def batches(self) -> Iterator[list[Envelope[Any]]]:
        i, sizes = 0, itertools.cycle(self.batch_sizes)
        while i < len(self.events):
            size = next(sizes)
            yield self.events[i : i + size]
            i += size


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    log = draw(st.sampled_from(LOGS))
    order = draw(st.permutations(range(len(log))))
    kept = draw(st.integers(1, len(log)))
    events = [log[i] for i in order[:kept]]
    for again, at in draw(st.lists(st.tuples(st.integers(0, kept - 1), st.integers(0, kept)), max_size=15)):
        events.insert(min(at, len(events)), events[again])  # a producer retry or a re-published record
    if draw(st.booleans()):
        events.sort(key=lambda e: e.time)  # in time order, as a log mostly is
    return Delivery(events, draw(st.lists(st.integers(1, 80), min_size=1, max_size=6)))


class _HoldEverything(BatchApplier):
    HELD_SPECS = SPECS


def fast_rows(delivery: Delivery) -> domain.ViewRows:
    """The fast path's rows: each batch planned and reduced, events of earlier batches dropped (as
    ``seen_events`` does), every table's reduced batches folded together (as a rebuild's held rows are)."""
    applier = _HoldEverything(views_for("projection_tprop"), refresh_summaries=False, hold_rows=1)
    seen: set[str] = set()
    held: dict[str, dict[Any, dict[str, Any]]] = {spec.table: {} for spec in SPECS}
    out = domain.ViewRows({}, set(), set(), set())
    for batch in delivery.batches():
        plan = applier.plan(as_items(batch))
        new = [it for eid, it in plan.events.items() if eid not in seen]
        seen.update(plan.events)
        writes = applier.writes(new) if len(new) < len(plan.events) else plan.writes
        assert not writes.upserts  # everything is held
        for spec in SPECS:
            for key, patch in writes.held.get(spec.table, {}).items():
                fastpath.fold_into(held[spec.table], spec, key, patch)
        out.timeline.update(r._replace(event_id=str(r.event_id)) for r in writes.timeline)
        out.groups.update(writes.groups)
        out.audiences.update(("", c) for c in writes.audience_campaigns)  # the statement needs only the ids
    domain._derive_membership(held, out.groups)
    out.tables = {
        spec.table: dict(zip(held[spec.table], fastpath.rows(spec, held[spec.table].values()), strict=True))
        for spec in SPECS
    }
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_batched_folding_equals_the_reference_reducer(delivery: Delivery) -> None:
    reference = domain.reduce_views(delivery.events)
    fast = fast_rows(delivery)
    assert fast.tables == reference.tables
    assert fast.timeline == reference.timeline
    assert fast.groups == reference.groups
    assert fast.audiences == {("", c) for _, c in reference.audiences}
    in_order = domain.reduce_views(sorted({str(e.id): e for e in delivery.events}.values(), key=lambda e: e.time))
    assert reference.tables == in_order.tables  # the reference itself ignores order and duplicates


def _normal(value: Any) -> Any:
    """A value as compared across Python and Postgres (UUIDs as text, JSON parsed)."""
    if isinstance(value, uuid.UUID) or type(value).__name__ == "UUID":
        return str(value)
    return value


async def read_rows(pg: asyncpg.Connection, schema: str) -> domain.ViewRows:
    """The views' merged tables and timeline as the reference reducer states them."""
    out = domain.ViewRows({}, set(), set(), set())
    for spec in SPECS:
        rows = await pg.fetch(f'SELECT {", ".join(spec.columns)} FROM "{schema}".{spec.table}')
        out.tables[spec.table] = {tuple(_normal(r[k]) for k in spec.key): _row(spec, tuple(r)) for r in rows}
    for r in await pg.fetch(f'SELECT {", ".join(TIMELINE_COLUMNS)} FROM "{schema}".timeline'):
        out.timeline.add(tuple(_normal(v) for v in r))  # type: ignore[arg-type]
    return out


def _row(spec: MergeSpec, row: tuple[Any, ...]) -> tuple[Any, ...]:
    values = [_normal(v) for v in row]
    for i in spec.json_positions:
        if values[i] is not None:
            values[i] = json.loads(values[i])
    return tuple(values)


def _as_read(reference: domain.ViewRows) -> domain.ViewRows:
    out = domain.ViewRows({}, {tuple(_normal(v) for v in r) for r in reference.timeline}, set(), set())  # type: ignore[misc]
    for spec in SPECS:
        out.tables[spec.table] = {
            tuple(_normal(v) for v in (row[spec.columns.index(k)] for k in spec.key)): _row(spec, row)
            for row in reference.tables[spec.table].values()
        }
    return out


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(delivery=deliveries(), hold=st.booleans())
async def test_the_views_in_postgres_equal_the_reference_reducer(
    pg: asyncpg.Connection, new_schema: NewSchema, delivery: Delivery, hold: bool
) -> None:
    views = await new_schema()
    applier = BatchApplier(views, hold_rows=50 if hold else 0)
    expected: dict[tuple[str, int], int | None] = {}
    items = as_items(delivery.events)
    i = 0
    for batch in delivery.batches():
        result = await applier.apply(pg, items[i : i + len(batch)], expected)
        expected.update(result.next_offsets)
        i += len(batch)
        if hold and applier.held > applier.hold_rows:
            await applier.flush(pg)
    await applier.flush(pg)
    got = await read_rows(pg, views.schema)
    want = _as_read(domain.reduce_views(delivery.events))
    assert got.tables == want.tables
    assert got.timeline == want.timeline
    await pg.execute(f'DROP SCHEMA "{views.schema}" CASCADE')


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries(), st.booleans())
def test_folding_lead_events_directly_equals_folding_their_contributions(delivery: Delivery, hold: bool) -> None:
    # BatchReducer.add_event folds a lead event straight into its rows; add() folds the reference's contribution.
    held = BatchApplier.HELD_SPECS if hold else ()
    for batch in delivery.batches():
        direct = fastpath.BatchReducer(hold=held, changes=True)
        reference = fastpath.BatchReducer(hold=held, changes=True)
        for env in {str(e.id): e for e in batch}.values():
            direct.add_event(env)
            reference.add(domain.contribution(env))
        assert direct.finish() == reference.finish()
