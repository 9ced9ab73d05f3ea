"""Compliance routes: the workspace blocklist, the suppression list, and the one-click unsubscribe link.

The unsubscribe endpoint answers both ``POST`` (RFC 8058 one-click, sent by mail clients with
``List-Unsubscribe=One-Click``) and ``GET`` (a person clicking the link). It needs no API token: the
link carries an HMAC token binding workspace and lead. It emits ``LeadUnsubscribed`` once and
suppresses the lead (and its address) on every channel.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from leadstream_schemas import LeadUnsubscribed
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from services.runtime.auth import workspace_id
from services.runtime.errors import Problem
from services.runtime.webhooks import check_link_token

from . import lifecycle as lc
from .context import OutreachContext
from .domain.compliance import normalise_block_value, normalise_email
from .emit import RootEmitter
from .models import BlockIn, SuppressionIn
from .problems import invalid, not_found
from .store import blocklist, leads, suppressions


def compliance_router(ctx: OutreachContext) -> APIRouter:
    """The compliance routes bound to ``ctx``."""
    r = APIRouter(tags=["compliance"])
    service = ctx.service

    @r.get("/v1/blocklist")
    async def list_blocklist(ws: str = Depends(workspace_id)) -> list[dict[str, str]]:
        """The workspace blocklist (domains, emails, LinkedIn profile URLs)."""
        async with service.engine.connect() as conn:
            rows = await conn.execute(
                select(blocklist).where(blocklist.c.workspace_id == ws).order_by(blocklist.c.kind, blocklist.c.value)
            )
            return [{"kind": x.kind, "value": x.value} for x in rows]

    @r.post("/v1/blocklist", status_code=201)
    async def add_block(body: BlockIn, ws: str = Depends(workspace_id)) -> dict[str, str]:
        """Block a domain, an email or a profile URL; checked before every send."""
        value = normalise_block_value(body.kind, body.value)
        if not value:
            raise invalid("value", "not a usable domain, email or profile URL")
        async with service.engine.begin() as conn:
            await conn.execute(
                insert(blocklist)
                .values(workspace_id=ws, kind=body.kind, value=value, created_at=service.clock.now())
                .on_conflict_do_nothing()
            )
        return {"kind": body.kind, "value": value}

    @r.delete("/v1/blocklist", status_code=204)
    async def remove_block(
        kind: str = Query(..., max_length=100),
        value: str = Query(..., max_length=2048),
        ws: str = Depends(workspace_id),
    ) -> Response:
        """Unblock an entry (``?kind=domain&value=acme.com``)."""
        async with service.engine.begin() as conn:
            result = await conn.execute(
                delete(blocklist).where(
                    blocklist.c.workspace_id == ws,
                    blocklist.c.kind == kind,
                    blocklist.c.value == normalise_block_value(kind, value),
                )
            )
        if not result.rowcount:
            raise not_found("blocklist entry", f"{kind} {value}")
        return Response(status_code=204)

    @r.get("/v1/suppressions")
    async def list_suppressions(ws: str = Depends(workspace_id)) -> list[dict[str, str]]:
        """Suppressed leads and addresses (unsubscribed, bounced, manual)."""
        async with service.engine.connect() as conn:
            rows = await conn.execute(
                select(suppressions)
                .where(suppressions.c.workspace_id == ws)
                .order_by(suppressions.c.kind, suppressions.c.value)
            )
            return [{"kind": x.kind, "value": x.value, "reason": x.reason} for x in rows]

    @r.post("/v1/suppressions", status_code=201)
    async def add_suppression(body: SuppressionIn, ws: str = Depends(workspace_id)) -> dict[str, str]:
        """Suppress a lead (every channel) or an address."""
        value = body.value.strip()
        if body.kind == "email":
            value = normalise_email(value) or ""
            if not value:
                raise invalid("value", "not an email address")
        else:
            try:
                value = str(UUID(value))
            except ValueError:
                raise invalid("value", "a lead id (UUID)") from None
        async with service.engine.begin() as conn:
            await lc.suppress(conn, ws, body.kind, value, body.reason, service.clock.now())
        return {"kind": body.kind, "value": value, "reason": body.reason}

    async def unsubscribe(w: str, lead: str, token: str, via: str) -> bool:
        try:
            lead_id = UUID(lead)
        except ValueError:
            raise Problem(400, "invalid_link", "the unsubscribe link is malformed") from None
        if not check_link_token(ctx.settings.webhook_secret, token, w, str(lead_id)):
            raise Problem(403, "invalid_link", "the unsubscribe link is not valid")
        now = service.clock.now()
        async with service.engine.begin() as conn:
            before = await conn.scalar(
                select(suppressions.c.reason).where(
                    suppressions.c.workspace_id == w,
                    suppressions.c.kind == "lead",
                    suppressions.c.value == str(lead_id),
                )
            )
            await lc.suppress(conn, w, "lead", str(lead_id), "unsubscribed", now)
            email = await conn.scalar(
                select(leads.c.email).where(leads.c.workspace_id == w, leads.c.lead_id == lead_id)
            )
            if email:
                await lc.suppress(conn, w, "email", email, "unsubscribed", now)
            if before == "unsubscribed":
                return False
            em = RootEmitter(service, w)
            em.emit(LeadUnsubscribed(lead_id=lead_id, via=via), f"unsubscribed:{w}:{lead_id}")
            await em.flush(conn)
        service.wake_relay()
        return True

    @r.post("/v1/unsubscribe")
    async def unsubscribe_one_click(
        request: Request,
        w: str = Query(..., max_length=200),
        l: str = Query(..., max_length=200),  # noqa: E741
        t: str = Query(..., max_length=200),
    ) -> dict[str, Any]:
        """RFC 8058 one-click unsubscribe (the mail client POSTs ``List-Unsubscribe=One-Click``)."""
        first = await unsubscribe(w, l, t, "one_click")
        return {"unsubscribed": True, "already": not first}

    @r.get("/v1/unsubscribe", response_class=HTMLResponse)
    async def unsubscribe_link(
        w: str = Query(..., max_length=200),
        l: str = Query(..., max_length=200),  # noqa: E741
        t: str = Query(..., max_length=200),
    ) -> HTMLResponse:
        """The same link opened in a browser."""
        await unsubscribe(w, l, t, "link")
        return HTMLResponse(
            "<!doctype html><title>Unsubscribed</title><p>You are unsubscribed and will not be contacted again.</p>"
        )

    return r
