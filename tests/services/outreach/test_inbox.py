"""Replies from every channel: the SMTP mailbox read over IMAP from a real Dovecot, and LinkedIn inboxes polled
from a local provider server (and the simulated provider's inbox), on the real broker and database with a fake
clock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from fastapi import FastAPI, Request
from leadstream_schemas import LeadDiscovered
from sqlalchemy import select

from services.outreach.adapters.http import UnipileLinkedIn
from services.outreach.adapters.imap import ImapMailbox
from services.outreach.inbox import InboxPoller
from services.outreach.store import accounts, enrollments, inbox_cursors, inbox_messages
from tests.services.outreach.support import (
    MakeSettings,
    Outreach,
    StartService,
    approvals,
    lead_events,
    of_type,
    start_outreach,
)
from tests.support.dovecot import Dovecot
from tests.support.kafka import wait_for
from tests.support.local_http import serve

MONDAY = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ALWAYS = {"active_days": "every_day", "start_hour": 0, "end_hour": 24}
QUIET: dict[str, Any] = {"sim_reply_rate": 0.0, "sim_out_of_office_rate": 0.0, "sim_accept_rate": 0.0}
SENDER = "sales@ours.example"


def _mail(
    sender: str,
    text: str,
    *,
    subject: str = "Re: Hi",
    in_reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    when: datetime = MONDAY,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = SENDER
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<{uuid.uuid4()}@their.example>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = f"<older@their.example> {in_reply_to}"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(f"{text}\n\nOn Mon, 2 Mar 2026 Sales wrote:\n> Hello, a quoted line that is not theirs\n")
    return bytes(msg)


async def _states(o: Outreach, cid: str) -> dict[uuid.UUID, str]:
    async with o.service.engine.connect() as conn:
        rows = await conn.execute(
            select(enrollments.c.lead_id, enrollments.c.state).where(enrollments.c.campaign_id == uuid.UUID(cid))
        )
        return {r.lead_id: r.state for r in rows}


async def _poll(inbox: InboxPoller) -> int:
    """Poll every due inbox (a fake clock: nothing else runs them)."""
    n = 0
    while await inbox.step() is not None:
        n += 1
    return n


async def test_replies_in_the_smtp_mailbox_are_read_over_imap_and_matched_to_leads(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str, dovecot: Dovecot
) -> None:
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        email_real_sends=True,
        reply_inbox="imap",
        imap_host=dovecot.host,
        imap_port=dovecot.port,
        imap_username=dovecot.user,
        imap_password=dovecot.password,
        imap_use_tls=False,
        **QUIET,
    )
    inbox: InboxPoller = o.service.app.state.inbox
    await o.api("POST", "/v1/accounts", 201, json={"provider": "email", "sender_email": SENDER})
    account = await o.account()
    group = uuid.uuid4()
    # A message (skipped: not a connection), the email, then a like a day later: the leads stay in the sequence.
    workflow = {
        "steps": [
            {"id": "message", "action": "message"},
            {"id": "email", "action": "email"},
            {"id": "like", "action": "like"},
        ],
        "edges": [
            {"from": "message", "to": "email", "delay_minutes": 5},
            {"from": "email", "to": "like", "delay_minutes": 720},
        ],
    }
    fallback = {"sender_email": SENDER, "subject": "Hi {first_name}", "body": "Hello"}
    body = {
        "name": "mail",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": workflow,
        "delivery": {**ALWAYS, "email_fallback": fallback},
        "account_ids": [account],
    }
    cid = str((await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"])
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200, json={"confirm_email_fallback": True})
    (threaded, by_address, quiet), events = lead_events(group, 3, domain="their.example", tag=o.workspace)
    await o.produce([*events, *approvals(cid, [threaded, by_address, quiet], "email", "email", subject="Hi")])
    await o.wait_enrolled(cid, 3)

    async def texts() -> bool:
        await o.drive(MONDAY + timedelta(hours=2))  # the mailbox's emails are spread: about 18 minutes apart
        return len(of_type(await o.events(), "EmailSent")) == 3

    await wait_for(texts, timeout_s=60, what="three emails sent")
    sent = {e.data.lead_id: e.data for e in of_type(await o.events(), "EmailSent")}

    # The mailbox: a reply in the thread of our email, an automatic out-of-office answer by address only, a
    # stranger, a bounce; and, from before the inbox was first read, an old message (not taken).
    old = MONDAY - timedelta(days=5)
    await dovecot.deliver(_mail("someone@old.example", "old news", when=old), arrived=old)
    await dovecot.deliver(
        _mail(
            f"Lead <{sent[threaded].to}>",
            "Sounds interesting - call me Thursday?",
            in_reply_to=sent[threaded].provider_message_id,
        ),
        arrived=MONDAY,
    )
    await dovecot.deliver(
        _mail(
            sent[by_address].to.upper(),
            "I am out of the office until Friday 6 March with no access to email.",
            subject="Automatic reply: Hi Lead",
            headers={"Auto-Submitted": "auto-replied"},
        ),
        arrived=MONDAY,
    )
    await dovecot.deliver(_mail("stranger@nowhere.example", "Who are you?"), arrived=MONDAY)
    await dovecot.deliver(
        _mail("MAILER-DAEMON@mx.their.example", "Delivery failed", subject="Undelivered Mail"), arrived=MONDAY
    )

    await inbox.ensure()
    o.clock.advance(timedelta(minutes=1))
    assert await _poll(inbox) == 1
    got = await o.events()
    replied = of_type(got, "Replied")
    assert [(e.data.lead_id, e.data.channel, e.data.excerpt) for e in replied] == [
        (threaded, "email", "Sounds interesting - call me Thursday?")
    ]
    paused = of_type(got, "LeadPaused")
    assert [(e.data.lead_id, str(e.data.return_on), e.data.channel) for e in paused] == [
        (by_address, "2026-03-06", "email")
    ]
    assert await _states(o, cid) == {threaded: "replied", by_address: "active", quiet: "active"}
    assert inbox.mailbox is not None
    key = inbox.mailbox.key
    async with o.service.engine.connect() as conn:
        outcomes = sorted(
            r.outcome for r in await conn.execute(select(inbox_messages.c.outcome).where(inbox_messages.c.inbox == key))
        )
        cursor = (await conn.execute(select(inbox_cursors).where(inbox_cursors.c.key == key))).one()
    assert outcomes == ["ignored", "out_of_office", "replied", "unmatched"]
    assert (cursor.kind, cursor.last_uid, cursor.messages, cursor.replies) == ("imap", 5, 4, 2)

    # Nothing is taken twice: the next poll finds no new message; a rebuilt mailbox (new UIDVALIDITY) is read
    # again from the lookback window and its messages are known by their Message-IDs.
    o.clock.advance(timedelta(minutes=5))
    assert await _poll(inbox) == 1
    async with o.service.engine.begin() as conn:
        await conn.execute(inbox_cursors.update().values(uidvalidity=1, due_at=o.clock.now()))
    assert await _poll(inbox) == 1
    assert len(of_type(await o.events(), "Replied")) == 1 and len(of_type(await o.events(), "LeadPaused")) == 1

    # IMAP IDLE: new mail makes the poll due at once.
    mailbox = ImapMailbox(dovecot.host, dovecot.port, dovecot.user, dovecot.password, use_tls=False)
    idling = asyncio.Event()
    waiting = asyncio.create_task(mailbox.wait_for_mail(30, idling))
    await asyncio.wait_for(idling.wait(), 30)  # the server has accepted the IDLE: the mail below is announced
    await dovecot.deliver(
        _mail(sent[quiet].to, "Yes please, send details", in_reply_to=sent[quiet].provider_message_id)
    )
    assert await asyncio.wait_for(waiting, 30) is True
    await inbox.poll_now()
    assert await _poll(inbox) == 1
    assert {e.data.lead_id for e in of_type(await o.events(), "Replied")} == {threaded, quiet}


async def test_a_wrong_imap_password_is_reported_on_the_inbox_and_retried_later(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str, dovecot: Dovecot
) -> None:
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        reply_inbox="imap",
        imap_host=dovecot.host,
        imap_port=dovecot.port,
        imap_username="nobody-here@leadstream.test",
        imap_password="wrong",
        imap_use_tls=False,
        inbox_poll_interval_s=600,
    )
    inbox: InboxPoller = o.service.app.state.inbox
    assert inbox.mailbox is not None
    await inbox.ensure()
    async with o.service.engine.begin() as conn:  # earlier tests' inbox rows are not this test's
        await conn.execute(inbox_cursors.delete().where(inbox_cursors.c.key != inbox.mailbox.key))
    assert await _poll(inbox) == 1
    async with o.service.engine.connect() as conn:
        row = (await conn.execute(select(inbox_cursors))).one()
    assert "login refused" in (row.last_error or "") and row.due_at == MONDAY + timedelta(seconds=600)


class FakeProviderInbox:
    """A Unipile-style provider's chats and messages, as a local HTTP server serves them."""

    def __init__(self) -> None:
        self.chats: list[dict[str, Any]] = []
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.users: dict[str, str] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.app = FastAPI()
        self.app.get("/api/v1/chats")(self.list_chats)
        self.app.get("/api/v1/chats/{chat_id}/messages")(self.list_messages)
        self.app.get("/api/v1/users/{provider_id}")(self.user)

    async def list_chats(self, request: Request) -> dict[str, Any]:
        self.requests.append(("chats", dict(request.query_params)))
        after = request.query_params["after"]
        return {"items": [c for c in self.chats if c["timestamp"] > after], "cursor": None}

    async def list_messages(self, chat_id: str, request: Request) -> dict[str, Any]:
        self.requests.append((f"messages:{chat_id}", dict(request.query_params)))
        return {"items": self.messages.get(chat_id, []), "cursor": None}

    async def user(self, provider_id: str) -> dict[str, Any]:
        return {"provider_id": provider_id, "public_identifier": self.users[provider_id]}

    def say(self, chat_id: str, slug: str | None, text: str, when: datetime, *, ours: bool = False) -> None:
        iso = when.isoformat().replace("+00:00", "Z")
        if not any(c["id"] == chat_id for c in self.chats):
            chat: dict[str, Any] = {"id": chat_id, "timestamp": iso}
            if slug and slug.startswith("ACo"):
                chat["attendee_provider_id"] = slug
            else:
                chat["attendee_public_identifier"] = slug
            self.chats.append(chat)
        for c in self.chats:
            if c["id"] == chat_id:
                c["timestamp"] = max(c["timestamp"], iso)
        self.messages.setdefault(chat_id, []).append(
            {"id": f"m-{uuid.uuid4().hex[:8]}", "text": text, "timestamp": iso, "is_sender": 1 if ours else 0}
        )


