"""Messaging's write commands (the routes call these): save a template, replace a campaign's strategy profile, and
the Messaging Lab's approve one draft or many, edit (or only check an edit), reject with feedback and write the
replacement. One transaction each; events go to the outbox in it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar
from uuid import UUID

from leadstream_schemas import Channel, Envelope, MessageApproved, MessageEdited, MessageRejected, Strategy
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.consumer import RetryLater
from services.runtime.errors import Problem
from services.runtime.providers import ProviderError
from services.runtime.service import Service

from . import domain
from .handlers import (
    CampaignConfig,
    Emission,
    MessagingCore,
    lead_variant,
    load_campaign,
    load_profile,
    resolve_template,
)
from .store import campaigns, drafts, templates

T = TypeVar("T")


def check_template(field: str, text: str) -> None:
    """A 422 naming ``field`` when ``text`` has an unknown variable or a stray brace."""
    try:
        domain.parse_template(text)
    except domain.TemplateError as exc:
        raise Problem(
            422,
            "unknown_template_variable" if exc.variable is not None else "invalid_template",
            f"{field}: {exc}",
            field=field,
            variable=exc.variable,
            allowed=list(domain.VARIABLES),
            errors=[{"field": field, "message": str(exc)}],
        ) from None


def unknown_template(field: str, ref: str) -> Problem:
    """The 422 for a template reference (a built-in name, a template id or name) the workspace does not have."""
    return Problem(
        422,
        "unknown_template",
        f"{field}: no template {ref!r} in this workspace",
        field=field,
        errors=[{"field": field, "message": "no such template in this workspace"}],
    )


def limit_label(channel: Channel, limit: int) -> str:
    """How a draft's limit is named to a person (the edit error and the console's counter use it)."""
    if channel == Channel.invite:
        suffix = " (a personalised video is attached)" if limit == domain.INVITE_NOTE_VIDEO_LIMIT else ""
        return f"invite note limit of {limit} characters{suffix}"
    if channel == Channel.email:
        return f"email body limit of {limit} characters"
    return f"{channel.value} limit of {limit} characters"


async def pending_draft(conn: AsyncConnection, ws: str, draft_id: UUID) -> Row[Any]:
    """The workspace's draft, locked, when it still waits for review (404 / 409 problems otherwise)."""
    row = (
        await conn.execute(
            select(drafts).where(drafts.c.draft_id == draft_id, drafts.c.workspace_id == ws).with_for_update()
        )
    ).first()
    if row is None:
        raise Problem(404, "draft_not_found", f"no draft {draft_id} in this workspace")
    if row.status != "pending":
        raise Problem(409, "draft_not_pending", f"draft {draft_id} is already {row.status}", status_now=row.status)
    return row


async def draft_row(conn: AsyncConnection, draft_id: UUID) -> Row[Any]:
    """A draft as stored now."""
    row = (await conn.execute(select(drafts).where(drafts.c.draft_id == draft_id))).first()
    assert row is not None
    return row


async def create_template(
    service: Service, ws: str, *, name: str, category: str, body: str, subject: str | None
) -> domain.Template:
    """Save a workspace template; an unknown variable is a 422 naming the field, a name taken (by a built-in or
    another template of the workspace) a 409."""
    check_template("body", body)
    if subject is not None:
        check_template("subject", subject)
    if name in domain.BUILTIN_TEMPLATES:
        raise Problem(409, "template_exists", f"{name!r} is a built-in template name")
    template_id = uuid.uuid4()
    async with service.engine.begin() as conn:
        # The unique name per workspace decides between two saves of one name at once: the second inserts nothing.
        result = await conn.execute(
            insert(templates)
            .values(
                template_id=template_id,
                workspace_id=ws,
                name=name,
                category=category,
                body=body,
                subject=subject,
                created_at=service.clock.now(),
            )
            .on_conflict_do_nothing()
        )
        if not result.rowcount:
            raise Problem(409, "template_exists", f"a template named {name!r} already exists")
    return domain.Template(name, category, body, subject, str(template_id))


