"""End to end: every service as a separate OS process on the real broker and database.

A saved search discovers leads; they are enriched, written to, invited, and some reply. The
projection's timeline of a replying lead shows the lifecycle in causal order, and a webhook
subscriber receives the lead's events signed, in the order they are on the log. Every record the run
put on the event topics looks exactly like the golden record of its type and validates against the
committed schemas (the wire is the contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from leadstream_schemas import LEAD, TOPICS, DecodeError, Envelope, LeadEnrolled, MessageGenerated, decode, headers_dict

from leadstream_cli.demo import CLOCK_SCALE, LIFECYCLE, SERVICES, DemoScenario
from leadstream_cli.processes import ServiceFleet, free_port
from services.runtime import auth
from services.runtime.db import create_engine
from services.runtime.migrations import upgrade
from tests.support.infra import Infra
from tests.support.kafka import read_until, wait_for
from tests.support.personal import decode_opened
from tests.support.webhook_receiver import Receiver
from tests.support.wire import wire_mismatches

pytestmark = pytest.mark.e2e
WORKSPACE = "ws-e2e"


@pytest.fixture
async def fleet(subprocess_env: dict[str, str], own_topic_prefix: str, tmp_path: Path) -> AsyncIterator[ServiceFleet]:
    """Every service as a process, on topics of the test's own: on the session's, each service (messaging and
    enrichment with their simulated latency per record) first worked through what the session's earlier tests had
    produced since its group last committed, before reaching this test's lead."""
    started = datetime.now(UTC)
    fleet = ServiceFleet(
        env={
            **subprocess_env,
            "LEADSTREAM_TOPIC_PREFIX": own_topic_prefix,
            "LEADSTREAM_CLOCK_SCALE": str(CLOCK_SCALE),
            "LEADSTREAM_CLOCK_EPOCH": started.isoformat(),
            "LEADSTREAM_LOG_JSON": "true",
            "LEADSTREAM_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",  # the receiver is on this machine
            "LEADSTREAM_WEBHOOKS_ALLOW_HTTP": "true",
        },
        log_dir=tmp_path / "logs",
        ports={name: free_port() for name in SERVICES},
    )
    try:
        for name in SERVICES:
            fleet.start(name)
        await asyncio.to_thread(fleet.wait_ready, 180)
        yield fleet
    finally:
        await asyncio.to_thread(fleet.stop)


def _listening(log: Path) -> dict[str, Any]:
    """The JSON log line a service writes once it listens (empty if there is none)."""
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("msg") == "http listening":
                return record
    return {}


def _campaign_events(records: list[Any], campaign_id: str) -> list[Envelope[Any]]:
    out = []
    for r in records:
        try:
            env = decode_opened(r.value, r.headers)
        except DecodeError:
            continue  # not a record of this run's services (they only write what decodes)
        if env.workspace_id == WORKSPACE and str(getattr(env.data, "campaign_id", "")) == campaign_id:
            out.append(env)
    return out


