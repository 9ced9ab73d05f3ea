"""The durable deletion loop: asks the studio to delete the videos of erased leads, outside any handler's transaction.

``LeadErased``'s handler (:meth:`.handlers.VideoHandlers.on_lead_erased`) only writes a ``deletions`` row per video
the studio was given, in its transaction; this loop claims each due row (the runtime's :class:`DurableTimers`, one
row per transaction, ``FOR UPDATE SKIP LOCKED``), commits a lease, calls the studio after the commit (:class:`Then`)
and records the outcome in a new transaction. So a slow or failing studio never holds a consumer's transaction or
blocks the lead topic, a restart loses nothing, and several replicas share the rows.

A refused delete (a 503, a timeout, a rate limit) is retried after ``video_delete_backoff_s`` doubling up to six
hours (a rate limit when the studio asks), ``video_delete_max_attempts`` tries in all; a final refusal (a 4xx but
404/410, which mean deleted) or the last try ends the row ``failed`` with the error in ``last_error`` and an error
log line naming the job: never retried for ever, never dropped. A delete is idempotent at the studio, so a lease
that ran out during a slow call (another replica deleting the same video again) does no harm.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from sqlalchemy import Select, and_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.service import Service
from services.runtime.telemetry import current_traceparent
from services.runtime.timers import DurableTimers, Failure, Then

from .adapters import VideoStudio
from .settings import VideoSettings
from .store import deletions

log = logging.getLogger(__name__)

LEASE_S = 600.0
"""Campaign-time seconds a claimed deletion is not claimed again while its call is under way (a crash meanwhile:
it is tried again after this)."""


async def request_deletion(
    conn: AsyncConnection, job: Row[Any], now: datetime, *, provider_job_id: str | None = None, again: bool = False
) -> None:
    """Ask for the deletion of ``job``'s video at the studio (its ``provider_job_id`` unless given): a ``deletions``
    row due now, deleted by the loop after the caller's transaction commits. ``again``: a deletion done or given up
    before is asked for once more (the studio rendered the video after all); one still pending is left as it is."""
    provider_job_id = provider_job_id or job.provider_job_id
    stmt = insert(deletions).values(
        video_job_id=job.video_job_id,
        workspace_id=job.workspace_id,
        campaign_id=job.campaign_id,
        lead_id=job.lead_id,
        provider_job_id=provider_job_id,
        status="pending",
        next_attempt_at=now,
        requested_at=now,
        traceparent=current_traceparent(),
    )
    if not again:
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=["video_job_id"]))
        return
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["video_job_id"],
            set_={
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "requested_at": now,
                "completed_at": None,
                "last_error": None,
                "provider_job_id": provider_job_id,
            },
            where=deletions.c.status != "pending",
        )
    )


def claimable(now: datetime) -> Select[Any]:
    """Pending deletions due now, the most overdue first."""
    due = and_(deletions.c.status == "pending", deletions.c.next_attempt_at <= now)
    return select(deletions).where(due).order_by(deletions.c.next_attempt_at)


class StudioDeletions:
    """Deletes erased leads' videos at the studio, one per transaction (``timers.loop`` is the task)."""

    def __init__(self, service: Service, studio: VideoStudio, settings: VideoSettings) -> None:
        self.studio = studio
        self.timers = DurableTimers(
            name="video_deletions",
            service=service,
            table=deletions,
            due=deletions.c.next_attempt_at,
            attempts=deletions.c.attempts,
            claimable=claimable,
            run=self._run,
            failed=self._failed,
            schedule=settings.deletions_schedule(),
            traceparent=attrgetter("traceparent"),
        )

    async def _run(self, conn: AsyncConnection, row: Row[Any], now: datetime) -> Then[None]:
        # The lease commits with the claim: the studio is called after it, outside the transaction.
        lease = now + timedelta(seconds=LEASE_S)
        await conn.execute(
            update(deletions).where(deletions.c.video_job_id == row.video_job_id).values(next_attempt_at=lease)
        )

        async def call() -> None:
            await self.studio.delete(row.provider_job_id)

        async def record(conn: AsyncConnection, _: None, at: datetime) -> None:
            await conn.execute(
                update(deletions)
                .where(deletions.c.video_job_id == row.video_job_id)
                .values(status="deleted", completed_at=at, attempts=deletions.c.attempts + 1, last_error=None)
            )

        return Then(call, record)

    async def _failed(self, conn: AsyncConnection, row: Row[Any], failure: Failure) -> None:
        """A delete refused: retried (the runtime moved ``next_attempt_at``), or given up, recorded and logged."""
        values: dict[str, Any] = {"last_error": failure.detail}
        if failure.retry_at is None:
            values.update(status="failed", completed_at=failure.now)
            log.error(
                "video: the studio refused to delete an erased lead's video; given up after %d tries",
                failure.attempts,
                extra={"video_job_id": str(row.video_job_id), "provider_job_id": row.provider_job_id},
            )
        await conn.execute(update(deletions).where(deletions.c.video_job_id == row.video_job_id).values(**values))
