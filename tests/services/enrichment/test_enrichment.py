"""Enrichment on the real broker and database: cache, rate limits, retries, permanent errors."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from leadstream_schemas import Envelope, LeadEnrichmentRequested
from sqlalchemy import func, select

from services.enrichment.adapters import EmailResult, LeadRef, ProfileData
from services.enrichment.adapters.simulated import SimulatedEmailFinder, SimulatedProfileProvider, person_key
from services.enrichment.store import awaiting_selection, enrichment_retries, profile_cache
from services.runtime.clock import FakeClock, SystemClock
from services.runtime.providers import ProviderError, RateLimited, SimulationProfile
from tests.services.enrichment.conftest import StartEnrichment
from tests.services.enrichment.support import (
    FAILED,
    OUTCOMES,
    by_lead,
    dead_lettered_keys,
    discovered,
    enrich,
    finished,
)
from tests.support.kafka import produce_events, read_until, wait_for

CALM = SimulationProfile(latency_ms=(0, 1), transient_error_rate=0.0)


class ScriptedProfiles:
    """The simulated provider, except for scripted leads: a list of errors raised first, or one raised forever."""

    name = "scripted"

    def __init__(self, inner: SimulatedProfileProvider, script: dict[str, list[Exception] | Exception]) -> None:
        self.inner = inner
        self.script = script
        self.calls: Counter[str] = Counter()

    async def fetch_profile(self, lead: LeadRef) -> ProfileData:
        self.calls[lead.lead_id] += 1
        _raise_scripted(self.script.get(lead.lead_id))
        return await self.inner.fetch_profile(lead)


class ScriptedEmails:
    """The simulated email finder, except for scripted leads."""

    name = "scripted"

    def __init__(self, inner: SimulatedEmailFinder, script: dict[str, list[Exception] | Exception]) -> None:
        self.inner = inner
        self.script = script
        self.calls: Counter[str] = Counter()

    async def find_email(self, lead: LeadRef, profile: ProfileData) -> EmailResult:
        self.calls[lead.lead_id] += 1
        _raise_scripted(self.script.get(lead.lead_id))
        return await self.inner.find_email(lead, profile)


def _raise_scripted(entry: list[Exception] | Exception | None) -> None:
    if isinstance(entry, Exception):
        raise entry
    if entry:
        raise entry.pop(0)


def _types(events: list[Any]) -> list[str]:
    return [e.type.removeprefix("leadstream.lead.").removesuffix(".v1") for e in events]


async def test_cache_avoids_enriching_the_same_profile_twice_per_workspace(start_enrichment: StartEnrichment) -> None:
    clock = FakeClock()
    profiles, emails = SimulatedProfileProvider(CALM, clock), SimulatedEmailFinder(CALM, clock)
    service = await start_enrichment(clock=clock, profiles=profiles, emails=emails, enrichment_cache_days=30)
    url = f"https://www.linkedin.com/in/cache-{uuid.uuid4().hex[:8]}"
    ws = f"ws-{uuid.uuid4().hex[:6]}"
    first = discovered(ws, linkedin_url=url, full_name="Ada Adler")
    a = (await enrich(service, [first]))[str(first.data.lead_id)]
    # The same person, spelled differently, found again by the same workspace: the cache answers.
    second = discovered(ws, linkedin_url=url.upper().replace("WWW.", "") + "/?trk=x", full_name="Ada Adler")
    b = (await enrich(service, [second]))[str(second.data.lead_id)]
    key = person_key(LeadRef("", linkedin_url=url))
    assert profiles.calls[f"profile:{key}"] == 1 and emails.calls[f"email:{key}"] == 1
    assert sum(n for k, n in profiles.calls.items() if "cache-" in k) == 1
    assert _types(a) == _types(b) == ["discovered", "profile_enriched", _types(a)[2]]
    pa, pb = a[1].data.model_dump(), b[1].data.model_dump()
    assert {**pa, "lead_id": None} == {**pb, "lead_id": None}
    assert a[2].data.model_dump(exclude={"lead_id"}) == b[2].data.model_dump(exclude={"lead_id"})

    # Another workspace never gets what this one's providers answered: it asks them itself.
    other = discovered(f"{ws}-other", linkedin_url=url, full_name="Ada Adler")
    await enrich(service, [other])
    assert profiles.calls[f"profile:{key}"] == 2 and emails.calls[f"email:{key}"] == 2
    async with service.engine.connect() as conn:
        cached = sorted(
            await conn.scalars(select(profile_cache.c.workspace_id).where(profile_cache.c.profile_key == url.lower()))
        )
    assert cached == [ws, f"{ws}-other"]

    clock.advance(timedelta(days=30))  # the window is over: the provider is asked again
    third = discovered(ws, linkedin_url=url, full_name="Ada Adler")
    await enrich(service, [third])
    assert profiles.calls[f"profile:{key}"] == 3 and emails.calls[f"email:{key}"] == 3


async def test_leads_of_groups_enriched_on_selection_wait_for_their_request(start_enrichment: StartEnrichment) -> None:
    clock = FakeClock()
    profiles, emails = SimulatedProfileProvider(CALM, clock), SimulatedEmailFinder(CALM, clock)
    service = await start_enrichment(clock=clock, profiles=profiles, emails=emails)
    ws = f"ws-{uuid.uuid4().hex[:6]}"
    waiting = discovered(
        ws, linkedin_url=f"https://www.linkedin.com/in/sel-{uuid.uuid4().hex[:8]}", enrichment="on_selection"
    )
    automatic = discovered(ws, linkedin_url=f"https://www.linkedin.com/in/auto-{uuid.uuid4().hex[:8]}")
    done = await enrich(service, [automatic])
    s = service.settings
    await produce_events(s.kafka_bootstrap_servers, s.topic_prefix, [waiting])
    lead = str(waiting.data.lead_id)

    async def parked() -> bool:
        async with service.engine.connect() as conn:
            return bool(
                await conn.scalar(
                    select(func.count())
                    .select_from(awaiting_selection)
                    .where(awaiting_selection.c.lead_id == waiting.data.lead_id)
                )
            )

    await wait_for(parked, timeout_s=30, what="the lead kept for a selection")
    assert not any("sel-" in k for k in profiles.calls), "nothing is fetched before the lead is selected"
    request = Envelope.new(
        LeadEnrichmentRequested(lead_id=waiting.data.lead_id, reason="selected"), workspace_id=ws, source="test"
    )
    # A request for the lead enriched at discovery changes nothing; the waiting one is enriched now, once.
    again = Envelope.new(
        LeadEnrichmentRequested(lead_id=automatic.data.lead_id, reason="selected"), workspace_id=ws, source="test"
    )
    await produce_events(s.kafka_bootstrap_servers, s.topic_prefix, [request, again, request])
    ids = {lead, str(automatic.data.lead_id)}
    records = await read_until(
        s.kafka_bootstrap_servers,
        [s.topic_name("leadstream.lead.v1")],
        lambda recs: finished(by_lead(recs, {lead}).get(lead, [])),
        timeout_s=60,
    )
    events = by_lead(records, ids)
    types = _types(events[lead])
    assert types.count("enrichment_requested") == 2  # the request delivered twice ...
    assert [t for t in types if t != "enrichment_requested"][:2] == ["discovered", "profile_enriched"]
    enriched = [e for e in events[lead] if e.type == "leadstream.lead.profile_enriched.v1"]
    assert len(enriched) == 1 and enriched[0].causation_id == request.id
    assert _types(events[str(automatic.data.lead_id)]) == [
        *_types(done[str(automatic.data.lead_id)]),
        "enrichment_requested",
    ]
    assert not await parked()


async def test_retry_after_is_honoured_and_a_waiting_lead_blocks_no_other(start_enrichment: StartEnrichment) -> None:
    clock = FakeClock()
    limited = discovered(linkedin_url=f"https://www.linkedin.com/in/limited-{uuid.uuid4().hex[:6]}")
    trace_id = uuid.uuid4().hex
    flaky = discovered(
        linkedin_url=f"https://www.linkedin.com/in/flaky-{uuid.uuid4().hex[:6]}",
        traceparent=f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
    )
    other = discovered(linkedin_url=f"https://www.linkedin.com/in/other-{uuid.uuid4().hex[:6]}")
    profiles = ScriptedProfiles(
        SimulatedProfileProvider(CALM, clock),
        {str(flaky.data.lead_id): [ProviderError("503", transient=True, status=503)]},
    )
    emails = ScriptedEmails(SimulatedEmailFinder(CALM, clock), {str(limited.data.lead_id): [RateLimited(30)]})
    service = await start_enrichment(clock=clock, profiles=profiles, emails=emails, retry_initial_s=5, retry_max_s=600)
    settings = service.settings
    start = clock.now()
    await produce_events(settings.kafka_bootstrap_servers, settings.topic_prefix, [limited, flaky])

    async def parked(*envs: Any) -> dict[str, Any] | None:
        async with service.engine.connect() as conn:
            rows = {str(r.lead_id): r for r in (await conn.execute(select(enrichment_retries))).all()}
        return rows if all(str(e.data.lead_id) in rows for e in envs) else None

    rows = await wait_for(lambda: parked(limited, flaky), timeout_s=30, what="both leads parked")
    assert (rows[str(limited.data.lead_id)].stage, rows[str(limited.data.lead_id)].due_at) == (
        "email",
        start + timedelta(seconds=30),
    )
    assert (rows[str(flaky.data.lead_id)].stage, rows[str(flaky.data.lead_id)].due_at) == (
        "profile",
        start + timedelta(seconds=5),
    )
    assert rows[str(flaky.data.lead_id)].last_error == "503"

    # While both wait, another lead is enriched; the email provider's retry-after holds for it too.
    other_events = await _events(service, other, produce=True, until="profile_enriched")
    assert _types(other_events) == ["discovered", "profile_enriched"]
    rows = await wait_for(lambda: parked(other), timeout_s=30, what="the other lead waiting for the email provider")
    assert (rows[str(other.data.lead_id)].stage, rows[str(other.data.lead_id)].due_at) == (
        "email",
        start + timedelta(seconds=30),
    )
    # Nothing of this test's is due yet: running whatever is due (the worker claims any parked row of the session's
    # shared database, another fake-clock test's leftover too) retries none of its leads.
    mine = (limited, flaky, other)
    before = {k: (r.stage, r.due_at, r.attempts) for k, r in (await parked(*mine) or {}).items()}
    await service.app.state.retries.timers.run_due(limit=100)
    after = {k: (r.stage, r.due_at, r.attempts) for k, r in (await parked(*mine) or {}).items()}
    assert {str(e.data.lead_id): after[str(e.data.lead_id)] for e in mine} == {
        str(e.data.lead_id): before[str(e.data.lead_id)] for e in mine
    }
    assert (profiles.calls[str(flaky.data.lead_id)], emails.calls[str(limited.data.lead_id)]) == (1, 1)

    clock.advance(timedelta(seconds=5))
    flaky_events = await _events(service, flaky, until="profile_enriched")
    assert _types(flaky_events) == ["discovered", "profile_enriched"]
    assert profiles.calls[str(flaky.data.lead_id)] == 2
    # The retry, on the durable-timer loop, continued the parked event's trace.
    assert (flaky_events[1].traceparent or "").split("-")[1:2] == [trace_id]
    assert emails.calls[str(limited.data.lead_id)] == 1, "not called again before the retry-after"

    clock.advance(timedelta(seconds=25))
    for env in (limited, flaky, other):
        events = await _events(service, env, until="email")
        assert _types(events)[:2] == ["discovered", "profile_enriched"] and events[2].type in OUTCOMES
        assert len(events) == 3
    assert emails.calls[str(limited.data.lead_id)] == 2
    ids = [e.data.lead_id for e in mine]
    async with service.engine.connect() as conn:
        left = (await conn.execute(select(enrichment_retries).where(enrichment_retries.c.lead_id.in_(ids)))).all()
    assert left == []


async def _events(service: Any, env: Any, *, until: str, produce: bool = False) -> list[Any]:
    """The lead's events once one of type ``until`` (or, for ``email``, an email outcome) was read."""
    s = service.settings
    if produce:
        await produce_events(s.kafka_bootstrap_servers, s.topic_prefix, [env])
    lead = str(env.data.lead_id)

    def done(records: list[Any]) -> bool:
        events = by_lead(records, {lead}).get(lead, [])
        return finished(events) if until == "email" else any(e.type.endswith(f".{until}.v1") for e in events)

    records = await read_until(s.kafka_bootstrap_servers, [s.topic_name("leadstream.lead.v1")], done, timeout_s=30)
    return by_lead(records, {lead})[lead]


