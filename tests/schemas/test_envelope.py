"""The CloudEvents envelope: headers, deterministic ids, no personal data on the wire, decode errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from leadstream_schemas import (
    AccountConnected,
    DecodeError,
    Envelope,
    FitSignal,
    LeadDiscovered,
    LeadEnrolled,
    LeadProfileEnriched,
    LeadSource,
    decode,
    derive_id,
    encode,
    event_campaign,
    headers_dict,
)

WORKSPACE = "5f0c2a8e-3b1d-4e6f-9a7c-1d2e3f4a5b6c"
LEAD = UUID("bf794516-6c39-552c-8725-5161b3144ece")
CAMPAIGN = UUID("a58984f7-8416-5ba6-9e41-0bc12aa90625")
ACCOUNT = UUID("3b4b6df9-da8f-5a61-8060-6cb51e6f0fcc")
ROOT_ID = UUID("0d9c5f0a-7d43-4e0b-9a43-2f3c8f1b6a11")
T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def discovered(**overrides: object) -> LeadDiscovered:
    fields: dict[str, object] = {
        "lead_id": LEAD,
        "source": LeadSource.signals,
        "linkedin_url": "https://www.linkedin.com/in/dana-whitfield-4b21a7",
        "email": "dana.whitfield@northwind-analytics.com",
        "full_name": "Dana Whitfield",
        "first_name": "Dana",
        "last_name": "Whitfield",
        "title": "VP Sales",
        "company": "Northwind Analytics",
        "location": "Manchester, United Kingdom",
        "fit_signals": [FitSignal(kind="hiring", detail="Hiring 3 SDRs")],
    }
    fields.update(overrides)
    return LeadDiscovered.model_validate(fields)


def root(**overrides: object) -> Envelope[LeadDiscovered]:
    return Envelope.new(
        discovered(**overrides), workspace_id=WORKSPACE, source="/leadstream/discovery", time=T0, id=ROOT_ID
    )


def as_record(env: Envelope[Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    _, value, headers = encode(env)
    return value, headers


# --------------------------------------------------------------------------------------------- headers


def test_encode_writes_every_cloudevents_header() -> None:
    env = Envelope.new(
        discovered(campaign_id=CAMPAIGN),
        workspace_id=WORKSPACE,
        source="/leadstream/discovery",
        time=T0,
        id=ROOT_ID,
        traceparent=TRACE,
    )
    child = env.caused(LeadProfileEnriched(lead_id=LEAD, full_name="Dana Whitfield"), source="/leadstream/enrichment")
    key, value, headers = encode(child.with_time(T0 + timedelta(minutes=1)))

    assert headers_dict(headers) == {
        "ce_specversion": "1.0",
        "ce_id": str(derive_id(ROOT_ID, "leadstream.lead.profile_enriched.v1")),
        "ce_type": "leadstream.lead.profile_enriched.v1",
        "ce_source": "/leadstream/enrichment",
        "ce_time": "2025-03-03T08:01:00+00:00",
        "ce_subject": str(LEAD),
        "content-type": "application/json",
        "workspaceid": WORKSPACE,
        "campaignid": str(CAMPAIGN),
        "correlationid": str(ROOT_ID),
        "causationid": str(ROOT_ID),
        "traceparent": TRACE,
        "correlation_id": str(ROOT_ID),  # FastStream's header, the same correlation
    }
    assert all(isinstance(raw, bytes) for _, raw in headers)
    assert key == str(LEAD).encode()
    assert json.loads(value)["full_name"] == "Dana Whitfield"


def test_optional_headers_are_omitted_when_unset() -> None:
    _, _, headers = encode(root())
    names = [name for name, _ in headers]
    assert names == [
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "ce_subject",
        "content-type",
        "workspaceid",
        "correlationid",  # a root event starts its own correlation
        "correlation_id",  # FastStream's header: the same value
    ]
    assert headers_dict(headers)["correlation_id"] == headers_dict(headers)["ce_id"]


def test_ce_time_is_written_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    env = root().with_time(datetime(2025, 3, 3, 9, 0, tzinfo=paris))
    assert headers_dict(encode(env)[2])["ce_time"] == "2025-03-03T08:00:00+00:00"


def test_decode_restores_every_envelope_attribute() -> None:
    env = Envelope.new(
        discovered(campaign_id=CAMPAIGN),
        workspace_id=WORKSPACE,
        source="/leadstream/discovery",
        time=T0,
        id=ROOT_ID,
        traceparent=TRACE,
    )
    child = env.caused(LeadEnrolled(lead_id=LEAD, account_id=ACCOUNT), source="/leadstream/outreach", time=T0)
    decoded = decode(*as_record(child))
    assert decoded == child


# --------------------------------------------------------------------------------------------- ids


def test_root_event_starts_a_correlation() -> None:
    env = root()
    assert env.correlation_id == env.id == ROOT_ID
    assert env.causation_id is None


def test_caused_ids_are_deterministic_so_a_retried_handler_emits_the_same_id() -> None:
    parent = root()
    answer = LeadProfileEnriched(lead_id=LEAD, full_name="Dana Whitfield")
    first = parent.caused(answer, source="/leadstream/enrichment")
    retry = parent.caused(answer, source="/leadstream/enrichment")

    assert first.id == retry.id == derive_id(ROOT_ID, "leadstream.lead.profile_enriched.v1")
    assert first.id.version == 5
    assert first.causation_id == parent.id
    assert first.correlation_id == parent.correlation_id == ROOT_ID


def test_derived_ids_differ_by_type_and_discriminator() -> None:
    parent = root()
    enriched = parent.caused(LeadProfileEnriched(lead_id=LEAD, full_name="Dana"), source="/leadstream/enrichment")
    enrolled = parent.caused(LeadEnrolled(lead_id=LEAD, account_id=ACCOUNT), source="/leadstream/outreach")
    lead_a = parent.caused(LeadEnrolled(lead_id=LEAD, account_id=ACCOUNT), source="/o", discriminator="lead-a")
    lead_b = parent.caused(LeadEnrolled(lead_id=LEAD, account_id=ACCOUNT), source="/o", discriminator="lead-b")

    assert len({enriched.id, enrolled.id, lead_a.id, lead_b.id}) == 4
    assert lead_a.id == derive_id(ROOT_ID, "leadstream.lead.enrolled.v1", "lead-a")
    assert derive_id(ROOT_ID, "x") != derive_id(UUID(int=1), "x")


def test_correlation_and_campaign_follow_the_chain() -> None:
    parent = root(campaign_id=CAMPAIGN)
    child = parent.caused(LeadProfileEnriched(lead_id=LEAD, full_name="Dana"), source="/leadstream/enrichment")
    grandchild = child.caused(LeadEnrolled(lead_id=LEAD, account_id=ACCOUNT), source="/leadstream/outreach")

    assert grandchild.correlation_id == ROOT_ID
    assert grandchild.causation_id == child.id
    assert child.campaign_id == grandchild.campaign_id == str(CAMPAIGN)  # inherited when the payload has none
    other = UUID(int=7)
    own_campaign = child.caused(LeadEnrolled(lead_id=LEAD, campaign_id=other, account_id=ACCOUNT), source="/o")
    assert own_campaign.campaign_id == str(other)  # the payload's campaign wins


def test_the_campaign_of_an_event_is_its_payloads_else_its_headers() -> None:
    """event_campaign: the payload's campaign_id (its UUID, as it is) when set, else the header as read, else None."""
    header = "0f5b1c3e-5a8d-4f7e-9c2a-6b1d3e4f5a6b"
    with_campaign, without = discovered(campaign_id=CAMPAIGN), discovered()
    account = AccountConnected(account_id=ACCOUNT)  # a type without the field
    # The payload's campaign: no header, or a header that agrees.
    assert event_campaign(with_campaign) is CAMPAIGN
    assert event_campaign(with_campaign, str(CAMPAIGN)) is CAMPAIGN
    # Only the header: a payload whose campaign_id is unset, or whose type has none.
    assert event_campaign(without, header) == header
    assert event_campaign(account, header) == header
    # Neither.
    assert event_campaign(without) is None and event_campaign(account, None) is None
    # Both, disagreeing (no leadstream producer writes that; another could): the payload wins.
    assert event_campaign(with_campaign, header) is CAMPAIGN
    # The header is not checked: an empty or malformed one comes back as it was read.
    assert event_campaign(without, "") == "" and event_campaign(without, "not-a-uuid") == "not-a-uuid"


