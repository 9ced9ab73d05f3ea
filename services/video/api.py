"""Video's HTTP API: the studio's signed callback, and job status per lead (workspace scoped).

The callback is verified (Standard Webhooks with ``LEADSTREAM_VIDEO_WEBHOOK_SECRET``, the body read with a
cap, timestamp tolerance) before anything is parsed or written: a bad signature is a 401 and leaves no
trace. A verified callback is recorded, and its message id remembered, in the same transaction as its
effect, so a replay or a second delivery never produces a second outcome, and a callback after the timeout
changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select

from services.runtime.auth import ReadWorkspace, public
from services.runtime.clock import Clock, SystemClock
from services.runtime.errors import Problem, problems
from services.runtime.secrets import KeyRing
from services.runtime.service import Service
from services.runtime.webhooks import DEFAULT_MAX_BYTES, verified_request

from . import commands
from .store import callbacks, deletions, jobs


class CallbackOut(BaseModel):
    """What the service did with a callback."""

    outcome: str
    video_job_id: UUID | None = None


class CallbackRecord(BaseModel):
    """A callback received for a job."""

    msg_id: str
    outcome: str
    received_at: datetime


class JobOut(BaseModel):
    """A lead's video job in a campaign."""

    video_job_id: UUID
    lead_id: UUID
    campaign_id: UUID
    status: str
    template_id: str
    variables: dict[str, str]
    fallbacks_used: list[str]
    provider_job_id: str | None
    video_url: str | None
    thumbnail_url: str | None
    failure_reason: str | None
    failure_detail: str | None
    requested_at: datetime
    deadline_at: datetime
    completed_at: datetime | None
    callbacks: list[CallbackRecord]
    studio_deletion: str | None = None
    """After the lead's erasure, the deletion of its video at the studio: pending, deleted or failed (the studio
    kept refusing); None when none was asked."""


def build_router(
    service: Service,
    *,
    keys: KeyRing,
    tolerance_s: int,
    link_hosts: list[str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    wall_clock: Clock | None = None,
    wake_deletions: Callable[[], None] = lambda: None,
) -> APIRouter:
    """The video routes. Signature timestamps are checked against ``wall_clock`` (real time by default); a
    video link is accepted only https on one of ``link_hosts`` (it is sent to the lead). ``wake_deletions`` wakes
    the studio deletion loop (a video rendered after its lead was erased is deleted again)."""
    router = APIRouter(prefix="/v1/video", tags=["video"])
    wall = wall_clock or SystemClock()
    service.limit_body("/v1/video/callback", max_bytes)  # capped before its signature is computed

    @router.post(
        "/callback",
        response_model=CallbackOut,
        openapi_extra=public("Standard Webhooks signature of the video studio"),
        responses=problems(401, 413, 422),
    )
    async def callback(request: Request) -> CallbackOut:
        """The studio's signed render callback -> ``VideoGenerated`` or ``VideoFailed`` (once per job). A video
        link that is not https on an allowed host fails the job (``VideoFailed`` rejected): it is never sent."""
        hook, body = await verified_request(request, keys, now=wall.now(), tolerance_s=tolerance_s)
        handled = await commands.handle_callback(
            service, hook, body, link_hosts=link_hosts, wall=wall, wake_deletions=wake_deletions
        )
        return CallbackOut(outcome=handled.outcome, video_job_id=handled.video_job_id)

    @router.get("/jobs/{lead_id}", response_model=JobOut, responses=problems(404))
    async def job_status(lead_id: UUID, ws: ReadWorkspace, campaign_id: UUID | None = None) -> JobOut:
        """The lead's video job (in ``campaign_id``, else the most recent one) with the callbacks received."""
        async with service.engine.connect() as conn:
            q = select(jobs).where(jobs.c.lead_id == lead_id, jobs.c.workspace_id == ws)
            if campaign_id is not None:
                q = q.where(jobs.c.campaign_id == campaign_id)
            job = (await conn.execute(q.order_by(jobs.c.requested_at.desc()).limit(1))).first()
            if job is None:
                raise Problem(404, "video_job_not_found", f"no video job for lead {lead_id} in this workspace")
            received = (
                await conn.execute(
                    select(callbacks).where(callbacks.c.video_job_id == job.video_job_id).order_by(callbacks.c.id)
                )
            ).all()
            deletion = await conn.scalar(select(deletions.c.status).where(deletions.c.video_job_id == job.video_job_id))
        return JobOut(
            video_job_id=job.video_job_id,
            lead_id=job.lead_id,
            campaign_id=job.campaign_id,
            status=job.status,
            template_id=job.template_id,
            variables=job.variables,
            fallbacks_used=job.fallbacks_used,
            provider_job_id=job.provider_job_id,
            video_url=job.video_url,
            thumbnail_url=job.thumbnail_url,
            failure_reason=job.failure_reason,
            failure_detail=job.failure_detail,
            requested_at=job.requested_at,
            deadline_at=job.deadline_at,
            completed_at=job.completed_at,
            callbacks=[CallbackRecord(msg_id=c.msg_id, outcome=c.outcome, received_at=c.received_at) for c in received],
            studio_deletion=deletion,
        )

    return router
