"""Every send at most once, on the real broker and database with a fake clock: a send whose answer is lost
is settled from the provider's word (lookup by its idempotency key) or, when the provider cannot say, recorded
as unknown and never resent; an intent counts against the day's quota before its answer is known."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from services.outreach.adapters import EmailMessage, LookupUnsupported, SenderVerification, SendRequest, SendResult
from services.outreach.adapters.simulated import LinkedInBehaviour, SimulatedLinkedIn
from services.outreach.steps import request_id
from services.outreach.store import enrollments, sends, texts
from services.runtime.providers import ProviderError, SimulationProfile
from tests.services.outreach.support import (
    MakeSettings,
    Outreach,
    StartService,
    approvals,
    lead_events,
    of_type,
    start_outreach,
)
from tests.support.kafka import wait_for

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ALWAYS = {"active_days": "every_day", "start_hour": 0, "end_hour": 24}
LOST = "connection lost after the request was sent"


def _lost() -> ProviderError:
    """What a read timeout or a dropped connection looks like: the request may have been performed."""
    return ProviderError(LOST, transient=True, maybe_performed=True)


class LosingLinkedIn(SimulatedLinkedIn):
    """The simulation (which remembers what it performed and answers lookups truthfully), except that the
    first call for some leads performs the send and loses the answer, and for others fails before it."""

    def __init__(self, after: set[uuid.UUID], before: set[uuid.UUID], connected: float = 0.0) -> None:
        super().__init__(
            SimulationProfile(transient_error_rate=0.0, latency_ms=(0, 0)), LinkedInBehaviour(connected_rate=connected)
        )
        self.after, self.before = after, before
        self.tries: Counter[str] = Counter()

    def tries_of(self, leads: list[uuid.UUID]) -> Counter[str]:
        """The calls for these leads: the service may also run steps of leads the session's earlier tests left on
        the topics (read after start_outreach cancelled their timers), and those calls come here too."""
        return Counter({lead: n for lead, n in self.tries.items() if uuid.UUID(lead) in leads})

    async def _lossy(self, req: SendRequest, now: datetime, send: Any) -> SendResult:
        self.tries[req.lead.lead_id] += 1
        lead, first = uuid.UUID(req.lead.lead_id), self.tries[req.lead.lead_id] == 1
        if first and lead in self.before:
            raise _lost()  # lost before it reached the provider
        result: SendResult = await send(req, now)
        if first and lead in self.after:
            raise _lost()  # performed, but the answer never came back
        return result

    async def send_invite(self, req: SendRequest, now: datetime) -> SendResult:
        return await self._lossy(req, now, super().send_invite)

    async def send_message(self, req: SendRequest, now: datetime) -> SendResult:
        return await self._lossy(req, now, super().send_message)


class SmtpLikeSender:
    """An email sender without idempotency or lookup (like SMTP) whose every answer is lost after DATA."""

    name = "smtp-like"

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> str:
        self.sent.append(message)
        raise _lost()

    async def lookup(self, request_id: str) -> str | None:
        raise LookupUnsupported("this mailbox cannot say whether a message was sent")

    async def request_verification(
        self, account_id: str, sender_email: str, notify_url: str, now: datetime
    ) -> SenderVerification:
        return SenderVerification("verified")  # the sender address was verified beforehand: sends are under test

    async def verification_status(self, sender_id: str, sender_email: str, now: datetime) -> SenderVerification:
        return SenderVerification("verified")


async def _campaign(o: Outreach, group: uuid.UUID, workflow: Any, delivery: dict[str, Any], **launch: Any) -> str:
    body = {
        "name": "Sends",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": workflow,
        "delivery": delivery,
        "account_ids": [await o.account()],
    }
    cid = str((await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"])
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200, json=launch or None)
    return cid


async def _sends(o: Outreach, cid: str) -> dict[uuid.UUID, Any]:
    async with o.service.engine.connect() as conn:
        rows = (await conn.execute(select(sends).where(sends.c.campaign_id == uuid.UUID(cid)))).all()
    return {r.lead_id: r for r in rows}


async def _texts(o: Outreach, cid: str, n: int) -> None:
    async def stored() -> bool:
        async with o.service.engine.connect() as conn:
            found = await conn.scalar(select(func.count()).where(texts.c.campaign_id == uuid.UUID(cid)))
        return found == n

    await wait_for(stored, what=f"{n} approved texts")


async def _states(o: Outreach, cid: str) -> dict[uuid.UUID, str]:
    async with o.service.engine.connect() as conn:
        rows = await conn.execute(
            select(enrollments.c.lead_id, enrollments.c.state).where(enrollments.c.campaign_id == uuid.UUID(cid))
        )
        return {r.lead_id: r.state for r in rows}


async def test_a_lost_answer_is_settled_by_asking_the_provider(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    group = uuid.uuid4()
    fine, performed, never_arrived = (uuid.uuid5(group, f"lead-lost{i}") for i in range(3))
    provider = LosingLinkedIn(after={performed}, before={never_arrived})
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, linkedin=provider)
    cid = await _campaign(
        o, group, {"steps": [{"id": "invite", "action": "invite", "note": False}]}, {**ALWAYS, "pace": "high_volume"}
    )
    leads, events = lead_events(group, 3, tag="lost")
    assert leads == [fine, performed, never_arrived]
    await o.produce(events)
    await o.wait_enrolled(cid, 3)
    await o.drive(MONDAY + timedelta(hours=2))

    got = await o.events()
    assert sorted(e.data.lead_id for e in of_type(got, "InviteSent")) == sorted(leads)  # each exactly once
    assert not of_type(got, "ActionFailed")
    # What the provider performed, per lead: once. The lost one was not resent: the lookup found it.
    performed_by_lead = Counter(rid for kind, rid in provider.performed if kind == "invite")
    rids = {lead: request_id(uuid.UUID(cid), lead, "invite") for lead in leads}
    assert {lead: performed_by_lead[rids[lead]] for lead in leads} == dict.fromkeys(leads, 1)
    assert provider.tries_of(leads) == Counter({str(fine): 1, str(performed): 1, str(never_arrived): 2})
    rows = await _sends(o, cid)
    assert {lead: rows[lead].state for lead in leads} == dict.fromkeys(leads, "sent")
    assert await _states(o, cid) == dict.fromkeys(leads, "completed")


async def test_a_send_nobody_can_account_for_is_unknown_and_never_resent(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    mailbox = SmtpLikeSender()
    o = await start_outreach(
        make_settings, start_service, topic_prefix, start=MONDAY, email=mailbox, email_real_sends=True
    )
    await o.api("POST", "/v1/accounts", 201, json={"provider": "email", "sender_email": "sales@ours.example"})
    group = uuid.uuid4()
    workflow = {
        "steps": [{"id": "message", "action": "message"}, {"id": "email", "action": "email"}],
        "edges": [{"from": "message", "to": "email", "delay_minutes": 5}],
    }
    fallback = {"sender_email": "sales@ours.example", "subject": "Hi {first_name}", "body": "Hello"}
    cid = await _campaign(o, group, workflow, {**ALWAYS, "email_fallback": fallback}, confirm_email_fallback=True)
    leads, events = lead_events(group, 2, tag="unknown")
    await o.produce(events)
    await o.wait_enrolled(cid, 2)
    await o.produce(approvals(cid, leads, "email", "email", subject="Hi"))

    await _texts(o, cid, 2)
    await o.drive(MONDAY + timedelta(days=3))

    got = await o.events()
    assert not of_type(got, "EmailSent")
    unknown = of_type(got, "ActionFailed")
    assert sorted(e.data.lead_id for e in unknown) == sorted(leads)
    assert {(e.data.action, e.data.reason, e.data.step_id) for e in unknown} == {("email", "outcome_unknown", "email")}
    assert all("cannot say" in (e.data.detail or "") and LOST in (e.data.detail or "") for e in unknown)
    # This campaign's emails (their request ids name it): the mailbox also gets any other lead's the service sends.
    ours = [m for m in mailbox.sent if m.request_id in {request_id(uuid.UUID(cid), lead, "email") for lead in leads}]
    assert Counter(m.to for m in ours) == Counter({m.to: 1 for m in ours}) and len(ours) == 2
    assert {r.state for r in (await _sends(o, cid)).values()} == {"unknown"}
    assert await _states(o, cid) == dict.fromkeys(leads, "failed")
    assert (await o.api("GET", f"/v1/campaigns/{cid}", 200))["state"] == "finished"


async def test_an_intent_counts_against_the_quota_before_its_answer_is_known(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    group = uuid.uuid4()
    first, second = (uuid.uuid5(group, f"lead-quota{i}") for i in range(2))
    provider = LosingLinkedIn(after={first, second}, before=set(), connected=1.0)
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        linkedin=provider,
        send_reconcile_after_s=3600,  # the lost answer stays unknown to outreach all day
    )
    cid = await _campaign(
        o, group, {"steps": [{"id": "message", "action": "message"}]}, {**ALWAYS, "daily_message_limit": 1}
    )
    leads, events = lead_events(group, 2, tag="quota")
    assert leads == [first, second]
    await o.produce(events)
    await o.wait_enrolled(cid, 2)
    await o.produce(approvals(cid, leads, "message", "message"))

    await _texts(o, cid, 2)
    await o.drive(datetime(2026, 1, 5, 23, 0, tzinfo=UTC))
    rows = await _sends(o, cid)
    assert [r.state for r in rows.values()] == ["pending"]  # its answer lost, not yet asked for
    assert sum(provider.tries_of(leads).values()) == 1  # the pending intent used up Monday's one message
    assert not of_type(await o.events(), "MessageSent")
