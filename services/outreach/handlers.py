"""Outreach's event handlers: decode -> store (+ shared lifecycle) -> outbox. Thin on purpose.

Leads: audience membership (LeadDiscovered), readiness (enrichment outcomes), approved texts
(Messaging Lab), videos, replies and unsubscribes from elsewhere. Searches: which searches feed
which audience, and whether they are still running.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from leadstream_schemas import (
    Envelope,
    LeadAddedToSourceGroup,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadEmailNotFound,
    LeadEnrichmentFailed,
    LeadPostMatched,
    LeadProfileEnriched,
    LeadUnsubscribed,
    MessageApproved,
    MessageEdited,
    MessageGenerated,
    MessageRejected,
    Post,
    Replied,
    SearchFinished,
    SearchResumed,
    SearchStarted,
    VideoFailed,
    VideoGenerated,
)
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from services.runtime.consumer import HandlerContext
from services.runtime.links import link_refusal

from . import lifecycle as lc
from . import timers as tm
from .domain.compliance import normalise_email, normalise_profile_url
from .emit import HandlerEmitter
from .enrollment import enroll_everywhere
from .store import audience_members, campaigns, leads, searches, texts, videos

log = logging.getLogger(__name__)


def _post_url(lead_id: uuid.UUID, post: Post) -> str:
    """Where a post lives: its URL; simulated posts have none, and an opaque reference is enough for them."""
    digits = uuid.uuid5(uuid.NAMESPACE_URL, f"{lead_id}|{post.text}").int % 10**19
    return post.url or f"urn:li:activity:{digits}"


class OutreachHandlers:
    """Handlers; ``wake`` tells the timer loop that something became due (once the handler's transaction
    committed: :meth:`HandlerContext.after_commit`); only links on ``link_hosts`` (https) are put into messages."""

    def __init__(self, wake: Callable[[], None], link_hosts: list[str] | None = None) -> None:
        self.wake = wake
        self.link_hosts = link_hosts if link_hosts is not None else ["videos.studio.example"]

    async def _upsert_lead(self, ctx: HandlerContext, lead_id: uuid.UUID, values: dict[str, Any]) -> None:
        values = {k: v for k, v in values.items() if v is not None}
        if "linkedin_url" in values:
            values["profile_key"] = normalise_profile_url(values["linkedin_url"])
        now = ctx.clock.now()
        stmt = insert(leads).values(workspace_id=ctx.envelope.workspace_id, lead_id=lead_id, updated_at=now, **values)
        await ctx.conn.execute(
            stmt.on_conflict_do_update(index_elements=["workspace_id", "lead_id"], set_={**values, "updated_at": now})
        )

    async def _ready(self, ctx: HandlerContext, lead_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self._upsert_lead(ctx, lead_id, {**values, "ready": True})
        if await enroll_everywhere(ctx.conn, HandlerEmitter(ctx), ctx.envelope.workspace_id, lead_id, ctx.clock.now()):
            ctx.after_commit(self.wake)

    # -- leads -----------------------------------------------------------------------------------

    async def on_lead_discovered(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        """Record the lead and its audiences (source group, search)."""
        lead = env.data
        await self._upsert_lead(
            ctx,
            lead.lead_id,
            {
                "linkedin_url": lead.linkedin_url,
                "email": normalise_email(lead.email),
                "full_name": lead.full_name,
                "first_name": lead.first_name,
                "last_name": lead.last_name,
                "company": lead.company,
                "location": lead.location,
            },
        )
        await self._join_audiences(ctx, lead.lead_id, lead.source_group_id, lead.search_id)

    async def on_added_to_source_group(self, env: Envelope[LeadAddedToSourceGroup], ctx: HandlerContext) -> None:
        """A known lead found by another search joins that audience (it is not discovered twice)."""
        await self._join_audiences(ctx, env.data.lead_id, env.data.source_group_id, env.data.search_id)

    async def _join_audiences(
        self, ctx: HandlerContext, lead_id: uuid.UUID, source_group_id: uuid.UUID | None, search_id: uuid.UUID | None
    ) -> None:
        workspace = ctx.envelope.workspace_id
        for kind, ref in (("source_group", source_group_id), ("search", search_id)):
            if ref is not None:
                await ctx.conn.execute(
                    insert(audience_members)
                    .values(workspace_id=workspace, kind=kind, ref=str(ref), lead_id=lead_id)
                    .on_conflict_do_nothing()
                )
        ready = await ctx.conn.scalar(
            select(leads.c.ready).where(leads.c.workspace_id == workspace, leads.c.lead_id == lead_id)
        )
        if ready and await enroll_everywhere(ctx.conn, HandlerEmitter(ctx), workspace, lead_id, ctx.clock.now()):
            ctx.after_commit(self.wake)

    async def on_post_matched(self, env: Envelope[LeadPostMatched], ctx: HandlerContext) -> None:
        """A posts watch matched a post of the lead: like and comment steps answer that post (not the profile's)."""
        m = env.data
        await self._upsert_lead(ctx, m.lead_id, {"post_url": _post_url(m.lead_id, m.post), "post_matched": True})

    async def on_profile_enriched(self, env: Envelope[LeadProfileEnriched], ctx: HandlerContext) -> None:
        """Keep what steps need: names, city, headline, profile URL and a recent post to like or comment on (unless
        a posts watch matched one: that post stays the one to answer)."""
        p = env.data
        post = next((x for x in p.recent_posts if x.kind == "post"), p.recent_posts[0] if p.recent_posts else None)
        post_url = None
        matched = await ctx.conn.scalar(
            select(leads.c.post_matched).where(leads.c.workspace_id == env.workspace_id, leads.c.lead_id == p.lead_id)
        )
        if post is not None and not matched:
            post_url = _post_url(p.lead_id, post)
        await self._upsert_lead(
            ctx,
            p.lead_id,
            {
                "full_name": p.full_name,
                "first_name": p.first_name,
                "last_name": p.last_name,
                "company": p.company_name,
                "city": p.city,
                "headline": p.headline,
                "post_url": post_url,
                "linkedin_url": p.linkedin_url,
            },
        )

    async def on_email_enriched(self, env: Envelope[LeadEmailEnriched], ctx: HandlerContext) -> None:
        """A verified email: the lead is ready (and may get the email fallback)."""
        await self._ready(ctx, env.data.lead_id, {"email": normalise_email(env.data.email), "email_verified": True})

    async def on_email_not_found(self, env: Envelope[LeadEmailNotFound], ctx: HandlerContext) -> None:
        """No usable email: the lead is ready, without the email channel."""
        await self._ready(ctx, env.data.lead_id, {"email_verified": False})

    async def on_enrichment_failed(self, env: Envelope[LeadEnrichmentFailed], ctx: HandlerContext) -> None:
        """Enrichment gave up: the lead continues with what is known."""
        await self._ready(ctx, env.data.lead_id, {})

    # -- texts and videos ------------------------------------------------------------------------

    async def _text(self, env: Envelope[Any], ctx: HandlerContext, status: str) -> None:
        d = env.data
        if d.campaign_id is None or d.step_id is None:
            return
        values = {
            "workspace_id": env.workspace_id,
            "channel": str(d.channel),
            "status": status,
            "draft_id": d.draft_id,
            "text": d.text,
            "subject": d.subject,
            "updated_at": ctx.clock.now(),
        }
        stmt = insert(texts).values(campaign_id=d.campaign_id, lead_id=d.lead_id, step_id=d.step_id, **values)
        if status == "generated":
            # a newer draft replaces an older unapproved one, never an approved text
            stmt = stmt.on_conflict_do_update(
                index_elements=["campaign_id", "lead_id", "step_id"], set_=values, where=texts.c.status == "generated"
            )
        else:
            stmt = stmt.on_conflict_do_update(index_elements=["campaign_id", "lead_id", "step_id"], set_=values)
        await ctx.conn.execute(stmt)
        if await tm.wake(
            ctx.conn,
            campaign_id=d.campaign_id,
            lead_id=d.lead_id,
            waiting_for="text",
            now=ctx.clock.now(),
            step_id=d.step_id,
        ):
            ctx.after_commit(self.wake)

    async def on_message_generated(self, env: Envelope[MessageGenerated], ctx: HandlerContext) -> None:
        """A draft exists (comments in auto mode post it; in draft mode it is shown for approval)."""
        await self._text(env, ctx, "generated")

    async def on_message_approved(self, env: Envelope[MessageApproved], ctx: HandlerContext) -> None:
        """An approved text: the step waiting for it may send."""
        await self._text(env, ctx, "approved")

    async def on_message_edited(self, env: Envelope[MessageEdited], ctx: HandlerContext) -> None:
        """An edited text is an approved text with new wording."""
        await self._text(env, ctx, "approved")

    async def on_message_rejected(self, env: Envelope[MessageRejected], ctx: HandlerContext) -> None:
        """A rejected draft is forgotten; its replacement arrives as a new MessageGenerated."""
        d = env.data
        if d.campaign_id is None or d.step_id is None:
            return
        await ctx.conn.execute(
            delete(texts).where(
                texts.c.campaign_id == d.campaign_id,
                texts.c.lead_id == d.lead_id,
                texts.c.step_id == d.step_id,
                texts.c.draft_id == d.draft_id,
                texts.c.status == "generated",
            )
        )

    async def _video(self, env: Envelope[Any], ctx: HandlerContext, status: str, url: str | None) -> None:
        d = env.data
        if d.campaign_id is None:
            return
        await ctx.conn.execute(
            insert(videos)
            .values(campaign_id=d.campaign_id, lead_id=d.lead_id, status=status, video_url=url)
            .on_conflict_do_nothing()
        )
        if await tm.wake(
            ctx.conn, campaign_id=d.campaign_id, lead_id=d.lead_id, waiting_for="video", now=ctx.clock.now()
        ):
            ctx.after_commit(self.wake)

    async def on_video_generated(self, env: Envelope[VideoGenerated], ctx: HandlerContext) -> None:
        """The lead's video is ready: the first action may go, with the video link. A link that is not https on
        an allowed host (video checks it too) is never sent: the action goes without it."""
        if link_refusal(env.data.video_url, self.link_hosts) is not None:
            log.warning("video link refused; the action goes without it", extra={"lead_id": str(env.data.lead_id)})
            await self._video(env, ctx, "failed", None)
            return
        await self._video(env, ctx, "ready", env.data.video_url)

    async def on_video_failed(self, env: Envelope[VideoFailed], ctx: HandlerContext) -> None:
        """No video: the first action goes without it."""
        await self._video(env, ctx, "failed", None)

    # -- replies and unsubscribes from elsewhere -------------------------------------------------

    async def on_replied(self, env: Envelope[Replied], ctx: HandlerContext) -> None:
        """A reply (ours, re-read, or another service's): make sure nothing else goes to the lead.

        Its personal fields (the excerpt) arrive sealed, as tokens: the service consumes ``Replied`` with
        ``sealed=`` (app.py), since nothing here reads them. A handler that comes to read one takes the type out of
        that list."""
        await lc.apply_reply(
            ctx.conn,
            HandlerEmitter(ctx),
            env.workspace_id,
            env.data.lead_id,
            channel=str(env.data.channel),
            received_at=env.data.received_at,
            now=ctx.clock.now(),
            key="replied",
            emit_events=False,
        )

    async def on_unsubscribed(self, env: Envelope[LeadUnsubscribed], ctx: HandlerContext) -> None:
        """Suppress the lead (and its address) on every channel."""
        now = ctx.clock.now()
        await lc.suppress(ctx.conn, env.workspace_id, "lead", str(env.data.lead_id), "unsubscribed", now)
        email = await ctx.conn.scalar(
            select(leads.c.email).where(leads.c.workspace_id == env.workspace_id, leads.c.lead_id == env.data.lead_id)
        )
        if email:
            await lc.suppress(ctx.conn, env.workspace_id, "email", email, "unsubscribed", now)

    # -- searches --------------------------------------------------------------------------------

    async def on_search_started(self, env: Envelope[SearchStarted], ctx: HandlerContext) -> None:
        """Remember which source group and LinkedIn URL a search feeds (saved-search and URL audiences)."""
        s = env.data
        raw_url = next((s.criteria.get(k) for k in ("url", "linkedin_url", "search_url") if s.criteria.get(k)), None)
        url = normalise_profile_url(str(raw_url)) if raw_url else None
        await ctx.conn.execute(
            insert(searches)
            .values(
                search_id=s.search_id,
                workspace_id=env.workspace_id,
                source_group_id=s.source_group_id,
                kind=s.kind,
                url=url,
            )
            .on_conflict_do_nothing()
        )

    async def on_search_resumed(self, env: Envelope[SearchResumed], ctx: HandlerContext) -> None:
        """A finished search runs again (a campaign's audience run or extension): it keeps its campaigns open."""
        await ctx.conn.execute(
            update(searches).where(searches.c.search_id == env.data.search_id).values(finished=False)
        )

    async def on_search_finished(self, env: Envelope[SearchFinished], ctx: HandlerContext) -> None:
        """A finished search no longer keeps its campaigns open."""
        await ctx.conn.execute(update(searches).where(searches.c.search_id == env.data.search_id).values(finished=True))
        rows = await ctx.conn.execute(
            select(campaigns.c.campaign_id).where(
                campaigns.c.workspace_id == env.workspace_id, campaigns.c.state == "running"
            )
        )
        for r in sorted(rows, key=lambda r: str(r.campaign_id)):
            await lc.maybe_finish_campaign(ctx.conn, HandlerEmitter(ctx), r.campaign_id, ctx.clock.now())
