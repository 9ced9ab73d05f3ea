"""A consumer's interest (``Service.consume(..., interest=)``) on the real broker: what it does not want is skipped
from the headers, without a transaction; what it wants, or cannot judge, is handled as before."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadstream_schemas import Envelope, LeadDiscovered, LeadErased, LeadSource
from leadstream_schemas.upcasting import UPCASTERS
from prometheus_client import REGISTRY

from services.runtime.consumer import RecordMeta, record_meta
from tests.services.runtime.conftest import Probe
from tests.support.kafka import read_until, wait_for
from tests.support.probe.app import WORKSPACE
from tests.support.probe.helpers import (
    caused_by,
    dead_letters_of,
    effect_origins,
    headers_of,
    processed_count,
    raw,
    send,
)


def _lead(lead_id: uuid.UUID, at: datetime) -> Envelope[LeadDiscovered]:
    """A probe event (the probe acts on its own workspace only) at its own time: the interest tells them apart."""
    return Envelope.new(
        LeadDiscovered(lead_id=lead_id, source=LeadSource.manual), workspace_id=WORKSPACE, source="test", time=at
    )


def _unwanted(event_type: str) -> float:
    value = REGISTRY.get_sample_value(
        "leadstream_events_unwanted_total", {"service": "probe", "event_type": event_type}
    )
    return value or 0.0


async def test_what_the_interest_does_not_want_is_skipped_and_what_it_cannot_judge_is_handled(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On one partition, in order: an event of a workspace the interest refuses (skipped: no processed id, no
    effect), one of a workspace whose check keeps failing (handled anyway: a broken interest must not lose it),
    one with no workspace header (never asked: decoded and dead-lettered), and one it wants (handled)."""
    base = datetime.now(UTC).replace(microsecond=0)
    unwanted_at, broken_at, wanted_at = (base + timedelta(microseconds=n) for n in (1, 2, 3))
    asked: list[RecordMeta] = []

    async def interest(meta: RecordMeta) -> bool:
        asked.append(meta)
        if meta.time == broken_at:
            raise ValueError("the interest's own bug")
        return meta.time != unwanted_at

    monkeypatch.setattr(probe.service.consumers[0], "interest", interest)
    lead = uuid.uuid4()  # one key for all four: one partition, in this order
    unwanted, broken, wanted = (_lead(lead, at) for at in (unwanted_at, broken_at, wanted_at))
    key, value, headers = raw(_lead(lead, base))
    no_workspace = [(k, v) for k, v in headers if k != "workspaceid"]
    before = _unwanted(LeadDiscovered.event_type)

    sent = await send(
        probe.bootstrap, probe.lead_topic, [raw(unwanted), raw(broken), (key, value, no_workspace), raw(wanted)]
    )
    assert len({md.partition for md in sent}) == 1

    await wait_for(lambda: effect_origins(probe.service.engine, wanted.id), timeout_s=60, what="the wanted event")
    assert await effect_origins(probe.service.engine, broken.id), "a failing interest counts as wanting the event"
    assert await processed_count(probe.service.engine, unwanted.id) == 0  # skipped before any transaction
    assert await effect_origins(probe.service.engine, unwanted.id) == []
    assert _unwanted(LeadDiscovered.event_type) - before == 1

    dlq = await read_until(
        probe.bootstrap, [probe.dlq_topic], lambda rs: bool(dead_letters_of(rs, sent[2], probe.settings.group_id))
    )
    letter = headers_of(dead_letters_of(dlq, sent[2], probe.settings.group_id)[0])
    assert letter["dlq_error_code"] == "missing_header"
    ours = [m.time for m in asked if m.time in (unwanted_at, broken_at, wanted_at)]
    # The broken check was tried consumer_max_attempts times; the record without a workspace was never asked.
    assert ours == [unwanted_at, *[broken_at] * probe.settings.consumer_max_attempts, wanted_at]
    # The first of this test's records, not asked[0]: the session's probe reads the runtime tests' shared topics,
    # and a record another test left behind (a retry, a slow partition) may be asked about before ours.
    first = next(m for m in asked if m.time == unwanted_at)
    assert first == RecordMeta(LeadDiscovered.event_type, WORKSPACE, unwanted_at)
    out = await read_until(probe.bootstrap, [probe.lead_topic], lambda rs: bool(caused_by(rs, wanted.id)))
    assert len(caused_by(out, wanted.id)) == 1


def test_record_meta_is_read_only_from_headers_that_make_a_current_event() -> None:
    env = _lead(uuid.uuid4(), datetime.now(UTC))
    _, _, headers = raw(env)
    assert record_meta(headers) == RecordMeta(LeadDiscovered.event_type, WORKSPACE, env.time)

    def without(name: str) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in headers if k != name]

    def with_(name: str, value: bytes) -> list[tuple[str, bytes]]:
        return [*without(name), (name, value)]

    assert record_meta(without("workspaceid")) is None
    assert record_meta(without("ce_time")) is None
    assert record_meta(with_("ce_time", b"yesterday")) is None
    assert record_meta(with_("ce_type", b"leadstream.lead.teleported.v1")) is None
    # Always decoded: it marks the person erased in the key cache, whatever a service's interest.
    assert record_meta(with_("ce_type", LeadErased.event_type.encode())) is None
    naive = record_meta(with_("ce_time", env.time.replace(tzinfo=None).isoformat().encode()))
    assert naive == RecordMeta(LeadDiscovered.event_type, WORKSPACE, env.time)  # read as UTC, as decode() does
    old, _ = next(iter(UPCASTERS.items()))
    assert record_meta(with_("ce_type", old.encode())) is None  # an old version: it may be upcast to anything
