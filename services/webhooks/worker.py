"""The delivery worker: claims due deliveries, attempts them, and applies what :mod:`.domain` decides.

Each of ``concurrency`` loops takes one due delivery at a time in its own transaction (``FOR UPDATE SKIP
LOCKED``, so replicas share the work), holds its row lock during the attempt and commits the attempt's log
row, the delivery's next state and the endpoint's failure count together. A crash before the commit leaves
the delivery pending: it is attempted again with the same ``webhook-id`` (at-least-once; receivers dedupe).
A housekeeping loop refreshes the gauges and deletes finished deliveries older than the retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.runtime.clock import Clock
from services.runtime.faults import Backoff, Fault, classify, sleep_unless_stopped

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
    """Runs the delivery loops of one process as a service task."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
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
        self.engine = engine
        self.clock = clock
        self.sender = sender
        self.policy = policy
        self.disable_min_failures = disable_min_failures
        self.disable_after = disable_after
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.retention = retention
        self.housekeeping_s = housekeeping_s
        self.rng = rng or random.Random()
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set."""
        loops = [asyncio.create_task(self._loop(stop), name=f"webhooks-delivery-{i}") for i in range(self.concurrency)]
        loops.append(asyncio.create_task(self._housekeeping(stop), name="webhooks-housekeeping"))
        try:
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            await self.sender.aclose()

    async def _loop(self, stop: asyncio.Event) -> None:
        backoff = Backoff(initial_s=self.poll_s, max_s=30.0)
        while not stop.is_set():
            try:
                if await self.deliver_one():
                    backoff.reset()
                    continue
            except Exception as exc:
                fault = classify(exc)
                level = logging.WARNING if fault in (Fault.TRANSIENT, Fault.SUSPECT) else logging.ERROR
                log.log(level, "delivery loop failed; retrying", extra={"error": repr(exc), "fault": fault.value})
                if await backoff.wait(stop):
                    return
                continue
            await self._idle()

    async def _idle(self) -> None:
        """Wait for the next poll, or less when woken (an operator requeued deliveries or enabled an endpoint)."""
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=self.poll_s)

    async def deliver_one(self) -> bool:
        """Attempt one due delivery; False when none is due."""
        async with self.engine.begin() as conn:
            delivery = await store.claim_due(conn, self.clock.now())
            if delivery is None:
                return False
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
        return True

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
        if endpoint.state == State.ACTIVE and domain.should_disable(
            endpoint.consecutive_failures,
            endpoint.failing_since,
            now,
            min_failures=self.disable_min_failures,
            after=self.disable_after,
        ):
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
