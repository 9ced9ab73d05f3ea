"""What the API says about an endpoint and its deliveries when their state changes under it: the count in a
disabled endpoint's ``disabled_detail`` and a redelivered delivery. Real broker, database and HTTP receivers; a
fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.runtime.clock import FakeClock
from services.runtime.service import Service
from tests.services.webhooks.support import (
    api,
    delivery_rows,
    discovered,
    envelope,
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
                    assert body["delivered_at"] is None, body
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