async def set_strategy(service: Service, ws: str, campaign_id: UUID, strategy: Strategy) -> CampaignConfig:
    """Replace a campaign's strategy profile (drafts written from now on use it); returns the campaign as stored.

    404 when the workspace has no such campaign; a template it names that the workspace does not have is a 422."""
    async with service.engine.begin() as conn:
        row = (
            await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id).with_for_update())
        ).first()
        if row is None or row.workspace_id != ws:
            raise Problem(404, "campaign_not_found", f"no campaign {campaign_id} in this workspace")
        if strategy.template and await resolve_template(conn, ws, strategy.template) is None:
            raise unknown_template("template", strategy.template)
        # The steps needing a text are the workflow's (outreach decided them, invite notes included): a new
        # strategy changes how drafts are written and reviewed, not which steps have one.
        await conn.execute(
            update(campaigns)
            .where(campaigns.c.campaign_id == campaign_id)
            .values(strategy=strategy.model_dump(mode="json"), updated_at=service.clock.now())
        )
        campaign = await load_campaign(conn, campaign_id)
        assert campaign is not None
        return campaign


@dataclass(frozen=True)
class Checked:
    """An edit that passed the checks: the text and subject as they would be stored (variables filled)."""

    text: str
    subject: str | None


@dataclass(frozen=True)
class Rejected:
    """A rejected draft and the one written in its place (None for a comment whose post is gone)."""

    rejected: Row[Any]
    replacement: Row[Any] | None


