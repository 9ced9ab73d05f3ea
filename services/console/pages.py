"""The console's routes: sign-in and sign-out, the pages (home, campaigns, a campaign, a lead, accounts),
their live partials, the live stream, and the small JSON API that makes one-time sign-in links."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.runtime.auth import browser

from . import domain
from .backends import BackendRefused, BackendUnavailable, SignedOut
from .live import relay
from .sessions import Session
from .web import Console, gather, json_problem

Text = Annotated[str | None, Query(max_length=200)]
Cursor = Annotated[str | None, Query(max_length=500)]
STATE_FILTERS = ("running", "scheduled", "paused", "needs_review", "finished", "pending")


class SignInLink(BaseModel):
    """A one-time sign-in link: open it in a browser once, before it expires."""

    url: str = Field(max_length=2000)
    expires_at: datetime


def uuid_or_404(value: str) -> UUID:
    """A path id; anything that is not a UUID is simply not found."""
    try:
        return UUID(value)
    except ValueError:
        raise BackendRefused(404, "not_found", "not found") from None


async def signed_in(request: Request) -> Session:
    """The request's session (FastAPI dependency); without one, the page redirects to sign-in."""
    console: Console = request.app.state.console
    return await console.signed_in(request)


Signed = Annotated[Session, Depends(signed_in)]


async def csrf_form(request: Request) -> dict[str, str]:
    """The POSTed form once its CSRF token matched the cookie (FastAPI dependency); else a refusal page."""
    console: Console = request.app.state.console
    return await console.check_csrf(request)


CsrfForm = Annotated[dict[str, str], Depends(csrf_form)]

# What authenticates each kind of browser route (the pages are not in the OpenAPI document; the routes test holds
# each to its kind: a PAGE depends on `signed_in`, every form POST on `csrf_form`).
PAGE = browser("a console page: the session cookie made when signing in with a workspace token")
SIGN_IN = browser("signing in or out: public by purpose; its form POSTs carry the CSRF token")
STATIC_FILES = browser("the console's static files: no data")
# The token is checked by the projection (its read scope): the console holds no identity of its own. Declared with
# its scope so the OpenAPI document says what the route needs (tests/services/test_routes.py).
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(HTTPBearer(auto_error=False), scopes=["read"])]


