"""The contract's personal paths: each names a string of its event's payload, and the helpers walk them; the
published JSON Schemas mark exactly those strings, with the longest token each may be on the topics."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar

import jsonschema
import pytest
from jsonschema.exceptions import ValidationError
from leadstream_schemas import EVENT_TYPES, LeadDiscovered, LeadEvent, LeadSource, VideoRequested
from leadstream_schemas.bounds import Bound, Name
from leadstream_schemas.generate import JSONSCHEMA_DIR, event_schema
from leadstream_schemas.personal import ERASED, map_personal, personal_paths, redact, token_max_length
from pydantic import BaseModel, ConfigDict, Field

from services.runtime.personal import encrypt
from tests.support.personal_marks import PersonalAwareValidator

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
GOLDEN = SCHEMAS / "examples"
PERSONAL_TYPES = sorted(t for t, cls in EVENT_TYPES.items() if cls.personal)
LONGEST_CHAR = "\U0001d504"  # 4 UTF-8 bytes: a string of them is the longest token of its length


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
    schema = committed("leadstream.lead.discovered.v1")
    bound = next(o["maxLength"] for o in schema["properties"]["full_name"]["anyOf"] if o.get("type") == "string")
    name = LONGEST_CHAR * bound  # within the writer bound (characters)
    LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.manual, full_name=name)
    token = encrypt(os.urandom(32), ("ws", str(uuid.uuid4())), name)
    assert len(token) > bound
    assert len(token) == token_max_length(bound)
    readme = (SCHEMAS / "README.md").read_text()
    assert "5 + 4 * ceil((28 + 4 * maxLength) / 3)" in readme
    assert f"{token_max_length(bound):,}" in readme


# --------------------------------------------------------------------------------------------- marks in the schemas


def committed(event_type: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / JSONSCHEMA_DIR / f"{event_type}.json").read_text(encoding="utf-8"))
    return doc


def string_nodes(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every string schema of a document with its payload path (``*``: list items, map values), found the way a
    consumer walks the schema: each ``$ref`` followed at its own use, so a ``$def`` shared by a personal and a
    non-personal field is seen under both paths."""

    def walk(node: dict[str, Any], path: tuple[str, ...], refs: frozenset[str]) -> Iterator[tuple[str, Any]]:
        ref = node.get("$ref")
        if ref is not None:
            if ref in refs:  # a recursive model
                return
            yield from walk(doc["$defs"][ref.rsplit("/", 1)[1]], path, refs | {ref})
        for alternative in node.get("anyOf", ()):
            yield from walk(alternative, path, refs)
        if node.get("type") == "string":
            yield ".".join(path), node
        for name, sub in node.get("properties", {}).items():
            yield from walk(sub, (*path, name), refs)
        for keyword in ("items", "additionalProperties"):
            if isinstance(node.get(keyword), dict):
                yield from walk(node[keyword], (*path, "*"), refs)

    yield from walk(doc, (), frozenset())


def marked_paths(doc: dict[str, Any]) -> set[str]:
    return {path for path, node in string_nodes(doc) if "x-leadstream-personal" in node}


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_the_published_schema_marks_every_personal_string_and_nothing_else(event_type: str) -> None:
    cls = EVENT_TYPES[event_type]
    doc = committed(event_type)
    assert doc["x-leadstream"]["personal"] == list(cls.personal)
    assert marked_paths(doc) == set(cls.personal)
    for path, node in string_nodes(doc):
        if path in cls.personal:  # every string the path reaches (an optional field: its string alternative)
            assert node["x-leadstream-personal"] is True, path
            assert node["x-leadstream-token-max-length"] == token_max_length(node["maxLength"]), path
        else:
            assert not any(key.startswith("x-leadstream-personal") or "token" in key for key in node), path


def test_the_token_length_in_the_schemas_is_the_longest_token_encrypt_writes() -> None:
    """One formula (``token_max_length``) gives the annotation; here it is held against the real ``encrypt``."""
    bounds = {
        (node["maxLength"], node["x-leadstream-token-max-length"])
        for event_type in PERSONAL_TYPES
        for _, node in string_nodes(committed(event_type))
        if node.get("x-leadstream-personal")
    }
    assert {maximum for maximum, _ in bounds} >= {300, 320, 1_000, 2_048, 4_000, 20_000}
    key, person = os.urandom(32), ("ws", str(uuid.uuid4()))
    for maximum, annotated in sorted(bounds):
        assert len(encrypt(key, person, LONGEST_CHAR * maximum)) == annotated, maximum
        assert len(encrypt(key, person, "a" * maximum)) <= annotated
        assert annotated > maximum


