"""The durable job sweep: submits queued renders to the studio and fails jobs whose deadline passed.

Jobs are Postgres rows claimed with ``FOR UPDATE SKIP LOCKED``, so several replicas can sweep and a
restart loses nothing: a job's deadline is a column, compared with the injected clock on every sweep.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from leadstream_schemas import Envelope, Event, VideoFailed, derive_id
from sqlalchemy import select, update
from sqlalchemy.engine import Row

from services.runtime.consumer import is_infrastructure_error
from services.runtime.providers import ProviderError, RateLimited
from services.runtime.service import Service

from . import domain
from .adapters import RenderRequest, VideoStudio
from .store import jobs

log = logging.getLogger(__name__)


def outcome_envelope(service: Service, job: Row[Any], event: Event) -> Envelope[Any]:
    """The envelope of a job's outcome: caused by its ``VideoRequested``, with an id fixed per job and type.

    The fixed id means a second outcome of the same kind could never be published twice, on top of
    the status check that allows one outcome per job.
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
    )


class JobSweeper:
    """Submits queued jobs and times out late ones, in a loop run as a service task."""

    def __init__(
        self,
        service: Service,
        studio: VideoStudio,
        *,
        callback_url: str,
        timeout_s: float,
        poll_s: float,
        batch_size: int = 50,
        submit_backoff_s: float = 5.0,
    ) -> None:
        self.service = service
        self.studio = studio
        self.callback_url = callback_url
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.submit_backoff_s = submit_backoff_s

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until ``stop`` is set; errors are logged and the next sweep tries again."""
        while not stop.is_set():
            try:
                await self.expire_due()
                await self.submit_due()
            except Exception as exc:
                if is_infrastructure_error(exc):
                    log.warning("video sweep: infrastructure error; retrying", extra={"error": repr(exc)})
                else:
                    log.exception("video sweep failed; retrying")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
            except TimeoutError:
                pass

    async def expire_due(self) -> int:
        """Fail every open job whose deadline passed (``VideoFailed(reason="timeout")``); returns how many."""
        now = self.service.clock.now()
        async with self.service.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(jobs)
                    .where(jobs.c.status.in_(domain.OPEN_STATUSES), jobs.c.deadline_at <= now)
                    .order_by(jobs.c.deadline_at)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            envs = []
            for job in rows:
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.video_job_id == job.video_job_id)
                    .values(
                        status="failed",
                        failure_reason="timeout",
                        completed_at=now,
                        failure_detail=f"no callback within {self.timeout_s:g}s",
                    )
                )
                event = VideoFailed(
                    lead_id=job.lead_id,
                    campaign_id=job.campaign_id,
                    video_job_id=job.video_job_id,
                    reason="timeout",
                    detail=f"no video from the studio within {self.timeout_s:g}s",
                )
                envs.append(outcome_envelope(self.service, job, event))
            await self.service.emit(conn, envs)
        if rows:
            self.service.wake_relay()
        return len(rows)

    async def submit_due(self) -> int:
        """Submit queued jobs to the studio; transient failures are retried later, permanent ones fail the job."""
        now = self.service.clock.now()
        async with self.service.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(jobs)
                    .where(jobs.c.status == "queued", jobs.c.next_attempt_at <= now)
                    .order_by(jobs.c.next_attempt_at)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            envs = []
            for job in rows:
                request = RenderRequest(
                    video_job_id=job.video_job_id,
                    template_id=job.template_id,
                    variables=dict(job.variables),
                    callback_url=self.callback_url,
                    title=f"lead {job.lead_id}",
                )
                where = jobs.c.video_job_id == job.video_job_id
                try:
                    accepted = await self.studio.render(request)
                except RateLimited as exc:
                    later = now + timedelta(seconds=exc.retry_after_s)
                    await conn.execute(update(jobs).where(where).values(next_attempt_at=later))
                    continue
                except ProviderError as exc:
                    attempts = job.submit_attempts + 1
                    if exc.transient:
                        wait = min(self.submit_backoff_s * 2 ** (attempts - 1), 600.0)
                        await conn.execute(
                            update(jobs)
                            .where(where)
                            .values(submit_attempts=attempts, next_attempt_at=now + timedelta(seconds=wait))
                        )
                        continue
                    await conn.execute(
                        update(jobs)
                        .where(where)
                        .values(
                            status="failed",
                            failure_reason="provider_error",
                            failure_detail=str(exc),
                            submit_attempts=attempts,
                            completed_at=now,
                        )
                    )
                    event = VideoFailed(
                        lead_id=job.lead_id,
                        campaign_id=job.campaign_id,
                        video_job_id=job.video_job_id,
                        reason="provider_error",
                        detail=str(exc),
                    )
                    envs.append(outcome_envelope(self.service, job, event))
                    continue
                await conn.execute(
                    update(jobs)
                    .where(where)
                    .values(
                        status="rendering",
                        provider_job_id=accepted.provider_job_id,
                        submit_attempts=job.submit_attempts + 1,
                    )
                )
            await self.service.emit(conn, envs)
        if envs:
            self.service.wake_relay()
        return len(rows)
