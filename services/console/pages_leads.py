"""Find leads: describe people, a LinkedIn search URL, recent posts or signal discovery (with suggestions from
the prompt); preview the matches, save a search with a target and watch it fill a lead list; import a CSV
with a report per row; add a lead by hand. Everything goes through discovery's public API."""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from . import builder, commands
from .backends import BackendRefused, BackendUnavailable
from .commands import Refused
from .pages import PAGE, CsrfForm, Signed, uuid_or_404
from .sessions import Session
from .web import Console, gather

MODES: tuple[tuple[str, str], ...] = (
    ("people", "Describe people"),
    ("signals", "Signal discovery"),
    ("posts", "Recent posts"),
    ("linkedin_url", "LinkedIn search URL"),
)
FIND_FIELDS = (
    "mode",
    "description",
    "titles",
    "companies",
    "industries",
    "locations",
    "prompt",
    "custom_signal",
    "location",
    "lookback_days",
    "keywords",
    "post_source",
    "search_url",
    "name",
    "target_count",
)
MAX_CSV_BYTES = 5 * 1024 * 1024


def _terms(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()][:20]


def find_values(form: Any) -> dict[str, Any]:
    """The find form's values (strings, and the ticked signal types), bounded."""
    values: dict[str, Any] = {k: "" for k in FIND_FIELDS}
    values["signal_types"] = []
    for key, raw in form.multi_items():
        if not isinstance(raw, str):
            continue
        if key == "signal_types":
            values["signal_types"].append(raw[:50])
        elif key in values:
            values[key] = raw.replace("\x00", "")[:2000]
    if values["mode"] not in dict(MODES):
        values["mode"] = "people"
    return values


