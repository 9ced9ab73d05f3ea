"""Warehouse-ready rows: one typed table per event type (pure: no I/O).

Each event type gets a fixed Arrow schema derived from its JSON Schema (the contract, not the data), so every file
of a type has the same columns whatever the records hold: the envelope's columns, then the payload flattened --
a nested object's fields become ``parent__field`` columns; lists and free-form maps, which have no fixed columns,
are JSON strings. ``date-time`` fields are UTC timestamps, integers int64, numbers float64, booleans bool; uuid,
enum and text fields are strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

SEP = "__"
"""Joins a nested object's field to its parent's name: ``hook__kind``."""

ENVELOPE: tuple[tuple[str, pa.DataType], ...] = (
    ("event_id", pa.string()),
    ("event_type", pa.string()),
    ("event_time", pa.timestamp("us", tz="UTC")),
    ("event_source", pa.string()),
    ("event_subject", pa.string()),
    ("workspace_id", pa.string()),
    ("event_campaign_id", pa.string()),
    ("correlation_id", pa.string()),
    ("causation_id", pa.string()),
    ("traceparent", pa.string()),
    ("kafka_topic", pa.string()),
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
)
"""The CloudEvents attributes and where the record was read, first in every table."""

_SCALARS: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}
_TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Column:
    """One payload column: its name, Arrow type, where it sits in the payload, and whether it holds JSON text."""

    name: str
    type: pa.DataType
    path: tuple[str, ...]
    as_json: bool = False


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    alternatives = [a for a in node.get("anyOf", ()) if a.get("type") != "null"]
    if len(alternatives) == 1:  # Optional[X]: the column is X, nullable
        return _resolve(root, alternatives[0])
    return node


def payload_columns(schema: dict[str, Any]) -> list[Column]:
    """The payload's columns of an event type's JSON Schema, in the schema's field order."""
    out: list[Column] = []

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        for name, sub in node.get("properties", {}).items():
            field = _resolve(schema, sub)
            where = (*path, name)
            column = SEP.join(where)
            kind = field.get("type")
            if kind == "object" and field.get("properties") and not field.get("additionalProperties"):
                walk(field, where)
            elif kind == "string" and field.get("format") == "date-time":
                out.append(Column(column, _TIMESTAMP, where))
            elif isinstance(kind, str) and kind in _SCALARS:
                out.append(Column(column, _SCALARS[kind], where))
            elif "enum" in field or "const" in field:
                out.append(Column(column, pa.string(), where))
            else:  # lists, maps, unions of several types: no fixed columns
                out.append(Column(column, pa.string(), where, as_json=True))

    walk(schema, ())
    return out


def arrow_schema(columns: list[Column]) -> pa.Schema:
    """The table of one event type: envelope columns, then its payload columns."""
    return pa.schema([*ENVELOPE, *((c.name, c.type) for c in columns)])


def _at(payload: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


def flatten(payload: dict[str, Any], columns: list[Column]) -> dict[str, Any]:
    """A payload (``model_dump(mode="json")``) as the values of its columns."""
    row: dict[str, Any] = {}
    for c in columns:
        value = _at(payload, c.path)
        if value is None:
            row[c.name] = None
        elif c.as_json:
            row[c.name] = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif c.type == _TIMESTAMP:
            row[c.name] = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            row[c.name] = value
    return row
