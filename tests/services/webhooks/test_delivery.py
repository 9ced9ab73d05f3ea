"""Outbound webhooks on the real broker and database, delivered to a local receiver that verifies every
signature with the ``standardwebhooks`` library. Backoff is driven by a fake clock: nothing sleeps."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from datetime import timedelta
from functools import partial
from typing import Any

from leadstream_schemas import Audience, CampaignCreated
from prometheus_client import REGISTRY

from services.runtime.clock import FakeClock, SystemClock
from services.webhooks import store as webhooks_store
from tests.services.webhooks.support import (
    PinnedResolver,
    api,
    delivery_rows,
    discovered,
    drain,
    envelope,
    replied,
    start,
    subscribe,
    wait_delivery_count,
)
from tests.support.kafka import produce_events, wait_for
from tests.support.webhook_receiver import Receiver


def _unwanted() -> float:
    """Events the webhooks service skipped because no subscription could take them (they are not handled)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "leadstream_events_unwanted":
            total += sum(
                s.value for s in metric.samples if s.name.endswith("_total") and s.labels.get("service") == "webhooks"
            )
    return total


def _disabled_total() -> float:
    value = REGISTRY.get_sample_value("leadstream_webhook_disables_total", {"reason": "failing"})
    return value or 0.0


async def test_events_arrive_signed_at_the_checked_address_and_the_log_says_so(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    ws = "ws-hooks-basic"
    clock = FakeClock()
    resolver = PinnedResolver({"crm.example.test": "127.0.0.1"})
    async with Receiver().running() as receiver:
        service = await start(make_settings, start_service, clock, resolver=resolver)
        url = f"http://crm.example.test:{receiver.port}/hook"
        async with api(service, ws) as client:
            sub = await subscribe(client, url, ["leadstream.lead.*"])
            sid = sub["subscription_id"]
            receiver.secrets = [sub["secret"]]
            shown = (await client.get(f"/v1/webhooks/subscriptions/{sid}")).json()
            assert (
                "secret" not in shown and shown["state"] == "active" and shown["event_types"] == ["leadstream.lead.*"]
            )

            lead = uuid.uuid4()
            campaign = CampaignCreated(
                campaign_id=uuid.uuid4(),
                name="not selected",
                audience=Audience(type="source_group", ref="sg"),
            )
            skipped = [envelope(campaign, ws), envelope(discovered(lead), "ws-hooks-someone-else")]
            wanted = [envelope(discovered(lead), ws), envelope(replied(lead), ws)]
            bootstrap = service.settings.kafka_bootstrap_servers
            unwanted_before = _unwanted()
            await produce_events(bootstrap, topic_prefix, [*skipped, *wanted])

            await wait_for(lambda: len(receiver.accepted()) == 2, what="both lead events delivered")
            got = receiver.accepted()
            assert [r.msg_id for r in got] == [str(e.id) for e in wanted]  # webhook-id is the event id, in order
            assert all(r.verified for r in receiver.requests) and len(receiver.requests) == 2
            assert [r.env for r in got] == wanted  # the body decodes to the very envelope produced
            # Connected to the address the guard checked; the subscriber's name is in Host.
            assert {r.host for r in got} == {f"crm.example.test:{receiver.port}"}
            assert "crm.example.test" in resolver.calls

            await wait_for(lambda: _unwanted() >= unwanted_before + 2, what="unselected events skipped")
            assert len(await delivery_rows(service, sid)) == 2  # neither another type nor another workspace

            log = (await client.get(f"/v1/webhooks/subscriptions/{sid}/deliveries")).json()
            assert [d["event_id"] for d in log["items"]] == [str(e.id) for e in reversed(wanted)]  # newest first
            first = log["items"][-1]
            assert first["status"] == "delivered" and first["attempts"] == 1 and first["last_status_code"] == 200
            assert first["next_attempt_at"] is None and first["held"] is False
            detail = (await client.get(f"/v1/webhooks/subscriptions/{sid}/deliveries/{first['delivery_id']}")).json()
            (attempt,) = detail["attempt_log"]
            assert attempt["status_code"] == 200 and attempt["error"] is None and attempt["duration_ms"] >= 0


async def test_a_receiver_that_fails_and_recovers_gets_everything_once_in_order_per_lead(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    """Two replicas share the work; the receiver refuses every webhook-id the first time it sees it."""
    ws = "ws-hooks-flaky"
    clock = FakeClock()
    async with Receiver(fail_first=True).running() as receiver:
        first = await start(make_settings, start_service, clock)
        second = await start(make_settings, start_service, clock)
        async with api(first, ws) as client:
            sub = await subscribe(client, receiver.url, ["leadstream.lead.*"])
        sid = sub["subscription_id"]
        receiver.secrets = [sub["secret"]]
        leads = [uuid.uuid4() for _ in range(3)]
        per_lead = {lead: [envelope(discovered(lead, f"Lead {i}"), ws) for i in range(6)] for lead in leads}
        interleaved = [per_lead[lead][i] for i in range(6) for lead in leads]
        await produce_events(first.settings.kafka_bootstrap_servers, topic_prefix, interleaved)
        await wait_delivery_count(first, sid, len(interleaved))

        rounds = 0
        while len(receiver.accepted()) < len(interleaved):
            rounds += 1
            assert rounds <= 20, f"only {len(receiver.accepted())} delivered after {rounds} rounds"
            await drain(first, sid)
            clock.advance(timedelta(seconds=5))  # the first retry is due 5 s after a failure

        ids = receiver.accepted_ids()
        assert sorted(ids) == sorted(str(e.id) for e in interleaved)  # nothing lost, nothing accepted twice
        for lead in leads:
            assert [i for i in ids if i in {str(e.id) for e in per_lead[lead]}] == [str(e.id) for e in per_lead[lead]]
        attempts = Counter(r.msg_id for r in receiver.requests)
        assert set(attempts.values()) == {2}  # a repeat is always the same webhook-id (receivers dedupe on it)
        assert all(r.verified for r in receiver.requests)
        rows = await delivery_rows(second, sid)
        assert {r.status for r in rows} == {"delivered"} and {r.attempts for r in rows} == {2}
        # A later event of a lead was never attempted before the earlier one was delivered.
        order = [r.msg_id for r in receiver.requests]
        for lead in leads:
            evs = [str(e.id) for e in per_lead[lead]]
            for earlier, later in itertools.pairwise(evs):
                assert order.index(later) > max(i for i, m in enumerate(order) if m == earlier)


async def test_retries_back_off_then_the_endpoint_is_disabled_and_resumes_in_order_when_enabled(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    ws = "ws-hooks-disable"
    clock = FakeClock()
    async with Receiver(failing=True).running() as receiver:
        service = await start(
            make_settings, start_service, clock, webhooks_disable_min_failures=4, webhooks_disable_after_h=1.0
        )
        worker = service.app.state.webhooks_worker
        bootstrap = service.settings.kafka_bootstrap_servers
        lead, other = uuid.uuid4(), uuid.uuid4()
        async with api(service, ws) as client:
            sub = await subscribe(client, receiver.url)
            sid = sub["subscription_id"]
            receiver.secrets = [sub["secret"]]
            e1 = envelope(discovered(lead), ws)
            await produce_events(bootstrap, topic_prefix, [e1])
            await wait_for(lambda: len(receiver.requests) == 1, what="first attempt")

            # Attempts 2 and 3 come 5 and 10 s after the failures before them (exponential backoff).
            waits = []
            for n in (2, 3):
                await drain(service, sid)
                (row,) = await delivery_rows(service, sid)
                waits.append((row.next_attempt_at - clock.now()).total_seconds())
                clock.advance(row.next_attempt_at - clock.now())
                await wait_for(partial(_requests_reached, receiver, n), what=f"attempt {n}")
            assert waits == [5.0, 10.0]
            await drain(service, sid)
            (row,) = await delivery_rows(service, sid)
            assert row.status == "pending" and row.attempts == 3 and row.last_status_code == 500
            assert (row.next_attempt_at - clock.now()).total_seconds() == 20.0
            assert (await client.get(f"/v1/webhooks/subscriptions/{sid}")).json()["state"] == "active"

            # Failing for an hour with 4 failures in a row: the endpoint is disabled, and says why.
            before = _disabled_total()
            clock.advance(timedelta(hours=1))
            await wait_for(lambda: len(receiver.requests) == 4, what="attempt 4")
            shown = await wait_for(
                lambda: _state(client, sid, "disabled"), what="endpoint disabled after the run of failures"
            )
            assert shown["disabled_reason"] == "failing" and shown["consecutive_failures"] == 4
            assert (
                "4 consecutive failed attempts" in shown["disabled_detail"] and "HTTP 500" in shown["disabled_detail"]
            )
            assert _disabled_total() == before + 1
            await worker.housekeeping()
            assert (REGISTRY.get_sample_value("leadstream_webhook_disabled_endpoints", {"reason": "failing"}) or 0) >= 1

            # While disabled, events are queued and held; nothing is attempted.
            e2, e3 = envelope(replied(lead), ws), envelope(discovered(other), ws)
            await produce_events(bootstrap, topic_prefix, [e2, e3])
            await wait_delivery_count(service, sid, 3)
            clock.advance(timedelta(days=2))
            assert await worker.deliver_one() is False
            assert len(receiver.requests) == 4
            log = (
                await client.get(f"/v1/webhooks/subscriptions/{sid}/deliveries", params={"status": "pending"})
            ).json()
            assert len(log["items"]) == 3 and all(d["held"] for d in log["items"])

            # The subscriber is fixed and an operator enables the endpoint: the queue goes out, in order.
            receiver.failing = False
            enabled = (await client.post(f"/v1/webhooks/subscriptions/{sid}/enable")).json()
            assert enabled["state"] == "active" and enabled["consecutive_failures"] == 0
            assert enabled["disabled_reason"] is None
            await wait_for(lambda: len(receiver.accepted()) == 3, what="queued deliveries after enabling")
            ids = receiver.accepted_ids()
            assert set(ids) == {str(e1.id), str(e2.id), str(e3.id)} and ids.index(str(e1.id)) < ids.index(str(e2.id))


def _requests_reached(receiver: Receiver, n: int) -> bool:
    return len(receiver.requests) == n


async def _state(client: Any, sid: str, state: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (await client.get(f"/v1/webhooks/subscriptions/{sid}")).json()
    return body if body["state"] == state else None


async def test_redelivery_and_secret_rotation(make_settings: Any, start_service: Any, topic_prefix: str) -> None:
    ws = "ws-hooks-redeliver"
    clock = FakeClock()
    async with Receiver().running() as receiver:
        service = await start(make_settings, start_service, clock, webhooks_max_attempts=2)
        lead = uuid.uuid4()
        async with api(service, ws) as client:
            sub = await subscribe(client, receiver.url)
            sid = sub["subscription_id"]
            old = sub["secret"]
            receiver.secrets = [old]
            events = [envelope(discovered(lead), ws), envelope(replied(lead), ws)]
            await produce_events(service.settings.kafka_bootstrap_servers, topic_prefix, events)
            await wait_for(lambda: len(receiver.accepted()) == 2, what="first deliveries")
            since = clock.now()
            rows = await delivery_rows(service, sid)

            # One delivery again: same webhook-id, a fresh attempt in its log.
            r = await client.post(f"/v1/webhooks/subscriptions/{sid}/deliveries/{rows[0].delivery_id}/redeliver")
            assert r.status_code == 202 and r.json()["status"] == "pending"
            await wait_for(lambda: len(receiver.accepted()) == 3, what="redelivery")
            assert receiver.accepted_ids()[-1] == str(events[0].id)

            # A rotation: both secrets sign during the window, so a receiver still on the old one verifies.
            rotated = (await client.post(f"/v1/webhooks/subscriptions/{sid}/rotate-secret")).json()
            new = rotated["secret"]
            assert new != old and new.startswith("whsec_")
            r = await client.post(f"/v1/webhooks/subscriptions/{sid}/redeliver", json={"since": since.isoformat()})
            assert r.json() == {"redelivered": 2}
            await wait_for(lambda: len(receiver.accepted()) == 5, what="redelivery since a time")
            assert receiver.accepted_ids()[-2:] == [str(e.id) for e in events]  # history again, in order
            assert len(receiver.requests[-1].signature.split(" ")) == 2

            # After the window only the new secret signs: the old one no longer verifies.
            clock.advance(timedelta(hours=25))
            await client.post(f"/v1/webhooks/subscriptions/{sid}/deliveries/{rows[1].delivery_id}/redeliver")
            await wait_for(lambda: len(receiver.requests) == 6, what="attempt after the window")
            assert receiver.requests[-1].status == 401 and len(receiver.requests[-1].signature.split(" ")) == 1
            receiver.secrets = [new]
            await drain(service, sid)
            clock.advance(timedelta(seconds=5))
            await wait_for(lambda: len(receiver.accepted()) == 6, what="retry verified with the new secret")

            # A delivery whose attempts are spent is given up; the next one of its key goes on.
            receiver.fail_ids = {str(events[0].id)}
            await client.post(f"/v1/webhooks/subscriptions/{sid}/deliveries/{rows[0].delivery_id}/redeliver")
            await client.post(f"/v1/webhooks/subscriptions/{sid}/deliveries/{rows[1].delivery_id}/redeliver")
            await wait_for(lambda: len(receiver.requests) == 8, what="first failure")
            await drain(service, sid)
            assert len(receiver.requests) == 8  # the later event of the key waits behind the failing one
            clock.advance(timedelta(seconds=5))
            await wait_for(lambda: len(receiver.requests) == 10, what="given up, then the next of the key")
            assert [(r.msg_id, r.status) for r in receiver.requests[-3:]] == [
                (str(events[0].id), 500),
                (str(events[0].id), 500),
                (str(events[1].id), 200),
            ]
            detail = (await client.get(f"/v1/webhooks/subscriptions/{sid}/deliveries/{rows[0].delivery_id}")).json()
            assert detail["status"] == "failed" and detail["attempts"] == 5 and detail["next_attempt_at"] is None
            assert [a["status_code"] for a in detail["attempt_log"]] == [200, 200, 200, 500, 500]


async def test_a_crash_after_the_receiver_answered_repeats_the_same_webhook_id(
    make_settings: Any, start_service: Any, topic_prefix: str, monkeypatch: Any
) -> None:
    """The attempt's outcome is committed after the answer: if that commit never happens (the connection
    breaks while the database still answers), the delivery stays pending, the runtime's durable timers retry
    it after their backoff, and it is attempted again with the same webhook-id, so the receiver can tell."""
    ws = "ws-hooks-crash"
    event = envelope(discovered(uuid.uuid4()), ws)
    real_finish = webhooks_store.finish_attempt
    crashes: list[str] = []

    async def crash_once(conn: Any, delivery: Any, **values: Any) -> None:
        # Only this test's delivery: the worker also attempts the session's other due deliveries (earlier tests'
        # subscriptions, in the same database), and the first of those to finish would have taken the crash.
        if not crashes and str(delivery.event_id) == str(event.id):
            crashes.append(str(delivery.event_id))
            raise ConnectionResetError("database connection lost after the answer")
        await real_finish(conn, delivery, **values)

    monkeypatch.setattr(webhooks_store, "finish_attempt", crash_once)
    async with Receiver().running() as receiver:
        clock = FakeClock()
        service = await start(make_settings, start_service, clock)
        async with api(service, ws) as client:
            sub = await subscribe(client, receiver.url)
        receiver.secrets = [sub["secret"]]
        await produce_events(service.settings.kafka_bootstrap_servers, topic_prefix, [event])

        async def failed_or_delivered() -> Any:
            rows = await delivery_rows(service, sub["subscription_id"])
            return rows if rows and (rows[0].last_error or rows[0].status == "delivered") else None

        # The runtime asks the database whether it is there: it answers (the usual case), so the failure is
        # recorded and retried after its backoff; on a machine too loaded to answer the check in time, it is taken
        # for an outage and retried without a record. Either way the receiver gets the same webhook-id again.
        (first,) = await wait_for(failed_or_delivered, what="the failed recording noted, or the retry delivered")
        recorded = first.last_error is not None
        if recorded:
            assert "ConnectionResetError" in first.last_error
        if first.status == "pending":  # recorded, waiting for its backoff
            assert first.attempts == 1
            clock.advance(first.next_attempt_at - clock.now())

        async def delivered() -> Any:
            rows = await delivery_rows(service, sub["subscription_id"])
            return rows if rows and rows[0].status == "delivered" else None

        (row,) = await wait_for(delivered, what="delivered after the crash")
        assert crashes == [str(event.id)]
        assert receiver.accepted_ids() == [str(event.id)] * 2  # answered twice, same webhook-id
        # A recorded failure counts as an attempt; the crashed attempt's own outcome was never committed.
        assert row.attempts == (2 if recorded else 1)


async def test_the_sender_stays_open_until_the_deliveries_in_hand_are_done(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    """The housekeeping loop ends as soon as the stop is asked; it used to close the sender then, under a delivery
    still in hand (its attempt failed with "the client has been closed"). The service closes it at the end of its
    stop, once the delivery loops are done."""
    service = await start(make_settings, start_service, FakeClock())
    sender = service.app.state.webhooks_worker.sender
    housekeeping = next(t for t in service._bg if t.get_name() == "DeliveryWorker._housekeeping")  # type: ignore[attr-defined]
    service.request_stop()
    await wait_for(housekeeping.done, what="the housekeeping loop to end")
    assert not sender.client.is_closed
    await service.stop()
    assert sender.client.is_closed


async def test_a_queued_delivery_wakes_the_idle_workers(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    # On the real clock an idle worker sleeps until its next delivery is due, here up to a minute
    # (timer_idle_max_s): the handler that queues a delivery wakes the workers, so it goes long before that.
    ws = "ws-hooks-wake"
    resolver = PinnedResolver({"crm.example.test": "127.0.0.1"})
    async with Receiver().running() as receiver:
        service = await start(make_settings, start_service, SystemClock(), resolver=resolver, timer_idle_max_s=60.0)
        async with api(service, ws) as client:
            sub = await subscribe(client, f"http://crm.example.test:{receiver.port}/hook", ["leadstream.lead.*"])
            receiver.secrets = [sub["secret"]]
            event = envelope(discovered(uuid.uuid4()), ws)
            await produce_events(service.settings.kafka_bootstrap_servers, topic_prefix, [event])
            await wait_for(
                lambda: [r.msg_id for r in receiver.accepted()] == [str(event.id)],
                timeout_s=30,
                what="the delivery made without waiting for the idle maximum",
            )
