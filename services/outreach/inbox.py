"""Replies from every channel: the SMTP mailbox read over IMAP, LinkedIn accounts' provider inboxes polled
where the provider sends no webhooks, the providers' signed webhooks (:class:`ProviderEvents`, the commands behind
``api_webhooks.py``: replies, acceptances, bounces and complaints) and replies recorded by hand.

Each inbox is an ``inbox_cursors`` row on the runtime's durable-timer loop (one claim loop, any number of
replicas): ``imap`` (the mailbox of ``LEADSTREAM_REPLY_INBOX=imap``), ``linkedin:<account>`` per LinkedIn account
(``LEADSTREAM_LINKEDIN_INBOX_POLL=true``) and ``linkedin_sync``, which keeps one row per healthy account. A poll
reads the new messages (after the IMAP UID, or the newest message time, it stored), and in the same
transaction as its new position:

- matches each message to a lead: an email by the Message-ID of ours it answers (``In-Reply-To`` /
  ``References``: outreach's SMTP sender sets deterministic Message-IDs), else by its sender's address among the
  leads it could be (those we emailed first; one workspace only, else it is left as ambiguous); a LinkedIn
  message by its sender's profile, within the account's workspace;
- records it in ``inbox_messages`` by its id, so a message is taken once whatever happens (a crash, a replica,
  a rebuilt mailbox read again);
- applies it like any reply (``lifecycle.apply_reply``): ``Replied`` and every step cancelled, or, for an
  out-of-office answer (auto-reply headers, its subject or words), the lead paused until its return date.

With ``imap_idle`` a background session waits in IMAP IDLE and makes the mailbox's poll due at once when mail
arrives; the poll interval remains the safety net. Bounces and our own messages are recorded, not applied.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Select, delete, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.faults import Backoff
from services.runtime.service import Service
from services.runtime.timers import DurableTimers, Failure, Schedule
from services.runtime.webhooks import VerifiedWebhook

from . import lifecycle as lc
from .accounts import find_account
from .adapters import InboundMessage, LinkedInInbox, LinkedInProvider
from .adapters.imap import ImapMailbox
from .domain.compliance import normalise_email, normalise_profile_url
from .domain.inbound import InboundEmail, parse_email
from .domain.replies import is_out_of_office
from .emit import RootEmitter
from .models import EmailHookIn, LinkedInHookIn, SimulatedReplyIn, WebhookAck
from .problems import invalid, not_found
from .settings import OutreachSettings
from .store import COUNTED_STATES, accounts, campaigns, enrollments, inbox_cursors, inbox_messages, leads, sends

if TYPE_CHECKING:  # the context is built from modules this one's poller sits beside
    from .context import OutreachContext

log = logging.getLogger(__name__)

SYNC_KEY = "linkedin_sync"
NEVER = datetime(1970, 1, 1, tzinfo=UTC)
OVERLAP = timedelta(minutes=1)
KEEP_MESSAGES = timedelta(days=30)
IDLE_S = 25 * 60  # IMAP servers drop an IDLE after 30 minutes
ACCEPT_EVENTS = {"new_relation", "invite_accepted", "invitation_accepted", "accepted"}
REPLY_EVENTS = {"message_received", "reply", "replied"}


def mailbox_of(settings: OutreachSettings) -> ImapMailbox | None:
    """The IMAP mailbox the settings name (``reply_inbox=imap``), None otherwise."""
    if settings.reply_inbox != "imap":
        return None
    password = settings.imap_password.get_secret_value() or settings.smtp_password.get_secret_value()
    return ImapMailbox(
        settings.imap_host or settings.smtp_host,
        settings.imap_port,
        settings.imap_username or settings.smtp_username,
        password,
        mailbox=settings.imap_mailbox,
        use_tls=settings.imap_use_tls,
        timeout_s=settings.imap_timeout_s,
    )


def claimable(now: datetime) -> Select[Any]:
    """Inboxes whose poll is due, the most overdue first."""
    return select(inbox_cursors).where(inbox_cursors.c.due_at <= now).order_by(inbox_cursors.c.due_at)


class InboxPoller:
    """Polls the configured inboxes on the durable-timer loop; ``step()`` polls one (tests with a fake clock)."""

    def __init__(
        self, service: Service, settings: OutreachSettings, linkedin: LinkedInProvider, mailbox: ImapMailbox | None
    ) -> None:
        self.service = service
        self.settings = settings
        self.linkedin = linkedin
        self.mailbox = mailbox
        self.interval = timedelta(seconds=settings.inbox_poll_interval_s)
        self.timers = DurableTimers(
            name="outreach_inbox",
            service=service,
            table=inbox_cursors,
            due=inbox_cursors.c.due_at,
            attempts=inbox_cursors.c.attempts,
            claimable=claimable,
            run=self._poll,
            failed=self._failed,
            schedule=Schedule(
                max_attempts=settings.timer_max_attempts,
                retry_initial_s=settings.timer_poll_interval_s * 10,
                retry_max_s=settings.inbox_poll_interval_s,
                poll_interval_s=settings.timer_poll_interval_s,
            ),
        )

    @property
    def enabled(self) -> bool:
        """Whether any inbox is to be read."""
        return self.mailbox is not None or self.settings.linkedin_inbox_poll

    async def ensure(self) -> None:
        """The rows of the configured inboxes (idempotent; a mailbox no longer configured keeps its row idle)."""
        now = self.service.clock.now()
        rows = []
        if self.mailbox is not None:
            rows.append({"key": self.mailbox.key, "kind": "imap"})
        if self.settings.linkedin_inbox_poll:
            rows.append({"key": SYNC_KEY, "kind": "linkedin_sync"})
        async with self.service.engine.begin() as conn:
            for row in rows:
                await conn.execute(
                    insert(inbox_cursors).values(**row, due_at=now, updated_at=now).on_conflict_do_nothing()
                )

    def serve(self) -> None:
        """Run the polls on the service's durable-timer loop (and the IMAP IDLE watcher), when any is configured."""
        if not self.enabled:
            return

        async def start(stop: asyncio.Event) -> None:
            backoff = Backoff(1.0, 60.0)
            while not stop.is_set():
                try:
                    await self.ensure()
                    return
                except Exception as exc:  # the database is not there yet: the service reports it; try again
                    log.warning("inbox rows not created yet; retrying", extra={"error": repr(exc)})
                    if await backoff.wait(stop):
                        return

        self.service.add_task(start)
        self.timers.serve()
        if self.mailbox is not None and self.settings.imap_idle:
            self.service.add_task(self._idle)

    async def step(self) -> Row[Any] | None:
        """Poll the most overdue inbox; its row, or None when none is due."""
        return await self.timers.run_once()

    # -- polls ----------------------------------------------------------------------------------------------

    async def _poll(self, conn: AsyncConnection, row: Row[Any], now: datetime) -> None:
        values: dict[str, Any]
        if row.kind == "imap":
            values = await self._poll_mailbox(conn, row, now)
        elif row.kind == "linkedin_sync":
            values = await self._sync_accounts(conn, now)
        else:
            values = await self._poll_linkedin(conn, row, now)
        values.setdefault("due_at", now + self.interval)
        await conn.execute(
            update(inbox_cursors)
            .where(inbox_cursors.c.key == row.key)
            .values(
                **values,
                attempts=0,
                last_error=None,
                polls=inbox_cursors.c.polls + 1,
                last_polled_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            delete(inbox_messages).where(
                inbox_messages.c.inbox == row.key, inbox_messages.c.received_at < now - KEEP_MESSAGES
            )
        )

    async def _failed(self, conn: AsyncConnection, row: Row[Any], failure: Failure) -> None:
        """Note the error; after the attempts the inbox is polled again at its next interval (never given up)."""
        values: dict[str, Any] = {"last_error": failure.detail, "updated_at": failure.now}
        if failure.retry_at is None:
            values.update(attempts=0, due_at=failure.now + self.interval)
        await conn.execute(update(inbox_cursors).where(inbox_cursors.c.key == row.key).values(**values))

    async def _poll_mailbox(self, conn: AsyncConnection, row: Row[Any], now: datetime) -> dict[str, Any]:
        if self.mailbox is None or row.key != self.mailbox.key:  # no longer configured
            return {"due_at": now + timedelta(days=365)}
        since = (now - timedelta(hours=self.settings.inbox_first_lookback_h)).date()
        batch = await self.mailbox.fetch(row.uidvalidity, int(row.last_uid or 0), since, self.settings.inbox_batch)
        replies = 0
        own = {a for a in (self.mailbox.username.lower(), normalise_email(self.settings.smtp_username)) if a}
        for raw in batch.messages:
            replies += await self._email(conn, row.key, parse_email(raw.raw), own, now)
        last_uid = max([m.uid for m in batch.messages], default=0)
        if batch.uidvalidity == row.uidvalidity:
            last_uid = max(last_uid, int(row.last_uid or 0))
        return {
            "uidvalidity": batch.uidvalidity,
            "last_uid": last_uid,
            "messages": inbox_cursors.c.messages + len(batch.messages),
            "replies": inbox_cursors.c.replies + replies,
            "due_at": now if batch.more else now + self.interval,
        }

    async def _sync_accounts(self, conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        """One row per LinkedIn account that can receive, none for deleted ones."""
        live = select(
            func.concat(literal("linkedin:"), accounts.c.account_id),
            literal("linkedin"),
            accounts.c.account_id,
            literal(now),
            literal(now),
        ).where(accounts.c.provider == "linkedin", accounts.c.deleted_at.is_(None))
        await conn.execute(
            insert(inbox_cursors)
            .from_select(["key", "kind", "account_id", "due_at", "updated_at"], live)
            .on_conflict_do_nothing()
        )
        gone = select(accounts.c.account_id).where(accounts.c.deleted_at.is_not(None))
        await conn.execute(
            delete(inbox_cursors).where(inbox_cursors.c.kind == "linkedin", inbox_cursors.c.account_id.in_(gone))
        )
        return {}

    async def _poll_linkedin(self, conn: AsyncConnection, row: Row[Any], now: datetime) -> dict[str, Any]:
        account = (await conn.execute(select(accounts).where(accounts.c.account_id == row.account_id))).first()
        if account is None or account.deleted_at is not None or not isinstance(self.linkedin, LinkedInInbox):
            return {"due_at": now + timedelta(days=365)}
        if not account.healthy:  # reconnect first; nothing can be read meanwhile
            return {}
        lookback = now - timedelta(hours=self.settings.inbox_first_lookback_h)
        # A minute of overlap: a message stamped with the newest time seen but listed later is not missed (the
        # messages already handled are known by their ids).
        previous = datetime.fromisoformat(row.cursor) if row.cursor else None
        since = previous - OVERLAP if previous is not None else lookback
        found = await self.linkedin.inbox(
            str(account.account_id), account.provider_account_id, since, now, self.settings.inbox_batch
        )
        replies = 0
        for message in found:
            replies += await self._linkedin_message(conn, row.key, account, message, now)
        newest = max([previous or since, *(m.sent_at for m in found)])  # never back into the overlap
        return {
            "cursor": newest.isoformat(),
            "messages": inbox_cursors.c.messages + len(found),
            "replies": inbox_cursors.c.replies + replies,
            "due_at": now if len(found) >= self.settings.inbox_batch else now + self.interval,
        }

    # -- one message ------------------------------------------------------------------------------------------

    async def _first(
        self, conn: AsyncConnection, inbox: str, key: str, now: datetime, outcome: str, **values: Any
    ) -> bool:
        """Record a message as handled; False when it was before (nothing is done twice). It is remembered from
        when it was handled (``now``), whatever date it claims: a message dated long ago but delivered today can
        be read again (a rebuilt mailbox reads by arrival), so its record must outlive that window."""
        done = await conn.scalar(
            insert(inbox_messages)
            .values(inbox=inbox, message_key=key, received_at=now, outcome=outcome, **values)
            .on_conflict_do_nothing()
            .returning(inbox_messages.c.message_key)
        )
        return done is not None

    async def _email(self, conn: AsyncConnection, inbox: str, mail: InboundEmail, own: set[str], now: datetime) -> int:
        received = mail.received_at or now
        if mail.bounce or (mail.sender in own):
            await self._first(conn, inbox, mail.key, now, "ignored", detail="a bounce or our own message")
            return 0
        match = await match_email(conn, mail)
        if isinstance(match, str):
            await self._first(conn, inbox, mail.key, now, match, detail=f"from {mail.sender}"[:300])
            return 0
        workspace, lead_id = match
        ooo = is_out_of_office(mail.text, mail.subject, mail.headers)
        outcome = "out_of_office" if ooo else "replied"
        if not await self._first(conn, inbox, mail.key, now, outcome, workspace_id=workspace, lead_id=lead_id):
            return 0
        await self._apply(conn, workspace, lead_id, "email", mail.key, min(received, now), now, mail.text, ooo)
        return 1

    async def _linkedin_message(
        self, conn: AsyncConnection, inbox: str, account: Row[Any], message: InboundMessage, now: datetime
    ) -> int:
        profile = normalise_profile_url(message.profile_url)
        lead_id = None
        if profile:
            lead_id = await conn.scalar(
                select(leads.c.lead_id)
                .where(leads.c.workspace_id == account.workspace_id, leads.c.profile_key == profile)
                .limit(1)
            )
        key = f"linkedin:{message.message_id}"
        if lead_id is None:
            await self._first(conn, inbox, key, now, "unmatched", detail=(profile or "no profile")[:300])
            return 0
        ooo = is_out_of_office(message.text)
        outcome = "out_of_office" if ooo else "replied"
        if not await self._first(conn, inbox, key, now, outcome, workspace_id=account.workspace_id, lead_id=lead_id):
            return 0
        await self._apply(conn, account.workspace_id, lead_id, "message", key, message.sent_at, now, message.text, ooo)
        return 1

    async def _apply(
        self,
        conn: AsyncConnection,
        workspace: str,
        lead_id: UUID,
        channel: str,
        key: str,
        received: datetime,
        now: datetime,
        text: str,
        ooo: bool,
    ) -> None:
        await record_reply(
            conn,
            self.service,
            workspace,
            lead_id,
            channel=channel,
            key=f"inbox:{key}",
            received_at=received,
            now=now,
            text=text,
            out_of_office=ooo,
        )

    # -- IMAP IDLE --------------------------------------------------------------------------------------------

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait in IMAP IDLE; when mail arrives, the mailbox's poll is due now. Errors back off, quietly retried."""
        assert self.mailbox is not None
        backoff = Backoff(1.0, 300.0)
        while not stop.is_set():
            waiting = asyncio.create_task(self.mailbox.wait_for_mail(IDLE_S))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not waiting.done():
                waiting.cancel()
                return
            try:
                arrived = waiting.result()
            except Exception as exc:
                log.info("IMAP IDLE session ended; trying again", extra={"error": repr(exc)})
                await backoff.wait(stop)
                continue
            backoff.reset()
            if arrived:
                await self.poll_now()

    async def poll_now(self) -> None:
        """Make the mailbox's poll due now (new mail arrived)."""
        if self.mailbox is None:
            return
        now = self.service.clock.now()
        async with self.service.engine.begin() as conn:
            await conn.execute(
                update(inbox_cursors)
                .where(inbox_cursors.c.key == self.mailbox.key, inbox_cursors.c.due_at > now)
                .values(due_at=now, updated_at=now)
            )
        self.timers.wake()


async def match_email(conn: AsyncConnection, mail: InboundEmail) -> tuple[str, UUID] | str:
    """(workspace, lead) an email answers, or why not: ``unmatched`` or ``ambiguous``.

    By thread first: the Message-ID of one of our emails in its references. Then by the sender's address: the
    leads with that address, those we emailed before the others; in one workspace only (two workspaces that
    wrote to the same person are told apart by the mailbox the reply went to, else it is ambiguous: one
    workspace's reply never stops another's lead).
    """
    if mail.references:
        row = (
            await conn.execute(
                select(sends.c.workspace_id, sends.c.lead_id)
                .where(sends.c.action == "email", sends.c.provider_ref.in_(list(mail.references)))
                .order_by(sends.c.sent_at.desc())
                .limit(1)
            )
        ).first()
        if row is not None:
            return row.workspace_id, row.lead_id
    sender = normalise_email(mail.sender)
    if not sender:
        return "unmatched"
    emailed = (
        select(func.max(sends.c.sent_at))
        .where(
            sends.c.workspace_id == leads.c.workspace_id,
            sends.c.lead_id == leads.c.lead_id,
            sends.c.action == "email",
            sends.c.state.in_(COUNTED_STATES),
        )
        .scalar_subquery()
    )
    to_us = (
        select(func.count())
        .where(
            sends.c.workspace_id == leads.c.workspace_id,
            sends.c.lead_id == leads.c.lead_id,
            sends.c.action == "email",
            or_(*[sends.c.sender == r for r in mail.recipients]) if mail.recipients else literal(False),
        )
        .scalar_subquery()
    )
    rows = (
        await conn.execute(
            select(leads.c.workspace_id, leads.c.lead_id, emailed.label("emailed"), to_us.label("to_us")).where(
                leads.c.email == sender
            )
        )
    ).all()
    if not rows:
        return "unmatched"
    for pool in ([r for r in rows if r.to_us], [r for r in rows if r.emailed is not None], rows):
        if not pool:
            continue
        if len({r.workspace_id for r in pool}) > 1:
            return "ambiguous"
        best = max(pool, key=lambda r: r.emailed or NEVER)
        return best.workspace_id, best.lead_id
    return "unmatched"


async def record_reply(
    conn: AsyncConnection,
    service: Service,
    workspace_id: str,
    lead_id: UUID,
    *,
    channel: str,
    key: str,
    received_at: datetime,
    now: datetime,
    text: str | None,
    out_of_office: bool,
) -> list[UUID]:
    """Apply a reply (or an out-of-office answer) to the lead in the caller's transaction, its events in the
    outbox (:func:`.lifecycle.apply_reply`); the campaigns the lead was active in. ``key`` names the message, so
    that the same one applied again emits the same events."""
    em = RootEmitter(service, workspace_id)
    done = await lc.apply_reply(
        conn,
        em,
        workspace_id,
        lead_id,
        channel=channel,
        received_at=received_at,
        now=now,
        key=key,
        excerpt=(text or "")[:280] or None,
        out_of_office=out_of_office,
        text=text,
    )
    await em.flush(conn)
    return done


async def lead_of(
    conn: AsyncConnection, workspace: str, *, lead: str | None = None, url: str | None = None, email: str | None = None
) -> UUID | None:
    """The lead a webhook is about, in ``workspace`` only: by ``lead`` (its id), LinkedIn profile URL or email.

    A ``lead_id`` of another workspace is not found: a provider account of workspace A cannot stop, or mark
    as accepted, a lead of workspace B.
    """
    if lead:
        try:
            lead_id = UUID(lead)
        except ValueError:
            return None
        found = await conn.scalar(
            select(leads.c.lead_id).where(leads.c.workspace_id == workspace, leads.c.lead_id == lead_id)
        )
        return UUID(str(found)) if found is not None else None
    url = normalise_profile_url(url)
    email = normalise_email(email)
    if url:
        by_url = await conn.scalar(
            select(leads.c.lead_id).where(leads.c.workspace_id == workspace, leads.c.profile_key == url).limit(1)
        )
        if by_url is not None:
            return UUID(str(by_url))
    if email:
        by_email = await conn.scalar(
            select(leads.c.lead_id).where(leads.c.workspace_id == workspace, leads.c.email == email).limit(1)
        )
        if by_email is not None:
            return UUID(str(by_email))
    return None


class ProviderEvents:
    """The providers' signed webhooks (read and verified by ``api_webhooks.py``) and replies recorded by hand: each
    in one transaction with the webhook's id, so that a replayed delivery changes nothing."""

    def __init__(self, ctx: OutreachContext) -> None:
        self.ctx = ctx
        self.service = ctx.service

    async def linkedin(self, hook: VerifiedWebhook, data: LinkedInHookIn) -> WebhookAck:
        """A LinkedIn provider event: a reply stops the lead (or pauses it, out of office), an acceptance starts
        the steps that waited for it in every campaign the account works the lead in. A 422 for an event we do not
        know, a 404 for an account or lead we do not (in the account's workspace)."""
        ctx, service = self.ctx, self.service
        event = data.event.lower()
        if event not in ACCEPT_EVENTS | REPLY_EVENTS:
            raise invalid("event", f"unknown event {data.event!r}; new_relation or message_received")
        profile = data.user_profile_url or data.profile_url or data.linkedin_url
        now = service.clock.now()
        async with service.engine.begin() as conn:
            if not await ctx.first_delivery(conn, hook):
                return WebhookAck(status="duplicate")
            account = await find_account(conn, data.account_id)
            if account is None or account.provider != "linkedin":
                raise not_found("LinkedIn account", data.account_id)
            lead_id = await lead_of(
                conn, account.workspace_id, lead=data.lead_id, url=profile, email=data.email or data.sender
            )
            if lead_id is None:
                raise not_found("lead", data.lead_id or profile)
            if event in REPLY_EVENTS:
                key = f"webhook:{hook.msg_id}"
                done = await self._reply(
                    conn, account.workspace_id, lead_id, "message", data.text, key, now, data.out_of_office
                )
                result = WebhookAck(status="replied", campaigns=done)
            else:
                result = await self._accepted(conn, account, lead_id, hook.msg_id, now)
        service.wake_relay()
        ctx.runner.wake()
        return result

    async def _reply(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        lead_id: UUID,
        channel: str,
        text: str | None,
        key: str,
        received_at: datetime,
        out_of_office: bool = False,
    ) -> list[UUID]:
        """A reply told by a provider or a person, out of office when they flag it or its words say so."""
        return await record_reply(
            conn,
            self.service,
            workspace_id,
            lead_id,
            channel=channel,
            key=key,
            received_at=received_at,
            now=self.service.clock.now(),
            text=text,
            out_of_office=out_of_office or is_out_of_office(text),
        )

    async def _accepted(
        self, conn: AsyncConnection, account: Row[Any], lead_id: UUID, msg_id: str, now: datetime
    ) -> WebhookAck:
        """The lead accepted the account's invite: in each campaign that account works the lead in."""
        rows = (
            await conn.execute(
                select(enrollments.c.campaign_id)
                .where(
                    enrollments.c.workspace_id == account.workspace_id,
                    enrollments.c.lead_id == lead_id,
                    enrollments.c.account_id == account.account_id,
                )
                .order_by(enrollments.c.campaign_id)
            )
        ).all()
        em = RootEmitter(self.service, account.workspace_id)
        for row in rows:
            await lc.apply_acceptance(
                conn,
                em,
                campaign_id=row.campaign_id,
                lead_id=lead_id,
                workspace_id=account.workspace_id,
                step_id=None,
                account_id=account.account_id,
                now=now,
                key=f"webhook:{msg_id}:{row.campaign_id}",
            )
        await em.flush(conn)
        return WebhookAck(status="accepted", campaigns=[x.campaign_id for x in rows])

    async def email(self, hook: VerifiedWebhook, data: EmailHookIn) -> WebhookAck:
        """An email provider event: a bounce suppresses the address for emails, a complaint unsubscribes it, a reply
        stops the lead with that address in the workspace. A 422 for an unknown type or a missing workspace or
        address, a 404 for a reply from an address no lead has."""
        service = self.service
        kind, ws = data.type.lower(), data.workspace_id
        email = normalise_email(data.email)
        if kind not in ("reply", "bounce", "complaint"):
            raise invalid("type", f"unknown type {data.type!r}; reply, bounce or complaint")
        if not ws:
            raise invalid("workspace_id", "the workspace the address belongs to is required")
        if not email:
            raise invalid("email", "an email address is required")
        now = service.clock.now()
        async with service.engine.begin() as conn:
            if not await self.ctx.first_delivery(conn, hook):
                return WebhookAck(status="duplicate")
            if kind == "bounce":
                await lc.suppress(conn, ws, "email", email, "bounced", now)
                return WebhookAck(status="suppressed", reason="bounced")
            if kind == "complaint":
                await lc.suppress(conn, ws, "email", email, "unsubscribed", now)
                return WebhookAck(status="suppressed", reason="unsubscribed")
            lead_id = await lead_of(conn, ws, email=email)
            if lead_id is None:
                raise not_found("lead with email", email)
            done = await self._reply(conn, ws, lead_id, "email", data.text, f"webhook:{hook.msg_id}", now)
        service.wake_relay()
        return WebhookAck(status="replied", campaigns=done)

    async def manual_reply(
        self, workspace_id: str, campaign_id: UUID, lead_id: UUID, body: SimulatedReplyIn
    ) -> list[UUID]:
        """A reply recorded by hand for a lead of a campaign of the workspace (404 when the campaign does not have
        it): the campaigns the lead was active in."""
        service = self.service
        now = service.clock.now()
        async with service.engine.begin() as conn:
            found = await conn.scalar(
                select(enrollments.c.lead_id)
                .select_from(enrollments.join(campaigns, campaigns.c.campaign_id == enrollments.c.campaign_id))
                .where(
                    enrollments.c.campaign_id == campaign_id,
                    enrollments.c.lead_id == lead_id,
                    campaigns.c.workspace_id == workspace_id,
                    campaigns.c.state != "deleted",
                )
            )
            if found is None:
                raise not_found("lead in campaign", lead_id)
            key = f"manual:{campaign_id}:{lead_id}:{now}"
            done = await self._reply(conn, workspace_id, lead_id, body.channel, body.text, key, now)
        service.wake_relay()
        return done
