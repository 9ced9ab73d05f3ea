"""SIGKILL of the outreach service mid-campaign, then a restart: no timer is lost and no action is sent
twice. Runs ``python -m services.outreach`` as an OS process with a scaled clock on the real broker and
database, and checks the events on Kafka and the simulated provider's own record of what it performed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import ConsumerRecord
from leadstream_schemas import (
    Envelope,
    InviteAccepted,
    InviteSent,
    LeadCompleted,
    LeadEnrolled,
    MessageApproved,
    Replied,
    decode,
    headers_dict,
)
from sqlalchemy import text

from services.runtime.auth import create_token
from services.runtime.db import create_engine
from tests.services.outreach.support import lead_events
from tests.support.kafka import produce_events, wait_for
from tests.support.probe.process import ServiceProcess, free_port
from tests.support.probe.tail import Records, Tail

LEADS = 30
KILL_AFTER = 8  # invites on Kafka when the process is killed
ACTIONS = {"InviteSent", "MessageSent", "EmailSent", "PostLiked", "CommentPosted", "ActionSkipped", "ActionFailed"}
WORKFLOW = {
    "steps": [
        {"id": "invite", "action": "invite", "note": False, "accept_timeout_hours": 2},
        {"id": "message", "action": "message"},
        {"id": "follow_up", "action": "message"},
    ],
    "edges": [
        {"from": "invite", "to": "message", "condition": "accepted", "wait_hours": 1},
        {"from": "message", "to": "follow_up", "delay_minutes": 5},
    ],
}


def _events(records: Records) -> list[Envelope[Any]]:
    return [decode(r.value, r.headers) for r in records]


def _ids(records: Records, event_type: str) -> dict[str, set[str]]:
    """Distinct event ids per lead for one type (a record re-published after the crash counts once)."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in records:
        h = headers_dict(r.headers)
        if h.get("ce_type") == event_type:
            out[r.key.decode()].add(h["ce_id"])
    return out


def _finished(records: Records) -> int:
    ended = _ids(records, LeadCompleted.event_type).keys() | _ids(records, Replied.event_type).keys()
    return len(ended)


