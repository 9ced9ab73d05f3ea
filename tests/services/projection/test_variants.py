"""A/B variants in the views: acceptance rate per invite variant, reply rate per message variant, from the
variants the send events name (on the real broker and Postgres)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from leadstream_schemas import (
    Audience,
    CampaignCreated,
    Channel,
    Envelope,
    Event,
    InviteAccepted,
    InviteSent,
    LeadEnrolled,
    MessageSent,
    Replied,
)

from services.projection.app import build
from services.projection.workload import EPOCH
from services.runtime.auth import create_token
from services.runtime.clock import FakeClock
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.support.kafka import wait_for

from .helpers import produce_all

WS = "ws-ab"


def _log() -> tuple[uuid.UUID, list[Envelope[Any]], list[dict[str, Any]]]:
    """A campaign whose 30 leads got invite variant a or b and message variant short or long; some accepted,
    some replied. Returns the campaign, the envelopes and what each lead got."""
    campaign, account = uuid.uuid4(), uuid.uuid4()
    t = EPOCH
    out: list[Envelope[Any]] = []

    def emit(event: Event) -> None:
        nonlocal t
        t += timedelta(seconds=1)
        out.append(Envelope.new(event, workspace_id=WS, source="leadstream/outreach", time=t))

    emit(CampaignCreated(campaign_id=campaign, name="A/B", audience=Audience(type="source_group", ref="g")))
    leads = []
    for i in range(30):
        lead = uuid.uuid4()
        got: dict[str, Any] = {"invite": "a" if i % 2 else "b", "message": "short" if i % 3 else "long"}
        got["accepted"] = i % 5 != 0
        got["replied"] = got["accepted"] and i % 4 == 0  # only an accepted invite gets the message answered
        leads.append(got)
        ids = {"lead_id": lead, "campaign_id": campaign, "account_id": account}
        emit(LeadEnrolled(**ids, variants={"invite": got["invite"], "message": got["message"]}))
        emit(InviteSent(**ids, step_id="invite", variant=got["invite"]))
        if got["accepted"]:
            emit(InviteAccepted(**ids, step_id="invite"))
            emit(MessageSent(**ids, step_id="message", text="Hi", variant=got["message"]))
            if got["replied"]:
                emit(Replied(**ids, channel=Channel.message, received_at=t))
    return campaign, out, leads


async def test_rates_per_variant(isolated: Isolated, start_service: StartService) -> None:  # noqa: F811
    campaign, log, leads = _log()
    settings = isolated.settings()
    service = await start_service(build(settings, clock=FakeClock(EPOCH + timedelta(days=1))))
    token = await create_token(service.engine, WS)
    other = await create_token(service.engine, "ws-other")
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://t") as http:
        headers = {"Authorization": f"Bearer {token}"}

        async def variants() -> list[dict[str, Any]] | None:
            r = await http.get(f"/v1/campaigns/{campaign}/variants", headers=headers)
            if r.status_code != 200:
                return None
            body = r.json()["variants"]
            total = sum(v["leads"] for v in body if v["step_id"] == "invite")
            return body if total == len(leads) else None

        got = await wait_for(variants, timeout_s=60, what="every lead's invite variant in the views")
        by = {(v["step_id"], v["variant"]): v for v in got}
        for slot, names in (("invite", ("a", "b")), ("message", ("long", "short"))):
            for name in names:
                mine = [g for g in leads if g[slot] == name and (slot == "invite" or g["accepted"])]
                row = by[(slot, name)]
                accepted = sum(1 for g in mine if g["accepted"])
                replied = sum(1 for g in mine if g["replied"])
                assert (row["leads"], row["accepted"], row["replied"]) == (len(mine), accepted, replied), row
                assert row["reply_rate"] == round(replied / len(mine), 4)
                want = round(accepted / len(mine), 4) if slot == "invite" else None
                assert row["acceptance_rate"] == want
        assert sorted(by) == [("invite", "a"), ("invite", "b"), ("message", "long"), ("message", "short")]
        hidden = await http.get(f"/v1/campaigns/{campaign}/variants", headers={"Authorization": f"Bearer {other}"})
        assert hidden.status_code == 404