def find_criteria(values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The search kind and criteria of the find form (discovery validates them)."""
    mode = values["mode"]
    if mode == "people":
        criteria: dict[str, Any] = {
            k: _terms(values[k]) for k in ("titles", "companies", "industries", "locations") if values[k].strip()
        }
        if values["description"].strip():
            criteria["description"] = values["description"]
        return "people", criteria
    request = builder.search_request(
        {
            **values,
            "audience_type": mode,
            "lookback_days": values["lookback_days"] or "14",
            "post_lookback_days": values["lookback_days"] or "14",
            "target_count": values["target_count"] or "30",
        }
    )
    assert request is not None
    return mode, request["criteria"]


FIND_ERRORS = {
    **dict(builder._FIELDS["discovery"]),
    "criteria.description": "description",
    "criteria.titles": "titles",
    "criteria.companies": "companies",
    "criteria.industries": "industries",
    "criteria.locations": "locations",
}


def find_errors(refusal: BackendRefused, mode: str) -> dict[str, str]:
    """A discovery 4xx as messages by field of the find form."""
    out: dict[str, str] = {}
    for path, message in refusal.errors or [(refusal.field or "", refusal.detail)]:
        best = ""
        for prefix in FIND_ERRORS:
            if (path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")) and len(prefix) > len(
                best
            ):
                best = prefix
        name = FIND_ERRORS.get(best, "form")
        if name == "prompt" and mode == "people":
            name = "description"
        out.setdefault(name, message or refusal.detail)
    return out or {"form": refusal.detail}


def leads_router(console: Console) -> APIRouter:
    """The lead-finding pages."""
    router = APIRouter(include_in_schema=False)
    for upload in ("/leads/import", "/campaigns/new/csv"):  # a CSV file (and the form around it) is larger than a form
        console.service.limit_body(upload, MAX_CSV_BYTES + 64 * 1024)
    discovery = console.backends.discovery

    @router.get("/leads", response_class=HTMLResponse, openapi_extra=PAGE)
    async def leads(request: Request, session: Signed) -> Response:
        searches, groups = await gather(discovery.searches(session.token), discovery.groups(session.token))
        return console.render(request, "leads.html", searches=searches.items, groups=groups.items)

    def find_page(
        request: Request, values: dict[str, Any], errors: dict[str, str] | None = None, status: int = 200
    ) -> Response:
        return console.render(
            request,
            "find.html",
            status=status,
            values=values,
            errors=errors or {},
            modes=MODES,
            B=builder,
            form_key=secrets.token_urlsafe(12),
        )

    @router.get("/leads/find", response_class=HTMLResponse, openapi_extra=PAGE)
    async def find(
        request: Request, session: Signed, mode: Annotated[str | None, Query(max_length=20)] = None
    ) -> Response:
        values: dict[str, Any] = {k: "" for k in FIND_FIELDS}
        values.update(mode=mode if mode in dict(MODES) else "people", lookback_days="14", target_count="30")
        values["signal_types"] = []
        values["post_source"] = "posts"
        return find_page(request, values)

    @router.post("/leads/preview", response_class=HTMLResponse, openapi_extra=PAGE)
    async def preview(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """The first matches of the search as described (htmx partial); nothing is saved."""
        values = find_values(await console.form(request))
        kind, criteria = find_criteria(values)
        try:
            found = await discovery.preview(session.token, kind, criteria, limit=10)
        except BackendRefused as exc:
            if exc.status == 404:
                raise
            return console.render(
                request, "partials/find_preview.html", status=200, preview=None, errors=find_errors(exc, kind)
            )
        return console.render(request, "partials/find_preview.html", preview=found, errors={})

    @router.post("/leads/suggestions", response_class=HTMLResponse, openapi_extra=PAGE)
    async def suggestions(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """Signal types, a location and a lookback suggested by the prompt (htmx: the signal fieldset)."""
        values = find_values(await console.form(request))
        errors: dict[str, str] = {}
        try:
            found = await discovery.suggestions(session.token, values["prompt"])
        except BackendRefused as exc:
            if exc.status == 404:
                raise
            errors = find_errors(exc, "signals")
            found = None
        if found is not None:
            values["signal_types"] = [s.signal_type for s in found.suggestions]
            if found.location and not values["location"].strip():
                values["location"] = found.location
            if found.lookback_days:
                values["lookback_days"] = str(found.lookback_days)
            if found.custom_signal and not values["custom_signal"].strip():
                values["custom_signal"] = found.custom_signal
        prefix = request.headers.get("X-Field-Prefix", "")[:20]
        return console.render(
            request,
            "partials/signal_fields.html",
            values=values,
            errors=errors,
            suggested=found,
            B=builder,
            prefix=prefix,
        )

    @router.post("/leads/searches", openapi_extra=PAGE)
    async def save_search(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """Save the search with its target; it runs in the background and becomes a lead list."""
        form = await console.form(request)
        values = find_values(form)
        kind, criteria = find_criteria(values)
        key = str(form.get("idempotency_key") or "")[:100] or None
        name = values["name"].strip() or f"{dict(MODES)[values['mode']]} search"
        target = values["target_count"].strip()
        body = {
            "name": name,
            "kind": kind,
            "criteria": criteria,
            "target_count": int(target) if target.isdigit() else target,
        }
        try:
            made = await commands.save_search(console.backends, session.token, body, key)
        except Refused as exc:
            return find_page(request, values, find_errors(exc.refusal, kind), status=exc.status)
        return RedirectResponse(f"/leads/searches/{made.search_id}", status_code=303)

    async def search_context(session: Session, search_id: UUID) -> dict[str, Any]:
        search = await discovery.search(session.token, search_id)
        members = await discovery.members(session.token, search.source_group_id, limit=50)
        return {"search": search, "members": members}

    @router.get("/leads/searches/{search_id}", response_class=HTMLResponse, openapi_extra=PAGE)
    async def search_page(request: Request, search_id: str, session: Signed) -> Response:
        return console.render(request, "search.html", **await search_context(session, uuid_or_404(search_id)))

    @router.get("/leads/searches/{search_id}/progress", response_class=HTMLResponse, openapi_extra=PAGE)
    async def search_progress(request: Request, search_id: str, session: Signed) -> Response:
        ctx = await search_context(session, uuid_or_404(search_id))
        return console.render(request, "partials/search_progress.html", **ctx)

    @router.get("/leads/lists/{group_id}", response_class=HTMLResponse, openapi_extra=PAGE)
    async def lead_list(
        request: Request,
        group_id: str,
        session: Signed,
        after: Annotated[int | None, Query(ge=0)] = None,
    ) -> Response:
        gid = uuid_or_404(group_id)
        groups, members = await gather(
            discovery.groups(session.token),
            discovery.members(session.token, gid, limit=console.settings.console_page_size, after=after),
        )
        group = next((g for g in groups.items if g.source_group_id == gid), None)
        if group is None:
            raise BackendRefused(404, "not_found", "not found")
        return console.render(request, "list.html", group=group, members=members, after=after)

    # -- CSV import and manual add ------------------------------------------------------------

    async def run_import(request: Request, session: Session) -> tuple[Any, dict[str, str], int]:
        """Upload the form's CSV: the report, or the errors by field and the status of the form shown again (503
        when discovery did not answer, as every form's; 422 when the file was refused)."""
        form = await console.form(request)
        upload = form.get("file")
        name = str(form.get("list_name") or "")[:200] or None
        if not isinstance(upload, UploadFile) or not upload.filename:
            return None, {"file": "Choose a CSV file to upload."}, 422
        content = await upload.read(MAX_CSV_BYTES + 1)
        if len(content) > MAX_CSV_BYTES:
            return None, {"file": "The file is larger than 5 MB: split it into smaller files."}, 422
        try:
            report = await commands.import_csv(console.backends, session.token, upload.filename, content, name)
        except Refused as exc:
            if not exc.unavailable:
                return None, {"file": exc.refusal.detail}, exc.status
            if request.headers.get("HX-Request"):
                # htmx posted it: nothing is swapped, so the file chosen and the name typed stay in the form, and
                # static/app.js shows this 503's message there.
                raise BackendUnavailable(exc.api, exc.refusal.detail) from exc
            # A page drawn again: a browser never fills a file input from a page, so the file is chosen again.
            again = "The file is not kept between pages: choose it again."
            return None, {"form": exc.refusal.detail, "file": again}, exc.status
        return report, {}, 200

    @router.get("/leads/import", response_class=HTMLResponse, openapi_extra=PAGE)
    async def import_page(request: Request, session: Signed) -> Response:
        return console.render(request, "import.html", report=None, errors={})

    @router.post("/leads/import", response_class=HTMLResponse, openapi_extra=PAGE)
    async def import_csv(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """Upload a CSV: good rows become leads of a new list; each bad row is reported with its error."""
        report, errors, status = await run_import(request, session)
        template = "partials/import_report.html" if request.headers.get("HX-Request") else "import.html"
        values = {"list_name": str((await console.form(request)).get("list_name") or "")[:200]}
        return console.render(request, template, report=report, errors=errors, values=values, status=status)

    @router.post("/campaigns/new/csv", response_class=HTMLResponse, openapi_extra=PAGE)
    async def builder_csv(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """The builder's CSV audience: the import's report, and the list it made as the audience."""
        report, errors, status = await run_import(request, session)
        return console.render(
            request, "partials/import_report.html", report=report, errors=errors, in_builder=True, status=status
        )

    MANUAL = ("linkedin_url", "email", "full_name", "title", "company", "location")

    @router.get("/leads/add", response_class=HTMLResponse, openapi_extra=PAGE)
    async def add_page(request: Request, session: Signed) -> Response:
        return console.render(request, "add.html", values=dict.fromkeys(MANUAL, ""), errors={}, added=None)

    @router.post("/leads/add", response_class=HTMLResponse, openapi_extra=PAGE)
    async def add_lead(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """Add one lead by hand (a LinkedIn profile URL or an email identifies it)."""
        form = await console.form(request)
        values = {k: str(form.get(k) or "")[:300] for k in MANUAL}
        body = {k: v.strip() for k, v in values.items() if v.strip()}
        try:
            added = await commands.add_lead(console.backends, session.token, body)
        except Refused as exc:
            errors: dict[str, str] = {}
            refusal = exc.refusal
            for path, message in refusal.errors or [(refusal.field or "form", refusal.detail)]:
                errors.setdefault(path if path in MANUAL else "form", message)
            return console.render(request, "add.html", status=exc.status, values=values, errors=errors, added=None)
        return console.render(request, "add.html", values=dict.fromkeys(MANUAL, ""), errors={}, added=added)

    return router
