"""Actions on what exists: a campaign's pause, resume, delete and the resolution of "needs review"; the
Messaging Lab's review queue (approve, edit with the API's own limit check, reject with feedback, bulk
approve); accounts (connect through the hosted page, reconnect, check again, delete, an email sender); the
blocklist (add, remove) beside the suppression list; the plan and its upgrades. Every call goes to a service's
public API; every 4xx is shown where it belongs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from leadstream_schemas.bounds import URL_MAX

from . import commands, domain, models
from .backends import BackendRefused, Backends, BackendUnavailable
from .commands import Refused
from .pages import PAGE, CsrfForm, Signed, uuid_or_404
from .sessions import Session
from .web import Console, gather

Flag = Annotated[str | None, Query(max_length=40)]


def _redirect(request: Request, where: str) -> Response:
    """After a form: a 303 for a page, an ``HX-Redirect`` for htmx (the browser loads the page)."""
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": where})
    return RedirectResponse(where, status_code=303)


def _keep_the_form(refused: Refused) -> None:
    """A service that did not answer an htmx form: answer 503 with its message, which ``static/app.js`` shows at
    the form, everything typed in place (the card is not drawn again: that would ask the same service)."""
    if refused.unavailable:
        raise BackendUnavailable(refused.api, refused.refusal.detail) from refused


def actions_router(console: Console) -> APIRouter:
    """The action routes."""
    router = APIRouter(include_in_schema=False)
    b = console.backends

    # -- a campaign ---------------------------------------------------------------------------------

    def refused_page(request: Request, campaign_id: UUID, refused: Refused) -> Response:
        return _redirect(
            request, console.with_problem(f"/campaigns/{campaign_id}", refused.refusal.detail) + "#resolve"
        )

    async def campaign_command(
        request: Request,
        campaign_id: str,
        session: Session,
        command: Callable[[Backends, str, UUID], Awaitable[object]],
        then: str,
    ) -> Response:
        """Run ``command`` on the campaign; then go to ``then`` (``{cid}`` is the campaign), or show the refusal."""
        await console.form(request)
        cid = uuid_or_404(campaign_id)
        try:
            await command(b, session.token, cid)
        except Refused as exc:
            return refused_page(request, cid, exc)
        return _redirect(request, then.format(cid=cid))

    @router.post("/campaigns/{campaign_id}/pause", openapi_extra=PAGE)
    async def pause(request: Request, campaign_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        return await campaign_command(
            request, campaign_id, session, commands.pause_campaign, "/campaigns/{cid}?done=paused"
        )

    @router.post("/campaigns/{campaign_id}/resume", openapi_extra=PAGE)
    async def resume(request: Request, campaign_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        return await campaign_command(
            request, campaign_id, session, commands.resume_campaign, "/campaigns/{cid}?done=resumed"
        )

    @router.post("/campaigns/{campaign_id}/delete", openapi_extra=PAGE)
    async def delete(request: Request, campaign_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        return await campaign_command(
            request, campaign_id, session, commands.delete_campaign, "/campaigns?done=deleted"
        )

    @router.post("/campaigns/{campaign_id}/accounts", response_class=HTMLResponse, openapi_extra=PAGE)
    async def replace_accounts(request: Request, campaign_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        """Resolve "needs review": send from the accounts chosen (the campaign runs again)."""
        form = await console.form(request)
        cid = uuid_or_404(campaign_id)
        chosen: list[UUID] = []
        for raw in form.getlist("account_ids")[:50]:
            try:
                chosen.append(UUID(str(raw)))
            except ValueError:
                continue
        try:
            await commands.replace_accounts(b, session.token, cid, chosen)
        except Refused as exc:
            return refused_page(request, cid, exc)
        return _redirect(request, f"/campaigns/{cid}?done=accounts")

    # -- the Messaging Lab ------------------------------------------------------------------------

    @router.get("/lab", response_class=HTMLResponse, openapi_extra=PAGE)
    async def lab(request: Request, session: Signed) -> Response:
        page = await console.backends.projection.campaigns(session.token, limit=200)
        # Only the campaigns with drafts waiting: the Lab is where drafts are reviewed before they are sent, and a
        # campaign's queue without a draft waiting is empty (the campaign list has every campaign).
        waiting = [c for c in page.items if c.summary.drafts_pending]
        return console.render(request, "lab_index.html", waiting=waiting)

    async def lab_context(session: Session, campaign_id: UUID) -> dict[str, Any]:
        campaign, drafts, results = await gather(
            console.backends.projection.campaign(session.token, campaign_id),
            b.messaging.drafts(session.token, campaign_id),
            console.backends.projection.results(session.token, campaign_id, limit=200),
        )
        names = {r.lead_id: r.name for r in results.items}
        return {"campaign": campaign, "drafts": domain.review_order(drafts.items), "names": names}

    @router.get("/campaigns/{campaign_id}/lab", response_class=HTMLResponse, openapi_extra=PAGE)
    async def review_queue(request: Request, campaign_id: str, session: Signed) -> Response:
        ctx = await lab_context(session, uuid_or_404(campaign_id))
        return console.render(request, "lab.html", **ctx)

    async def draft_card(
        request: Request,
        session: Session,
        draft: models.Draft,
        *,
        errors: dict[str, str] | None = None,
        text: str | None = None,
        reason: str = "",
        mode: str = "view",
        replacement: models.Draft | None = None,
        status: int = 200,
    ) -> Response:
        projection = console.backends.projection
        try:
            lead = await projection.lead(session.token, draft.lead_id)
            name = lead.name
        except BackendRefused:
            name = None
        return console.render(
            request,
            "partials/draft_card.html",
            status=status,
            d=draft,
            name=name,
            errors=errors or {},
            text=draft.text if text is None else text,
            reason=reason,
            mode=mode,
            replacement=replacement,
        )

    @router.get("/lab/drafts/{draft_id}", response_class=HTMLResponse, openapi_extra=PAGE)
    async def draft(request: Request, draft_id: str, session: Signed, mode: Flag = None) -> Response:
        """One draft's card: to read, to edit or to reject (htmx)."""
        found = await b.messaging.draft(session.token, uuid_or_404(draft_id))
        chosen = mode if mode in ("edit", "reject") else "view"
        return await draft_card(request, session, found, mode=chosen)

    @router.post("/lab/drafts/{draft_id}/approve", response_class=HTMLResponse, openapi_extra=PAGE)
    async def approve(request: Request, draft_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        await console.form(request)
        did = uuid_or_404(draft_id)
        try:
            done = await commands.approve_draft(b, session.token, did)
        except Refused as exc:
            _keep_the_form(exc)
            current = await b.messaging.draft(session.token, did)
            return await draft_card(request, session, current, errors={"form": exc.refusal.detail})
        return await draft_card(request, session, done)

    @router.post("/lab/drafts/{draft_id}/check", response_class=HTMLResponse, openapi_extra=PAGE)
    async def check(request: Request, draft_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        """The API's own verdict on an edit as it is typed (nothing is saved): its 422 message, or nothing."""
        form = await console.form(request)
        text = str(form.get("text") or "")[:10_000]
        try:
            await commands.check_edit(b, session.token, uuid_or_404(draft_id), text)
        except Refused as exc:
            return console.render(request, "partials/edit_check.html", message=exc.refusal.detail, ok=False)
        return console.render(request, "partials/edit_check.html", message=None, ok=True)

    @router.post("/lab/drafts/{draft_id}/edit", response_class=HTMLResponse, openapi_extra=PAGE)
    async def edit(request: Request, draft_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        form = await console.form(request)
        did = uuid_or_404(draft_id)
        text = str(form.get("text") or "")[:10_000]
        try:
            done = await commands.edit_draft(b, session.token, did, text)
        except Refused as exc:
            _keep_the_form(exc)
            current = await b.messaging.draft(session.token, did)
            # The typed text stays in the box with the API's own message under it.
            return await draft_card(
                request, session, current, errors={"text": exc.refusal.detail}, text=text, mode="edit", status=200
            )
        return await draft_card(request, session, done)

    @router.post("/lab/drafts/{draft_id}/reject", response_class=HTMLResponse, openapi_extra=PAGE)
    async def reject(request: Request, draft_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        form = await console.form(request)
        did = uuid_or_404(draft_id)
        reason = str(form.get("reason") or "")[:1000]
        try:
            done = await commands.reject_draft(b, session.token, did, reason)
        except Refused as exc:
            _keep_the_form(exc)
            current = await b.messaging.draft(session.token, did)
            # The feedback typed stays in its box, with the API's own message under it.
            return await draft_card(
                request, session, current, errors={"reason": exc.refusal.detail}, mode="reject", reason=reason
            )
        return await draft_card(request, session, done.rejected, replacement=done.replacement)

    @router.post("/campaigns/{campaign_id}/lab/approve", response_class=HTMLResponse, openapi_extra=PAGE)
    async def approve_many(request: Request, campaign_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        """Approve the drafts ticked (or all of them)."""
        form = await console.form(request)
        cid = uuid_or_404(campaign_id)
        ids: list[UUID] | None = None
        if form.get("scope") != "all":
            ids = []
            for raw in form.getlist("draft_ids")[:500]:
                try:
                    ids.append(UUID(str(raw)))
                except ValueError:
                    continue
        try:
            done = await commands.approve_drafts(b, session.token, cid, ids)
        except Refused as exc:
            return _redirect(request, console.with_problem(f"/campaigns/{cid}/lab", exc.refusal.detail))
        return _redirect(request, f"/campaigns/{cid}/lab?approved={len(done.approved)}")

    # -- accounts -------------------------------------------------------------------------------

    def accounts_url() -> str:
        return domain.return_url(console.settings.console_public_url, "/accounts")

    @router.post("/accounts/connect", openapi_extra=PAGE)
    async def connect(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """Start the hosted authorisation: the provider's page, which sends the user back to this page."""
        form = await console.form(request)
        name = str(form.get("display_name") or "").strip()[:200] or None
        try:
            made = await commands.connect_linkedin(b, session.token, name, accounts_url())
        except Refused as exc:
            if request.headers.get("HX-Request"):
                _keep_the_form(exc)
            elif exc.unavailable:
                # Without JavaScript: the page is drawn here with the name typed (its redirect would ask outreach
                # again for the accounts, and a 503 page would take the form away).
                return await accounts_page(request, session, connect_error=exc.refusal, display_name=name or "")
            return _redirect(request, console.with_problem("/accounts", exc.refusal.detail))
        if made.auth_url:
            return _redirect(request, made.auth_url)
        return _redirect(request, f"/accounts?account={made.account_id}&hosted=connected")

    @router.post("/accounts/email", response_class=HTMLResponse, openapi_extra=PAGE)
    async def connect_email(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """Connect an email sender (the Scale plan's, or its add-on)."""
        form = await console.form(request)
        sender = str(form.get("sender_email") or "").strip()[:254]
        try:
            await commands.connect_sender(b, session.token, sender)
        except Refused as exc:
            return await accounts_page(request, session, email_error=exc.refusal, sender=sender)
        return _redirect(request, "/accounts?done=sender")

    @router.post("/accounts/{account_id}/reconnect", openapi_extra=PAGE)
    async def reconnect(request: Request, account_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        await console.form(request)
        try:
            link = await commands.reconnect_link(b, session.token, uuid_or_404(account_id), accounts_url())
        except Refused as exc:
            return _redirect(request, console.with_problem("/accounts", exc.refusal.detail))
        return _redirect(request, link.auth_url)

    @router.post("/accounts/{account_id}/refresh", openapi_extra=PAGE)
    async def refresh(request: Request, account_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        """Ask the provider again ("check again" while a connection is being verified)."""
        await console.form(request)
        aid = uuid_or_404(account_id)
        try:
            found = await commands.refresh_account(b, session.token, aid)
        except Refused as exc:
            return _redirect(request, console.with_problem("/accounts", exc.refusal.detail))
        state = "connected" if found.healthy else found.status
        return _redirect(request, f"/accounts?account={aid}&checked={state}#account-{aid}")

    @router.post("/accounts/{account_id}/delete", openapi_extra=PAGE)
    async def delete_account(request: Request, account_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        await console.form(request)
        try:
            await commands.delete_account(b, session.token, uuid_or_404(account_id))
        except Refused as exc:
            return _redirect(request, console.with_problem("/accounts", exc.refusal.detail))
        return _redirect(request, "/accounts?done=deleted")

    async def accounts_page(
        request: Request,
        session: Session,
        *,
        email_error: BackendRefused | None = None,
        sender: str = "",
        connect_error: BackendRefused | None = None,
        display_name: str = "",
        notice: str | None = None,
    ) -> Response:
        """The accounts page; drawn again after a refused form (``email_error``, ``connect_error``) with what was
        typed, whose lists may be missing (None) when outreach did not answer."""
        refused = email_error or connect_error
        try:
            found, outreach_accounts, plan = await gather(
                console.backends.projection.accounts(session.token),
                b.outreach.accounts(session.token),
                b.outreach.plan(session.token),
            )
        except BackendUnavailable:
            if refused is None:
                raise
            # A form shown again after outreach did not answer it: the address typed is kept.
            found, outreach_accounts, plan = None, models.OutreachAccounts(items=[]), None
        senders = [a for a in outreach_accounts.items if a.provider == "email"]
        template = "partials/accounts_list.html" if request.headers.get("HX-Request") else "accounts.html"
        upgrade = email_error.extra.get("upgrade") if email_error is not None else None
        return console.render(
            request,
            template,
            status=(503 if refused.status >= 500 else 422) if refused is not None else 200,
            accounts=[a for a in found.items if a.provider != "email"] if found is not None else None,
            senders=senders,
            plan=plan,
            email_error=email_error.detail if email_error is not None else None,
            email_upgrade=upgrade if isinstance(upgrade, dict) else None,
            sender=sender,
            connect_error=connect_error.detail if connect_error is not None else None,
            display_name=display_name,
            notice=notice,
        )

    NOTICES = {
        "connected": "Your LinkedIn account is connected. Campaigns can send from it now.",
        "reconnected": "Your LinkedIn account is reconnected; its campaigns resume.",
        "cancelled": "Nothing was connected: the authorisation was cancelled.",
    }

    @router.get("/accounts", response_class=HTMLResponse, openapi_extra=PAGE)
    async def accounts(
        request: Request,
        session: Signed,
        hosted: Flag = None,
        checked: Flag = None,
        done: Flag = None,
    ) -> Response:
        notice = NOTICES.get(hosted or "")
        if checked:
            notice = (
                "Checked again: the account is connected."
                if checked == "connected"
                else f"Checked again: the provider still says {checked.replace('_', ' ')}."
            )
        if done == "deleted":
            notice = "The account was deleted. Campaigns that used only it need review."
        if done == "sender":
            notice = "The email sender is connected and verified."
        problem = console.problem(request)
        if problem:
            notice = problem
        return await accounts_page(request, session, notice=notice)

    # -- the blocklist ------------------------------------------------------------------------------

    async def blocklist_page(
        request: Request,
        session: Session,
        *,
        after: str | None = None,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        notice: str | None = None,
        status: int = 422,
    ) -> Response:
        try:
            blocked, suppressed = await gather(
                b.outreach.blocklist(session.token, after=after), b.outreach.suppressions(session.token)
            )
        except BackendUnavailable:
            if not errors:
                raise
            # The form shown again after outreach did not answer it: what was typed matters more than the lists.
            blocked = suppressed = None
        return console.render(
            request,
            "blocklist.html",
            status=status if errors else 200,
            blocked=blocked,
            suppressed=suppressed,
            after=after,
            values=values or {"kind": "domain", "value": ""},
            errors=errors or {},
            notice=notice,
        )

    BLOCK_NOTICES = {
        "blocked": "Blocked. Leads it matches are skipped from their next step on, in every campaign.",
        "removed": "Removed from the blocklist. Leads it matched can be contacted again.",
    }

    @router.get("/blocklist", response_class=HTMLResponse, openapi_extra=PAGE)
    async def blocklist(
        request: Request,
        session: Signed,
        done: Flag = None,
        after: Annotated[str | None, Query(max_length=500)] = None,
    ) -> Response:
        """The workspace blocklist (add, remove) and the suppression list (unsubscribed, bounced), read-only."""
        return await blocklist_page(request, session, after=after, notice=BLOCK_NOTICES.get(done or ""))

    @router.post("/blocklist", response_class=HTMLResponse, openapi_extra=PAGE)
    async def block(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """Block a domain, an email or a LinkedIn profile URL; a refusal is shown at its field, the entry kept."""
        form = await console.form(request)
        # One character over outreach's own bound, so that a longer value is refused there, not silently cut here.
        values = {"kind": str(form.get("kind") or "")[:20], "value": str(form.get("value") or "")[: URL_MAX + 1]}
        try:
            await commands.block(b, session.token, values["kind"], values["value"])
        except Refused as exc:
            errors: dict[str, str] = {}
            refusal = exc.refusal
            default = "form" if exc.unavailable else "value"  # no field is wrong when outreach did not answer
            for path, message in refusal.errors or [(refusal.field or default, refusal.detail)]:
                errors.setdefault(path if path in ("kind", "value") else default, message or refusal.detail)
            return await blocklist_page(request, session, values=values, errors=errors, status=exc.status)
        return _redirect(request, "/blocklist?done=blocked")

    @router.post("/leads/{lead_id}/block", openapi_extra=PAGE)
    async def block_lead(request: Request, lead_id: str, session: Signed, _csrf: CsrfForm) -> Response:
        """Block the lead's company domain, email or LinkedIn profile (the kind chosen in the confirmation dialog;
        the value is the lead's own, read again here, never a value sent by the page)."""
        form = await console.form(request)
        lid = uuid_or_404(lead_id)
        kind = str(form.get("kind") or "")[:20]
        lead = await console.backends.projection.lead(session.token, lid)
        chosen = next((c for c in domain.block_choices(lead.email, lead.linkedin_url) if c.kind == kind), None)
        page = f"/leads/{lid}"
        if chosen is None:
            return _redirect(request, console.with_problem(page, "Choose what to block: this lead has no such entry."))
        try:
            await commands.block(b, session.token, chosen.kind, chosen.value)
        except Refused as exc:
            return _redirect(request, console.with_problem(page, exc.refusal.detail))
        return _redirect(request, f"{page}?blocked={chosen.kind}")

    @router.post("/blocklist/remove", openapi_extra=PAGE)
    async def unblock(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        form = await console.form(request)
        kind, value = str(form.get("kind") or "")[:20], str(form.get("value") or "")[:URL_MAX]
        try:
            await commands.unblock(b, session.token, kind, value)
        except Refused as exc:
            return _redirect(request, console.with_problem("/blocklist", exc.refusal.detail))
        return _redirect(request, "/blocklist?done=removed")

    # -- the plan ---------------------------------------------------------------------------------

    @router.get("/plan", response_class=HTMLResponse, openapi_extra=PAGE)
    async def plan_page(request: Request, session: Signed, upgraded: Flag = None) -> Response:
        plan = await b.outreach.plan(session.token)
        return console.render(request, "plan.html", plan=plan, upgraded=upgraded)

    @router.post("/plan/upgrade", response_class=HTMLResponse, openapi_extra=PAGE)
    async def upgrade(request: Request, session: Signed, _csrf: CsrfForm) -> Response:
        """An explicit upgrade (from the plan page, or the dialog of a gated feature: the builder keeps its form)."""
        form = await console.form(request)
        plan_name = str(form.get("plan") or "")[:20] or None
        add_on = str(form.get("add_on") or "")[:30] or None
        try:
            plan = await commands.upgrade(b, session.token, plan=plan_name, add_on=add_on)
        except Refused as exc:
            if not request.headers.get("HX-Request"):
                return _redirect(request, console.with_problem("/plan?upgraded=failed", exc.refusal.detail))
            return console.render(request, "partials/upgrade_result.html", plan=None, message=exc.refusal.detail)
        if not request.headers.get("HX-Request"):
            return _redirect(request, "/plan?upgraded=1")
        response = console.render(request, "partials/upgrade_result.html", plan=plan, message=None)
        response.headers["HX-Trigger"] = "planChanged"
        return response

    return router
