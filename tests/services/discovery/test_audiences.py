"""Audiences that keep working, on the real broker and database with an injected clock: targets count new leads,
recurring searches search again after running out, campaigns' audience runs and extensions run the searches
feeding them, and the posts watch turns new matching posts into leads with the post."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from leadstream_schemas import Audience, CampaignAudienceRunRequested, CampaignExtended, Envelope

from services.runtime.clock import FakeClock, ScaledClock
from tests.services.discovery.conftest import StartDiscovery
from tests.services.discovery.support import ScriptedProvider, client_for, due, envelopes, person, read_events
from tests.support.kafka import produce_events, wait_for

PEOPLE = {"titles": ["Head of Sales"]}


async def _search(client: Any, sid: str) -> dict[str, Any]:
    return dict((await client.get(f"/v1/searches/{sid}")).json())


def _when(client: Any, sid: str, **expected: Any) -> Any:
    async def check() -> dict[str, Any] | None:
        body = await _search(client, sid)
        return body if all(body[k] == v for k, v in expected.items()) else None

    return check


async def _create(client: Any, ws: str, **body: Any) -> dict[str, Any]:
    # The workspace id in the criteria marks the provider's queries for this test's searches (queries_for).
    criteria = {**PEOPLE, "description": f"people of {ws}"}
    r = await client.post("/v1/searches", json={"name": "s", "kind": "people", "criteria": criteria, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_a_repeat_search_does_not_reach_its_target_with_known_people(start_discovery: StartDiscovery) -> None:
    provider = ScriptedProvider([person(f"p-{i}") for i in range(5)])
    service = await start_discovery(provider=provider)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        first = await _create(client, ws, target_count=5)
        done = await wait_for(_when(client, first["search_id"], status="finished"), timeout_s=30, what="first")
        assert (done["finish_reason"], done["new_leads"]) == ("target_reached", 5)
        again = await _create(client, ws, target_count=3)
        repeat = await wait_for(_when(client, again["search_id"], status="finished"), timeout_s=30, what="repeat")
    # Everyone was known: the people join the repeat's group, but its target (of NEW leads) is not reached.
    assert (repeat["finish_reason"], repeat["new_leads"], repeat["members"], repeat["duplicates"]) == (
        "exhausted",
        0,
        5,
        5,
    )


async def test_a_recurring_search_that_ran_out_searches_again_for_new_results(start_discovery: StartDiscovery) -> None:
    clock = FakeClock()
    provider = ScriptedProvider([person(f"r-{i}") for i in range(4)])
    service = await start_discovery(clock=clock, provider=provider)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        s = await _create(client, ws, target_count=10, schedule={"interval_minutes": 60})
        sid = s["search_id"]
        first = await wait_for(_when(client, sid, status="scheduled", new_leads=4), timeout_s=30, what="run 1")
        assert (first["cursor"], first["exhausted"]) == (None, True)
        assert first["next_run_at"] == (clock.now() + timedelta(minutes=60)).isoformat().replace("+00:00", "Z")
        # New people appear at the provider; before the interval nothing runs.
        provider.results = [person("r-new-1"), *provider.results, person("r-new-2"), person("r-new-3")]
        calls = len(provider.queries_for(ws))
        clock.advance(timedelta(minutes=59))
        assert not await due(service, sid) and len(provider.queries_for(ws)) == calls
        clock.advance(timedelta(minutes=1))
        second = await wait_for(_when(client, sid, status="scheduled", new_leads=7), timeout_s=30, what="run 2")
        assert (second["runs"], second["members"], second["duplicates"]) == (2, 7, 4)
        assert provider.queries_for(ws)[calls][1] is None, "the second run starts from the top, not from a cursor"
        provider.results.extend(person(f"r-late-{i}") for i in range(5))
        clock.advance(timedelta(minutes=60))
        third = await wait_for(_when(client, sid, status="finished"), timeout_s=30, what="run 3")
    assert (third["finish_reason"], third["new_leads"], third["runs"]) == ("target_reached", 10, 3)


async def _produce(service: Any, ws: str, *events: Any) -> None:
    envs = [Envelope.new(e, workspace_id=ws, source="test/outreach") for e in events]
    await produce_events(service.settings.kafka_bootstrap_servers, service.settings.topic_prefix, envs)


async def test_campaign_audience_runs_and_extensions_run_the_searches_of_the_audience(
    start_discovery: StartDiscovery,
) -> None:
    provider = ScriptedProvider([person(f"a-{i}") for i in range(5)])
    service = await start_discovery(provider=provider)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    campaign = uuid.uuid4()
    async with await client_for(service, ws) as client:
        s = await _create(client, ws, target_count=10)
        sid, group = s["search_id"], s["source_group_id"]
        done = await wait_for(_when(client, sid, status="finished"), timeout_s=30, what="first pass")
        assert (done["finish_reason"], done["new_leads"]) == ("exhausted", 5)

        # Two hours before an invite window: the exhausted search runs again from the top; 2 people are new.
        provider.results = [*provider.results, person("a-new-1"), person("a-new-2")]
        window = done["updated_at"]
        run = CampaignAudienceRunRequested(
            campaign_id=campaign, audience=Audience(type="saved_search", ref=sid), window_start=window
        )
        await _produce(service, ws, run)
        second = await wait_for(_when(client, sid, status="finished", runs=2), timeout_s=30, what="audience run")
        assert (second["finish_reason"], second["new_leads"], second["members"]) == ("exhausted", 7, 7)

        # An extension by one lead, on the source-group audience: the target grows and the search runs again.
        provider.results = [*provider.results, *(person(f"a-ext-{i}") for i in range(5))]
        extended = CampaignExtended(
            campaign_id=campaign, audience=Audience(type="source_group", ref=group), additional_leads=1
        )
        await _produce(service, ws, extended)
        third = await wait_for(_when(client, sid, status="finished", runs=3), timeout_s=30, what="extension")
        assert (third["finish_reason"], third["new_leads"], third["target_count"]) == ("target_reached", 11, 11)

        # The target is reached: a later audience run leaves the search alone.
        again = CampaignAudienceRunRequested(
            campaign_id=campaign, audience=Audience(type="saved_search", ref=sid), window_start=window
        )
        other_ws = CampaignAudienceRunRequested(  # another workspace's campaign naming this search finds nothing
            campaign_id=uuid.uuid4(), audience=Audience(type="saved_search", ref=sid), window_start=window
        )
        await _produce(service, ws, again)
        await _produce(service, "ws-someone-else", other_ws)

        def seen(records: Any) -> bool:
            return len(envelopes(records, ws, "search.finished.v1")) >= 3

        records = await read_events(service, seen)
        still = await _search(client, sid)
    assert (still["runs"], still["status"]) == (3, "finished")
    resumed = envelopes(records, ws, "search.resumed.v1")
    assert [(e.data.run, e.data.reason, e.data.target_count) for e in resumed] == [
        (2, "campaign_audience_run", 10),
        (3, "campaign_extended", 11),
    ]
    assert {e.campaign_id for e in resumed} == {str(campaign)}
    finished = envelopes(records, ws, "search.finished.v1")
    assert [e.data.reason for e in finished] == ["exhausted", "exhausted", "target_reached"]
    assert len({e.id for e in finished}) == 3, "each pass finishes with its own event id"
    assert len(envelopes(records, ws, "lead.discovered.v1")) == 11


def _post(slug: str, text: str, post_id: str, clock: FakeClock, days_ago: int = 0) -> Any:
    return person(slug, post=text, posted_on=(clock.now() - timedelta(days=days_ago)).date(), post_id=post_id)


async def test_the_posts_watch_turns_new_matching_posts_into_leads_with_the_post(
    start_discovery: StartDiscovery,
) -> None:
    clock = FakeClock()
    provider = ScriptedProvider([_post("ann", "Honestly struggling with outbound this quarter", "p1", clock, 2)])
    service = await start_discovery(clock=clock, provider=provider, search_page_size=3)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    # The workspace id, a keyword no post has, marks the provider's queries for this test's watch (queries_for).
    criteria = {"keywords": ["sequencer", ws], "pain_keywords": ["struggling with outbound"], "lookback_days": 7}
    async with await client_for(service, ws) as client:
        body = {
            "name": "w",
            "kind": "posts",
            "criteria": criteria,
            "target_count": 50,
            "watch": {"interval_minutes": 30},
        }
        r = await client.post("/v1/searches", json=body)
        sid = r.json()["search_id"]
        first = await wait_for(_when(client, sid, status="watching"), timeout_s=30, what="the first pass")
        assert first["watch"]["next_check_at"] == (clock.now() + timedelta(minutes=30)).isoformat().replace(
            "+00:00", "Z"
        )
        assert first["new_leads"] == 1
        # New posts (newest first): a new author with intent language, Ann again with pain language, a post
        # that matches nothing; then Ann's first post (already seen) and one older than the lookback.
        provider.results = [
            _post("ben", "Which sequencer do you recommend?", "p2", clock),
            _post("ann", "Still struggling with outbound, any tips?", "p3", clock),
            _post("cara", "Team offsite photos", "p4", clock),
            _post("ann", "Honestly struggling with outbound this quarter", "p1", clock, 2),
            _post("dora", "A sequencer question from long ago", "p5", clock, 30),
        ]
        clock.advance(timedelta(minutes=30))
        checked = await wait_for(
            lambda: _watch(client, sid, checks=1), timeout_s=30, what="the first check of the watch"
        )
        assert (checked["posts_seen"], checked["matches"], checked["new_leads"]) == (3, 2, 1)
        # Ben's and Ann's posts only: the page of known posts ends the check (newest first).
        mine = provider.queries_for(ws)
        assert [q[1] for q in mine[-2:]] == [None, "3"]
        assert mine[-1][0].criteria["lookback_days"] == 1, "the watch looks back to its last check"
        after = await _search(client, sid)
        assert (after["status"], after["new_leads"], after["members"]) == ("watching", 2, 2)
        calls = len(provider.queries_for(ws))
        clock.advance(timedelta(minutes=30))
        again = await wait_for(lambda: _watch(client, sid, checks=2), timeout_s=30, what="the second check")
        assert again["matches"] == 2 and len(provider.queries_for(ws)) == calls + 1

        def done(records: Any) -> bool:
            return len(envelopes(records, ws, "lead.post_matched.v1")) >= 3

        records = await read_events(service, done)
        # Cancelling the search stops its watch.
        assert (await client.post(f"/v1/searches/{sid}/cancel")).status_code == 200
        stopped = await _search(client, sid)
    assert (stopped["status"], stopped["watch"]["state"]) == ("finished", "stopped")
    matched = envelopes(records, ws, "lead.post_matched.v1")
    texts = sorted((e.data.post.text, e.data.language, tuple(e.data.matched)) for e in matched)
    assert texts == [
        ("Honestly struggling with outbound this quarter", "pain", ("struggling with outbound",)),
        ("Still struggling with outbound, any tips?", "pain", ("struggling with outbound",)),
        ("Which sequencer do you recommend?", "intent", ("sequencer",)),
    ]
    discovered = {e.data.linkedin_url: e for e in envelopes(records, ws, "lead.discovered.v1")}
    assert sorted(discovered) == ["https://www.linkedin.com/in/ann", "https://www.linkedin.com/in/ben"]
    ben = discovered["https://www.linkedin.com/in/ben"].data
    assert ben.fit_signals[0].kind == "intent_post" and "sequencer" in ben.fit_signals[0].detail
    by_lead = {e.data.lead_id for e in matched}
    assert by_lead == {d.data.lead_id for d in discovered.values()}


async def _watch(client: Any, sid: str, **expected: Any) -> dict[str, Any] | None:
    watch = (await _search(client, sid))["watch"]
    return dict(watch) if watch and all(watch[k] == v for k, v in expected.items()) else None


async def test_a_new_posts_search_wakes_the_idle_watch_loop(start_discovery: StartDiscovery) -> None:
    # On a running clock an idle watch loop sleeps until its next check is due, here up to a minute of real time
    # (timer_idle_max_s): creating a search wakes it, so its first check (5 campaign minutes later, a sixth of a
    # second at 1800x) comes then, not a minute later.
    clock = ScaledClock(datetime.now(UTC), 1800.0)
    post = person("eve", post="Struggling with outbound", posted_on=clock.now().date(), post_id="w1")
    provider = ScriptedProvider([post])
    service = await start_discovery(clock=clock, provider=provider, timer_idle_max_s=60.0)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    criteria = {"keywords": ["sequencer", ws], "pain_keywords": ["struggling with outbound"], "lookback_days": 7}
    body = {"name": "w", "kind": "posts", "criteria": criteria, "target_count": 50, "watch": {"interval_minutes": 5}}
    async with await client_for(service, ws) as client:
        r = await client.post("/v1/searches", json=body)
        assert r.status_code == 201, r.text
        sid = r.json()["search_id"]
        # At least one: at 1800x the watch checks again every few tenths of a second, which a loaded machine's
        # polls may step over (an exact checks == 1 then never comes back).
        await wait_for(
            lambda: _watch(client, sid),
            until=lambda watch: watch is not None and watch["checks"] >= 1,
            timeout_s=30,
            what="the watch's first check",
        )


async def test_groups_enrich_automatically_or_only_the_selected_leads(start_discovery: StartDiscovery) -> None:
    provider = ScriptedProvider([person(f"e-{i}") for i in range(4)])
    service = await start_discovery(provider=provider)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        s = await _create(client, ws, target_count=4, enrichment="on_selection")
        sid, group = s["search_id"], s["source_group_id"]
        await wait_for(_when(client, sid, status="finished"), timeout_s=30, what="the search")
        groups = {g["source_group_id"]: g for g in (await client.get("/v1/source-groups")).json()["items"]}
        assert (groups[group]["enrichment"], groups[group]["awaiting_enrichment"]) == ("on_selection", 4)
        members = (await client.get(f"/v1/source-groups/{group}/leads")).json()["items"]
        ids = [m["lead_id"] for m in members]
        assert {m["enrichment"] for m in members} == {"pending"}

        stranger = str(uuid.uuid4())
        r = await client.post(f"/v1/source-groups/{group}/enrich", json={"lead_ids": [ids[0], ids[1], stranger]})
        assert r.status_code == 200, r.text
        assert r.json() == {"requested": ids[:2], "already": [], "not_members": [stranger]}
        again = (await client.post(f"/v1/source-groups/{group}/enrich", json={"lead_ids": [ids[0]]})).json()
        assert again == {"requested": [], "already": [ids[0]], "not_members": []}
        assert (await client.post(f"/v1/source-groups/{group}/enrich", json={"lead_ids": []})).status_code == 422

        # A pending lead found by a search whose group enriches automatically is enriched now.
        provider.results = [person("e-2")]
        auto = await _create(client, ws, target_count=1)
        await wait_for(_when(client, auto["search_id"], status="finished"), timeout_s=30, what="the automatic search")
        patched = await client.patch(f"/v1/source-groups/{group}", json={"enrichment": "automatic"})
        assert patched.status_code == 200, patched.text
        assert (patched.json()["enrichment"], patched.json()["awaiting_enrichment"]) == ("automatic", 0)

    async with await client_for(service, "ws-other") as other:
        # Another workspace's group: every route that takes one answers the same 404 (commands.source_group).
        answers = [
            await other.post(f"/v1/source-groups/{group}/enrich", json={"lead_ids": ids}),
            await other.patch(f"/v1/source-groups/{group}", json={"enrichment": "automatic"}),
            await other.get(f"/v1/source-groups/{group}/leads"),
            await other.post("/v1/leads", json={"email": "a@b.io", "source_group_id": group}),
        ]
        for r in answers:
            assert r.status_code == 404, r.text
            assert (r.json()["code"], r.json()["detail"]) == ("not_found", f"source group {group} not found"), r.text

    def done(records: Any) -> bool:
        return len(envelopes(records, ws, "lead.enrichment_requested.v1")) >= 4

    records = await read_events(service, done)
    discovered = envelopes(records, ws, "lead.discovered.v1")
    assert {e.data.enrichment for e in discovered} == {"on_selection"}
    requests = envelopes(records, ws, "lead.enrichment_requested.v1")
    got = sorted((str(e.data.lead_id), e.data.reason) for e in requests)
    assert got == sorted([(ids[0], "selected"), (ids[1], "selected"), (ids[2], "automatic"), (ids[3], "automatic")])