async def test_linkedin_replies_are_polled_from_the_provider_inbox(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    fake = FakeProviderInbox()
    async with serve(fake.app) as base:
        provider = UnipileLinkedIn(base, "key")
        o = await start_outreach(
            make_settings,
            start_service,
            topic_prefix,
            start=MONDAY,
            linkedin_inbox_poll=True,
            **QUIET,
        )
        o.service.app.state.inbox.linkedin = provider  # the HTTP adapter reads the inbox; sends stay simulated
        inbox: InboxPoller = o.service.app.state.inbox
        account = await o.account()
        group = uuid.uuid4()
        two_likes = {
            "steps": [{"id": "first", "action": "like"}, {"id": "second", "action": "like"}],
            "edges": [{"from": "first", "to": "second", "delay_minutes": 720}],
        }
        body = {
            "name": "li",
            "audience": {"type": "source_group", "ref": str(group)},
            "workflow": two_likes,
            "delivery": ALWAYS,
            "account_ids": [account],
        }
        cid = str((await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"])
        await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
        (answering, away, quiet), events = lead_events(group, 3, tag=o.workspace)
        await o.produce(events)
        await o.wait_enrolled(cid, 3)
        await o.drive(MONDAY + timedelta(minutes=30))
        slug = {e.lead_id: str(e.linkedin_url).rsplit("/", 1)[1] for e in events if isinstance(e, LeadDiscovered)}
        fake.users["ACoAway"] = slug[away]
        fake.say("c1", slug[answering], "Thanks for the like! Happy to chat.", MONDAY + timedelta(minutes=40))
        fake.say("c1", slug[answering], "Our own message in the chat", MONDAY + timedelta(minutes=41), ours=True)
        fake.say("c2", "ACoAway", "I'm out of the office until Wednesday.", MONDAY + timedelta(minutes=45))
        fake.say("c3", "someone-else", "Who is this?", MONDAY + timedelta(minutes=46))

        async with o.service.engine.begin() as conn:  # earlier tests' inbox rows are not this test's
            await conn.execute(inbox_cursors.delete())
        await inbox.ensure()
        o.clock.set(MONDAY + timedelta(hours=1))
        # The accounts' sync, then every account's inbox (this session's other tests' accounts too).
        assert await _poll(inbox) >= 2
        got = await o.events()
        assert [(e.data.lead_id, e.data.channel) for e in of_type(got, "Replied")] == [(answering, "message")]
        assert [(e.data.lead_id, str(e.data.return_on)) for e in of_type(got, "LeadPaused")] == [(away, "2026-03-04")]
        assert await _states(o, cid) == {answering: "replied", away: "active", quiet: "active"}
        async with o.service.engine.connect() as conn:
            provider_id = await conn.scalar(
                select(accounts.c.provider_account_id).where(accounts.c.account_id == uuid.UUID(account))
            )
        chats = [params for what, params in fake.requests if what == "chats" and params["account_id"] == provider_id]
        assert chats[0]["after"] == "2026-03-01T09:00:00Z"  # the first poll reads 24 hours back
        # The next poll asks from the newest message seen (less a minute: a message stamped with that time but
        # listed only now is taken); the messages of the overlap are not taken twice.
        fake.say("c4", slug[quiet], "Listed late, stamped 08:46", MONDAY + timedelta(minutes=46))
        o.clock.advance(timedelta(minutes=2))
        await _poll(inbox)
        mine = [p for w, p in fake.requests if w == "chats" and p["account_id"] == provider_id]
        assert mine[-1]["after"] == "2026-03-02T08:45:00Z"  # the newest message seen, less a minute of overlap
        assert [e.data.lead_id for e in of_type(await o.events(), "Replied")] == [answering, quiet]
        assert len(of_type(await o.events(), "LeadPaused")) == 1
        await provider.aclose()


async def test_the_simulated_provider_keeps_an_inbox(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings, start_service, topic_prefix, start=MONDAY, linkedin_inbox_poll=True, **QUIET
    )
    inbox: InboxPoller = o.service.app.state.inbox
    account = await o.account()
    group = uuid.uuid4()
    body = {
        "name": "sim",
        "audience": {"type": "source_group", "ref": str(group)},
        "workflow": {
            "steps": [{"id": "first", "action": "like"}, {"id": "second", "action": "like"}],
            "edges": [{"from": "first", "to": "second", "delay_minutes": 600}],
        },
        "delivery": ALWAYS,
        "account_ids": [account],
    }
    cid = str((await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"])
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    (lead,), events = lead_events(group, 1, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 1)
    url = next(e.linkedin_url for e in events if isinstance(e, LeadDiscovered))
    # Written in the future: not in the inbox before its time.
    await o.ctx.linkedin.deliver(account, url, "Let's talk next week", MONDAY + timedelta(hours=2))  # type: ignore[attr-defined]
    async with o.service.engine.begin() as conn:
        await conn.execute(inbox_cursors.delete())
    await inbox.ensure()
    await _poll(inbox)
    assert not of_type(await o.events(), "Replied")
    o.clock.set(MONDAY + timedelta(hours=3))
    await _poll(inbox)
    assert [e.data.lead_id for e in of_type(await o.events(), "Replied")] == [lead]
    assert await _states(o, cid) == {lead: "replied"}
