"""The projection's msgspec mirrors accept what the contract's models accept, with the same values, and no more.

A mirror may refuse what a model accepts (pydantic's JSON mode is lax: ``1.0`` for an int, a timestamp for a
date): the decoder then asks the contract's ``decode()``. It must never accept what the model refuses, nor
read a value differently. Checked on the golden records, on the benchmark's workload, and on generated
payloads: every field of every lead event type given valid values, other spellings of them (UUIDs, times,
dates, numbers) and arbitrary JSON; then, at the decoder's level, the verdict on each such record is the
contract's ``decode()``'s.
"""

from __future__ import annotations

import json
import typing
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leadstream_schemas import EVENT_TYPES, DecodeError, Event, LeadEvent, LeadPaused, Replied, decode, encode
from leadstream_schemas.bounds import may_hold_unstorable
from pydantic import BaseModel, ValidationError

from services.projection import domain, mirrors
from services.projection.decoding import decode_record
from services.projection.workload import generate

from .helpers import payload_values

GOLDEN = Path(__file__).resolve().parents[3] / "schemas" / "examples"
LEAD_TYPES = sorted(t for t, cls in EVENT_TYPES.items() if issubclass(cls, LeadEvent))


def golden(event_type: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    g = json.loads((GOLDEN / f"{event_type}.json").read_text(encoding="utf-8"))
    return json.dumps(g["payload"]).encode(), [(name, value.encode()) for name, value in g["headers"].items()]


def model_verdict(cls: type[BaseModel], value: bytes) -> Any:
    try:
        return payload_values(cls.__pydantic_validator__.validate_json(value))
    except ValidationError:
        return None


def mirror_verdict(cls: type[Event], value: bytes) -> Any:
    decoder = mirrors.mirror_decoder(cls)
    assert decoder is not None
    try:
        return payload_values(decoder.decode(value))
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def record_verdict(fn: Any, value: bytes, headers: list[tuple[str, bytes]]) -> tuple[Any, ...]:
    try:
        env = fn(value, headers)
    except DecodeError as exc:
        return ("error", exc.code, exc.message)
    return ("ok", str(env.id), env.type, env.time, env.workspace_id, env.campaign_id, payload_values(env.data))


# Lead events with a time field: msgspec would round a fraction finer than microseconds, pydantic truncates it.
UNMIRRORED = {Replied.event_type, LeadPaused.event_type}
MIRRORED = [t for t in LEAD_TYPES if t not in UNMIRRORED]


def test_every_lead_event_type_but_those_with_a_time_has_a_mirror_and_no_other_event_has_one() -> None:
    for event_type, cls in EVENT_TYPES.items():
        decoder = mirrors.mirror_decoder(cls)
        assert (decoder is not None) == (issubclass(cls, LeadEvent) and event_type not in UNMIRRORED), event_type
        if decoder is not None:
            struct = mirrors.mirror(cls)
            assert struct is not None and mirrors.CONTRACT[struct] is cls
            assert struct.__struct_fields__ == tuple(cls.model_fields), "the model's fields, in its order"


def test_a_model_with_a_constraint_the_mirrors_do_not_know_has_no_mirror() -> None:
    from pydantic import Field

    class Constrained(LeadEvent):
        event_type: typing.ClassVar[str] = "leadstream.lead.test_constrained.v1"
        steps: int = Field(0, ge=0)

    class Floating(LeadEvent):
        event_type: typing.ClassVar[str] = "leadstream.lead.test_floating.v1"
        score: float = 0.0

    assert mirrors.mirror_decoder(Constrained) is None
    assert mirrors.mirror_decoder(Floating) is None


@pytest.mark.parametrize("event_type", MIRRORED)
def test_the_mirror_reads_the_golden_record_as_the_model_does(event_type: str) -> None:
    cls = EVENT_TYPES[event_type]
    value, headers = golden(event_type)
    expected = model_verdict(cls, value)
    assert expected is not None
    assert mirror_verdict(cls, value) == expected  # accepted, the same values
    decoded = decode_record(value, headers)
    assert type(decoded.data) is mirrors.mirror(cls)  # the fast path took it
    assert record_verdict(decode_record, value, headers) == record_verdict(decode, value, headers)


@pytest.mark.parametrize("event_type", [t for t in LEAD_TYPES if domain.REGISTRY[EVENT_TYPES[t]].detail])
def test_a_detail_is_the_models_json_whether_read_from_the_model_or_its_mirror(event_type: str) -> None:
    cls = EVENT_TYPES[event_type]
    value, headers = golden(event_type)
    model = cls.model_validate_json(value)
    detail = domain.REGISTRY[cls].detail
    assert detail is not None
    names = set(json.loads(detail(model)))
    assert detail(model) == model.model_dump_json(include=names)  # what the views stored before the mirrors
    assert detail(decode_record(value, headers).data) == detail(model)


def test_the_workload_decodes_through_the_mirrors_with_the_contracts_verdicts() -> None:
    for env in generate(leads=20, campaigns=2, seed=5).envelopes:
        _, value, headers = encode(env)
        mine = record_verdict(decode_record, value, headers)
        assert mine == record_verdict(decode, value, headers)
        if isinstance(env.data, LeadEvent) and env.type not in UNMIRRORED:
            assert type(decode_record(value, headers).data) in mirrors.CONTRACT


def test_a_repeated_key_is_read_as_the_model_reads_it() -> None:
    cls = EVENT_TYPES["leadstream.lead.completed.v1"]
    lead = uuid.uuid4()
    for value in (
        f'{{"lead_id":"{lead}","steps_done":1,"steps_done":2}}'.encode(),
        f'{{"lead_id":"{lead}","steps_done":"x","steps_done":2}}'.encode(),
        f'{{"lead_id":"{lead}","steps_done":2,"steps_done":"x"}}'.encode(),
        f'{{"lead_id":"nope","lead_id":"{lead}"}}'.encode(),
    ):
        mine = mirror_verdict(cls, value)
        assert mine is None or mine == model_verdict(cls, value), value


# -- generated payloads ---------------------------------------------------------------------------------------


def _uuid_spellings() -> st.SearchStrategy[Any]:
    return st.uuids().flatmap(
        lambda u: st.sampled_from(
            [str(u), str(u).upper(), u.hex, u.hex.upper(), f"{{{u}}}", f"urn:uuid:{u}", f" {u}", str(u)[:-1], u.int]
        )
    )


_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)), None])


