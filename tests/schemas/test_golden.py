"""Golden records: one realistic Kafka record per event type, frozen in schemas/examples/<type>.json (published:
they are the AsyncAPI messages' examples).

Each file holds the record as a consumer sees it: ``key``, ``headers`` (CloudEvents binary mode) and the
``payload`` (the record value). A change to the wire format of any event fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import jsonschema
import pytest
from leadstream_schemas import EVENT_TYPES, decode, encode
from leadstream_schemas.upcasting import UPCASTERS

GOLDEN = Path(__file__).resolve().parents[2] / "schemas" / "examples"
COMMITTED_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"
ALL_TYPES = sorted(EVENT_TYPES)
# Payload fields that hold personal data: they must never leak into the key or a header.
PERSONAL_FIELDS = {
    "email",
    "to",
    "full_name",
    "first_name",
    "last_name",
    "linkedin_url",
    "headline",
    "city",
    "location",
    "display_name",
}


def golden(event_type: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{event_type}.json").read_text(encoding="utf-8"))
    return data


def record(event_type: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The golden record as Kafka hands it to a consumer: value bytes and a list of (name, bytes) headers."""
    g = golden(event_type)
    return json.dumps(g["payload"]).encode(), [(name, value.encode()) for name, value in g["headers"].items()]


def test_every_registered_type_has_exactly_one_golden_fixture() -> None:
    on_disk = {p.name.removesuffix(".json") for p in GOLDEN.glob("*.json")}
    assert sorted(set(EVENT_TYPES) - on_disk) == [], "event types without a golden fixture"
    assert sorted(on_disk - set(EVENT_TYPES)) == [], "golden fixtures of unknown event types"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_golden_payload_is_a_full_valid_event(event_type: str) -> None:
    cls = EVENT_TYPES[event_type]
    g = golden(event_type)
    event = cls.model_validate(g["payload"])
    assert g["headers"]["ce_type"] == event_type
    # Full: every field of the model is present, so a newly added field needs a golden value too.
    assert set(g["payload"]) == set(cls.model_fields), "golden payload must list every field of the model"
    assert g["key"] == event.key() == g["headers"]["ce_subject"]


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_golden_round_trips_through_decode_and_encode(event_type: str) -> None:
    g = golden(event_type)
    value, headers = record(event_type)

    env = decode(value, headers)
    if event_type in UPCASTERS:
        # An old version decodes as the current one (history kept readable); its own round trip is the
        # current type's fixture.
        current, _ = UPCASTERS[event_type]
        assert type(env.data) is EVENT_TYPES[current]
        return
    assert type(env.data) is EVENT_TYPES[event_type]
    key, value_again, headers_again = encode(env)

    assert json.loads(value_again) == g["payload"]
    assert {name: raw.decode() for name, raw in headers_again} == g["headers"]
    assert key.decode() == g["key"]


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_golden_payload_validates_against_the_committed_json_schema(event_type: str) -> None:
    schema = json.loads((COMMITTED_SCHEMAS / f"{event_type}.json").read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(golden(event_type)["payload"])]
    assert errors == []


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_golden_headers_carry_ids_only(event_type: str) -> None:
    g = golden(event_type)
    headers, payload = g["headers"], g["payload"]
    UUID(g["key"])  # the key is an id
    for name in ("ce_id", "correlationid", "causationid", "campaignid"):
        if name in headers:
            UUID(headers[name])
    if payload.get("campaign_id") is not None:
        assert headers["campaignid"] == payload["campaign_id"]
    personal = [str(v) for k, v in payload.items() if k in PERSONAL_FIELDS and v]
    wire = [g["key"], *headers.values()]
    leaks = [p for p in personal for w in wire if p.lower() in w.lower()]
    assert leaks == []


def test_golden_fixtures_do_not_fail_schema_validation_by_accident() -> None:
    """The JSON Schema check above is real: a broken payload is rejected."""
    event_type = "leadstream.lead.discovered.v1"
    schema = json.loads((COMMITTED_SCHEMAS / f"{event_type}.json").read_text(encoding="utf-8"))
    payload = dict(golden(event_type)["payload"], lead_id="not-a-uuid", source="carrier_pigeon")
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    messages = sorted(e.message for e in validator.iter_errors(payload))
    assert any("carrier_pigeon" in m for m in messages)
    assert any("not-a-uuid" in m for m in messages)
