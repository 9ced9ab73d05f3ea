"""The committed contract files (schemas/jsonschema/, schemas/asyncapi.yaml) match the models.

When this fails, run ``python -m leadstream_schemas.generate`` and commit the result.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from leadstream_schemas import EVENT_TYPES, TOPICS
from leadstream_schemas.envelope import (
    H_CAUSATION,
    H_CORRELATION,
    H_FASTSTREAM_CORRELATION,
    H_TRACEPARENT,
    REQUIRED_HEADERS,
)
from leadstream_schemas.generate import (
    ASYNCAPI_FILE,
    EXAMPLES_DIR,
    JSONSCHEMA_DIR,
    PAYLOAD_SCHEMA_FORMAT,
    asyncapi_document,
    default_root,
    event_schemas,
    load_examples,
    main,
    render,
    to_yaml,
)

SCHEMAS_ROOT = Path(__file__).resolve().parents[2] / "schemas"


def tree(root: Path) -> dict[str, str]:
    schemas = (root / JSONSCHEMA_DIR).glob("*.json")
    files = {f"{JSONSCHEMA_DIR}/{p.name}": p.read_text(encoding="utf-8") for p in schemas}
    if (root / ASYNCAPI_FILE).exists():
        files[ASYNCAPI_FILE] = (root / ASYNCAPI_FILE).read_text(encoding="utf-8")
    return files


def test_committed_files_are_current(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS_ROOT / EXAMPLES_DIR, tmp_path / EXAMPLES_DIR)
    assert main(["--root", str(tmp_path)]) == 0
    fresh, committed = tree(tmp_path), tree(SCHEMAS_ROOT)

    missing = sorted(set(fresh) - set(committed))
    extra = sorted(set(committed) - set(fresh))
    stale = sorted(path for path in set(fresh) & set(committed) if fresh[path] != committed[path])
    assert (missing, extra, stale) == ([], [], []), "run: python -m leadstream_schemas.generate"


def test_check_passes_on_the_committed_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert "current" in capsys.readouterr().out


def test_generation_is_deterministic() -> None:
    assert render() == render()


def test_default_root_is_the_schemas_folder() -> None:
    assert default_root() == SCHEMAS_ROOT


def test_check_names_stale_missing_and_extra_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path)]) == 0
    discovered = tmp_path / JSONSCHEMA_DIR / "leadstream.lead.discovered.v1.json"
    discovered.write_text(discovered.read_text().replace("Why a lead matched", "Why"))
    (tmp_path / ASYNCAPI_FILE).unlink()
    (tmp_path / JSONSCHEMA_DIR / "leadstream.lead.teleported.v1.json").write_text("{}")
    capsys.readouterr()

    assert main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stale: jsonschema/leadstream.lead.discovered.v1.json" in err
    assert f"missing: {ASYNCAPI_FILE}" in err
    assert "extra: jsonschema/leadstream.lead.teleported.v1.json" in err


def test_generate_refuses_to_overwrite_a_breaking_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A committed schema with a field the model no longer has: regenerating would hide a breaking change."""
    assert main(["--root", str(tmp_path)]) == 0
    path = tmp_path / JSONSCHEMA_DIR / "leadstream.lead.enrolled.v1.json"
    schema = json.loads(path.read_text())
    schema["properties"]["seat_count"] = {"type": "integer"}
    path.write_text(json.dumps(schema))
    capsys.readouterr()

    assert main(["--root", str(tmp_path)]) == 1
    assert "leadstream.lead.enrolled.v1: seat_count: field removed" in capsys.readouterr().err
    assert "seat_count" in path.read_text()  # left untouched

    assert main(["--root", str(tmp_path), "--allow-breaking"]) == 0
    assert "seat_count" not in path.read_text()


# --------------------------------------------------------------------------------------------- content


def test_every_event_type_has_a_json_schema_with_contract_metadata() -> None:
    schemas = event_schemas()
    assert sorted(schemas) == sorted(EVENT_TYPES)
    for event_type, schema in schemas.items():
        cls = EVENT_TYPES[event_type]
        assert schema["$id"] == schema["title"] == event_type
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["x-leadstream"] == {
            "model": cls.__name__,
            "topic": cls.topic,
            "dlq": cls.topic + ".dlq",
            "key_field": cls.key_field,
            "personal": list(cls.personal),
            "size_bounds": "checked when an event is written; decode() also reads longer values of older records. "
            "On the topics a personal string (x-leadstream-personal: true) may be a pii1: token (or [erased]) longer "
            "than its maxLength, which bounds the plain text: up to x-leadstream-token-max-length characters",
        }
        assert cls.key_field in schema["required"]


def test_asyncapi_has_every_topic_and_its_dlq_with_a_send_operation() -> None:
    """The document describes leadstream, the application that publishes (sends) every event."""
    doc = asyncapi_document(event_schemas())
    assert doc["asyncapi"] == "3.0.0"
    addresses = sorted(channel["address"] for channel in doc["channels"].values())
    assert addresses == sorted([*TOPICS, *(t.dlq for t in TOPICS.values())])
    for channel_id, channel in doc["channels"].items():
        operations = [op for op in doc["operations"].values() if op["channel"] == {"$ref": f"#/channels/{channel_id}"}]
        assert len(operations) == 1
        assert operations[0]["action"] == "send"
        for ref in operations[0]["messages"]:  # operation messages must be the channel's messages
            assert ref["$ref"].removeprefix(f"#/channels/{channel_id}/messages/") in channel["messages"]


