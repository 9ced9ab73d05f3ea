"""Erasure reaches the webhooks service's own copies: when ``LeadErased`` arrives through the consumer, the stored
delivery bodies of the lead's events (sent or pending) and the endpoint's answers lose the person's data, and the
erasure itself is delivered like any event. On the real broker and database."""

from __future__ import annotations

import uuid
from typing import Any

from leadstream_schemas import LeadErased
from leadstream_schemas.personal import ERASED
from leadstream_schemas.structured import decode_structured
from sqlalchemy import select

from services.runtime.clock import FakeClock
from services.webhooks import store as webhooks_store
from tests.services.webhooks.support import (
    PinnedResolver,
    api,
    delivery_rows,
    discovered,
    envelope,
    start,
    subscribe,
    wait_delivery_count,
)
from tests.support.kafka import produce_events, wait_for
from tests.support.webhook_receiver import Receiver

NAME = "Philippa Shredwell"


async def test_lead_erased_blanks_the_stored_deliveries_of_the_lead_and_is_delivered(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    ws = "ws-hooks-erasure"
    resolver = PinnedResolver({"crm.example.test": "127.0.0.1"})
    async with Receiver().running() as receiver:
        service = await start(make_settings, start_service, FakeClock(), resolver=resolver)
        async with api(service, ws) as client:
            sub = await subscribe(client, f"http://crm.example.test:{receiver.port}/hook", ["leadstream.lead.*"])
        receiver.secrets = [sub["secret"]]
        sid = sub["subscription_id"]
        gone, kept = uuid.uuid4(), uuid.uuid4()
        first = [envelope(discovered(gone, NAME), ws), envelope(discovered(kept, "Bartholomew Keepsake"), ws)]
        bootstrap = service.settings.kafka_bootstrap_servers
        await produce_events(bootstrap, topic_prefix, first)
        await wait_for(lambda: len(receiver.accepted()) == 2, what="both lead events delivered")
        rows = await wait_delivery_count(service, sid, 2)
        assert NAME.encode() in b"".join(r.body for r in rows)  # the copy the erasure must reach

        erased = envelope(LeadErased(lead_id=gone, via="cli"), ws)
        await produce_events(bootstrap, topic_prefix, [erased])

        async def blanked() -> list[Any] | None:
            rows = await delivery_rows(service, sid)
            bodies = b"".join(r.body for r in rows)
            return rows if len(rows) == 3 and NAME.encode() not in bodies else None

        rows = await wait_for(blanked, timeout_s=60, what="the erased lead's delivery bodies blanked")
        by_event = {r.event_id: r for r in rows}
        gone_body = decode_structured(by_event[first[0].id].body)
        assert gone_body.data.full_name == ERASED  # type: ignore[attr-defined]
        assert gone_body.data.lead_id == gone and gone_body.data.company == "Northwind Labs"  # type: ignore[attr-defined]
        assert decode_structured(by_event[first[1].id].body).data.full_name == "Bartholomew Keepsake"  # type: ignore[attr-defined]
        # The endpoint's answers to the lead's deliveries are gone too; the other lead's stay.
        a = webhooks_store.attempts
        async with service.engine.connect() as conn:
            excerpts = {
                r.delivery_id: r.response_excerpt
                for r in await conn.execute(select(a.c.delivery_id, a.c.response_excerpt))
            }
        assert excerpts.get(by_event[first[0].id].delivery_id, "absent") is None
        # The erasure itself reaches the subscriber (and says nothing but the lead id).
        await wait_for(lambda: len(receiver.accepted()) == 3, what="LeadErased delivered")
        last = receiver.accepted()[-1].env
        assert last is not None and last.type == LeadErased.event_type
