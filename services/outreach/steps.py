"""Executing one due workflow step for one lead, inside the transaction that claimed its timer.

The order of checks is the order of the product's promises: the lead is still active (a reply
cancels everything, even a step already due), the campaign runs, the account can send and is not
limit-paused, the window is open, the lead is not blocklisted or suppressed, the channel can reach
the lead (verified email, a post), the video is there or its wait is over, an approved text exists,
the day's quota allows it (invites and messages per account, emails per mailbox; invites also keep
their rhythm), and the connection state fits the action. Only then does the step commit its send
intent (``sends.py``; it counts against the quota at once) with its timer waiting for the answer; the
provider is called after that commit with the intent's id as idempotency key, and :meth:`settle`
records the answer: the send's state, the timer's completion, the emitted events and the children's
timers commit together. A lost answer is settled by asking the provider (:meth:`lookup`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from leadstream_schemas import (
    LIMIT_STATUSES,
    AccountStatusChanged,
    Action,
    ActionFailed,
    ActionSkipped,
    CommentDrafted,
    CommentPosted,
    EmailSent,
    Event,
    InviteSent,
    MessageSent,
    PostLiked,
    SkipReason,
)
from sqlalchemy import select, tuple_, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.clock import Clock, SystemClock
from services.runtime.crash import CrashPoints
from services.runtime.metrics import SENDS
from services.runtime.providers import ProviderError, RateLimited
from services.runtime.webhooks import link_token

from . import lifecycle as lc
from . import sends as intents
from . import timers as tm
from .adapters import (
    EmailMessage,
    EmailSender,
    LeadTarget,
    LimitReached,
    LinkedInProvider,
    LookupUnsupported,
    SendRequest,
    SendResult,
)
from .domain.compliance import (
    Contact,
    blocked_by,
    normalise_email,
    render_email,
    render_template,
    suppression,
    unsubscribe_url,
)
from .domain.pacing import channel_cap, send_decision, slot_jitter
from .domain.schedule import Schedule
from .domain.timezones import timezone_of
from .domain.workflow import Graph, Step, carries_video
from .emit import Emitter
from .sends import IntentKey, NeverArrived, Performed, Refused, Unanswered, Unknowable
from .settings import OutreachSettings
from .store import (
    accounts,
    blocklist,
    campaigns,
    count_sends,
    enrollments,
    leads,
    lock_mailbox,
    sent_by_account,
    sent_by_mailbox,
    suppressions,
    texts,
    timers,
    videos,
)
from .versions import graph_of

log = logging.getLogger(__name__)
REQUEST_NAMESPACE = uuid.UUID("5d2b7e1c-3f4a-5b6c-8d9e-0a1b2c3d4e5f")
RECHECK = timedelta(minutes=5)


def _midnight(sched: Schedule, day: date, days_later: int = 0) -> datetime:
    """UTC time of the campaign-local midnight starting ``day`` (plus ``days_later``; a local day is 23 or
    25 hours long across a daylight-saving change)."""
    return datetime.combine(day + timedelta(days=days_later), time(0), tzinfo=sched.day_tz).astimezone(UTC)


async def lead_schedule(campaign: Row[Any], lead: Row[Any]) -> Schedule:
    """The campaign's active days and hours, in the lead's own time zone when the campaign asks for it
    (``delivery.lead_timezones``) and the lead's location tells it (quota days stay the campaign's)."""
    schedule = Schedule.from_delivery(campaign.delivery)
    where = lead.location or lead.city
    if not campaign.delivery.get("lead_timezones") or not where:
        return schedule
    # The first lookup loads the place names (seconds): off the event loop; later ones are cached.
    return schedule.for_lead(await asyncio.to_thread(timezone_of, where))


def request_id(campaign_id: UUID, lead_id: UUID, step_id: str) -> str:
    """The provider request id of a step for a lead: the same on every retry, so the provider dedupes it."""
    return str(uuid.uuid5(REQUEST_NAMESPACE, f"{campaign_id}|{lead_id}|{step_id}"))


RATE_LIMITED_SINCE = "rate_limited_since"
"""Timer payload key: when the provider started refusing this step with rate limits, in a row."""


def _rate_limit_forgotten(run: StepRun) -> dict[str, Any] | None:
    """The timer's payload without :data:`RATE_LIMITED_SINCE` (None, to leave it as is, when it has none):
    any other answer ends a spell of rate limits, so a later one (after an account pause, say) starts anew."""
    payload = run.timer.payload or {}
    if RATE_LIMITED_SINCE not in payload:
        return None
    return {k: v for k, v in payload.items() if k != RATE_LIMITED_SINCE}


@dataclass
class StepRun:
    """Everything known about the step being executed."""

    conn: AsyncConnection
    em: Emitter
    timer: Row[Any]
    enrollment: Row[Any]
    campaign: Row[Any]
    account: Row[Any]
    lead: Row[Any]
    graph: Graph
    step: Step
    schedule: Schedule
    now: datetime

    @property
    def ids(self) -> dict[str, Any]:
        """The lead, campaign, account and step ids every action event of this step carries."""
        return {
            "lead_id": self.lead.lead_id,
            "campaign_id": self.enrollment.campaign_id,
            "account_id": self.account.account_id,
            "step_id": self.step.id,
            "workflow_version": self.enrollment.workflow_version,
            "variant": variant.id if (variant := self.step.variant_for(str(self.lead.lead_id))) else None,
        }

    @property
    def key(self) -> str:
        """Deterministic event key of this step for this lead."""
        return f"{self.enrollment.campaign_id}:{self.enrollment.lead_id}:{self.step.id}"

    @property
    def intent(self) -> IntentKey:
        """The key of this step's send intent."""
        e = self.enrollment
        return IntentKey(e.campaign_id, e.lead_id, self.step.id, e.workspace_id)


