"""Messaging's event handlers, and the draft-making they share with the Messaging Lab API.

A lead's drafts are written once three facts are known, in any order: the campaign (strategy and
steps), the lead's profile, and the lead's enrolment. Advisory locks (campaign, then lead) make the
last of the three to arrive see the other two, even when they are handled at the same moment.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from leadstream_schemas import (
    CampaignCreated,
    CampaignUpdated,
    Channel,
    Envelope,
    Event,
    LeadEnrichmentFailed,
    LeadEnrolled,
    LeadErased,
    LeadPostMatched,
    LeadProfileEnriched,
    MessageApproved,
    MessageGenerated,
    Post,
    Strategy,
)
from leadstream_schemas.personal import personal_paths, redact
from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.consumer import HandlerContext, RetryLater
from services.runtime.providers import RateLimited

from . import domain
from .store import campaigns, drafts, enrollments, lock_campaign, lock_leads, matched_posts, profiles, templates
from .writer import Writer, WrittenDraft

log = logging.getLogger(__name__)

DRAFT_NAMESPACE = uuid.UUID("0b8f6f5e-2f57-5b8e-9d55-6a4f1f2b7c11")


@dataclass(frozen=True)
class CampaignConfig:
    """What messaging keeps of a campaign."""

    campaign_id: UUID
    workspace_id: str
    strategy: Strategy
    steps: list[domain.StepSpec]
    video: bool
    workflow_version: int = 1

    @classmethod
    def from_row(cls, row: Row[Any]) -> CampaignConfig:
        """Read a ``campaigns`` row."""
        return cls(
            campaign_id=row.campaign_id,
            workspace_id=row.workspace_id,
            strategy=Strategy.model_validate(row.strategy),
            steps=[domain.StepSpec.from_json(s) for s in row.steps],
            video=row.video,
            workflow_version=row.workflow_version,
        )


@dataclass(frozen=True)
class Composed:
    """One step's text for a lead and what it was written from."""

    written: WrittenDraft
    hook: domain.HookChoice
    template: domain.Template
    limit: domain.Limit
    post: Post | None


@dataclass(frozen=True)
class Emission:
    """An event to emit, with the discriminator that keeps its id unique among its siblings."""

    event: Event
    discriminator: str


async def load_campaign(conn: AsyncConnection, campaign_id: UUID) -> CampaignConfig | None:
    """The stored campaign, or None."""
    row = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id))).first()
    return CampaignConfig.from_row(row) if row else None


async def lead_variant(conn: AsyncConnection, campaign_id: UUID, lead_id: UUID, step_id: str) -> str | None:
    """The A/B variant of a step the lead got in a campaign (None: the step has no variants)."""
    variants = await conn.scalar(
        select(enrollments.c.variants).where(enrollments.c.campaign_id == campaign_id, enrollments.c.lead_id == lead_id)
    )
    return (variants or {}).get(step_id)


async def load_profile(conn: AsyncConnection, lead_id: UUID) -> tuple[bool, LeadProfileEnriched | None]:
    """(known, profile): known is False until a profile (or a profile failure) arrived."""
    row = (await conn.execute(select(profiles).where(profiles.c.lead_id == lead_id))).first()
    if row is None:
        return False, None
    if row.failed:
        return True, None
    return True, LeadProfileEnriched.model_validate(row.profile)


async def resolve_template(conn: AsyncConnection, workspace_id: str, ref: str | None) -> domain.Template | None:
    """A template by built-in name, by this workspace's template id, or by this workspace's template name."""
    if not ref:
        return domain.BUILTIN_TEMPLATES[domain.DEFAULT_TEMPLATE]
    if ref in domain.BUILTIN_TEMPLATES:
        return domain.BUILTIN_TEMPLATES[ref]
    cond = templates.c.name == ref
    try:
        cond = templates.c.template_id == UUID(ref)
    except ValueError:
        pass
    row = (
        await conn.execute(select(templates).where(and_(templates.c.workspace_id == workspace_id, cond)).limit(1))
    ).first()
    if row is None:
        return None
    return domain.Template(row.name, row.category, row.body, row.subject, str(row.template_id))