def _datetime_spellings() -> st.SearchStrategy[Any]:
    def spellings(t: datetime) -> st.SearchStrategy[Any]:
        iso = t.isoformat()
        return st.sampled_from(
            [
                iso,
                iso.replace("+00:00", "Z"),
                iso.replace("T", " "),
                iso.replace("T", "t").replace("+00:00", "z"),
                iso[:16],
                iso[:19] + ".1234567" + iso[26:] if t.microsecond else iso[:19] + ".123456789Z",
                iso[:10],
                iso.replace("+", "+0").replace(":00", "00", 1) if "+" in iso else iso,
                int(t.timestamp()) if t.tzinfo else iso,
                iso[:19] + "+24:00",
                iso[:11] + "24:00:00Z",
                iso[:17] + "60Z",
            ]
        )

    return st.builds(lambda t, z: t.replace(tzinfo=z), st.datetimes(), _ZONES).flatmap(spellings)


def _date_spellings() -> st.SearchStrategy[Any]:
    return st.dates().flatmap(
        lambda d: st.sampled_from(
            [d.isoformat(), d.strftime("%Y%m%d"), f"{d.isoformat()}T00:00:00Z", f"{d.isoformat()}T10:00:00", 0, 1e9]
        )
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _valid(tp: Any) -> st.SearchStrategy[Any]:
    """JSON values a field of type ``tp`` is meant to hold (well-formed, in a few spellings)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _valid(args[0])
    if origin in (Union, type(int | None)):
        return st.one_of([_valid(a) for a in args])
    if origin is list:
        return st.lists(_valid(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=10), _valid(args[1]), max_size=3)
    if origin is Literal:
        return st.sampled_from(args)
    if tp is type(None):
        return st.none()
    if tp is str:
        return st.text(max_size=30)
    if tp is bool:
        return st.booleans() | st.sampled_from([0, 1, "true", "false", "yes"])
    if tp is int:
        return st.integers() | st.sampled_from([2**64, -(2**63) - 1, 1.0, 2.5, "7", True])
    if tp is uuid.UUID:
        return _uuid_spellings()
    if tp is datetime:
        return _datetime_spellings()
    if tp is date:
        return _date_spellings()
    if isinstance(tp, type) and issubclass(tp, Enum):
        return st.sampled_from([m.value for m in tp] + [m.name.upper() for m in tp])
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _objects(tp)
    raise AssertionError(f"no strategy for {tp!r}")


def _objects(cls: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects for ``cls``: each field valid, arbitrary JSON, or missing; sometimes an unknown field."""
    fields = {
        name: st.one_of(_valid(info.annotation), _valid(info.annotation), _JSON, st.just(msgspec.UNSET))
        for name, info in cls.model_fields.items()
    }
    extra = st.dictionaries(st.sampled_from(["unknown", "note", "event_type"]), _JSON, max_size=1)
    return st.builds(
        lambda values, more: {**{k: v for k, v in values.items() if v is not msgspec.UNSET}, **more},
        st.fixed_dictionaries(fields),
        extra,
    )


@st.composite
def payloads(draw: st.DrawFn, types: list[str]) -> tuple[type[Event], bytes]:
    """One of the lead event ``types`` and a payload for it: its golden payload with a few fields given other
    values (mostly), or every field drawn."""
    event_type = draw(st.sampled_from(types))
    cls = EVENT_TYPES[event_type]
    if draw(st.integers(0, 3)):
        payload = json.loads(golden(event_type)[0])
        for name in draw(st.lists(st.sampled_from(list(cls.model_fields)), min_size=1, max_size=3)):
            value = draw(st.one_of(_valid(cls.model_fields[name].annotation), _JSON, st.just(msgspec.UNSET)))
            payload.pop(name, None)
            if value is not msgspec.UNSET:
                payload[name] = value
    else:
        payload = draw(_objects(cls))
    return cls, json.dumps(payload, ensure_ascii=draw(st.booleans())).encode()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(MIRRORED))