@dataclass(frozen=True)
class PendingSend:
    """A send whose intent is committed: ``call`` the provider, then :meth:`StepExecutor.settle` its answer."""

    key: IntentKey
    call: Callable[[], Awaitable[SendResult]]


async def _enrollment(conn: AsyncConnection, campaign_id: UUID, lead_id: UUID) -> Row[Any] | None:
    """The enrollment, locked (after its timer, before its account: the lock order of store.py)."""
    e = enrollments.c
    stmt = select(enrollments).where(e.campaign_id == campaign_id, e.lead_id == lead_id).with_for_update()
    return (await conn.execute(stmt)).first()


async def _rows(conn: AsyncConnection, enrollment: Row[Any]) -> tuple[Row[Any], Row[Any] | None, Row[Any]]:
    """The campaign, the account (locked) and the lead of an enrollment."""
    campaign = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == enrollment.campaign_id))).one()
    account = (
        await conn.execute(select(accounts).where(accounts.c.account_id == enrollment.account_id).with_for_update())
    ).first()
    lead = (
        await conn.execute(
            select(leads).where(leads.c.workspace_id == enrollment.workspace_id, leads.c.lead_id == enrollment.lead_id)
        )
    ).one()
    return campaign, account, lead


def count_send(account_id: object, action: str, outcome: str) -> None:
    """``leadstream_sends_total``: a step's send ended ``sent`` (the provider performed it) or ``failed`` (the
    step gave up: refused, rate-limited for too long, retries used up, or an outcome that cannot be known).
    Counted in the transaction that records it: a commit that fails after it (rare) counts it again on retry."""
    SENDS.labels(account=str(account_id), action=action, outcome=outcome).inc()


