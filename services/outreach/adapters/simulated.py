"""Simulated LinkedIn provider and email sender: deterministic from a seed, realistic in behaviour.

They answer with latency, occasional transient errors and rate limits, and a weekly invitation limit and
message limit per account. The LinkedIn simulation also foresees what each lead does: whether and when an invite is
accepted, whether a message gets a reply or an out-of-office answer, and whether a lead is already a
connection. Those follow-ups are returned with the send result; outreach stores them as durable
timers, so they happen in campaign time (fake, scaled or real clock).

Like a remote provider, each simulation remembers request ids it already answered, in its own table
(written outside the caller's transaction): a call retried after a crash returns the first answer and
performs nothing twice, and ``lookup`` tells truthfully whether a request id was performed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.providers import SimulatedProvider, SimulationProfile, seeded_rng
from services.runtime.secrets import KeyRing
from services.runtime.webhooks import link_token

from ..store import sim_email_requests, sim_linkedin_inbox, sim_linkedin_requests
from . import (
    EmailMessage,
    FollowUp,
    InboundMessage,
    InvitationLimitReached,
    LeadTarget,
    MessageLimitReached,
    SenderVerification,
    SendRequest,
    SendResult,
)

REPLIES = [
    "Thanks for reaching out - happy to chat next week.",
    "Interesting timing, we're looking at this right now. What does it cost?",
    "Not a priority for us this quarter, but keep in touch.",
    "Can you send me a short deck?",
]
OUT_OF_OFFICE = "I'm out of the office until next Monday with limited access to messages."


@dataclass
class LinkedInBehaviour:
    """How simulated leads answer. Tests turn these up or down."""

    accept_rate: float = 0.6
    reply_rate: float = 0.3
    out_of_office_rate: float = 0.05
    connected_rate: float = 0.25
    invite_limit_per_week: int = 200
    message_limit_per_week: int = 1000
    accept_delay_minutes: tuple[int, int] = (15, 6 * 60)
    reply_delay_minutes: tuple[int, int] = (10, 8 * 60)


def _skewed(rng_value: float, lo: int, hi: int) -> timedelta:
    """A delay between lo and hi minutes, most of them short (as real answers are)."""
    return timedelta(minutes=lo + (hi - lo) * rng_value**2)


def _result_json(result: SendResult) -> dict[str, Any]:
    return {
        "provider_ref": result.provider_ref,
        "followups": [
            {
                "kind": f.kind,
                "at": f.at.isoformat(),
                "channel": f.channel,
                "text": f.text,
                "out_of_office": f.out_of_office,
            }
            for f in result.followups
        ],
    }


def _result_from(data: dict[str, Any]) -> SendResult:
    return SendResult(
        provider_ref=data.get("provider_ref"),
        followups=tuple(
            FollowUp(
                kind=f["kind"],
                at=datetime.fromisoformat(f["at"]),
                channel=f["channel"],
                text=f["text"],
                out_of_office=f["out_of_office"],
            )
            for f in data.get("followups", [])
        ),
    )


class SimulatedLinkedIn(SimulatedProvider):
    """A LinkedIn provider that never talks to LinkedIn."""

    name = "simulated"

    def __init__(
        self,
        profile: SimulationProfile,
        behaviour: LinkedInBehaviour | None = None,
        engine: AsyncEngine | None = None,
        *,
        hosted_base_url: str = "http://127.0.0.1:8104",
        secret: str = "dev-webhook-secret-change-me",
    ) -> None:
        super().__init__(profile)
        self.behaviour = behaviour or LinkedInBehaviour()
        self.engine = engine
        self.performed: list[tuple[str, str]] = []  # (kind, request id) actually performed by this process
        self.statuses: dict[str, str] = {}
        self.hosted_base_url = hosted_base_url.rstrip("/")
        self.secret = secret
        self.hosted: dict[str, str] = {}  # account id -> "create" | "reconnect" while its hosted page is open
        self.callback_transport: httpx.AsyncBaseTransport | None = None  # tests: the hosted page's callback
        self._inbox: dict[str, list[InboundMessage]] = {}
        self._memory: dict[str, tuple[str, str, str, dict[str, Any], datetime]] = {}

    # -- the provider's own memory ---------------------------------------------------------------

    async def _lookup(self, request_id: str) -> SendResult | None:
        if self.engine is None:
            hit = self._memory.get(request_id)
            return _result_from(hit[3]) if hit else None
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    update(sim_linkedin_requests)
                    .where(sim_linkedin_requests.c.request_id == request_id)
                    .values(replays=sim_linkedin_requests.c.replays + 1)
                    .returning(sim_linkedin_requests.c.result)
                )
            ).first()
        return _result_from(row.result) if row else None

    async def _count(self, kind: str, account_id: str, since: datetime) -> int:
        """How many ``kind`` requests the account made since ``since`` (the provider's own count)."""
        if self.engine is None:
            return sum(1 for k, a, _, _, at in self._memory.values() if k == kind and a == account_id and at >= since)
        t = sim_linkedin_requests
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(t)
                .where(t.c.account_id == account_id, t.c.kind == kind, t.c.created_at >= since)
            )
        return int(count or 0)

    async def _record(self, kind: str, req: SendRequest, result: SendResult, now: datetime) -> SendResult:
        data = _result_json(result)
        if self.engine is None:
            self._memory.setdefault(req.request_id, (kind, req.account_id, req.lead.lead_id, data, now))
            return _result_from(self._memory[req.request_id][3])
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(sim_linkedin_requests)
                .values(
                    request_id=req.request_id,
                    kind=kind,
                    account_id=req.account_id,
                    lead_id=req.lead.lead_id,
                    result=json.loads(json.dumps(data)),
                    created_at=now,
                )
                .on_conflict_do_nothing()
            )
            stored = await conn.scalar(
                select(sim_linkedin_requests.c.result).where(sim_linkedin_requests.c.request_id == req.request_id)
            )
        return _result_from(stored or data)

    async def _perform(self, kind: str, req: SendRequest, now: datetime, result: SendResult) -> SendResult:
        rng = await self.simulate_call(kind, req.request_id)
        prior = await self._lookup(req.request_id)
        if prior is not None:
            return prior
        self.simulate_faults(rng, "LinkedIn provider")
        limits = {"invite": self.behaviour.invite_limit_per_week, "message": self.behaviour.message_limit_per_week}
        if kind in limits and await self._count(kind, req.account_id, now - timedelta(days=7)) >= limits[kind]:
            if kind == "invite":
                raise InvitationLimitReached("simulated: weekly invitation limit reached for this account")
            raise MessageLimitReached("simulated: weekly message limit reached for this account")
        stored = await self._record(kind, req, result, now)
        self.performed.append((kind, req.request_id))
        return stored

    # -- what leads do ---------------------------------------------------------------------------

    def _reply(self, req: SendRequest, after: datetime, channel: str) -> tuple[FollowUp, ...]:
        b = self.behaviour
        rng = seeded_rng(self.sim.seed, "reply", req.lead.lead_id, req.step_id)
        roll = rng.random()
        if roll < b.reply_rate:
            return (
                FollowUp(
                    "replied", after + _skewed(rng.random(), *b.reply_delay_minutes), channel, rng.choice(REPLIES)
                ),
            )
        if roll < b.reply_rate + b.out_of_office_rate:
            return (
                FollowUp(
                    "replied", after + timedelta(minutes=rng.randint(1, 5)), channel, OUT_OF_OFFICE, out_of_office=True
                ),
            )
        return ()

    def _invite_followups(self, req: SendRequest, now: datetime) -> tuple[FollowUp, ...]:
        b = self.behaviour
        rng = seeded_rng(self.sim.seed, "accept", req.lead.lead_id, req.account_id)
        if rng.random() >= b.accept_rate:
            return ()
        accepted_at = now + _skewed(rng.random(), *b.accept_delay_minutes)
        out = [FollowUp("accepted", accepted_at, "invite")]
        if req.text and rng.random() < b.reply_rate / 3:  # some answer the note itself once connected
            out.append(
                FollowUp("replied", accepted_at + timedelta(minutes=rng.randint(5, 60)), "message", rng.choice(REPLIES))
            )
        return tuple(out)

    # -- the protocol ----------------------------------------------------------------------------

    async def send_invite(self, req: SendRequest, now: datetime) -> SendResult:
        """Send a connection request (note optional)."""
        return await self._perform(
            "invite", req, now, SendResult(f"inv_{req.request_id[:12]}", self._invite_followups(req, now))
        )

    async def send_message(self, req: SendRequest, now: datetime) -> SendResult:
        """Send a message to a connection."""
        return await self._perform(
            "message", req, now, SendResult(f"msg_{req.request_id[:12]}", self._reply(req, now, "message"))
        )

    async def like_post(self, req: SendRequest, now: datetime) -> SendResult:
        """React to the lead's post."""
        return await self._perform("like", req, now, SendResult(f"like_{req.request_id[:12]}"))

    async def comment_post(self, req: SendRequest, now: datetime) -> SendResult:
        """Comment on the lead's post."""
        return await self._perform("comment", req, now, SendResult(f"cmt_{req.request_id[:12]}"))

    async def lookup(self, request_id: str) -> SendResult | None:
        """What the simulation answered to this request id, None when it never performed it (its own memory)."""
        if self.engine is None:
            hit = self._memory.get(request_id)
            return _result_from(hit[3]) if hit else None
        t = sim_linkedin_requests
        async with self.engine.connect() as conn:
            stored = await conn.scalar(select(t.c.result).where(t.c.request_id == request_id))
        return None if stored is None else _result_from(stored)

    async def deliver(self, account_id: str, profile_url: str, text: str, sent_at: datetime) -> str:
        """A lead writes to the account (tests, demos): the message waits in the account's inbox."""
        message_id = f"simmsg_{uuid.uuid4().hex}"
        message = InboundMessage(message_id, profile_url, text, sent_at)
        if self.engine is None:
            self._inbox.setdefault(account_id, []).append(message)
            return message_id
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(sim_linkedin_inbox).values(
                    message_id=message_id, account_id=account_id, profile_url=profile_url, text=text, sent_at=sent_at
                )
            )
        return message_id

    async def inbox(
        self, account_id: str, provider_account_id: str | None, since: datetime, now: datetime, limit: int
    ) -> list[InboundMessage]:
        """The account's messages after ``since`` up to ``now``, oldest first (the simulated provider's inbox)."""
        if self.engine is None:
            kept = [m for m in self._inbox.get(account_id, []) if since < m.sent_at <= now]
            return sorted(kept, key=lambda m: m.sent_at)[:limit]
        t = sim_linkedin_inbox
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t)
                .where(t.c.account_id == account_id, t.c.sent_at > since, t.c.sent_at <= now)
                .order_by(t.c.sent_at, t.c.message_id)
                .limit(limit)
            )
            return [InboundMessage(r.message_id, r.profile_url, r.text, r.sent_at) for r in rows]

    async def is_connected(self, account_id: str, provider_account_id: str | None, lead: LeadTarget) -> bool:
        """Whether the lead is already a first-degree connection of the account (stable per pair)."""
        return seeded_rng(self.sim.seed, "connected", lead.lead_id, account_id).random() < self.behaviour.connected_rate

    async def hosted_auth_link(
        self,
        account_id: str,
        notify_url: str,
        now: datetime,
        *,
        return_url: str | None = None,
        reconnect: str | None = None,
    ) -> str:
        """The simulated provider's hosted page (served by outreach at ``/sim/linkedin/hosted/{id}``, see
        ``sim_hosted.py``), where the user "signs in to LinkedIn"; the link is signed, so its callback and
        return addresses cannot be swapped."""
        kind = "reconnect" if reconnect else "create"
        self.hosted[account_id] = kind
        query = {"kind": kind, "notify_url": notify_url, "return_url": return_url or ""}
        query["t"] = self.hosted_token(account_id, kind, notify_url, return_url or "")
        return f"{self.hosted_base_url}/sim/linkedin/hosted/{account_id}?{urlencode(query)}"

    def hosted_token(self, account_id: str, kind: str, notify_url: str, return_url: str) -> str:
        """The signature of a hosted link's parameters."""
        return link_token(KeyRing("sim-hosted", (self.secret,)), "sim-hosted", account_id, kind, notify_url, return_url)

    def hosted_done(self, account_id: str) -> None:
        """The user finished the hosted page: the provider now sees the account as connected."""
        self.hosted.pop(account_id, None)
        self.statuses[account_id] = "ok"

    async def account_status(self, account_id: str, provider_account_id: str | None) -> str:
        """The account's status as the provider sees it: ``pending`` while its hosted connection page is not
        completed, else ``ok`` unless a test set another."""
        if self.hosted.get(account_id) == "create":
            return "pending"
        return self.statuses.get(account_id, "ok")


