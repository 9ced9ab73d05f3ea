"""Bounds of every string, list and map on the wire, and the characters Postgres cannot store.

Every string and list of an event has a maximum, published in its JSON Schema (``maxLength``,
``maxItems``, ``maxProperties``; ``x-leadstream-max-bytes`` for a free-form JSON object). They are
**writer bounds**: an event is checked when it is built (``Event(...)``, ``model_validate(dict)``), so
no service can write a longer value, and an API request model that uses them refuses it with a 422 naming
the field. Reading does not check them: :func:`leadstream_schemas.decode` (``model_validate_json``)
accepts a longer value, because a record written before a bound existed, or by a writer whose bound was
larger, must still be readable for as long as the log keeps it. So adding or lowering a bound is a
compatible change; raising or removing one is not, since readers may rely on it (see
:mod:`leadstream_schemas.compat`).

Characters Postgres cannot store in ``text`` or ``jsonb`` -- NUL (``\\u0000``) and lone UTF-16 surrogates
-- are refused everywhere: when an event is built (the same check as the bounds) and when a record is
decoded (a ``DecodeError`` naming the field: the consumer dead-letters it instead of failing on the
database for ever).

    Name = Annotated[str, Bound(300)]
    skills: Annotated[list[Annotated[str, Bound(200)]], Bound(100)] = Field(default_factory=list)
    workflow: Annotated[dict[str, Any], FreeJson(max_properties=64, max_bytes=65_536)]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

MAX_BYTES_KEYWORD = "x-leadstream-max-bytes"
"""JSON Schema keyword of a free-form object's bound: its compact JSON encoding has at most this many bytes."""

