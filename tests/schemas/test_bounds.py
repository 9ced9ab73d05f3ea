"""Every string and list of every event has a bound; bounds are checked when an event is built, not when a
record is read; NUL and lone surrogates are refused both when built and when decoded, naming the field."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pytest
from leadstream_schemas import (
    EVENT_TYPES,
    CampaignCreatedV1,
    DecodeError,
    Envelope,
    LeadProfileEnriched,
    Post,
    Replied,
    decode,
    encode,
)
from leadstream_schemas.base import Event
from leadstream_schemas.bounds import Bound, FreeJson, find_unstorable, scrub, unstorable
from leadstream_schemas.generate import BOUNDS_FILE, bounds_document, event_schema, event_schemas
from pydantic import BaseModel, ValidationError

from tests.support.bounds import unbounded

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_string_list_and_map_of_every_event_has_a_bound(event_type: str) -> None:
    schema = event_schema(EVENT_TYPES[event_type])
    assert unbounded(schema, schema) == []


def test_the_bound_check_finds_what_has_no_bound() -> None:
    class Loose(BaseModel):
        name: str
        tags: list[Annotated[str, Bound(10)]]
        meta: dict[str, Any]
        labels: Annotated[dict[str, str], Bound(5)]
        fine: Annotated[list[Annotated[str, Bound(10)]], Bound(3)]
        free: Annotated[dict[str, Any], FreeJson(max_properties=4, max_bytes=100)]

    schema = Loose.model_json_schema()
    assert sorted(unbounded(schema, schema)) == [
        "labels: map keys without maxLength",
        "labels{}: a string without maxLength",
        "meta: a map of any values without x-leadstream-max-bytes",
        "meta: a map without maxProperties",
        "meta: map keys without maxLength",
        "name: a string without maxLength",
        "tags: a list without maxItems",
    ]


def test_the_committed_bounds_table_lists_every_bound() -> None:
    schemas = event_schemas()
    text = (SCHEMAS / BOUNDS_FILE).read_text()
    assert text == bounds_document(schemas)
    assert "| `leadstream.campaign.created.v1` | `strategy.offer` | 4,000 characters |  |" in text
    post = "| `leadstream.lead.profile_enriched.v1` | `recent_posts[].text` | 20,000 characters | 106,709 characters |"
    assert post in text  # a personal string: its longest token on the topics
    assert "| `leadstream.lead.discovered.v1` | `full_name` | 300 characters | 1,645 characters |" in text
    assert "| `leadstream.lead.discovered.v1` | `title` | 300 characters |  |" in text
    assert "| `leadstream.campaign.created.v2` | `workflow.steps` | 50 items |  |" in text
    assert "| `leadstream.campaign.created.v1` | `workflow` | 65,536 bytes |  |" in text


def _replied(excerpt: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A Replied record whose excerpt is ``excerpt`` as it would appear in the JSON (written past the model)."""
    env = Envelope.new(
        Replied(lead_id=uuid.uuid4(), channel="message", received_at=datetime(2026, 1, 5, tzinfo=UTC), excerpt="hi"),
        workspace_id="ws",
        source="test",
    )
    _, value, headers = encode(env)
    return value.replace(b'"excerpt":"hi"', b'"excerpt":' + excerpt.encode()), headers


