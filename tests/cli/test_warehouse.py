"""Typed warehouse columns for every event type: the golden record of each type fits its table exactly."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
from leadstream_schemas import EVENT_TYPES
from leadstream_schemas.generate import event_schema

from leadstream_cli.warehouse import ENVELOPE, arrow_schema, flatten, payload_columns

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_the_golden_record_of_every_type_fits_its_typed_table(event_type: str) -> None:
    cls = EVENT_TYPES[event_type]
    columns = payload_columns(event_schema(cls))
    schema = arrow_schema(columns)
    names = [c.name for c in columns]
    assert len(set(names)) == len(names)
    assert not set(names) & {name for name, _ in ENVELOPE}, "a payload column shadows an envelope column"
    payload = cls.model_validate(json.loads((EXAMPLES / f"{event_type}.json").read_text())["payload"])
    row = flatten(payload.model_dump(mode="json"), columns)
    table = pa.Table.from_pylist([row], schema=pa.schema([schema.field(n) for n in names]))
    assert table.num_rows == 1
    for c in columns:  # what the golden record holds is in its column, typed
        value = table.column(c.name)[0].as_py()
        if c.type == pa.timestamp("us", tz="UTC") and value is not None:
            assert isinstance(value, datetime) and value.tzinfo is not None


def test_nested_objects_are_flattened_and_lists_are_json() -> None:
    cls = EVENT_TYPES["leadstream.lead.message_generated.v1"]
    columns = {c.name: c for c in payload_columns(event_schema(cls))}
    assert columns["hook__kind"].type == pa.string() and not columns["hook__kind"].as_json
    assert columns["needs_review"].type == pa.bool_() and columns["char_limit"].type == pa.int64()
    discovered = {c.name: c for c in payload_columns(event_schema(EVENT_TYPES["leadstream.lead.discovered.v1"]))}
    assert discovered["fit_signals"].as_json
    row = flatten({"fit_signals": [{"kind": "title", "detail": "VP"}]}, [discovered["fit_signals"]])
    assert json.loads(row["fit_signals"]) == [{"detail": "VP", "kind": "title"}]