def build_router(console: Console) -> list[APIRouter]:
    """Every route of the console: the pages (not in the OpenAPI document) and the small JSON API."""
    router = APIRouter(include_in_schema=False)  # each route says what authenticates it: PAGE, SIGN_IN, STATIC_FILES
    api = APIRouter(prefix="/v1", tags=["console"])
    projection = console.backends.projection
    size = console.settings.console_page_size

    # -- signing in and out -----------------------------------------------------------------------

    @router.get("/sign-in", response_class=HTMLResponse, openapi_extra=SIGN_IN)
    async def sign_in_page(
        request: Request,
        next: Annotated[str | None, Query(max_length=500)] = None,
        expired: Annotated[str | None, Query(max_length=5)] = None,
    ) -> Response:
        if await console.session(request) is not None:
            return RedirectResponse(domain.safe_next(next), status_code=303)
        notice = "Your session ended: sign in again." if expired else None
        return console.render(request, "sign_in.html", next=domain.safe_next(next), notice=notice, error=None)

    @router.post("/sign-in", response_class=HTMLResponse, openapi_extra=SIGN_IN)
    async def sign_in(request: Request, form: CsrfForm) -> Response:
        token = (form.get("token") or "").strip()
        target = domain.safe_next(form.get("next"))
        error = None
        if not token:
            error = "Paste your workspace API token."
        elif len(token) > 500 or not token.isascii() or not token.isprintable() or " " in token:
            error = "That is not a leadstream token: paste it exactly as it was shown."
        else:
            try:
                onboarding = await projection.onboarding(token)
            except SignedOut:
                error = "That token is not valid. Create one with `leadstream tokens create --workspace <id>`."
            except BackendUnavailable:
                error = "leadstream is not answering right now; try again in a moment."
            else:
                session = await console.sessions.create(onboarding.workspace_id, token)
                response = RedirectResponse(target, status_code=303)
                console.set_session_cookie(response, session)
                console.rotate_csrf(request, response)
                return response
        return console.render(request, "sign_in.html", status=400, next=target, notice=None, error=error)

    @router.get("/sign-in/link/{code}", response_class=HTMLResponse, openapi_extra=SIGN_IN)
    async def link_page(request: Request, code: str) -> Response:
        link = await console.sessions.peek_link(code[:100])
        return console.render(request, "link.html", status=200 if link else 410, link=link, code=code[:100])

    @router.post("/sign-in/link/{code}", response_class=HTMLResponse, openapi_extra=SIGN_IN)
    async def use_link(request: Request, code: str, _: CsrfForm) -> Response:
        used = await console.sessions.use_link(code[:100])
        if used is None:
            return console.render(request, "link.html", status=410, link=None, code=code[:100])
        session = await console.sessions.create(*used)
        response = RedirectResponse("/", status_code=303)
        console.set_session_cookie(response, session)
        console.rotate_csrf(request, response)
        return response

    @router.post("/sign-out", openapi_extra=SIGN_IN)
    async def sign_out(request: Request, _: CsrfForm) -> Response:
        session = await console.session(request)
        if session is not None:
            await console.sessions.end(session.id)
        response = RedirectResponse("/sign-in", status_code=303)
        console.clear_session_cookie(response)
        console.rotate_csrf(request, response)
        return response

    @api.post("/sign-in-links", status_code=201, response_model=SignInLink)
    async def create_link(creds: Bearer) -> SignInLink | JSONResponse:
        """A one-time sign-in link for the workspace of the bearer token (``make demo`` prints one)."""
        if creds is None or not creds.credentials or len(creds.credentials) > 500:
            return json_problem(401, "unauthenticated", "send 'Authorization: Bearer <workspace token>'")
        try:
            onboarding = await projection.onboarding(creds.credentials)
        except SignedOut:
            return json_problem(401, "invalid_token", "the bearer token is not valid")
        code, expires = await console.sessions.create_link(onboarding.workspace_id, creds.credentials)
        base = console.settings.console_public_url.rstrip("/")
        return SignInLink(url=f"{base}/sign-in/link/{code}", expires_at=expires)

    # -- home -------------------------------------------------------------------------------------

    async def home_context(session: Session) -> dict[str, Any]:
        home = await projection.home(session.token)
        return {"home": home}

    @router.get("/", response_class=HTMLResponse, openapi_extra=PAGE)
    async def home(request: Request, session: Signed) -> Response:
        return console.render(request, "home.html", **await home_context(session))

    @router.get("/partials/home", response_class=HTMLResponse, openapi_extra=PAGE)
    async def home_partial(request: Request, session: Signed) -> Response:
        return console.render(request, "partials/home_live.html", **await home_context(session))

    # -- campaigns --------------------------------------------------------------------------------

    async def campaigns_context(
        session: Session, q: str | None, state: str | None, after: str | None
    ) -> dict[str, Any]:
        state = state if state in STATE_FILTERS else None
        page = await projection.campaigns(session.token, q=q, state=state, after=after, limit=size)
        return {"page": page, "q": q or "", "state": state or "", "after": after, "states": STATE_FILTERS}

    @router.get("/campaigns", response_class=HTMLResponse, openapi_extra=PAGE)
    async def campaigns(request: Request, session: Signed, q: Text = None, state: Text = None, after: Cursor = None):  # type: ignore[no-untyped-def]
        ctx = await campaigns_context(session, q, state, after)
        template = (
            "partials/campaign_rows.html" if request.headers.get("HX-Target") == "campaign-table" else "campaigns.html"
        )
        return console.render(request, template, **ctx)

    async def summary_context(request: Request, session: Session, campaign_id: UUID) -> dict[str, Any]:
        summary, series, stages = await gather(
            projection.summary(session.token, campaign_id),
            projection.series(session.token, campaign_id, days=14, tz=console.tz(request)),
            projection.stages(session.token, campaign_id),
        )
        return {"summary": summary, "series": series, "stages": stages}

    async def results_context(
        session: Session, campaign_id: UUID, q: str | None, stage: str | None, after: str | None
    ) -> dict[str, Any]:
        results = await projection.results(
            session.token, campaign_id, q=q, stage=stage or None, after=after, limit=size
        )
        return {"results": results, "q": q or "", "stage": stage or "", "after": after}

    @router.get("/campaigns/{campaign_id}", response_class=HTMLResponse, openapi_extra=PAGE)
    async def campaign(
        request: Request,
        campaign_id: str,
        session: Signed,
        q: Text = None,
        stage: Text = None,
        after: Cursor = None,
        done: Text = None,
        launched: Text = None,
    ) -> Response:
        cid = uuid_or_404(campaign_id)
        info, summary_ctx, results_ctx, detail, accounts = await gather(
            projection.campaign(session.token, cid),
            summary_context(request, session, cid),
            results_context(session, cid, q, stage, after),
            console.backends.outreach.campaign(session.token, cid),
            console.backends.outreach.accounts(session.token),
        )
        names = {a.account_id: a.display_name or f"Account {str(a.account_id)[:8]}" for a in accounts.items}
        notice = domain.campaign_notice(done, launched)
        return console.render(
            request,
            "campaign.html",
            campaign=info,
            campaign_id=cid,
            detail=detail,
            names=names,
            healthy=[a for a in accounts.items if a.provider == "linkedin" and a.healthy],
            notice=notice,
            **summary_ctx,
            **results_ctx,
        )

    @router.get("/campaigns/{campaign_id}/summary", response_class=HTMLResponse, openapi_extra=PAGE)
    async def campaign_summary(request: Request, campaign_id: str, session: Signed) -> Response:
        cid = uuid_or_404(campaign_id)
        return console.render(
            request, "partials/campaign_summary.html", campaign_id=cid, **await summary_context(request, session, cid)
        )

    @router.get("/campaigns/{campaign_id}/results", response_class=HTMLResponse, openapi_extra=PAGE)
    async def campaign_results(
        request: Request, campaign_id: str, session: Signed, q: Text = None, stage: Text = None, after: Cursor = None
    ) -> Response:
        cid = uuid_or_404(campaign_id)
        ctx = await results_context(session, cid, q, stage, after)
        stages = await projection.stages(session.token, cid)
        return console.render(request, "partials/results.html", campaign_id=cid, stages=stages, **ctx)

    # -- a lead -----------------------------------------------------------------------------------

    async def lead_context(session: Session, lead_id: UUID) -> dict[str, Any]:
        lead, timeline = await gather(
            projection.lead(session.token, lead_id), projection.timeline(session.token, lead_id)
        )
        return {"lead": lead, "timeline": list(reversed(timeline.items))}

    @router.get("/leads/{lead_id}", response_class=HTMLResponse, openapi_extra=PAGE)
    async def lead(
        request: Request, lead_id: str, session: Signed, blocked: Annotated[str | None, Query(max_length=20)] = None
    ) -> Response:
        ctx = await lead_context(session, uuid_or_404(lead_id))
        choices = domain.block_choices(ctx["lead"].email, ctx["lead"].linkedin_url)
        done = next((c for c in choices if c.kind == blocked), None)
        return console.render(request, "lead.html", block_choices=choices, blocked=done, **ctx)

    @router.get("/leads/{lead_id}/live", response_class=HTMLResponse, openapi_extra=PAGE)
    async def lead_live(request: Request, lead_id: str, session: Signed) -> Response:
        return console.render(request, "partials/lead_live.html", **await lead_context(session, uuid_or_404(lead_id)))

    # -- live -------------------------------------------------------------------------------------

    @router.get("/live", openapi_extra=PAGE)
    async def live(
        request: Request,
        session: Signed,
        lead: Annotated[UUID | None, Query()] = None,
        campaign: Annotated[UUID | None, Query()] = None,
        home: bool = False,
        campaigns: bool = False,
        accounts: bool = False,
        search: Annotated[UUID | None, Query()] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=100)] = None,
    ) -> EventSourceResponse:
        """The page's live updates: the projection's change stream, filtered to what the page shows."""
        watch = domain.Watch(
            lead=lead, campaign=campaign, home=home, campaigns=campaigns, accounts=accounts, search=search
        )

        async def events() -> AsyncIterator[ServerSentEvent]:
            async for name, event_id in relay(projection, session.token, watch, last_event_id, console.service):
                if await request.is_disconnected():
                    return
                yield ServerSentEvent(data=name, event=name, id=event_id)

        return EventSourceResponse(events(), ping=15, send_timeout=30, headers={"Cache-Control": "no-store"})

    return [router, api]
