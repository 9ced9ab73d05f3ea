"""The wire is the contract: a Kafka record compared with the golden fixture of its type and the committed schemas.

``wire_mismatches`` lists every way a record differs from what the contract documents: headers (names, the
committed AsyncAPI ``CloudEventsHeaders`` schema, and the form of each value next to the golden record's), the
topic and key, and the payload (the committed JSON Schema, read as a consumer does: a personal string may be a
``pii1:`` token up to its marked length; the golden payload's field names and the JSON kind and form of each
value). An empty list means the record looks like its golden fixture.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from leadstream_schemas import SOURCE_PATTERN, headers_dict

from tests.support.personal_marks import payload_validator

# Any string: the golden records' workspace ids happen to be UUIDs, a deployment's may be names.
FREE_FORM_HEADERS = {"workspaceid"}
ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "schemas" / "examples"
SCHEMAS = ROOT / "schemas"

# The forms a string value can take; a wire value must take the same form as the golden value it stands next to.
_FORMS = (
    ("uuid", re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    ("date-time Z", re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")),
    ("date-time +00:00", re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+00:00$")),
    ("source", re.compile(SOURCE_PATTERN)),
)


def _form(value: str) -> str:
    return next((name for name, pattern in _FORMS if pattern.match(value)), "text")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return f"string ({_form(value)})"
    if isinstance(value, list):
        return "array"
    return "object"


@cache
def golden(event_type: str) -> dict[str, Any] | None:
    path = GOLDEN / f"{event_type}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


@cache
def _payload_validator(event_type: str) -> Any:
    # As a consumer reads the topic: a personal string may be a pii1: token up to its marked length.
    schema = json.loads((SCHEMAS / "jsonschema" / f"{event_type}.json").read_text(encoding="utf-8"))
    return payload_validator(schema)


@cache
def _header_validator() -> Any:
    document = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text(encoding="utf-8"))
    schema = document["components"]["schemas"]["CloudEventsHeaders"]
    cls = jsonschema.validators.Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def wire_mismatches(topic: str, key: bytes | None, value: bytes | None, headers: Any) -> list[str]:
    """Every difference between this record and the contract (empty when it matches); ``topic`` without prefix."""
    h = headers_dict(headers)
    event_type = h.get("ce_type", "<no ce_type>")
    where = f"{topic} {event_type}"
    g = golden(event_type)
    if g is None:
        return [f"{where}: no golden fixture for this type"]
    out: list[str] = []
    names = [name for name, _ in (headers.items() if isinstance(headers, dict) else headers)]
    if len(names) != len(set(names)):
        out.append(f"{where}: repeated headers {sorted(names)}")
    extra = set(h) - set(g["headers"])
    if extra:
        out.append(f"{where}: headers not in the golden record: {sorted(extra)}")
    for err in _header_validator().iter_errors(h):
        out.append(f"{where}: headers{err.json_path.removeprefix('$')}: {err.message} (AsyncAPI CloudEventsHeaders)")
    for name, value_on_wire in h.items():
        expected = g["headers"].get(name)
        if expected is not None and name not in FREE_FORM_HEADERS and _kind(value_on_wire) != _kind(expected):
            out.append(f"{where}: header {name}={value_on_wire!r} is {_kind(value_on_wire)}, golden {expected!r}")
    for name in ("ce_specversion", "content-type", "ce_type"):
        if h.get(name) != g["headers"][name]:
            out.append(f"{where}: header {name}={h.get(name)!r}, golden {g['headers'][name]!r}")
    schema_topic = _payload_validator(event_type).schema["x-leadstream"]["topic"]
    if topic != schema_topic:
        out.append(f"{where}: on topic {topic}, the contract says {schema_topic}")
    subject = h.get("ce_subject")
    if key is None or key.decode("utf-8", "replace") != subject:
        out.append(f"{where}: key {key!r} is not ce_subject {subject!r}")
    try:
        payload = json.loads(value or b"")
    except json.JSONDecodeError as exc:
        return [*out, f"{where}: value is not JSON: {exc}"]
    if not isinstance(payload, dict):
        return [*out, f"{where}: value is {type(payload).__name__}, not an object"]
    for err in _payload_validator(event_type).iter_errors(payload):
        out.append(f"{where}: payload{err.json_path.removeprefix('$')}: {err.message} (JSON Schema)")
    unknown = set(payload) - set(g["payload"])
    if unknown:
        out.append(f"{where}: payload fields not in the golden record: {sorted(unknown)}")
    for name, got in payload.items():
        expected = g["payload"].get(name)
        if got is None or expected is None:
            continue  # an optional field: its kind is the JSON Schema's business
        if _kind(got) != _kind(expected):
            out.append(f"{where}: payload.{name}={got!r} is {_kind(got)}, golden {expected!r} is {_kind(expected)}")
    with_key = payload.get(_payload_validator(event_type).schema["x-leadstream"]["key_field"])
    if with_key is not None and str(with_key) != subject:
        out.append(f"{where}: ce_subject {subject!r} is not the payload's key field {with_key!r}")
    return out
