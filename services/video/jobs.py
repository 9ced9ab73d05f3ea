"""The durable job sweep: submits queued renders to the studio and fails jobs whose deadline passed.

Jobs are Postgres rows claimed one at a time by the runtime's durable-timer loop (``FOR UPDATE SKIP
LOCKED``, one transaction per job), so several replicas can sweep, a restart loses nothing (a job's
deadline is a column, compared with the injected clock) and a studio error on one job never undoes or
resubmits another. A rate limit waits as the studio asks; a transient error is retried with backoff
(``video_submit_backoff_s``, doubling, up to ``video_submit_max_attempts``); a permanent one, or the last
attempt, fails the job (``VideoFailed(provider_error)``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from operator import attrgetter
from typing import Any

from leadstream_schemas import Envelope, Event, VideoFailed, derive_id
from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.service import Service
from services.runtime.telemetry import continued
from services.runtime.timers import DurableTimers, Failure

from . import domain
from .adapters import RenderRequest, VideoStudio
from .settings import VideoSettings
from .store import jobs

log = logging.getLogger(__name__)


def outcome_envelope(service: Service, job: Row[Any], event: Event) -> Envelope[Any]:
    """The envelope of a job's outcome: caused by its ``VideoRequested``, with an id fixed per job and type.

    The fixed id means a second outcome of the same kind could never be published twice, on top of
    the status check that allows one outcome per job. It continues the job's trace: the current span's when
    it is part of it (the job's timer), else the job's own (a studio's callback is a request of another trace).
    """
    return Envelope(
        data=event,
        workspace_id=job.workspace_id,
        source=service.source,
        id=derive_id(job.requested_event_id, event.event_type, "outcome"),
        time=service.clock.now(),
        campaign_id=str(job.campaign_id),
        correlation_id=job.correlation_id or job.requested_event_id,
        causation_id=job.requested_event_id,
        traceparent=continued(job.traceparent),
    )


CLAIMABLE_AT = func.least(jobs.c.deadline_at, jobs.c.next_attempt_at)
"""When a job becomes claimable, or earlier: its deadline (any open job), or its next submit (a queued one). Not
``next_attempt_at`` alone (the timers' ``due``): a job is claimable at its deadline whatever that says."""


def claimable(now: datetime) -> Select[Any]:
    """Open jobs past their deadline (to fail) and queued jobs due for a submit, the most overdue first."""
    late = and_(jobs.c.status.in_(domain.OPEN_STATUSES), jobs.c.deadline_at <= now)
    due = and_(jobs.c.status == "queued", jobs.c.next_attempt_at <= now)
    return select(jobs).where(or_(late, due)).order_by(CLAIMABLE_AT)


class JobSweeper:
    """Submits queued jobs and times out late ones, one job per transaction (``timers.loop`` is the task)."""

    def __init__(self, service: Service, studio: VideoStudio, settings: VideoSettings) -> None:
        self.service = service
        self.studio = studio
        self.callback_url = settings.callback_url()
        self.timeout_s = settings.video_timeout_s
        self.timers = DurableTimers(
            name="video_jobs",
            service=service,
            table=jobs,
            due=jobs.c.next_attempt_at,
            attempts=jobs.c.submit_attempts,
            claimable=claimable,
            claimable_at=CLAIMABLE_AT,
            run=self._run,
            failed=self._failed,
            schedule=settings.jobs_schedule(),
            traceparent=attrgetter("traceparent"),
        )

    async def _run(self, conn: AsyncConnection, job: Row[Any], now: datetime) -> None:
        if job.deadline_at <= now:
            await self._fail(conn, job, now, "timeout", f"no video from the studio within {self.timeout_s:g}s")
            return
        request = RenderRequest(
            video_job_id=job.video_job_id,
            template_id=job.template_id,
            variables=dict(job.variables),
            callback_url=self.callback_url,
            title=f"lead {job.lead_id}",
        )
        accepted = await self.studio.render(request)
        await conn.execute(
            update(jobs)
            .where(jobs.c.video_job_id == job.video_job_id)
            .values(
                status="rendering", provider_job_id=accepted.provider_job_id, submit_attempts=job.submit_attempts + 1
            )
        )

    async def _failed(self, conn: AsyncConnection, job: Row[Any], failure: Failure) -> None:
        """A submit failed: retried (the runtime moved ``next_attempt_at``), or the job fails for good."""
        if failure.retry_at is None and job.status in domain.OPEN_STATUSES:
            queued = job.status == "queued"
            reason, detail = ("provider_error", str(failure.error)) if queued else ("timeout", failure.detail)
            await self._fail(conn, job, failure.now, reason, detail)

    async def _fail(self, conn: AsyncConnection, job: Row[Any], now: datetime, reason: str, detail: str) -> None:
        values = {"status": "failed", "failure_reason": reason, "failure_detail": detail, "completed_at": now}
        await conn.execute(update(jobs).where(jobs.c.video_job_id == job.video_job_id).values(**values))
        event = VideoFailed(
            lead_id=job.lead_id,
            campaign_id=job.campaign_id,
            video_job_id=job.video_job_id,
            reason=reason,
            detail=detail,
        )
        await self.service.emit(conn, [outcome_envelope(self.service, job, event)])
