"""The subscription index (the webhooks consumer's interest) on the real database: it follows every change of a
workspace's subscriptions announced by any replica, says "maybe" when it cannot know, and stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from leadstream_schemas import CampaignCreated, LeadDiscovered, LeadErased
from prometheus_client import REGISTRY

from services.runtime.clock import FakeClock
from services.runtime.consumer import RecordMeta
from services.runtime.db import create_engine
from services.runtime.service import Service
from services.webhooks import interest as interest_module
from services.webhooks.interest import SubscriptionIndex
from tests.services.webhooks.support import PinnedResolver, api, discovered, envelope, start, subscribe
from tests.support.kafka import produce_events, wait_for
from tests.support.webhook_receiver import Receiver

LEAD = LeadDiscovered.event_type
CAMPAIGN = CampaignCreated.event_type


@contextlib.asynccontextmanager
async def replica(service: Service, **kwargs: Any) -> AsyncIterator[SubscriptionIndex]:
    """Another replica's index: an engine and a LISTEN connection of its own, listening until the block ends."""
    engine = create_engine(service.settings.database_url)
    index = SubscriptionIndex(engine, service.settings.database_url, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(index.listen(stop))
    try:
        await wait_for(lambda: index.listening, timeout_s=30, what="the replica's index listening")
        yield index
    finally:
        stop.set()
        await task
        await engine.dispose()


def meta(event_type: str, workspace: str, at: datetime) -> RecordMeta:
    return RecordMeta(event_type, workspace, at)


async def test_the_index_follows_every_change_announced_by_any_replica(make_settings: Any, start_service: Any) -> None:
    clock = FakeClock()
    service = await start(make_settings, start_service, clock)
    ws = f"ws-index-{uuid.uuid4().hex[:8]}"
    created_at = clock.now()
    later = created_at + timedelta(seconds=1)
    async with replica(service) as other:
        indexes = [service.app.state.subscription_index, other]
        assert all(i.listening for i in indexes)
        for index in indexes:  # no subscription yet: nothing wanted (and the answer is kept)
            assert not await index.wants(meta(LEAD, ws, later))
            assert await index.wants(meta(LeadErased.event_type, ws, later))  # always: it blanks stored deliveries

        async def wanted(index: SubscriptionIndex, event_type: str, at: datetime) -> bool:
            return await index.wants(meta(event_type, ws, at))

        async with api(service, ws) as client:
            sub = await subscribe(client, "http://127.0.0.1:9/hook", ["leadstream.lead.*"])
            for index in indexes:  # the announcement reached both replicas (the kept "no" was forgotten)
                await wait_for(partial(wanted, index, LEAD, later), timeout_s=30, what="the new subscription")
                assert not await wanted(index, CAMPAIGN, later)  # a type it does not select
                assert not await wanted(index, LEAD, created_at - timedelta(seconds=1))  # before it was created

            sid = sub["subscription_id"]
            changed = await client.patch(
                f"/v1/webhooks/subscriptions/{sid}", json={"event_types": ["leadstream.campaign.*"]}
            )
            assert changed.status_code == 200, changed.text
            for index in indexes:
                await wait_for(partial(wanted, index, CAMPAIGN, later), timeout_s=30, what="the new filters")
                assert not await wanted(index, LEAD, later)

            assert (await client.delete(f"/v1/webhooks/subscriptions/{sid}")).status_code == 204
            for index in indexes:
                await wait_for(
                    partial(wanted, index, CAMPAIGN, later), until=lambda w: not w, timeout_s=30, what="deleted"
                )


async def test_an_index_that_does_not_listen_wants_everything(make_settings: Any, start_service: Any) -> None:
    """Announcements made while an index does not listen are lost: it cannot tell, so it says "maybe"."""
    service = await start(make_settings, start_service, FakeClock())
    ws = f"ws-deaf-{uuid.uuid4().hex[:8]}"
    at = FakeClock().now() + timedelta(seconds=1)
    deaf = SubscriptionIndex(service.engine, service.settings.database_url)
    assert not deaf.listening and await deaf.wants(meta(LEAD, ws, at))
    async with replica(service) as index:
        assert not await index.wants(meta(LEAD, ws, at))
        listening = index
    assert not listening.listening  # its connection ended with the block
    assert await listening.wants(meta(LEAD, ws, at))


async def test_a_load_an_announcement_overtook_is_used_once_and_the_kept_workspaces_are_bounded(
    make_settings: Any, start_service: Any, monkeypatch: pytest.MonkeyPatch, own_topic_prefix: str
) -> None:
    # Topics of its own: on the session's, the service's consumer loads the workspaces of the events the session's
    # other tests produced through the same (patched) store function, and ``loads`` would count them too.
    service = await start(make_settings, start_service, FakeClock(), topic_prefix=own_topic_prefix)
    at = FakeClock().now() + timedelta(seconds=1)
    loads: list[str] = []
    load = interest_module.store.selectors_of
    overtake: set[str] = set()

    async def counted(conn: Any, workspace_id: str) -> Any:
        loads.append(workspace_id)
        found = await load(conn, workspace_id)
        if workspace_id in overtake:
            index.changed(workspace_id)  # as if an announcement arrived while the rows were read
        return found

    monkeypatch.setattr(interest_module.store, "selectors_of", counted)
    tag = uuid.uuid4().hex[:8]
    a, b, c = (f"ws-{n}-{tag}" for n in "abc")
    async with replica(service, max_workspaces=2) as index:
        overtake.add(a)
        assert await index.wants(meta(LEAD, a, at))  # overtaken: "maybe", not kept
        assert await index.wants(meta(LEAD, a, at)) and loads == [a, a]
        overtake.clear()
        for ws in (a, b, c):
            assert not await index.wants(meta(LEAD, ws, at))
        assert not await index.wants(meta(LEAD, c, at)) and not await index.wants(meta(LEAD, b, at))
        assert loads == [a, a, a, b, c]  # b and c kept
        assert not await index.wants(meta(LEAD, a, at))  # a was forgotten (two kept at most): loaded again
        assert loads == [a, a, a, b, c, a]


async def test_a_subscription_made_while_events_flow_gets_the_next_event_of_its_workspace(
    make_settings: Any, start_service: Any, own_topic_prefix: str
) -> None:
    """End to end: the service skips a workspace's events while nothing subscribes (keeping that answer), then a
    subscription is made, and the workspace's next event is delivered to it."""
    # Topics of its own: on the session's, an event another test produced, skipped first, moved the counter this
    # test waits on before its own early event was read, which was then delivered to the new subscription.
    topic_prefix = own_topic_prefix
    ws = f"ws-index-live-{uuid.uuid4().hex[:8]}"
    resolver = PinnedResolver({"crm.example.test": "127.0.0.1"})
    async with Receiver().running() as receiver:
        service = await start(make_settings, start_service, FakeClock(), resolver=resolver, topic_prefix=topic_prefix)
        bootstrap = service.settings.kafka_bootstrap_servers
        before = _unwanted(LEAD)
        early = envelope(discovered(uuid.uuid4()), ws)
        await produce_events(bootstrap, topic_prefix, [early])
        await wait_for(lambda: _unwanted(LEAD) > before, timeout_s=60, what="the early event skipped")
        async with api(service, ws) as client:
            sub = await subscribe(client, f"http://crm.example.test:{receiver.port}/hook", ["leadstream.lead.*"])
        receiver.secrets = [sub["secret"]]
        late = envelope(discovered(uuid.uuid4()), ws)
        await produce_events(bootstrap, topic_prefix, [late])
        await wait_for(lambda: receiver.accepted(), timeout_s=60, what="the late event delivered")
        assert [r.msg_id for r in receiver.accepted()] == [str(late.id)]  # the early one happened before it


def _unwanted(event_type: str) -> float:
    value = REGISTRY.get_sample_value(
        "leadstream_events_unwanted_total", {"service": "webhooks", "event_type": event_type}
    )
    return value or 0.0
