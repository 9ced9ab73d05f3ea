"""Email sender verification on the real broker and database with a fake clock: the simulated provider behaves
like a real one (pending until its owner confirms, a dead domain refused), an HTTP email provider answers
through a local server (signed callback, polls, refusal, asking again, the timeout), and a provider without
verification (SMTP) gets outreach's own signed confirmation link."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI, Header, HTTPException, Request
from sqlalchemy import select

from services.outreach.store import timers
from tests.services.outreach.support import MakeSettings, Outreach, StartService, of_type, signed, start_outreach
from tests.support.local_http import serve

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
FALLBACK = {"subject": "Hi {first_name}", "body": "Hello"}


def _campaign(sender: str, account: str) -> dict[str, Any]:
    return {
        "name": "email",
        "audience": {"type": "source_group", "ref": str(uuid.uuid4())},
        "workflow": {
            "steps": [{"id": "message", "action": "message"}, {"id": "email", "action": "email"}],
            "edges": [{"from": "message", "to": "email", "delay_minutes": 5}],
        },
        "delivery": {"email_fallback": {"sender_email": sender, **FALLBACK}},
        "account_ids": [account],
    }


async def _sender_events(o: Outreach, account: str) -> list[tuple[str, Any]]:
    got = await o.events(lambda e: getattr(e.data, "account_id", None) == uuid.UUID(account))
    return [(type(e.data).__name__, getattr(e.data, "status", None)) for e in got]


async def test_the_simulated_provider_verifies_a_sender_once_its_owner_confirms(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, sim_sender_verify_after_s=3600)
    linkedin = await o.account()
    pending = await o.api("POST", "/v1/accounts", 202, json={"provider": "email", "sender_email": "Sales@Ours.example"})
    account = pending["account_id"]
    assert (pending["status"], pending["healthy"], pending["sender_email_verified"]) == ("pending", False, False)
    assert pending["verification"]["status"] == "pending"
    assert pending["verification"]["requested_at"] == MONDAY.isoformat()
    # Not verified yet: a campaign cannot send from it.
    refused = await o.api("POST", "/v1/campaigns", 422, json=_campaign("sales@ours.example", linkedin))
    assert "not a verified sender" in refused["detail"]

    await o.drive(MONDAY + timedelta(minutes=30))  # asked every 5 minutes: still waiting for the owner
    waiting = await o.api("GET", f"/v1/accounts/{account}", 200)
    assert waiting["verification"]["status"] == "pending"
    assert waiting["verification"]["checked_at"] == (MONDAY + timedelta(minutes=30)).isoformat()
    await o.drive(MONDAY + timedelta(hours=2))
    done = await o.api("GET", f"/v1/accounts/{account}", 200)
    assert (done["status"], done["sender_email_verified"], done["verification"]["status"]) == (
        "connected",
        True,
        "verified",
    )
    assert done["verification"]["checked_at"] == (MONDAY + timedelta(hours=1)).isoformat()  # the first check after
    assert await _sender_events(o, account) == [("AccountConnectionRequested", None), ("AccountConnected", None)]
    assert of_type(await o.events(), "AccountConnected")[-1].data.sender_email_verified is True
    await o.api("POST", "/v1/campaigns", 201, json=_campaign("sales@ours.example", linkedin))

    # A domain without a mail server: refused at once, naming the field; nothing is stored.
    bad = await o.api("POST", "/v1/accounts", 422, json={"provider": "email", "sender_email": "me@nowhere.invalid"})
    assert [e["field"] for e in bad["errors"]] == ["sender_email"] and "no mail server" in bad["detail"]
    listed = (await o.api("GET", "/v1/accounts", 200))["items"]
    assert [a["sender_email"] for a in listed if a["provider"] == "email"] == ["sales@ours.example"]


class FakeEmailProvider:
    """An HTTP email provider's sender API (Postmark/Resend style): POST /senders, GET /senders/{id}."""

    def __init__(self) -> None:
        self.senders: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.app = FastAPI()
        self.app.post("/senders")(self.create)
        self.app.get("/senders/{sender_id}")(self.get)

    async def create(self, request: Request, authorization: str = Header(...)) -> dict[str, Any]:
        assert authorization == "Bearer mail-key"
        body = await request.json()
        self.requests.append((request.headers["idempotency-key"], body))
        sender_id = f"snd-{body['name']}"
        self.senders.setdefault(sender_id, {"id": sender_id, "status": "pending", "email": body["email"]})
        self.senders[sender_id]["status"] = "pending"  # asked again: a new confirmation email
        return self.senders[sender_id]

    async def get(self, sender_id: str) -> dict[str, Any]:
        if sender_id not in self.senders:
            raise HTTPException(404)
        return self.senders[sender_id]


