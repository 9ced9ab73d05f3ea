"""Account routes: connect (hosted authorisation link + callback), list, details, refresh, delete, and the
signed account-status webhook; email senders' verification (request, callback, confirmation link, ask again).

In simulated mode (``LEADSTREAM_LINKEDIN_PROVIDER=simulated``, the default) ``POST /v1/accounts``
connects a LinkedIn account at once, unless ``hosted: true`` asks for the hosted flow. With the real
provider the answer is ``202`` with ``auth_url``; the provider's signed callback to ``/v1/accounts/callback``
completes the connection. An email sender is verified by the email provider (``senders.py``): ``201`` when
it says verified at once (the simulated provider by default), ``202`` while its owner has not confirmed yet.

The writes are :class:`~.accounts.AccountCommands`; these routes read the request and shape the answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, Response
from sqlalchemy import select, tuple_
from sqlalchemy.engine import Row

from services.runtime.auth import AdminWorkspace, ReadWorkspace, WriteWorkspace, public
from services.runtime.errors import Problem, problems
from services.runtime.pagination import After, Limit, Page, decode_cursor, encode_cursor
from services.runtime.plans import Plan

from .accounts import AccountCommands, account_row
from .context import OutreachContext
from .models import (
    AccountCallbackIn,
    AccountDetailOut,
    AccountIn,
    AccountOut,
    AccountStatusHookIn,
    AuthLinkOut,
    ConnectedAccountOut,
    ReconnectEmailOut,
    ReconnectIn,
    SenderConfirmedOut,
    WebhookAck,
)
from .problems import not_found, webhook_body
from .senders import verification_view
from .store import accounts, leases, reconnect_emails


def account_view(row: Row[Any], *, dry_run: bool | None = None) -> AccountOut:
    """The API shape of an account (``email_dry_run``: an email sender's emails are dry runs)."""
    return AccountOut(
        email_dry_run=dry_run if row.provider == "email" else None,
        account_id=row.account_id,
        provider=row.provider,
        display_name=row.display_name,
        status=row.status,
        healthy=row.healthy,
        sender_email=row.sender_email,
        sender_email_verified=row.sender_email_verified,
        incident=row.incident,
        limit_paused_until=row.limit_paused_until,
        verification=verification_view(row),
        created_at=row.created_at,
    )


def accounts_router(ctx: OutreachContext) -> APIRouter:
    """The account routes bound to ``ctx``."""
    r = APIRouter(tags=["accounts"])
    service = ctx.service
    commands = AccountCommands(ctx)

    @r.post(
        "/v1/accounts",
        status_code=201,
        responses={
            202: {
                "description": "Pending: the user completes the connection at `auth_url` (hosted flow), or the "
                "email sender's owner confirms the address (`verification`)",
                "model": ConnectedAccountOut,
            },
            **problems(503),  # the email provider cannot be asked to verify a sender now
        },
    )
    async def connect(body: AccountIn, response: Response, plan: Plan, ws: WriteWorkspace) -> ConnectedAccountOut:
        """Connect an account: at once in simulated mode, else through a hosted authorisation link (202). An
        email sender needs the Scale plan or its email-sender add-on (403 ``plan_required`` otherwise) and is
        verified by the email provider: at once (201) or once its owner confirmed it (202)."""
        if body.provider == "email":
            plan.require("email_sender", "provider")
        done = await commands.connect(ws, body)
        if done.pending:
            response.status_code = 202
        return ConnectedAccountOut(**dict(account_view(done.row)), auth_url=done.auth_url)

    @r.post(
        "/v1/accounts/{account_id}/verify",
        status_code=202,
        responses={
            200: {"model": AccountOut, "description": "The email provider verified the sender at once"},
            **problems(404, 409, 422, 503),
        },
    )
    async def verify_again(account_id: UUID, response: Response, ws: WriteWorkspace) -> AccountOut:
        """Ask the email provider to verify a sender again (a pending one, or one whose verification failed)."""
        row, verified = await commands.verify_again(ws, account_id)
        if verified:
            response.status_code = 200
        return account_view(row)

    @r.get(
        "/v1/accounts/{account_id}/confirm",
        openapi_extra=public("the link's HMAC token authorises it"),
        responses=problems(403, 404, 409, 422),
    )
    async def confirm_link(account_id: UUID, t: str = Query(max_length=200)) -> SenderConfirmedOut:
        """Outreach's confirmation link, opened by the sender address's owner (a provider without verification)."""
        account = await commands.confirm(account_id, t)
        return SenderConfirmedOut(status="verified", account_id=account_id, sender_email=account.sender_email)

    @r.post(
        ctx.signed_route("/v1/accounts/callback"),
        openapi_extra=public("Standard Webhooks signature of the LinkedIn or email provider"),
        responses=problems(400, 401, 404, 413, 422),
    )
    async def callback(request: Request) -> WebhookAck:
        """The provider's signed notification that a hosted connection (or a sender verification) finished.

        Body (Unipile style): ``{"status": "CREATION_SUCCESS", "account_id": "<provider id>", "name": "<our id>"}``.
        """
        hook, raw, signer = await ctx.verified_webhook(request, "linkedin", "email")
        return await commands.callback(hook, signer, webhook_body(raw, AccountCallbackIn))

    @r.get("/v1/accounts", response_model=Page[AccountOut])
    async def list_accounts(ws: ReadWorkspace, limit: Limit = 50, after: After = None) -> Page[AccountOut]:
        """The workspace's accounts, oldest first."""
        stmt = select(accounts).where(accounts.c.workspace_id == ws, accounts.c.deleted_at.is_(None))
        if after:
            created, account_id = decode_cursor(after, 2, [datetime.fromisoformat, UUID])
            stmt = stmt.where(tuple_(accounts.c.created_at, accounts.c.account_id) > tuple_(created, account_id))
        async with service.engine.connect() as conn:
            rows = (
                await conn.execute(stmt.order_by(accounts.c.created_at, accounts.c.account_id).limit(limit + 1))
            ).all()
        page = Page.of(rows, limit, lambda a: encode_cursor([a.created_at.isoformat(), str(a.account_id)]))
        dry_run = not ctx.settings.email_real_sends
        return Page[AccountOut](items=[account_view(row, dry_run=dry_run) for row in page.items], next=page.next)

    @r.get("/v1/accounts/{account_id}")
    async def get_account(account_id: UUID, ws: ReadWorkspace) -> AccountDetailOut:
        """One account, with its leases and the reconnect emails sent for it."""
        async with service.engine.connect() as conn:
            row = await account_row(conn, account_id, ws)
            if row is None:
                raise not_found("account", account_id)
            held = await conn.execute(select(leases.c.campaign_id).where(leases.c.account_id == account_id))
            mails = await conn.execute(
                select(reconnect_emails)
                .where(reconnect_emails.c.account_id == account_id)
                .order_by(reconnect_emails.c.incident)
            )
            return AccountDetailOut(
                **dict(account_view(row)),
                leases=sorted((x.campaign_id for x in held), key=str),
                reconnect_emails=[
                    ReconnectEmailOut(
                        incident=m.incident, to=m.to_address, status=m.status, dry_run=m.dry_run, sent_at=m.sent_at
                    )
                    for m in mails
                ],
            )

    @r.delete("/v1/accounts/{account_id}", status_code=204)
    async def delete_account(account_id: UUID, ws: AdminWorkspace) -> Response:
        """Delete an account (``admin`` scope); campaigns left without an account need review."""
        await commands.delete(ws, account_id)
        return Response(status_code=204)

    @r.post("/v1/accounts/{account_id}/refresh")
    async def refresh(account_id: UUID, ws: WriteWorkspace) -> AccountOut:
        """Ask the provider for the account's status now and apply it."""
        return account_view(await commands.refresh(ws, account_id))

    @r.post("/v1/accounts/{account_id}/reconnect-link")
    async def reconnect_link(
        account_id: UUID,
        ws: WriteWorkspace,
        body: ReconnectIn = Body(default_factory=ReconnectIn),  # noqa: B008
    ) -> AuthLinkOut:
        """A hosted authorisation link that reconnects a LinkedIn account (the provider calls back when done)."""
        async with service.engine.connect() as conn:
            row = await account_row(conn, account_id, ws)
        if row is None:
            raise not_found("account", account_id)
        if row.provider != "linkedin":
            raise Problem(409, "not_linkedin", f"account {account_id} is an email sender: it has nothing to reconnect")
        auth_url = await ctx.linkedin.hosted_auth_link(
            str(account_id),
            commands.callback_url(),
            service.clock.now(),
            return_url=body.return_url,
            reconnect=row.provider_account_id or str(account_id),
        )
        return AuthLinkOut(account_id=account_id, auth_url=auth_url)

    @r.post(
        ctx.signed_route("/v1/webhooks/accounts"),
        openapi_extra=public("Standard Webhooks signature of the LinkedIn provider"),
        responses=problems(400, 401, 404, 413, 422),
    )
    async def account_status_webhook(request: Request) -> WebhookAck:
        """Signed account status from the provider: ``{"account_id": ..., "status": "CREDENTIALS"}`` or Unipile's
        ``{"AccountStatus": {"account_id": ..., "message": "OK"}}``."""
        hook, raw, _ = await ctx.verified_webhook(request, "linkedin")
        return await commands.status_changed(hook, webhook_body(raw, AccountStatusHookIn))

    return r
