"""The durable timer loop: claims due timers with ``FOR UPDATE SKIP LOCKED`` and runs each in its own
transaction, so any number of replicas can run it and a crash loses nothing (an uncommitted timer is
simply claimed again; the provider dedupes the repeated request id).

Timer kinds: ``step`` (a workflow step for a lead), ``accept_wait`` (an invite's acceptance deadline),
``campaign_start`` (a scheduled campaign starts two hours before its first window) and ``inbound``
(a provider fact due at a time: the simulated provider's acceptances and replies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from leadstream_schemas import Action, ActionFailed
from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.consumer import is_infrastructure_error
from services.runtime.service import Service

from . import lifecycle as lc
from . import timers as tm
from .domain.workflow import Graph
from .emit import RootEmitter
from .steps import StepExecutor
from .store import campaigns, enrollments, timers

log = logging.getLogger(__name__)


class Runner:
    """Runs due timers: ``run_due_timers_once()`` for tests, ``loop()`` as the service's background task."""

    def __init__(self, service: Service, executor: StepExecutor, *, poll_interval_s: float, max_attempts: int) -> None:
        self.service = service
        self.executor = executor
        self.poll_interval_s = poll_interval_s
        self.max_attempts = max_attempts
        self.healthy = True
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look at the timers now (something just became due)."""
        self._wake.set()

    async def run_due_timers_once(self, limit: int = 10_000) -> int:
        """Run every timer due at the clock's current time (up to ``limit``); returns how many ran."""
        ran = 0
        while ran < limit:
            now = self.service.clock.now()
            outcome = await self._run_one(now)
            if outcome is None:
                break
            ran += 1
        return ran

    async def next_due_at(self) -> datetime | None:
        """When the next timer of a running campaign is due (tests jump a fake clock there)."""
        async with self.service.engine.connect() as conn:
            return await tm.next_due_at(conn)

    async def loop(self, stop: asyncio.Event) -> None:
        """Background task: run due timers until ``stop``; idle polls every ``poll_interval_s`` (real time)."""
        backoff = self.poll_interval_s
        while not stop.is_set():
            try:
                ran = await self.run_due_timers_once(limit=200)
                self.healthy = True
                backoff = self.poll_interval_s
            except Exception as exc:
                self.healthy = False
                log.warning("timer loop failed; retrying", extra={"error": repr(exc)})
                ran = 0
                backoff = min(backoff * 2, 5.0)
            if ran:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait(stop), timeout=backoff)

    async def _wait(self, stop: asyncio.Event) -> None:
        stopper = asyncio.create_task(stop.wait())
        waker = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait({stopper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            waker.cancel()

    # -- one timer -------------------------------------------------------------------------------

    async def _run_one(self, now: datetime) -> str | None:
        """Claim and run one due timer in its own transaction; None when nothing is due."""
        claimed: Row[Any] | None = None
        try:
            async with self.service.engine.begin() as conn:
                claimed = await tm.claim_one(conn, now)
                if claimed is None:
                    return None
                em = RootEmitter(self.service, claimed.workspace_id)
                await self._dispatch(conn, em, claimed, now)
                await em.flush(conn)
        except Exception as exc:
            if claimed is None or is_infrastructure_error(exc):
                raise
            log.exception("timer failed", extra={"timer_id": claimed.id, "kind": claimed.kind})
            await self._record_failure(claimed, now, exc)
            return "failed"
        self.service.wake_relay()
        return claimed.kind

    async def _dispatch(self, conn: AsyncConnection, em: RootEmitter, timer: Row[Any], now: datetime) -> None:
        if timer.kind == "step":
            await self.executor.run(conn, em, timer, now)
        elif timer.kind == "accept_wait":
            await self._accept_deadline(conn, em, timer, now)
        elif timer.kind == "campaign_start":
            await self._campaign_start(conn, em, timer, now)
        elif timer.kind == "inbound":
            await self._inbound(conn, em, timer, now)
        else:
            await tm.finish(conn, timer.id, now, f"unknown kind {timer.kind}", state="cancelled")

    async def _accept_deadline(self, conn: AsyncConnection, em: RootEmitter, timer: Row[Any], now: datetime) -> None:
        enrollment = (
            await conn.execute(
                select(enrollments)
                .where(enrollments.c.campaign_id == timer.campaign_id, enrollments.c.lead_id == timer.lead_id)
                .with_for_update()
            )
        ).first()
        if enrollment is None or enrollment.state != "active":
            await tm.finish(conn, timer.id, now, "lead not active", state="cancelled")
            return
        campaign = (
            await conn.execute(select(campaigns.c.workflow).where(campaigns.c.campaign_id == timer.campaign_id))
        ).one()
        await tm.finish(conn, timer.id, now, "not_accepted")
        await lc.accept_deadline(conn, em, enrollment, Graph.from_dict(campaign.workflow), timer.step_id, now)
        await lc.complete_if_done(conn, em, enrollment, now)

    async def _campaign_start(self, conn: AsyncConnection, em: RootEmitter, timer: Row[Any], now: datetime) -> None:
        campaign = (
            await conn.execute(select(campaigns).where(campaigns.c.campaign_id == timer.campaign_id).with_for_update())
        ).first()
        if campaign is None or campaign.state != "scheduled":
            await tm.finish(
                conn, timer.id, now, f"campaign {campaign.state if campaign else 'gone'}", state="cancelled"
            )
            return
        await lc.start_running(conn, em, campaign, now)
        await tm.finish(conn, timer.id, now, "started")

    async def _inbound(self, conn: AsyncConnection, em: RootEmitter, timer: Row[Any], now: datetime) -> None:
        payload = dict(timer.payload)
        key = f"inbound:{timer.key}"
        if payload.get("type") == "accepted":
            await lc.apply_acceptance(
                conn,
                em,
                campaign_id=timer.campaign_id,
                lead_id=timer.lead_id,
                workspace_id=timer.workspace_id,
                step_id=timer.step_id,
                account_id=timer.account_id,
                now=now,
                key=key,
            )
        elif payload.get("type") == "replied":
            await lc.apply_reply(
                conn,
                em,
                timer.workspace_id,
                timer.lead_id,
                channel=payload.get("channel", "message"),
                received_at=timer.due_at,
                now=now,
                key=key,
                excerpt=payload.get("text"),
                out_of_office=bool(payload.get("out_of_office")),
            )
        await tm.finish(conn, timer.id, now, str(payload.get("type")))

    async def _record_failure(self, timer: Row[Any], now: datetime, exc: Exception) -> None:
        """A bug or unexpected answer while running a timer: retry later, and give up after ``max_attempts``."""
        attempts = timer.attempts + 1
        async with self.service.engine.begin() as conn:
            if attempts < self.max_attempts:
                await conn.execute(
                    update(timers)
                    .where(timers.c.id == timer.id)
                    .values(attempts=attempts, due_at=now + timedelta(minutes=2**attempts), updated_at=now)
                )
                return
            await tm.finish(conn, timer.id, now, f"failed: {type(exc).__name__}: {exc}"[:500], state="failed")
            if timer.kind == "step" and timer.lead_id is not None:
                em = RootEmitter(self.service, timer.workspace_id)
                campaign = (
                    await conn.execute(select(campaigns.c.workflow).where(campaigns.c.campaign_id == timer.campaign_id))
                ).first()
                action = Graph.from_dict(campaign.workflow).step(timer.step_id).action if campaign else "message"
                em.emit(
                    ActionFailed(
                        lead_id=timer.lead_id,
                        campaign_id=timer.campaign_id,
                        account_id=timer.account_id,
                        step_id=timer.step_id,
                        action=Action(action),
                        reason="internal_error",
                        detail=f"{type(exc).__name__}: {exc}"[:500],
                        retryable=False,
                    ),
                    f"failed:{timer.key}",
                )
                # The lead stops here (its other steps too), so it neither waits forever nor blocks the finish.
                await tm.cancel_lead(conn, timer.workspace_id, timer.lead_id, now, "failed", timer.campaign_id)
                await lc.end_lead(conn, timer.campaign_id, timer.lead_id, timer.workspace_id, "failed", now)
                await lc.maybe_finish_campaign(conn, em, timer.campaign_id, now)
                await em.flush(conn)
