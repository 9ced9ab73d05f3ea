"""The projection service on the real broker and database: every HTTP view, workspace isolation, lag on /metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from leadstream_schemas import (
    ActionFailed,
    Envelope,
    InviteSent,
    LeadEvent,
    MessageSent,
    VideoGenerated,
)

from services.projection.app import build
from services.projection.checksum import dsn
from services.projection.workload import EPOCH, generate
from services.runtime.auth import create_token
from services.runtime.clock import FakeClock
from services.runtime.pagination import encode_cursor
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.support.kafka import wait_for

from .helpers import produce_all


def expected_counts(envelopes: list[Envelope[Any]], campaign_id: uuid.UUID) -> dict[str, int]:
    """An independent tally of a campaign's counts straight from the log."""
    per_lead: dict[uuid.UUID, set[str]] = defaultdict(set)
    counts: defaultdict[str, int] = defaultdict(int)
    for env in envelopes:
        d = env.data
        if not isinstance(d, LeadEvent) or d.campaign_id != campaign_id:
            continue
        per_lead[d.lead_id].add(type(d).__name__)
        for cls, name in (
            (InviteSent, "invites_sent"),
            (MessageSent, "messages_sent"),
            (ActionFailed, "failed_actions"),
            (VideoGenerated, "videos_generated"),
        ):
            if isinstance(d, cls):
                counts[name] += 1
    counts["leads"] = len(per_lead)
    counts["replied"] = sum("Replied" in s for s in per_lead.values())
    counts["accepted"] = sum("InviteAccepted" in s for s in per_lead.values())
    counts["completed"] = sum("LeadCompleted" in s and "Replied" not in s for s in per_lead.values())
    return dict(counts)


