"""What the API says about an endpoint and its deliveries when their state changes under it: the count in a
disabled endpoint's ``disabled_detail``, a redelivered delivery, and the queue of an endpoint whose
``event_types`` were narrowed. Real broker, database and HTTP receivers; a fake clock for the backoff."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.runtime.clock import FakeClock
from services.runtime.service import Service
from services.webhooks import store
from services.webhooks.domain import UNSUBSCRIBED
from tests.services.webhooks.support import (
    api,
    delivery_rows,
    discovered,
    drain,
    envelope,
    replied,
    start,
    subscribe,
)
from tests.support.kafka import produce_events, wait_for
from tests.support.local_http import serve
from tests.support.webhook_receiver import Receiver

DISCOVERED = "leadstream.lead.discovered.v1"
REPLIED = "leadstream.lead.replied.v1"
HOOKS = "/v1/webhooks/subscriptions"


class HoldingReceiver:
    """Holds every request until ``release`` (or until ``hold_for`` requests arrived), then answers ``status``."""

    def __init__(self, status: int = 500, hold_for: int | None = None) -> None:
        self.status = status
        self.hold_for = hold_for
        self.arrived: list[str] = []
        self.release = asyncio.Event()

    async def _hook(self, request: Request) -> Response:
        self.arrived.append(request.headers["webhook-id"])
        if self.hold_for is not None and len(self.arrived) >= self.hold_for:
            self.release.set()
        # Bounded: if the release never comes, the sender's own deadline has long failed the attempt.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), timeout=30)
        return Response(b"held", self.status)

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        """Serve on a free local port; yields the hook's URL."""
        async with serve(Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])) as root:
            yield root + "/hook"


async def _attempted(service: Service, sid: str, n: int) -> list[Any] | None:
    rows = await delivery_rows(service, sid)
    return rows if len(rows) == n and all(r.attempts >= 1 for r in rows) else None


