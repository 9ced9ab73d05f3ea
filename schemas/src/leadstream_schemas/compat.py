"""Backward-compatibility check of the event contract.

Within a version (``....v1``) an event may only gain optional fields. This module compares a new JSON
Schema of an event type with the old (committed) one and lists every change, marking the breaking ones:

- a field removed (required or optional: downstream consumers read it);
- a field that became required, or a new field without a default (old events do not carry it);
- a type changed or narrowed: another JSON type, ``null`` no longer allowed, a new or different
  ``format``, enum / ``Literal`` values removed, a new or changed constraint (``minLength``, ``pattern``, ...);
- a size bound raised or removed (``maxLength``, ``maxItems``, ``maxProperties``, ``x-leadstream-max-bytes``);
- an event type removed, or moved to another topic or key field.

Widening (a new optional field, new enum values, ``null`` now allowed, a new event type) is compatible.

Size bounds go the other way, because they are *writer* bounds (:mod:`leadstream_schemas.bounds`): an event
is checked against them when it is built, while ``decode()`` reads a longer value without complaint. A new
or lowered bound therefore breaks no reader of old records -- a record written before, with a longer value,
still decodes -- and gives readers of new records a promise; it is compatible. Raising or removing a bound
breaks that promise to readers that rely on it (a column sized for it, a UI that fits it): breaking.
Annotations (title, description, default, examples, and the ``x-leadstream`` documentation of a type) are not
compared, with one exception: the personal mark of a string (``x-leadstream-personal``, see
:mod:`leadstream_schemas.personal`). Marking a string personal documents what the topics carry and changes no
value a reader accepts from the log it already has: compatible (reported). Unmarking one is breaking: the log keeps
the ``pii1:`` tokens already written there, longer than the plain text's ``maxLength``, for ever. The token's
length (``x-leadstream-token-max-length``) follows ``maxLength``, whose changes are checked as size bounds.
Nested models (``$defs``) are compared field by field; paths read like ``fit_signals[].kind`` (``[]`` = list
items, ``{}`` = map values).

    python -m leadstream_schemas.compat                  # models in code vs committed schemas/jsonschema/
    python -m leadstream_schemas.compat --ref origin/main  # models in code vs the schemas committed at a git ref
    python -m leadstream_schemas.compat --old DIR         # models in code vs the schemas in DIR
    python -m leadstream_schemas.compat --releases        # models in code vs every released version (transitive)

Exits 1 and lists the breaking changes when there is any.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bounds import SIZE_KEYWORDS
from .generate import JSONSCHEMA_DIR, default_root, event_schemas
from .personal import PERSONAL_KEYWORD, TOKEN_MAX_LENGTH_KEYWORD, TOKEN_PREFIX

Schema = dict[str, Any]

_CONSTRAINTS = (
    "minLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "uniqueItems",
    "minProperties",
)
"""Constraints a reader's validation enforces: any new or changed one is breaking."""
_ANY = "any"


@dataclass(frozen=True, order=True)
class Change:
    """One difference between the old and the new schema of an event type."""

    event_type: str
    path: str
    message: str
    breaking: bool = True

    def __str__(self) -> str:
        where = f"{self.event_type}: {self.path}" if self.path else self.event_type
        return f"{where}: {self.message}"


def breaking(changes: Iterable[Change]) -> list[Change]:
    """Only the breaking changes."""
    return [c for c in changes if c.breaking]


# --------------------------------------------------------------------------------------------- comparison