async def test_an_http_email_provider_verifies_by_callback_or_poll_and_refuses_or_times_out(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    fake = FakeEmailProvider()
    async with serve(fake.app) as base:
        o = await start_outreach(
            make_settings,
            start_service,
            topic_prefix,
            start=MONDAY,
            email_provider="http",
            email_api_url=base,
            email_api_key="mail-key",
            public_base_url="https://outreach.example",
            # A check every 30 minutes, not 5: the 72 hours below are 144 timer runs instead of 864 (minutes of a
            # loaded machine); how often it asks does not change what is asserted.
            sender_check_interval_s=1800,
        )
        ids = {}
        for name in ("callback", "poll", "refused", "silent"):
            made = await o.api("POST", "/v1/accounts", 202, json={"provider": "email", "sender_email": f"{name}@x.io"})
            assert made["status"] == "pending" and made["verification"]["status"] == "pending"
            ids[name] = made["account_id"]
        assert fake.requests[0] == (
            f"sender:{ids['callback']}",
            {
                "email": "callback@x.io",
                "name": ids["callback"],
                "callback_url": "https://outreach.example/v1/accounts/callback",
            },
        )

        # The provider's signed callback: verified at once.
        hook = {"status": "verified", "name": ids["callback"]}
        assert (await o.api("POST", "/v1/accounts/callback", 200, **signed(o.settings, hook, "email")))[
            "status"
        ] == "verified"
        assert (await o.api("GET", f"/v1/accounts/{ids['callback']}", 200))["status"] == "connected"
        # Confirmed with the provider, no callback: the next check finds it; a refusal is shown with its reason.
        fake.senders[f"snd-{ids['poll']}"]["status"] = "confirmed"
        fake.senders[f"snd-{ids['refused']}"].update(status="rejected", detail="the domain's DNS has no DKIM record")
        await o.drive(MONDAY + timedelta(minutes=30))
        polled = await o.api("GET", f"/v1/accounts/{ids['poll']}", 200)
        assert (polled["status"], polled["verification"]["status"]) == ("connected", "verified")
        refused = await o.api("GET", f"/v1/accounts/{ids['refused']}", 200)
        assert (refused["status"], refused["healthy"], refused["verification"]["status"]) == (
            "verification_failed",
            False,
            "failed",
        )
        assert "no DKIM record" in refused["verification"]["detail"]
        assert await _sender_events(o, ids["refused"]) == [
            ("AccountConnectionRequested", None),
            ("AccountStatusChanged", "verification_failed"),
        ]
        # Asked again (the owner fixed DNS): pending, then verified when the provider says so (refresh asks now).
        again = await o.api("POST", f"/v1/accounts/{ids['refused']}/verify", 202)
        assert (again["status"], again["verification"]["status"]) == ("pending", "pending")
        fake.senders[f"snd-{ids['refused']}"]["status"] = "verified"
        refreshed = await o.api("POST", f"/v1/accounts/{ids['refused']}/refresh", 200)
        assert (refreshed["status"], refreshed["verification"]["status"]) == ("connected", "verified")
        assert (await o.api("POST", f"/v1/accounts/{ids['refused']}/verify", 409))["code"] == "invalid_state"

        # Nobody ever confirms: after 72 hours of checks the sender is marked failed (and checks stop).
        await o.drive(MONDAY + timedelta(hours=73))
        silent = await o.api("GET", f"/v1/accounts/{ids['silent']}", 200)
        assert silent["status"] == "verification_failed"
        assert "not confirmed within 72 hours" in silent["verification"]["detail"]
        async with o.service.engine.connect() as conn:
            check = (await conn.execute(select(timers).where(timers.c.key == f"sender:{ids['silent']}"))).one()
        assert (check.state, check.outcome) == ("done", "verification failed")  # no more questions


async def test_a_provider_without_verification_gets_a_signed_confirmation_link(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(
        make_settings,
        start_service,
        topic_prefix,
        start=MONDAY,
        email_provider="smtp",
        public_base_url="https://outreach.example",
    )
    made = await o.api("POST", "/v1/accounts", 202, json={"provider": "email", "sender_email": "sam@ours.example"})
    account = made["account_id"]
    detail = made["verification"]["detail"]
    assert detail.startswith("dry run") and f"https://outreach.example/v1/accounts/{account}/confirm?t=" in detail
    link = urlsplit(detail[detail.index("https://") :])
    token = parse_qs(link.query)["t"][0]
    forged = await o.client.get(f"/v1/accounts/{account}/confirm", params={"t": token[:-2] + "xx"})
    assert forged.status_code == 403
    other = await o.api("POST", "/v1/accounts", 202, json={"provider": "email", "sender_email": "kim@ours.example"})
    assert (await o.client.get(f"/v1/accounts/{other['account_id']}/confirm", params={"t": token})).status_code == 403
    owner = httpx.AsyncClient(transport=httpx.ASGITransport(app=o.service.app), base_url="http://t")
    confirmed = await owner.get(link.path, params={"t": token})  # no bearer token: the owner opens it from the email
    await owner.aclose()
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "verified"
    got = await o.api("GET", f"/v1/accounts/{account}", 200)
    assert (got["status"], got["sender_email_verified"]) == ("connected", True)
    assert (await o.api("GET", f"/v1/accounts/{other['account_id']}", 200))["status"] == "pending"
    # Nobody to ask in between: the unconfirmed address is looked at once, at its deadline.
    async with o.service.engine.connect() as conn:
        check = (await conn.execute(select(timers).where(timers.c.key == f"sender:{other['account_id']}"))).one()
    assert (check.state, check.due_at) == ("pending", MONDAY + timedelta(hours=72))
    await o.drive(MONDAY + timedelta(hours=73))
    expired = await o.api("GET", f"/v1/accounts/{other['account_id']}", 200)
    assert expired["status"] == "verification_failed" and "72 hours" in expired["verification"]["detail"]
    assert (await o.api("GET", f"/v1/accounts/{account}", 200))["status"] == "connected"  # the confirmed one stays
