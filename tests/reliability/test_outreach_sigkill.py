"""SIGKILL of the outreach service, then a restart: no timer is lost and no action is sent twice. Runs
``python -m services.outreach`` as an OS process with a scaled clock on the real broker and database.

- mid-campaign: the events on Kafka and the simulated provider's own record of what it performed;
- at each point of a send (``LEADSTREAM_CRASH_AT`` before and after the provider call; a SIGKILL while
  the provider holds a performed request's answer): a LinkedIn provider served over HTTP by the test,
  used through the real HTTP adapter, counts every invitation it performs per idempotency key without
  deduplicating, so a second real send could not hide.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import ConsumerRecord
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from leadstream_schemas import (
    Envelope,
    InviteAccepted,
    InviteSent,
    LeadCompleted,
    LeadEnrolled,
    MessageApproved,
    Replied,
    headers_dict,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.outreach.steps import request_id
from services.runtime.auth import create_token
from services.runtime.db import create_engine
from services.runtime.webhooks import signed_headers
from tests.services.outreach.support import lead_events
from tests.support.campaign import WORKFLOW
from tests.support.kafka import produce_events, wait_for
from tests.support.keys import signing_key
from tests.support.local_http import serve
from tests.support.personal import decode_opened
from tests.support.probe.process import ServiceProcess, free_port
from tests.support.probe.tail import Records, Tail

LEADS = 30
KILL_AFTER = 8  # invites on Kafka when the process is killed
ACTIONS = {"InviteSent", "MessageSent", "EmailSent", "PostLiked", "CommentPosted", "ActionSkipped", "ActionFailed"}


def _events(records: Records) -> list[Envelope[Any]]:
    return [decode_opened(r.value, r.headers) for r in records]


def _ids(records: Records, event_type: str) -> dict[str, set[str]]:
    """Distinct event ids per lead for one type (a record re-published after the crash counts once)."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in records:
        h = headers_dict(r.headers)
        if h.get("ce_type") == event_type:
            out[r.key.decode()].add(h["ce_id"])
    return out


def _types(records: Records) -> dict[str, int]:
    """How many records of each type (what a failure message shows of the log)."""
    return dict(Counter(headers_dict(r.headers).get("ce_type", "?") for r in records))


def _finished(records: Records) -> int:
    ended = _ids(records, LeadCompleted.event_type).keys() | _ids(records, Replied.event_type).keys()
    return len(ended)


async def _timers(engine: AsyncEngine, workspace: str) -> list[tuple[Any, ...]]:
    """The workspace's timers by kind, state and what they wait for: how many, and the earliest due (a failure
    message's account of where a campaign stands)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT kind, state, waiting_for, count(*), min(due_at) FROM outreach.timers "
                "WHERE workspace_id = :ws GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            ),
            {"ws": workspace},
        )
        return [tuple(r) for r in rows]


async def _client(engine: AsyncEngine, port: int, workspace: str) -> httpx.AsyncClient:
    """An API client of the outreach process for a new workspace; earlier tests' timers are cancelled (they
    are not this campaign's business)."""
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE outreach.timers SET state = 'cancelled' WHERE state IN ('pending', 'waiting')"))
    token = await create_token(engine, workspace)
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers)


async def _created(http: httpx.AsyncClient, name: str, group: uuid.UUID, workflow: Any, accounts: list[str]) -> str:
    """A campaign (not launched yet) sending at any hour, up to 75 invites a day per account; its id."""
    delivery = {"pace": "manual", "daily_limit": 75, "active_days": "every_day", "start_hour": 0, "end_hour": 24}
    audience = {"type": "source_group", "ref": str(group)}
    body = {"name": name, "audience": audience, "workflow": workflow, "delivery": delivery, "account_ids": accounts}
    created = await http.post("/v1/campaigns", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["campaign_id"])


async def _launch(http: httpx.AsyncClient, campaign_id: str) -> None:
    launched = await http.post(f"/v1/campaigns/{campaign_id}/launch")
    assert launched.json()["state"] == "running", launched.text


