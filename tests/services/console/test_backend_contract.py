"""The console reads the other services through models of its own (services/console/models.py: only the fields it
shows, unknown fields ignored). Each call's model is checked here against the answer the service's OpenAPI document
declares for that route: every field the console reads is sent, one it requires is required there, and the JSON
types agree. A field renamed or dropped in a service fails here, not as a silent 0 or blank on a page.

The calls are found by running every public method of the console's backends against a recorder (so a new method
cannot skip the check), with stand-in arguments from their annotations. The check walks into every model the console
nests (a campaign's strategy, delivery and video, ...), and a map (``dict[str, X]``) is accepted only where the
service declares one (``additionalProperties``), with values of X's JSON type: an answer the service declares field by
field is read as a model, so a renamed field fails here rather than as a blank on a page.
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
import typing
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest
from pydantic import BaseModel, RootModel

from services.console import backends

CLASSES = {
    "projection": backends.ProjectionApi,
    "discovery": backends.DiscoveryApi,
    "messaging": backends.MessagingApi,
    "outreach": backends.OutreachApi,
}
ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


@dataclass(frozen=True)
class Call:
    service: str
    api_method: str
    method: str
    path: str
    model: type[BaseModel]
    listed: bool  # Backend.items: the answer is a JSON list, parsed as model(items=[...])


def _stand_in(annotation: Any) -> Any:
    """A value of the parameter's type (the recorder only looks at the path and the model)."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        return _stand_in(next(a for a in typing.get_args(annotation) if a is not type(None)))
    if annotation is uuid.UUID:
        return ID
    if annotation is int:
        return 1
    if annotation is bool:
        return False
    if annotation is bytes:
        return b""
    if origin is list or annotation is list:
        return []
    if origin is dict or annotation is dict:
        return {}
    return "x"


class _Recorder:
    """Stands in for a backend's ``call`` and ``items``: notes what would be asked, answers an empty model."""

    def __init__(self, service: str, found: list[Call]) -> None:
        self.service, self.found, self.method = service, found, ""

    async def call(self, token: str, method: str, path: str, model: type[Any], **_: Any) -> Any:
        self.found.append(Call(self.service, self.method, method, path, model, listed=False))
        return model.model_construct()

    async def items(self, token: str, method: str, path: str, model: type[Any], **_: Any) -> Any:
        self.found.append(Call(self.service, self.method, method, path, model, listed=True))
        return model.model_construct()


async def _calls() -> list[Call]:
    found: list[Call] = []
    for service, cls in CLASSES.items():
        api = cls(service, "http://recorder.invalid", 1.0)
        recorder = _Recorder(service, found)
        api.call = recorder.call  # type: ignore[method-assign]
        api.items = recorder.items  # type: ignore[method-assign]
        for name, fn in inspect.getmembers(cls, inspect.iscoroutinefunction):
            if name.startswith("_") or name in {"call", "items", "aclose"}:
                continue
            hints = typing.get_type_hints(fn, vars(backends))
            params = list(inspect.signature(fn).parameters.values())[1:]  # after self
            args = {p.name: _stand_in(hints.get(p.name, str)) for p in params if p.default is p.empty}
            recorder.method = name
            await getattr(api, name)(**args)
        await api.aclose()
    return found


def _documents() -> dict[str, dict[str, Any]]:
    return {name: importlib.import_module(f"services.{name}.app").build().app.openapi() for name in CLASSES}


