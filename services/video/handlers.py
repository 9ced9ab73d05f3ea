"""Video's event handlers: a video is requested once the campaign's template, the lead's profile and the
lead's enrolment are all known, in whatever order they arrive.

Advisory locks (campaign, then lead) make the last of the three facts to arrive see the other two, even
when they are handled at the same moment on different partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from leadstream_schemas import (
    CampaignCreated,
    Envelope,
    LeadEnrichmentFailed,
    LeadEnrolled,
    LeadErased,
    LeadProfileEnriched,
    VideoRequested,
)
from leadstream_schemas.personal import ERASED, personal_paths, redact
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from services.runtime.consumer import HandlerContext
from services.runtime.telemetry import current_traceparent

from . import domain
from .deletions import request_deletion
from .store import callbacks, campaigns, enrollments, jobs, lock_campaign, lock_leads, profiles

log = logging.getLogger(__name__)


def _template(raw: dict[str, Any] | None) -> domain.VideoTemplate | None:
    return domain.parse_template(raw) if raw is not None else None


class VideoHandlers:
    """Handlers with the render timeout they stamp on each job; ``wake`` tells the job loop a job was queued,
    ``wake_deletions`` the deletion loop that a studio deletion was."""

    def __init__(
        self,
        timeout_s: float,
        wake: Callable[[], None] = lambda: None,
        wake_deletions: Callable[[], None] = lambda: None,
    ) -> None:
        self.timeout_s = timeout_s
        self.wake = wake
        self.wake_deletions = wake_deletions

    async def on_campaign_created(self, env: Envelope[CampaignCreated], ctx: HandlerContext) -> None:
        """Store the campaign's video template (None: not a video campaign); request videos for waiting leads."""
        c = env.data
        conn = ctx.conn
        await lock_campaign(conn, c.campaign_id)
        template = domain.template_of(c.video)
        if template is None and c.parent_campaign_id is not None:
            # A worker campaign of a multi-account launch may not repeat its parent's video template.
            parent = (
                await conn.execute(select(campaigns.c.template).where(campaigns.c.campaign_id == c.parent_campaign_id))
            ).scalar()
            template = _template(parent)
        await conn.execute(
            insert(campaigns)
            .values(
                campaign_id=c.campaign_id,
                workspace_id=env.workspace_id,
                parent_campaign_id=c.parent_campaign_id,
                template=template.to_json() if template else None,
                created_at=ctx.clock.now(),
            )
            .on_conflict_do_nothing(index_elements=["campaign_id"])
        )
        if template is None:
            return
        waiting = (
            (await conn.execute(select(enrollments.c.lead_id).where(enrollments.c.campaign_id == c.campaign_id)))
            .scalars()
            .all()
        )
        if waiting:
            await lock_leads(conn, list(waiting))
            for lead_id in waiting:
                await self._request_if_ready(ctx, c.campaign_id, lead_id)

    async def on_profile_enriched(self, env: Envelope[LeadProfileEnriched], ctx: HandlerContext) -> None:
        """Keep the lead's fields; request videos for enrolments that were waiting for them."""
        p = env.data
        await lock_leads(ctx.conn, [p.lead_id])
        values = {"workspace_id": env.workspace_id, "fields": domain.lead_fields(p), "updated_at": ctx.clock.now()}
        await ctx.conn.execute(
            insert(profiles)
            .values(lead_id=p.lead_id, **values)
            .on_conflict_do_update(index_elements=["lead_id"], set_=values)
        )
        await self._lead_ready(ctx, p.lead_id)

    async def on_lead_erased(self, env: Envelope[LeadErased], ctx: HandlerContext) -> None:
        """Blank video's copies of an erased lead and ask the studio to delete their videos (idempotent).

        The profile it personalises from is deleted; every job keeps its times with its variables ``[erased]``
        (VideoRequested's personal paths) and its video and thumbnail links ``[erased]`` (VideoGenerated's), and
        the callbacks recorded for it keep their outcome without the links; a job still open (queued, rendering)
        ends ``erased``: nothing more is submitted, and a callback that still comes is not accepted. Each video the
        studio was given gets a ``deletions`` row, deleted at the studio by the deletion loop after this commits
        (:mod:`.deletions`): a provider call never runs in a handler's transaction."""
        ws, lead = env.workspace_id, env.data.lead_id
        now = ctx.clock.now()
        await ctx.conn.execute(delete(profiles).where(profiles.c.workspace_id == ws, profiles.c.lead_id == lead))
        paths = personal_paths(VideoRequested)
        # Locked: a submit under way (the job loop holds its row) is waited for, so its video id is seen here.
        rows = await ctx.conn.execute(
            select(jobs).where(jobs.c.workspace_id == ws, jobs.c.lead_id == lead).with_for_update()
        )
        queued = False
        for row in rows.all():
            values: dict[str, Any] = {
                "variables": redact({"variables": dict(row.variables or {})}, paths)["variables"],
                "video_url": ERASED if row.video_url is not None else None,
                "thumbnail_url": ERASED if row.thumbnail_url is not None else None,
            }
            if row.status in domain.OPEN_STATUSES:
                values.update(status="erased", completed_at=now)
            await ctx.conn.execute(update(jobs).where(jobs.c.video_job_id == row.video_job_id).values(**values))
            received = await ctx.conn.execute(
                select(callbacks.c.id, callbacks.c.payload).where(callbacks.c.video_job_id == row.video_job_id)
            )
            for cb in received.all():
                await ctx.conn.execute(
                    update(callbacks).where(callbacks.c.id == cb.id).values(payload=domain.without_links(cb.payload))
                )
            if row.provider_job_id is not None:
                await request_deletion(ctx.conn, row, now)
                queued = True
        if queued:
            ctx.after_commit(self.wake_deletions)  # due now: the deletion loop naps otherwise

    async def on_enrichment_failed(self, env: Envelope[LeadEnrichmentFailed], ctx: HandlerContext) -> None:
        """A lead without a profile still gets its video, with every segment's fallback."""
        f = env.data
        if f.stage != "profile":
            return
        await lock_leads(ctx.conn, [f.lead_id])
        await ctx.conn.execute(
            insert(profiles)
            .values(
                lead_id=f.lead_id,
                workspace_id=env.workspace_id,
                fields=domain.lead_fields(None),
                updated_at=ctx.clock.now(),
            )
            .on_conflict_do_nothing(index_elements=["lead_id"])
        )
        await self._lead_ready(ctx, f.lead_id)

    async def on_lead_enrolled(self, env: Envelope[LeadEnrolled], ctx: HandlerContext) -> None:
        """Record the enrolment; request the video when the campaign has one and the profile is known."""
        e = env.data
        if e.campaign_id is None:
            return
        conn = ctx.conn
        await lock_campaign(conn, e.campaign_id, shared=True)
        await lock_leads(conn, [e.lead_id])
        await conn.execute(
            insert(enrollments)
            .values(
                campaign_id=e.campaign_id, lead_id=e.lead_id, workspace_id=env.workspace_id, enrolled_at=ctx.clock.now()
            )
            .on_conflict_do_nothing(index_elements=["campaign_id", "lead_id"])
        )
        await self._request_if_ready(ctx, e.campaign_id, e.lead_id)

    async def _lead_ready(self, ctx: HandlerContext, lead_id: UUID) -> None:
        enrolled_in = (
            (await ctx.conn.execute(select(enrollments.c.campaign_id).where(enrollments.c.lead_id == lead_id)))
            .scalars()
            .all()
        )
        for campaign_id in enrolled_in:
            await self._request_if_ready(ctx, campaign_id, lead_id)

    async def _request_if_ready(self, ctx: HandlerContext, campaign_id: UUID, lead_id: UUID) -> None:
        """Emit ``VideoRequested`` and queue the render, once per lead and campaign, when everything is known."""
        conn = ctx.conn
        campaign = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id))).first()
        if campaign is None or campaign.template is None:
            return
        exists = (
            await conn.execute(
                select(jobs.c.video_job_id).where(jobs.c.campaign_id == campaign_id, jobs.c.lead_id == lead_id)
            )
        ).first()
        if exists is not None:
            return
        fields = (await conn.execute(select(profiles.c.fields).where(profiles.c.lead_id == lead_id))).scalar()
        if fields is None:
            return
        template = domain.parse_template(campaign.template)
        assert template is not None
        variables, fallbacks = domain.map_variables(template, fields)
        video_job_id = domain.job_id(campaign_id, lead_id)
        now: datetime = ctx.clock.now()
        requested = ctx.emit(
            VideoRequested(
                lead_id=lead_id,
                campaign_id=campaign_id,
                video_job_id=video_job_id,
                template_id=template.template_id,
                variables=variables,
                fallbacks_used=fallbacks,
            ),
            discriminator=str(campaign_id),
        )
        await conn.execute(
            insert(jobs).values(
                video_job_id=video_job_id,
                workspace_id=campaign.workspace_id,
                campaign_id=campaign_id,
                lead_id=lead_id,
                template_id=template.template_id,
                variables=variables,
                fallbacks_used=fallbacks,
                status="queued",
                requested_at=now,
                deadline_at=domain.deadline(now, self.timeout_s),
                next_attempt_at=now,
                requested_event_id=requested.id,
                correlation_id=requested.correlation_id,
                traceparent=current_traceparent(),
            )
        )
        ctx.after_commit(self.wake)  # due now: the job loop naps up to timer_idle_max_s otherwise