def test_a_mirror_accepts_only_what_its_model_accepts_with_the_same_values(case: tuple[type[Event], bytes]) -> None:
    cls, value = case
    mine = mirror_verdict(cls, value)
    if may_hold_unstorable(value):
        return  # the decoder never gives these to a mirror (the next test covers them)
    if mine is not None:
        assert mine == model_verdict(cls, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(LEAD_TYPES))
def test_the_decoder_gives_the_contracts_verdict_on_generated_payloads(case: tuple[type[Event], bytes]) -> None:
    cls, value = case
    _, headers = golden(cls.event_type)
    assert record_verdict(decode_record, value, headers) == record_verdict(decode, value, headers)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MIRRORED), st.data())
def test_valid_events_are_read_by_their_mirror(event_type: str, data: st.DataObject) -> None:
    # The fast path is the common path: a well-formed event of each type, as a service writes it, takes it.
    cls = EVENT_TYPES[event_type]
    value, _ = golden(event_type)
    payload = json.loads(value)
    for name, info in cls.model_fields.items():
        if info.annotation is uuid.UUID:
            payload[name] = str(data.draw(st.uuids()))
    model = cls.model_validate(payload)
    _, encoded, _ = encode(_envelope(model))
    assert mirror_verdict(cls, encoded) == model_verdict(cls, encoded) is not None


def _envelope(model: Any) -> Any:
    from leadstream_schemas import Envelope

    return Envelope.new(model, workspace_id="ws-1", source="leadstream/test")
