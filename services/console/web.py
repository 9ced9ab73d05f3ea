"""The console's request plumbing: who is signed in, CSRF checks, page rendering and the error screens."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.runtime.clock import Clock, scale_of
from services.runtime.errors import problem_response
from services.runtime.service import Service

from . import domain
from .backends import BackendRefused, Backends, BackendUnavailable, SignedOut
from .sessions import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    Session,
    SessionStore,
    Vault,
    new_secret,
    same,
)
from .settings import ConsoleSettings

TEMPLATES = Path(__file__).parent / "templates"
TZ_COOKIE = "ls_tz"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # Every script and style is a file of this site: no inline code can run, nothing loads from elsewhere.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
T = TypeVar("T")


class NeedSignIn(Exception):
    """A page was asked for without a session."""


class CsrfRefused(Exception):
    """A form or htmx POST came without the page's CSRF token."""


PROBLEM_PARAM = "problem"
"""The query parameter of a refusal's message shown after a redirect (signed, see Console.with_problem)."""


def page_templates() -> Jinja2Templates:
    """The console's templates, with the helpers they call (``D``, ``label``, ``badge``, the ``num`` filter, ...)."""
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.globals.update(
        badge=domain.badge,
        label=domain.label,
        stage_tone=domain.stage_tone,
        inbox_link=domain.inbox_link,
        D=domain,
    )
    templates.env.filters.update(num=domain.number, pct=domain.percent)
    templates.env.tests["web_link"] = domain.is_web_link
    return templates


@dataclass
class Console:
    """Everything the routes use (``app.state.console``)."""

    settings: ConsoleSettings
    service: Service
    backends: Backends
    sessions: SessionStore
    vault: Vault
    clock: Clock
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self) -> None:
        self.templates = page_templates()

    # -- sessions ---------------------------------------------------------------------------------

    async def session(self, request: Request) -> Session | None:
        """The request's session (cached on the request), or None."""
        if not hasattr(request.state, "session"):
            sid = self.vault.unsign(request.cookies.get(SESSION_COOKIE))
            request.state.session = await self.sessions.get(sid)
        found: Session | None = request.state.session
        return found

    async def signed_in(self, request: Request) -> Session:
        """The request's session, or :class:`NeedSignIn`."""
        session = await self.session(request)
        if session is None:
            raise NeedSignIn
        return session

    def set_session_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.vault.sign(session.id),
            max_age=int(self.settings.console_session_ttl_h * 3600),
            httponly=True,
            samesite="lax",
            secure=self.settings.console_cookie_secure,
            path="/",
        )

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")

    # -- CSRF -------------------------------------------------------------------------------------

    def csrf_token(self, request: Request) -> str:
        """The page's CSRF token: the one in the browser's signed cookie, or a new one (set by :meth:`render`)."""
        token = getattr(request.state, "csrf", None) or self.vault.unsign(request.cookies.get(CSRF_COOKIE))
        if not token:
            token = new_secret()
            request.state.csrf_new = True
        request.state.csrf = token
        return str(token)

    def rotate_csrf(self, request: Request, response: Response) -> None:
        """A new CSRF token after signing in or out (the old page's token stops working)."""
        request.state.csrf = new_secret()
        self._set_csrf_cookie(response, request.state.csrf)

    def _set_csrf_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(
            CSRF_COOKIE,
            self.vault.sign(token),
            httponly=True,
            samesite="lax",
            secure=self.settings.console_cookie_secure,
            path="/",
        )

    async def check_csrf(self, request: Request) -> dict[str, str]:
        """The POSTed form when its token (field or ``X-CSRF-Token`` header) matches the cookie.

        Else :class:`CsrfRefused`."""
        form = await self.form(request)
        return {k: v for k, v in form.items() if isinstance(v, str)}

    async def form(self, request: Request) -> FormData:
        """The whole POSTed form (every value of a multi-valued field, uploads) once its CSRF token matched.

        Bounded: at most 400 fields and one 5 MB file (a CSV upload); more is a 413 page."""
        try:
            form = await request.form(max_files=1, max_fields=400, max_part_size=5 * 1024 * 1024)
        except StarletteHTTPException:
            raise
        except Exception as exc:  # a malformed or oversized multipart body
            raise StarletteHTTPException(413, f"The form could not be read ({exc}).") from None
        token = form.get(CSRF_FIELD)
        expected = self.vault.unsign(request.cookies.get(CSRF_COOKIE))
        given = request.headers.get(CSRF_HEADER) or (token if isinstance(token, str) else None)
        if not same(expected, given):
            raise CsrfRefused
        return form

    # -- rendering --------------------------------------------------------------------------------

    def tz(self, request: Request) -> str:
        """The user's time zone, as the browser reported it (UTC until it has)."""
        return domain.zone(unquote(request.cookies.get(TZ_COOKIE) or ""))

    def now(self) -> tuple[datetime, float]:
        """The time the pages measure against, and how fast it runs: the projection's clock (the events' time
        base) once it has answered, else the console's own."""
        base = self.backends.projection.time_base
        if base is not None:
            return base.now(time.monotonic()), base.scale
        return self.clock.now(), scale_of(self.clock)

    def with_problem(self, where: str, message: str) -> str:
        """``where`` carrying a refusal's message to show there, signed: a link made elsewhere cannot put its
        own words on a console page."""
        signed = self.vault.sign(message[:150])
        return f"{where}{'&' if '?' in where else '?'}{urlencode({PROBLEM_PARAM: signed})}"

    def problem(self, request: Request) -> str | None:
        """The message :meth:`with_problem` put in this page's URL (None when absent or not signed here)."""
        return self.vault.unsign(request.query_params.get(PROBLEM_PARAM))

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page or partial with what every template uses (session, CSRF token, now, time zone)."""
        now, scale = self.now()
        tz = self.tz(request)
        csrf = self.csrf_token(request)
        base = {
            "session": getattr(request.state, "session", None),
            "csrf_token": csrf,
            "csrf_headers": json.dumps({CSRF_HEADER: csrf}),
            "now": now,
            "clock_scale": scale,
            "tz": tz,
            "rel": lambda when: domain.relative(when, now),
            "local": lambda when: domain.local_time(when, tz),
            "path": request.url.path,
            "problem": self.problem(request),
        }
        response = self.templates.TemplateResponse(request, template, {**base, **context}, status_code=status)
        response.headers.update(SECURITY_HEADERS)
        response.headers["X-Server-Time"] = now.isoformat()  # live partials keep relative times right
        response.headers["X-Clock-Scale"] = f"{scale:g}"
        if getattr(request.state, "csrf_new", False):
            self._set_csrf_cookie(response, csrf)
        return response


async def gather(*calls: Awaitable[Any]) -> list[Any]:
    """Backend calls in parallel; the first failure wins (the others are cancelled)."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        raise


