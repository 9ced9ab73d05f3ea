"""Find the strings, lists and maps of a JSON Schema (an event's, or an OpenAPI document's) that have no bound."""

from __future__ import annotations

from typing import Any

from leadstream_schemas.bounds import MAX_BYTES_KEYWORD

INTRINSICALLY_BOUNDED_FORMATS = frozenset({"uuid", "date", "date-time", "time", "binary"})
"""Formats whose strings are bounded by what they are. ``binary`` is an uploaded file: the request body cap
(``http_max_body_bytes``, or the route's own) bounds it."""

Schema = dict[str, Any]


def unbounded(node: Schema, root: Schema, path: str = "") -> list[str]:
    """Every place under ``node`` where a string, list or map has no maximum: ``path: what is missing``.

    ``root`` resolves local ``$ref``s (``#/$defs/X`` or ``#/components/schemas/X``). A value of any type
    (``Any``) is bounded only inside an object with ``x-leadstream-max-bytes``.
    """
    out: list[str] = []
    _walk(node, root, path, out, frozenset(), sized=False)
    return out


def _resolve(ref: str, root: Schema) -> Schema:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def _walk(node: Schema, root: Schema, path: str, out: list[str], seen: frozenset[str], *, sized: bool) -> None:
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            return
        seen = seen | {ref}
        node = {**_resolve(ref, root), **{k: v for k, v in node.items() if k != "$ref"}}
    alternatives = [*node.get("anyOf", ()), *node.get("oneOf", ()), *node.get("allOf", ())]
    for alternative in alternatives:
        _walk(alternative, root, path, out, seen, sized=sized)
    types = node.get("type")
    kinds = set(types) if isinstance(types, list) else {types} if isinstance(types, str) else set()
    where = path or "<root>"
    if "string" in kinds and not _bounded_string(node):
        out.append(f"{where}: a string without maxLength")
    if "array" in kinds:
        if "maxItems" not in node:
            out.append(f"{where}: a list without maxItems")
        if isinstance(node.get("items"), dict):
            _walk(node["items"], root, f"{where}[]", out, seen, sized=sized)
    if "object" in kinds or "properties" in node:
        for name, sub in node.get("properties", {}).items():
            _walk(sub, root, f"{path}.{name}" if path else name, out, seen, sized=sized)
        values = node.get("additionalProperties")
        if values not in (None, False):
            inner_sized = sized or MAX_BYTES_KEYWORD in node
            if "maxProperties" not in node:
                out.append(f"{where}: a map without maxProperties")
            if values is True or values == {}:
                if not inner_sized:
                    out.append(f"{where}: a map of any values without {MAX_BYTES_KEYWORD}")
            else:
                _walk(values, root, f"{where}{{}}", out, seen, sized=inner_sized)
            names = node.get("propertyNames")
            if not inner_sized and not (isinstance(names, dict) and ("maxLength" in names or "enum" in names)):
                out.append(f"{where}: map keys without maxLength")
    if not kinds and not alternatives and not _constant(node) and not sized:
        out.append(f"{where}: a value of any type (no bound)")


def _constant(node: Schema) -> bool:
    return "enum" in node or "const" in node


def _bounded_string(node: Schema) -> bool:
    # contentMediaType: an uploaded file, bounded by its route's body cap.
    return (
        "maxLength" in node
        or _constant(node)
        or node.get("format") in INTRINSICALLY_BOUNDED_FORMATS
        or "contentMediaType" in node
    )
