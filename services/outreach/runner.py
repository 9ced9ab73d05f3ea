"""Outreach's durable timers, run by the runtime's one claim loop (``services/runtime/timers.py``).

Two kinds of rows are due here:

- ``outreach.timers`` (campaign time): ``step`` (a workflow step for a lead), ``accept_wait`` (an
  invite's acceptance deadline), ``campaign_start`` (a scheduled campaign starts two hours before its
  first window), ``audience_run`` (two hours before each window of a running campaign its audience's
  searches run: ``audience.py``) and ``inbound`` (a provider fact due at a time: the simulated provider's
  acceptances and replies) and ``sender_check`` (ask the email provider whether a sender address was confirmed:
  ``senders.py``). Each runs in the transaction that claimed it; a step that sends commits its send intent
  there and the provider is called after the commit (``steps.py``, ``sends.py``);
- ``outreach.sends`` rows still ``pending`` (wall-clock time): send intents whose answer was lost,
  reconciled by asking the provider (:meth:`StepExecutor.lookup`) and settled like a fresh answer.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from operator import attrgetter
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.clock import SystemClock
from services.runtime.service import Service
from services.runtime.timers import DurableTimers, Failure, Schedule, Then

from . import audience
from . import lifecycle as lc
from . import sends as intents
from . import timers as tm
from .emit import RootEmitter
from .senders import SENDER_CHECK, Senders
from .settings import OutreachSettings
from .steps import PendingSend, StepExecutor
from .store import campaigns, enrollments, sends, timers
from .versions import graph_of

log = logging.getLogger(__name__)

STEP_RETRY_S = 120.0
"""A timer whose work failed is tried again after 2, 4, 8... minutes (campaign time)."""
LOOKUP_RETRY_MAX_S = 3600.0


class Runner:
    """Runs due timers and reconciles lost send answers: ``run_due_timers_once()`` for tests, the two
    :class:`DurableTimers` loops (``timers`` and ``intents``) as the service's background tasks."""

    def __init__(self, service: Service, executor: StepExecutor, settings: OutreachSettings, senders: Senders) -> None:
        self.service = service
        self.executor = executor
        self.settings = settings
        self.senders = senders
        self.timers = DurableTimers(
            name="outreach",
            service=service,
            table=timers,
            due=timers.c.due_at,
            attempts=timers.c.attempts,
            claimable=tm.claimable,
            # The idle loop naps until the earliest due_at (the default claimable_at): never later than a timer
            # becomes claimable, since a claimable one has due_at past; a limit-paused account only makes it later.
            run=self._run,
            failed=self._failed,
            schedule=Schedule(
                max_attempts=settings.timer_max_attempts,
                retry_initial_s=STEP_RETRY_S,
                retry_max_s=STEP_RETRY_S * 2**settings.timer_max_attempts,
                poll_interval_s=settings.timer_poll_interval_s,
            ),
            traceparent=attrgetter("traceparent"),
        )
        self.intents = DurableTimers(
            name="outreach_send_intents",
            service=service,
            clock=SystemClock(),  # a lost answer is asked for after real seconds: calls take real time
            table=sends,
            due=sends.c.reconcile_at,
            attempts=sends.c.reconcile_attempts,
            claimable=intents.reconcilable,
            run=self._reconcile,
            failed=self._reconcile_failed,
            schedule=Schedule(
                max_attempts=settings.send_reconcile_max_attempts,
                retry_initial_s=settings.send_reconcile_after_s,
                retry_max_s=max(LOOKUP_RETRY_MAX_S, settings.send_reconcile_after_s),
                poll_interval_s=settings.timer_poll_interval_s,
            ),
            traceparent=attrgetter("traceparent"),
        )

    def wake(self) -> None:
        """Look at the timers now (something just became due)."""
        self.timers.wake()

    async def run_due_timers_once(self, limit: int = 10_000) -> int:
        """Run every timer due at the clock's current time and every send to reconcile; returns how many ran."""
        ran = 0
        while ran < limit:
            done = await self.timers.run_due(limit - ran)
            done += await self.intents.run_due(limit - ran - done)
            if not done:
                break
            ran += done
        return ran

    async def next_due_at(self) -> datetime | None:
        """When the next timer of a running campaign is due (tests jump a fake clock there)."""
        async with self.service.engine.connect() as conn:
            return await tm.next_due_at(conn)

    # -- timers ----------------------------------------------------------------------------------

    async def _run(self, conn: AsyncConnection, timer: Row[Any], now: datetime) -> Then[intents.Answer] | None:
        em = RootEmitter(self.service, timer.workspace_id)
        pending = await self._dispatch(conn, em, timer, now)
        await em.flush(conn)
        if pending is None:
            return None
        return Then(partial(self.executor.send, pending), partial(self._settle, pending.key))

    async def _dispatch(
        self, conn: AsyncConnection, em: RootEmitter, timer: Row[Any], now: datetime
    ) -> PendingSend | None:
        if timer.kind == "step":
            return await self.executor.run(conn, em, timer, now)
        if timer.kind == "accept_wait":
            await self._accept_deadline(conn, em, timer, now)
        elif timer.kind == "campaign_start":
            await self._campaign_start(conn, em, timer, now)
        elif timer.kind == "inbound":
            await self._inbound(conn, em, timer, now)
        elif timer.kind == audience.AUDIENCE_RUN:
            await audience.run_timer(conn, em, timer, now)
        elif timer.kind == lc.LEAD_RESUME:
            await lc.resume_lead(conn, em, timer, now)
        elif timer.kind == SENDER_CHECK:
            await self.senders.run_timer(conn, em, timer, now)
        else:
            await tm.finish(conn, timer.id, now, f"unknown kind {timer.kind}", state="cancelled")
        return None

    async def _settle(self, key: intents.IntentKey, conn: AsyncConnection, answer: intents.Answer, _: datetime) -> None:
        """Record a send's answer; in campaign time (the reconciler's own clock is the wall clock)."""
        em = RootEmitter(self.service, key.workspace_id)
        await self.executor.settle(conn, em, key, answer, self.service.clock.now())
        await em.flush(conn)

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
        campaign = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == timer.campaign_id))).one()
        await tm.finish(conn, timer.id, now, "not_accepted")
        graph = await graph_of(conn, campaign, enrollment.workflow_version)
        await lc.accept_deadline(conn, em, enrollment, graph, timer.step_id, now)
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
                text=payload.get("text"),
            )
        await tm.finish(conn, timer.id, now, str(payload.get("type")))

    async def _failed(self, conn: AsyncConnection, timer: Row[Any], failure: Failure) -> None:
        """A bug or unexpected answer while running a timer: retried later (by the runtime); after
        ``timer_max_attempts`` the timer fails, and a step's lead with it (ActionFailed internal_error)."""
        if failure.retry_at is not None:
            return
        em = RootEmitter(self.service, timer.workspace_id)
        run = None
        if timer.kind == "step":
            run = await self.executor.resume(conn, em, timer.campaign_id, timer.lead_id, timer.step_id, failure.now)
        if run is None:
            await tm.finish(conn, timer.id, failure.now, f"failed: {failure.detail}", state="failed")
        else:  # the lead stops here (its other steps too), so it neither waits forever nor blocks the finish
            await self.executor.fail(run, "internal_error", failure.detail)
        await em.flush(conn)

    # -- send intents ----------------------------------------------------------------------------

    async def _reconcile(self, conn: AsyncConnection, intent: Row[Any], now: datetime) -> Then[intents.Answer]:
        """Lease the intent to this replica, then (after the commit) ask the provider and settle the answer."""
        key = intents.IntentKey.of(intent)
        await intents.lease(conn, key, now + timedelta(seconds=self.settings.send_reconcile_after_s))
        log.info("reconciling a send whose answer was lost", extra={"request_id": str(intent.request_id)})
        return Then(partial(self.executor.lookup, intent), partial(self._settle, key))

    async def _reconcile_failed(self, conn: AsyncConnection, intent: Row[Any], failure: Failure) -> None:
        """The provider could not be asked (again later); after the last attempt the outcome is unknown."""
        if failure.retry_at is not None:
            return
        answer = intents.Unknowable(f"the provider could not be asked whether it was sent: {failure.detail}")
        await self._settle(intents.IntentKey.of(intent), conn, answer, failure.now)
