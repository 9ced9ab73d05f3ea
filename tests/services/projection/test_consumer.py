"""The projection's batch consumer: undecodable records and records Postgres refuses go to the topic's DLQ
with the error, and the rest of their batch and everything behind them applies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from leadstream_schemas import LEAD, Channel, Envelope, LeadDiscovered, LeadSource, Replied, encode, headers_dict

from services.projection import fastpath
from services.projection.app import build
from services.projection.checksum import dsn
from services.projection.settings import ProjectionSettings
from services.runtime.personal import KeyStoreError
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.support.kafka import end_offsets, produce, read_until, wait_for

from .helpers import assert_refused_nul, decodes, produce_all


async def _started(isolated: Isolated, start_service: StartService) -> tuple[ProjectionSettings, Any]:  # noqa: F811
    """The projection service on ``isolated``, started and assigned its partitions: (settings, consumer)."""
    settings = isolated.settings()
    service = await start_service(build(settings))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="assignment")
    return settings, consumer


async def test_poison_record_is_dead_lettered_and_the_stream_goes_on(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    settings, _ = await _started(isolated, start_service)
    lead = uuid.uuid4()
    before = Envelope.new(
        LeadDiscovered(lead_id=lead, source=LeadSource.manual, full_name="A"), workspace_id="w", source="test"
    )
    key, _, headers = encode(before)
    topic = settings.topic_name(LEAD.name)
    bad_value = b'{"lead_id": "not-a-uuid", "source": "manual"}'
    poison = [(key, bad_value, headers), (key, b"\xff not json", headers)]
    await produce(settings.kafka_bootstrap_servers, topic, poison)
    after = Envelope.new(
        LeadDiscovered(lead_id=lead, source=LeadSource.manual, full_name="B"), workspace_id="w", source="test"
    )
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, [before, after])

    dead = await read_until(settings.kafka_bootstrap_servers, [topic + ".dlq"], lambda recs: len(recs) >= 2)
    codes = sorted(headers_dict(r.headers)["dlq_error_code"] for r in dead)
    assert codes == ["invalid_field", "invalid_json"]
    first = headers_dict(dead[0].headers)
    assert first["dlq_original_topic"] == topic and first["dlq_consumer_group"] == settings.group_id
    assert first["ce_id"] == str(before.id) and dead[0].key == key

    conn = await asyncpg.connect(dsn(settings.database_url))
    try:

        async def applied() -> bool:
            return await conn.fetchval("SELECT count(*) FROM projection.timeline WHERE lead_id = $1", lead) == 2

        await wait_for(applied, timeout_s=60, what="the events after the poison records")
        stored = await conn.fetchval("SELECT sum(next_offset) FROM projection.offsets WHERE topic = $1", topic)
        assert stored == 4  # the dead-lettered records are consumed too: nothing stalls
    finally:
        await conn.close()


def _lead_events(workspace: str, lead: uuid.UUID, *, reply: str, name: str = "A") -> list[Envelope[Any]]:
    """A lead's discovery, a reply with ``reply`` as its text, and another reply after it (one key: one partition)."""
    now = datetime.now(UTC)
    return [
        Envelope.new(
            LeadDiscovered(lead_id=lead, source=LeadSource.manual, full_name=name), workspace_id=workspace, source="t"
        ),
        Envelope.new(
            # Built without validation: as an older writer stored it (today's models refuse a NUL when built).
            Replied.model_construct(lead_id=lead, channel=Channel.email, received_at=now, excerpt=reply),
            workspace_id=workspace,
            source="t",
        ),
        Envelope.new(
            Replied(lead_id=lead, channel="email", received_at=now, excerpt="later"), workspace_id=workspace, source="t"
        ),
    ]


def _discoveries(n: int) -> list[Envelope[Any]]:
    """``n`` discoveries of new leads (one workspace)."""
    return [
        Envelope.new(
            LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.manual, full_name=f"N{i}"),
            workspace_id="w",
            source="t",
        )
        for i in range(n)
    ]


async def _dead_letter_of(settings: ProjectionSettings, event_id: uuid.UUID, group: str) -> dict[str, str]:
    """The one dead letter of ``event_id`` on the lead topic's DLQ written for ``group``."""
    topic = settings.topic_name(LEAD.name) + ".dlq"

    def mine(recs: list[Any]) -> list[dict[str, str]]:
        hs = [headers_dict(r.headers) for r in recs]
        return [h for h in hs if h.get("ce_id") == str(event_id) and h.get("dlq_consumer_group") == group]

    letters = mine(await read_until(settings.kafka_bootstrap_servers, [topic], lambda recs: bool(mine(recs))))
    assert len(letters) == 1, letters
    return letters[0]


async def test_an_already_stored_reply_postgres_refuses_is_dead_lettered_and_every_workspace_moves_on(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    # The poison: a reply whose text holds a NUL, stored on the log before the projection starts
    # (as it was when it failed every batch for ever). It decodes; Postgres refuses its timeline row.
    settings = isolated.settings()
    poisoned, others = uuid.uuid4(), [uuid.uuid4() for _ in range(6)]
    bad = _lead_events("ws-poisoned", poisoned, reply="hi\x00there")
    good = [e for lead in others for e in _lead_events("ws-other", lead, reply="fine")]
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, bad + good)
    service = await start_service(build(settings))
    consumer = service.app.state.projection

    h = await _dead_letter_of(settings, bad[1].id, settings.group_id)
    assert_refused_nul(h, decodes(bad[1]))
    assert h["dlq_attempts"] == (str(settings.consumer_max_attempts) if decodes(bad[1]) else "0")
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:

        async def applied() -> bool:
            rows = await conn.fetch("SELECT lead_id, count(*) AS n FROM projection.timeline GROUP BY lead_id")
            counts = {r["lead_id"]: r["n"] for r in rows}
            # The poisoned lead's record before it and the one after it (same partition), and every other lead.
            return counts == {poisoned: 2, **dict.fromkeys(others, 3)}

        await wait_for(applied, timeout_s=60, what="every record but the poison applied")
        lead_records = len(bad) + len(good)
        stored = await conn.fetchval(
            "SELECT sum(next_offset) FROM projection.offsets WHERE topic = $1", settings.topic_name(LEAD.name)
        )
        assert stored == lead_records  # the dead-lettered record is consumed too: nothing stalls
    finally:
        await conn.close()
    await wait_for(lambda: consumer.healthy, timeout_s=30, what="the consumer to report healthy")


