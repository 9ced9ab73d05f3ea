"""One trace follows a lead across the services, each a separate OS process on the real broker and database.

The services export their spans over OTLP/HTTP to a real receiver the test starts (:mod:`tests.support.otlp`,
decoding the protobuf requests with opentelemetry-proto). A saved search is posted with the caller's
``traceparent``; the lead it discovers is enriched, enrolled, written to and invited, and the projection
applies the invite. The projection's span of that invite has an unbroken chain of parents, one trace id,
back to the search request's server span and the caller: through discovery (the request, then the search's
page on the durable-timer loop), enrichment, outreach (enrolling), messaging (the invite's text), outreach
(the step's timer and its send) and the projection. Every span of the trace has its parent in it, and every
log line of every service carries the context keys (trace and span ids, lead, campaign, correlation ids).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from leadstream_cli.demo import CLOCK_SCALE
from leadstream_cli.processes import SERVICES, ServiceFleet, free_port
from services.runtime import auth
from services.runtime.db import create_engine
from services.runtime.logging import CONTEXT_KEYS
from services.runtime.migrations import upgrade
from tests.support.kafka import wait_for
from tests.support.otlp import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.e2e
WORKSPACE = "ws-e2e-trace"
TRACED = ("discovery", "enrichment", "messaging", "outreach", "projection")
INVITE_APPLIED = "project leadstream.lead.invite_sent.v1"


def chain(span: ReceivedSpan, spans: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    """``span`` and its ancestors among the received spans, up to the first whose parent was not received."""
    out = [span]
    while out[-1].parent_span_id in spans:
        out.append(spans[out[-1].parent_span_id])
    return out


def services(spans: list[ReceivedSpan]) -> list[str]:
    """The services of a chain of spans, leaf first, each run of one service once."""
    out: list[str] = []
    for s in spans:
        name = s.service.removeprefix("leadstream-")
        if not out or out[-1] != name:
            out.append(name)
    return out


async def _token(database_url: str) -> str:
    await upgrade(auth.MIGRATIONS_DIR, database_url, auth.IDENTITY_SCHEMA)
    engine = create_engine(database_url)
    try:
        return await auth.create_token(engine, WORKSPACE)
    finally:
        await engine.dispose()


def _launch_campaign(http: httpx.Client, fleet: ServiceFleet, caller: str) -> str:
    """Connect an account, save a search (with the caller's traceparent), and launch a campaign on its leads."""

    def call(service: str, path: str, body: object, headers: dict[str, str] | None = None) -> dict[str, str]:
        # The caller's traceparent as given: an in-process service of another test may have instrumented httpx
        # in this process, whose client span would replace it.
        with suppress_http_instrumentation():
            response = http.post(fleet.procs[service].url + path, json=body, headers=headers)
        assert response.status_code < 300, response.text
        return dict(response.json() or {})

    account = call("outreach", "/v1/accounts", {"provider": "linkedin", "display_name": "Trace SDR"})
    search = call(
        "discovery",
        "/v1/searches",
        {
            "name": "Traced search",
            "kind": "signals",
            "criteria": {"prompt": "B2B SaaS companies hiring SDRs", "signal_types": ["hiring_plans"]},
            "target_count": 8,
        },
        {"traceparent": caller},
    )
    campaign = call(
        "outreach",
        "/v1/campaigns",
        {
            "name": "Traced campaign",
            "audience": {"type": "source_group", "ref": search["source_group_id"]},
            "workflow": "direct_connect",
            "strategy": {"offer": "an audit", "proof": "it worked for others", "tone": "friendly", "review": False},
            "delivery": {"pace": "high_volume", "active_days": "every_day", "start_hour": 0, "end_hour": 24},
            "account_ids": [account["account_id"]],
        },
    )
    call("outreach", f"/v1/campaigns/{campaign['campaign_id']}/launch", {})
    return campaign["campaign_id"]


async def test_one_trace_follows_a_lead_from_the_search_request_to_the_projection(
    subprocess_env: dict[str, str], own_topic_prefix: str, database_url: str, tmp_path: Path
) -> None:
    # Topics of its own: on the session's, each service (enrichment and messaging with their simulated latency per
    # record) first worked through what the session's earlier tests had produced before reaching this test's lead.
    token = await _token(database_url)
    trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    async with OtlpReceiver().running() as otlp:
        fleet = ServiceFleet(
            env={
                **subprocess_env,
                "LEADSTREAM_TOPIC_PREFIX": own_topic_prefix,
                "LEADSTREAM_CLOCK_SCALE": str(CLOCK_SCALE),
                "LEADSTREAM_CLOCK_EPOCH": datetime.now(UTC).isoformat(),
                "LEADSTREAM_LOG_JSON": "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
                "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s (5 s by default)
            },
            log_dir=tmp_path / "logs",
            ports={name: free_port() for name in SERVICES},  # five of them are started
        )
        try:
            for name in TRACED:
                fleet.start(name)
            await asyncio.to_thread(fleet.wait_ready, 180)
            with httpx.Client(timeout=10.0, headers={"Authorization": f"Bearer {token}"}) as http:
                await asyncio.to_thread(_launch_campaign, http, fleet, f"00-{trace_id}-{caller_span}-01")

            def traced_invite() -> list[ReceivedSpan] | None:
                spans = {s.span_id: s for s in otlp.trace(trace_id)}
                for span in spans.values():
                    if span.name == INVITE_APPLIED and span.service == "leadstream-projection":
                        up = chain(span, spans)
                        if up[-1].parent_span_id == caller_span:
                            return up
                return None

            invite = await wait_for(
                traced_invite, timeout_s=240, interval_s=0.5, what="an invite applied by the projection, in the trace"
            )
        finally:
            await asyncio.to_thread(fleet.stop)  # the services export what they still hold as they exit
        spans = otlp.trace(trace_id)

    # One trace id from the caller to the projection, an unbroken parent chain across five processes.
    root = invite[-1]
    assert (root.service, root.name, root.kind) == ("leadstream-discovery", "POST /v1/searches", "SPAN_KIND_SERVER")
    assert services(invite) == ["projection", "outreach", "messaging", "outreach", "enrichment", "discovery"], [
        (s.service, s.name) for s in invite
    ]
    assert len({s.service for s in invite}) >= 4
    names = [s.name for s in invite]
    assert "discovery_searches run" in names  # the search's page ran on the timer loop, in the request's trace
    send = invite[1]
    assert (send.service, send.name) == ("leadstream-outreach", "outreach call")  # the step's send settled
    woke = invite[2]  # the text for the step (generated or approved by messaging) made the step's timer due
    assert woke.service == "leadstream-outreach" and woke.name.startswith("handle leadstream.lead.message_")
    assert any(s.name == "outreach run" and s.parent_span_id == send.parent_span_id for s in spans)  # the step ran
    leads = {s.attributes.get("leadstream.lead_id") for s in invite if s.name.startswith(("handle", "outreach"))}
    assert leads == {send.attributes["leadstream.lead_id"]}  # one lead all along

    # Every span of the trace hangs off it: none whose parent is missing (the caller's span is not exported).
    by_id = {s.span_id: s for s in spans}
    orphans = [(s.service, s.name) for s in spans if s.parent_span_id not in by_id and s.parent_span_id != caller_span]
    assert not orphans
    assert {s.service.removeprefix("leadstream-") for s in spans} == set(TRACED)
    assert any(s.scope == "opentelemetry.instrumentation.asyncpg" for s in spans)  # queries are in it too

    # Every log line has the context keys; the lead's lines in this trace name it.
    lines = []
    for name in TRACED:
        for text in (tmp_path / "logs" / f"{name}.log").read_text().splitlines():
            if text.startswith("{"):
                lines.append(json.loads(text))
    assert lines and all(set(CONTEXT_KEYS) <= set(line) for line in lines)