SIZE_KEYWORDS = ("maxLength", "maxItems", "maxProperties", MAX_BYTES_KEYWORD)
"""The keywords of writer bounds (checked when written, not when read)."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# What a NUL or a surrogate looks like escaped in JSON; a match is only a candidate (``\\u0000`` is text).
_ESCAPED_CANDIDATE = re.compile(rb"\\u(?:0000|[dD][89abAB][0-9a-fA-F]{2})")


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored by Postgres (a NUL or a lone surrogate), or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain NUL (\\u0000): Postgres cannot store it"
    return f"must not contain a lone surrogate (\\u{ord(found.group()):04x}): it is not valid Unicode"


def find_unstorable(value: Any, path: tuple[str | int, ...] = ()) -> tuple[tuple[str | int, ...], str] | None:
    """The path and reason of the first string (or map key) in JSON-like ``value`` Postgres cannot store."""
    for where, text in _strings(value, path):
        reason = unstorable(text)
        if reason is not None:
            return where, reason
    return None


def _strings(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield (*path, key), key
            yield from _strings(item, (*path, key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))


def may_hold_unstorable(raw: bytes) -> bool:
    """Whether a JSON document may hold a NUL or a lone surrogate (escaped); a fast pre-check for decoders."""
    return _ESCAPED_CANDIDATE.search(raw) is not None


def scrub(text: str) -> str:
    """``text`` with every NUL and lone surrogate replaced by U+FFFD: for text from outside (a provider's reply)
    that must be kept rather than refused."""
    return _UNSTORABLE.sub("\ufffd", text)


def _check_storable(value: Any) -> Any:
    # Before the string's own validation: its length check cannot even read a lone surrogate.
    reason = unstorable(value) if isinstance(value, str) else None
    if reason is not None:
        raise PydanticCustomError("unstorable_text", reason)
    return value


def _with_max(schema: core_schema.CoreSchema, maximum: int) -> core_schema.CoreSchema:
    """``schema`` (a str, list, set or dict schema, possibly wrapped) with ``max_length``."""
    kind = schema["type"]
    if kind in ("str", "list", "dict", "set", "frozenset", "tuple"):
        strict = dict(schema)
        strict["max_length"] = maximum
        if kind == "str":
            return core_schema.no_info_before_validator_function(_check_storable, strict)
        return strict
    if kind in ("function-after", "function-before", "function-wrap", "function-plain") and "schema" in schema:
        inner = dict(schema)
        inner["schema"] = _with_max(schema["schema"], maximum)
        return inner
    raise TypeError(f"Bound applies to strings, lists and maps, not to a {kind!r} schema")


class Bound:
    """The maximum length of a string, or number of items of a list or map: checked when a model is built
    (Python input: constructors, ``model_validate``, API request bodies), not when JSON is read (``decode``).

    A string so bounded is also refused when it holds a NUL or a lone surrogate.
    """

    def __init__(self, maximum: int) -> None:
        if maximum < 1:
            raise ValueError("a bound is at least 1")
        self.maximum = maximum

    def __repr__(self) -> str:
        return f"Bound({self.maximum})"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        schema = handler(source)
        return core_schema.json_or_python_schema(json_schema=schema, python_schema=_with_max(schema, self.maximum))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        value = handler.resolve_ref_schema(handler(schema))
        keyword = {"string": "maxLength", "array": "maxItems", "object": "maxProperties"}[value["type"]]
        value[keyword] = self.maximum
        return value


class FreeJson:
    """The bound of a free-form JSON object (``dict[str, Any]``): at most ``max_properties`` keys and
    ``max_bytes`` bytes as compact JSON, with no NUL or lone surrogate anywhere. Like :class:`Bound`, checked
    when a model is built, not when JSON is read."""

    def __init__(self, *, max_properties: int, max_bytes: int) -> None:
        self.max_properties = max_properties
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"FreeJson(max_properties={self.max_properties}, max_bytes={self.max_bytes})"

    def _check(self, value: dict[str, Any]) -> dict[str, Any]:
        found = find_unstorable(value)
        if found is not None:
            where, reason = found
            raise PydanticCustomError(
                "unstorable_text", "{where}: {reason}", {"where": _dotted(where), "reason": reason}
            )
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())
        if size > self.max_bytes:
            raise PydanticCustomError(
                "json_too_large",
                "must be at most {max_bytes} bytes as JSON, got {size}",
                {"max_bytes": self.max_bytes, "size": size},
            )
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        schema = handler(source)
        strict = core_schema.no_info_after_validator_function(self._check, _with_max(schema, self.max_properties))
        return core_schema.json_or_python_schema(json_schema=schema, python_schema=strict)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        value = handler.resolve_ref_schema(handler(schema))
        value["maxProperties"] = self.max_properties
        value[MAX_BYTES_KEYWORD] = self.max_bytes
        return value


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path) or "<root>"


# -------------------------------------------------------------------------------------------------- the sizes

ID_MAX = 200
CODE_MAX = 100
NAME_MAX = 300
EMAIL_MAX = 320
LINE_MAX = 1000
URL_MAX = 2048
DETAIL_MAX = 4000
BODY_MAX = 20_000

Id = Annotated[str, Bound(ID_MAX)]
"""An identifier that is not a UUID: a workflow step, a template, a preset, a provider's cursor."""
Code = Annotated[str, Bound(CODE_MAX)]
"""A short code or word: a reason code, a provider name, a tone, a kind."""
Name = Annotated[str, Bound(NAME_MAX)]
"""A person's or company's name, a job title, a location, a campaign or search name."""
Email = Annotated[str, Bound(EMAIL_MAX)]
"""An email address (RFC 5321: at most 320 characters)."""
Line = Annotated[str, Bound(LINE_MAX)]
"""One line of text: a headline, a subject, an invitation note, a rejection reason."""
Url = Annotated[str, Bound(URL_MAX)]
"""A URL."""
Detail = Annotated[str, Bound(DETAIL_MAX)]
"""A paragraph: an error's detail, a hook, a reply's excerpt, an offer."""
Body = Annotated[str, Bound(BODY_MAX)]
"""A message, email, comment or post body."""
