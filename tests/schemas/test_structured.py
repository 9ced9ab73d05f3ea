"""Structured-mode CloudEvents (the webhook body): the same envelope as the Kafka record, both ways."""

from __future__ import annotations

import json

import pytest
from leadstream_schemas import EVENT_TYPES, DecodeError, decode
from leadstream_schemas.structured import decode_structured, encode_structured, to_structured

from tests.schemas.test_golden import golden, record

ALL_TYPES = sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_golden_record_round_trips_through_the_structured_form(event_type: str) -> None:
    value, headers = record(event_type)
    env = decode(value, headers)
    body = encode_structured(env)
    doc = json.loads(body)
    g = golden(event_type)
    # Every header is a member of the same value (ce_ dropped, content-type as datacontenttype) ...
    expected = {name.removeprefix("ce_"): v for name, v in g["headers"].items() if name != "content-type"}
    expected["type"] = env.data.event_type  # an old version is sent as the version it upcasts to
    assert {k: v for k, v in doc.items() if k not in {"data", "datacontenttype"}} == expected
    assert doc["datacontenttype"] == "application/json"
    # ... the event's JSON is under data, and decoding gives back the envelope the record decodes to.
    assert doc["data"] == json.loads(env.data.model_dump_json())
    assert decode_structured(body) == env


def test_structured_form_is_compact_utf8_json() -> None:
    value, headers = record("leadstream.lead.replied.v1")
    env = decode(value, headers)
    body = encode_structured(env)
    assert body == json.dumps(to_structured(env), separators=(",", ":"), ensure_ascii=False).encode()
    assert b'"specversion":"1.0"' in body


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"specversion": "1.0", "data": "text"}', "invalid_json"),
        (b'{"specversion": "1.0", "id": "x", "data": {}}', "missing_header"),
    ],
)
def test_a_body_that_is_not_an_event_is_a_decode_error(body: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_structured(body)
    assert info.value.code == code


def test_an_invalid_field_is_named_as_for_a_kafka_record() -> None:
    value, headers = record("leadstream.lead.replied.v1")
    doc = to_structured(decode(value, headers))
    doc["data"]["channel"] = "carrier pigeon"
    with pytest.raises(DecodeError) as info:
        decode_structured(json.dumps(doc))
    assert info.value.code == "invalid_field" and "channel" in info.value.message
