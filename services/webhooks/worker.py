"""The delivery worker: due deliveries are durable timers, claimed and attempted by the runtime's one loop.

The runtime's :class:`~services.runtime.timers.DurableTimers` claims one deliverable delivery at a time
(``FOR UPDATE SKIP LOCKED``, so replicas share the work; ``concurrency`` loops per process). The attempt
runs in the claim's transaction and holds the row lock, so a delivery's later events to the same endpoint
wait for it (per-key order), and the attempt's log row, the delivery's next state and the endpoint's
failure count commit together. A crash or a stop before the commit leaves the delivery pending: it is
attempted again with the same ``webhook-id`` (at-least-once; receivers dedupe).

A subscriber's failure is an outcome, not an error: :mod:`.domain` decides the next attempt (its own
exponential backoff with jitter) or the endpoint's disabling. Only a failure of ours (the database
refusing what we record) reaches the runtime's fault handling: a transient one makes the service
not-ready until the database answers, any other is retried with backoff and, after
``webhooks_max_attempts``, fails the delivery with the error in its log.
A housekeeping loop refreshes the gauges and deletes finished deliveries older than the retention.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.faults import sleep_unless_stopped
from services.runtime.service import Service
from services.runtime.timers import DurableTimers, Failure, Schedule, Then

from . import domain, store
from .domain import AttemptResult, DisabledReason, RetryPolicy, State, Status
from .metrics import ATTEMPT_SECONDS, ATTEMPTS, BACKLOG, DELIVERIES, DISABLED_NOW, ENDPOINTS_DISABLED
from .sender import Sender

log = logging.getLogger(__name__)


def signing_secrets(delivery: Row[Any], now: datetime) -> list[str]:
    """The secrets an attempt is signed with: the current one, and the previous one during its rotation window."""
    out = [delivery.secret]
    expires = delivery.previous_secret_expires_at
    if delivery.previous_secret and expires is not None and expires > now:
        out.append(delivery.previous_secret)
    return out


class DeliveryWorker:
    """The delivery loops of one process (durable timers on ``deliveries``) and its housekeeping task."""

    def __init__(
        self,
        service: Service,
        sender: Sender,
        policy: RetryPolicy,
        *,
        disable_min_failures: int,
        disable_after: timedelta,
        concurrency: int = 4,
        poll_s: float = 0.5,
        retention: timedelta = timedelta(days=30),
        housekeeping_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.service = service
        self.engine = service.engine
        self.clock = service.clock
        self.sender = sender
        self.policy = policy
        self.disable_min_failures = disable_min_failures
        self.disable_after = disable_after
        self.retention = retention
        self.housekeeping_s = housekeeping_s
        self.rng = rng or random.Random()
        self.timers = [
            DurableTimers(
                name=f"webhooks-delivery-{i}",
                service=service,
                table=store.deliveries,
                due=store.deliveries.c.next_attempt_at,
                attempts=store.deliveries.c.attempts,
                claimable=store.due_deliveries,
                run=self._attempt,
                failed=self._failed,
                schedule=Schedule(
                    max_attempts=policy.max_attempts,
                    retry_initial_s=policy.initial_s,
                    retry_max_s=policy.max_s,
                    poll_interval_s=poll_s,
                ),
            )
            for i in range(concurrency)
        ]

    def serve(self) -> None:
        """Run the delivery loops and the housekeeping as the service's background tasks; the sender is closed
        when the service stops, once the deliveries in hand are done."""
        for timers in self.timers:
            timers.serve()
        self.service.add_task(self._housekeeping)
        self.service.close_on_stop(self.sender)

    def wake(self) -> None:
        """Look for due deliveries now (an operator requeued deliveries or enabled an endpoint)."""
        for timers in self.timers:
            timers.wake()

    async def deliver_one(self) -> bool:
        """Attempt one due delivery; False when none is due."""
        return await self.timers[0].run_once() is not None

    async def _attempt(self, conn: AsyncConnection, delivery: Row[Any], now: datetime) -> Then[Any] | None:
        """Attempt the claimed delivery and record what follows, in the claim's transaction."""
        started_at = self.clock.now()
        try:
            result = await self.sender.send(
                delivery.url, delivery.body, str(delivery.event_id), signing_secrets(delivery, started_at)
            )
        except Exception as exc:  # a bug of ours must not loop on one delivery: it counts as a failed attempt
            log.exception("delivery attempt raised", extra={"delivery_id": str(delivery.delivery_id)})
            result = AttemptResult(False, 0, error=f"internal error: {type(exc).__name__}", outcome="internal")
        await self._apply(conn, delivery, result, started_at)
        ATTEMPTS.labels(result.outcome).inc()
        ATTEMPT_SECONDS.observe(result.duration_ms / 1000)
        return None

    async def _failed(self, conn: AsyncConnection, delivery: Row[Any], failure: Failure) -> None:
        """Recording an attempt failed (the runtime already set the attempt count and the retry time):
        keep the error in the delivery's log, and fail the delivery when the runtime gives up."""
        values: dict[str, Any] = {"last_error": failure.detail, "updated_at": failure.now}
        if failure.retry_at is None:
            values["status"] = Status.FAILED.value
            DELIVERIES.labels(Status.FAILED.value).inc()
        await conn.execute(
            update(store.deliveries).where(store.deliveries.c.delivery_id == delivery.delivery_id).values(**values)
        )

    async def _apply(
        self, conn: AsyncConnection, delivery: Row[Any], result: AttemptResult, started_at: datetime
    ) -> None:
        now = self.clock.now()
        after = domain.after_attempt(delivery.retry, result, self.policy, now, self.rng)
        await store.finish_attempt(
            conn,
            delivery,
            started_at=started_at,
            now=now,
            status=after.status,
            retry=after.retry,
            next_attempt_at=after.next_attempt_at,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=result.error,
            response_excerpt=result.response_excerpt,
        )
        if after.status is not Status.PENDING:
            DELIVERIES.labels(after.status.value).inc()
            log.info(
                "delivery %s",
                after.status.value,
                extra={"delivery_id": str(delivery.delivery_id), "attempts": delivery.attempts + 1},
            )
        if result.ok:
            await store.record_success(conn, delivery.subscription_id, now)
            return
        endpoint = await store.record_failure(conn, delivery.subscription_id, now)
        if endpoint is not None and domain.should_disable(
            endpoint.consecutive_failures,
            endpoint.failing_since,
            now,
            min_failures=self.disable_min_failures,
            after=self.disable_after,
        ):
            # The detail is written from the count this transaction just made, and the count no longer moves
            # while the endpoint is disabled (store.record_failure): the two keep agreeing.
            await store.set_subscription(
                conn,
                delivery.subscription_id,
                state=State.DISABLED.value,
                disabled_reason=DisabledReason.FAILING.value,
                disabled_detail=domain.disabled_detail(
                    endpoint.consecutive_failures, endpoint.failing_since, result.error
                ),
                disabled_at=now,
                updated_at=now,
            )
            ENDPOINTS_DISABLED.labels(DisabledReason.FAILING.value).inc()
            log.warning(
                "endpoint disabled after a run of failures",
                extra={"subscription_id": str(delivery.subscription_id), "failures": endpoint.consecutive_failures},
            )

    async def housekeeping(self) -> int:
        """Refresh the gauges and delete finished deliveries older than the retention; returns how many went."""
        async with self.engine.begin() as conn:
            pruned = await store.prune(conn, self.clock.now() - self.retention)
            BACKLOG.set(await store.backlog(conn))
            counts = await store.disabled_counts(conn)
        for reason in DisabledReason:
            DISABLED_NOW.labels(reason.value).set(counts.get(reason.value, 0))
        return pruned

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.housekeeping()
            except Exception as exc:
                log.warning("webhooks housekeeping failed; retrying", extra={"error": repr(exc)})
            if await sleep_unless_stopped(stop, self.housekeeping_s):
                return