class LabCommands:
    """Approve, edit and reject drafts of the review queue."""

    def __init__(self, core: MessagingCore, service: Service, *, generation_attempts: int = 3) -> None:
        self.core = core
        self.service = service
        self.generation_attempts = generation_attempts

    async def _approve(self, conn: AsyncConnection, ws: str, row: Row[Any]) -> None:
        event = MessageApproved(
            lead_id=row.lead_id,
            campaign_id=row.campaign_id,
            step_id=row.step_id,
            draft_id=row.draft_id,
            channel=Channel(row.channel),
            text=row.text,
            subject=row.subject,
            auto=False,
        )
        await conn.execute(
            update(drafts)
            .where(drafts.c.draft_id == row.draft_id)
            .values(status="approved", decided_at=self.service.clock.now())
        )
        await self.service.emit(conn, [self.service.new_envelope(event, workspace_id=ws)])

    async def approve(self, ws: str, draft_id: UUID) -> Row[Any]:
        """Approve a pending draft as written -> ``MessageApproved``."""
        async with self.service.engine.begin() as conn:
            await self._approve(conn, ws, await pending_draft(conn, ws, draft_id))
            out = await draft_row(conn, draft_id)
        self.service.wake_relay()
        return out

    async def approve_many(
        self, ws: str, campaign_id: UUID, draft_ids: list[UUID] | None
    ) -> tuple[list[Row[Any]], int]:
        """Approve the campaign's pending drafts (those of ``draft_ids``, or all) in one transaction.

        Returns the approved drafts and how many of the named ones were not pending any more (another
        reviewer decided them meanwhile): those are left as they are."""
        cond = [drafts.c.workspace_id == ws, drafts.c.campaign_id == campaign_id]
        if draft_ids is not None:
            cond.append(drafts.c.draft_id.in_(draft_ids))
        async with self.service.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(drafts)
                    .where(*cond, drafts.c.status == "pending")
                    .order_by(drafts.c.created_at, drafts.c.draft_id)
                    .with_for_update()
                )
            ).all()
            for row in rows:
                await self._approve(conn, ws, row)
            approved = [await draft_row(conn, r.draft_id) for r in rows]
        self.service.wake_relay()
        skipped = len(set(draft_ids)) - len(rows) if draft_ids is not None else 0
        return approved, skipped

    async def check_edit(self, conn: AsyncConnection, row: Row[Any], text: str, subject: str | None) -> Checked:
        """The edit as it would be stored, or a 422 naming the field (an unknown variable, over the limit)."""
        channel = Channel(row.channel)
        if subject is not None and channel != Channel.email:
            raise Problem(
                422,
                "subject_not_allowed",
                "subject: only email drafts have a subject",
                field="subject",
                errors=[{"field": "subject", "message": "only email drafts have a subject"}],
            )
        text, subject = text.strip(), (subject.strip() if subject else row.subject)
        if "{" in text or "}" in text or (subject and ("{" in subject or "}" in subject)):
            # Variables in an edit are filled for this lead now, so nothing unrendered is ever sent.
            check_template("text", text)
            check_template("subject", subject or "")
            _, profile = await load_profile(conn, row.lead_id)
            values = domain.lead_variables(profile)
            text = domain.render(text, values)
            subject = domain.render(subject, values) if subject else subject
        limit = domain.Limit(row.char_limit, row.subject_limit, limit_label(channel, row.char_limit))
        violations = domain.check_limits(text, subject, limit)
        if violations:
            v = violations[0]
            raise Problem(
                422,
                "over_limit",
                v.message(),
                field=v.field,
                length=v.length,
                limit=v.limit,
                errors=[{"field": x.field, "message": x.message()} for x in violations],
            )
        return Checked(text, subject)

    async def edit(self, ws: str, draft_id: UUID, text: str, subject: str | None, *, dry_run: bool = False) -> Any:
        """Replace a pending draft's text (checked against its limit) -> ``MessageEdited``.

        With ``dry_run`` only the checks run (the same 422 an edit would get) and nothing changes: the
        console asks while the reviewer types."""
        async with self.service.engine.begin() as conn:
            row = await pending_draft(conn, ws, draft_id)
            checked = await self.check_edit(conn, row, text, subject)
            if dry_run:
                return SimpleNamespace(**{**row._mapping, "text": checked.text, "subject": checked.subject})
            event = MessageEdited(
                lead_id=row.lead_id,
                campaign_id=row.campaign_id,
                step_id=row.step_id,
                draft_id=row.draft_id,
                channel=Channel(row.channel),
                text=checked.text,
                subject=checked.subject,
            )
            await conn.execute(
                update(drafts)
                .where(drafts.c.draft_id == draft_id)
                .values(
                    status="edited", text=checked.text, subject=checked.subject, decided_at=self.service.clock.now()
                )
            )
            await self.service.emit(conn, [self.service.new_envelope(event, workspace_id=ws)])
            out = await draft_row(conn, draft_id)
        self.service.wake_relay()
        return out

    async def reject(self, ws: str, draft_id: UUID, reason: str) -> Rejected:
        """Reject a pending draft -> ``MessageRejected``, and write a new draft in its place (``MessageGenerated``).

        A transient generator failure is retried a few times; then a 503 says nothing was changed."""
        return await self.writing(
            lambda: self._reject_once(ws, draft_id, reason), "the draft could not be rewritten now"
        )

    async def writing(self, attempt_once: Callable[[], Awaitable[T]], failure: str) -> T:
        """``attempt_once()`` (which asks the writer), tried again on a transient writer failure; then a 503
        problem saying ``failure`` and that nothing was changed."""
        for attempt in range(1, self.generation_attempts + 1):
            try:
                return await attempt_once()
            except (ProviderError, RetryLater) as exc:
                transient = isinstance(exc, RetryLater) or exc.transient
                if not transient or attempt == self.generation_attempts:
                    raise Problem(
                        503, "generator_unavailable", f"{failure} ({exc}); nothing was changed, try again"
                    ) from None
                delay = exc.delay_s if isinstance(exc, RetryLater) else 0.2 * attempt
                await asyncio.sleep(min(delay, 2.0))
        raise AssertionError("unreachable")

    async def _reject_once(self, ws: str, draft_id: UUID, reason: str) -> Rejected:
        service = self.service
        now = service.clock.now()
        async with service.engine.begin() as conn:
            row = await pending_draft(conn, ws, draft_id)
            campaign = await load_campaign(conn, row.campaign_id)
            assert campaign is not None
            _, profile = await load_profile(conn, row.lead_id)
            step = next(
                (s for s in campaign.steps if s.step_id == row.step_id),
                domain.StepSpec(row.step_id, Channel(row.channel)),
            ).for_variant(await lead_variant(conn, row.campaign_id, row.lead_id, row.step_id))
            rejected_env = service.new_envelope(
                MessageRejected(
                    lead_id=row.lead_id,
                    campaign_id=row.campaign_id,
                    step_id=row.step_id,
                    draft_id=row.draft_id,
                    channel=Channel(row.channel),
                    reason=reason,
                ),
                workspace_id=ws,
            )
            emissions: list[Emission] = await self.core.make_draft(
                conn,
                campaign,
                row.lead_id,
                profile,
                step,
                now,
                cause=rejected_env.id,
                attempt=row.attempt + 1,
                feedback=reason,
                replaces=row.draft_id,
            )
            await conn.execute(
                update(drafts)
                .where(drafts.c.draft_id == draft_id)
                .values(status="rejected", reason=reason, decided_at=now)
            )
            envs: list[Envelope[Any]] = [rejected_env]
            envs += [
                rejected_env.caused(em.event, source=service.source, time=now, discriminator=em.discriminator)
                for em in emissions
            ]
            await service.emit(conn, envs)
            rejected = await draft_row(conn, draft_id)
            new_row = (
                await conn.execute(
                    select(drafts).where(drafts.c.replaces == draft_id).order_by(drafts.c.attempt.desc())
                )
            ).first()
        service.wake_relay()
        return Rejected(rejected, new_row)