async def _launched(http: httpx.AsyncClient, name: str, group: uuid.UUID, workflow: Any, accounts: list[str]) -> str:
    """A running campaign (see :func:`_created`); its id."""
    campaign_id = await _created(http, name, group, workflow, accounts)
    await _launch(http, campaign_id)
    return campaign_id


async def _ready_members(engine: AsyncEngine, workspace: str) -> int:
    """How many leads outreach holds as ready audience members of the workspace."""
    async with engine.connect() as conn:
        n = await conn.scalar(
            text(
                "SELECT count(*) FROM outreach.leads l JOIN outreach.audience_members m "
                "ON m.workspace_id = l.workspace_id AND m.lead_id = l.lead_id WHERE l.workspace_id = :w AND l.ready"
            ),
            {"w": workspace},
        )
    return int(n or 0)


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
        # An out-of-office answer pauses its lead until "next Monday" (the simulated text): up to 8 campaign days,
        # 384 s here, past the wait for every lead below (it failed so on a Sunday, when next Monday is 8 days
        # away). Pauses and resumes are tested in tests/services/outreach/test_inbox.py and test_stops.py, as in
        # test_fleet_faults.py; here no lead is away.
        "LEADSTREAM_SIM_OUT_OF_OFFICE_RATE": "0",
        "LEADSTREAM_LOG_LEVEL": "WARNING",
    }
    service = ServiceProcess("services.outreach", env, tmp_path / "outreach.log")
    workspace = f"ws-kill-{uuid.uuid4().hex[:6]}"
    engine = create_engine(database_url)
    await service.start()
    try:
        await wait_for(lambda: _ready(port), timeout_s=90, what=f"outreach ready\n{service.log_tail()}")
        async with await _client(engine, port, workspace) as http:
            accounts = [
                (await http.post("/v1/accounts", json={"provider": "linkedin"})).json()["account_id"] for _ in range(2)
            ]
            group = uuid.uuid4()
            campaign_id = await _launched(http, "Kill me", group, WORKFLOW, accounts)
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
            try:
                await tail.until(
                    lambda rs: _finished(rs) == LEADS, timeout_s=240, what="every lead finished after the restart"
                )
            except AssertionError as exc:  # where the unfinished leads stand, read when the wait gave up
                state = await _timers(engine, workspace)
                raise AssertionError(
                    f"{exc}; by type {_types(tail.records)}; timers {state}\n{service.log_tail()}"
                ) from None
            # Simulated answers come in scaled campaign time (replies 10 min-8 h after a message): within seconds.
            try:
                await tail.until(
                    lambda rs: bool(_ids(rs, InviteAccepted.event_type) and _ids(rs, Replied.event_type)),
                    timeout_s=120,
                    what="simulated acceptances and replies",
                )
            except AssertionError as exc:  # what the log holds by then, and what the service logged
                raise AssertionError(f"{exc}; by type {_types(tail.records)}\n{service.log_tail()}") from None
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


class CountingLinkedIn:
    """A Unipile-style LinkedIn API served by the test: it performs (counts) every invitation it receives, per
    idempotency key and across outreach's deaths, without deduplicating, and answers ``GET
    /api/v1/requests/{key}`` truthfully. With ``hold_at`` the invitation of the n-th key is performed but its
    answer is held back (outreach is killed meanwhile)."""

    def __init__(self) -> None:
        self.sends: Counter[str] = Counter()
        self.answers: dict[str, dict[str, str]] = {}
        self.hold_at: int | None = None
        self.held_key: str | None = None
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.app = FastAPI()
        app = self.app

        @app.get("/api/v1/users/{slug}")
        async def user(slug: str, account_id: str) -> dict[str, str]:
            return {"provider_id": f"prov-{slug}", "network_distance": "SECOND_DEGREE"}

        @app.post("/api/v1/users/invite")
        async def invite(idempotency_key: str = Header(...)) -> dict[str, str]:
            self.sends[idempotency_key] += 1
            answer = self.answers[idempotency_key] = {"invitation_id": f"inv-{idempotency_key[:8]}"}
            if self.hold_at is not None and len(self.sends) == self.hold_at and self.sends[idempotency_key] == 1:
                self.held_key = idempotency_key
                self.held.set()
                await self.release.wait()
            return answer

        @app.get("/api/v1/requests/{key}", response_model=None)
        async def lookup(key: str) -> dict[str, str] | JSONResponse:
            found = self.answers.get(key)
            return found if found is not None else JSONResponse({"type": "errors/not_found"}, status_code=404)

        @app.post("/api/v1/hosted/accounts/link")
        async def link() -> dict[str, str]:
            return {"object": "HostedAuthURL", "url": "https://auth.provider.example/hosted"}