class MessagingCore:
    """Handlers and the draft-making the Lab API reuses: a writer, hook windows and a seed."""

    def __init__(self, writer: Writer, windows: domain.HookWindows, seed: int) -> None:
        self.writer = writer
        self.windows = windows
        self.seed = seed

    # -- event handlers -------------------------------------------------------------------------

    async def on_campaign_created(self, env: Envelope[CampaignCreated], ctx: HandlerContext) -> None:
        """Store the campaign's strategy and message steps; write drafts for leads that were waiting for it."""
        c = env.data
        conn = ctx.conn
        await lock_campaign(conn, c.campaign_id)
        strategy = c.strategy
        steps = domain.message_steps(c.workflow)
        video = c.video is not None
        if c.parent_campaign_id is not None and c.workflow is None:
            # A worker campaign of a multi-account launch may carry no workflow of its own: use its parent's.
            parent = await load_campaign(conn, c.parent_campaign_id)
            if parent is not None:
                strategy, steps, video = parent.strategy, parent.steps, parent.video or video
        now = ctx.clock.now()
        await conn.execute(
            insert(campaigns)
            .values(
                campaign_id=c.campaign_id,
                workspace_id=env.workspace_id,
                name=c.name,
                parent_campaign_id=c.parent_campaign_id,
                strategy=strategy.model_dump(mode="json"),
                workflow=c.workflow.model_dump(mode="json") if c.workflow else {},
                steps=[s.to_json() for s in steps],
                workflow_version=c.workflow.version if c.workflow else 1,
                video=video,
                delivery=c.delivery.model_dump(mode="json"),
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["campaign_id"])
        )
        await self._generate_waiting(ctx, c.campaign_id, now)

    async def on_campaign_updated(self, env: Envelope[CampaignUpdated], ctx: HandlerContext) -> None:
        """A new version of the campaign's workflow: its text steps are the ones drafts are written for from now
        on; leads that moved to it (and were waiting for it) get the drafts of its steps they lack."""
        c = env.data
        conn = ctx.conn
        await lock_campaign(conn, c.campaign_id)
        now = ctx.clock.now()
        updated = await conn.execute(
            update(campaigns)
            .where(campaigns.c.campaign_id == c.campaign_id, campaigns.c.workflow_version < c.workflow.version)
            .values(
                workflow=c.workflow.model_dump(mode="json"),
                steps=[s.to_json() for s in domain.message_steps(c.workflow)],
                workflow_version=c.workflow.version,
                updated_at=now,
            )
        )
        if updated.rowcount:
            await self._generate_waiting(ctx, c.campaign_id, now)

    async def _generate_waiting(self, ctx: HandlerContext, campaign_id: UUID, now: datetime) -> None:
        """Write the drafts of the campaign's enrolments that were waiting for it (or for its new version)."""
        conn = ctx.conn
        waiting = (
            (
                await conn.execute(
                    select(enrollments.c.lead_id).where(
                        enrollments.c.campaign_id == campaign_id, enrollments.c.generated_at.is_(None)
                    )
                )
            )
            .scalars()
            .all()
        )
        if not waiting:
            return
        await lock_leads(conn, list(waiting))
        campaign = await load_campaign(conn, campaign_id)
        assert campaign is not None
        for lead_id in waiting:
            await self._generate_if_ready(ctx, campaign, lead_id, now, several=True)

    async def on_profile_enriched(self, env: Envelope[LeadProfileEnriched], ctx: HandlerContext) -> None:
        """Keep the lead's newest profile; write drafts for enrolments that were waiting for it."""
        p = env.data
        await lock_leads(ctx.conn, [p.lead_id])
        now = ctx.clock.now()
        values = {
            "workspace_id": env.workspace_id,
            "profile": p.model_dump(mode="json"),
            "failed": False,
            "updated_at": now,
        }
        await ctx.conn.execute(
            insert(profiles)
            .values(lead_id=p.lead_id, **values)
            .on_conflict_do_update(index_elements=["lead_id"], set_=values)
        )
        await self._lead_ready(ctx, p.lead_id, now)

    async def on_enrichment_failed(self, env: Envelope[LeadEnrichmentFailed], ctx: HandlerContext) -> None:
        """A lead without a profile still gets drafts: generic ones, with every fallback used."""
        f = env.data
        if f.stage != "profile":
            return
        await lock_leads(ctx.conn, [f.lead_id])
        now = ctx.clock.now()
        await ctx.conn.execute(
            insert(profiles)
            .values(lead_id=f.lead_id, workspace_id=env.workspace_id, profile={}, failed=True, updated_at=now)
            .on_conflict_do_nothing(index_elements=["lead_id"])
        )
        await self._lead_ready(ctx, f.lead_id, now)

    async def on_lead_enrolled(self, env: Envelope[LeadEnrolled], ctx: HandlerContext) -> None:
        """Record the enrolment; write the lead's drafts when the campaign (at the lead's workflow version) and the
        profile are known. A lead moved to a new version of the sequence is enrolled again with that version:
        it gets the drafts of the new version's steps it lacks."""
        e = env.data
        if e.campaign_id is None:
            log.warning("LeadEnrolled without campaign_id ignored", extra={"event_id": str(env.id)})
            return
        conn = ctx.conn
        await lock_campaign(conn, e.campaign_id, shared=True)
        await lock_leads(conn, [e.lead_id])
        now = ctx.clock.now()
        await conn.execute(
            insert(enrollments)
            .values(
                campaign_id=e.campaign_id,
                lead_id=e.lead_id,
                workspace_id=env.workspace_id,
                account_id=e.account_id,
                enrolled_at=now,
                workflow_version=e.workflow_version or 1,
                variants=dict(e.variants),
            )
            .on_conflict_do_nothing(index_elements=["campaign_id", "lead_id"])
        )
        if e.workflow_version is not None:
            await conn.execute(
                update(enrollments)
                .where(
                    enrollments.c.campaign_id == e.campaign_id,
                    enrollments.c.lead_id == e.lead_id,
                    enrollments.c.workflow_version < e.workflow_version,
                )
                .values(workflow_version=e.workflow_version, variants=dict(e.variants), generated_at=None)
            )
        campaign = await load_campaign(conn, e.campaign_id)
        if campaign is not None:
            await self._generate_if_ready(ctx, campaign, e.lead_id, now)

    async def on_post_matched(self, env: Envelope[LeadPostMatched], ctx: HandlerContext) -> None:
        """A posts watch matched a post of the lead: the newest such post is the hook of drafts written from now."""
        m = env.data
        await lock_leads(ctx.conn, [m.lead_id])
        values = {
            "workspace_id": env.workspace_id,
            "post": m.post.model_dump(mode="json"),
            "language": m.language,
            "matched": list(m.matched),
            "updated_at": ctx.clock.now(),
        }
        await ctx.conn.execute(
            insert(matched_posts)
            .values(lead_id=m.lead_id, **values)
            .on_conflict_do_update(index_elements=["lead_id"], set_=values)
        )

    # -- draft making -------------------------------------------------------------------------------

    async def on_lead_erased(self, env: Envelope[LeadErased], ctx: HandlerContext) -> None:
        """Blank messaging's copies of an erased lead (idempotent): the profile and the matched post it writes
        from are deleted, its drafts (the Messaging Lab's items) keep their status, step and counts with the text,
        subject, hook detail and post link erased. Nothing is generated for the lead again (no profile)."""
        ws, lead = env.workspace_id, env.data.lead_id
        for table in (profiles, matched_posts):
            await ctx.conn.execute(delete(table).where(table.c.workspace_id == ws, table.c.lead_id == lead))
        # The contract says what of a draft is personal (MessageGenerated's text, subject and hook texts).
        paths = personal_paths(MessageGenerated)
        rows = await ctx.conn.execute(
            select(drafts.c.draft_id, drafts.c.text, drafts.c.subject, drafts.c.hook).where(
                drafts.c.workspace_id == ws, drafts.c.lead_id == lead
            )
        )
        for row in rows.all():
            blank = redact({"text": row.text, "subject": row.subject, "hook": dict(row.hook or {})}, paths)
            await ctx.conn.execute(
                update(drafts)
                .where(drafts.c.draft_id == row.draft_id)
                .values(text=blank["text"], subject=blank["subject"], hook=blank["hook"], post_url=None)
            )

    async def _lead_ready(self, ctx: HandlerContext, lead_id: UUID, now: datetime) -> None:
        waiting = (
            (
                await ctx.conn.execute(
                    select(enrollments.c.campaign_id).where(
                        enrollments.c.lead_id == lead_id, enrollments.c.generated_at.is_(None)
                    )
                )
            )
            .scalars()
            .all()
        )
        for campaign_id in waiting:
            campaign = await load_campaign(ctx.conn, campaign_id)
            if campaign is not None:
                await self._generate_if_ready(ctx, campaign, lead_id, now)

    async def _generate_if_ready(
        self, ctx: HandlerContext, campaign: CampaignConfig, lead_id: UUID, now: datetime, *, several: bool = False
    ) -> None:
        """Write every step's draft for an enrolled lead once its profile is known and the campaign's steps are
        those of the lead's workflow version (exactly once per step: a step already drafted is skipped)."""
        conn = ctx.conn
        row = (
            await conn.execute(
                select(enrollments)
                .where(enrollments.c.campaign_id == campaign.campaign_id, enrollments.c.lead_id == lead_id)
                .with_for_update()
            )
        ).first()
        if row is None or row.generated_at is not None or row.workflow_version > campaign.workflow_version:
            return  # done, or waiting for the CampaignUpdated of its version (another topic: it may come later)
        known, profile = await load_profile(conn, lead_id)
        if not known:
            return
        drafted = set(
            (
                await conn.execute(
                    select(drafts.c.step_id).where(
                        drafts.c.campaign_id == campaign.campaign_id, drafts.c.lead_id == lead_id
                    )
                )
            )
            .scalars()
            .all()
        )
        for spec in campaign.steps:
            if spec.step_id in drafted:
                continue
            step = spec.for_variant(row.variants.get(spec.step_id))
            for em in await self.make_draft(conn, campaign, lead_id, profile, step, now, cause=ctx.envelope.id):
                # One campaign event writes the drafts of several leads: the lead keeps their ids apart.
                ctx.emit(em.event, discriminator=f"{lead_id}:{em.discriminator}" if several else em.discriminator)
        await conn.execute(
            update(enrollments)
            .where(enrollments.c.campaign_id == campaign.campaign_id, enrollments.c.lead_id == lead_id)
            .values(generated_at=now)
        )

    async def make_draft(
        self,
        conn: AsyncConnection,
        campaign: CampaignConfig,
        lead_id: UUID,
        profile: LeadProfileEnriched | None,
        step: domain.StepSpec,
        now: datetime,
        *,
        cause: UUID,
        attempt: int = 1,
        feedback: str | None = None,
        replaces: UUID | None = None,
    ) -> list[Emission]:
        """Write, store and describe one step's draft: ``MessageGenerated`` (+ auto approval, + comment draft).

        Returns nothing for a comment step when the lead has no post to comment on.
        """
        composed = await self.compose(conn, campaign, lead_id, profile, step, now, attempt=attempt, feedback=feedback)
        if composed is None:
            return []
        written, hook, template, limit, post = (
            composed.written,
            composed.hook,
            composed.template,
            composed.limit,
            composed.post,
        )
        review = domain.needs_review(step, campaign.strategy)
        draft_id = uuid.uuid5(DRAFT_NAMESPACE, f"{cause}|{campaign.campaign_id}|{lead_id}|{step.step_id}|{attempt}")
        post_url = domain.post_url_for(post, lead_id) if post is not None else None
        await conn.execute(
            insert(drafts).values(
                draft_id=draft_id,
                workspace_id=campaign.workspace_id,
                campaign_id=campaign.campaign_id,
                lead_id=lead_id,
                step_id=step.step_id,
                channel=step.channel.value,
                status="pending" if review else "approved",
                text=written.text,
                subject=written.subject,
                hook=hook.to_event().model_dump(mode="json"),
                template=template.name,
                char_limit=limit.text,
                subject_limit=limit.subject,
                needs_review=review,
                generator=written.generator,
                attempt=attempt,
                replaces=replaces,
                post_url=post_url,
                created_at=now,
                decided_at=None if review else now,
            )
        )
        common = {"lead_id": lead_id, "campaign_id": campaign.campaign_id, "step_id": step.step_id}
        out = [
            Emission(
                MessageGenerated(
                    **common,
                    draft_id=draft_id,
                    channel=step.channel,
                    text=written.text,
                    subject=written.subject,
                    hook=hook.to_event(),
                    template=template.name,
                    char_limit=limit.text,
                    needs_review=review,
                    generator=written.generator,
                    variant=step.variant,
                ),
                step.step_id,
            )
        ]
        # CommentDrafted is outreach's fact: it knows the account and when the comment step came due.
        if not review:
            out.append(
                Emission(
                    MessageApproved(
                        **common,
                        draft_id=draft_id,
                        channel=step.channel,
                        text=written.text,
                        subject=written.subject,
                        auto=True,
                    ),
                    step.step_id,
                )
            )
        return out

    async def compose(
        self,
        conn: AsyncConnection,
        campaign: CampaignConfig,
        lead_id: UUID,
        profile: LeadProfileEnriched | None,
        step: domain.StepSpec,
        now: datetime,
        *,
        attempt: int = 1,
        feedback: str | None = None,
        template: domain.Template | None = None,
    ) -> Composed | None:
        """Write one step's text for a lead (hook, template, limit, the writer) without storing anything.

        ``template`` overrides the campaign's (a preview of a template not saved yet). None for a comment
        step when the lead has no post to comment on."""
        today = now.date()
        post = None
        matched = (await conn.execute(select(matched_posts).where(matched_posts.c.lead_id == lead_id))).first()
        matched_post = Post.model_validate(matched.post) if matched is not None else None
        if step.channel == Channel.comment:
            post = matched_post or domain.comment_target(profile)
            if post is None:
                log.info("no post to comment on; comment step has no draft", extra={"lead_id": str(lead_id)})
                return None
            hook = domain.comment_hook(post, today)
        elif matched is not None and matched_post is not None:
            hook = domain.matched_post_hook(matched_post, matched.language, matched.matched, today)
        else:
            hook = domain.choose_hook(profile, today, self.windows)
        template = template or await self._template_for(conn, campaign, step)
        limit = domain.limit_for(step.channel, video=campaign.video)
        # Without light personalisation every lead of the campaign gets the same choice of words.
        who = f"{lead_id}|" if campaign.strategy.personalise else ""
        req = domain.DraftRequest(
            channel=step.channel,
            step_id=step.step_id,
            limit=limit,
            hook=hook,
            strategy=campaign.strategy,
            template=template,
            variables=domain.lead_variables(profile),
            variant_key=f"{self.seed}|{who}{step.step_id}",
            attempt=attempt,
            feedback=feedback,
            post=post,
        )
        try:
            written = await self.writer.write(req)
        except RateLimited as exc:
            raise RetryLater(exc.retry_after_s, "language model rate limit") from exc
        return Composed(written, hook, template, limit, post)

    async def _template_for(
        self, conn: AsyncConnection, campaign: CampaignConfig, step: domain.StepSpec
    ) -> domain.Template:
        if step.body:
            try:
                domain.parse_template(step.body)
                domain.parse_template(step.subject or "")
                return domain.Template("email_fallback", "business_opportunity", step.body, step.subject)
            except domain.TemplateError as exc:
                log.warning("campaign email body is not a valid template; using the default", extra={"error": str(exc)})
        for ref in (step.template, campaign.strategy.template):
            if ref:
                found = await resolve_template(conn, campaign.workspace_id, ref)
                if found is not None:
                    return found
                log.warning("unknown template; using the default", extra={"template": ref})
        return domain.BUILTIN_TEMPLATES[domain.DEFAULT_TEMPLATE]
