"""Personal texts the projection keeps sealed at rest: in its tables as tokens, opened with the lead's key when the
lead's timeline or page is read (``EventProjection.opens_personal``), on the real broker and database."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from leadstream_schemas import Envelope, LeadDiscovered, MessageGenerated, MessageSent, encode
from leadstream_schemas.events.lead import Hook
from leadstream_schemas.personal import ERASED

from services.projection.api import Reads
from services.projection.app import build
from services.projection.checksum import dsn
from services.projection.store import views_for
from services.projection.workload import EPOCH
from services.runtime import personal
from services.runtime.auth import create_token
from services.runtime.clock import FakeClock
from services.runtime.db import create_engine
from services.runtime.migrations import upgrade
from services.runtime.personal import PersonalReader
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.support.kafka import wait_for

WS = "ws-sealed"
HOOK = "Head of {Sales}  at\nQuill & Co"
DRAFT = "Hi Zoë,\n  loved   your post on {outbound}"
SENT = "Hi Zoë, thanks for connecting"


async def test_a_sealed_text_stays_sealed_in_the_views_and_is_opened_when_read(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    settings = isolated.settings()
    await upgrade(personal.MIGRATIONS_DIR, settings.database_url, personal.SCHEMA)
    service = await start_service(build(settings, clock=FakeClock(EPOCH + timedelta(days=1))))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="partition assignment")
    token = await create_token(service.engine, WS)

    lead, campaign = uuid.uuid4(), uuid.uuid4()
    events: list[Any] = [
        LeadDiscovered(lead_id=lead, source="manual", full_name="Zoë Quill", company="Quill & Co"),
        MessageGenerated(
            lead_id=lead,
            campaign_id=campaign,
            draft_id=uuid.uuid4(),
            channel="message",
            step_id="s1",
            text=DRAFT,
            hook=Hook(kind="role_company", detail=HOOK, reason="no recent posts"),
        ),
        MessageSent(lead_id=lead, campaign_id=campaign, step_id="s1", text=SENT),
    ]
    await _produce_sealed(settings.database_url, settings.kafka_bootstrap_servers, settings.topic_prefix, events)

    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        auth = {"Authorization": f"Bearer {token}"}

        async def timeline() -> list[dict[str, Any]] | None:
            r = await http.get(f"/v1/leads/{lead}/timeline", headers=auth)
            items = r.json()["items"] if r.status_code == 200 else []
            return items if len(items) == len(events) else None

        items = await wait_for(timeline, timeout_s=60, what="the lead's three events in its timeline")
        assert items is not None
        by_type = {i["type"]: i["summary"] for i in items}
        # Opened as _esc would have shown the plain text: whitespace collapsed, braces as they are.
        assert "(hook role company: Head of {Sales} at Quill & Co)" in by_type[MessageGenerated.event_type]
        assert by_type[MessageSent.event_type].endswith(f": {SENT}")
        assert "Zoë Quill" in by_type[LeadDiscovered.event_type]  # opened as it was read: the lists need the name
        page = (await http.get(f"/v1/leads/{lead}", headers=auth)).json()
        [step] = page["outreach"]
        assert (step["text"], step["hook"]["detail"], page["name"]) == (DRAFT, HOOK, "Zoë Quill")

    # At rest, the sealed types' rows hold tokens: neither the draft, the hook nor the sent text in clear.
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        rows = await conn.fetch(
            "SELECT event_type, summary, coalesce(detail, '') AS detail FROM projection.timeline WHERE lead_id = $1",
            lead,
        )
    finally:
        await conn.close()
    stored = {r["event_type"]: r["summary"] + r["detail"] for r in rows}
    for event_type in (MessageGenerated.event_type, MessageSent.event_type):
        assert "{pii1:" in stored[event_type] and "Quill" not in stored[event_type] and "Zoë" not in stored[event_type]

    # Once the key is gone (erased, before the projection has applied the erasure), what is read is [erased].
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as c:
            assert await personal.erase(c, WS, lead)
        reads = Reads(views_for("projection"), PersonalReader(ttl_s=0))
        async with engine.connect() as c:
            after = await reads.timeline(c, WS, lead, None, 10)
            page_after = await reads.lead(c, WS, lead)
    finally:
        await engine.dispose()
    summaries = {i.type: i.summary for i in after.items}
    assert summaries[MessageGenerated.event_type].endswith(f"(hook role company: {ERASED})")
    assert summaries[MessageSent.event_type].endswith(f": {ERASED}")
    assert (page_after.outreach[0].text, page_after.outreach[0].hook.detail) == (ERASED, ERASED)


async def _produce_sealed(database_url: str, bootstrap: str, prefix: str, events: list[Any]) -> None:
    """The events of one lead, their personal fields sealed as the services' outbox seals them."""
    envs = [Envelope.new(e, workspace_id=WS, source="leadstream/test") for e in events]
    people = [personal.person_of_event(env.subject, env.workspace_id, env.type) for env in envs]
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            keys = await personal.ensure_keys(conn, {p for p in people if p is not None})
    finally:
        await engine.dispose()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for env, person in zip(envs, people, strict=True):
            key, value, headers = encode(env)
            assert person is not None
            value = personal.seal_value(value, env.type, person, keys.get(person))
            await producer.send_and_wait(prefix + env.topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()