SEND_LEADS = 12
SECRET = signing_key("send-sigkill")  # the LinkedIn provider's Standard Webhooks key


async def _connected_account(http: httpx.AsyncClient, n: int) -> str:
    """A LinkedIn account connected through the provider's hosted page and its signed callback."""
    created = await http.post("/v1/accounts", json={"provider": "linkedin"})
    assert created.status_code == 202, created.text
    account_id = str(created.json()["account_id"])
    body = json.dumps({"status": "CREATION_SUCCESS", "account_id": f"prov-acct-{n}", "name": account_id}).encode()
    headers = signed_headers(SECRET, f"msg_{uuid.uuid4().hex}", int(time.time()), body)
    done = await http.post(
        "/v1/accounts/callback", content=body, headers={**headers, "content-type": "application/json"}
    )
    assert done.status_code == 200, done.text
    return account_id


async def test_sigkill_before_during_and_after_a_send_never_sends_twice(
    subprocess_env: dict[str, str], topic_prefix: str, database_url: str, tmp_path: Path
) -> None:
    provider = CountingLinkedIn()
    port = free_port()
    workspace = f"ws-sends-{uuid.uuid4().hex[:6]}"
    engine = create_engine(database_url)
    settled: dict[str, float] = {}  # request id -> when the test first saw its final outcome (sent or unknown)

    async def states(campaign_id: str) -> dict[str, str]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT request_id::text, state FROM outreach.sends WHERE campaign_id = :c"), {"c": campaign_id}
            )
            return {r[0]: r[1] for r in rows}

    async with serve(provider.app) as provider_url:
        env = {
            **subprocess_env,
            "LEADSTREAM_HTTP_PORT": str(port),
            "LEADSTREAM_CLOCK_SCALE": "1800",
            "LEADSTREAM_CLOCK_EPOCH": datetime.now(UTC).isoformat(),
            "LEADSTREAM_TIMER_POLL_INTERVAL_S": "0.05",
            "LEADSTREAM_LINKEDIN_PROVIDER": "http",
            "LEADSTREAM_UNIPILE_BASE_URL": provider_url,
            "LEADSTREAM_UNIPILE_API_KEY": "test-key",
            "LEADSTREAM_LINKEDIN_WEBHOOK_SECRET": SECRET,
            "LEADSTREAM_SEND_RECONCILE_AFTER_S": "1",  # calls to this local provider take milliseconds
            "LEADSTREAM_LOG_LEVEL": "WARNING",
        }

        def outreach(crash_at: str = "") -> ServiceProcess:
            return ServiceProcess("services.outreach", {**env, "LEADSTREAM_CRASH_AT": crash_at}, tmp_path / "o.log")

        async def started(proc: ServiceProcess) -> ServiceProcess:
            await proc.start()
            await wait_for(lambda: _ready(port), timeout_s=90, what=f"outreach ready\n{proc.log_tail()}")
            return proc

        # 1. Killed right after committing its third send intent, before calling the provider.
        proc = await started(outreach("outreach.send.before_call:3"))
        async with await _client(engine, port, workspace) as http:
            accounts = [await _connected_account(http, n) for n in range(2)]
            group = uuid.uuid4()
            invite_only = {"steps": [{"id": "invite", "action": "invite", "note": False}]}
            campaign_id = await _created(http, "Kill the sends", group, invite_only, accounts)
            leads, events = lead_events(group, SEND_LEADS, tag=workspace)
            keys = {request_id(uuid.UUID(campaign_id), lead, "invite"): lead for lead in leads}
            await produce_events(
                subprocess_env["KAFKA_BOOTSTRAP_SERVERS"],
                topic_prefix,
                [Envelope.new(e, workspace_id=workspace, source="test") for e in events],
            )
            # Launched once every lead is a ready member: the launch enrolls all twelve at once. Launched before,
            # the leads enrolled first could all be invited (one step each) while a partition's events were still
            # unread (a restart waits for the killed member's session to expire); the campaign, finding nothing
            # left to enroll, finished, and the later leads were late joiners waiting for a resume.
            await wait_for(
                lambda: _ready_members(engine, workspace),
                until=lambda n: n == SEND_LEADS,
                timeout_s=120,
                what="every lead a ready audience member",
            )
            await _launch(http, campaign_id)

        async def every_send_settled() -> bool:
            # Notes when each send settled, on the way: the recovery figures printed at the end.
            now = time.monotonic()
            for key, state in (await states(campaign_id)).items():
                if state in ("sent", "unknown"):
                    settled.setdefault(key, now)
            return len(settled) == SEND_LEADS

        watcher = asyncio.create_task(
            wait_for(every_send_settled, timeout_s=600, interval_s=0.05, what="every send settled (watched)")
        )
        try:
            assert await proc.exited(timeout_s=120) == -9, proc.log_tail()
            killed_at = {"before": time.monotonic()}
            (before,) = [k for k, st in (await states(campaign_id)).items() if st == "pending"]
            assert provider.sends[before] == 0  # committed, never sent

            # 2. Killed after the provider answered its second send, before the answer was recorded.
            proc = await started(outreach("outreach.send.after_call:2"))
            assert await proc.exited(timeout_s=120) == -9, proc.log_tail()
            killed_at["after"] = time.monotonic()
            # (the second send may be the first one's retry, once the provider said it never arrived)
            (after,) = [k for k, st in (await states(campaign_id)).items() if st == "pending" and provider.sends[k]]

            # 3. Killed while the provider holds the answer of a send it performed.
            provider.hold_at = len(provider.sends) + 2
            proc = await started(outreach())
            await asyncio.wait_for(provider.held.wait(), timeout=120)
            assert await proc.kill() == -9
            killed_at["during"] = time.monotonic()
            during = provider.held_key
            assert during is not None and (await states(campaign_id))[during] == "pending"
            provider.release.set()

            # 4. A clean restart settles the lost answers and sends the rest.
            proc = await started(outreach())

            async def finished() -> bool:
                found = await states(campaign_id)
                return len(found) == SEND_LEADS and "pending" not in found.values()

            try:
                await wait_for(finished, timeout_s=180, what="every send settled")
            except AssertionError as exc:  # say what was left, and what the service logged
                left = Counter((await states(campaign_id)).values())
                raise AssertionError(f"{exc}; sends by state {dict(left)} of {SEND_LEADS}\n{proc.log_tail()}") from None
            await watcher  # it notes the last ones within a poll

            def ours(r: ConsumerRecord[Any, Any]) -> bool:
                h = headers_dict(r.headers)
                return h.get("workspaceid") == workspace and h.get("ce_source") == "leadstream/outreach"

            async with Tail(
                subprocess_env["KAFKA_BOOTSTRAP_SERVERS"], [topic_prefix + "leadstream.lead.v1"], ours
            ) as t:
                records = await t.until(
                    lambda rs: _finished(rs) == SEND_LEADS, timeout_s=120, what=f"every lead done\n{proc.log_tail()}"
                )
        finally:
            watcher.cancel()
            await proc.stop()
    final = await states(campaign_id)
    await engine.dispose()

    # Never more than one real send per (lead, step); every step ended sent (nothing lost, nothing unknown:
    # this provider can be asked).
    assert max(provider.sends.values()) == 1, provider.sends
    assert set(provider.sends) == set(keys) and set(final) == set(keys)
    assert set(final.values()) == {"sent"}
    invites = _ids(records, InviteSent.event_type)
    assert sorted(invites) == sorted(str(lead) for lead in leads) and all(len(i) == 1 for i in invites.values())
    assert not _ids(records, "leadstream.lead.action_failed.v1")
    recovery = {
        point: round(settled[key] - killed_at[point], 1)
        for point, key in [("before", before), ("after", after), ("during", during)]
    }
    print(f"send SIGKILL: seconds from the kill to the killed send's final outcome: {recovery}")