async def test_permanent_and_exhausted_errors_are_recorded_not_dead_lettered(start_enrichment: StartEnrichment) -> None:
    clock = FakeClock()
    gone, stuck, no_mail, fine = (
        discovered(
            full_name="P Q", company="Northwind", linkedin_url=f"https://www.linkedin.com/in/{n}-{uuid.uuid4().hex[:6]}"
        )
        for n in ("gone", "stuck", "nomail", "fine")
    )
    profiles = ScriptedProfiles(
        SimulatedProfileProvider(CALM, clock),
        {
            str(gone.data.lead_id): ProviderError("404 profile not found", transient=False, status=404),
            str(stuck.data.lead_id): ProviderError("502 bad gateway", transient=True, status=502),
        },
    )
    emails = ScriptedEmails(
        SimulatedEmailFinder(CALM, clock),
        {
            str(no_mail.data.lead_id): ProviderError("500 internal error", transient=True, status=500),
        },
    )
    # The system clock here: exhausted retries take a few short real backoffs.
    service = await start_enrichment(profiles=profiles, emails=emails, retry_max_attempts=3)
    got = await enrich(service, [gone, stuck, no_mail, fine])

    g = got[str(gone.data.lead_id)]
    assert _types(g)[:2] == ["discovered", "enrichment_failed"]
    assert (g[1].data.stage, g[1].data.reason, g[1].data.detail) == ("profile", "not_found", "404 profile not found")
    assert g[2].type in OUTCOMES, "the email is still looked for with what is known"
    assert profiles.calls[str(gone.data.lead_id)] == 1

    s = got[str(stuck.data.lead_id)]
    assert _types(s)[:2] == ["discovered", "enrichment_failed"]
    assert (s[1].data.stage, s[1].data.reason) == ("profile", "retries_exhausted")
    assert profiles.calls[str(stuck.data.lead_id)] == 3 and s[2].type in OUTCOMES

    n = got[str(no_mail.data.lead_id)]
    assert _types(n) == ["discovered", "profile_enriched", "enrichment_failed"]
    assert (n[2].data.stage, n[2].data.reason) == ("email", "retries_exhausted")
    assert emails.calls[str(no_mail.data.lead_id)] == 3

    assert _types(got[str(fine.data.lead_id)])[:2] == ["discovered", "profile_enriched"]
    mine = {str(e.data.lead_id) for e in (gone, stuck, no_mail, fine)}
    assert not mine & await dead_lettered_keys(service)
    for events in got.values():
        assert len(events) == 3 and len({e.id for e in events}) == 3
        assert all(e.causation_id == events[0].id for e in events[1:])