async def test_a_disabled_endpoints_detail_counts_the_failures_its_counter_shows(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    """Two attempts (of two leads) in flight when the first failure disables the endpoint. The second used to be
    counted after the detail was written from the first's count: ``consecutive_failures`` 2 next to "1 consecutive
    failed attempts". A disabled endpoint's run no longer moves, so the detail and the counter agree."""
    ws = "ws-hooks-detail"
    holding = HoldingReceiver(status=500, hold_for=2)  # both attempts are in flight before either is answered
    async with holding.running() as url:
        service = await start(
            make_settings,
            start_service,
            FakeClock(),
            webhooks_concurrency=2,
            webhooks_disable_min_failures=1,
            webhooks_disable_after_h=0.0,
        )
        async with api(service, ws) as client:
            sid = (await subscribe(client, url))["subscription_id"]
            events = [envelope(discovered(uuid.uuid4()), ws), envelope(discovered(uuid.uuid4()), ws)]
            await produce_events(service.settings.kafka_bootstrap_servers, topic_prefix, events)
            rows = await wait_for(lambda: _attempted(service, sid, 2), what="both deliveries attempted")
            assert holding.release.is_set() and sorted(holding.arrived) == sorted(str(e.id) for e in events)
            assert [(r.attempts, r.last_status_code) for r in rows] == [(1, 500), (1, 500)]  # both logged

            shown = (await client.get(f"{HOOKS}/{sid}")).json()
            assert shown["state"] == "disabled" and shown["disabled_reason"] == "failing"
            count = shown["consecutive_failures"]
            assert shown["disabled_detail"].startswith(f"{count} consecutive failed attempts since ")
            assert count == 1  # the failure that disabled it; the one still in flight then is in its delivery's log


async def test_a_redelivered_delivery_is_pending_without_the_outcome_of_its_earlier_attempts(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    """A delivered and a failed delivery, redelivered while the endpoint holds them (disabled, so no attempt
    races the assertions): pending, with no delivered_at, status code, error or duration of the old attempt;
    the attempt log and count keep it. Redelivered, the delivered one used to still show its delivered_at."""
    ws = "ws-hooks-redelivered"
    clock = FakeClock()
    async with Receiver().running() as receiver:
        service = await start(make_settings, start_service, clock, webhooks_max_attempts=1)
        async with api(service, ws) as client:
            sub = await subscribe(client, receiver.url)
            sid = sub["subscription_id"]
            receiver.secrets = [sub["secret"]]
            ok, refused = envelope(discovered(uuid.uuid4()), ws), envelope(discovered(uuid.uuid4()), ws)
            receiver.fail_ids = {str(refused.id)}
            await produce_events(service.settings.kafka_bootstrap_servers, topic_prefix, [ok, refused])
            rows = await wait_for(lambda: _attempted(service, sid, 2), what="both deliveries attempted")
            by_event = {r.event_id: r for r in rows}
            assert by_event[ok.id].status == "delivered" and by_event[ok.id].delivered_at is not None
            assert by_event[refused.id].status == "failed" and by_event[refused.id].last_status_code == 500

            assert (await client.post(f"{HOOKS}/{sid}/disable")).status_code == 200
            clock.advance(timedelta(minutes=1))
            for event, code in ((ok, 200), (refused, 500)):
                path = f"{HOOKS}/{sid}/deliveries/{by_event[event.id].delivery_id}"
                answered = (await client.post(f"{path}/redeliver")).json()
                shown = (await client.get(path)).json()
                for body in (answered, shown):
                    assert body["status"] == "pending" and body["held"] is True, body
                    assert body["delivered_at"] is None and body["cancelled_at"] is None, body
                    cleared = ("last_status_code", "last_error", "last_duration_ms")
                    assert [body[k] for k in cleared] == [None, None, None], body
                    assert body["attempts"] == 1  # every attempt ever made
                assert [a["status_code"] for a in shown["attempt_log"]] == [code]

            receiver.fail_ids = set()
            await client.post(f"{HOOKS}/{sid}/enable")
            await wait_for(lambda: len(receiver.accepted()) == 3, what="both delivered after enabling")

            async def delivered() -> list[Any] | None:
                rows = await delivery_rows(service, sid)
                return rows if {r.status for r in rows} == {"delivered"} else None

            rows = await wait_for(delivered, what="both recorded as delivered")
            assert {r.delivered_at for r in rows} == {clock.now()}
            assert {r.last_status_code for r in rows} == {200} and {r.attempts for r in rows} == {2}


async def test_narrowing_event_types_cancels_the_queued_deliveries_of_the_types_it_dropped(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    """Queued deliveries of a type the endpoint no longer subscribes to are cancelled with the change, shown with
    the reason, never sent (not after a retry, nor by a redelivery while the type is not selected), and do not
    hold back later events of their key. They used to stay pending and go out at their next retry."""
    ws = "ws-hooks-narrowed"
    clock = FakeClock()
    async with Receiver(failing=True).running() as receiver:
        service = await start(make_settings, start_service, clock)
        bootstrap = service.settings.kafka_bootstrap_servers
        async with api(service, ws) as client:
            sub = await subscribe(client, receiver.url, [DISCOVERED, REPLIED])
            sid = sub["subscription_id"]
            receiver.secrets = [sub["secret"]]
            since = clock.now()
            kept, dropped = uuid.uuid4(), uuid.uuid4()
            first, reply = envelope(discovered(kept), ws), envelope(replied(dropped), ws)
            await produce_events(bootstrap, topic_prefix, [first, reply])
            await wait_for(lambda: _attempted(service, sid, 2), what="both attempted once and failed")

            changed = await client.patch(f"{HOOKS}/{sid}", json={"event_types": [DISCOVERED]})
            assert changed.status_code == 200 and changed.json()["event_types"] == [DISCOVERED]
            log = {d["event_id"]: d for d in (await client.get(f"{HOOKS}/{sid}/deliveries")).json()["items"]}
            cancelled = log[str(reply.id)]
            assert cancelled["status"] == "cancelled" and cancelled["cancel_reason"] == UNSUBSCRIBED
            assert cancelled["cancelled_at"] == clock.now().isoformat().replace("+00:00", "Z")
            assert cancelled["next_attempt_at"] is None and cancelled["held"] is False
            assert cancelled["attempts"] == 1 and cancelled["last_status_code"] == 500  # its attempt stays logged
            assert log[str(first.id)]["status"] == "pending"
            only = (await client.get(f"{HOOKS}/{sid}/deliveries", params={"status": "cancelled"})).json()["items"]
            assert [d["event_id"] for d in only] == [str(reply.id)]

            # The subscriber recovers: the kept type goes out, and a later event of the cancelled one's key too.
            receiver.failing = False
            later = envelope(discovered(dropped), ws)
            await produce_events(bootstrap, topic_prefix, [later])
            clock.advance(timedelta(seconds=5))
            await wait_for(lambda: len(receiver.accepted()) == 2, what="the selected events delivered")
            await drain(service, sid)
            assert set(receiver.accepted_ids()) == {str(first.id), str(later.id)}

            # Redelivery sends only what the filters select: one is refused, "since" skips it.
            path = f"{HOOKS}/{sid}/deliveries/{cancelled['delivery_id']}/redeliver"
            refused = await client.post(path)
            assert refused.status_code == 409 and refused.json()["code"] == "event_type_not_selected"
            again = await client.post(f"{HOOKS}/{sid}/redeliver", json={"since": since.isoformat()})
            assert again.json() == {"redelivered": 2}
            await wait_for(lambda: len(receiver.accepted()) == 4, what="the selected events redelivered")
            await drain(service, sid)
            assert [r.msg_id for r in receiver.requests].count(str(reply.id)) == 1  # its one attempt before the change

            # Widening again does not revive a cancelled delivery; redelivering it does.
            await client.patch(f"{HOOKS}/{sid}", json={"event_types": [DISCOVERED, REPLIED]})
            await drain(service, sid)
            assert (await client.get(f"{HOOKS}/{sid}/deliveries/{cancelled['delivery_id']}")).json()["status"] == (
                "cancelled"
            )
            revived = (await client.post(path)).json()
            assert (
                revived["status"] == "pending" and revived["cancelled_at"] is None and revived["cancel_reason"] is None
            )
            await wait_for(lambda: receiver.accepted_ids()[-1:] == [str(reply.id)], what="the redelivered reply")


async def _cancel_waiting(service: Service) -> bool:
    """Whether a cancellation of deliveries waits for a row lock (a worker's claimed delivery) in this database."""
    async with service.engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
                " AND query LIKE 'SELECT webhooks.deliveries.delivery_id%event_type IN%FOR UPDATE'"
            )
        )
    return bool(waiting)


@pytest.mark.parametrize(("answer", "after"), [(500, "cancelled"), (200, "delivered")])
async def test_a_change_of_filters_waits_for_the_attempt_in_flight_and_keeps_its_outcome_if_delivered(
    make_settings: Any, start_service: Any, topic_prefix: str, answer: int, after: str
) -> None:
    """The change cancels a delivery a worker is attempting once that attempt is recorded: a failed one is
    cancelled (not retried), a delivered one stays delivered. Neither outcome overwrites the other."""
    ws = f"ws-hooks-inflight-{answer}"
    clock = FakeClock()
    holding = HoldingReceiver(status=answer)
    async with holding.running() as url:
        service = await start(make_settings, start_service, clock, webhooks_timeout_s=30.0)
        async with api(service, ws) as client:
            sid = (await subscribe(client, url, [DISCOVERED, REPLIED]))["subscription_id"]
            reply = envelope(replied(uuid.uuid4()), ws)
            await produce_events(service.settings.kafka_bootstrap_servers, topic_prefix, [reply])
            await wait_for(lambda: holding.arrived == [str(reply.id)], what="the attempt in flight")

            change = asyncio.create_task(client.patch(f"{HOOKS}/{sid}", json={"event_types": [DISCOVERED]}))
            await wait_for(lambda: _cancel_waiting(service), what="the change waiting for the claimed delivery")
            assert not change.done()
            holding.release.set()
            assert (await change).status_code == 200

            (row,) = await delivery_rows(service, sid)
            assert row.status == after and row.attempts == 1 and row.last_status_code == answer
            assert (row.cancel_reason == UNSUBSCRIBED) is (after == "cancelled")
            clock.advance(timedelta(minutes=5))
            await drain(service, sid)
            assert holding.arrived == [str(reply.id)]  # never attempted again


def _advisory_waiting(service: Service, query: str) -> Any:
    async def waiting() -> bool:
        async with service.engine.connect() as conn:
            n = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND query LIKE :q"
                ),
                {"q": query},
            )
        return bool(n)

    return waiting


