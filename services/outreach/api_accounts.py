"""Account routes: connect (hosted authorisation link + callback), list, details, refresh, delete, and the
signed account-status webhook; email senders' verification (request, callback, confirmation link, ask again).

In simulated mode (``LEADSTREAM_LINKEDIN_PROVIDER=simulated``, the default) ``POST /v1/accounts``
connects a LinkedIn account at once, unless ``hosted: true`` asks for the hosted flow. With the real
provider the answer is ``202`` with ``auth_url``; the provider's signed callback to ``/v1/accounts/callback``
completes the connection. An email sender is verified by the email provider (``senders.py``): ``201`` when
it says verified at once (the simulated provider by default), ``202`` while its owner has not confirmed yet.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, Response
from leadstream_schemas import HEALTHY_STATUSES, AccountConnected, AccountConnectionRequested
from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.auth import AdminWorkspace, ReadWorkspace, WriteWorkspace, public
from services.runtime.errors import Problem, problems
from services.runtime.pagination import After, Limit, Page, decode_cursor, encode_cursor
from services.runtime.plans import Plan
from services.runtime.providers import ProviderError

from .accounts import account_row, complete_connection, find_account, lock_account, normalise_status
from .adapters import SenderVerification
from .context import OutreachContext
from .domain.compliance import normalise_email
from .emit import RootEmitter
from .models import (
    AccountDetailOut,
    AccountIn,
    AccountOut,
    AuthLinkOut,
    ConnectedAccountOut,
    ReconnectEmailOut,
    ReconnectIn,
    SenderConfirmedOut,
    WebhookAck,
)
from .problems import invalid, json_object, not_found
from .senders import FAILED, PENDING, verification_view
from .store import accounts, leases, reconnect_emails

# Callback statuses: a hosted connection (or a sender verification) completed, or a sender verification failed.
CONNECTED_STATUSES = ("creation_success", "reconnected", "ok", "connected", "verified")
SENDER_FAILED_STATUSES = ("failed", "rejected", "expired", "verification_failed")


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

    def callback_url() -> str:
        return f"{ctx.settings.base_url()}/v1/accounts/callback"

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
        now = service.clock.now()
        account_id = uuid.uuid4()
        sender = normalise_email(body.sender_email) if body.provider == "email" else None
        verdict = None
        if sender is not None:
            verdict = await _ask_provider(account_id, sender, now)
            immediate = verdict.status == "verified"
        else:
            immediate = ctx.simulated and not body.hosted
        auth_url = None
        if not immediate and body.provider == "linkedin":
            auth_url = await ctx.linkedin.hosted_auth_link(
                str(account_id), callback_url(), now, return_url=body.return_url
            )
        async with service.engine.begin() as conn:
            await conn.execute(
                insert(accounts).values(
                    account_id=account_id,
                    workspace_id=ws,
                    provider=body.provider,
                    display_name=body.display_name,
                    status="connected" if immediate else "pending",
                    healthy=immediate,
                    sender_email=sender,
                    sender_email_verified=immediate and body.provider == "email",
                    notify_email=body.notify_email,
                    provider_account_id=f"sim-{account_id}" if immediate else None,
                    created_at=now,
                    updated_at=now,
                )
            )
            em = RootEmitter(service, ws)
            em.emit(AccountConnectionRequested(account_id=account_id, provider=body.provider))
            if immediate:
                em.emit(
                    AccountConnected(
                        account_id=account_id,
                        provider=body.provider,
                        display_name=body.display_name,
                        sender_email_verified=body.provider == "email",
                    )
                )
            if verdict is not None and not immediate:
                await ctx.senders.started(conn, em, await _row(conn, account_id), verdict, now)
            elif verdict is not None:
                await _note_request(conn, account_id, verdict.sender_id, None, now)
            await em.flush(conn)
            row = await _row(conn, account_id)
        if sender is not None and not immediate:
            row = await _link_sent(account_id, sender, row)
        service.wake_relay()
        ctx.runner.wake()
        if not immediate:
            response.status_code = 202
        return ConnectedAccountOut(**dict(account_view(row)), auth_url=auth_url)

    async def _ask_provider(account_id: UUID, sender: str, now: datetime) -> SenderVerification:
        """The email provider's first word on a new sender: a 422 naming sender_email when it refuses the address,
        a 503 when it cannot be asked now (nothing is stored either way)."""
        try:
            verdict = await ctx.senders.ask(account_id, sender, now)
        except ProviderError as exc:
            if not exc.transient:
                raise invalid("sender_email", f"the email provider refused to verify {sender}: {exc}") from None
            raise Problem(503, "provider_unavailable", f"the email provider cannot be asked now: {exc}") from None
        if verdict.status == "failed":
            raise invalid("sender_email", f"the email provider cannot verify {sender}: {verdict.detail or 'refused'}")
        return verdict

    async def _link_sent(account_id: UUID, sender: str, row: Row[Any]) -> Row[Any]:
        """Outreach's own confirmation link for a provider without verification (after the account is stored)."""
        detail = await ctx.senders.send_link(account_id, sender)
        if detail is None:
            return row
        async with service.engine.begin() as conn:
            await conn.execute(
                update(accounts).where(accounts.c.account_id == account_id).values(verification_detail=detail)
            )
            return await _row(conn, account_id)

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
        now = service.clock.now()
        async with service.engine.connect() as conn:
            row = await account_row(conn, account_id, ws)
        if row is None or row.provider != "email":
            raise not_found("email sender", account_id)
        if row.status not in (PENDING, FAILED):
            raise Problem(
                409, "invalid_state", f"the sender is {row.status}; only a pending or failed one is asked again"
            )
        verdict = await _ask_provider(account_id, row.sender_email, now)
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id, ws)
            if account is None:
                raise not_found("email sender", account_id)
            await conn.execute(
                update(accounts).where(accounts.c.account_id == account_id).values(status=PENDING, updated_at=now)
            )
            em = RootEmitter(service, ws)
            await ctx.senders.started(conn, em, await _row(conn, account_id), verdict, now)
            await em.flush(conn)
            row = await _row(conn, account_id)
        if verdict.status != "verified":
            row = await _link_sent(account_id, row.sender_email, row)
        else:
            response.status_code = 200
        service.wake_relay()
        ctx.runner.wake()
        return account_view(row)

    @r.get(
        "/v1/accounts/{account_id}/confirm",
        openapi_extra=public("the link's HMAC token authorises it"),
        responses=problems(403, 404, 409, 422),
    )
    async def confirm_link(account_id: UUID, t: str = Query(max_length=200)) -> SenderConfirmedOut:
        """Outreach's confirmation link, opened by the sender address's owner (a provider without verification)."""
        now = service.clock.now()
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id)
            if account is None or account.provider != "email" or not account.sender_email:
                raise not_found("email sender", account_id)
            if not ctx.senders.link_is_valid(account_id, account.sender_email, t):
                raise Problem(403, "invalid_link", "this confirmation link is not valid for this sender")
            if account.status not in (PENDING, "connected"):
                raise Problem(409, "invalid_state", f"the sender is {account.status}: ask for a new link")
            em = RootEmitter(service, account.workspace_id)
            await ctx.senders.verified(conn, em, account, now)
            await em.flush(conn)
        service.wake_relay()
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
        data = json_object(raw)
        ours = str(data.get("name") or data.get("account_ref") or "")
        now = service.clock.now()
        async with service.engine.begin() as conn:
            if not await ctx.first_delivery(conn, hook):
                return WebhookAck(status="duplicate")
            try:
                account = await lock_account(conn, UUID(ours))
            except ValueError:
                account = None
            if account is None or account.provider != signer:  # each provider completes only its own accounts
                raise not_found("account", ours or "(no name)")
            status = str(data.get("status", "")).lower()
            if account.provider == "email":
                return await _sender_callback(conn, account, status, data, now)
            if status not in CONNECTED_STATUSES:
                raise invalid("status", f"{data.get('status')!r} does not complete a connection")
            em = RootEmitter(service, account.workspace_id)
            provider_id = str(data.get("account_id") or "") or None
            if account.status == "pending":
                await complete_connection(conn, em, account, provider_id, now)
            else:  # a reconnect through the hosted page: the account is healthy again and its campaigns resume
                await ctx.account_status.apply(conn, em, account, "reconnected", now)
            await em.flush(conn)
        service.wake_relay()
        ctx.runner.wake()
        return WebhookAck(status="connected", account_id=account.account_id)

    async def _sender_callback(
        conn: AsyncConnection, account: Row[Any], status: str, data: dict[str, Any], now: datetime
    ) -> WebhookAck:
        """The email provider's word on a sender it was asked to verify: verified, or failed (with its reason)."""
        em = RootEmitter(service, account.workspace_id)
        if status in CONNECTED_STATUSES:
            await ctx.senders.verified(conn, em, account, now)
            outcome = "verified"
        elif status in SENDER_FAILED_STATUSES:
            reason = str(data.get("detail") or data.get("reason") or f"the provider answered {status}")[:300]
            await ctx.senders.failed(conn, em, account, reason, now)
            outcome = FAILED
        else:
            raise invalid("status", f"{data.get('status')!r} neither verifies nor refuses a sender")
        await em.flush(conn)
        service.wake_relay()
        return WebhookAck(status=outcome, account_id=account.account_id)

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
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id, ws)
            if account is None:
                raise not_found("account", account_id)
            em = RootEmitter(service, ws)
            await ctx.account_status.delete(conn, em, account, service.clock.now())
            await em.flush(conn)
        service.wake_relay()
        return Response(status_code=204)

    @r.post("/v1/accounts/{account_id}/refresh")
    async def refresh(account_id: UUID, ws: WriteWorkspace) -> AccountOut:
        """Ask the provider for the account's status now and apply it."""
        async with service.engine.connect() as conn:
            row = await account_row(conn, account_id, ws)
        if row is None:
            raise not_found("account", account_id)
        if row.provider == "email":
            return await _refresh_sender(account_id, ws)
        raw = await ctx.linkedin.account_status(str(account_id), row.provider_account_id)
        status = normalise_status(raw)
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id, ws)
            if account is None:
                raise not_found("account", account_id)
            em = RootEmitter(service, ws)
            now = service.clock.now()
            if account.status == "pending":
                # "Check again": the provider finished the hosted connection but its callback has not come.
                if status in HEALTHY_STATUSES:
                    await complete_connection(conn, em, account, row.provider_account_id, now)
            elif status is not None:
                await ctx.account_status.apply(conn, em, account, status, now)
            await em.flush(conn)
            row = (await conn.execute(select(accounts).where(accounts.c.account_id == account_id))).one()
        service.wake_relay()
        ctx.runner.wake()
        return account_view(row)

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
            callback_url(),
            service.clock.now(),
            return_url=body.return_url,
            reconnect=row.provider_account_id or str(account_id),
        )
        return AuthLinkOut(account_id=account_id, auth_url=auth_url)

    async def _refresh_sender(account_id: UUID, ws: str) -> AccountOut:
        """Ask the email provider about a pending sender now (the check timer would, later)."""
        async with service.engine.begin() as conn:
            account = await lock_account(conn, account_id, ws)
            if account is None:
                raise not_found("account", account_id)
            if account.status == PENDING:
                em = RootEmitter(service, ws)
                await ctx.senders.check(conn, em, account, service.clock.now())
                await em.flush(conn)
            row = await _row(conn, account_id)
        service.wake_relay()
        return account_view(row)

    @r.post(
        ctx.signed_route("/v1/webhooks/accounts"),
        openapi_extra=public("Standard Webhooks signature of the LinkedIn provider"),
        responses=problems(400, 401, 404, 413, 422),
    )
    async def account_status_webhook(request: Request) -> WebhookAck:
        """Signed account status from the provider: ``{"account_id": ..., "status": "CREDENTIALS"}`` or Unipile's
        ``{"AccountStatus": {"account_id": ..., "message": "OK"}}``."""
        hook, raw, _ = await ctx.verified_webhook(request, "linkedin")
        data = json_object(raw)
        nested = data.get("AccountStatus")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else data
        ident, raw_status = str(inner.get("account_id", "")), str(inner.get("status") or inner.get("message") or "")
        status = normalise_status(raw_status)
        if status is None:
            raise invalid(
                "status",
                f"unknown account status {raw_status!r}; one of ok, reconnected, sync_success, running, connected, "
                "credentials, disconnected, auth_required, sleeping",
            )
        async with service.engine.begin() as conn:
            if not await ctx.first_delivery(conn, hook):
                return WebhookAck(status="duplicate")
            account = await find_account(conn, ident)
            if account is None:
                raise not_found("account", ident)
            em = RootEmitter(service, account.workspace_id)
            changed = await ctx.account_status.apply(conn, em, account, status, service.clock.now())
            await em.flush(conn)
        service.wake_relay()
        ctx.runner.wake()
        return WebhookAck(status=status, changed=changed, account_id=account.account_id)

    return r


async def _row(conn: AsyncConnection, account_id: UUID) -> Row[Any]:
    return (await conn.execute(select(accounts).where(accounts.c.account_id == account_id))).one()


async def _note_request(
    conn: AsyncConnection, account_id: UUID, sender_id: str | None, detail: str | None, now: datetime
) -> None:
    """When a sender verified at once was asked for (and the provider's id of it)."""
    await conn.execute(
        update(accounts)
        .where(accounts.c.account_id == account_id)
        .values(
            provider_account_id=sender_id,
            verification_requested_at=now,
            verification_checked_at=now,
            verification_detail=detail,
        )
    )
