"""End to end on the real broker and database: discovery and enrichment started in-process.

A saved signal search with a target of 30 pages through the simulated provider and yields exactly 30
distinct ``LeadDiscovered``; running the same search again discovers none of them again (they join its group as
known members, and only new people count towards its target); every lead gets its
``LeadProfileEnriched``, and ``LeadEmailEnriched`` exactly when the finder verified an address, else
``LeadEmailNotFound`` with the finder's reason.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import httpx
from leadstream_schemas import Envelope

from services.discovery.app import build as build_discovery
from services.discovery.settings import DiscoverySettings
from services.enrichment.adapters import LeadRef, ProfileData
from services.enrichment.adapters.simulated import SimulatedEmailFinder
from services.enrichment.app import build as build_enrichment
from services.enrichment.settings import EnrichmentSettings
from services.runtime.auth import create_token
from services.runtime.clock import FakeClock
from services.runtime.providers import SimulationProfile
from tests.support.kafka import read_until, wait_for
from tests.support.personal import decode_opened

SEARCH = {
    "name": "SaaS companies hiring SDRs",
    "kind": "signals",
    "criteria": {
        "prompt": "B2B SaaS companies hiring SDRs",
        "signal_types": ["hiring_plans", "open_jobs", "recent_hires"],
        "location": "Berlin",
        "lookback_days": 14,
    },
    "target_count": 30,
}
FAST = {"sim_latency_ms_min": 0, "sim_latency_ms_max": 3}


def _events(records: list[Any], workspace: str) -> list[Envelope[Any]]:
    out = []
    for r in records:
        env = decode_opened(r.value, r.headers)
        if env.workspace_id == workspace:
            out.append(env)
    return out


async def test_saved_search_is_discovered_once_and_every_lead_enriched(
    make_settings: Any, start_service: Any, own_topic_prefix: str
) -> None:
    # Topics of its own: on the session's, enrichment first worked through every lead the session's other tests had
    # produced (30 discovered, 0 enriched after 120 s in a full run). Default (realistic) error rates: a few
    # provider calls fail and are retried on both sides.
    discovery = await start_service(
        build_discovery(
            make_settings(
                "discovery",
                DiscoverySettings,
                topic_prefix=own_topic_prefix,
                search_page_size=8,
                search_poll_interval_s=0.05,
                search_backoff_initial_s=0.01,
                **FAST,
            )
        )
    )
    enrichment_settings = make_settings(
        "enrichment",
        EnrichmentSettings,
        topic_prefix=own_topic_prefix,
        retry_initial_s=0.02,
        retry_poll_interval_s=0.05,
        **FAST,
    )
    await start_service(build_enrichment(enrichment_settings))
    ws = f"ws-e2e-{uuid.uuid4().hex[:8]}"
    token = await create_token(discovery.engine, ws)
    s = discovery.settings
    topics = [s.topic_name("leadstream.lead.v1"), s.topic_name("leadstream.search.v1")]

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=discovery.app),
        base_url="http://discovery",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:

        async def run_search() -> dict[str, Any]:
            created = await client.post("/v1/searches", json=SEARCH)
            assert created.status_code == 201, created.text
            search_id = created.json()["search_id"]

            async def finished() -> dict[str, Any] | None:
                body = (await client.get(f"/v1/searches/{search_id}")).json()
                return body if body["status"] == "finished" else None

            return await wait_for(finished, timeout_s=60, what="the saved search")

        first = await run_search()
        assert (first["finish_reason"], first["new_leads"], first["members"]) == ("target_reached", 30, 30)
        assert first["pages"] >= 4, "30 leads over pages of 8"

        def enriched(records: list[Any]) -> bool:
            events = _events(records, ws)
            leads = {e.data.lead_id for e in events if e.type == "leadstream.lead.discovered.v1"}
            done = {
                e.data.lead_id
                for e in events
                if e.type in {"leadstream.lead.email_enriched.v1", "leadstream.lead.email_not_found.v1"}
            }
            seen.update(discovered=len(leads), enriched=len(leads & done), waiting=sorted(map(str, leads - done))[:5])
            return len(leads) >= 30 and leads <= done

        seen: dict[str, Any] = {}
        try:
            await read_until(s.kafka_bootstrap_servers, topics, enriched, timeout_s=120)
        except AssertionError as exc:  # say how far enrichment got (it took 4 s on an idle machine, >120 s once)
            raise AssertionError(f"{exc}; leads {seen}") from exc

        second = await run_search()
        # Known people do not count towards a target (it counts new leads): the 30 are recognised as duplicates
        # and the search goes on for new ones until the target or the end of the provider's results.
        assert second["duplicates"] == 30 and second["members"] == 30 + second["new_leads"]
        assert second["finish_reason"] == ("target_reached" if second["new_leads"] == 30 else "exhausted")
        members = (await client.get(f"/v1/source-groups/{second['source_group_id']}/leads")).json()["items"]
        assert len(members) == second["members"]
        assert sum(not m["new"] for m in members) == 30 and sum(m["new"] for m in members) == second["new_leads"]

    def second_finished(records: list[Any]) -> bool:
        return any(
            e.type == "leadstream.search.finished.v1" and str(e.data.search_id) == second["search_id"]
            for e in _events(records, ws)
        )

    events = _events(await read_until(s.kafka_bootstrap_servers, topics, second_finished, timeout_s=60), ws)
    discovered = [e for e in events if e.type == "leadstream.lead.discovered.v1"]
    first_leads = {str(e.data.lead_id) for e in discovered if str(e.data.search_id) == first["search_id"]}
    again = [e for e in discovered if str(e.data.search_id) == second["search_id"]]
    # Known leads are not discovered again, but their membership of the second group is announced.
    assert len(first_leads) == 30 and len(discovered) == 30 + len(again) and len(again) == second["new_leads"]
    assert not first_leads & {str(e.data.lead_id) for e in again}
    joined = [e for e in events if e.type == "leadstream.lead.added_to_source_group.v1"]
    assert {str(e.data.source_group_id) for e in joined} == {second["source_group_id"]}
    assert {str(e.data.lead_id) for e in joined} == first_leads and len(joined) == 30
    per_lead: dict[str, list[Envelope[Any]]] = defaultdict(list)
    for e in events:
        if e.topic == "leadstream.lead.v1" and e not in joined and str(e.data.lead_id) in first_leads:
            per_lead[str(e.data.lead_id)].append(e)
    assert len(per_lead) == 30
    [finished_again] = [
        e for e in events if e.type == "leadstream.search.finished.v1" and str(e.data.search_id) == second["search_id"]
    ]
    assert finished_again.data.total_new == second["new_leads"]  # in the same transaction as the new leads

    finder = SimulatedEmailFinder(
        SimulationProfile(seed=enrichment_settings.simulated_seed, latency_ms=(0, 0), transient_error_rate=0.0),
        FakeClock(),
    )
    outcomes: dict[str, int] = defaultdict(int)
    for lead_id, lead_events in per_lead.items():
        types = [e.type.split(".")[2] for e in lead_events]
        assert types[0] == "discovered"
        assert types.count("profile_enriched") == 1, (lead_id, types)
        email = [
            e
            for e in lead_events
            if e.type in {"leadstream.lead.email_enriched.v1", "leadstream.lead.email_not_found.v1"}
        ]
        assert len(email) == 1, (lead_id, types)
        assert all(e.causation_id == lead_events[0].id for e in lead_events[1:])
        lead = lead_events[0].data
        profile = next(e for e in lead_events if e.type == "leadstream.lead.profile_enriched.v1").data
        assert profile.full_name == lead.full_name and profile.company_name == lead.company
        expected = await finder.find_email(
            LeadRef(
                str(lead.lead_id),
                lead.linkedin_url,
                lead.full_name,
                lead.company,
                lead.email,
                lead.title,
                lead.location,
            ),
            ProfileData(profile.model_dump()),
        )
        if expected.status == "verified":
            assert (email[0].type, email[0].data.email) == ("leadstream.lead.email_enriched.v1", expected.email)
        else:
            assert (email[0].type, email[0].data.reason) == ("leadstream.lead.email_not_found.v1", expected.status)
        outcomes[email[0].type] += 1
    assert len(outcomes) == 2, f"both outcomes occur among 30 leads: {dict(outcomes)}"
