"""The projection's registry: one entry per event type of the contract, and entries that say only what
the views can hold."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any, ClassVar

import pytest
from leadstream_schemas import TOPICS, LeadEvent
from leadstream_schemas.base import EVENT_TYPES
from leadstream_schemas.personal import TOKEN_PREFIX, map_personal, personal_paths

from services.projection import domain
from services.projection.domain import LEAD_CAMPAIGN, LEAD_STATE, REGISTRY, SEALED_TYPES, SPECS, EventProjection
from services.projection.fastpath import BatchReducer
from services.projection.store import views
from services.projection.workload import generate

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


LEFT_SEALED = [cls for cls, entry in REGISTRY.items() if not entry.reads_personal]


def test_the_types_left_sealed_are_the_entries_that_say_so() -> None:
    assert {cls.event_type for cls in LEFT_SEALED} == SEALED_TYPES
    assert LEFT_SEALED, "no entry leaves its personal fields sealed: the test below would check nothing"


@pytest.mark.parametrize("cls", LEFT_SEALED, ids=lambda cls: cls.event_type)
def test_an_entry_that_reads_no_personal_field_gives_the_same_rows_whatever_they_hold(cls: type[Any]) -> None:
    """What the reader leaves sealed (``reads_personal=False``) must not matter: the rows of each generated event
    of the type, by the reference and by the fast path, are the same with every personal string a token."""
    envs = [env for env in generate(leads=60, campaigns=6, workspaces=2, seed=9).envelopes if type(env.data) is cls]
    assert envs, "the workload generates no such event: the check would prove nothing"
    for env in envs:
        payload = env.data.model_dump(mode="json")
        plain = json.dumps(payload)
        map_personal(payload, personal_paths(cls), lambda text: f"{TOKEN_PREFIX}{text[::-1]}sealed")
        assert json.dumps(payload) != plain, "no personal string to seal in this event"
        sealed = dataclasses.replace(env, data=cls.model_validate_json(json.dumps(payload)))
        assert domain.contribution(sealed) == domain.contribution(env)
        fast, fast_sealed = BatchReducer(), BatchReducer()
        fast.add_event(env)
        fast_sealed.add_event(sealed)
        assert fast_sealed.finish() == fast.finish()