def test_the_readme_formula_is_the_one_function() -> None:
    assert [token_max_length(n) for n in (0, 1, 2, 300)] == [45, 49, 53, 1_645]
    with pytest.raises(ValueError, match="max_length"):
        token_max_length(-1)


# --------------------------------------------------------------------------------------------- a consumer


def errors(validator_cls: Any, schema: dict[str, Any], payload: dict[str, Any]) -> list[str]:
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    return sorted(f"{e.json_path}: {e.message}" for e in validator.iter_errors(payload))


def bound_of(doc: dict[str, Any], path: str) -> int:
    [maximum] = {node["maxLength"] for p, node in string_nodes(doc) if p == path}
    return int(maximum)


def sealed_record(event_type: str) -> dict[str, Any]:
    """The golden payload with every personal string at its bound in 4-byte characters (an event the model accepts),
    then sealed as leadstream writes it to the topic: each personal string a token from the runtime's ``encrypt``."""
    cls = EVENT_TYPES[event_type]
    doc = committed(event_type)
    payload = json.loads((GOLDEN / f"{event_type}.json").read_text(encoding="utf-8"))["payload"]
    for path in personal_paths(event_type):
        if len(path) == 1 and payload.get(path[0]) is None:
            payload[path[0]] = "filled"  # an optional field the golden record leaves empty
        longest = LONGEST_CHAR * bound_of(doc, ".".join(path))
        hits: list[str] = []

        def at_bound(text: str, hits: list[str] = hits, longest: str = longest) -> str:
            hits.append(text)
            return longest

        map_personal(payload, (path,), at_bound)
        assert hits, f"the record has no string at {'.'.join(path)}"
    payload = cls.model_validate(payload).model_dump(mode="json")  # within every writer bound
    key, person = os.urandom(32), ("ws", payload["lead_id"])
    return map_personal(payload, personal_paths(event_type), lambda text: encrypt(key, person, text))


@pytest.mark.parametrize("event_type", PERSONAL_TYPES)
def test_a_sealed_record_validates_when_the_validator_honours_the_marks(event_type: str) -> None:
    schema = committed(event_type)
    payload = sealed_record(event_type)
    assert errors(PersonalAwareValidator, schema, payload) == []
    # Without the marks, the same record leadstream writes is refused, at every personal field and nowhere else.
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    top = list(validator.iter_errors(payload))

    def too_long(error: ValidationError) -> list[ValidationError]:  # an anyOf's own errors are in its context
        found = [error] if error.validator == "maxLength" else []
        return found + [leaf for sub in error.context or () for leaf in too_long(sub)]

    assert top and all(too_long(e) for e in top), [e.message[:80] for e in top]
    refused = [tuple(str(part) for part in leaf.absolute_path) for e in top for leaf in too_long(e)]

    def matches(where: tuple[str, ...], path: tuple[str, ...]) -> bool:
        return len(where) == len(path) and all(p in ("*", w) for w, p in zip(where, path, strict=True))

    paths = personal_paths(event_type)
    assert all(any(matches(where, path) for path in paths) for where in refused), refused
    assert all(any(matches(where, path) for where in refused) for path in paths), refused
    # What a reader through the key store shows for an erased person validates too.
    erased = redact(json.loads(json.dumps(payload)), personal_paths(event_type))
    assert errors(PersonalAwareValidator, schema, erased) == []


def test_the_marks_relax_only_tokens_at_personal_strings_and_only_up_to_the_token_length() -> None:
    event_type = "leadstream.lead.discovered.v1"
    schema, payload = committed(event_type), sealed_record(event_type)

    def refused(**fields: str) -> list[str]:
        return sorted({e.split(":")[0] for e in errors(PersonalAwareValidator, schema, dict(payload, **fields))})

    assert refused() == []
    assert refused(full_name="x" * 301) == ["$.full_name"]  # plain text keeps its bound
    assert refused(full_name="pii1:" + "A" * token_max_length(300)) == ["$.full_name"]  # longer than any token
    assert refused(title="pii1:" + "A" * 2_000) == ["$.title"]  # not a personal field: no token expected


