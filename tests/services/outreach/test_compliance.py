"""Send-time compliance: blocklist and suppression stop sends; email fallback is dry-run with the full email."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from leadstream_schemas import LeadDiscovered, LeadErased, LeadSource, SkipReason
from sqlalchemy import func, select

from services.outreach.store import leads, suppressions, texts
from services.runtime.auth import create_token
from services.runtime.personal import person_keys
from services.runtime.webhooks import link_token
from tests.services.outreach.support import MakeSettings, StartService, approvals, lead_events, of_type, start_outreach
from tests.support.kafka import wait_for

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
FALLBACK_GRAPH = {
    "steps": [
        {"id": "invite", "action": "invite", "note": False, "accept_timeout_hours": 1},
        {"id": "email", "action": "email"},
    ],
    "edges": [{"from": "invite", "to": "email", "condition": "not_accepted", "delay_minutes": 60}],
}
SENDS = {"InviteSent", "MessageSent", "EmailSent", "PostLiked", "CommentPosted"}


async def test_blocklist_unsubscribe_and_dry_run_email(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY, sim_accept_rate=0.0)
    sender = await o.api("POST", "/v1/accounts", 201, json={"provider": "email", "sender_email": "Sales@Ours.example"})
    assert sender["sender_email_verified"] is True
    account = await o.account()
    group = uuid.uuid4()
    campaign = await o.api(
        "POST",
        "/v1/campaigns",
        201,
        json={
            "name": "Fallback",
            "audience": {"type": "source_group", "ref": str(group)},
            "workflow": FALLBACK_GRAPH,
            "delivery": {
                "active_days": "every_day",
                "start_hour": 0,
                "end_hour": 24,
                "email_fallback": {
                    "sender_email": "sales@ours.example",
                    "subject": "Hello {first_name}",
                    "body": "Hi {first_name}",
                },
            },
            "account_ids": [account],
        },
    )
    cid = campaign["campaign_id"]
    assert campaign["delivery"]["dry_run"] is True
    email_step = next(s for s in campaign["workflow"]["steps"] if s["id"] == "email")
    assert email_step["subject"] == "Hello {first_name}" and email_step["channel"] == "email"
    assert (
        await o.api("POST", "/v1/blocklist", 201, json={"kind": "domain", "value": "https://www.Blocked.example/"})
    ) == {"kind": "domain", "value": "blocked.example"}
    refused = await o.api("POST", f"/v1/campaigns/{cid}/launch", 422, json={})
    assert refused["code"] == "confirmation_required"
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200, json={"confirm_email_fallback": True})

    (blocked,), blocked_events = lead_events(group, 1, domain="mail.blocked.example", tag="b" + o.workspace)
    (unsub, ok), ok_events = lead_events(group, 2, domain="fine.example", tag="o" + o.workspace)
    (noemail,), no_events = lead_events(group, 1, email=False, tag="n" + o.workspace)
    everyone = [blocked, unsub, ok, noemail]
    await o.produce(blocked_events + ok_events + no_events)
    await o.wait_enrolled(cid, 4)
    await o.produce(approvals(cid, everyone, "email", "email", subject="A quick idea for Acme"))

    async def stored() -> bool:
        async with o.service.engine.connect() as conn:
            return (
                int(
                    await conn.scalar(
                        select(func.count()).select_from(texts).where(texts.c.campaign_id == uuid.UUID(cid))
                    )
                    or 0
                )
                == 4
            )

    await wait_for(stored, timeout_s=60, what="approved emails")
    forged = {"w": o.workspace, "l": str(unsub), "t": "forged"}
    assert (await o.client.post("/v1/unsubscribe", params=forged)).status_code == 403
    token = link_token(o.settings.keys("unsubscribe_secret"), o.workspace, str(unsub))
    first = await o.api(
        "POST",
        "/v1/unsubscribe",
        200,
        params={"w": o.workspace, "l": str(unsub), "t": token},
        content=b"List-Unsubscribe=One-Click",  # RFC 8058: what a mail client POSTs
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert first == {"unsubscribed": True, "already": False}
    await o.drive(MONDAY + timedelta(days=1))

    got = await o.events()

    def of_lead(lead: uuid.UUID) -> list[str]:
        return [type(e.data).__name__ for e in got if getattr(e.data, "lead_id", None) == lead]

    skipped = {(e.data.lead_id, e.data.step_id): e.data for e in of_type(got, "ActionSkipped")}
    assert skipped[(blocked, "invite")].reason == SkipReason.blocked
    assert "domain blocked.example" in (skipped[(blocked, "invite")].detail or "")
    assert skipped[(unsub, "invite")].reason == SkipReason.suppressed
    assert not SENDS & set(of_lead(blocked)) and not SENDS & set(of_lead(unsub))
    assert (blocked, "email") not in skipped and (unsub, "email") not in skipped  # stopped on every channel
    assert [e.data.via for e in of_type(got, "LeadUnsubscribed")] == ["one_click"]
    assert skipped[(noemail, "email")].reason == SkipReason.no_contact
    dry = skipped[(ok, "email")]
    assert dry.reason == SkipReason.dry_run
    rendered = dry.rendered or {}
    assert rendered["from"] == "sales@ours.example" and rendered["to"].endswith("@fine.example")
    assert rendered["subject"] == "A quick idea for Acme"
    assert rendered["body"].startswith("Hi Lead, a note for step email")
    assert rendered["unsubscribe_url"] in rendered["body"]
    assert rendered["list_unsubscribe"] == f"<{rendered['unsubscribe_url']}>"
    assert rendered["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert {e.data.lead_id for e in of_type(got, "InviteSent")} == {ok, noemail}
    assert not of_type(got, "EmailSent")
    assert o.ctx.email.sent == []  # type: ignore[attr-defined]

    # Opening the link (a person, or a mail scanner following it) only shows a page whose button POSTs.
    link = urlsplit(rendered["unsubscribe_url"])
    page = await o.client.get(f"{link.path}?{link.query}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post"' in page.text and "<button" in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    suppressed = (await o.api("GET", "/v1/suppressions", 200))["items"]
    assert {"kind": "lead", "value": str(ok), "reason": "unsubscribed"} not in suppressed
    forged_page = await o.client.get("/v1/unsubscribe", params={**dict(parse_qsl(link.query)), "t": "forged"})
    assert forged_page.status_code == 403
    # The page's button: a form POST to the same link, answered with a page.
    action = html.unescape(re.search(r'action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    done = await o.client.post(action, data={"confirm": "yes"}, headers={"accept": "text/html"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    suppressed = (await o.api("GET", "/v1/suppressions", 200))["items"]
    assert {"kind": "lead", "value": str(ok), "reason": "unsubscribed"} in suppressed
    assert {"kind": "lead", "value": str(unsub), "reason": "unsubscribed"} in suppressed
    vias = {e.data.lead_id: e.data.via for e in of_type(await o.events(), "LeadUnsubscribed")}
    assert vias == {unsub: "one_click", ok: "link"}


async def test_erasure_destroys_the_key_blanks_outreachs_copy_suppresses_and_emits_once(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    lead = uuid.uuid4()
    await o.produce(
        [
            LeadDiscovered(
                lead_id=lead,
                source=LeadSource.manual,
                full_name="Ottilie Erasable",
                email="ottilie@erase.example",
                linkedin_url="https://www.linkedin.com/in/ottilie-erasable",
            )
        ]
    )

    async def known() -> bool:
        async with o.service.engine.connect() as conn:
            return await conn.scalar(select(leads.c.full_name).where(leads.c.lead_id == lead)) == "Ottilie Erasable"

    await wait_for(known, timeout_s=60, what="outreach to know the lead")
    assert (await o.client.post(f"/v1/leads/{uuid.uuid4()}/erasure")).status_code == 404
    first = await o.api("POST", f"/v1/leads/{lead}/erasure", 202)
    assert first == {"lead_id": str(lead), "erased": True, "already": False}
    assert (await o.api("POST", f"/v1/leads/{lead}/erasure", 202))["already"] is True

    async with o.service.engine.connect() as conn:
        row = (await conn.execute(select(leads).where(leads.c.lead_id == lead))).one()
        key = (await conn.execute(select(person_keys).where(person_keys.c.lead_id == lead))).one()
        reason = await conn.scalar(
            select(suppressions.c.reason).where(suppressions.c.kind == "lead", suppressions.c.value == str(lead))
        )
    assert (row.full_name, row.email, row.linkedin_url, row.profile_key) == (None, None, None, None)
    assert key.workspace_id == o.workspace and key.data_key is None and key.erased_at is not None
    assert reason == "erased"
    erased = await o.events(lambda e: isinstance(e.data, LeadErased))
    assert [(e.data.lead_id, e.data.via) for e in erased] == [(lead, "api")]  # once

    # Erasing needs the admin scope.
    write = await create_token(o.service.engine, o.workspace, scopes=["write"])
    r = await o.client.post(f"/v1/leads/{lead}/erasure", headers={"Authorization": f"Bearer {write}"})
    assert r.status_code == 403