async def test_flaky_providers_still_enrich_every_lead_exactly_once(start_enrichment: StartEnrichment) -> None:
    service = await start_enrichment(
        sim_transient_error_rate=0.3, sim_rate_limit_every=5, sim_retry_after_s=0.01, retry_max_attempts=12
    )
    leads = [
        discovered(linkedin_url=f"https://www.linkedin.com/in/flaky-{i}-{uuid.uuid4().hex[:6]}") for i in range(12)
    ]
    got = await enrich(service, leads)
    for events in got.values():
        types = _types(events)
        assert types[:2] == ["discovered", "profile_enriched"] and len(types) == 3, types
        assert events[2].type in OUTCOMES and events[2].type != FAILED
    # This test's leads' calls only: the service also enriched the leads the session's other tests discovered
    # before it reached these (the group's committed offsets), which alone made the providers' totals exceed 24.
    handlers = service.app.state.handlers
    keys = [person_key(LeadRef("", linkedin_url=lead.data.linkedin_url)) for lead in leads]
    ours = sum(handlers.profiles.calls[f"profile:{k}"] + handlers.emails.calls[f"email:{k}"] for k in keys)
    assert ours > 2 * len(leads), "errors happened and were retried"


async def test_a_parked_stage_wakes_the_idle_retry_loop(start_enrichment: StartEnrichment) -> None:
    # On the real clock an idle retry loop sleeps until its next retry is due, here up to a minute
    # (timer_idle_max_s): the handler that parks a stage wakes it, so the retry (half a second later) runs then.
    clock = SystemClock()
    flaky = discovered(linkedin_url=f"https://www.linkedin.com/in/flaky-{uuid.uuid4().hex[:6]}")
    profiles = ScriptedProfiles(
        SimulatedProfileProvider(CALM, clock),
        {str(flaky.data.lead_id): [ProviderError("503", transient=True, status=503)]},
    )
    service = await start_enrichment(
        clock=clock, profiles=profiles, retry_initial_s=0.5, retry_max_s=1.0, timer_idle_max_s=60.0
    )
    events = await _events(service, flaky, until="profile_enriched", produce=True)
    assert _types(events)[:2] == ["discovered", "profile_enriched"]
    assert profiles.calls[str(flaky.data.lead_id)] == 2  # failed, parked, retried