async def test_views_over_http(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    log = generate(leads=24, campaigns=4, workspaces=2, seed=21)
    settings = isolated.settings()
    clock = FakeClock(EPOCH + timedelta(days=30))
    service = await start_service(build(settings, clock=clock))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="partition assignment")
    token_a = await create_token(service.engine, "ws-1")
    token_b = await create_token(service.engine, "ws-2")
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log.envelopes)

    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        a = {"Authorization": f"Bearer {token_a}"}
        b = {"Authorization": f"Bearer {token_b}"}
        camp = next(c for c in log.campaign_ids if log.campaign_workspace[c] == "ws-1")
        want = expected_counts(log.envelopes, camp)

        async def caught_up() -> bool:
            r = await http.get(f"/v1/campaigns/{camp}/summary", headers=a)
            return (
                r.status_code == 200
                and r.json()["replied"] == want["replied"]
                and consumer.lag()
                and all(n == 0 for n in consumer.lag().values())
                and (await service.readiness()) == {}
            )

        await wait_for(caught_up, timeout_s=60, what="projection caught up")

        summary = (await http.get(f"/v1/campaigns/{camp}/summary", headers=a)).json()
        for key, value in want.items():
            assert summary[key] == value, key
        assert summary["reply_rate"] == round(want["replied"] / summary["contacted"], 4)
        assert summary["acceptance_rate"] == round(want["accepted"] / summary["invited_leads"], 4)
        assert summary["name"].startswith("Campaign ") and summary["state"] == "running"

        # Result table: keyset pages cover every lead once, in name order.
        seen: list[dict[str, Any]] = []
        after = None
        while True:
            params: dict[str, Any] = {"limit": 4, **({"after": after} if after else {})}
            page = (await http.get(f"/v1/campaigns/{camp}/results", params=params, headers=a)).json()
            seen.extend(page["items"])
            after = page["next"]
            if after is None:
                break
        assert len(seen) == want["leads"] == len({r["lead_id"] for r in seen})
        names = [(r["name"].lower(), r["lead_id"]) for r in seen]
        assert names == sorted(names)
        assert all(r["linkedin_url"].startswith("https://www.linkedin.com/in/") for r in seen)
        replied = (await http.get(f"/v1/campaigns/{camp}/results", params={"stage": "replied"}, headers=a)).json()
        assert len(replied["items"]) == want["replied"]
        assert all(r["status"] == "replied" and r["workflow_stage_label"] == "replied" for r in replied["items"])
        first = seen[0]["name"].split()[0]
        found = (await http.get(f"/v1/campaigns/{camp}/results", params={"q": first.upper()}, headers=a)).json()
        assert found["items"] and all(first.lower() in r["name"].lower() for r in found["items"])

        # A lead's timeline: every event of the lead, in order, with the account's name filled in.
        lead = uuid.UUID(seen[0]["lead_id"])
        own = [e for e in log.envelopes if isinstance(e.data, LeadEvent) and e.data.lead_id == lead]
        timeline = (await http.get(f"/v1/leads/{lead}/timeline", headers=a)).json()
        assert [i["event_id"] for i in timeline["items"]] == [str(e.id) for e in own]
        invite = next(i for i in timeline["items"] if i["type"] == InviteSent.event_type)
        assert invite["summary"].startswith(f"Invite sent from account {invite['account_name']} with note: ")
        assert invite["account_name"].startswith("SDR ") and invite["campaign_name"].startswith("Campaign ")
        # Its keyset pages: two events a page, the same events in the same order, the last page without a cursor.
        paged: list[str] = []
        after = None
        while True:
            params = {"limit": 2, **({"after": after} if after else {})}
            page = (await http.get(f"/v1/leads/{lead}/timeline", params=params, headers=a)).json()
            assert len(page["items"]) <= 2
            paged.extend(i["event_id"] for i in page["items"])
            after = page["next"]
            if after is None:
                break
        assert len(own) > 2 and paged == [str(e.id) for e in own]
        state = (await http.get(f"/v1/leads/{lead}", headers=a)).json()
        assert state["pipeline_stage"] in {"Replied", "Completed"} and state["events"] == len(own)
        assert {c["campaign_id"] for c in state["campaigns"]} == {str(camp)}

        campaigns = (await http.get("/v1/campaigns", headers=a)).json()["items"]
        assert {c["campaign_id"] for c in campaigns} == {
            str(c) for c in log.campaign_ids if log.campaign_workspace[c] == "ws-1"
        }
        assert all(c["audience_type"] == "source_group" and c["pace"] in {"steady", "high_volume"} for c in campaigns)

        home = (await http.get("/v1/home", headers=a)).json()
        assert home["active_campaigns"] == len(campaigns) and home["leads_total"] == 12
        activity = (await http.get("/v1/activity", params={"limit": 200}, headers=a)).json()
        assert (
            sum(activity["counts"].values()) == len(activity["items"]) == sum(c["summary"]["leads"] for c in campaigns)
        )
        assert activity["counts"]["engaged"] == sum(c["summary"]["replied"] for c in campaigns)

        # Another workspace's lead and campaign do not exist for ws-2; bad input is a 4xx problem.
        for path in (
            f"/v1/leads/{lead}/timeline",
            f"/v1/leads/{lead}",
            f"/v1/campaigns/{camp}/summary",
            f"/v1/campaigns/{camp}/results",
        ):
            r = await http.get(path, headers=b)
            assert r.status_code == 404 and r.json()["code"] == "not_found", path
        assert (await http.get("/v1/campaigns", headers=b)).json()["items"]
        r = await http.get(f"/v1/campaigns/{camp}/results", params={"stage": "nope"}, headers=a)
        assert r.status_code == 422 and r.json()["code"] == "invalid_request"
        r = await http.get(f"/v1/campaigns/{camp}/results", params={"after": "garbage"}, headers=a)
        assert r.status_code == 422 and r.json()["code"] == "invalid_cursor"
        # A cursor that decodes but that this API did not make (a rank past its smallint column was a 500) is a 422
        # naming `after`, on every view whose cursor holds more than one value.
        stamp = "2026-01-01T00:00:00+00:00"
        for path, forged in (
            (f"/v1/leads/{lead}/timeline", [stamp, 10**30, str(uuid.uuid4())]),
            (f"/v1/leads/{lead}/timeline", [stamp, 2**15, str(uuid.uuid4())]),
            (f"/v1/leads/{lead}/timeline", [stamp, True, str(uuid.uuid4())]),
            ("/v1/campaigns", [1, 2]),
            (f"/v1/campaigns/{camp}/results", ["name", "not-a-uuid"]),
        ):
            r = await http.get(path, params={"after": encode_cursor(forged)}, headers=a)
            assert r.status_code == 422, (path, forged, r.status_code, r.text[:200])
            assert r.json()["code"] == "invalid_cursor" and r.json()["errors"][0]["field"] == "after", (path, r.text)
        assert (await http.get(f"/v1/campaigns/{camp}/summary")).status_code == 401

        # /metrics is not on the API (its own internal listener serves it).
        assert (await http.get("/metrics")).status_code == 404
        internal = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.metrics_app), base_url="http://m")
        async with internal:

            async def lag_lines() -> list[str]:
                metrics = (await internal.get("/metrics")).text
                return [
                    ln
                    for ln in metrics.splitlines()
                    if ln.startswith("leadstream_consumer_lag{")
                    and 'service="projection"' in ln
                    and settings.topic_prefix in ln
                ]

            # The gauge is set after each poll: the poll after the last batch's commit brings it to 0.
            lines = await wait_for(
                lag_lines,
                until=lambda ls: len(ls) == 4 * 3 and all(ln.endswith(" 0.0") for ln in ls),
                timeout_s=30,
                what="every partition's lag gauge at 0",
            )
        assert len(lines) == 12
        assert (await http.get("/readyz")).status_code == 200


