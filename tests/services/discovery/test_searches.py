"""Saved searches and preview on the real broker and database."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from services.discovery.store import leads, searches
from tests.services.discovery.conftest import StartDiscovery
from tests.services.discovery.support import client_for, envelopes, read_events, settled
from tests.support.kafka import wait_for

SIGNALS = {
    "prompt": "B2B SaaS companies scaling their sales team",
    "signal_types": ["hiring_plans", "open_jobs"],
    "location": "Berlin",
    "lookback_days": 14,
}


async def _finished(client: Any, search_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = (await client.get(f"/v1/searches/{search_id}")).json()
        return body if body["status"] == "finished" else None

    return await wait_for(done, timeout_s=60, what=f"search {search_id} to finish")


async def test_preview_explains_matches_and_saves_nothing(start_discovery: StartDiscovery) -> None:
    service = await start_discovery()
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        r = await client.post("/v1/searches/preview", json={"kind": "signals", "criteria": SIGNALS, "limit": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["matches"]) == 5 and body["has_more"] is True and body["total"] >= 40
        for m in body["matches"]:
            assert m["linkedin_url"].startswith("https://www.linkedin.com/in/")
            assert m["linkedin_url"] == m["linkedin_url"].lower().rstrip("/")
            assert m["full_name"] and m["company"] and m["already_known"] is False
            kinds = {s["kind"] for s in m["fit_signals"]}
            assert kinds & {"hiring_plans", "open_jobs"}, m["fit_signals"]
        people = await client.post(
            "/v1/searches/preview",
            json={"kind": "people", "criteria": {"titles": ["Head of Sales"], "locations": ["London"]}},
        )
        assert any(s["kind"] == "title" for m in people.json()["matches"] for s in m["fit_signals"])
        assert (await client.get("/v1/searches")).json()["items"] == []
        assert (await client.get("/v1/source-groups")).json()["items"] == []
    async with service.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(leads).where(leads.c.workspace_id == ws)) == 0
        assert await conn.scalar(select(func.count()).select_from(searches).where(searches.c.workspace_id == ws)) == 0


async def test_saved_search_pages_with_a_cursor_and_emits_progress(start_discovery: StartDiscovery) -> None:
    service = await start_discovery()
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        r = await client.post(
            "/v1/searches",
            json={"name": "Berlin SaaS hiring", "kind": "signals", "criteria": SIGNALS, "target_count": 25},
        )
        assert r.status_code == 201, r.text
        search_id, group_id = r.json()["search_id"], r.json()["source_group_id"]
        done = await _finished(client, search_id)
        assert done["finish_reason"] == "target_reached"
        # Page size 7: 7 + 7 + 7 + 4 people; the last page stops at the target.
        assert (done["members"], done["new_leads"], done["pages"], done["duplicates"]) == (25, 25, 4, 0)
        assert done["cursor"] is not None and done["exhausted"] is False

        records = await read_events(service, settled(ws, finished=1, discovered=25))
        discovered = envelopes(records, ws, "lead.discovered.v1")
        assert len(discovered) == 25
        assert len({e.data.lead_id for e in discovered}) == 25
        assert all(str(e.data.search_id) == search_id and str(e.data.source_group_id) == group_id for e in discovered)
        assert all(e.data.source == "signals" and e.data.fit_signals for e in discovered)
        started = envelopes(records, ws, "search.started.v1")
        assert [e.data.target_count for e in started] == [25]
        assert all(e.correlation_id == started[0].id for e in discovered)
        pages = envelopes(records, ws, "search.page_completed.v1")
        assert [(p.data.page, p.data.new_leads, p.data.total_new) for p in pages] == [
            (1, 7, 7),
            (2, 7, 14),
            (3, 7, 21),
            (4, 4, 25),
        ]
        assert all(p.data.cursor for p in pages)
        [finished] = envelopes(records, ws, "search.finished.v1")
        assert (finished.data.reason, finished.data.total_new) == ("target_reached", 25)

        first = (await client.get(f"/v1/source-groups/{group_id}/leads", params={"limit": 10})).json()
        assert len(first["items"]) == 10 and first["next_after"] is not None
        rest = (
            await client.get(f"/v1/source-groups/{group_id}/leads", params={"limit": 100, "after": first["next_after"]})
        ).json()
        members = first["items"] + rest["items"]
        assert rest["next_after"] is None
        # An `after` past the bigint sequence it is compared with was a 500 (the database refused the query).
        huge = await client.get(f"/v1/source-groups/{group_id}/leads", params={"after": 2**63})
        assert huge.status_code == 422 and huge.json()["errors"][0]["field"] == "after", huge.text
        assert {m["lead_id"] for m in members} == {str(e.data.lead_id) for e in discovered}
        assert len(members) == 25 and all(m["new"] and m["fit_signals"] for m in members)
        groups = (await client.get("/v1/source-groups")).json()["items"]
        assert [(g["source_group_id"], g["size"], g["kind"]) for g in groups] == [(group_id, 25, "signals")]

    async with await client_for(service, "ws-other-" + ws) as other:
        assert (await other.get(f"/v1/searches/{search_id}")).status_code == 404
        assert (await other.get(f"/v1/source-groups/{group_id}/leads")).status_code == 404
        assert (await other.post(f"/v1/searches/{search_id}/cancel")).status_code == 404
        assert (await other.get("/v1/source-groups")).json()["items"] == []
        lead = discovered[0].data.lead_id
        assert (await other.get(f"/v1/leads/{lead}")).status_code == 404


async def test_overlapping_searches_dedupe_and_exhaust(start_discovery: StartDiscovery) -> None:
    service = await start_discovery(search_page_size=20)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        a = (
            await client.post(
                "/v1/searches",
                json={"name": "all sales", "kind": "people", "target_count": 5000, "criteria": {"titles": ["Sales"]}},
            )
        ).json()
        done_a = await _finished(client, a["search_id"])
        assert done_a["finish_reason"] == "exhausted" and done_a["exhausted"] is True
        assert done_a["members"] == done_a["new_leads"] == done_a["found"] - done_a["invalid"]
        assert 40 <= done_a["found"] <= 80
        b = (
            await client.post(
                "/v1/searches",
                json={
                    "name": "sales leaders",
                    "kind": "people",
                    "target_count": 5000,
                    "criteria": {"titles": ["Head of Sales", "VP Sales"]},
                },
            )
        ).json()
        done_b = await _finished(client, b["search_id"])
        assert done_b["duplicates"] > 0, "the simulated provider returns overlapping people"
        assert done_b["members"] == done_b["new_leads"] + done_b["duplicates"]

        total = done_a["new_leads"] + done_b["new_leads"]
        records = await read_events(service, settled(ws, finished=2, discovered=total))
        discovered = envelopes(records, ws, "lead.discovered.v1")
        assert len(discovered) == total
        assert len({e.data.lead_id for e in discovered}) == len(discovered)
        members_b = (await client.get(f"/v1/source-groups/{b['source_group_id']}/leads", params={"limit": 200})).json()[
            "items"
        ]
        assert len(members_b) == done_b["members"]
        assert sum(1 for m in members_b if not m["new"]) == done_b["duplicates"]
        groups = {g["source_group_id"]: g for g in (await client.get("/v1/source-groups")).json()["items"]}
        assert groups[b["source_group_id"]]["new_leads"] == done_b["new_leads"]


async def test_invalid_searches_are_422_naming_the_field(start_discovery: StartDiscovery) -> None:
    service = await start_discovery()
    async with await client_for(service, "ws-validation") as client:

        async def problem(path: str, body: dict[str, Any]) -> tuple[int, list[str], str]:
            r = await client.post(path, json=body)
            data = r.json()
            return r.status_code, [e["field"] for e in data.get("errors", [])], data.get("detail", "")

        base = {"name": "x", "kind": "signals", "target_count": 10}
        for days in (0, 31):
            status, fields, detail = await problem(
                "/v1/searches", {**base, "criteria": {**SIGNALS, "lookback_days": days}}
            )
            assert status == 422 and fields == ["criteria.lookback_days"]
            assert "between 1 and 30 days" in detail
        status, fields, _ = await problem(
            "/v1/searches/preview", {"kind": "signals", "criteria": {**SIGNALS, "lookback_days": 45}}
        )
        assert (status, fields) == (422, ["criteria.lookback_days"])
        status, fields, detail = await problem(
            "/v1/searches",
            {**base, "kind": "linkedin_url", "criteria": {"url": "https://www.linkedin.com/company/northwind"}},
        )
        assert (status, fields) == (422, ["criteria.url"]) and "people search URL" in detail
        status, fields, _ = await problem("/v1/searches", {**base, "target_count": 0, "criteria": SIGNALS})
        assert (status, fields) == (422, ["target_count"])
        status, fields, _ = await problem("/v1/searches", {**base, "kind": "companies", "criteria": SIGNALS})
        assert (status, fields) == (422, ["kind"])
        status, fields, _ = await problem(
            "/v1/searches", {**base, "kind": "posts", "criteria": {"keywords": ["outbound"], "source": "newsletter"}}
        )
        assert (status, fields) == (422, ["criteria.source"])
        status, fields, _ = await problem(
            "/v1/searches", {**base, "criteria": SIGNALS, "schedule": {"interval_minutes": 1}}
        )
        assert (status, fields) == (422, ["schedule.interval_minutes"])
        status, fields, _ = await problem("/v1/searches", {**base, "criteria": {**SIGNALS, "prompt": "a\x00b"}})
        assert (status, fields) == (422, ["criteria.prompt"])  # named by the edge guard, to the field
        status, fields, _ = await problem("/v1/searches", {**base, "name": "x\x00", "criteria": SIGNALS})
        assert (status, fields) == (422, ["name"])
        assert (await client.get(f"/v1/searches/{uuid.uuid4()}")).status_code == 404
        assert (await client.get("/v1/searches/not-a-uuid")).status_code == 422
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://t") as anonymous:
        assert (await anonymous.get("/v1/searches")).status_code == 401


async def test_linkedin_url_and_posts_searches_and_cancel(start_discovery: StartDiscovery) -> None:
    service = await start_discovery(search_page_size=3, sim_latency_ms_min=30, sim_latency_ms_max=40)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        url = "https://WWW.linkedin.com/search/results/people/?keywords=revops%20lead&origin=GLOBAL_SEARCH_HEADER"
        r = await client.post(
            "/v1/searches", json={"name": "RevOps", "kind": "linkedin_url", "target_count": 6, "criteria": {"url": url}}
        )
        assert r.status_code == 201, r.text
        li = await _finished(client, r.json()["search_id"])
        assert li["criteria"]["url"].startswith("https://www.linkedin.com/search/results/people/?keywords=")
        posts = (
            await client.post(
                "/v1/searches",
                json={
                    "name": "pain",
                    "kind": "posts",
                    "target_count": 5000,
                    "criteria": {"keywords": ["cold outreach"], "source": "posts", "lookback_days": 7},
                },
            )
        ).json()
        await wait_for(lambda: _members(client, posts["search_id"]), timeout_s=30, what="a first page")
        cancelled = (await client.post(f"/v1/searches/{posts['search_id']}/cancel")).json()
        assert (cancelled["status"], cancelled["finish_reason"]) == ("finished", "cancelled")
        again = await client.post(f"/v1/searches/{posts['search_id']}/cancel")
        assert again.status_code == 409 and again.json()["code"] == "search_finished"
        final = (await client.get(f"/v1/searches/{posts['search_id']}")).json()
        total = final["new_leads"] + li["new_leads"]
        records = await read_events(service, settled(ws, finished=2, discovered=total))
        reasons = sorted(e.data.reason for e in envelopes(records, ws, "search.finished.v1"))
        assert reasons == ["cancelled", "target_reached"]
        post_leads = [e for e in envelopes(records, ws, "lead.discovered.v1") if e.data.source == "posts"]
        assert post_leads and all(s.kind == "intent_post" for e in post_leads for s in e.data.fit_signals)
        assert final["new_leads"] == len(post_leads)


async def _members(client: Any, search_id: str) -> bool:
    return bool((await client.get(f"/v1/searches/{search_id}")).json()["members"])