class _Comparison:
    """Compares two schema documents of one event type, resolving each side's local ``$ref``s."""

    def __init__(self, event_type: str, old: Schema, new: Schema) -> None:
        self.event_type = event_type
        self.old_root = old
        self.new_root = new
        self.changes: list[Change] = []
        self._active: set[tuple[int, int]] = set()  # (old, new) node pairs being compared: stops recursive models

    def run(self) -> list[Change]:
        old_meta = self.old_root.get("x-leadstream", {})
        new_meta = self.new_root.get("x-leadstream", {})
        for key, what in (("topic", "topic"), ("key_field", "key field")):
            if key in old_meta and old_meta.get(key) != new_meta.get(key):
                self.changes.append(self._change("", f"{what} changed from {old_meta[key]!r} to {new_meta.get(key)!r}"))
        self.changes.extend(self._node(self.old_root, self.new_root, ""))
        return self.changes

    # -- helpers

    def _change(self, path: str, message: str, is_breaking: bool = True) -> Change:
        return Change(self.event_type, path, message, is_breaking)

    def _resolve(self, node: Schema, root: Schema) -> Schema:
        """Follow ``$ref`` (``#/$defs/Name``) and single-element ``allOf`` wrappers."""
        for _ in range(64):
            if "$ref" in node:
                node = _pointer(root, node["$ref"])
            elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
                node = node["allOf"][0]
            else:
                return node
        raise ValueError(f"{self.event_type}: $ref chain too deep")

    def _alternatives(self, node: Schema, root: Schema) -> list[Schema]:
        """A schema as a flat list of single-kind alternatives (splits anyOf/oneOf and type lists)."""
        node = self._resolve(node, root)
        union = node.get("anyOf") or node.get("oneOf")
        if isinstance(union, list):
            return [alt for item in union for alt in self._alternatives(item, root)]
        types = node.get("type")
        if isinstance(types, list):
            return [{**node, "type": t} for t in types]
        return [node]

    # -- the recursive comparison; each returns the changes found so that the best candidate can be chosen

    def _node(self, old: Schema, new: Schema, path: str) -> list[Change]:
        olds = self._alternatives(old, self.old_root)
        news = self._alternatives(new, self.new_root)
        out: list[Change] = []
        lost = []
        for alt in olds:
            candidates = [n for n in news if _accepts(_kind(n), _kind(alt))]
            if not candidates:
                lost.append(alt)
                continue
            results = [self._same_kind(alt, n, path) for n in candidates]
            out.extend(min(results, key=lambda r: len(breaking(r))))
        lost_kinds = [_kind(a) for a in lost]
        if lost_kinds == ["null"]:
            out.append(self._change(path, "no longer accepts null (was optional/nullable)"))
        elif lost:
            out.append(self._change(path, f"type changed from {_describe(olds)} to {_describe(news)}"))
        old_kinds = {_kind(a) for a in olds}
        gained = sorted({_kind(n) for n in news} - old_kinds)
        if gained and not lost and _ANY not in old_kinds:
            out.append(self._change(path, f"now also accepts {', '.join(gained)}", is_breaking=False))
        return out

    def _same_kind(self, old: Schema, new: Schema, path: str) -> list[Change]:
        kind = _kind(new)
        if kind == _ANY:
            return []
        if _kind(old) == _ANY:
            return [self._change(path, f"type narrowed from any value to {_describe([new])}")]
        pair = (id(old), id(new))
        if pair in self._active:  # a recursive model refers to itself: this pair is already being compared
            return []
        self._active.add(pair)
        try:
            out = self._values(old, new, path) + self._constraints(old, new, path) + self._personal(old, new, path)
            if kind == "array":
                out.extend(self._node(old.get("items", {}), new.get("items", {}), f"{path}[]"))
            elif kind == "object":
                out.extend(self._object(old, new, path))
            return out
        finally:
            self._active.discard(pair)

    def _values(self, old: Schema, new: Schema, path: str) -> list[Change]:
        out = []
        old_format, new_format = old.get("format"), new.get("format")
        if new_format is not None and old_format != new_format:
            out.append(self._change(path, f"format changed from {old_format or 'none'} to {new_format}"))
        old_values, new_values = _enum(old), _enum(new)
        if new_values is not None:
            if old_values is None:
                out.append(self._change(path, f"now restricted to {_show(new_values)}"))
            else:
                removed = [v for v in old_values if v not in new_values]
                added = [v for v in new_values if v not in old_values]
                if removed:
                    out.append(self._change(path, f"allowed value(s) removed: {_show(removed)}"))
                if added:
                    out.append(self._change(path, f"allowed value(s) added: {_show(added)}", is_breaking=False))
        return out

    def _constraints(self, old: Schema, new: Schema, path: str) -> list[Change]:
        out = []
        for key in _CONSTRAINTS:
            before, after = old.get(key), new.get(key)
            if after is None or after == before:
                continue
            was = "new constraint" if before is None else f"constraint changed from {key}={before!r} to"
            out.append(self._change(path, f"{was} {key}={after!r}"))
        for key in SIZE_KEYWORDS:
            before, after = old.get(key), new.get(key)
            if after == before:
                continue
            if after is None:
                out.append(self._change(path, f"size bound {key}={before!r} removed (readers may rely on it)"))
            elif before is None:
                message = f"writer bound {key}={after!r} added (decode() accepts longer values of older records)"
                out.append(self._change(path, message, is_breaking=False))
            elif after < before:
                out.append(self._change(path, f"writer bound {key} lowered from {before!r} to {after!r}", False))
            else:
                out.append(self._change(path, f"size bound {key} raised from {before!r} to {after!r}"))
        return out

    def _personal(self, old: Schema, new: Schema, path: str) -> list[Change]:
        was, now = old.get(PERSONAL_KEYWORD) is True, new.get(PERSONAL_KEYWORD) is True
        if now and not was:
            token = new.get(TOKEN_MAX_LENGTH_KEYWORD)
            message = f"marked personal: on the topics a {TOKEN_PREFIX} token of up to {token} characters"
            return [self._change(path, message, is_breaking=False)]
        if was and not now:
            message = f"no longer marked personal (the log keeps the {TOKEN_PREFIX} tokens already written there)"
            return [self._change(path, message)]
        return []

    def _object(self, old: Schema, new: Schema, path: str) -> list[Change]:
        old_props, new_props = old.get("properties"), new.get("properties")
        if old_props is None and new_props is None:  # free-form objects / maps: compare the value schemas
            old_values, new_values = old.get("additionalProperties", True), new.get("additionalProperties", True)
            if new_values is True or new_values == {} or old_values is False:
                return []
            if new_values is False:
                return [self._change(path, "no longer accepts any key")]
            if old_values is True or old_values == {}:
                return [self._change(path, f"map values narrowed from any value to {_describe([new_values])}")]
            return self._node(old_values, new_values, f"{path}{{}}")
        if old_props is None or new_props is None:
            return [self._change(path, "changed between a free-form map and an object with fixed fields")]

        out: list[Change] = []
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name in old_props:
            sub = f"{path}.{name}" if path else name
            if name not in new_props:
                out.append(self._change(sub, "field removed"))
                continue
            if name in new_required and name not in old_required:
                out.append(self._change(sub, "field became required (it was optional)"))
            out.extend(self._node(old_props[name], new_props[name], sub))
        for name in new_props:
            if name in old_props:
                continue
            sub = f"{path}.{name}" if path else name
            if name in new_required:
                out.append(self._change(sub, "new required field (old events do not have it; give it a default)"))
            else:
                out.append(self._change(sub, "optional field added", is_breaking=False))
        if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
            out.append(self._change(path, "no longer accepts unknown fields"))
        return out