async def test_readyz_reports_not_ready_while_behind(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    log = generate(leads=40, campaigns=2, seed=5)
    settings = isolated.settings(projection_ready_max_lag=5, projection_batch_max_records=10)
    service = build(settings)
    consumer = service.app.state.projection
    # The backlog exists before the service starts, so it starts behind by hundreds of records.
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, log.envelopes)
    reasons: list[str] = []

    def behind() -> bool:
        reason = consumer.not_ready()
        if reason and reason.startswith("catching up"):
            reasons.append(reason)
        return bool(reasons)

    # Watched from the start: starting the service waits for its partitions, while it may be catching up.
    watching = asyncio.create_task(
        wait_for(behind, timeout_s=60, interval_s=0.01, what="a not-ready report while catching up")
    )
    await start_service(service)
    await watching
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await wait_for(lambda: consumer.applied >= len(log.envelopes), timeout_s=90, what="catch up")

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await wait_for(ready, timeout_s=30, what="/readyz after catching up")
    assert "threshold 5" in reasons[0]


async def test_readyz_reports_a_stall_under_the_lag_threshold(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A few records behind (far under the lag threshold) while every batch waits on a lock: only the stall
    # watch says so; held past the restart threshold, liveness fails too (the orchestrator would restart the
    # pod). Released, the projection applies them and is alive and ready again.
    log = generate(leads=6, campaigns=1, seed=8)
    first, rest = log.envelopes[:10], log.envelopes[10:]
    settings = isolated.settings(
        projection_ready_stall_s=1.0, consumer_lag_interval_s=0.2, consumer_stuck_restart_s=2.0
    )
    service = build(settings)
    consumer = service.app.state.projection
    await start_service(service)
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, first)
    await wait_for(lambda: consumer.applied >= len(first), timeout_s=60, what="the first records applied")
    locker = await asyncpg.connect(dsn(isolated.database_url))
    try:
        locker_tx = locker.transaction()
        await locker_tx.start()
        await locker.execute("LOCK TABLE projection.offsets IN ACCESS EXCLUSIVE MODE")
        await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, rest)
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:

            async def stalled() -> str:
                r = await http.get("/readyz")
                return r.text if r.status_code == 503 and "stalled" in r.text else ""

            reason = await wait_for(stalled, timeout_s=60, interval_s=0.1, what="/readyz reporting the stall")
            assert "threshold 1 s" in reason

            # The consumer said so in its log, once, with where each task waits (which one waits on the lock
            # depends on the moment: the batch's statement, or the loop reading the stored offsets).
            def logged() -> list[str]:
                return [r.getMessage() for r in caplog.records if r.getMessage().startswith("consumer stalled")]

            stalls = await wait_for(logged, timeout_s=30, what="the stall logged")
            assert len(stalls) == 1, stalls
            assert "asyncio tasks (" in stalls[0] and f"\nconsumer-{settings.group_id}: " in stalls[0], stalls[0]
            assert max(consumer.lag().values()) <= len(rest) < settings.projection_ready_max_lag

            async def stuck() -> str:
                r = await http.get("/healthz")
                return r.text if r.status_code == 503 else ""

            reason = await wait_for(stuck, timeout_s=60, interval_s=0.1, what="/healthz reporting it stuck")
            assert "stuck" in reason and "restart threshold 2 s" in reason, reason
            await locker_tx.rollback()

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200 and (
                    await http.get("/healthz")
                ).status_code == 200

            await wait_for(ready, timeout_s=60, what="/readyz and /healthz after the lock is gone")
        await wait_for(lambda: consumer.applied >= len(log.envelopes), timeout_s=60, what="the rest applied")
    finally:
        await locker.close()


async def test_an_unknown_filter_value_names_its_field_in_errors(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    """An unknown campaign ``state``, result ``status`` or series ``tz`` is a 422 whose ``errors`` name the field, as
    every other invalid input's do (they named it only in ``detail``, so a client reading ``errors`` saw none)."""
    settings = isolated.settings()
    service = await start_service(build(settings, clock=FakeClock(EPOCH)))
    token = await create_token(service.engine, "ws-1")
    camp = uuid.uuid4()
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        auth = {"Authorization": f"Bearer {token}"}
        for path, field, value in (
            ("/v1/campaigns", "state", "nope"),
            (f"/v1/campaigns/{camp}/results", "status", "nope"),
            (f"/v1/campaigns/{camp}/series", "tz", "Nowhere/Atlantis"),
        ):
            r = await http.get(path, params={field: value}, headers=auth)
            assert r.status_code == 422, (field, r.status_code, r.text[:200])
            problem = r.json()
            assert problem["code"] == "invalid_request" and problem["detail"].startswith(f"{field}: "), problem
            assert [e["field"] for e in problem["errors"]] == [field], problem
            assert problem["errors"][0]["message"], problem