def test_a_decoded_records_campaign_is_the_one_its_envelope_was_built_with() -> None:
    """Over the wire: a root event's campaign is its payload's, an answer without one inherits its cause's."""
    parent = root(campaign_id=CAMPAIGN)
    child = parent.caused(LeadProfileEnriched(lead_id=LEAD, full_name="Dana"), source="/leadstream/enrichment")
    for env in (parent, child):
        decoded = decode(*as_record(env))
        assert decoded.campaign_id == str(CAMPAIGN)
        assert str(event_campaign(decoded.data, decoded.campaign_id)) == str(CAMPAIGN)
    orphan = decode(*as_record(root()))
    assert orphan.campaign_id is None and event_campaign(orphan.data, orphan.campaign_id) is None


# --------------------------------------------------------------------------------------------- personal data


def test_no_personal_data_in_key_or_headers() -> None:
    data = discovered(campaign_id=CAMPAIGN)
    env = Envelope.new(data, workspace_id=WORKSPACE, source="/leadstream/discovery", time=T0, traceparent=TRACE)
    key, value, headers = encode(env)

    assert key == str(LEAD).encode()  # the key is the lead id, never an email or a profile URL
    personal = [data.email, data.full_name, data.first_name, data.last_name, data.linkedin_url, data.location]
    wire = [key.decode(), *(raw.decode() for _, raw in headers)]
    assert [p for p in personal if p and any(p.lower() in w.lower() for w in wire)] == []
    assert data.email is not None and data.email.encode() in value  # personal data lives in the payload only