async def test_lead_travels_through_all_services(
    fleet: ServiceFleet, database_url: str, infra: Infra, own_topic_prefix: str
) -> None:
    topic_prefix = own_topic_prefix  # the fleet's

    # Each service, once it listens, has moved what start-up made out of the garbage collector's sight (its full
    # collections scan only what it made since: runtime.service.freeze_start_up), and says how much.
    def frozen() -> dict[str, int] | None:
        lines = {name: _listening(sp.log_path) for name, sp in fleet.procs.items()}
        return {name: int(line.get("gc_frozen", 0)) for name, line in lines.items()} if all(lines.values()) else None

    counts = await wait_for(frozen, what="every service's 'http listening' log line")
    assert all(n > 10_000 for n in counts.values()), counts
    # ... and runs on uvloop (RuntimeSettings.event_loop's default), which the line names.
    loops = {name: _listening(sp.log_path).get("event_loop") for name, sp in fleet.procs.items()}
    assert set(loops.values()) == {"uvloop"}, loops
    await upgrade(auth.MIGRATIONS_DIR, database_url, auth.IDENTITY_SCHEMA)
    engine = create_engine(database_url)
    try:
        token = await auth.create_token(engine, WORKSPACE)
    finally:
        await engine.dispose()
    async with Receiver().running() as receiver:
        async with httpx.AsyncClient(
            base_url=fleet.procs["webhooks"].url, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            r = await client.post(
                "/v1/webhooks/subscriptions", json={"url": receiver.url, "event_types": ["leadstream.lead.*"]}
            )
            assert r.status_code == 201, r.text
            receiver.secrets = [r.json()["secret"]]
        await _lead_lifecycle(fleet, token, infra, topic_prefix, receiver)
    await _wire_is_the_contract(infra, topic_prefix)


async def _wire_is_the_contract(infra: Infra, topic_prefix: str) -> None:
    """Every record this run's services produced (this workspace, all event topics) matches the contract."""

    def ours(records: list[Any]) -> list[Any]:
        return [r for r in records if headers_dict(r.headers).get("workspaceid") == WORKSPACE]

    def lifecycle_read(records: list[Any]) -> bool:
        return {headers_dict(r.headers).get("ce_type") for r in ours(records)} >= set(LIFECYCLE)

    topics = [topic_prefix + name for name in sorted(TOPICS)]
    records = ours(await read_until(infra.kafka_bootstrap_servers, topics, lifecycle_read, timeout_s=120))
    problems = [
        problem
        for r in records
        for problem in wire_mismatches(r.topic.removeprefix(topic_prefix), r.key, r.value, r.headers)
    ]
    assert problems == [], "\n".join(sorted(set(problems))[:40])
    produced = {headers_dict(r.headers)["ce_type"] for r in records}
    sources = {headers_dict(r.headers)["ce_source"] for r in records}
    assert {"leadstream/discovery", "leadstream/enrichment", "leadstream/messaging", "leadstream/outreach"} <= sources
    assert len(produced) >= 8, sorted(produced)


def _approve_pending(scenario: DemoScenario, campaign_id: str) -> int:
    """Approve every draft waiting in the Messaging Lab (what a reviewer does); how many were approved."""
    try:
        pending = scenario.pending_drafts(campaign_id)
    except RuntimeError:  # messaging has not seen the campaign yet
        return 0
    for draft in pending:
        scenario.approve(str(draft["draft_id"]))
    return len(pending)


async def _prepare_review_launch(scenario: DemoScenario) -> str:
    """Prepare a campaign whose drafts wait for review, review them in the Messaging Lab, then launch it: nothing
    is sent before the launch, and the launch sends the approved drafts."""
    account = await asyncio.to_thread(scenario.connect_account, "E2E SDR")
    campaign_id, _ = await asyncio.to_thread(
        scenario.create_campaign,
        "E2E campaign",
        account,
        leads=25,
        prompt="B2B SaaS companies hiring SDRs",
        review=True,
    )
    prepared = await asyncio.to_thread(scenario.prepare, campaign_id)
    assert prepared["state"] == "prepared"
    reviewed = await wait_for(
        lambda: asyncio.to_thread(_approve_pending, scenario, campaign_id),
        timeout_s=180,
        interval_s=1.0,
        what="drafts of prepared leads in the Messaging Lab",
    )
    assert reviewed >= 1
    before = await asyncio.to_thread(scenario.call, "GET", "outreach", f"/v1/campaigns/{campaign_id}")
    assert before["state"] == "prepared" and before["leads"].get("prepared", 0) >= 1
    assert before["sent"] == {}  # reviewed, not launched: nothing sent
    launched = await asyncio.to_thread(scenario.launch, campaign_id)
    assert launched["state"] == "running"
    return campaign_id


async def _lead_lifecycle(fleet: ServiceFleet, token: str, infra: Infra, topic_prefix: str, receiver: Receiver) -> None:
    scenario = DemoScenario(fleet, token)
    campaign_id = await _prepare_review_launch(scenario)

    def full_lifecycle_lead() -> str | None:
        _approve_pending(scenario, campaign_id)  # leads prepared or enrolled later get their drafts reviewed too
        for row in scenario.results(campaign_id, status="replied"):
            types = [item["type"] for item in scenario.timeline(row["lead_id"])]
            if set(LIFECYCLE) <= set(types):
                return str(row["lead_id"])
        return None

    lead_id = await wait_for(
        lambda: asyncio.to_thread(full_lifecycle_lead),
        timeout_s=240,
        interval_s=1.0,
        what="a lead with the full lifecycle in the projection",
    )
    types = [item["type"] for item in scenario.timeline(lead_id)]
    positions = [types.index(t) for t in LIFECYCLE]
    assert positions == sorted(positions), f"lifecycle out of causal order: {types}"
    summary = scenario.summary(campaign_id)
    assert summary["invites_sent"] >= 1
    assert summary["replied"] >= 1

    # Every enrolled lead got, for its invite, a draft within the invite limit that names its hook.
    def drafted(records: list[Any]) -> bool:
        events = _campaign_events(records, campaign_id)
        enrolled = {e.data.lead_id for e in events if isinstance(e.data, LeadEnrolled)}
        invites = {
            e.data.lead_id for e in events if isinstance(e.data, MessageGenerated) and e.data.step_id == "invite"
        }
        return bool(enrolled) and enrolled <= invites

    records = await read_until(infra.kafka_bootstrap_servers, [topic_prefix + LEAD.name], drafted, timeout_s=120)
    drafts = [e.data for e in _campaign_events(records, campaign_id) if isinstance(e.data, MessageGenerated)]
    for draft in drafts:
        assert draft.char_limit is not None and len(draft.text) <= draft.char_limit, draft
        assert draft.hook.kind and draft.hook.reason, draft
    assert len({d.hook.kind for d in drafts}) >= 2, "every draft used the same kind of hook"

    # The webhook subscriber got the replying lead's events, signed, in the order they are on the log.
    def delivered(lead: str) -> list[str]:
        return [str(r.env.id) for r in receiver.accepted() if r.env is not None and str(r.env.subject) == lead]

    await wait_for(
        lambda: {r.env.type for r in receiver.accepted() if r.env and r.env.subject == lead_id} >= set(LIFECYCLE),
        timeout_s=120,
        what="the lead's lifecycle delivered by webhook",
    )
    assert all(r.verified for r in receiver.requests)
    on_log = []
    for r in records:
        if r.key == lead_id.encode():
            with contextlib.suppress(DecodeError):
                on_log.append(str(decode(r.value, r.headers).id))
    # At least once (Standard Webhooks): an attempt whose answer came after the service's timeout (a loaded
    # machine) is sent again, always under the event's one webhook-id, by which a receiver deduplicates.
    webhook_ids: dict[str, set[str]] = defaultdict(set)
    for r in receiver.accepted():
        if r.env is not None and str(r.env.subject) == lead_id:
            webhook_ids[str(r.env.id)].add(r.msg_id)
    assert all(len(ids) == 1 for ids in webhook_ids.values()), webhook_ids
    got = list(dict.fromkeys(delivered(lead_id)))  # each event's first acceptance
    common = set(on_log) & set(got)
    assert len(common) >= len(LIFECYCLE)
    assert [i for i in on_log if i in common] == [i for i in got if i in common]