def test_asyncapi_messages_document_headers_and_point_at_the_json_schemas() -> None:
    doc = asyncapi_document(event_schemas())
    messages = doc["components"]["messages"]
    assert sorted(m["name"] for m in messages.values()) == sorted(EVENT_TYPES)
    headers = doc["components"]["schemas"]["CloudEventsHeaders"]
    assert sorted(headers["properties"]) == sorted(
        [
            *REQUIRED_HEADERS,
            "ce_subject",
            "content-type",
            "campaignid",
            H_CORRELATION,
            H_CAUSATION,
            H_TRACEPARENT,
            H_FASTSTREAM_CORRELATION,
        ]
    )
    assert set(REQUIRED_HEADERS) <= set(headers["required"])
    for message in messages.values():
        assert message["payload"]["schemaFormat"] == PAYLOAD_SCHEMA_FORMAT
        payload = message["payload"]["schema"]["$ref"]
        assert payload == f"./{JSONSCHEMA_DIR}/{message['name']}.json"
        assert (SCHEMAS_ROOT / payload).is_file()
        assert message["headers"]["allOf"][1]["properties"]["ce_type"] == {"const": message["name"]}
        channel = next(c for c in doc["channels"].values() if c["address"] == EVENT_TYPES[message["name"]].topic)
        assert message["title"] in channel["messages"]


# --------------------------------------------------------------------------------------------- YAML


def load_yaml_subset(text: str) -> Any:
    """Read the block-style YAML subset the generator writes (a test oracle; the package needs no YAML library)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    pos = 0

    def scalar(token: str) -> Any:
        if token.startswith('"'):
            return json.loads(token)
        if token in ("null", "true", "false", "{}", "[]") or re.fullmatch(r"-?\d+(\.\d+)?", token):
            return json.loads(token)
        return token

    def split_key(body: str) -> tuple[str, str]:
        if body.startswith('"'):
            key, end = json.JSONDecoder().raw_decode(body)
            rest = body[end:]
        else:
            key, sep, rest = body.partition(":")
            rest = ":" + rest if sep else rest
        assert rest.startswith(":"), f"not a mapping entry: {body!r}"
        return key, rest[1:].strip()

    def block(indent: int) -> Any:
        nonlocal pos
        is_list = lines[pos][indent:].startswith("-")
        result: Any = [] if is_list else {}
        while pos < len(lines):
            line = lines[pos]
            current = len(line) - len(line.lstrip(" "))
            if current < indent:
                break
            assert current == indent, f"unexpected indentation at line {pos}: {line!r}"
            body = line[indent:]
            if is_list:
                item = body[1:].strip()
                if not item:
                    pos += 1
                    result.append(block(indent + 2))
                elif re.match(r'^("([^"\\]|\\.)*"|[^":]+):( |$)', item):
                    lines[pos] = " " * (indent + 2) + item  # "- key: value" starts a mapping item
                    result.append(block(indent + 2))
                else:
                    pos += 1
                    result.append(scalar(item))
            else:
                key, value = split_key(body)
                pos += 1
                result[key] = scalar(value) if value else block(indent + 2)
        return result

    return block(0)


def test_asyncapi_yaml_reads_back_as_the_document() -> None:
    text = (SCHEMAS_ROOT / ASYNCAPI_FILE).read_text(encoding="utf-8")
    assert load_yaml_subset(text) == asyncapi_document(event_schemas(), load_examples(SCHEMAS_ROOT))


def test_every_message_shows_its_golden_record_as_example() -> None:
    doc = asyncapi_document(event_schemas(), load_examples(SCHEMAS_ROOT))
    for message in doc["components"]["messages"].values():
        golden = json.loads((SCHEMAS_ROOT / EXAMPLES_DIR / f"{message['name']}.json").read_text(encoding="utf-8"))
        [example] = message["examples"]
        assert (example["headers"], example["payload"]) == (golden["headers"], golden["payload"])


@pytest.mark.parametrize(
    "value",
    ["true", "No", "null", "~", "1.0", "42", "a: b", "#comment", "- item", "", " padded", "trailing ", "{x}", "it's"],
)
def test_yaml_quotes_strings_that_plain_yaml_would_misread(value: str) -> None:
    assert to_yaml({"k": value}) == f"k: {json.dumps(value)}\n"


def test_yaml_nesting() -> None:
    data = {"a": [{"b": 1, "c": [True, None]}, [1, 2], "x"], "d": {}, "e": [], "$ref": "#/x"}
    text = to_yaml(data)
    expected = [
        "a:",
        "  - b: 1",
        "    c:",
        "      - true",
        "      - null",
        "  -",
        "    - 1",
        "    - 2",
        "  - x",
        "d: {}",
        "e: []",
        '$ref: "#/x"',
    ]
    assert text.splitlines() == expected
    assert load_yaml_subset(text) == data