# --------------------------------------------------------------------------------------------- decode errors


def decode_error(value: bytes | None, headers: list[tuple[str, bytes]]) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(value, headers)
    return info.value


def without(headers: list[tuple[str, bytes]], *names: str) -> list[tuple[str, bytes]]:
    return [(n, v) for n, v in headers if n not in names]


def replaced(headers: list[tuple[str, bytes]], name: str, value: str) -> list[tuple[str, bytes]]:
    return [(n, value.encode() if n == name else v) for n, v in headers]


def test_missing_header_is_named() -> None:
    value, headers = as_record(root())
    err = decode_error(value, without(headers, "ce_type"))
    assert err.code == "missing_header"
    assert "ce_type" in str(err)

    err = decode_error(value, without(headers, "ce_id", "workspaceid"))
    assert "ce_id" in str(err) and "workspaceid" in str(err)
    assert isinstance(err, ValueError)


def test_unknown_type_is_named() -> None:
    value, headers = as_record(root())
    err = decode_error(value, replaced(headers, "ce_type", "leadstream.lead.teleported.v1"))
    assert err.code == "unknown_type"
    assert "leadstream.lead.teleported.v1" in str(err)


def test_value_that_is_not_json() -> None:
    _, headers = as_record(root())
    err = decode_error(b'{"lead_id": ', headers)
    assert err.code == "invalid_json"
    assert "not valid JSON" in str(err)
    assert decode_error(b"\xff\xfe", headers).code == "invalid_json"


def test_value_that_is_json_but_not_an_object() -> None:
    _, headers = as_record(root())
    err = decode_error(b"[1, 2]", headers)
    assert err.code == "invalid_json"
    assert "JSON object" in str(err) and "list" in str(err)


def test_tombstone_is_a_decode_error() -> None:
    _, headers = as_record(root())
    assert decode_error(None, headers).code == "invalid_json"


def test_invalid_field_is_named_by_its_path() -> None:
    value, headers = as_record(root())
    payload = json.loads(value)
    payload["fit_signals"] = [{"detail": "Hiring 3 SDRs"}]
    err = decode_error(json.dumps(payload).encode(), headers)
    assert err.code == "invalid_field"
    assert "fit_signals.0.kind" in str(err)
    assert "leadstream.lead.discovered.v1" in str(err)


def test_invalid_enum_value_is_named() -> None:
    value, headers = as_record(root())
    payload = dict(json.loads(value), source="carrier_pigeon")
    err = decode_error(json.dumps(payload).encode(), headers)
    assert err.code == "invalid_field"
    assert "source:" in str(err)


@pytest.mark.parametrize(
    ("header", "bad", "code"),
    [
        ("ce_specversion", "0.3", "unsupported_specversion"),
        ("ce_id", "evt-42", "invalid_header"),
        ("ce_time", "yesterday", "invalid_header"),
        ("causationid", "not-a-uuid", "invalid_header"),
    ],
)
def test_invalid_header_values(header: str, bad: str, code: str) -> None:
    env = root().caused(LeadEnrolled(lead_id=LEAD, account_id=ACCOUNT), source="/o")
    value, headers = as_record(env)
    err = decode_error(value, replaced(headers, header, bad))
    assert err.code == code
    assert header in str(err)


def test_unknown_payload_fields_are_ignored_for_additive_evolution() -> None:
    value, headers = as_record(root())
    payload = dict(json.loads(value), seniority="vp", added_in_a_later_minor_revision=True)
    assert decode(json.dumps(payload).encode(), headers).data == root().data


def test_headers_may_be_a_mapping_and_time_without_offset_is_utc() -> None:
    value, headers = as_record(root())
    mapping = {name: raw.decode() for name, raw in headers}
    mapping["ce_time"] = "2025-03-03T08:00:00"
    env = decode(value, mapping)
    assert env.time == T0
    assert env.time.tzinfo is not None


def test_deeply_nested_json_is_a_decode_error_not_a_crash() -> None:
    from leadstream_schemas import DecodeError, Envelope, LeadDiscovered, LeadSource, decode, encode

    env = Envelope.new(LeadDiscovered(lead_id=UUID(int=7), source=LeadSource.manual), workspace_id="w", source="t")
    _, _, headers = encode(env)
    with pytest.raises(DecodeError) as info:
        decode(b"[" * 100_000 + b"]" * 100_000, headers)
    assert info.value.code == "invalid_json"