class SimulatedEmailSender(SimulatedProvider):
    """An email sender that records what it would send (idempotent on the request id), and verifies sender
    addresses like a real provider: asked to, it answers ``pending`` and calls the address verified once its
    owner would have clicked the confirmation link (``verify_after``; at once when zero); an address at a
    ``.invalid`` domain fails (no mail server). The sender id carries when it was asked, so the provider's
    answer needs no memory of its own and survives restarts."""

    name = "simulated"

    def __init__(
        self, profile: SimulationProfile, engine: AsyncEngine | None = None, verify_after: timedelta = timedelta(0)
    ) -> None:
        super().__init__(profile)
        self.engine = engine
        self.verify_after = verify_after
        self.sent: list[EmailMessage] = []
        self._memory: dict[str, str] = {}

    async def request_verification(
        self, account_id: str, sender_email: str, notify_url: str, now: datetime
    ) -> SenderVerification:
        """Start verifying ``sender_email``: the simulated owner confirms ``verify_after`` later."""
        await self.simulate_call("sender", account_id)
        return await self.verification_status(f"simsender:{account_id}:{now.isoformat()}", sender_email, now)

    async def verification_status(self, sender_id: str, sender_email: str, now: datetime) -> SenderVerification:
        """Verified once ``verify_after`` passed since the request; failed for a ``.invalid`` domain."""
        if sender_email.rsplit("@", 1)[-1].lower().endswith(".invalid"):
            return SenderVerification("failed", sender_id, "simulated: the domain has no mail server")
        try:
            asked = datetime.fromisoformat(sender_id.split(":", 2)[2])
        except (IndexError, ValueError):
            return SenderVerification("failed", sender_id, "simulated: unknown sender id")
        return SenderVerification("verified" if now >= asked + self.verify_after else "pending", sender_id)

    async def send(self, message: EmailMessage) -> str:
        """Accept the email for delivery; returns the provider's message id."""
        rng = await self.simulate_call("email", message.request_id)
        message_id = f"<{uuid.uuid5(uuid.NAMESPACE_URL, message.request_id)}@simulated.leadstream.invalid>"
        if self.engine is None:
            if message.request_id not in self._memory:
                self._memory[message.request_id] = message_id
                self.sent.append(message)
            return self._memory[message.request_id]
        self.simulate_faults(rng, "email API")
        t = sim_email_requests
        async with self.engine.begin() as conn:
            inserted = await conn.execute(
                insert(t)
                .values(
                    request_id=message.request_id,
                    to_address=message.to,
                    subject=message.subject,
                    message_id=message_id,
                    created_at=func.now(),
                )
                .on_conflict_do_nothing()
            )
            if not inserted.rowcount:
                await conn.execute(
                    update(t).where(t.c.request_id == message.request_id).values(replays=t.c.replays + 1)
                )
            else:
                self.sent.append(message)
        return message_id

    async def lookup(self, request_id: str) -> str | None:
        """The message id of the email accepted with this request id, None when it never was."""
        if self.engine is None:
            return self._memory.get(request_id)
        t = sim_email_requests
        async with self.engine.connect() as conn:
            found = await conn.scalar(select(t.c.message_id).where(t.c.request_id == request_id))
        return None if found is None else str(found)
