"""Outreach HTTP routes: campaigns (create, list, details, prepare, launch, pause, resume, delete, leads) and
workflow presets; accounts, compliance and webhooks live in their own modules and are included here.
Every route is scoped to the token's workspace; another workspace's campaign answers 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Query, Response
from sqlalchemy import select, tuple_

from services.runtime.auth import ReadWorkspace, WriteWorkspace
from services.runtime.idempotency import IdempotencyKey
from services.runtime.pagination import After, Limit, Page, bounded, decode_cursor, encode_cursor
from services.runtime.plans import Plan, plan_router

from .api_accounts import accounts_router
from .api_compliance import compliance_router
from .api_webhooks import webhooks_router
from .context import OutreachContext
from .domain.workflow import PRESET_DESCRIPTIONS, PRESET_TITLES, GraphError, resolve_workflow
from .models import (
    AccountsIn,
    CampaignDetailOut,
    CampaignEditIn,
    CampaignIn,
    CampaignOut,
    CheckedWorkflowOut,
    EnrollmentOut,
    ExtendIn,
    GraphOut,
    LaunchIn,
    LaunchPlanOut,
    PresetOut,
    WorkflowCheckIn,
)
from .problems import invalid, not_found
from .store import campaigns, enrollments

CampaignState = Literal["pending", "prepared", "scheduled", "running", "paused", "finished", "needs_review"]
"""The states a listed campaign can be in (deleted ones are not listed): a filter on any other answered an empty
page, as if the workspace had no such campaign, instead of saying the state does not exist."""


def campaigns_router(ctx: OutreachContext) -> APIRouter:
    """The campaign routes bound to ``ctx``."""
    r = APIRouter(tags=["campaigns"])
    commands = ctx.campaigns

    @r.get("/v1/workflow-presets", openapi_extra=bounded("the presets the code defines"))
    async def presets(ws: ReadWorkspace) -> list[PresetOut]:
        """The documented preset graphs."""

        def graph(name: str) -> GraphOut:
            return GraphOut.model_validate(resolve_workflow(name, default_note=True, email_fallback=False).to_dict())

        return [
            PresetOut(
                name=name,
                title=title,
                description=PRESET_DESCRIPTIONS[name],
                graph=graph(name),
            )
            for name, title in PRESET_TITLES.items()
        ]

    @r.post("/v1/workflows/validate")
    async def validate_workflow(body: WorkflowCheckIn, ws: WriteWorkspace) -> CheckedWorkflowOut:
        """The validated graph of a preset with options (what a campaign with this workflow would run): its
        steps, edges with their waits, the warnings of validation and the unreachable steps; a value out of
        its range is a 422 naming it. Nothing is stored."""
        try:
            graph = resolve_workflow(
                body.workflow.model_dump(exclude_none=True),
                default_note=body.invite_note,
                email_fallback=body.email_fallback,
            )
        except GraphError as exc:
            raise invalid(exc.field, exc.message) from None
        return CheckedWorkflowOut(graph=GraphOut.model_validate(graph.to_dict()))

    @r.post("/v1/campaigns", status_code=201)
    async def create(
        body: CampaignIn,
        response: Response,
        plan: Plan,
        ws: WriteWorkspace,
        key: IdempotencyKey = None,
    ) -> CampaignDetailOut:
        """Create a campaign (pending). The workflow is validated; dropped edges are listed in ``warnings``.

        Video needs the Video add-on and the email fallback an email sender (Scale): otherwise a 403
        ``plan_required`` names the field. The same request sent again with its ``Idempotency-Key`` answers
        with the campaign the first one made (``Idempotent-Replayed: true``)."""
        if body.video is not None:
            plan.require("video", "video")
        if body.delivery.email_fallback is not None:
            plan.require("email_sender", "delivery.email_fallback")
        out, created = await commands.create(ws, body, idempotency_key=key)
        if not created:
            response.headers["Idempotent-Replayed"] = "true"
        return out

    @r.get("/v1/campaigns", response_model=Page[CampaignOut])
    async def list_campaigns(
        ws: ReadWorkspace,
        q: Annotated[str | None, Query(max_length=200, description="Search by name")] = None,
        state: Annotated[CampaignState | None, Query(description="Only campaigns in this state.")] = None,
        limit: Limit = 50,
        after: After = None,
    ) -> Page[CampaignOut]:
        """Campaigns with audience type, state, next run and pace, newest first (keyset pages)."""
        return await commands.list(ws, q, state, after=after, limit=limit)

    @r.get("/v1/campaigns/{campaign_id}")
    async def details(campaign_id: UUID, ws: ReadWorkspace) -> CampaignDetailOut:
        """One campaign in detail."""
        return await commands.details(ws, campaign_id)

    @r.patch("/v1/campaigns/{campaign_id}")
    async def edit(campaign_id: UUID, body: CampaignEditIn, ws: WriteWorkspace) -> CampaignDetailOut:
        """Edit the workflow, also of a running campaign: a new version of the sequence (``workflow_version``).
        Leads that have not started move to it; leads already in the sequence finish on their version."""
        return await commands.edit(ws, campaign_id, body)

    @r.post("/v1/campaigns/{campaign_id}/prepare")
    async def prepare(campaign_id: UUID, ws: WriteWorkspace) -> CampaignDetailOut:
        """Prepare for review before launch: the audience's ready leads are enrolled without starting their
        sequences and their drafts are written for the Messaging Lab (``drafts`` counts them); launch starts them."""
        return await commands.prepare(ws, campaign_id)

    @r.post("/v1/campaigns/{campaign_id}/launch")
    async def launch(
        campaign_id: UUID,
        ws: WriteWorkspace,
        body: LaunchIn = Body(default_factory=LaunchIn),  # noqa: B008
        key: IdempotencyKey = None,
    ) -> CampaignDetailOut:
        """Launch a pending or prepared campaign: the guard checks the daily limit (1-79) and the email-fallback
        confirmation; a prepared campaign's leads start their sequences with their approved drafts. Sent again with
        the same ``Idempotency-Key`` (a double click), it answers with the campaign and launches nothing."""
        return await commands.launch(ws, campaign_id, body, idempotency_key=key)

    @r.get("/v1/campaigns/{campaign_id}/launch-plan")
    async def launch_plan(campaign_id: UUID, ws: ReadWorkspace) -> LaunchPlanOut:
        """Where each lead will go if the campaign launches now: accounts that send (or are skipped, and why),
        and per audience lead its account, or why it waits or is skipped (first 50 by name)."""
        return await commands.launch_plan(ws, campaign_id)

    @r.put("/v1/campaigns/{campaign_id}/accounts")
    async def replace_accounts(campaign_id: UUID, body: AccountsIn, ws: WriteWorkspace) -> CampaignDetailOut:
        """Send from these LinkedIn accounts instead: resolves a campaign that needs review because its account
        was deleted (its leads move to the new accounts and it runs again)."""
        return await commands.replace_accounts(ws, campaign_id, body)

    @r.post("/v1/campaigns/{campaign_id}/pause")
    async def pause(campaign_id: UUID, ws: WriteWorkspace) -> CampaignDetailOut:
        """Pause."""
        return await commands.pause(ws, campaign_id)

    @r.post("/v1/campaigns/{campaign_id}/resume")
    async def resume(campaign_id: UUID, ws: WriteWorkspace) -> CampaignDetailOut:
        """Resume a paused campaign, or a finished one (it enrolls the members its audience gained since)."""
        return await commands.resume(ws, campaign_id)

    @r.post("/v1/campaigns/{campaign_id}/extend")
    async def extend(campaign_id: UUID, body: ExtendIn, ws: WriteWorkspace) -> CampaignDetailOut:
        """Extend a running, paused or finished campaign: ``CampaignExtended`` lets its audience's searches find
        ``additional_leads`` more new leads; a finished campaign runs again with its late joiners."""
        await commands.audiences.extend_campaign(ws, campaign_id, body.additional_leads)
        return await commands.details(ws, campaign_id)

    @r.delete("/v1/campaigns/{campaign_id}", status_code=204)
    async def delete(campaign_id: UUID, ws: WriteWorkspace) -> Response:
        """Delete (releases the account leases)."""
        await commands.delete(ws, campaign_id)
        return Response(status_code=204)

    @r.get("/v1/campaigns/{campaign_id}/leads", response_model=Page[EnrollmentOut])
    async def leads(
        campaign_id: UUID, ws: ReadWorkspace, limit: Limit = 50, after: After = None
    ) -> Page[EnrollmentOut]:
        """The campaign's enrolled leads (account, state, steps done) in the order they were enrolled."""
        start = decode_cursor(after, 2, [datetime.fromisoformat, UUID]) if after else None
        async with ctx.service.engine.connect() as conn:
            exists = await conn.scalar(
                select(campaigns.c.campaign_id).where(
                    campaigns.c.campaign_id == campaign_id,
                    campaigns.c.workspace_id == ws,
                    campaigns.c.state != "deleted",
                )
            )
            if exists is None:
                raise not_found("campaign", campaign_id)
            stmt = select(enrollments).where(enrollments.c.campaign_id == campaign_id)
            if start is not None:
                stmt = stmt.where(tuple_(enrollments.c.enrolled_at, enrollments.c.lead_id) > tuple_(*start))
            rows = (
                await conn.execute(stmt.order_by(enrollments.c.enrolled_at, enrollments.c.lead_id).limit(limit + 1))
            ).all()
        page = Page.of(rows, limit, lambda e: encode_cursor([e.enrolled_at.isoformat(), str(e.lead_id)]))
        return Page[EnrollmentOut](
            items=[
                EnrollmentOut(
                    lead_id=e.lead_id,
                    account_id=e.account_id,
                    state=e.state,
                    steps_done=e.steps_done,
                    workflow_version=e.workflow_version,
                    accepted_at=e.accepted_at,
                    enrolled_at=e.enrolled_at,
                )
                for e in page.items
            ],
            next=page.next,
        )

    return r


def build_router(ctx: OutreachContext) -> APIRouter:
    """Every outreach route."""
    router = APIRouter()
    for sub in (
        campaigns_router(ctx),
        accounts_router(ctx),
        compliance_router(ctx),
        webhooks_router(ctx),
        plan_router(),
    ):
        router.include_router(sub)
    return router
