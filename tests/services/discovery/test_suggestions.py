"""Signal suggestions from a discovery prompt, and a saved search sent twice with one Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from services.discovery import domain
from services.discovery.store import searches
from tests.services.discovery.conftest import StartDiscovery
from tests.services.discovery.support import client_for


@pytest.mark.parametrize(
    ("prompt", "types", "location", "lookback"),
    [
        ("B2B SaaS companies hiring SDRs in Europe", ["hiring_plans", "open_jobs"], "Europe", None),
        ("Companies preparing for SOC 2 audits in Germany", ["compliance"], "Germany", None),
        ("Fintech CFOs who moved to Salesforce in the last 2 weeks", ["tech_stack", "people"], None, 14),
        ("Retailers opening a new office in London over the past 3 months", ["expansion"], "London", 30),
    ],
)
def test_a_prompt_suggests_its_signals_location_and_lookback(
    prompt: str, types: list[str], location: str | None, lookback: int | None
) -> None:
    found = domain.suggest_signals(prompt)
    assert [s.signal_type for s in found.suggestions] == types
    assert found.location == location and found.lookback_days == lookback and found.custom_signal is None
    for s in found.suggestions:
        assert s.label == domain.SIGNAL_LABELS[s.signal_type] and s.phrasing and s.why.startswith("the prompt")


def test_a_prompt_without_a_known_signal_gets_a_custom_one() -> None:
    found = domain.suggest_signals("bakeries that love sourdough")
    assert [s.signal_type for s in found.suggestions] == ["hiring_plans", "news", "custom"]
    assert found.custom_signal == "bakeries that love sourdough"
    assert found.suggestions[-1].phrasing == found.custom_signal
    # every suggestion is a valid signal search as it stands
    domain.parse_criteria(
        "signals",
        {
            "prompt": "bakeries",
            "signal_types": [s.signal_type for s in found.suggestions],
            "custom_signal": found.custom_signal,
        },
    )


async def test_suggestions_api_and_an_idempotent_saved_search(start_discovery: StartDiscovery) -> None:
    service = await start_discovery()
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        r = await client.post("/v1/signal-suggestions", json={"prompt": "B2B SaaS companies hiring SDRs in Berlin"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [s["signal_type"] for s in body["suggestions"]] == ["hiring_plans", "open_jobs"]
        assert body["location"] == "Berlin" and body["suggestions"][0]["phrasing"].startswith("Companies planning")
        short = await client.post("/v1/signal-suggestions", json={"prompt": "x"})
        assert short.status_code == 422 and short.json()["errors"][0]["field"] == "prompt"

        search = {
            "name": "Berlin SaaS",
            "kind": "signals",
            "criteria": {"prompt": "B2B SaaS in Berlin", "signal_types": ["hiring_plans"], "lookback_days": 7},
            "target_count": 5,
        }
        key = {"Idempotency-Key": f"builder-{uuid.uuid4().hex}:search"}
        first, second = await asyncio.gather(
            client.post("/v1/searches", json=search, headers=key), client.post("/v1/searches", json=search, headers=key)
        )
        assert first.status_code == second.status_code == 201, (first.text, second.text)
        assert first.json() == second.json()
        other = await client.post("/v1/searches", json={**search, "target_count": 6}, headers=key)
        assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
        fresh = await client.post("/v1/searches", json=search)
        assert fresh.json()["search_id"] != first.json()["search_id"]
    async with service.engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(searches).where(searches.c.workspace_id == ws))
    assert count == 2