# --------------------------------------------------------------------------------------------- shared $defs


class _Person(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    name: Name
    role: Name | None = None


class _Reviewed(LeadEvent):
    """Not registered: a model whose ``_Person`` is personal under two fields and not under a third."""

    event_type: ClassVar[str] = "leadstream.lead.test_reviewed.v1"
    personal: ClassVar[tuple[str, ...]] = ("author.name", "readers.*.name")

    author: _Person
    readers: Annotated[list[_Person], Bound(5)] = Field(default_factory=list)
    company_contact: _Person


class _Posted(LeadEvent):
    """Not registered: a ``_Person`` personal at every use."""

    event_type: ClassVar[str] = "leadstream.lead.test_posted.v1"
    personal: ClassVar[tuple[str, ...]] = ("author.name", "editor.name")

    author: _Person
    editor: _Person | None = None


def test_a_def_shared_by_personal_and_other_fields_is_marked_at_the_personal_uses_only() -> None:
    doc = event_schema(_Reviewed)
    assert marked_paths(doc) == {"author.name", "readers.*.name"}
    assert "x-leadstream-personal" not in doc["$defs"]["_Person"]["properties"]["name"]  # company_contact's
    assert doc["properties"]["company_contact"] == {"$ref": "#/$defs/_Person"}
    jsonschema.Draft202012Validator.check_schema(doc)

    key, person = os.urandom(32), ("ws", str(uuid.uuid4()))
    token = encrypt(key, person, LONGEST_CHAR * 300)
    payload = {
        "lead_id": person[1],
        "author": {"name": token},
        "readers": [{"name": token}, {"name": "Ada"}],
        "company_contact": {"name": "Grace", "role": "buyer"},
    }
    assert errors(PersonalAwareValidator, doc, payload) == []
    payload["company_contact"] = {"name": token}  # not personal here: a token is not expected, nor let through
    assert [e.split(":")[0] for e in errors(PersonalAwareValidator, doc, payload)] == ["$.company_contact.name"]


def test_a_def_personal_at_every_use_is_marked_once_in_place() -> None:
    doc = event_schema(_Posted)
    assert marked_paths(doc) == {"author.name", "editor.name"}
    name = doc["$defs"]["_Person"]["properties"]["name"]
    assert name["x-leadstream-personal"] is True and name["x-leadstream-token-max-length"] == token_max_length(300)
    assert "x-leadstream-personal" not in json.dumps(doc["properties"])  # every use refers to the marked $def
    profile = committed("leadstream.lead.profile_enriched.v1")
    assert profile["$defs"]["Post"]["properties"]["text"]["x-leadstream-personal"] is True


def test_a_personal_path_that_reaches_no_string_is_refused() -> None:
    class _Broken(LeadEvent):
        event_type: ClassVar[str] = "leadstream.lead.test_broken.v1"
        personal: ClassVar[tuple[str, ...]] = ("author", "author.nickname")

        author: _Person

    with pytest.raises(ValueError, match=r"test_broken.v1: personal path\(s\) author, author.nickname reach no string"):
        event_schema(_Broken)


def test_the_readmes_consumer_validator_reads_a_sealed_record() -> None:
    """The validator schemas/README.md shows consumers is the one the tests use: it accepts what leadstream writes
    and refuses a token where the schema does not expect one."""
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    [snippet] = [block for block in readme.split("```python\n")[1:] if "TopicRecordValidator" in block]
    namespace: dict[str, Any] = {}
    exec(snippet.split("```")[0], namespace)  # the README's own example, run as documented
    validator_cls = namespace["TopicRecordValidator"]
    event_type = "leadstream.lead.profile_enriched.v1"
    schema, payload = committed(event_type), sealed_record(event_type)
    assert errors(validator_cls, schema, payload) == errors(PersonalAwareValidator, schema, payload) == []
    refused = dict(payload, role=payload["full_name"])  # a token where the schema expects plain text
    assert [e.split(":")[0] for e in errors(validator_cls, schema, refused)] == ["$.role"]