async def test_a_delete_waits_for_an_event_being_queued_and_deletes_what_it_queued(
    make_settings: Any, start_service: Any
) -> None:
    """An event handler's transaction (the workspace's lock shared, its deliveries queued: handlers.on_event) is
    under way when the subscription is deleted: the delete waits for it, and then deletes what it queued."""
    ws = "ws-hooks-delete-race"
    service = await start(make_settings, start_service, FakeClock())
    async with Receiver().running() as receiver, api(service, ws) as client:
        sid = (await subscribe(client, receiver.url))["subscription_id"]
        env = envelope(discovered(uuid.uuid4()), ws)
        async with service.engine.connect() as conn:
            held = await conn.begin()
            await store.lock_workspace(conn, ws, shared=True)
            (sub,) = await store.subscriptions_of(conn, ws)
            removal = asyncio.create_task(client.delete(f"{HOOKS}/{sid}"))
            await wait_for(
                _advisory_waiting(service, "SELECT pg_advisory_xact_lock(%"), what="the delete waiting for the handler"
            )
            assert not removal.done()
            now = service.clock.now()
            row = {
                "delivery_id": uuid.uuid4(),
                "subscription_id": sub.subscription_id,
                "workspace_id": ws,
                "event_id": env.id,
                "event_type": env.type,
                "event_time": env.time,
                "order_key": str(env.subject),
                "body": b"{}",
                "status": "pending",
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            assert await store.enqueue(conn, [row]) == 1  # the subscription is still there to be queued for
            await held.commit()
        assert (await removal).status_code == 204
        assert await delivery_rows(service, sid) == []
        assert (await client.get(f"{HOOKS}/{sid}")).status_code == 404


async def _lock_waiters(service: Service) -> dict[int, list[int]]:
    """The backends of this database waiting for a lock, with the backends they wait for."""
    async with service.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid, pg_blocking_pids(pid) AS blockers FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return {int(r.pid): [int(b) for b in r.blockers] for r in rows}


async def test_an_enable_and_a_narrowing_at_the_same_instant_lock_the_deliveries_in_one_order(
    make_settings: Any, start_service: Any
) -> None:
    """Enabling an endpoint (its queue made due) and narrowing its ``event_types`` (the dropped types cancelled)
    change the same pending deliveries. Each locks them in delivery_id order before it changes any, then the
    subscription: while the first delivery in that order is held (here as a worker holds the one it attempts), both
    wait for it holding no other delivery, and once it is free both finish, the one after the other. They used to
    lock the rows in the order their plans walked them, each holding rows the other then waited for: with plans
    that walk them in different orders (the due index, the key index) Postgres aborted one as a deadlock, a 500."""
    ws = "ws-hooks-enable-narrow"
    clock = FakeClock()
    holding = HoldingReceiver(status=200)  # the resumed deliveries' attempts wait here while the test reads them
    async with holding.running() as url:
        service = await start(make_settings, start_service, clock, webhooks_timeout_s=30.0)
        async with api(service, ws) as client:
            sid = (await subscribe(client, url, [DISCOVERED, REPLIED]))["subscription_id"]
            assert (await client.post(f"{HOOKS}/{sid}/disable")).status_code == 200
            # The queue the disabled endpoint holds, backed off: the first delivery in delivery_id order (a reply,
            # which both commands change) is queued last, so a plan walking the rows as they were queued (the
            # table, the key index, the due index) reaches it after the others.
            ids = sorted(uuid.uuid4() for _ in range(6))
            first, rest = ids[0], ids[1:]
            types = {i: (REPLIED if n % 2 else DISCOVERED) for n, i in enumerate(rest)} | {first: REPLIED}
            later = clock.now() + timedelta(hours=1)  # backed off
            rows = [
                {
                    "delivery_id": i,
                    "subscription_id": uuid.UUID(sid),
                    "workspace_id": ws,
                    "event_id": uuid.uuid4(),
                    "event_type": types[i],
                    "event_time": clock.now(),
                    "order_key": f"lead:{n}",
                    "body": b"{}",
                    "status": "pending",
                    "next_attempt_at": later + timedelta(seconds=n),
                    "created_at": clock.now(),
                    "updated_at": clock.now(),
                }
                for n, i in enumerate([*rest, first])
            ]
            async with service.engine.begin() as conn:
                assert await store.enqueue(conn, rows) == len(ids)

            async with service.engine.connect() as holder:
                held = await holder.begin()
                d = store.deliveries
                await holder.execute(select(d.c.delivery_id).where(d.c.delivery_id == first).with_for_update())
                holder_pid = int(await holder.scalar(text("SELECT pg_backend_pid()")))

                narrow = asyncio.create_task(client.patch(f"{HOOKS}/{sid}", json={"event_types": [DISCOVERED]}))
                waiting = await wait_for(
                    lambda: _waiting_for(service, holder_pid, 1), what="the narrowing waiting for the first delivery"
                )
                enable = asyncio.create_task(client.post(f"{HOOKS}/{sid}/enable"))
                waiting = await wait_for(lambda: _waiting_for(service, holder_pid, 2), what="the enable waiting too")
                assert not narrow.done() and not enable.done()
                # Neither holds a delivery while it waits: every other row of the queue is free.
                async with service.engine.begin() as probe:
                    free = await probe.scalars(
                        select(d.c.delivery_id)
                        .where(d.c.subscription_id == uuid.UUID(sid))
                        .with_for_update(read=True, skip_locked=True)
                    )
                    assert sorted(free.all()) == rest, waiting
                await held.commit()

            changed, enabled = await narrow, await enable
            assert changed.status_code == 200, changed.text
            assert enabled.status_code == 200, enabled.text
            now = (await client.get(f"{HOOKS}/{sid}")).json()
            assert now["state"] == "active" and now["event_types"] == [DISCOVERED] and now["consecutive_failures"] == 0
            by_id = {r.delivery_id: r for r in await delivery_rows(service, sid)}
            for i in ids:
                row = by_id[i]
                if types[i] == REPLIED:
                    assert (row.status, row.cancel_reason, row.next_attempt_at) == ("cancelled", UNSUBSCRIBED, None)
                else:  # due now (their attempts, if under way, are held by the receiver and not recorded yet)
                    assert (row.status, row.next_attempt_at, row.attempts) == ("pending", clock.now(), 0), row
            holding.release.set()
            await drain(service, sid)


async def _waiting_for(service: Service, holder: int, n: int) -> dict[int, list[int]] | None:
    """The lock waiters once ``n`` of them wait on ``holder``, directly or behind another waiter."""
    waiters = await _lock_waiters(service)

    def reaches(pid: int, seen: frozenset[int] = frozenset()) -> bool:
        return any(b == holder or (b in waiters and b not in seen and reaches(b, seen | {pid})) for b in waiters[pid])

    return waiters if sum(reaches(p) for p in waiters) >= n else None