async def _ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            return (await http.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_sigkill_mid_campaign_loses_no_timer_and_sends_nothing_twice(
    subprocess_env: dict[str, str], topic_prefix: str, database_url: str, tmp_path: Path
) -> None:
    bootstrap = subprocess_env["KAFKA_BOOTSTRAP_SERVERS"]
    port = free_port()
    env = {
        **subprocess_env,
        "LEADSTREAM_HTTP_PORT": str(port),
        "LEADSTREAM_CLOCK_SCALE": "1800",  # half an hour of campaign time per real second
        "LEADSTREAM_CLOCK_EPOCH": datetime.now(UTC).isoformat(),
        "LEADSTREAM_TIMER_POLL_INTERVAL_S": "0.05",
        "LEADSTREAM_SIM_CONNECTED_RATE": "0",
        "LEADSTREAM_LOG_LEVEL": "WARNING",
    }
    service = ServiceProcess("services.outreach", env, tmp_path / "outreach.log")
    workspace = f"ws-kill-{uuid.uuid4().hex[:6]}"
    engine = create_engine(database_url)
    await service.start()
    try:
        await wait_for(lambda: _ready(port), timeout_s=90, what=f"outreach ready\n{service.log_tail()}")
        async with engine.begin() as conn:  # earlier tests' timers are not this campaign's business
            await conn.execute(
                text("UPDATE outreach.timers SET state = 'cancelled' WHERE state IN ('pending', 'waiting')")
            )
        token = await create_token(engine, workspace)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            accounts = [
                (await http.post("/v1/accounts", json={"provider": "linkedin"})).json()["account_id"] for _ in range(2)
            ]
            group = uuid.uuid4()
            created = await http.post(
                "/v1/campaigns",
                json={
                    "name": "Kill me",
                    "audience": {"type": "source_group", "ref": str(group)},
                    "workflow": WORKFLOW,
                    "delivery": {
                        "pace": "manual",
                        "daily_limit": 75,
                        "active_days": "every_day",
                        "start_hour": 0,
                        "end_hour": 24,
                    },
                    "account_ids": accounts,
                },
            )
            assert created.status_code == 201, created.text
            campaign_id = created.json()["campaign_id"]
            launched = await http.post(f"/v1/campaigns/{campaign_id}/launch")
            assert launched.json()["state"] == "running", launched.text
        leads, events = lead_events(group, LEADS, tag=workspace)
        approvals = [
            MessageApproved(
                lead_id=lead,
                campaign_id=uuid.UUID(campaign_id),
                draft_id=uuid.uuid4(),
                channel="message",
                step_id=step,
                text=f"Hello from {step}",
                auto=True,
            )
            for lead in leads
            for step in ("message", "follow_up")
        ]
        await produce_events(
            bootstrap,
            topic_prefix,
            [Envelope.new(e, workspace_id=workspace, source="test") for e in [*events, *approvals]],
        )

        def ours(r: ConsumerRecord[Any, Any]) -> bool:
            h = headers_dict(r.headers)
            return h.get("workspaceid") == workspace and h.get("ce_source") == "leadstream/outreach"

        async with Tail(bootstrap, [topic_prefix + "leadstream.lead.v1"], keep=ours) as tail:
            await tail.until(
                lambda rs: (
                    len(_ids(rs, LeadEnrolled.event_type)) == LEADS
                    and len(_ids(rs, InviteSent.event_type)) >= KILL_AFTER
                ),
                timeout_s=120,
                what=f"{KILL_AFTER} invites before the kill\n{service.log_tail()}",
            )
            assert await service.kill() == -9
            await tail.poll()
            assert len(_ids(tail.records, InviteSent.event_type)) < LEADS, "the kill was not mid-campaign"

            await service.start()
            await tail.until(
                lambda rs: _finished(rs) == LEADS,
                timeout_s=240,
                what=f"every lead finished after the restart\n{service.log_tail()}",
            )
            # Simulated answers come in scaled campaign time (replies 10 min-8 h after a message): within seconds.
            await tail.until(
                lambda rs: bool(_ids(rs, InviteAccepted.event_type) and _ids(rs, Replied.event_type)),
                timeout_s=120,
                what=f"simulated acceptances and replies\n{service.log_tail()}",
            )
        records = tail.records
    finally:
        await service.stop()

    # Every lead got exactly one invite and each (lead, step) action happened exactly once.
    invites = _ids(records, InviteSent.event_type)
    assert sorted(invites) == sorted(str(lead) for lead in leads)
    assert all(len(ids) == 1 for ids in invites.values())
    per_step: dict[tuple[str, str | None], set[Any]] = defaultdict(set)
    for e in _events(records):
        if type(e.data).__name__ in ACTIONS:
            per_step[(str(e.data.lead_id), e.data.step_id)].add(e.id)
    duplicated = {k: v for k, v in per_step.items() if len(v) != 1}
    assert not duplicated, duplicated
    assert any(step == "message" for _, step in per_step)  # the campaign got past its invites

    async with engine.connect() as conn:
        sent = set(
            (
                await conn.execute(
                    text("SELECT request_id::text FROM outreach.sends WHERE campaign_id = :c AND NOT dry_run"),
                    {"c": campaign_id},
                )
            ).scalars()
        )
        performed = set(
            (
                await conn.execute(
                    text("SELECT request_id FROM outreach.sim_linkedin_requests WHERE lead_id = ANY(:leads)"),
                    {"leads": [str(lead) for lead in leads]},
                )
            ).scalars()
        )
        live = await conn.scalar(
            text(
                "SELECT count(*) FROM outreach.timers WHERE campaign_id = :c AND kind IN ('step', 'accept_wait') "
                "AND state IN ('pending', 'waiting')"
            ),
            {"c": campaign_id},
        )
    await engine.dispose()
    # What the provider performed is exactly what outreach recorded as sent: nothing twice, nothing lost.
    assert performed == sent
    assert len(sent) == len({e.id for e in _events(records) if type(e.data).__name__ in {"InviteSent", "MessageSent"}})
    assert live == 0  # no timer was left behind
