"""msgspec Structs mirroring the contract's lead events, for the projection's decoder.

The contract's pydantic models stay the wire's source of truth; a replay decodes nearly every record
as a lead event, and decoding JSON into a msgspec Struct costs about a third of pydantic's validation
and leaves a lighter object. Each mirror is derived from its model's fields when first needed (same
names, order, defaults and types: the contract's own enums and literals, UUIDs, dates, lists and maps,
nested models as mirrors), so a field added to the contract is in its mirror too; nothing is
written by hand or generated as source.

A mirror accepts a subset of what the model does (msgspec is strict where pydantic's JSON mode is lax:
``1.0`` for an int, a timestamp for a date), with the same values; the decoder hands every payload a
mirror refuses to the contract's ``decode()`` for the verdict. A model whose fields use a type not
listed here has no mirror (:func:`mirror_decoder` answers None) and is always validated by pydantic.
``tests/services/projection/test_mirrors.py`` checks that mirrors accept or refuse, with the same
values, what the models do on the golden records and on generated events and field values.
"""

from __future__ import annotations

import types
import typing
from datetime import date
from enum import Enum
from typing import Annotated, Any, Literal, Union
from uuid import UUID

import msgspec
from leadstream_schemas import Event, LeadEvent
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

CONTRACT: dict[type[msgspec.Struct], type[BaseModel]] = {}
"""The contract model each mirror was derived from."""

_MIRRORS: dict[type[BaseModel], type[msgspec.Struct] | None] = {}
_DECODERS: dict[type[Event], msgspec.json.Decoder[Any] | None] = {}
_PLAIN = (str, int, bool, UUID, date, type(None))
# Not datetime: msgspec rounds a fraction of a second finer than microseconds where pydantic truncates it
# ("...00.1234567Z"), so a model with a time field (a reply's, a pause's: rare) is validated by pydantic.


class Unmirrored(TypeError):
    """A field type the mirrors do not translate (the model is then validated by pydantic only)."""


def mirror(model: type[BaseModel]) -> type[msgspec.Struct] | None:
    """The Struct mirroring ``model`` (None when one of its field types has no mirror)."""
    if model not in _MIRRORS:
        try:
            _MIRRORS[model] = _derive(model)
        except Unmirrored:
            _MIRRORS[model] = None
    return _MIRRORS[model]


def mirror_decoder(cls: type[Event]) -> msgspec.json.Decoder[Any] | None:
    """A JSON decoder into the mirror of a lead event type; None for other events and unmirrored types."""
    if cls not in _DECODERS:
        struct = mirror(cls) if issubclass(cls, LeadEvent) else None
        _DECODERS[cls] = msgspec.json.Decoder(struct) if struct is not None else None
    return _DECODERS[cls]


def contract_of(data: Any) -> type[Any]:
    """The contract model of a payload: its own class for a model, the mirrored model for a mirror."""
    cls = type(data)
    return CONTRACT.get(cls, cls)


def _derive(model: type[BaseModel]) -> type[msgspec.Struct]:
    if model.model_config.get("extra", "ignore") != "ignore":
        raise Unmirrored(f"{model.__name__} does not ignore unknown fields")  # a Struct ignores them
    fields: list[tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        if info.alias not in (None, name) or info.validation_alias not in (None, name):
            raise Unmirrored(f"{model.__name__}.{name} has an alias")
        if info.metadata and not all(_is_bound(m) for m in info.metadata):
            raise Unmirrored(f"{model.__name__}.{name} has constraints: {info.metadata!r}")
        wire = _wire_type(info.annotation)
        if info.default_factory is not None:
            fields.append((name, wire, msgspec.field(default_factory=info.default_factory)))  # type: ignore[arg-type]
        elif info.default is not PydanticUndefined:
            fields.append((name, wire, info.default))
        else:
            fields.append((name, wire, msgspec.NODEFAULT))
    # kw_only: the contract's required fields may follow optional ones (a subclass adds them).
    struct = msgspec.defstruct(model.__name__, fields, kw_only=True, frozen=True, module=__name__)
    CONTRACT[struct] = model
    return struct


def _is_bound(metadata: Any) -> bool:
    """Writer bounds (``leadstream_schemas.bounds``): checked when an event is built, never when JSON is read."""
    return type(metadata).__name__ in ("Bound", "FreeJson") and type(metadata).__module__.endswith(".bounds")


def _wire_type(tp: Any) -> Any:
    """The type a mirror decodes for annotation ``tp`` (raises :class:`Unmirrored`)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner, *metadata = typing.get_args(tp)
        if not all(_is_bound(m) for m in metadata):
            raise Unmirrored(f"constraints {metadata!r}")
        return _wire_type(inner)
    if origin in (Union, types.UnionType):
        return Union[tuple(_wire_type(a) for a in typing.get_args(tp))]  # noqa: UP007 - built from a tuple
    if origin is list:
        (item,) = typing.get_args(tp)
        return list[_wire_type(item)]  # type: ignore[misc]
    if origin is dict:
        key, value = typing.get_args(tp)
        return dict[_wire_type(key), _wire_type(value)]  # type: ignore[misc]
    if origin is Literal:
        if all(isinstance(a, str) for a in typing.get_args(tp)):
            return tp
        raise Unmirrored(f"literal {tp!r}")
    if isinstance(tp, type):
        if tp in _PLAIN:
            return tp
        if issubclass(tp, Enum) and issubclass(tp, str):
            return tp
        if issubclass(tp, BaseModel):
            struct = mirror(tp)
            if struct is None:
                raise Unmirrored(tp.__name__)
            return struct
    raise Unmirrored(repr(tp))