def _operation(doc: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]]:
    concrete = path.split("?")[0]
    for template, ops in doc["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, concrete) and method.lower() in ops:
            return template, dict(ops[method.lower()])
    raise AssertionError(f"{method} {path}: no such route in the document")


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _json_types(doc: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    schema = _resolve(doc, schema)
    if "anyOf" in schema or "oneOf" in schema:
        return set().union(*(_json_types(doc, s) for s in schema.get("anyOf", schema.get("oneOf", []))))
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return set(kinds)
    values = schema.get("enum", [schema["const"]] if "const" in schema else [])
    if values and all(isinstance(v, str) for v in values):
        return {"string"}
    return set()  # anything


def _expected(annotation: Any) -> tuple[set[str], Any]:
    """(JSON types the console accepts, the inner model or list item annotation to look into)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        kinds: set[str] = set()
        inner = None
        for a in args:
            k, i = _expected(a)
            kinds |= k
            inner = inner or i
        return kinds, inner
    if annotation is type(None):
        return {"null"}, None
    if origin is typing.Literal:
        return {"string" if isinstance(args[0], str) else "integer"}, None
    if origin is list or origin is tuple:
        return {"array"}, args[0] if args else None
    if origin is dict:
        return {"object"}, None  # its values: _compare_map
    if inspect.isclass(annotation):
        if issubclass(annotation, BaseModel):
            return {"object"}, annotation
        if annotation is bool:
            return {"boolean"}, None
        if annotation is int:
            return {"integer"}, None
        if annotation is float:
            return {"number", "integer"}, None
        if annotation in (str, uuid.UUID, datetime, date):
            return {"string"}, None
    return set(), None  # Any: no check


@dataclass
class Walk:
    """What the comparison found: the problems, the spots the service declares only as "an object" (a
    ``dict[str, Any]`` answer), and each console model compared with a declared schema (and where)."""

    problems: list[str]
    untyped: set[str]
    compared: dict[type[BaseModel], set[str]]


def _map_value(annotation: Any) -> tuple[bool, Any]:
    """(whether ``annotation``, less None, is a ``dict``; the annotation of its values)."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        maps = [_map_value(a) for a in typing.get_args(annotation) if a is not type(None)]
        return maps[0] if len(maps) == 1 else (False, None)
    if typing.get_origin(annotation) is dict:
        args = typing.get_args(annotation)
        return True, args[1] if len(args) == 2 else Any
    return False, None


def _compare_map(doc: dict[str, Any], value: Any, schema: dict[str, Any], where: str, walk: Walk) -> None:
    """A ``dict[str, value]`` the console reads: the service must declare a map (``additionalProperties``) whose
    values, and any fields it names besides, are of ``value``'s JSON type."""
    schema = _resolve(doc, schema)
    if "anyOf" in schema:
        schema = next((_resolve(doc, s) for s in schema["anyOf"] if _resolve(doc, s).get("type") != "null"), {})
    extra = schema.get("additionalProperties")
    props = schema.get("properties", {})
    if props and not extra:
        walk.problems.append(
            f"{where}: the service declares its fields ({', '.join(sorted(props))}): read it as a model, not a dict"
        )
        return
    kinds, inner = _expected(value)
    for at, declared_schema in [(f"{where}.*", extra)] + [(f"{where}.{k}", v) for k, v in props.items()]:
        if not isinstance(declared_schema, dict):
            continue  # additionalProperties: true (any value)
        declared = _json_types(doc, declared_schema)
        if kinds and declared and not (declared - {"null"}) <= kinds and not ({"integer", "number"} & declared & kinds):
            walk.problems.append(f"{at}: the console takes {sorted(kinds)}, the service sends {sorted(declared)}")
        if inspect.isclass(inner) and issubclass(inner, BaseModel):
            _compare(doc, inner, declared_schema, at, walk)


def _compare(doc: dict[str, Any], model: type[BaseModel], schema: dict[str, Any], where: str, walk: Walk) -> None:
    """What of ``model`` the service's ``schema`` does not declare goes to ``walk.problems``; spots where the service
    declares only "an object" (a ``dict[str, Any]`` answer) go to ``walk.untyped`` instead."""
    schema = _resolve(doc, schema)
    if "anyOf" in schema:  # an optional object: the object's own schema
        schema = _resolve(doc, next(s for s in schema["anyOf"] if _resolve(doc, s).get("type") != "null"))
    if "properties" not in schema:
        walk.untyped.add(where)
        return
    walk.compared.setdefault(model, set()).add(where)
    problems = walk.problems
    props = schema["properties"]
    required = set(schema.get("required", []))
    for name, field in model.model_fields.items():
        key = field.alias or name
        at = f"{where}.{key}"
        if key not in props:
            problems.append(f"{at}: the console reads it, the service does not declare it")
            continue
        if field.is_required() and key not in required:
            problems.append(f"{at}: required by the console, optional in the service's answer")
        kinds, inner = _expected(field.annotation)
        declared = _json_types(doc, props[key])
        if kinds and declared and not (declared - {"null"}) <= kinds and not ({"integer", "number"} & declared & kinds):
            problems.append(f"{at}: the console takes {sorted(kinds)}, the service sends {sorted(declared)}")
        target = _resolve(doc, props[key])
        if "anyOf" in target:
            target = next((_resolve(doc, s) for s in target["anyOf"] if _resolve(doc, s).get("type") != "null"), {})
        is_map, value = _map_value(field.annotation)
        if is_map:
            _compare_map(doc, value, target, at, walk)
        elif inspect.isclass(inner) and issubclass(inner, BaseModel):
            if target.get("type") == "array":
                _compare(doc, inner, target.get("items", {}), f"{at}[]", walk)
            else:
                _compare(doc, inner, target, at, walk)


def _nested(model: type[BaseModel]) -> set[type[BaseModel]]:
    """``model`` and every model its fields hold (in unions, lists and map values), at any depth."""
    found: set[type[BaseModel]] = set()
    todo = [model]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        for field in current.model_fields.values():
            stack = [field.annotation]
            while stack:
                annotation = stack.pop()
                stack += typing.get_args(annotation)
                if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
                    todo.append(annotation)
    return found


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return _documents()


async def test_every_backend_method_was_recorded() -> None:
    calls = await _calls()
    recorded = {(c.service, c.api_method) for c in calls}
    for service, cls in CLASSES.items():
        public = {n for n, f in inspect.getmembers(cls, inspect.iscoroutinefunction) if not n.startswith("_")}
        missing = public - {"call", "items", "aclose"} - {m for s, m in recorded if s == service}
        assert not missing, f"{service}: methods that made no call: {missing}"


async def test_what_the_console_reads_is_what_each_service_declares(documents: dict[str, dict[str, Any]]) -> None:
    walk = Walk(problems=[], untyped=set(), compared={})
    reached: set[type[BaseModel]] = set()
    checked = 0
    for c in await _calls():
        doc = documents[c.service]
        template, op = _operation(doc, c.method, c.path)
        answers = op.get("responses", {})
        ok = next((answers[s] for s in ("200", "201", "202") if s in answers), None)
        if ok is None:
            assert "204" in answers, f"{c.service} {c.method} {template}: no success answer declared"
            continue
        schema = ok.get("content", {}).get("application/json", {}).get("schema")
        if schema is None or c.model is backends._Nothing or issubclass(c.model, RootModel):
            continue
        where = f"{c.service} {c.method} {template} {c.model.__name__}"
        if c.listed:  # model(items=[...]) from a JSON list
            item = typing.get_args(c.model.model_fields["items"].annotation)[0]
            _compare(doc, item, _resolve(doc, schema).get("items", {}), f"{where}[]", walk)
            reached |= _nested(item)
        else:
            _compare(doc, c.model, schema, where, walk)
            reached |= _nested(c.model)
        checked += 1
    assert checked >= 30, checked  # the walk reached the calls (not vacuous)
    assert not walk.problems, "\n".join(walk.problems)
    # Every model the console reads, however deep, was compared with a declared schema at least once.
    skipped = sorted(m.__name__ for m in reached - walk.compared.keys())
    assert not skipped, f"console models never compared with a service's schema: {skipped}"
    # The campaign's parts in particular (read field by field by the launch summary): not dicts to guess at.
    campaign = "outreach GET /v1/campaigns/{campaign_id} CampaignDetail"
    for part in (".strategy", ".delivery", ".delivery.email_fallback", ".video", ".video.segments[]"):
        assert any(campaign + part in spots for spots in walk.compared.values()), part
    # Every answer the console reads is declared field by field: one declared only as "an object" (a
    # dict[str, Any] answer) has nothing to compare with, so it fails here too.
    assert not walk.untyped, "answers the console reads that the service declares only as an object:\n" + "\n".join(
        sorted(walk.untyped)
    )
