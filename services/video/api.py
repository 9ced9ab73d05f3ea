"""Video's HTTP API: the studio's signed callback, and job status per lead (workspace scoped).

The callback is verified (Standard Webhooks HMAC over the raw body, timestamp tolerance) before
anything is read or written: a bad signature is a 401 and leaves no trace. A verified callback is
recorded, and its message id remembered, in the same transaction as its effect, so a replay or a
second delivery never produces a second outcome, and a callback after the timeout changes nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from leadstream_schemas import Event, VideoFailed, VideoGenerated
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.auth import workspace_id
from services.runtime.clock import Clock, SystemClock
from services.runtime.errors import Problem
from services.runtime.service import Service
from services.runtime.webhooks import remember, verify

from . import domain
from .jobs import outcome_envelope
from .store import callbacks, jobs, seen_webhooks

Workspace = Annotated[str, Depends(workspace_id)]


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


async def _record(
    conn: AsyncConnection, msg_id: str, job_id: UUID | None, outcome: str, payload: Any, now: datetime
) -> None:
    await conn.execute(
        insert(callbacks).values(msg_id=msg_id, video_job_id=job_id, outcome=outcome, payload=payload, received_at=now)
    )


def build_router(service: Service, *, secret: str, tolerance_s: int, wall_clock: Clock | None = None) -> APIRouter:
    """The video routes. Signature timestamps are checked against ``wall_clock`` (real time by default)."""
    router = APIRouter(prefix="/v1/video", tags=["video"])
    wall = wall_clock or SystemClock()

    @router.post("/callback", response_model=CallbackOut)
    async def callback(request: Request) -> CallbackOut:
        """The studio's signed render callback -> ``VideoGenerated`` or ``VideoFailed`` (once per job)."""
        body = await request.body()
        hook = verify(secret, dict(request.headers), body, wall.now(), tolerance_s)
        try:
            payload = json.loads(body)
            result = domain.parse_callback(payload)
        except ValueError as exc:
            raise Problem(422, "invalid_callback", str(exc)) from None
        now = service.clock.now()
        async with service.engine.begin() as conn:
            if not await remember(conn, seen_webhooks, hook, now):
                await _record(conn, hook.msg_id, result.external_id, "replay", payload, now)
                return CallbackOut(outcome="replay", video_job_id=result.external_id)
            cond = (
                jobs.c.video_job_id == result.external_id
                if result.external_id is not None
                else jobs.c.provider_job_id == result.provider_job_id
            )
            job = (await conn.execute(select(jobs).where(cond).with_for_update())).first()
            if job is None:
                await _record(conn, hook.msg_id, None, "unknown_job", payload, now)
                return CallbackOut(outcome="unknown_job", video_job_id=result.external_id)
            decision = domain.callback_decision(job.status, job.failure_reason)
            if decision != "accept":
                await _record(conn, hook.msg_id, job.video_job_id, decision, payload, now)
                return CallbackOut(outcome=decision, video_job_id=job.video_job_id)
            event: Event
            provider_id = job.provider_job_id or result.provider_job_id
            if result.kind == "completed":
                assert result.video_url is not None
                values: dict[str, Any] = {
                    "status": "generated",
                    "video_url": result.video_url,
                    "thumbnail_url": result.thumbnail_url,
                }
                event = VideoGenerated(
                    lead_id=job.lead_id,
                    campaign_id=job.campaign_id,
                    video_job_id=job.video_job_id,
                    video_url=result.video_url,
                    thumbnail_url=result.thumbnail_url,
                )
                outcome = "generated"
            else:
                values = {"status": "failed", "failure_reason": "provider_error", "failure_detail": result.error}
                event = VideoFailed(
                    lead_id=job.lead_id,
                    campaign_id=job.campaign_id,
                    video_job_id=job.video_job_id,
                    reason="provider_error",
                    detail=result.error,
                )
                outcome = "failed"
            await conn.execute(
                update(jobs)
                .where(jobs.c.video_job_id == job.video_job_id)
                .values(**values, provider_job_id=provider_id, completed_at=now)
            )
            await _record(conn, hook.msg_id, job.video_job_id, outcome, payload, now)
            await service.emit(conn, [outcome_envelope(service, job, event)])
        service.wake_relay()
        return CallbackOut(outcome=outcome, video_job_id=job.video_job_id)

    @router.get("/jobs/{lead_id}", response_model=JobOut)
    async def job_status(lead_id: UUID, ws: Workspace, campaign_id: UUID | None = None) -> JobOut:
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
        )

    return router