async def answered(call: Awaitable[T], down: set[str]) -> T | None:
    """``call``'s answer, or None when its service did not answer (its name is added to ``down``). A form drawn
    again after a refusal reads the lists around it this way: what was typed matters more than they do."""
    try:
        return await call
    except BackendUnavailable as exc:
        down.add(exc.backend)
        return None


def is_page(request: Request) -> bool:
    """Whether the request is for a page (HTML), not the console's small JSON API or a probe."""
    path = request.url.path
    return not path.startswith(("/v1/", "/healthz", "/readyz", "/metrics"))


def install_error_pages(app: FastAPI, console: Console) -> None:
    """Screens for the failures a user can meet: signed out, not found, refused, a service down, a stale form."""

    def page_error(request: Request, status: int, title: str, message: str) -> Response:
        if not is_page(request):
            return problem_response(status, title.lower().replace(" ", "_"), message)
        return console.render(request, "error.html", status=status, title=title, message=message)

    @app.exception_handler(NeedSignIn)
    async def _need(request: Request, _: NeedSignIn) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        where = "/sign-in" + ("" if target == "/" else f"?next={quote(domain.safe_next(target), safe='')}")
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": where})
        if request.url.path == "/live":
            return Response(status_code=401)
        return RedirectResponse(where, status_code=303)

    @app.exception_handler(SignedOut)
    async def _signed_out(request: Request, _: SignedOut) -> Response:
        session = await console.session(request)
        if session is not None:
            await console.sessions.end(session.id)
        response: Response = RedirectResponse("/sign-in?expired=1", status_code=303)
        if request.headers.get("HX-Request"):
            response = Response(status_code=401, headers={"HX-Redirect": "/sign-in?expired=1"})
        console.clear_session_cookie(response)
        return response

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> Response:
        return page_error(
            request,
            403,
            "Form expired",
            "This form was not sent from a current leadstream page (its security token is missing or old). "
            "Go back, reload the page and try again.",
        )

    @app.exception_handler(BackendRefused)
    async def _refused(request: Request, exc: BackendRefused) -> Response:
        if exc.status == 404:
            return page_error(request, 404, "Not found", "There is nothing here in your workspace.")
        return page_error(request, exc.status, "Not possible", exc.detail)

    @app.exception_handler(BackendUnavailable)
    async def _down(request: Request, exc: BackendUnavailable) -> Response:
        if request.headers.get("HX-Request") and request.method == "POST":
            # A form posted by htmx stays on the page as it was filled (htmx does not swap an error answer):
            # static/app.js shows this message at that form.
            return console.render(
                request, "partials/problem.html", status=503, message=domain.unavailable_message(exc.backend)
            )
        return page_error(
            request,
            503,
            "Temporarily unavailable",
            f"leadstream's {exc.backend} service is not answering right now. Nothing was lost: try again in a moment.",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if not is_page(request):
            return problem_response(exc.status_code, "http_error", str(exc.detail))
        if exc.status_code == 404:
            # No route matched, so no page dependency looked up the session: without this a signed-in user's
            # mistyped link showed the signed-out card with a "Sign in" button and no way back to the console.
            await console.session(request)
            return page_error(request, 404, "Not found", "There is no such page.")
        return page_error(request, exc.status_code, "Not possible", str(exc.detail))


def json_problem(status: int, code: str, detail: str, field: str | None = None) -> JSONResponse:
    """A problem answer of the console's JSON API."""
    extra = {"field": field} if field else {}
    return problem_response(status, code, detail, **extra)
