"""The contract's personal paths: each names a string of its event's payload, and the helpers walk them."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from leadstream_schemas import EVENT_TYPES, LeadDiscovered, LeadSource, VideoRequested
from leadstream_schemas.personal import ERASED, personal_paths, redact

from services.runtime.personal import encrypt


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _leaf_types(doc: dict[str, Any], schema: dict[str, Any], path: tuple[str, ...]) -> set[str]:
    """The JSON types the schema allows at ``path`` (``*``: array items or map values)."""
    schema = _resolve(doc, schema)
    options = schema.get("anyOf")
    if options:
        return set().union(*(_leaf_types(doc, o, path) for o in options))
    if not path:
        return {schema.get("type", "?")}
    head, rest = path[0], path[1:]
    if schema.get("type") == "null":
        return set()
    if head == "*":
        if schema.get("type") == "array":
            return _leaf_types(doc, schema["items"], rest)
        if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
            return _leaf_types(doc, schema["additionalProperties"], rest)
        return {"?"}
    prop = schema.get("properties", {}).get(head)
    return _leaf_types(doc, prop, rest) if prop is not None else {"missing"}


@pytest.mark.parametrize("event_type", sorted(t for t, cls in EVENT_TYPES.items() if cls.personal))
def test_every_personal_path_is_a_string_of_the_payload(event_type: str) -> None:
    cls = EVENT_TYPES[event_type]
    doc = cls.model_json_schema()
    for path in personal_paths(event_type):
        types = _leaf_types(doc, doc, path) - {"null"}
        assert types == {"string"}, (event_type, ".".join(path), types)


def test_the_people_facing_events_declare_their_personal_data() -> None:
    declared = {t for t, cls in EVENT_TYPES.items() if cls.personal}
    for short in ("discovered", "profile_enriched", "email_enriched", "email_sent", "message_sent", "replied"):
        assert f"leadstream.lead.{short}.v1" in declared
    assert all(not cls.personal for t, cls in EVENT_TYPES.items() if not t.startswith("leadstream.lead."))


def test_redact_replaces_strings_at_personal_paths_only() -> None:
    event = LeadDiscovered(
        lead_id="00000000-0000-0000-0000-000000000001",
        source=LeadSource.manual,
        full_name="Ada Lovelace",
        email="ada@example.com",
        title="Analyst",
    )
    payload = redact(event.model_dump(mode="json"), personal_paths(LeadDiscovered))
    assert payload["full_name"] == payload["email"] == ERASED
    assert payload["title"] == "Analyst" and payload["first_name"] is None and payload["source"] == "manual"
    video = VideoRequested(
        lead_id="00000000-0000-0000-0000-000000000001",
        video_job_id="00000000-0000-0000-0000-000000000002",
        template_id="intro",
        variables={"first_name": "Ada", "company": "Engines"},
        fallbacks_used=["city"],
    )
    payload = redact(video.model_dump(mode="json"), personal_paths(VideoRequested))
    assert payload["variables"] == {"first_name": ERASED, "company": ERASED} and payload["fallbacks_used"] == ["city"]


def test_a_personal_fields_token_can_exceed_its_bound_as_the_readme_says() -> None:
    """On the topics a personal field is a ``pii1:`` token, longer than the plain text its ``maxLength`` bounds:
    a reader validating topic records against the JSON Schemas must know, so the README says it, and by how much."""
    schemas = Path(__file__).resolve().parents[2] / "schemas"
    schema = json.loads((schemas / "jsonschema" / "leadstream.lead.discovered.v1.json").read_text())
    bound = next(o["maxLength"] for o in schema["properties"]["full_name"]["anyOf"] if o.get("type") == "string")
    name = "\U0001d504" * bound  # within the writer bound (characters), 4 UTF-8 bytes each: the longest token
    LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.manual, full_name=name)
    token = encrypt(os.urandom(32), ("ws", str(uuid.uuid4())), name)
    assert len(token) > bound
    documented = 5 + 4 * math.ceil((28 + 4 * bound) / 3)  # the README's formula
    assert len(token) == documented
    readme = (schemas / "README.md").read_text()
    assert "5 + 4 * ceil((28 + 4 * maxLength) / 3)" in readme
    assert f"{documented:,}" in readme