def test_building_an_event_checks_its_bounds_and_refuses_unstorable_characters() -> None:
    with pytest.raises(ValidationError) as too_long:
        LeadProfileEnriched(lead_id=uuid.uuid4(), full_name="x" * 301)
    assert [(e["loc"], e["type"]) for e in too_long.value.errors()] == [(("full_name",), "string_too_long")]
    with pytest.raises(ValidationError) as too_many:
        LeadProfileEnriched(lead_id=uuid.uuid4(), full_name="Ada", skills=["s"] * 101)
    assert [e["loc"] for e in too_many.value.errors()] == [("skills",)]
    with pytest.raises(ValidationError) as nul:
        LeadProfileEnriched(lead_id=uuid.uuid4(), full_name="Ada", recent_posts=[Post(text="ok"), {"text": "a\x00b"}])
    [error] = nul.value.errors()
    assert error["loc"] == ("recent_posts", 1, "text") and error["type"] == "unstorable_text"
    assert "NUL" in error["msg"]
    with pytest.raises(ValidationError) as surrogate:
        Replied(lead_id=uuid.uuid4(), channel="message", received_at=datetime.now(UTC), excerpt="a\ud800")
    assert "lone surrogate" in surrogate.value.errors()[0]["msg"]
    with pytest.raises(ValidationError) as free:
        CampaignCreatedV1(
            campaign_id=uuid.uuid4(),
            name="c",
            audience={"type": "source_group", "ref": str(uuid.uuid4())},
            workflow={"steps": [{"id": "s1", "note": "x\x00"}]},
        )
    assert free.value.errors()[0]["loc"] == ("workflow",) and "steps.0.note" in free.value.errors()[0]["msg"]
    with pytest.raises(ValidationError, match="at most 65536 bytes"):
        CampaignCreatedV1(
            campaign_id=uuid.uuid4(),
            name="c",
            audience={"type": "source_group", "ref": str(uuid.uuid4())},
            workflow={"blob": "x" * 70_000},
        )


def test_decoding_refuses_a_nul_or_a_lone_surrogate_naming_the_field() -> None:
    value, headers = _replied('"a\\u0000b"')
    with pytest.raises(DecodeError) as nul:
        decode(value, headers)
    assert nul.value.code == "invalid_field"
    assert str(nul.value) == (
        "invalid leadstream.lead.replied.v1 payload: excerpt: must not contain NUL (\\u0000): Postgres cannot store it"
    )
    value, headers = _replied('"a\\udc00b"')
    with pytest.raises(DecodeError) as lone:
        decode(value, headers)
    assert lone.value.code == "invalid_field"
    assert "excerpt: must not contain a lone surrogate (\\udc00)" in str(lone.value)


def test_decoding_reads_what_only_looks_like_an_escape_and_longer_values_of_older_records() -> None:
    value, headers = _replied('"a\\\\u0000b \\ud83d\\ude00"')  # an escaped backslash, then a real surrogate pair
    assert decode(value, headers).data.excerpt == "a\\u0000b \U0001f600"  # type: ignore[attr-defined]
    old = "x" * 10_000  # longer than the excerpt's bound (4,000): written before the bound existed
    value, headers = _replied(json.dumps(old))
    assert decode(value, headers).data.excerpt == old  # type: ignore[attr-defined]


def test_every_event_type_decodes_an_older_record_past_its_bounds() -> None:
    """Readers of old records: decode() never applies a writer bound, whatever the event type."""
    for cls in EVENT_TYPES.values():
        schema = event_schema(cls)
        strings = [name for name, prop in schema["properties"].items() if _plain_string(prop)]
        if not strings:
            continue
        field = strings[0]
        example = _example(cls)
        payload = json.loads(example.model_dump_json())
        payload[field] = "y" * (_max_length(schema["properties"][field]) + 1)
        env = Envelope.new(example, workspace_id="ws", source="test")
        _, _, headers = encode(env)
        data = decode(json.dumps(payload).encode(), headers).data
        assert getattr(data, field) == payload[field], cls.event_type


def _plain_string(prop: dict[str, Any]) -> bool:
    options = prop.get("anyOf", [prop])
    return any(o.get("type") == "string" and "maxLength" in o and "format" not in o for o in options)


def _max_length(prop: dict[str, Any]) -> int:
    return int(next(o["maxLength"] for o in prop.get("anyOf", [prop]) if "maxLength" in o))


def _example(cls: type[Event]) -> Event:
    golden = Path(__file__).resolve().parents[2] / "schemas" / "examples" / f"{cls.event_type}.json"
    return cls.model_validate(json.loads(golden.read_text())["payload"])


def test_unstorable_and_scrub() -> None:
    assert unstorable("plain ☃ \U0001f600") is None
    assert unstorable("a\x00") is not None and unstorable("\udfff") is not None
    assert find_unstorable({"a": [1, {"b": "ok", "c\x00": "x"}]}) == (("a", 1, "c\x00"), unstorable("\x00"))
    assert scrub("a\x00b\ud800") == "a\ufffdb\ufffd"
