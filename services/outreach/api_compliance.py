"""Compliance routes: the workspace blocklist, the suppression list, and the one-click unsubscribe link.

The unsubscribe link needs no API token: it carries an HMAC token binding workspace and lead (made with
``LEADSTREAM_UNSUBSCRIBE_SECRET``). ``GET`` (a person clicking the link, or a mail scanner following it)
only shows a confirmation page whose button POSTs; ``POST`` (that button, or the RFC 8058 one-click POST a
mail client sends with ``List-Unsubscribe=One-Click``) unsubscribes: it emits ``LeadUnsubscribed`` once and
suppresses the lead (and its address) on every channel. The writes are :class:`~.compliance.ComplianceCommands`.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import select, tuple_

from services.runtime.auth import AdminWorkspace, ReadWorkspace, WriteWorkspace, public
from services.runtime.errors import Problem, problems
from services.runtime.pagination import After, Limit, Page, decode_cursor, encode_cursor
from services.runtime.webhooks import check_link_token

from .compliance import ComplianceCommands
from .context import OutreachContext
from .erasure import erase_lead
from .models import BlockIn, BlockKind, SuppressionIn
from .store import blocklist, suppressions

LinkWorkspace = Annotated[str, Query(min_length=1, max_length=200)]
LinkLead = Annotated[str, Query(min_length=1, max_length=64)]
LinkToken = Annotated[str, Query(min_length=1, max_length=200)]


class BlockOut(BaseModel):
    """A blocklist entry."""

    kind: str
    value: str


class SuppressionOut(BaseModel):
    """A suppressed lead (``kind`` lead, ``value`` its id) or address, and why."""

    kind: str
    value: str
    reason: str


class ErasureOut(BaseModel):
    """The outcome of an erasure; ``already`` when the lead was erased before."""

    lead_id: UUID
    erased: bool
    already: bool


class UnsubscribeOut(BaseModel):
    """The outcome of an unsubscribe; ``already`` when the lead was unsubscribed before."""

    unsubscribed: bool
    already: bool


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    """A small HTML page that is never cached, framed, or sent on as a referrer (its URL holds the token)."""
    html = (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f"<title>{escape(title)}</title><body>{body}</body></html>"
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        },
    )


def compliance_router(ctx: OutreachContext) -> APIRouter:
    """The compliance routes bound to ``ctx``."""
    r = APIRouter(tags=["compliance"])
    service = ctx.service
    commands = ComplianceCommands(service)

    @r.get("/v1/blocklist", response_model=Page[BlockOut])
    async def list_blocklist(ws: ReadWorkspace, limit: Limit = 50, after: After = None) -> Page[BlockOut]:
        """The workspace blocklist (domains, emails, LinkedIn profile URLs), by kind and value."""
        stmt = select(blocklist).where(blocklist.c.workspace_id == ws)
        if after:
            kind, value = decode_cursor(after, 2, [str, str])
            stmt = stmt.where(tuple_(blocklist.c.kind, blocklist.c.value) > tuple_(kind, value))
        async with service.engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(blocklist.c.kind, blocklist.c.value).limit(limit + 1))).all()
        items = [BlockOut(kind=x.kind, value=x.value) for x in rows]
        return Page.of(items, limit, lambda b: encode_cursor([b.kind, b.value]))

    @r.post("/v1/blocklist", status_code=201)
    async def add_block(body: BlockIn, ws: WriteWorkspace) -> dict[str, str]:
        """Block a domain, an email or a profile URL; checked before every send."""
        return {"kind": body.kind, "value": await commands.block(ws, body)}

    @r.delete("/v1/blocklist", status_code=204)
    async def remove_block(
        ws: WriteWorkspace,
        kind: Annotated[BlockKind, Query()],
        value: Annotated[str, Query(max_length=2048)],
    ) -> Response:
        """Unblock an entry (``?kind=domain&value=acme.com``)."""
        await commands.unblock(ws, kind, value)
        return Response(status_code=204)

    @r.get("/v1/suppressions", response_model=Page[SuppressionOut])
    async def list_suppressions(ws: ReadWorkspace, limit: Limit = 50, after: After = None) -> Page[SuppressionOut]:
        """Suppressed leads and addresses (unsubscribed, bounced, manual), by kind and value."""
        stmt = select(suppressions).where(suppressions.c.workspace_id == ws)
        if after:
            kind, value = decode_cursor(after, 2, [str, str])
            stmt = stmt.where(tuple_(suppressions.c.kind, suppressions.c.value) > tuple_(kind, value))
        async with service.engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(suppressions.c.kind, suppressions.c.value).limit(limit + 1))).all()
        items = [SuppressionOut(kind=x.kind, value=x.value, reason=x.reason) for x in rows]
        return Page.of(items, limit, lambda x: encode_cursor([x.kind, x.value]))

    @r.post("/v1/suppressions", status_code=201)
    async def add_suppression(body: SuppressionIn, ws: WriteWorkspace) -> dict[str, str]:
        """Suppress a lead (every channel) or an address."""
        return {"kind": body.kind, "value": await commands.suppress(ws, body), "reason": body.reason}

    def _checked_link(w: str, lead: str, token: str) -> UUID:
        try:
            lead_id = UUID(lead)
        except ValueError:
            raise Problem(400, "invalid_link", "the unsubscribe link is malformed") from None
        if not check_link_token(ctx.settings.keys("unsubscribe_secret"), token, w, str(lead_id)):
            raise Problem(403, "invalid_link", "the unsubscribe link is not valid")
        return lead_id

    service.limit_body("/v1/unsubscribe", 4096)  # a one-click body is a few bytes; nobody signs in first

    @r.post(
        "/v1/unsubscribe",
        response_model=UnsubscribeOut,
        openapi_extra=public("the link's HMAC token authorises it"),
        responses=problems(400, 403, 413),
    )
    async def unsubscribe_post(
        request: Request,
        w: LinkWorkspace,
        l: LinkLead,  # noqa: E741
        t: LinkToken,
    ) -> Any:
        """Unsubscribe: the RFC 8058 one-click POST a mail client sends (body ``List-Unsubscribe=One-Click``), or
        the button of the confirmation page. HTML for a browser, JSON otherwise."""
        body = await request.body()  # capped at the edge (limit_body above)
        one_click = b"list-unsubscribe=one-click" in body.lower()
        lead_id = _checked_link(w, l, t)
        first = await commands.unsubscribe(w, lead_id, "one_click" if one_click else "link")
        if "text/html" in request.headers.get("accept", ""):
            return _page(
                "Unsubscribed", "<p>You are unsubscribed and will not be contacted again.</p>", status_code=200
            )
        return UnsubscribeOut(unsubscribed=True, already=not first)

    @r.get(
        "/v1/unsubscribe",
        response_class=HTMLResponse,
        openapi_extra=public("the link's HMAC token authorises it"),
        responses=problems(400, 403),
    )
    async def unsubscribe_page(w: LinkWorkspace, l: LinkLead, t: LinkToken) -> HTMLResponse:  # noqa: E741
        """The link opened in a browser: a confirmation page whose button POSTs. Opening it changes nothing, so
        mail scanners that follow links do not unsubscribe anyone."""
        _checked_link(w, l, t)
        action = "/v1/unsubscribe?" + urlencode({"w": w, "l": l, "t": t})
        return _page(
            "Unsubscribe",
            "<p>Do you want to stop receiving messages from us?</p>"
            f'<form method="post" action="{escape(action)}">'
            '<input type="hidden" name="confirm" value="yes">'
            '<button type="submit">Unsubscribe</button></form>',
        )

    @r.post("/v1/leads/{lead_id}/erasure", status_code=202, response_model=ErasureOut, responses=problems(404))
    async def erase(lead_id: UUID, ws: AdminWorkspace) -> ErasureOut:
        """Erase the lead's personal data (crypto-shredding): their data key is destroyed, so every personal
        field of every event about them reads ``[erased]`` from now on; the lead is suppressed, and
        ``LeadErased`` tells every view to blank its copy (the projection does within seconds). Counts stay.
        Admin scope; the same as ``leadstream erase --lead ID``."""
        first = await erase_lead(ctx, ws, lead_id)
        return ErasureOut(lead_id=lead_id, erased=True, already=not first)

    return r
