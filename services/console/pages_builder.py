"""The campaign builder: audience, workflow (drawn and validated), messages (with previews for sample leads),
delivery, video and accounts, step by step in one form; then the summary page where the user sees where each
lead will go and confirms the launch."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from . import builder, commands, domain, models
from .backends import BackendRefused, BackendUnavailable
from .commands import Refused
from .pages import PAGE, CsrfForm, Signed, uuid_or_404
from .sessions import Session
from .web import Console, answered, gather

T = TypeVar("T")

Ref = Annotated[str | None, Query(max_length=100)]
StepName = Annotated[str | None, Query(max_length=20, description="The builder step to open (one of the six).")]


def new_key() -> str:
    """A fresh idempotency key for one builder or one launch form."""
    return secrets.token_urlsafe(18)


def builder_router(console: Console) -> APIRouter:
    """The builder's pages and partials."""
    router = APIRouter(include_in_schema=False)
    b = console.backends

    async def graph_of(session: Session, values: dict[str, Any]) -> tuple[models.Graph | None, dict[str, str]]:
        try:
            checked = await b.outreach.check_workflow(session.token, builder.workflow_check(values))
        except BackendRefused as exc:
            if exc.status == 404:
                raise
            return None, builder.check_errors(Refused("outreach", exc).field_errors().messages)
        return checked.graph, {}

    async def context(
        session: Session,
        values: dict[str, Any],
        errors: builder.FieldErrors | None = None,
        current: str | None = None,
    ) -> dict[str, Any]:
        """What the builder shows around ``values``. Drawn again after a refusal (``errors``), every list it reads
        is optional: a service that does not answer leaves its list out (None, the service named in ``down``) and
        the choices made in it go back as hidden values, so nothing typed is lost and a resubmit sends them. The step
        opened is the first field error's, else ``current`` (the step the user was on, or the link's)."""
        down: set[str] = set()

        async def read(call: Awaitable[T]) -> T | None:
            return await call if errors is None else await answered(call, down)

        async def drawn() -> tuple[models.Graph | None, dict[str, str]]:
            found = await read(graph_of(session, values))
            return found if found is not None else (None, {})

        presets, groups, accounts, plan, (graph, graph_errors) = await gather(
            read(b.outreach.presets(session.token)),
            read(b.discovery.groups(session.token)),
            read(b.outreach.accounts(session.token)),
            read(b.outreach.plan(session.token)),
            drawn(),
        )
        errors = errors or builder.FieldErrors()
        for name, message in graph_errors.items():
            errors.add(name, message)
        linkedin = [a for a in accounts.items if a.provider == "linkedin"] if accounts is not None else None
        senders = (
            [a for a in accounts.items if a.provider == "email" and a.sender_email_verified]
            if accounts is not None
            else None
        )
        return {
            "values": values,
            "errors": errors.messages,
            # what the workflow check refused, for the graph's box (the page shows every error at its field)
            "graph_errors": graph_errors,
            "upgrade": errors.upgrade,
            "open_step": builder.open_step(errors, current),
            "presets": presets.items if presets is not None else None,
            "groups": groups.items if groups is not None else None,
            "down": sorted(down),
            "linkedin": linkedin,
            "senders": senders,
            "plan": plan,
            "graph": graph,
            "drawing": builder.drawing_of(graph) if graph else None,
            "B": builder,
            "builder_key": values.get("_key") or new_key(),
        }

    @router.get("/campaigns/new", response_class=HTMLResponse, openapi_extra=PAGE)
    async def new(request: Request, session: Signed, list: Ref = None, step: StepName = None) -> Response:
        values = builder.defaults()
        values["timezone"] = console.tz(request)
        if list:
            values.update(audience_type="source_group", source_group_id=str(uuid_or_404(list)))
        ctx = await context(session, values, current=step)
        values["account_ids"] = builder.preselected_accounts(ctx["linkedin"])  # only on a new builder's first page
        return console.render(request, "builder.html", **ctx)

    @router.post("/campaigns/new", response_class=HTMLResponse, openapi_extra=PAGE)
    async def create(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """Review: make the audience, the template and the pending campaign; then the summary page."""
        form = await console.form(request)
        values = builder.values_from(form.multi_items())
        key = str(form.get("builder_key") or "")[:100] or new_key()
        try:
            pending = await commands.create_pending_campaign(b, session.token, values, key, console.tz(request))
        except Refused as exc:
            values["_key"] = key
            errors = exc.field_errors()
            if values.get("audience_type") == "posts" and "lookback_days" in errors.messages:
                errors.messages["post_lookback_days"] = errors.messages.pop("lookback_days")
            if exc.unavailable:
                errors.messages["form"] = domain.builder_unavailable_message(exc.api)
            # the step the user reviewed from (app.js keeps the form's "step" up to date): a message above the steps
            # (the name, the form's own) leaves them there
            ctx = await context(session, values, errors, current=str(form.get("step") or "")[:20])
            return console.render(request, "builder.html", status=exc.status, **ctx)
        return RedirectResponse(f"/campaigns/{pending.campaign.campaign_id}/launch", status_code=303)

    @router.post("/campaigns/new/workflow", response_class=HTMLResponse, openapi_extra=PAGE)
    async def workflow(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """The workflow drawn and validated for the form as it is (htmx)."""
        values = builder.values_from((await console.form(request)).multi_items())
        graph, errors = await graph_of(session, values)
        drawing = builder.drawing_of(graph) if graph else None
        presets = await b.outreach.presets(session.token)
        return console.render(
            request,
            "partials/workflow_check.html",
            graph=graph,
            drawing=drawing,
            errors=errors,
            values=values,
            presets=presets.items,
            down=(),
            B=builder,
        )

    async def sample_leads(session: Session, values: dict[str, Any]) -> list[dict[str, Any]]:
        kind = values.get("audience_type")
        group = values.get("csv_group_id") if kind == "csv" else values.get("source_group_id")
        if kind in ("source_group", "csv"):
            if not group:
                return []
            members = await b.discovery.members(session.token, uuid_or_404(str(group)), limit=3)
            return [
                {"lead_id": str(m.lead_id), "full_name": m.full_name, "headline": m.title, "company": m.company}
                for m in members.items
            ]
        request = builder.search_request(values)
        if request is None:
            return []
        found = await b.discovery.preview(session.token, request["kind"], request["criteria"], limit=3)
        return [
            {
                "lead_id": str(m.lead_id),
                "full_name": m.full_name,
                "first_name": m.first_name,
                "last_name": m.last_name,
                "headline": m.title,
                "company": m.company,
                "city": m.location,
            }
            for m in found.matches
        ]

    @router.post("/campaigns/new/preview", response_class=HTMLResponse, openapi_extra=PAGE)
    async def preview(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """Each step's message for a few leads of the audience, written now, saved nowhere (htmx)."""
        values = builder.values_from((await console.form(request)).multi_items())
        errors: dict[str, str] = {}
        previews = None
        try:
            graph, errors = await graph_of(session, values)
            leads = await sample_leads(session, values)
            if graph is not None and leads:
                steps = [s.model_dump() for s in graph.steps if s.id not in graph.unreachable]
                previews = await b.messaging.previews(session.token, builder.preview_request(values, steps, leads))
            elif graph is not None:
                errors["form"] = "Choose the audience first: the preview writes to a few of its leads."
        except BackendRefused as exc:
            if exc.status == 404:
                raise
            api = "messaging" if exc.field and exc.field.startswith(("template", "strategy", "email")) else "discovery"
            errors = Refused(api, exc).field_errors().messages
        except BackendUnavailable as exc:
            errors = {"form": f"The previews could not be written right now ({exc.backend} is busy): try again."}
        return console.render(request, "partials/message_preview.html", previews=previews, errors=errors)

    @router.post("/campaigns/new/part/{part}", response_class=HTMLResponse, openapi_extra=PAGE)
    async def plan_part(request: Request, part: str, session: Signed, _csrf: CsrfForm) -> Response:
        """The video step or the email fallback as the plan allows them now (after an upgrade in its dialog);
        the values typed so far are kept."""
        if part not in ("video", "email"):
            raise BackendRefused(404, "not_found", "not found")
        values = builder.values_from((await console.form(request)).multi_items())
        plan, accounts = await gather(b.outreach.plan(session.token), b.outreach.accounts(session.token))
        senders = [a for a in accounts.items if a.provider == "email" and a.sender_email_verified]
        template = "partials/video_step.html" if part == "video" else "partials/email_step.html"
        return console.render(
            request, template, values=values, plan=plan, senders=senders, errors={}, upgrade={}, B=builder
        )

    # -- the summary and the launch -------------------------------------------------------------

    async def launch_context(session: Session, campaign_id: UUID, *, redraw: bool = False) -> dict[str, Any]:
        """The summary of a pending campaign. The lead list, its search and the accounts' names only add to it, so
        a service that does not answer them leaves them out; drawn again after a refused launch (``redraw``), the
        campaign and its launch plan may be missing too (outreach did not answer): the launch form stands alone."""
        down: set[str] = set()

        async def essential(call: Awaitable[T]) -> T | None:
            return await answered(call, down) if redraw else await call

        campaign, plan, accounts, groups = await gather(
            essential(b.outreach.campaign(session.token, campaign_id)),
            essential(b.outreach.launch_plan(session.token, campaign_id)),
            answered(b.outreach.accounts(session.token), down),
            answered(b.discovery.groups(session.token), down),
        )
        names = {a.account_id: a.display_name or f"Account {str(a.account_id)[:8]}" for a in (accounts or _NONE).items}
        if campaign is None or plan is None:
            return {
                "campaign_id": campaign_id,
                "campaign": None,
                "plan": None,
                "names": names,
                "email_steps": [],
                "launch_key": new_key(),
            }
        group = next((g for g in (groups or _NO_GROUPS).items if str(g.source_group_id) == campaign.audience.ref), None)
        search = None
        if group is not None and group.search_id is not None and group.kind != "csv":
            try:
                search = await b.discovery.search(session.token, group.search_id)
            except (BackendRefused, BackendUnavailable):
                search = None  # the summary stands without the search's progress
        previews = None
        leads = [
            {"lead_id": str(p.lead_id), "full_name": p.name, "company": p.company}
            for p in plan.assignments
            if p.status != "duplicate"
        ][:3]
        steps = [s.model_dump() for s in campaign.workflow.steps if s.id not in campaign.workflow.unreachable]
        if leads:
            try:
                previews = await b.messaging.previews(
                    session.token,
                    {
                        "strategy": campaign.strategy.model_dump(),
                        "steps": steps,
                        "video": campaign.video is not None,
                        "leads": leads,
                        **_email_preview(campaign),
                    },
                )
            except (BackendRefused, BackendUnavailable):
                previews = None  # the summary stands without them
        email_steps = [
            s for s in campaign.workflow.steps if s.action == "email" and s.id not in campaign.workflow.unreachable
        ]
        drawing = builder.drawing_of(campaign.workflow)
        return {
            "campaign_id": campaign_id,
            "campaign": campaign,
            "plan": plan,
            "names": names,
            "group": group,
            "search": search,
            "previews": previews,
            "email_steps": email_steps,
            "drawing": drawing,
            "launch_key": new_key(),
        }

    @router.get("/campaigns/{campaign_id}/launch", response_class=HTMLResponse, openapi_extra=PAGE)
    async def summary(request: Request, campaign_id: str, session: Signed) -> Response:
        ctx = await launch_context(session, uuid_or_404(campaign_id))
        if ctx["campaign"].state != "pending":
            return RedirectResponse(f"/campaigns/{campaign_id}", status_code=303)
        return console.render(request, "launch.html", errors={}, values={}, **ctx)

    @router.post("/campaigns/{campaign_id}/launch", response_class=HTMLResponse, openapi_extra=PAGE)
    async def launch(request: Request, campaign_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        """Launch after the confirmation (the same key twice launches once)."""
        cid = uuid_or_404(campaign_id)
        form = await console.form(request)
        key = str(form.get("launch_key") or "")[:100] or new_key()
        values = {
            "daily_limit": str(form.get("daily_limit") or "")[:10],
            "confirm_email_fallback": str(form.get("confirm_email_fallback") or ""),
        }
        try:
            await commands.launch_campaign(
                b,
                session.token,
                cid,
                key=key,
                confirm_email=bool(values["confirm_email_fallback"]),
                daily_limit=values["daily_limit"],
            )
        except Refused as exc:
            ctx = await launch_context(session, cid, redraw=True)
            ctx["launch_key"] = key  # the same launch, tried again, is still one launch
            errors = exc.field_errors().messages
            if exc.unavailable:
                errors["form"] = domain.launch_unavailable_message(exc.api)
            return console.render(request, "launch.html", status=exc.status, errors=errors, values=values, **ctx)
        return RedirectResponse(f"/campaigns/{campaign_id}?launched=1", status_code=303)

    return router


def _email_preview(campaign: models.CampaignDetail) -> dict[str, Any]:
    fallback = campaign.delivery.email_fallback
    if fallback is not None:
        return {"email_fallback": {"subject": fallback.subject, "body": fallback.body}}
    return {}


_NONE = models.OutreachAccounts(items=[])
_NO_GROUPS = models.SourceGroupList(items=[])