async def test_a_row_the_views_refuse_is_isolated_in_its_batch(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    # Independent of any character rule: a record that decodes, whose lead row the database refuses
    # (a constraint added for the test), in the middle of a batch of others on the same partition.
    settings, _ = await _started(isolated, start_service)
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        await conn.execute(
            "ALTER TABLE projection.lead_state ADD CONSTRAINT refuse_test CHECK (disc_name IS DISTINCT FROM 'Refused')"
        )
        lead = uuid.uuid4()
        envs = _discoveries(30)
        refused = Envelope.new(
            LeadDiscovered(lead_id=lead, source=LeadSource.manual, full_name="Refused"), workspace_id="w", source="t"
        )
        after = Envelope.new(  # the same lead (partition) right behind it
            Replied(lead_id=lead, channel="email", received_at=datetime.now(UTC), excerpt="hello"),
            workspace_id="w",
            source="t",
        )
        await produce_all(
            settings.kafka_bootstrap_servers, settings.topic_prefix, [*envs[:15], refused, after, *envs[15:]]
        )

        h = await _dead_letter_of(settings, refused.id, settings.group_id)
        assert h["dlq_error_code"] == "handler_error"
        assert (
            "CheckViolationError (SQLSTATE 23514)" in h["dlq_error_message"] and "refuse_test" in h["dlq_error_message"]
        )

        async def applied() -> bool:
            return await conn.fetchval("SELECT count(*) FROM projection.timeline") == len(envs) + 1

        await wait_for(applied, timeout_s=60, what="every record but the refused one applied")
        row = await conn.fetchrow("SELECT disc_name, replied FROM projection.lead_state WHERE lead_id = $1", lead)
        assert row is not None and row["replied"] and row["disc_name"] is None  # the reply applied, the refused row not
        assert await conn.fetchval("SELECT count(*) FROM projection.seen_events WHERE event_id = $1", refused.id) == 0
    finally:
        await conn.close()


async def test_a_record_the_planning_fails_on_is_isolated(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bug the projection's own code hits on one record (here: computing its contribution to the views)
    # is that record's fault: isolated and dead-lettered, not a consumer restarting on it for ever.
    envs = _discoveries(20)
    poison = envs[7]
    real = fastpath.BatchReducer.add_event

    def add_event(self: fastpath.BatchReducer, env: Any) -> None:
        if str(env.id) == str(poison.id):
            raise KeyError("simulated planning bug")
        real(self, env)

    monkeypatch.setattr(fastpath.BatchReducer, "add_event", add_event)
    settings = isolated.settings()
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, envs)  # one batch, before the start
    await start_service(build(settings))

    h = await _dead_letter_of(settings, poison.id, settings.group_id)
    assert h["dlq_error_code"] == "handler_error" and h["dlq_error_message"].startswith("KeyError")
    assert "simulated planning bug" not in h["dlq_error_message"]  # scrubbed: a quoted value can be personal data
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:

        async def applied() -> bool:
            return await conn.fetchval("SELECT count(*) FROM projection.timeline") == len(envs) - 1

        await wait_for(applied, timeout_s=60, what="every record but the one the planning fails on")
    finally:
        await conn.close()


@pytest.mark.parametrize("cause", ["too_many_connections", "configuration"])
async def test_a_key_store_that_cannot_answer_while_planning_is_waited_out(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
    cause: str,
) -> None:
    # Planning a batch looks up the people's keys. The key store refusing connections, or without the
    # key-encryption key a stored key needs, is never a record's fault: the batch waits (not-ready) past any
    # attempt limit, nothing is split or dead-lettered, and every record is applied once when it answers.
    envs = _discoveries(12)
    settings = isolated.settings()
    service = build(settings)
    consumer = service.app.state.projection
    personal = consumer.checkpoint.personal
    real_load = personal.load
    failures = settings.consumer_max_attempts + 3
    calls: list[str | None] = []

    async def load(people: Any) -> None:
        if len(calls) < failures:
            calls.append(consumer.not_ready())
            if cause == "configuration":
                raise KeyStoreError("no key-encryption key opens it")
            raise asyncpg.TooManyConnectionsError("sorry, too many clients already")  # SQLSTATE 53300
        await real_load(people)

    personal.load = load
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, envs)  # one batch, before the start
    await start_service(service)
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:

        async def applied() -> int:
            return int(await conn.fetchval("SELECT count(*) FROM projection.timeline"))

        assert await wait_for(applied, until=lambda n: n >= len(envs), timeout_s=60, what="every record") == len(envs)
    finally:
        await conn.close()
    assert len(calls) == failures
    assert any(reason and reason.startswith("not consuming") for reason in calls[1:]), calls
    dlq = settings.topic_name(LEAD.name) + ".dlq"
    assert await end_offsets(settings.kafka_bootstrap_servers, dlq, settings.topic_partitions) == 0
