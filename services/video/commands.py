"""Video's write commands the routes call: a verified studio callback -> the job's outcome.

The route verifies the callback's signature and reads its body; the command reads the payload, records the
callback and its message id, and finishes the job (``VideoGenerated`` or ``VideoFailed`` to the outbox), all in
one transaction, so a replay or a second delivery never produces a second outcome and a callback after the
timeout changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from leadstream_schemas import Event, VideoFailed, VideoGenerated
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.clock import Clock
from services.runtime.errors import Problem
from services.runtime.links import link_refusal
from services.runtime.service import Service
from services.runtime.webhooks import VerifiedWebhook, remember

from . import domain
from .deletions import request_deletion
from .jobs import outcome_envelope
from .store import callbacks, jobs, seen_webhooks


@dataclass(frozen=True)
class Handled:
    """What a callback did: ``outcome`` (generated, failed, replay, unknown_job, late, duplicate, erased) and its
    job."""

    outcome: str
    video_job_id: UUID | None


def read_callback(body: bytes) -> tuple[Any, domain.CallbackResult]:
    """The callback's JSON and what it says; a 422 ``invalid_callback`` naming the field when it is malformed."""
    try:
        payload = json.loads(body)
    except ValueError as exc:  # not JSON, or not UTF-8 text
        raise _invalid(domain.CallbackError(str(exc), "body")) from None
    try:
        return payload, domain.parse_callback(payload)
    except domain.CallbackError as exc:
        raise _invalid(exc) from None
    except ValueError as exc:  # a value the reading did not foresee: still the callback's fault, not a 500
        raise _invalid(domain.CallbackError(str(exc), "body")) from None


def _invalid(exc: domain.CallbackError) -> Problem:
    return Problem(
        422,
        "invalid_callback",
        str(exc),
        errors=[{"field": field, "message": str(exc)} for field in exc.fields],
    )


async def _record(
    conn: AsyncConnection, msg_id: str, job_id: UUID | None, outcome: str, payload: Any, now: datetime
) -> None:
    await conn.execute(
        insert(callbacks).values(msg_id=msg_id, video_job_id=job_id, outcome=outcome, payload=payload, received_at=now)
    )


async def handle_callback(
    service: Service,
    hook: VerifiedWebhook,
    body: bytes,
    *,
    link_hosts: list[str],
    wall: Clock,
    wake_deletions: Callable[[], None] = lambda: None,
) -> Handled:
    """A verified callback -> ``VideoGenerated`` or ``VideoFailed`` (once per job), recorded with its message id.

    A video link that is not https on one of ``link_hosts`` fails the job (``VideoFailed`` rejected): it is
    never sent. ``wall`` is the real clock the message id is remembered with (its retention counts real time).
    A finished video of an erased lead (the studio rendered it after the deletion) is deleted at the studio again:
    its deletion is asked for once more and ``wake_deletions`` wakes the deletion loop after the commit.
    """
    payload, result = read_callback(body)
    if result.kind == "completed" and result.video_url is not None:
        refused = link_refusal(result.video_url, link_hosts)
        if refused is not None:
            result = replace(result, kind="failed", video_url=None, error=f"video link {refused}", rejected=True)
    now = service.clock.now()
    cond = (
        jobs.c.video_job_id == result.external_id
        if result.external_id is not None
        else jobs.c.provider_job_id == result.provider_job_id
    )
    async with service.engine.begin() as conn:
        if not await remember(conn, seen_webhooks, hook, wall.now()):
            # A delivery seen before: recorded as a replay, without the links when its lead was erased since.
            status = await conn.scalar(select(jobs.c.status).where(cond))
            if status is not None and domain.callback_decision(status, None) == "erased":
                payload = domain.without_links(payload)
            await _record(conn, hook.msg_id, result.external_id, "replay", payload, now)
            return Handled("replay", result.external_id)
        job = (await conn.execute(select(jobs).where(cond).with_for_update())).first()
        if job is None:
            await _record(conn, hook.msg_id, None, "unknown_job", payload, now)
            return Handled("unknown_job", result.external_id)
        decision = domain.callback_decision(job.status, job.failure_reason)
        delete_again = False
        if decision == "erased":  # the lead's links are not kept: the video is deleted at the studio
            payload = domain.without_links(payload)
            provider_id = job.provider_job_id or result.provider_job_id
            if result.kind == "completed" and provider_id is not None:
                await request_deletion(conn, job, now, provider_job_id=provider_id, again=True)
                delete_again = True
        if decision != "accept":
            await _record(conn, hook.msg_id, job.video_job_id, decision, payload, now)
        else:
            await _accept(service, conn, hook, job, result, payload, now)
    # Committed: the relay publishes the outcome now, the deletion loop deletes the video now (both nap otherwise).
    if decision == "accept":
        service.wake_relay()
        return Handled(_outcome(result), job.video_job_id)
    if delete_again:
        wake_deletions()
    return Handled(decision, job.video_job_id)


def _outcome(result: domain.CallbackResult) -> Literal["generated", "failed"]:
    return "generated" if result.kind == "completed" else "failed"


async def _accept(
    service: Service,
    conn: AsyncConnection,
    hook: VerifiedWebhook,
    job: Any,
    result: domain.CallbackResult,
    payload: Any,
    now: datetime,
) -> None:
    """The job's outcome from its first accepted callback: the job updated, the callback recorded, the event to the
    outbox (in the caller's transaction)."""
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
    else:
        reason: Literal["provider_error", "rejected"] = "rejected" if result.rejected else "provider_error"
        values = {"status": "failed", "failure_reason": reason, "failure_detail": result.error}
        event = VideoFailed(
            lead_id=job.lead_id,
            campaign_id=job.campaign_id,
            video_job_id=job.video_job_id,
            reason=reason,
            detail=result.error,
        )
    await conn.execute(
        update(jobs)
        .where(jobs.c.video_job_id == job.video_job_id)
        .values(**values, provider_job_id=provider_id, completed_at=now)
    )
    await _record(conn, hook.msg_id, job.video_job_id, _outcome(result), payload, now)
    await service.emit(conn, [outcome_envelope(service, job, event)])