def _pointer(root: Schema, ref: str) -> Schema:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if not isinstance(node, dict):
        raise ValueError(f"$ref {ref!r} does not point at a schema")
    return node


def _enum(node: Schema) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    values = node.get("enum")
    return list(values) if isinstance(values, list) else None


def _kind(node: Schema) -> str:
    """The JSON type a single-kind schema accepts, or 'any' when it does not constrain the type."""
    declared = node.get("type")
    if isinstance(declared, str):
        return declared
    values = _enum(node)
    if values:
        kinds = {_json_type(v) for v in values}
        return kinds.pop() if len(kinds) == 1 else _ANY
    if "properties" in node or "additionalProperties" in node:
        return "object"
    if "items" in node:
        return "array"
    return _ANY


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _accepts(new_kind: str, old_kind: str) -> bool:
    return new_kind in (old_kind, _ANY) or (new_kind == "number" and old_kind == "integer")


def _describe(alternatives: Sequence[Schema]) -> str:
    parts = []
    for alt in alternatives:
        kind = _kind(alt)
        values = _enum(alt)
        if values is not None:
            parts.append(f"{kind} {_show(values)}")
        elif alt.get("format"):
            parts.append(f"{kind} ({alt['format']})")
        else:
            parts.append(kind)
    return " | ".join(parts)


