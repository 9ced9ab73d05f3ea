"""Upcasting: an old event version in the log decodes as the current model.

The example is a real breaking change, made the documented way. ``deal_noted.v1`` carried a deal value
in whole euros; v2 stores cents plus a currency; v3 nests them in a ``Money`` object. Each step is a new
type string plus an upcaster, and a v1 record from offset 0 decodes as v3. The test types are registered
only for the duration of each test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

import pytest
from leadstream_schemas import EVENT_TYPES, DecodeError, Envelope, LeadEvent, decode, encode, register, upcast, upcaster
from leadstream_schemas.upcasting import UPCASTERS
from pydantic import BaseModel, ConfigDict

V1 = "test.lead.deal_noted.v1"
V2 = "test.lead.deal_noted.v2"
V3 = "test.lead.deal_noted.v3"
LEAD = UUID("bf794516-6c39-552c-8725-5161b3144ece")
EVENT_ID = UUID("0d9c5f0a-7d43-4e0b-9a43-2f3c8f1b6a11")
T0 = datetime(2024, 11, 5, 16, 30, tzinfo=UTC)


class DealNotedV1(LeadEvent):
    event_type: ClassVar[str] = V1

    deal_value: int  # whole euros
    note: str | None = None


class DealNotedV2(LeadEvent):
    event_type: ClassVar[str] = V2

    deal_value_cents: int
    currency: str
    note: str | None = None


class Money(BaseModel):
    model_config = ConfigDict(frozen=True)

    cents: int
    currency: str


class DealNotedV3(LeadEvent):
    event_type: ClassVar[str] = V3

    value: Money
    note: str | None = None


def v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    payload["deal_value_cents"] = payload.pop("deal_value") * 100
    payload["currency"] = "EUR"  # v1 was euro-only
    return payload


def v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    payload["value"] = {"cents": payload.pop("deal_value_cents"), "currency": payload.pop("currency")}
    return payload


@pytest.fixture
def registries() -> Iterator[None]:
    """Snapshot the global registries and restore them, so test types never leak into other tests."""
    types, upcasters = dict(EVENT_TYPES), dict(UPCASTERS)
    try:
        yield
    finally:
        EVENT_TYPES.clear()
        EVENT_TYPES.update(types)
        UPCASTERS.clear()
        UPCASTERS.update(upcasters)


def v1_record() -> tuple[bytes, list[tuple[str, bytes]]]:
    """A v1 record as it sits in the log, written by the producer of that time."""
    env = Envelope.new(
        DealNotedV1(lead_id=LEAD, deal_value=1250, note="signed pilot"),
        workspace_id="ws-1",
        source="/leadstream/outreach",
        time=T0,
        id=EVENT_ID,
    )
    _, value, headers = encode(env)
    return value, headers


def test_v1_record_decodes_as_the_v2_model(registries: None) -> None:
    register(DealNotedV1)
    register(DealNotedV2)
    upcaster(V1, V2)(v1_to_v2)
    value, headers = v1_record()
    assert json.loads(value) == {"lead_id": str(LEAD), "campaign_id": None, "deal_value": 1250, "note": "signed pilot"}

    env = decode(value, headers)

    assert env.data == DealNotedV2(lead_id=LEAD, deal_value_cents=125_000, currency="EUR", note="signed pilot")
    assert env.type == V2
    # The envelope is the original record's: same id (consumers deduplicate on it), time and workspace.
    assert (env.id, env.time, env.workspace_id) == (EVENT_ID, T0, "ws-1")


def test_chain_v1_to_v2_to_v3(registries: None) -> None:
    for cls in (DealNotedV1, DealNotedV2, DealNotedV3):
        register(cls)
    upcaster(V1, V2)(v1_to_v2)
    upcaster(V2, V3)(v2_to_v3)
    value, headers = v1_record()

    env = decode(value, headers)

    assert env.data == DealNotedV3(lead_id=LEAD, value=Money(cents=125_000, currency="EUR"), note="signed pilot")
    assert upcast(V2, {"lead_id": str(LEAD), "deal_value_cents": 5, "currency": "GBP"}) == (
        V3,
        {"lead_id": str(LEAD), "value": {"cents": 5, "currency": "GBP"}},
    )


def test_current_version_is_not_upcast(registries: None) -> None:
    register(DealNotedV2)
    upcaster(V1, V2)(v1_to_v2)
    env = Envelope.new(
        DealNotedV2(lead_id=LEAD, deal_value_cents=99, currency="USD"), workspace_id="ws-1", source="/o", time=T0
    )
    _, value, headers = encode(env)
    assert decode(value, headers).data == env.data
    assert upcast(V2, {"a": 1}) == (V2, {"a": 1})


def test_upcast_does_not_mutate_the_callers_payload(registries: None) -> None:
    upcaster(V1, V2)(v1_to_v2)
    payload = {"lead_id": str(LEAD), "deal_value": 3}
    upcast(V1, payload)
    assert payload == {"lead_id": str(LEAD), "deal_value": 3}


def test_an_upcaster_is_registered_once(registries: None) -> None:
    upcaster(V1, V2)(v1_to_v2)
    with pytest.raises(ValueError, match="already exists"):
        upcaster(V1, V3)(v1_to_v2)


def test_an_upcaster_cycle_is_reported(registries: None) -> None:
    upcaster(V1, V2)(lambda p: p)
    upcaster(V2, V1)(lambda p: p)
    with pytest.raises(ValueError, match="cycle"):
        upcast(V1, {})


def test_a_failing_upcaster_is_a_decode_error_not_a_crash(registries: None) -> None:
    register(DealNotedV2)
    upcaster(V1, V2)(v1_to_v2)
    value, headers = v1_record()
    broken = json.dumps({"lead_id": str(LEAD)}).encode()  # no deal_value: the upcaster raises KeyError
    with pytest.raises(DecodeError) as info:
        decode(broken, headers)
    assert info.value.code == "upcast_failed"
    assert V1 in str(info.value)
    assert decode(value, headers).type == V2


def test_registries_are_restored_after_each_test() -> None:
    assert not {V1, V2, V3} & set(EVENT_TYPES)
    assert not {V1, V2, V3} & set(UPCASTERS)
