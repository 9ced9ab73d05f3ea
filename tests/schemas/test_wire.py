"""The record comparator the end-to-end run uses (tests/support/wire.py) accepts every golden record and names
each kind of drift: the ``ce_source`` form, extra headers or fields, a value of another kind or form, the topic."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest
from leadstream_schemas import EVENT_TYPES

from services.runtime.personal import encrypt
from tests.support.wire import golden, wire_mismatches

REPLIED = "leadstream.lead.replied.v1"


def _record(event_type: str, **changes: Any) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    g = golden(event_type)
    assert g is not None
    headers = dict(g["headers"], **changes.pop("headers", {}))
    payload = dict(g["payload"], **changes.pop("payload", {}))
    topic = changes.pop("topic", ".".join(event_type.split(".")[:2]) + ".v1")
    return (
        topic,
        g["key"].encode(),
        json.dumps(payload).encode(),
        [(k, str(v).encode()) for k, v in headers.items() if v is not None],
    )


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_golden_record_matches_the_contract(event_type: str) -> None:
    assert wire_mismatches(*_record(event_type)) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"headers": {"ce_source": "/leadstream/outreach"}}, "ce_source"),
        ({"headers": {"ce_time": "2025-03-08 10:13:00"}}, "ce_time"),
        ({"headers": {"x-debug": "1"}}, "x-debug"),
        ({"headers": {"traceparent": "trace-me"}}, "traceparent"),
        ({"headers": {"ce_subject": "bf794516-6c39-552c-8725-5161b3144ecf"}}, "ce_subject"),
        ({"payload": {"received_at": "2025-03-08T10:12:44+00:00"}}, "received_at"),
        ({"payload": {"out_of_office": "no"}}, "out_of_office"),
        ({"payload": {"mood": "happy"}}, "mood"),
        ({"topic": "leadstream.campaign.v1"}, "the contract says leadstream.lead.v1"),
    ],
)
def test_drift_is_named(change: dict[str, Any], named: str) -> None:
    found = wire_mismatches(*_record(REPLIED, **change))
    assert found, change
    assert any(named in line for line in found), found


def test_a_personal_field_sealed_as_a_token_past_its_bound_matches_the_contract() -> None:
    """What leadstream writes: a 4,000-character excerpt becomes a token far past ``maxLength``, which the schema
    marks; a token in a field that is not personal is still drift."""
    token = encrypt(os.urandom(32), ("ws", str(uuid.uuid4())), "\U0001d504" * 4_000)
    assert len(token) > 4_000
    assert wire_mismatches(*_record(REPLIED, payload={"excerpt": token})) == []
    found = wire_mismatches(*_record(REPLIED, payload={"variant": token}))
    assert any("payload.variant" in line for line in found), found