class StepExecutor:
    """Runs step timers with the configured providers."""

    def __init__(
        self,
        settings: OutreachSettings,
        linkedin: LinkedInProvider,
        email: EmailSender,
        crash: CrashPoints | None = None,
        wall: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.linkedin = linkedin
        self.email = email
        self.crash = crash or CrashPoints()
        self.wall = wall or SystemClock()  # send intents are reconciled by real time: calls take real time

    # -- entry -----------------------------------------------------------------------------------

    async def run(self, conn: AsyncConnection, em: Emitter, timer: Row[Any], now: datetime) -> PendingSend | None:
        """Execute (or postpone, or cancel) one claimed step timer; a send to make after the commit, if any."""
        enrollment = await _enrollment(conn, timer.campaign_id, timer.lead_id)
        if enrollment is None or enrollment.state != "active":
            await tm.finish(
                conn, timer.id, now, f"lead {enrollment.state if enrollment else 'not enrolled'}", state="cancelled"
            )
            return None
        if enrollment.paused_until is not None:  # out of office (lifecycle.py): wait, or the pause is over now
            if enrollment.paused_until > now:
                await tm.postpone(conn, timer.id, enrollment.paused_until, now)
                return None
            await lc.resume_paused(conn, em, enrollment)
        campaign, account, lead = await _rows(conn, enrollment)
        if campaign.state != "running" or account is None or account.deleted_at is not None or not account.healthy:
            # A pause or an account incident committed after the claim; the timer stays and is not claimable.
            await tm.postpone(conn, timer.id, now + RECHECK, now)
            return None
        if account.limit_paused_until is not None and account.limit_paused_until > now:
            await tm.postpone(conn, timer.id, account.limit_paused_until, now)
            return None
        schedule = await lead_schedule(campaign, lead)
        if not schedule.is_open(now):
            await tm.postpone(conn, timer.id, schedule.next_open(now), now)
            return None
        graph = await graph_of(conn, campaign, enrollment.workflow_version)
        run = StepRun(
            conn, em, timer, enrollment, campaign, account, lead, graph, graph.step(timer.step_id), schedule, now
        )
        if await self._compliance_stops(run) or await self._channel_impossible(run):
            return None
        video_ready, video_url = await self._video(run)
        if not video_ready:
            return None
        # A message to a stranger is skipped before it waits for a text; an invite asks only once its
        # quota allows it, so a postponed invite does not ask the provider again and again. Invites,
        # messages and emails wait for their daily quota (the next day's window once it is spent).
        if run.step.action == "message" and await self._connection_decides(run):
            return None
        approved = await self._approved_text(run)
        if approved is None:
            return None
        if not await self._pace_allows(run):
            return None
        if run.step.action == "invite" and await self._connection_decides(run):
            return None
        return await self._perform(run, approved, video_url)

    # -- checks ----------------------------------------------------------------------------------

    async def _compliance_stops(self, run: StepRun) -> bool:
        """Blocklist and suppression, checked right before the send. True when the step stops here."""
        lead, ws = run.lead, run.enrollment.workspace_id
        contact = Contact(str(lead.lead_id), lead.email, lead.linkedin_url)
        keys = contact.block_keys()
        hit = None
        if keys:
            rows = await run.conn.execute(
                select(blocklist.c.kind, blocklist.c.value).where(
                    blocklist.c.workspace_id == ws, tuple_(blocklist.c.kind, blocklist.c.value).in_(keys)
                )
            )
            hit = blocked_by(contact, [(r.kind, r.value) for r in rows])
        if hit:
            await self._skip(run, SkipReason.blocked, f"workspace blocklist: {hit}")
            await self._end(run, "blocked")
            return True
        sup = suppressions.c
        lead_reason = await run.conn.scalar(
            select(sup.reason).where(sup.workspace_id == ws, sup.kind == "lead", sup.value == str(lead.lead_id))
        )
        email = normalise_email(lead.email)
        email_reason = None
        if email:
            email_reason = await run.conn.scalar(
                select(suppressions.c.reason).where(
                    suppressions.c.workspace_id == ws, suppressions.c.kind == "email", suppressions.c.value == email
                )
            )
        found = suppression(run.step.action, lead_reason, email, email_reason)
        if found is None:
            return False
        why, whole_lead = found
        await self._skip(run, SkipReason.suppressed, f"suppression list: {why}")
        if whole_lead:
            await self._end(run, "suppressed")
        else:
            await self._complete(run, performed=False)
        return True

    async def _channel_impossible(self, run: StepRun) -> bool:
        """Skips for actions that cannot reach this lead (no verified email, no post); the workflow continues
        with the step's children."""
        action, lead = run.step.action, run.lead
        if action == "email" and not (lead.email_verified and lead.email):
            await self._skip(run, SkipReason.no_contact, "no verified email address for this lead")
        elif action in ("like", "comment") and not lead.post_url:
            await self._skip(run, SkipReason.no_post, "the lead has no recent post")
        else:
            return False
        await self._complete(run, performed=False)
        return True

    async def _connection_decides(self, run: StepRun) -> bool:
        """Asks the provider whether the lead is a connection where that decides the step: an invite to a
        connection is skipped as already accepted; a message to a lead who is not one (and never accepted an
        invite here) is skipped. True when the step stops here."""
        action = run.step.action
        needs_connection = (
            action == "message" and run.enrollment.accepted_at is None and not run.graph.invite_ancestor(run.step.id)
        )
        if action != "invite" and not needs_connection:
            return False
        connected = await self._provider(
            run,
            self.linkedin.is_connected(str(run.account.account_id), run.account.provider_account_id, self._target(run)),
        )
        if connected is None:  # the provider failed; _provider decided what happens to the timer
            return True
        if action == "message":
            if connected:
                return False
            await self._skip(run, SkipReason.not_accepted, "the lead is not a connection of this account")
            await self._complete(run, performed=False)
            return True
        if not connected:
            return False
        await self._skip(run, SkipReason.already_connected, "already a connection: treated as accepted")
        await run.conn.execute(
            update(enrollments)
            .where(
                enrollments.c.campaign_id == run.enrollment.campaign_id,
                enrollments.c.lead_id == run.enrollment.lead_id,
            )
            .values(accepted_at=run.now)
        )
        await lc.schedule_children(
            run.conn, run.enrollment, run.graph.children(run.step.id, ("always", "accepted")), run.now, run.now
        )
        await tm.finish(run.conn, run.timer.id, run.now, "skipped: already_connected")
        await lc.complete_if_done(run.conn, run.em, run.enrollment, run.now)
        return True

    async def _video(self, run: StepRun) -> tuple[bool, str | None]:
        """(may proceed, video URL) for an invite or a message of a video campaign, whichever step of the graph
        it is (Warm intro's like and comment come first and need no video): it waits for VideoGenerated /
        VideoFailed until the failsafe deadline, then goes without a video; every invite and message after it
        carries the video."""
        if not run.campaign.video_template or not carries_video(run.step.action):
            return True, None
        video = (
            await run.conn.execute(
                select(videos).where(
                    videos.c.campaign_id == run.enrollment.campaign_id, videos.c.lead_id == run.enrollment.lead_id
                )
            )
        ).first()
        if video is not None:
            return True, video.video_url if video.status == "ready" else None
        deadline = run.enrollment.enrolled_at + timedelta(minutes=self.settings.video_wait_minutes)
        if run.now < deadline:
            await tm.postpone(run.conn, run.timer.id, deadline, run.now, waiting_for="video")
            return False, None
        log.info(
            "video wait over; first action proceeds without video",
            extra={"campaign_id": str(run.enrollment.campaign_id), "lead_id": str(run.enrollment.lead_id)},
        )
        return True, None

    async def _approved_text(self, run: StepRun) -> tuple[str | None, str | None] | None:
        """(text, subject) to send; None when the step waits for an approved text (Messaging Lab)."""
        if not run.step.needs_text:
            return (None, None)
        row = (
            await run.conn.execute(
                select(texts).where(
                    texts.c.campaign_id == run.enrollment.campaign_id,
                    texts.c.lead_id == run.enrollment.lead_id,
                    texts.c.step_id == run.step.id,
                )
            )
        ).first()
        auto_comment = run.step.action == "comment" and run.step.mode == "auto"
        if row is not None and (row.status == "approved" or auto_comment):
            return (row.text, row.subject)
        payload = dict(run.timer.payload or {})
        if run.step.action == "comment" and row is not None and not payload.get("drafted"):
            run.em.emit(
                CommentDrafted(
                    lead_id=run.lead.lead_id,
                    campaign_id=run.enrollment.campaign_id,
                    account_id=run.enrollment.account_id,
                    step_id=run.step.id,
                    post_url=run.lead.post_url,
                    text=row.text,
                ),
                f"drafted:{run.key}",
            )
            payload["drafted"] = True
        await tm.postpone(run.conn, run.timer.id, run.now + tm.FAR_FUTURE, run.now, waiting_for="text", payload=payload)
        return None

    async def _pace_allows(self, run: StepRun) -> bool:
        """The daily quota of the step's action across all campaigns: invites and messages per LinkedIn
        account, emails per sending mailbox, each spread across the window with jitter (pacing.py); invites
        also keep their weekly limit. Postpones the step (to its slot, or to the next day's window once the
        quota is spent) when it may not go now."""
        sched, now, delivery, action = run.schedule, run.now, run.campaign.delivery, run.step.action
        weekly: int | None = None
        sender = f"{run.account.account_id}:{action}"
        if action == "invite":
            cap, weekly = int(delivery["daily_cap"]), delivery.get("weekly_limit")
            which = sent_by_account(run.account.account_id, action)
        else:
            channel = channel_cap(action, delivery)
            if channel is None:
                return True
            cap = channel
            if action == "email":
                ws, mailbox = run.enrollment.workspace_id, self._sender(run)
                await lock_mailbox(run.conn, ws, mailbox)
                which = sent_by_mailbox(ws, mailbox, dry_run=not self.settings.email_real_sends)
                sender = f"{ws}:{mailbox}:email"
            else:
                which = sent_by_account(run.account.account_id, action)
        today = sched.local_day(now)
        sent_today, last_sent = await count_sends(run.conn, which, _midnight(sched, today), _midnight(sched, today, 1))
        sent_week = 0
        if weekly is not None:
            monday = sched.week_start(now)
            sent_week, _ = await count_sends(run.conn, which, _midnight(sched, monday), _midnight(sched, monday, 7))
        until = send_decision(
            now,
            sched.next_window(now),
            sched.next_day_window(now)[0],
            daily_cap=cap,
            sent_today=sent_today,
            weekly_limit=weekly,
            sent_this_week=sent_week,
            last_sent_at=last_sent,
            spread=True,
            jitter=slot_jitter(sender, today, sent_today),
        )
        if until is None:
            return True
        await tm.postpone(run.conn, run.timer.id, until, now)
        return False

    def _sender(self, run: StepRun) -> str:
        """The campaign's sending mailbox (normalised); creating a campaign with email steps required one."""
        fallback = run.campaign.delivery.get("email_fallback") or {}
        return normalise_email(fallback.get("sender_email")) or ""

    # -- the send --------------------------------------------------------------------------------

    def _target(self, run: StepRun) -> LeadTarget:
        lead = run.lead
        return LeadTarget(str(lead.lead_id), lead.linkedin_url, lead.full_name, lead.email)

    async def _perform(
        self, run: StepRun, approved: tuple[str | None, str | None], video_url: str | None
    ) -> PendingSend | None:
        text, subject = approved
        action = run.step.action
        rid = request_id(run.enrollment.campaign_id, run.enrollment.lead_id, run.step.id)
        if action == "email":
            return await self._email(run, rid, text or "", subject)
        req = SendRequest(
            request_id=rid,
            workspace_id=run.enrollment.workspace_id,
            campaign_id=str(run.enrollment.campaign_id),
            step_id=run.step.id,
            account_id=str(run.account.account_id),
            provider_account_id=run.account.provider_account_id,
            lead=self._target(run),
            text=text,
            post_url=run.lead.post_url,
            video_url=video_url,
        )
        base = run.ids
        event: Event
        if action == "invite":
            call, event = self.linkedin.send_invite, InviteSent(**base, note=text, video_url=video_url)
        elif action == "message":
            call, event = self.linkedin.send_message, MessageSent(**base, text=text or "", video_url=video_url)
        elif action == "like":
            call, event = self.linkedin.like_post, PostLiked(**base, post_url=run.lead.post_url)
        else:
            call, event = self.linkedin.comment_post, CommentPosted(**base, post_url=run.lead.post_url, text=text or "")
        return await self._intend(run, rid, event, lambda: call(req, run.now))

    async def _email(self, run: StepRun, rid: str, body: str, subject: str | None) -> PendingSend | None:
        lead, ws = run.lead, run.enrollment.workspace_id
        fallback = run.campaign.delivery.get("email_fallback") or {}
        fields = {
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "full_name": lead.full_name,
            "company": lead.company,
            "city": lead.city,
        }
        subject = subject or render_template(run.step.subject or fallback.get("subject") or "", fields)
        token = link_token(self.settings.keys("unsubscribe_secret"), ws, str(lead.lead_id))
        unsub = unsubscribe_url(self.settings.base_url(), ws, str(lead.lead_id), token)
        email = render_email(
            sender=str(fallback.get("sender_email", "")), to=lead.email, subject=subject, body=body, unsubscribe=unsub
        )
        base = run.ids
        if not self.settings.email_real_sends:
            run.em.emit(
                ActionSkipped(
                    **base,
                    action=Action.email,
                    reason=SkipReason.dry_run,
                    rendered=email,
                    detail="dry run: real email sends are disabled",
                ),
                run.key,
            )
            await intents.record_dry_run(
                run.conn,
                run.intent,
                request_id=rid,
                account_id=run.account.account_id,
                sender=self._sender(run),
                now=run.now,
            )
            await self._complete(run, performed=False)
            return None
        message = EmailMessage(
            request_id=rid,
            sender=email["from"],
            to=email["to"],
            subject=subject,
            body=email["body"],
            headers={
                "List-Unsubscribe": email["list_unsubscribe"],
                "List-Unsubscribe-Post": email["list_unsubscribe_post"],
            },
        )
        event = EmailSent(**base, to=email["to"], subject=subject, body=email["body"], unsubscribe_url=unsub)

        async def send() -> SendResult:
            return SendResult(provider_ref=await self.email.send(message))

        return await self._intend(run, rid, event, send, sender=self._sender(run))

    async def _intend(
        self,
        run: StepRun,
        rid: str,
        event: Event,
        call: Callable[[], Awaitable[SendResult]],
        sender: str | None = None,
    ) -> PendingSend | None:
        """Commit-to-be the send intent, the timer waiting for its answer; the send to make after the commit."""
        earlier = await intents.lock(run.conn, run.intent)
        if earlier is not None and earlier.state == intents.PENDING:
            # An answer still to come (or to be asked for): the reconciler settles it and ends this wait.
            await tm.postpone(run.conn, run.timer.id, run.now + tm.FAR_FUTURE, run.now, waiting_for="send")
            return None
        if earlier is not None and earlier.state in (intents.SENT, intents.UNKNOWN):
            await tm.finish(run.conn, run.timer.id, run.now, f"already {earlier.state}")
            return None
        await intents.open_intent(
            run.conn,
            run.intent,
            request_id=rid,
            account_id=run.account.account_id,
            action=run.step.action,
            event=event,
            sender=sender,
            now=run.now,
            reconcile_at=intents.reconcile_at(self.wall.now(), self.settings.send_reconcile_after_s),
        )
        await tm.postpone(run.conn, run.timer.id, run.now + tm.FAR_FUTURE, run.now, waiting_for="send")
        return PendingSend(run.intent, call)

    async def send(self, pending: PendingSend) -> intents.Answer:
        """Call the provider (its intent is committed); what it answered, never an exception."""
        self.crash.reached("outreach.send.before_call")
        try:
            answer: intents.Answer = Performed(await pending.call())
        except Exception as exc:
            answer = intents.answer_of(exc)
        self.crash.reached("outreach.send.after_call")
        return answer

    async def lookup(self, intent: Row[Any]) -> intents.Answer:
        """Ask the provider whether the intent's request was performed (reconciling a lost answer)."""
        rid = str(intent.request_id)
        lost = intent.detail or "the process stopped before or during the call"
        try:
            if intent.action == "email":
                ref = await self.email.lookup(rid)
                found = None if ref is None else SendResult(provider_ref=ref)
            else:
                found = await self.linkedin.lookup(rid)
        except LookupUnsupported as exc:
            return Unknowable(f"{exc}; the answer was lost ({lost})")
        if found is None:
            return NeverArrived(f"the provider never received it ({lost})", intent.reason or "internal_error")
        return Performed(found)

    async def _provider(self, run: StepRun, call: Any) -> Any:
        """Await a provider call that sends nothing; on failure decide retry, account pause or ActionFailed."""
        try:
            return await call
        except ProviderError as exc:
            await self._refused(run, exc)
        return None

    async def _refused(self, run: StepRun, exc: ProviderError, told_at: datetime | None = None) -> None:
        """The provider said no: wait for a limit or a rate limit, retry a transient error, else ActionFailed.

        ``told_at``: when the call that was refused was made (its intent's ``sent_at``), when its answer is settled
        later than that: a rate limit counts from when the provider said it, not from when the answer was read."""
        if isinstance(exc, LimitReached):
            # LinkedIn's invitation or message limit: the account waits for its next window (every step of
            # it: an account that keeps asking past a limit gets restricted), its leads wait, nothing fails.
            until = run.schedule.next_day_window(run.now)[0]
            await run.conn.execute(
                update(accounts)
                .where(accounts.c.account_id == run.account.account_id)
                .values(limit_paused_until=until, status=exc.status_word, updated_at=run.now)
            )
            run.em.emit(
                AccountStatusChanged(
                    account_id=run.account.account_id,
                    status=exc.status_word,
                    previous=run.account.status,
                    healthy=False,
                    until=until,
                ),
                f"limit:{run.account.account_id}:{until.isoformat()}",
            )
            log.warning(
                f"{exc.what} reached; account paused until its next window",
                extra={"account_id": str(run.account.account_id), "until": until.isoformat(), "error": str(exc)},
            )
            await tm.postpone(run.conn, run.timer.id, until, run.now, payload=_rate_limit_forgotten(run))
        elif isinstance(exc, RateLimited):
            # A rate limit is no failure: wait as told, without counting attempts. But a provider that
            # refuses for a whole day (a quota used up elsewhere, a broken integration) must not hold
            # the lead for ever: past ``rate_limited_give_up_h`` of refusals in a row the step fails.
            told = told_at or run.now
            payload = dict(run.timer.payload or {})
            since = datetime.fromisoformat(payload.setdefault(RATE_LIMITED_SINCE, told.isoformat()))
            if told - since < timedelta(hours=self.settings.rate_limited_give_up_h):
                retry_at = told + timedelta(seconds=max(exc.retry_after_s, 1.0))
                await tm.postpone(run.conn, run.timer.id, retry_at, run.now, payload=payload)
                return
            await self.fail(run, "rate_limited", f"rate-limited since {since.isoformat()}: {exc}")
        elif exc.transient:
            await self._retry_or_fail(run, "provider_error", str(exc))
        else:
            await self.fail(run, "provider_error", str(exc))

    async def _retry_or_fail(self, run: StepRun, reason: str, detail: str) -> None:
        """Try the step again after a backoff (2, 4, 8... minutes), or fail it once its attempts are used up."""
        attempts = run.timer.attempts + 1
        if attempts < self.settings.timer_max_attempts:
            retry_at = run.now + timedelta(minutes=2**attempts)
            forgotten = _rate_limit_forgotten(run)
            await tm.postpone(run.conn, run.timer.id, retry_at, run.now, attempts=attempts, payload=forgotten)
            return
        await self.fail(run, reason, detail)

    async def fail(self, run: StepRun, reason: str, detail: str) -> None:
        """The provider will not do this step: ActionFailed, and the lead's sequence ends as failed."""
        run.em.emit(
            ActionFailed(**run.ids, action=Action(run.step.action), reason=reason, detail=detail, retryable=False),
            run.key,
        )
        count_send(run.account.account_id, run.step.action, "failed")
        await self._end(run, "failed")

    # -- settling a send -------------------------------------------------------------------------

    async def settle(
        self, conn: AsyncConnection, em: Emitter, key: IntentKey, answer: intents.Answer, now: datetime
    ) -> None:
        """Record a send's answer (its call's, or the provider's word when reconciled) with its events. The
        intent is locked first: its timer waits for it, so no step holds that timer meanwhile."""
        intent = await intents.lock(conn, key)
        if intent is None or intent.state != intents.PENDING:
            log.warning("a send's answer came after it was settled; dropped", extra={"request_id": str(key)})
            return
        if isinstance(answer, Unanswered):  # only the provider can tell now: the reconciler asks it later
            await intents.mark(conn, key, intents.PENDING, reason=answer.reason, detail=answer.detail)
            return
        run = await self.resume(conn, em, intent.campaign_id, intent.lead_id, intent.step_id, now)
        if isinstance(answer, Performed):
            await self._sent(conn, em, intent, run, answer.result, now)
        elif isinstance(answer, Refused):
            limited = isinstance(answer.error, RateLimited | LimitReached)
            state = intents.RATE_LIMITED if limited else intents.FAILED
            await intents.mark(conn, key, state, detail=str(answer.error)[:500], reconcile_at=None)
            if run is not None:
                await self._refused(run, answer.error, intent.sent_at)
        elif isinstance(answer, NeverArrived):
            await intents.mark(conn, key, intents.FAILED, detail=answer.detail, reconcile_at=None)
            if run is not None:
                await self._retry_or_fail(run, answer.reason, answer.detail)
        else:
            await intents.mark(conn, key, intents.UNKNOWN, detail=answer.detail, reconcile_at=None)
            em.emit(self._failed_event(intent, intents.OUTCOME_UNKNOWN, answer.detail), key.event_key)
            count_send(intent.account_id, intent.action, "failed")
            if run is not None:
                await self._end(run, "failed")

    async def resume(
        self, conn: AsyncConnection, em: Emitter, campaign_id: UUID, lead_id: UUID, step_id: str, now: datetime
    ) -> StepRun | None:
        """A lead's step, its timer locked (again); None when it no longer runs (a reply ended the lead)."""
        key = tm.step_key(campaign_id, lead_id, step_id)
        timer = (await conn.execute(select(timers).where(timers.c.key == key).with_for_update())).first()
        if timer is None or timer.state not in tm.LIVE:
            return None
        enrollment = await _enrollment(conn, campaign_id, lead_id)
        if enrollment is None or enrollment.state != "active":
            return None
        campaign, account, lead = await _rows(conn, enrollment)
        if account is None:
            return None
        graph = await graph_of(conn, campaign, enrollment.workflow_version)
        step, schedule = graph.step(step_id), await lead_schedule(campaign, lead)
        return StepRun(conn, em, timer, enrollment, campaign, account, lead, graph, step, schedule, now)

    async def _sent(
        self,
        conn: AsyncConnection,
        em: Emitter,
        intent: Row[Any],
        run: StepRun | None,
        result: SendResult,
        now: datetime,
    ) -> None:
        """The provider performed the send: its event, the simulation's foreseen answers, the step's children."""
        key = IntentKey.of(intent)
        await intents.mark(conn, key, intents.SENT, provider_ref=result.provider_ref, reconcile_at=None, detail=None)
        em.emit(intents.sent_event(intent, result.provider_ref), key.event_key)
        count_send(intent.account_id, intent.action, "sent")
        for f in result.followups:
            await tm.schedule(
                conn,
                key=f"sim:{intent.request_id}:{f.kind}:{f.at.isoformat()}",
                workspace_id=intent.workspace_id,
                kind="inbound",
                due_at=f.at,
                now=now,
                campaign_id=intent.campaign_id,
                lead_id=intent.lead_id,
                account_id=intent.account_id,
                step_id=intent.step_id,
                payload={"type": f.kind, "channel": f.channel, "text": f.text, "out_of_office": f.out_of_office},
            )
        if run is None:  # the lead stopped meanwhile (a reply): the send is recorded, nothing follows it
            return
        if run.account.status in LIMIT_STATUSES:
            await conn.execute(
                update(accounts)
                .where(accounts.c.account_id == run.account.account_id)
                .values(status="ok", limit_paused_until=None, updated_at=now)
            )
            em.emit(
                AccountStatusChanged(
                    account_id=run.account.account_id, status="ok", previous=run.account.status, healthy=True
                ),
                f"limit_over:{run.account.account_id}:{run.key}",
            )
        await self._complete(run, performed=True)

    def _failed_event(self, intent: Row[Any], reason: str, detail: str) -> ActionFailed:
        return ActionFailed(
            lead_id=intent.lead_id,
            campaign_id=intent.campaign_id,
            account_id=intent.account_id,
            step_id=intent.step_id,
            action=Action(intent.action),
            reason=reason,
            detail=detail,
            retryable=False,
        )

    # -- outcomes --------------------------------------------------------------------------------

    async def _skip(self, run: StepRun, reason: SkipReason, detail: str) -> None:
        run.em.emit(
            ActionSkipped(**run.ids, action=Action(run.step.action), reason=reason, detail=detail),
            f"skip:{run.key}",
        )

    async def _complete(self, run: StepRun, *, performed: bool) -> None:
        """The step is done (sent or skipped): schedule its children, then see whether the lead completed."""
        if performed:
            await run.conn.execute(
                update(enrollments)
                .where(
                    enrollments.c.campaign_id == run.enrollment.campaign_id,
                    enrollments.c.lead_id == run.enrollment.lead_id,
                )
                .values(steps_done=enrollments.c.steps_done + 1)
            )
        await lc.schedule_children(run.conn, run.enrollment, run.graph.children(run.step.id), run.now, run.now)
        conditional = run.graph.children(run.step.id, ("accepted", "not_accepted"))
        if run.step.action == "invite" and performed and conditional:
            await tm.schedule(
                run.conn,
                key=tm.accept_key(run.enrollment.campaign_id, run.lead.lead_id, run.step.id),
                workspace_id=run.enrollment.workspace_id,
                kind="accept_wait",
                due_at=run.now + timedelta(hours=run.step.accept_timeout_hours),
                now=run.now,
                campaign_id=run.enrollment.campaign_id,
                lead_id=run.lead.lead_id,
                account_id=run.account.account_id,
                step_id=run.step.id,
                state="waiting",
                waiting_for="accept",
            )
        await tm.finish(run.conn, run.timer.id, run.now, "sent" if performed else "skipped")
        await lc.complete_if_done(run.conn, run.em, run.enrollment, run.now)

    async def _end(self, run: StepRun, state: str) -> None:
        """The lead stops in this campaign (blocked, suppressed, failed): no further step runs."""
        await tm.finish(run.conn, run.timer.id, run.now, state, state="cancelled" if state != "failed" else "done")
        await tm.cancel_lead(
            run.conn,
            run.enrollment.workspace_id,
            run.lead.lead_id,
            run.now,
            state,
            campaign_id=run.enrollment.campaign_id,
        )
        await lc.end_lead(
            run.conn, run.enrollment.campaign_id, run.lead.lead_id, run.enrollment.workspace_id, state, run.now
        )
        await lc.maybe_finish_campaign(run.conn, run.em, run.enrollment.campaign_id, run.now)
