"""The projection's registry: one entry per event type of the contract, and entries that say only what
the views can hold."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leadstream_schemas import TOPICS, Envelope, LeadEvent
from leadstream_schemas.base import EVENT_TYPES
from leadstream_schemas.personal import map_personal, personal_paths

from services.projection import domain
from services.projection.domain import LEAD_CAMPAIGN, LEAD_STATE, REGISTRY, SEALED_TYPES, SPECS, EventProjection
from services.projection.fastpath import BatchReducer
from services.projection.store import views
from services.projection.workload import generate
from services.runtime.personal import PersonalReader, encrypt

CONTRACT_TYPES = sorted(
    (cls for cls in EVENT_TYPES.values() if cls.__module__.startswith("leadstream_schemas.")),
    key=lambda cls: cls.event_type,
)

# The lifecycle ranks are stored in the views (order keys, the timeline): they may never change. (Five
# types added on 2026-12-04 were inserted mid-order, which renumbered the later ones: from here on a new
# type takes the next free number.)
STORED_RANKS = {
    "leadstream.campaign.created.v2": 1,
    "leadstream.campaign.scheduled.v1": 2,
    "leadstream.campaign.launched.v1": 3,
    "leadstream.campaign.paused.v1": 4,
    "leadstream.campaign.resumed.v1": 5,
    "leadstream.campaign.needs_review.v1": 6,
    "leadstream.campaign.finished.v1": 7,
    "leadstream.campaign.deleted.v1": 8,
    "leadstream.account.connection_requested.v1": 9,
    "leadstream.account.connected.v1": 10,
    "leadstream.account.status_changed.v1": 11,
    "leadstream.account.deleted.v1": 12,
    "leadstream.search.started.v1": 13,
    "leadstream.search.resumed.v1": 14,
    "leadstream.search.page_completed.v1": 15,
    "leadstream.search.finished.v1": 16,
    "leadstream.lead.discovered.v1": 17,
    "leadstream.lead.post_matched.v1": 18,
    "leadstream.lead.enrichment_requested.v1": 19,
    "leadstream.lead.profile_enriched.v1": 20,
    "leadstream.lead.email_enriched.v1": 21,
    "leadstream.lead.email_not_found.v1": 22,
    "leadstream.lead.enrichment_failed.v1": 23,
    "leadstream.lead.enrolled.v1": 24,
    "leadstream.lead.video_requested.v1": 25,
    "leadstream.lead.video_generated.v1": 26,
    "leadstream.lead.video_failed.v1": 27,
    "leadstream.lead.message_generated.v1": 28,
    "leadstream.lead.message_rejected.v1": 29,
    "leadstream.lead.message_edited.v1": 30,
    "leadstream.lead.message_approved.v1": 31,
    "leadstream.lead.comment_drafted.v1": 32,
    "leadstream.lead.comment_posted.v1": 33,
    "leadstream.lead.post_liked.v1": 34,
    "leadstream.lead.invite_sent.v1": 35,
    "leadstream.lead.invite_accepted.v1": 36,
    "leadstream.lead.message_sent.v1": 37,
    "leadstream.lead.email_sent.v1": 38,
    "leadstream.lead.action_skipped.v1": 39,
    "leadstream.lead.action_failed.v1": 40,
    "leadstream.lead.paused.v1": 41,
    "leadstream.lead.resumed.v1": 42,
    "leadstream.lead.replied.v1": 43,
    "leadstream.lead.unsubscribed.v1": 44,
    "leadstream.lead.completed.v1": 45,
    "leadstream.account.lease_acquired.v1": 46,
    "leadstream.account.lease_released.v1": 47,
    "leadstream.lead.added_to_source_group.v1": 99,
}


def test_the_contract_registers_the_event_types_this_test_reads() -> None:
    assert len(CONTRACT_TYPES) >= 40
    assert {t.name for t in TOPICS.values()} >= {"leadstream.lead.v1", "leadstream.campaign.v1"}


@pytest.mark.parametrize("cls", CONTRACT_TYPES, ids=lambda cls: cls.event_type)
def test_every_contract_event_type_is_handled_or_explicitly_ignored(cls: type[Any]) -> None:
    entry = REGISTRY.get(cls)
    assert entry is not None, f"{cls.__name__} has no entry in services/projection/domain.py REGISTRY"
    handled = entry.is_lead_event or entry.views is not None
    assert handled != (entry.ignored is not None), f"{cls.__name__}: handled or ignored (with a reason), not both"
    if issubclass(cls, LeadEvent):
        assert entry.is_lead_event and entry.summary is not None, (
            f"{cls.__name__}: a lead event needs a stage and a summary"
        )
    else:
        assert not entry.is_lead_event, f"{cls.__name__} is not a lead event: it has no timeline row"


def test_stored_ranks_never_change_and_new_ones_are_unique() -> None:
    ranks = {cls.event_type: entry.order for cls, entry in REGISTRY.items() if not entry.ignored}
    for event_type, rank in STORED_RANKS.items():
        assert ranks.get(event_type) == rank, f"the stored rank of {event_type} changed"
    new = [rank for event_type, rank in ranks.items() if event_type not in STORED_RANKS]
    assert len(set(new)) == len(new) and not set(new) & set(STORED_RANKS.values()), "a new type needs a rank of its own"
    assert domain.TYPE_RANK == ranks


def _columns(entry: EventProjection) -> list[tuple[str, set[str]]]:
    out = []
    if entry.flag:
        out.append((entry.flag, set(LEAD_STATE.any) & set(LEAD_CAMPAIGN.any)))
    if entry.counter:
        out.append((entry.counter, set(LEAD_CAMPAIGN.total)))
    return out


@pytest.mark.parametrize("cls", list(REGISTRY), ids=lambda cls: cls.event_type)
def test_flags_and_counters_name_columns_of_both_lead_rows(cls: type[Any]) -> None:
    for column, allowed in _columns(REGISTRY[cls]):
        assert column in allowed, f"{cls.__name__}: {column!r} is not such a column"
    label = REGISTRY[cls].label
    if isinstance(label, str):
        assert label in domain.WORKFLOW_LABELS


def test_every_patch_writes_only_columns_its_table_has() -> None:
    seen: dict[str, set[str]] = {spec.table: set() for spec in SPECS}
    for env in generate(leads=60, campaigns=6, workspaces=2, seed=9).envelopes:
        for spec, key, patch in domain.contribution(env).patches:
            assert set(patch) <= set(spec.columns), (env.type, set(patch) - set(spec.columns))
            assert key == spec.row_key(patch)
            seen[spec.table] |= set(patch)
    for spec in SPECS:
        table = views.table(spec)
        assert set(spec.columns) <= set(table.c.keys()), spec.table
        assert {c for c in spec.columns if str(table.c[c].type) == "JSONB"} == set(spec.json), spec.table
    assert seen[LEAD_STATE.table] >= {"disc_key", "prof_key", "email_key", "label_key", "video_key"}


def test_a_lead_event_of_a_type_without_an_entry_gets_a_generic_line() -> None:
    class Unlisted(LeadEvent):
        event_type: ClassVar[str] = "leadstream.lead.unlisted.v1"

    entry = domain.projection_of(Unlisted(lead_id=uuid.uuid4()))
    assert entry is not None and entry.order == domain.UNKNOWN_RANK
    assert domain.lead_details(Unlisted(lead_id=uuid.uuid4())) == (1, None, "Unlisted")


LEFT_SEALED = [cls for cls, entry in REGISTRY.items() if not entry.opens_personal and personal_paths(cls)]
GOLDEN = Path(__file__).resolve().parents[3] / "schemas" / "examples"
KEY = bytes(range(32))
WORKSPACE = "ws-sealed"


def test_the_types_left_sealed_are_the_entries_that_do_not_open_their_personal_fields() -> None:
    assert {cls.event_type for cls in LEFT_SEALED} == SEALED_TYPES
    assert domain.LeadDiscovered.event_type not in SEALED_TYPES, "the lists show a discovered lead's name"
    assert LEFT_SEALED, "no entry leaves its personal fields sealed: the test below would check nothing"


# Personal texts as people write them: empty, spaces and newlines to collapse, braces (format fields), long ones
# to shorten, and text that looks like a token or a placeholder.
_TEXTS = st.one_of(
    st.text(max_size=400),
    st.sampled_from(["", "  a \n b  ", "{account}", "{pii1:AAAA~3}", "pii1:AAAA", "x" * 300, "ü {{}} }{"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
@pytest.mark.parametrize("cls", LEFT_SEALED, ids=lambda cls: cls.event_type)
def test_a_sealed_entry_reads_the_same_once_opened_whatever_its_personal_fields_hold(
    cls: type[Any], data: st.DataObject
) -> None:
    """What the reader leaves sealed must not change what anyone reads: the rows of an event of the type, by the
    reference and by the fast path, are the same as those of the event opened as it is read (every token
    decrypted), except the timeline's summary and detail, which are the same once opened with the lead's key (as
    the API opens them)."""
    golden = json.loads((GOLDEN / f"{cls.event_type}.json").read_text(encoding="utf-8"))
    payload = golden["payload"]
    for path in personal_paths(cls):  # every personal string (a list's or a map's items too) drawn anew
        map_personal(payload, (path,), lambda _: data.draw(_TEXTS))
    person = (WORKSPACE, str(payload["lead_id"]))
    map_personal(payload, personal_paths(cls), lambda text: encrypt(KEY, person, text))
    value = json.dumps(payload).encode()
    sealed_event = cls.model_validate_json(value)
    sealed = Envelope.new(sealed_event, workspace_id=WORKSPACE, source="leadstream/test")
    reader = PersonalReader(lambda leads: _keys(leads))
    asyncio.run(reader.load([person]))
    # What a reader that opens every record reads (the projection before it left these types sealed).
    env = dataclasses.replace(sealed, data=cls.model_validate_json(reader.open(value, None, person, cls.event_type)))

    def opened(c: domain.Contribution) -> domain.Contribution:
        row = c.timeline
        assert row is not None
        summary = domain.render_summary(row.summary, "Ann", None, lambda token: reader.text(person, token))
        detail = row.detail
        if detail is not None:
            detail = json.dumps(json.loads(reader.open(detail.encode(), None, person, cls.event_type) or b""))
        return dataclasses.replace(c, timeline=row._replace(summary=summary, detail=detail))

    def plain(c: domain.Contribution) -> domain.Contribution:
        row = c.timeline
        assert row is not None
        detail = json.dumps(json.loads(row.detail)) if row.detail is not None else None
        return dataclasses.replace(
            c, timeline=row._replace(summary=domain.render_summary(row.summary, "Ann", None), detail=detail)
        )

    assert opened(domain.contribution(sealed)) == plain(domain.contribution(env))
    fast, fast_sealed = BatchReducer(), BatchReducer()
    fast.add_event(env)
    fast_sealed.add_event(sealed)
    mine, theirs = fast_sealed.finish(), fast.finish()
    assert [opened(domain.Contribution(r)).timeline for r in mine.timeline] == [
        plain(domain.Contribution(r)).timeline for r in theirs.timeline
    ]
    assert dataclasses.replace(mine, timeline=[]) == dataclasses.replace(theirs, timeline=[])


async def _keys(leads: list[uuid.UUID]) -> list[tuple[str, uuid.UUID, bytes | None]]:
    return [(WORKSPACE, lead, KEY) for lead in leads]