def _show(values: Sequence[Any]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def compare(old: Schema, new: Schema, event_type: str | None = None) -> list[Change]:
    """Every change from ``old`` to ``new`` (two JSON Schemas of one event type); see :func:`breaking`."""
    name = event_type or str(new.get("$id") or old.get("$id") or new.get("title") or "<event>")
    return _Comparison(name, old, new).run()


def compare_all(old: Mapping[str, Schema], new: Mapping[str, Schema]) -> list[Change]:
    """Compare two sets of schemas keyed by event type: removed types are breaking, new types compatible."""
    changes: list[Change] = []
    for event_type in sorted(set(old) | set(new)):
        if event_type not in new:
            changes.append(Change(event_type, "", "event type removed (keep the model registered; it is history)"))
        elif event_type not in old:
            changes.append(Change(event_type, "", "new event type", breaking=False))
        else:
            changes.extend(compare(old[event_type], new[event_type], event_type))
    return changes


# --------------------------------------------------------------------------------------------- loading


def load_schemas(directory: Path) -> dict[str, Schema]:
    """The committed schemas in a directory, keyed by event type (the ``$id``, else the file name)."""
    schemas: dict[str, Schema] = {}
    for path in sorted(directory.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        schemas[str(schema.get("$id") or path.stem)] = schema
    return schemas


def load_schemas_at_ref(ref: str, root: Path) -> dict[str, Schema]:
    """The schemas committed in ``root/jsonschema/`` at git revision ``ref`` (e.g. the target branch in CI)."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    schemas: dict[str, Schema] = {}
    # --full-tree: from a subdirectory, ls-tree would otherwise filter the listing by that directory.
    listing = git("ls-tree", "--full-tree", "--name-only", f"{ref}:./{JSONSCHEMA_DIR}")
    for name in sorted(line for line in listing.splitlines() if line.endswith(".json")):
        schema = json.loads(git("show", f"{ref}:./{JSONSCHEMA_DIR}/{name}"))
        schemas[str(schema.get("$id") or name.removesuffix(".json"))] = schema
    return schemas


# --------------------------------------------------------------------------------------------- CLI


def report(changes: Sequence[Change], against: str) -> str:
    """A readable report: breaking changes first, then the compatible ones."""
    bad = breaking(changes)
    good = [c for c in changes if not c.breaking]
    lines = []
    if bad:
        lines.append(f"{len(bad)} breaking change(s) against {against}:")
        lines.extend(f"  BREAKING  {c}" for c in bad)
        lines.append("Within a version only optional fields may be added. For a breaking change add a new")
        lines.append("`.vN+1` type and an upcaster from the old one (see schemas/README.md).")
    else:
        lines.append(f"compatible with {against}")
    if good:
        lines.append(f"{len(good)} compatible change(s):")
        lines.extend(f"  ok        {c}" for c in good)
    return "\n".join(lines)


def check_releases(root: Path) -> int:
    """Backward transitive: the models against every released contract; 1 when any change breaks one of them."""
    from .releases import baselines  # local import: releases imports generate, as this module does

    found = baselines(root)
    if not found:
        print(f"no released contract under {root}/releases and no schemas-v* tag", file=sys.stderr)
        return 2
    current = event_schemas()
    failed = False
    for label, where in found.items():
        try:
            old = load_schemas(where) if isinstance(where, Path) else load_schemas_at_ref(where, root)
        except (OSError, RuntimeError, ValueError) as exc:
            print(f"cannot read {label}: {exc}", file=sys.stderr)
            return 2
        changes = compare_all(old, current)
        failed = failed or bool(breaking(changes))
        print(report(changes, label), file=sys.stderr if breaking(changes) else sys.stdout)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m leadstream_schemas.compat",
        description="Check the models in code against committed JSON Schemas; exit 1 on a breaking change.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--old", type=Path, help="directory of the old schemas (default: <root>/jsonschema)")
    source.add_argument("--ref", help="compare against the schemas committed at this git revision")
    source.add_argument(
        "--releases",
        action="store_true",
        help="compare against every released version: releases/<version>/ snapshots and schemas-v* tags",
    )
    parser.add_argument("--root", type=Path, help="the schemas/ folder (default: found from this file)")
    args = parser.parse_args(argv)
    if args.releases:
        return check_releases(args.root or default_root())

    try:
        if args.old is not None:
            against = str(args.old)
            old = load_schemas(args.old) if args.old.is_dir() else {}
        else:
            root = args.root or default_root()
            if args.ref:
                against = f"{args.ref}:{JSONSCHEMA_DIR}"
                old = load_schemas_at_ref(args.ref, root)
            else:
                against = str(root / JSONSCHEMA_DIR)
                old = load_schemas(root / JSONSCHEMA_DIR) if (root / JSONSCHEMA_DIR).is_dir() else {}
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"cannot read the old schemas: {exc}", file=sys.stderr)
        return 2
    if not old:
        print(f"no committed schemas found at {against}; run python -m leadstream_schemas.generate", file=sys.stderr)
        return 2

    changes = compare_all(old, event_schemas())
    text = report(changes, against)
    print(text, file=sys.stderr if breaking(changes) else sys.stdout)
    return 1 if breaking(changes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
