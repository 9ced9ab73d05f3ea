"""Helpers for outreach tests: a started service with a fake clock, lead events, and reading what it emitted."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from leadstream_schemas import (
    Envelope,
    Event,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadEmailNotFound,
    LeadProfileEnriched,
    LeadSource,
    MessageApproved,
    Post,
)
from sqlalchemy import func, select, update

from services.outreach.app import build, context_of
from services.outreach.context import OutreachContext
from services.outreach.settings import OutreachSettings
from services.outreach.store import enrollments, sends, timers
from services.runtime.auth import create_token
from services.runtime.clock import FakeClock
from services.runtime.plans import set_plan
from services.runtime.service import Service
from tests.conftest import TEST_PARTITIONS
from tests.support.kafka import produce_events, wait_for
from tests.support.personal import decode_opened

MakeSettings = Callable[..., Any]
StartService = Callable[[Service], Awaitable[Service]]


@dataclass
class Outreach:
    """A started outreach service driven by a fake clock, with an API client for one workspace."""

    service: Service
    ctx: OutreachContext
    clock: FakeClock
    client: httpx.AsyncClient
    workspace: str
    settings: OutreachSettings
    prefix: str
    seen: set[uuid.UUID] = field(default_factory=set)

    async def api(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> Any:
        """Call the API; with ``expect``, assert the status (and show the body when it differs)."""
        resp = await self.client.request(method, path, **kwargs)
        if expect is not None:
            assert resp.status_code == expect, f"{method} {path} -> {resp.status_code}: {resp.text}"
        return resp.json() if resp.content and resp.headers.get("content-type", "").endswith("json") else resp

    async def account(self, name: str = "acct") -> str:
        """Connect a LinkedIn account (simulated: at once)."""
        body = await self.api("POST", "/v1/accounts", 201, json={"provider": "linkedin", "display_name": name})
        return str(body["account_id"])

    async def produce(self, events: Sequence[Event]) -> None:
        """Produce events of this workspace (as the other services would)."""
        envs = [Envelope.new(e, workspace_id=self.workspace, source="test", time=self.clock.now()) for e in events]
        await produce_events(self.settings.kafka_bootstrap_servers, self.prefix, envs)

    async def run(self) -> int:
        """Run every timer due now."""
        return await self.ctx.runner.run_due_timers_once()

    async def drive(self, until: datetime, *, max_step: timedelta | None = None) -> None:
        """Run timers, jumping the fake clock to each next due time, until ``until``."""
        while True:
            await self.run()
            nxt = await self.ctx.runner.next_due_at()
            target = until if nxt is None else min(max(nxt, self.clock.now() + timedelta(seconds=1)), until)
            if max_step is not None:
                target = min(target, self.clock.now() + max_step)
            if self.clock.now() >= until:
                return
            self.clock.set(target)

    async def enrolled(self, campaign_id: str) -> int:
        """How many leads the campaign enrolled (any state)."""
        async with self.service.engine.connect() as conn:
            return int(
                await conn.scalar(select(func.count()).where(enrollments.c.campaign_id == uuid.UUID(campaign_id))) or 0
            )

    async def wait_enrolled(self, campaign_id: str, n: int) -> None:
        """Wait (polling) until the consumer enrolled ``n`` leads."""

        async def check() -> bool:
            return await self.enrolled(campaign_id) >= n

        await wait_for(check, timeout_s=60, what=f"{n} enrollments")

    async def events(self, where: Callable[[Envelope[Any]], bool] | None = None) -> list[Envelope[Any]]:
        """Every event this service published so far (after its outbox drained), of this workspace."""

        async def drained() -> bool:
            return await self.service.relay.backlog() == 0

        await wait_for(drained, timeout_s=30, what="outbox drained")
        out = [
            e
            for e in await read_all(self.settings.kafka_bootstrap_servers, self.prefix)
            if e.workspace_id == self.workspace and e.source == "leadstream/outreach"
        ]
        return [e for e in out if where is None or where(e)]


async def read_all(bootstrap: str, prefix: str) -> list[Envelope[Any]]:
    """Every record on the four event topics up to their current end, decoded."""
    topics = [prefix + t for t in ("leadstream.lead.v1", "leadstream.campaign.v1", "leadstream.account.v1")]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(TEST_PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out: list[Envelope[Any]] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                out.extend(decode_opened(r.value, r.headers) for r in recs)
        return sorted(out, key=lambda e: e.time)
    finally:
        await consumer.stop()


def _caught_up(service: Service) -> bool:
    """Every consumer of ``service`` is at the end of each partition it was assigned (its backlog is read)."""
    for group in service.consumers:
        if group.blocked:
            continue
        assigned = group.consumer.assignment() if group.consumer is not None else set()
        lag = group.lag()
        if not assigned or set(lag) < assigned or any(lag.values()):
            return False
    return True


async def start_outreach(
    make_settings: Any,
    start_service: Any,
    topic_prefix: str,
    *,
    start: datetime,
    linkedin: Any = None,
    email: Any = None,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> Outreach:
    """Build and start outreach with a fake clock (the background timer loops off: tests step timers, so no call
    is ever under way while a lost answer is reconciled, which may then happen at once)."""
    values: dict[str, Any] = {
        "timer_loop_enabled": False,
        "sim_transient_error_rate": 0.0,
        "sim_connected_rate": 0.0,
        "send_reconcile_after_s": 0.0,
        "consumer_lag_interval_s": 0.1,  # the backlog is known read (below) within a tenth of a second
    }
    values.update(overrides)
    settings = make_settings("outreach", OutreachSettings, **values)
    clock = clock or FakeClock(start)
    service = build(settings, clock, linkedin=linkedin, email=email)
    await start_service(service)
    # The consumers first read what the session's earlier tests produced since outreach last ran (its group is the
    # same for every test), and that backlog can schedule steps of their campaigns: cancel leftovers once it is read,
    # not before (the tables exist only once the service migrated, and no timer runs before the test steps one).
    await wait_for(partial(_caught_up, service), timeout_s=60, what="outreach read the session's backlog")
    async with service.engine.begin() as conn:
        # Earlier tests' services are gone: their leftover timers must not run on this test's clock.
        await conn.execute(
            update(timers)
            .where(timers.c.state.in_(("pending", "waiting")))
            .values(state="cancelled", outcome="test isolation")
        )
        # Nor their send intents still waiting for an answer (reconciled on the wall clock, by the same runner).
        await conn.execute(
            update(sends).where(sends.c.state == "pending").values(state="unknown", detail="test isolation")
        )
    workspace = f"ws-{uuid.uuid4().hex[:8]}"
    token = await create_token(service.engine, workspace)
    # A workspace on the plan with every feature (the plan gates are tested on their own, in test_plans.py).
    await set_plan(service.engine, workspace, "scale", ["video"])
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {token}"},
    )
    return Outreach(service, context_of(service), clock, client, workspace, settings, topic_prefix)


def lead_events(
    group: uuid.UUID, n: int, *, domain: str = "example.com", email: bool = True, tag: str = ""
) -> tuple[list[uuid.UUID], list[Event]]:
    """Discovery and enrichment events of ``n`` leads of a source group (each with a post)."""
    ids: list[uuid.UUID] = []
    events: list[Event] = []
    for i in range(n):
        lead_id = uuid.uuid5(group, f"lead-{tag}{i}")  # deterministic: the simulation's choices repeat
        ids.append(lead_id)
        url = f"https://www.linkedin.com/in/lead-{tag}{i}-{lead_id.hex[:6]}"
        events.append(
            LeadDiscovered(
                lead_id=lead_id,
                source=LeadSource.search,
                source_group_id=group,
                linkedin_url=url,
                full_name=f"Lead {i}",
                first_name="Lead",
                company="Acme",
            )
        )
        events.append(
            LeadProfileEnriched(
                lead_id=lead_id,
                full_name=f"Lead {i}",
                first_name="Lead",
                company_name="Acme",
                linkedin_url=url,
                recent_posts=[Post(text="We doubled pipeline", url=f"{url}/post/1")],
            )
        )
        if email:
            events.append(LeadEmailEnriched(lead_id=lead_id, email=f"lead{i}.{lead_id.hex[:6]}@{domain}"))
        else:
            events.append(LeadEmailNotFound(lead_id=lead_id, reason="not_found"))
    return ids, events


def approvals(
    campaign_id: str, lead_ids: Sequence[uuid.UUID], step_id: str, channel: str, subject: str | None = None
) -> list[Event]:
    """MessageApproved for one step of each lead (as messaging would emit with review off)."""
    return [
        MessageApproved(
            lead_id=lead,
            campaign_id=uuid.UUID(campaign_id),
            draft_id=uuid.uuid4(),
            channel=channel,
            step_id=step_id,
            text=f"Hi Lead, a note for step {step_id}",
            subject=subject,
            auto=True,
        )
        for lead in lead_ids
    ]


def of_type(events: Sequence[Envelope[Any]], name: str) -> list[Envelope[Any]]:
    """Events whose class is called ``name``."""
    return [e for e in events if type(e.data).__name__ == name]


def signed(
    settings: OutreachSettings, payload: dict[str, Any], provider: Literal["linkedin", "email"] = "linkedin"
) -> dict[str, Any]:
    """``content`` and headers of a webhook signed like ``provider`` does (Standard Webhooks, with its key)."""
    import json
    import time

    from services.runtime.webhooks import signed_headers

    body = json.dumps(payload).encode()
    key = settings.keys(f"{provider}_webhook_secret").signing
    headers = signed_headers(key, f"msg_{uuid.uuid4().hex}", int(time.time()), body)
    return {"content": body, "headers": {**headers, "content-type": "application/json"}}
