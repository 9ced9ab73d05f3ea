"""The simulated LinkedIn provider's hosted authorisation page (``LEADSTREAM_LINKEDIN_PROVIDER=simulated``).

A real provider (Unipile) hosts a page where the user signs in to LinkedIn; when it succeeds, the
provider sends a signed callback to outreach (``notify_url``) and the user's browser back to where they
came from (``return_url``: the console's accounts page). This router plays that provider inside the
outreach process, so the whole flow runs in a demo and in the browser tests: the page, a signed
callback over HTTP to ``/v1/accounts/callback`` (the same route a real provider calls), and the
redirect. Nothing is asked of LinkedIn and the "password" field is never read.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from typing import Annotated
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from fastapi import APIRouter, Form, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.runtime.auth import public
from services.runtime.errors import Problem, problems
from services.runtime.webhooks import signed_headers

from .adapters.simulated import SimulatedLinkedIn

Url = Annotated[str, Query(max_length=2000)]
Kind = Annotated[str, Query(max_length=20)]
Token = Annotated[str, Query(max_length=100)]


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>
body{{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f3f2ef;color:#1d2226}}
.wrap{{min-height:100vh;display:grid;place-items:center;padding:24px}}
.card{{background:#fff;border-radius:12px;box-shadow:0 4px 12px rgba(0,0,0,.08);max-width:400px;width:100%;
padding:32px}}
.logo{{display:inline-grid;place-items:center;width:40px;height:40px;border-radius:8px;background:#0a66c2;color:#fff;
font-weight:800;font-size:22px}}
h1{{font-size:1.4rem;margin:18px 0 6px}} p{{color:#5e6369;margin:0 0 18px;line-height:1.45}}
label{{display:block;font-weight:600;font-size:.9rem;margin:12px 0 6px}}
input{{width:100%;box-sizing:border-box;padding:11px 12px;border:1px solid #8c8c8c;border-radius:6px;font:inherit}}
.actions{{display:flex;gap:10px;margin-top:22px}}
button{{flex:1;padding:11px 16px;border-radius:24px;font:inherit;font-weight:600;cursor:pointer;
border:1px solid #0a66c2}}
.primary{{background:#0a66c2;color:#fff}} .secondary{{background:#fff;color:#0a66c2}}
.note{{font-size:.8rem;color:#6b6f73;margin-top:18px}}
</style></head><body><div class="wrap"><main class="card">{body}</main></div></body></html>""",
        status_code=status,
    )


AccountRef = Annotated[str, Path(max_length=100)]


def hosted_router(provider: SimulatedLinkedIn, secret: str) -> APIRouter:
    """The hosted page of the simulated provider (its callback goes over ``provider.callback_transport``
    when a test sets one, else over the network)."""
    router = APIRouter(prefix="/sim/linkedin/hosted", tags=["simulated provider"])
    reason = public("the simulated provider's hosted page: its link is signed by outreach (t), nothing else is read")

    def check(account_id: str, kind: str, notify_url: str, return_url: str, t: str) -> None:
        if kind not in ("create", "reconnect") or provider.hosted_token(account_id, kind, notify_url, return_url) != t:
            raise Problem(403, "invalid_link", "this hosted authorisation link is not valid (it was altered)")

    @router.get("/{account_id}", response_class=HTMLResponse, openapi_extra=reason, responses=problems(403, 422))
    async def page(account_id: AccountRef, kind: Kind, notify_url: Url, t: Token, return_url: Url = "") -> Response:
        """The sign-in page the user sees."""
        check(account_id[:100], kind, notify_url, return_url, t)
        verb = "Reconnect" if kind == "reconnect" else "Connect"
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
            for k, v in (("kind", kind), ("notify_url", notify_url), ("return_url", return_url), ("t", t))
        )
        return _page(
            f"{verb} LinkedIn · simulated provider",
            f"""<span class="logo" aria-hidden="true">in</span>
<h1>{verb} your LinkedIn account</h1>
<p>leadstream asks to send invitations and messages from your LinkedIn account. This is the simulated
provider's hosted page: nothing is sent to LinkedIn and the password is not read.</p>
<form method="post">{hidden}
<label for="login">Email or phone</label><input id="login" name="login" autocomplete="off" maxlength="200">
<label for="password">Password</label><input id="password" name="password" type="password" maxlength="200">
<div class="actions"><button class="secondary" name="action" value="cancel">Cancel</button>
<button class="primary" name="action" value="connect">{verb} account</button></div></form>
<p class="note">Hosted authorisation · simulated LinkedIn provider</p>""",
        )

    @router.post("/{account_id}", response_class=HTMLResponse, openapi_extra=reason, responses=problems(403, 422))
    async def submit(
        account_id: AccountRef,
        kind: Annotated[str, Form(max_length=20)],
        notify_url: Annotated[str, Form(max_length=2000)],
        t: Annotated[str, Form(max_length=100)],
        action: Annotated[str, Form(max_length=20)],
        return_url: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        """Complete (or cancel) the connection: the signed callback to outreach, then back to ``return_url``."""
        account_id = account_id[:100]
        check(account_id, kind, notify_url, return_url, t)
        if action != "connect":
            if return_url:
                return RedirectResponse(_with_query(return_url, account=account_id, hosted="cancelled"), 303)
            return _page("Cancelled", "<h1>Cancelled</h1><p>Nothing was connected. You can close this page.</p>")
        body = json.dumps(
            {
                "status": "RECONNECTED" if kind == "reconnect" else "CREATION_SUCCESS",
                "account_id": f"sim-{account_id}",
                "name": account_id,
            }
        ).encode()
        headers = signed_headers(secret, f"sim-hosted-{uuid.uuid4()}", int(time.time()), body)
        error = ""
        try:
            async with httpx.AsyncClient(transport=provider.callback_transport, timeout=15.0) as client:
                answer = await client.post(
                    notify_url, content=body, headers={**headers, "Content-Type": "application/json"}
                )
        except httpx.HTTPError as exc:
            answer = None
            error = repr(exc)
        if answer is None or answer.status_code >= 400:
            detail = error if answer is None else f"{answer.status_code} {answer.text[:300]}"
            return _page(
                "Not connected",
                f"<h1>Not connected</h1><p>leadstream did not accept the connection ({html.escape(detail)}).</p>",
                status=502,
            )
        provider.hosted_done(account_id)
        done = "reconnected" if kind == "reconnect" else "connected"
        if return_url:
            return RedirectResponse(_with_query(return_url, account=account_id, hosted=done), 303)
        return _page("Connected", f"<h1>Account {done}</h1><p>You can close this page.</p>")

    return router
